"""permissions.identity, permissions.s3, permissions.logs, permissions.kms: what the agent's
own credentials may do, verified with harmless calls (ssmdiag/permissions.py).

The calls run together once (the `permissions` fact) and their result is kept in this
process for an hour: the daemon's cycles come every few minutes, these calls at most
hourly. The daemon runs each cycle in a fresh check worker, so the worker hands what is
kept back (`kept_results`) and the next one takes it over (`keep_results`); on SIGHUP the
daemon drops it, so a fixed policy is seen at the next cycle after
`systemctl reload ssmdiag`.
"""

from __future__ import annotations

import datetime
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

from ssmdiag.aws_credentials import SOURCE_WORDS, CredentialsLookup
from ssmdiag.checks.base import Check, Context
from ssmdiag.identity import Identity
from ssmdiag.permissions import BOTOCORE_MISSING, CallResult
from ssmdiag.policy import statement_text
from ssmdiag.report import Finding, Status, fail, ok, skip, warn
from ssmdiag.session_prefs import SessionPreferences

CACHE_SECONDS = 3600.0
_cache_lock = threading.Lock()
# Keyed by the repr of what the verification depends on; the time is time.monotonic(), which
# is system-wide (CLOCK_MONOTONIC, QueryPerformanceCounter, mach time), so it stays valid in
# the next worker process.
_cache: dict[str, tuple[float, Verification]] = {}


def forget() -> None:
    """Drop the kept results: the next cycle verifies again (call on SIGHUP)."""
    with _cache_lock:
        _cache.clear()


def kept_results() -> list[dict[str, Any]]:
    """What is kept, as JSON-able data for the next check worker; holds no secret."""
    with _cache_lock:
        return [
            {"key": key, "at": at, "verification": _to_data(kept)}
            for key, (at, kept) in _cache.items()
        ]


def keep_results(data: Any) -> int:
    """Take over what an earlier worker kept (`kept_results`); returns how many entries.
    Anything unreadable is dropped: the permissions are then verified again."""
    taken: dict[str, tuple[float, Verification]] = {}
    for entry in data if isinstance(data, list) else ():
        try:
            taken[str(entry["key"])] = (float(entry["at"]), _from_data(entry["verification"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    with _cache_lock:
        _cache.clear()
        _cache.update(taken)
    return len(taken)


def _to_data(kept: Verification) -> dict[str, Any]:
    lookup = kept.credentials
    if lookup.credentials is not None:  # never: only without_secrets() is kept
        raise ValueError("a kept verification must not hold credentials")
    shown = asdict(lookup)
    del shown["credentials"]
    shown["expires_at"] = lookup.expires_at.isoformat() if lookup.expires_at else None
    return {
        "credentials": shown,
        "calls": {name: asdict(call) for name, call in kept.calls.items()},
        "problem": kept.problem,
        "region": kept.region,
        "verified_at": kept.verified_at,
    }


def _from_data(data: dict[str, Any]) -> Verification:
    found = dict(data["credentials"])
    expires, notes = found.pop("expires_at"), found.pop("notes")
    lookup = CredentialsLookup(
        **found,
        expires_at=datetime.datetime.fromisoformat(expires) if expires else None,
        notes=tuple(str(note) for note in notes),
    )
    calls = {str(name): CallResult(**call) for name, call in data["calls"].items()}
    return Verification(lookup, calls, data["problem"], data["region"], str(data["verified_at"]))


@dataclass(frozen=True)
class Verification:
    """One round of verification, without any secret: safe to keep for an hour."""

    credentials: CredentialsLookup
    calls: dict[str, CallResult] = field(default_factory=dict)
    problem: Optional[str] = None  # why no call was made although credentials were found
    region: Optional[str] = None
    verified_at: str = ""


def gather(ctx: Context) -> Verification:
    """The `permissions` fact: the kept result while it is fresh, else a new round."""
    ident: Identity = ctx.fact("identity")
    config = ctx.config
    agent_config = ctx.fact("agent_config")
    # Profile.* (hybrid credential sharing) as the agent decoded it; absent: its defaults.
    decoded = getattr(agent_config, "decoded", None)
    profile = {
        name: decoded.get(name)
        for name in ("Profile.ShareCreds", "Profile.ShareProfile")
        if decoded is not None and decoded.get(name) is not None
    }
    agent_settings = {**agent_config.settings, **profile}
    key = repr((
        config.session,
        repr(sorted(agent_settings.items())),
        ident.region,
        ident.identity_type,
        ident.credential_source,
        ident.instance_id,
        config.permissions_endpoint_url,
        config.agent_data_dir,
        config.agent_config_file,
        config.ca_bundle,
    ))  # fmt: skip
    now = time.monotonic()
    with _cache_lock:
        kept = _cache.get(key)
        if kept is not None and now - kept[0] < CACHE_SECONDS:
            return kept[1]
    verification = _verify(ctx, ident, agent_settings)
    if verification.calls:  # no AWS call made (no credentials, ...): look again next cycle
        with _cache_lock:
            _cache.clear()  # one configuration at a time: the last one asked
            _cache[key] = (time.monotonic(), verification)
    return verification


def _verify(ctx: Context, ident: Identity, settings: dict[str, Any]) -> Verification:
    from ssmdiag.aws_credentials import agent_credentials
    from ssmdiag.permissions import (
        BotocoreMissing,
        Caller,
        CallSettings,
        botocore_available,
        bucket_encryption,
        caller_identity,
        kms_round_trip,
        log_group,
        run_all,
        targets,
        trust,
    )

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    found = agent_credentials(
        ctx.platform,
        ident,
        agent_settings=settings,
        environ=ctx.environ,
        imds_budget=ctx.config.imds_timeout,
        binary_path=ctx.agent.discovery.binary_path,
    )
    region = ident.region
    result = Verification(found.without_secrets(), region=region, verified_at=stamp)
    credentials = found.credentials
    if credentials is None:
        return result
    if not region:
        return Verification(result.credentials, problem="region", verified_at=stamp)
    if not botocore_available():
        return Verification(result.credentials, problem="botocore", region=region,
                            verified_at=stamp)  # fmt: skip
    config, prefs = ctx.config, ctx.config.session
    proxies, _ = ctx.fact("proxies")
    where = targets(region, settings, config.permissions_endpoint_url)
    with trust(config.ca_bundle) as verify:
        try:
            caller = Caller(
                credentials,
                CallSettings(config.connect_timeout, config.probe_timeout, proxies, verify),
            )
        except BotocoreMissing:  # found but not importable (a broken installation)
            return Verification(result.credentials, problem="botocore", region=region,
                                verified_at=stamp)  # fmt: skip
        del credentials, found
        jobs: dict[str, tuple[str, Callable[[], CallResult]]] = {
            "identity": ("sts:GetCallerIdentity", lambda: caller_identity(caller, where["sts"])),
        }
        if prefs.s3_bucket:
            bucket = prefs.s3_bucket
            jobs["s3"] = (
                "s3:GetEncryptionConfiguration",
                lambda: bucket_encryption(caller, where["s3"], bucket),
            )
        if prefs.log_group:
            group = prefs.log_group
            jobs["logs"] = (
                "logs:DescribeLogGroups",
                lambda: log_group(caller, where["logs"], group),
            )
        if prefs.kms_key_id:
            key = prefs.kms_key_id
            instance = ident.instance_id or ""
            jobs["kms"] = (
                "kms:GenerateDataKey",
                lambda: kms_round_trip(caller, where["kms"], key, instance),
            )
        # Two attempts of (connect + read) each, twice for KMS's two calls, and a margin.
        budget = 4 * (config.connect_timeout + config.probe_timeout) + 2
        try:
            calls = run_all(jobs, time.monotonic() + budget)
        finally:
            caller.close()
    return Verification(result.credentials, calls, region=region, verified_at=stamp)


# -- shared judgement ------------------------------------------------------------------


def _details(v: Verification, call: Optional[CallResult] = None) -> dict[str, Any]:
    details: dict[str, Any] = {
        "credentials": v.credentials.shown(),
        "region": v.region,
        "verified_at": v.verified_at or None,
        "kept_for_s": int(CACHE_SECONDS),
    }
    if call is not None:
        details["call"] = call.shown()
        details["duration_ms_of_call"] = call.duration_ms
    return details


def _credentials_gate(v: Verification, *, own: bool) -> Optional[Finding]:
    """A finding when no call could be made. `own`: this is permissions.identity, which
    reports credential problems; the other checks point at it."""
    found = v.credentials
    details = _details(v)
    if v.problem == "region":
        return skip("no region is known, so no AWS endpoint (see the identity check; or set "
                    "--region / [network] region)", details)  # fmt: skip
    if v.problem == "botocore":
        return Finding(
            Status.SKIP,
            "cannot verify the agent's permissions: botocore is not installed",
            details,
            BOTOCORE_MISSING,
        )
    if found.state == "ok":
        return None
    if found.state == "denied":
        return Finding(Status.SKIP, found.summary, details, found.fix)
    if found.state in ("unsupported", "none"):
        tail = (
            ""
            if found.state == "unsupported" or "(see " in found.summary
            else (" (see identity.credentials)")
        )
        return skip(f"cannot verify the agent's permissions: {found.summary}{tail}", details)
    if not own:
        return skip(
            f"no usable credentials to verify with: {found.summary} (see permissions.identity)",
            details,
        )
    fix = found.fix or "See identity.credentials."
    if found.state in ("expired", "invalid"):
        return fail(found.summary, fix, details)
    return warn(f"could not read the agent's credentials: {found.summary}", fix, details)


def _role_of(arn: str) -> str:
    """The role name in an assumed-role ARN (arn:aws:sts::ACCT:assumed-role/ROLE/SESSION)."""
    if ":assumed-role/" in arn:
        return arn.split(":assumed-role/", 1)[1].split("/", 1)[0]
    return arn.rsplit("/", 1)[-1] if "/" in arn else arn


def _who(v: Verification) -> str:
    call = v.calls.get("identity")
    arn = call.data.get("arn") if call is not None and call.outcome == "ok" else None
    if arn:
        return f"the node's role {_role_of(str(arn))}"
    if v.credentials.role_name:
        return f"the node's role {v.credentials.role_name}"
    return "the node's role"


def _common(
    v: Verification, call: CallResult, service: str, prefs: SessionPreferences, subject: str
) -> Optional[Finding]:
    """Outcomes that read the same for every service; None when the caller judges."""
    details = _details(v, call)
    if call.outcome == "denied":
        statement = statement_text(call.action, prefs.policy_inputs(v.region))
        details["statement"] = statement
        why = f" ({call.code}: {call.message})" if call.message else ""
        cross = ""
        if service == "s3" and prefs.s3_bucket_owner:
            cross = (
                f" The bucket belongs to account {prefs.s3_bucket_owner}: its bucket policy "
                "must also allow the role."
            )
        if service == "kms":
            cross = " The key policy must also allow the role (or delegate to IAM)."
        return fail(
            f"{_who(v)} is denied {call.action} on {subject}{why}",
            f"Add this statement to the policy of {_who(v)} (the seeds' policy for these "
            f"session preferences; `ssmdiag policy` prints all of it): {statement}.{cross}",
            details,
        )
    if call.outcome in ("rejected", "expired"):
        return fail(
            f"AWS refused the agent's credentials for {call.action}: {call.summary}",
            "See permissions.identity: restart the agent so that it fetches fresh "
            "credentials, and check clock.skew.",
            details,
        )
    if call.outcome == "clock":
        return fail(
            f"AWS refused the request's signature time for {call.action}: {call.summary}",
            "The node's clock is off: see clock.skew and sync the clock (chrony, "
            "169.254.169.123 on EC2).",
            details,
        )
    if call.outcome in ("network", "timeout", "no_endpoint"):
        endpoint = call.endpoint or "its endpoint"
        return warn(
            f"could not verify {call.action}: {call.summary} ({endpoint})",
            f"See endpoint.{service}: ssmdiag calls {endpoint} the way the agent does "
            "(its endpoint overrides and proxy).",
            details,
        )
    if call.outcome in ("error", "wrong_region", "invalid") and service == "sts":
        return warn(
            f"could not verify the agent's credentials: {call.summary}",
            "Run the check again later; if it persists, run with --log-level debug and report it.",
            details,
        )
    return None


def _unexplained(v: Verification, call: CallResult, service: str) -> Finding:
    return warn(
        f"could not verify {call.action}: {call.summary or call.outcome}",
        f"Run `ssmdiag check --only permissions.{service}` again later (throttling and "
        "service errors pass); if it persists, look at the message above.",
        _details(v, call),
    )


def _not_set(what: str, key: str, document_input: str) -> Finding:
    return skip(
        f"no {what} in the session preferences: nothing to verify (set [session] {key} in "
        f"ssmdiag's config, or pass --session-preferences with {document_input})"
    )


def _expiry_words(lookup: CredentialsLookup) -> str:
    if lookup.expires_at is None:
        return ""
    left = lookup.expires_at - datetime.datetime.now(datetime.timezone.utc)
    minutes = int(left.total_seconds() // 60)
    stamp = lookup.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"; they expire at {stamp} (in {minutes} min)"


# -- the checks ------------------------------------------------------------------------


def run_identity(ctx: Context) -> Finding:
    v: Verification = ctx.fact("permissions")
    gate = _credentials_gate(v, own=True)
    if gate is not None:
        return gate
    call = v.calls.get("identity")
    if call is None:
        return warn("sts:GetCallerIdentity was not called", "Run the check again.", _details(v))
    common = _common(v, call, "sts", ctx.config.session, "the caller identity")
    if common is not None:
        return common
    if call.outcome != "ok":
        return _unexplained(v, call, "identity")
    source = SOURCE_WORDS.get(v.credentials.source or "", v.credentials.source or "?")
    arn, account = call.data.get("arn"), call.data.get("account")
    return ok(
        f"the agent's credentials work: {arn} (account {account}), from {source}"
        + _expiry_words(v.credentials),
        _details(v, call),
    )


def _verified_call(
    ctx: Context, service: str, action: str
) -> Finding | tuple[Verification, CallResult]:
    """The round of calls and this service's call in it, or the finding that says why
    there is none (no usable credentials, or the call never ran)."""
    v: Verification = ctx.fact("permissions")
    gate = _credentials_gate(v, own=False)
    if gate is not None:
        return gate
    call = v.calls.get(service)
    if call is None:
        return _unexplained(v, CallResult(action, "error"), service)
    return v, call


def run_s3(ctx: Context) -> Finding:
    prefs = ctx.config.session
    if not prefs.s3_bucket:
        return _not_set("S3 bucket for session logs", "s3_bucket", "s3BucketName")
    found = _verified_call(ctx, "s3", "s3:GetEncryptionConfiguration")
    if isinstance(found, Finding):
        return found
    v, call = found
    bucket = prefs.s3_bucket
    required = prefs.s3_encryption
    consequence = (
        "the agent refuses every session, because the preferences require an encrypted bucket "
        "(shell.go:133-139)"
        if required
        else "session logs are not written to it"
    )
    common = _common(v, call, "s3", prefs, f"bucket {bucket}")
    if common is not None:
        if common.status == Status.FAIL and call.outcome == "denied":
            common.summary += f": {consequence}"
        return common
    details = _details(v, call)
    if call.outcome == "not_found":
        make = fail if required else warn
        return make(
            f"bucket {bucket} does not exist ({call.code}): {consequence}",
            f"Create it (`aws s3api create-bucket --bucket {bucket}` with the region's "
            "LocationConstraint) or correct s3BucketName in the session preferences "
            "(SSM-SessionManagerRunShell).",
            details,
        )
    if call.outcome == "invalid":
        return fail(
            f"bucket name {bucket!r} is refused: {call.summary}",
            "Correct s3BucketName in the session preferences.",
            details,
        )
    if call.outcome == "wrong_region":
        return warn(
            f"bucket {bucket} answers from another region: {call.summary}",
            "Check the bucket's region (`aws s3api get-bucket-location`); the agent writes to "
            "the bucket's own region.",
            details,
        )
    if call.outcome != "ok":
        return _unexplained(v, call, "s3")
    algorithm = call.data.get("algorithm")
    if call.data.get("encrypted"):
        key = call.data.get("kms_key")
        how = f"{algorithm}" + (f", key {key}" if key else "")
        return ok(
            f"bucket {bucket}: s3:GetEncryptionConfiguration allowed; encrypted ({how})",
            details,
        )
    what = f"encrypted with {algorithm}, which the agent does not accept" if algorithm else (
        "has no default encryption"
    )  # fmt: skip
    if required:
        return fail(
            f"bucket {bucket} {what}, and the session preferences require encryption "
            "(s3EncryptionEnabled): the agent refuses every session (\"We couldn't start the "
            'session because encryption is not set up on the selected Amazon S3 bucket")',
            f"Give the bucket default encryption (`aws s3api put-bucket-encryption --bucket "
            f"{bucket} --server-side-encryption-configuration "
            '\'{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":'
            '"aws:kms"}}]}\'`; AES256 works too), or turn off s3EncryptionEnabled.',
            details,
        )
    return ok(
        f"bucket {bucket}: s3:GetEncryptionConfiguration allowed; {what} (encryption is not "
        "required by the preferences)",
        details,
    )


def run_logs(ctx: Context) -> Finding:
    prefs = ctx.config.session
    if not prefs.log_group:
        return _not_set("CloudWatch log group", "log_group", "cloudWatchLogGroupName")
    found = _verified_call(ctx, "logs", "logs:DescribeLogGroups")
    if isinstance(found, Finding):
        return found
    v, call = found
    group = prefs.log_group
    required = prefs.log_group_encryption
    common = _common(v, call, "logs", prefs, f"log group {group}")
    if common is not None:
        if common.status == Status.FAIL and call.outcome == "denied":
            common.summary += (
                ": the agent cannot find the group, so it refuses every session (encryption "
                "is required)"
                if required
                else ": the agent cannot find the group and streams no session logs"
            )
        return common
    details = _details(v, call)
    if call.outcome != "ok":
        return _unexplained(v, call, "logs")
    exists = call.data.get("exists")
    if exists is None:
        return warn(
            f"log group {group}: {call.summary}",
            "Check the group's name in the session preferences (cloudWatchLogGroupName).",
            details,
        )
    if not exists:
        create = f"Create it (`aws logs create-log-group --log-group-name {group}`"
        if required:
            return fail(
                f"log group {group} does not exist, and the preferences require an encrypted "
                "group: the agent refuses every session (shell.go:108-123)",
                f"{create} --kms-key-id KEY_ARN`) or correct cloudWatchLogGroupName in the "
                "session preferences.",
                details,
            )
        return warn(
            f"log group {group} does not exist: sessions start, but the agent streams no "
            "session logs (shell.go:111-114)",
            f"{create}`) or correct cloudWatchLogGroupName in the session preferences.",
            details,
        )
    key = call.data.get("kms_key")
    if required and not key:
        return fail(
            f"log group {group} is not encrypted with a KMS key, and the preferences require "
            "it (cloudWatchEncryptionEnabled): the agent refuses every session (\"We couldn't "
            "start the session because encryption is not set up on the selected CloudWatch "
            'Logs log group")',
            f"`aws logs associate-kms-key --log-group-name {group} --kms-key-id KEY_ARN` (the "
            "key policy must allow logs.REGION.amazonaws.com), or turn off "
            "cloudWatchEncryptionEnabled.",
            details,
        )
    how = f"encrypted with {key}" if key else "not encrypted (not required)"
    return ok(f"log group {group} exists, logs:DescribeLogGroups allowed; {how}", details)


def run_kms(ctx: Context) -> Finding:
    prefs = ctx.config.session
    if not prefs.kms_key_id:
        return _not_set("KMS key for session encryption", "kms_key_id", "kmsKeyId")
    found = _verified_call(ctx, "kms", "kms:GenerateDataKey")
    if isinstance(found, Finding):
        return found
    v, call = found
    key = prefs.kms_key_id
    common = _common(v, call, "kms", prefs, f"key {key}")
    if common is not None:
        if common.status == Status.FAIL and call.outcome == "denied":
            common.summary += ": sessions with KMS encryption cannot start"
        return common
    details = _details(v, call)
    if call.outcome == "not_found":
        return fail(
            f"KMS key {key} does not exist in {v.region} ({call.code}): sessions with KMS "
            "encryption cannot start",
            "Correct kmsKeyId in the session preferences (a key id, key ARN or alias of a "
            "symmetric key in the node's region).",
            details,
        )
    if call.outcome == "key_state":
        return fail(
            f"KMS key {key} cannot be used: {call.summary}",
            "Enable the key (`aws kms enable-key`), cancel its deletion (`aws kms "
            "cancel-key-deletion`), or name a symmetric encryption key in kmsKeyId.",
            details,
        )
    if call.outcome == "invalid":
        return fail(
            f"kmsKeyId {key!r} is refused: {call.summary}",
            "Correct kmsKeyId in the session preferences.",
            details,
        )
    if call.outcome != "ok":
        return _unexplained(v, call, "kms")
    arn = call.data.get("key_arn") or key
    return ok(
        f"key {arn}: kms:GenerateDataKey and kms:Decrypt allowed (a 64-byte data key made "
        "and decrypted with the session's encryption context, as a session does)",
        details,
    )


# permissions.identity gathers the facts first (a failure to gather is its `error`); the
# other three look at the preferences before asking for anything.
CHECKS = (
    Check(
        "permissions.identity",
        "Agent credentials verified with AWS",
        run_identity,
        needs=("agent", "identity", "agent_config", "proxies", "permissions"),
    ),
    Check("permissions.s3", "S3 session logging permissions", run_s3),
    Check("permissions.logs", "CloudWatch session logging permissions", run_logs),
    Check("permissions.kms", "KMS session encryption permissions", run_kms),
)
