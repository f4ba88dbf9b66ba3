"""The AWS credentials the agent itself uses, read where the agent gets or writes them.

Agent 3.3.1142.0. Only the permission checks (ssmdiag/permissions.py) use these, to sign a
few harmless calls; the keys are wrapped in `Secret` (never printed by repr or str), are
never logged, never put in a report or a cache, and are dropped after the calls. What may be
shown: where they came from, the role and the expiry.

- EC2, instance profile: a worker without shared credentials takes the instance profile
  role from IMDS (common/identity/credentialproviders/ec2roleprovider/ec2_role_provider.go:
  106-120, the SDK's ec2rolecreds provider built at common/identity/availableidentities/ec2/
  ec2_identity.go:301-303): `GET iam/security-credentials/` names the role, `GET
  iam/security-credentials/ROLE` answers JSON with Code, AccessKeyId, SecretAccessKey,
  Token and Expiration (extra/aws-sdk-go/aws/credentials/ec2rolecreds/ec2_role_provider.go:
  137-184; the agent's go.mod replaces aws-sdk-go with extra/aws-sdk-go). Asked over IMDSv2
  with identity.py's bounded client.
- EC2, Default Host Management Configuration (DHMC): the core agent writes the credentials
  Systems Manager gives it to `appconfig.DefaultEC2SharedCredentialsFilePath`
  (agent/appconfig/constants_unix.go:112: DefaultDataStorePath + "credentials", i.e.
  /var/lib/amazon/ssm/credentials; constants_darwin.go:108 /opt/aws/ssm/data/credentials;
  constants_windows.go:207 %ProgramFiles%\\Amazon\\SSM\\credentials), the provider's
  ShareFile when the credential source is SSM (ec2_role_provider.go:214-223), in the profile
  ShareProfile() = "" (:225-228), which Store writes as "default"
  (agent/managedInstances/sharedCredentials/shared_Credentials.go:71-74, 94-101:
  aws_access_key_id, aws_secret_access_key, aws_session_token); core/app/credentialrefresher/
  credentialrefresher.go:366-397 stores them and :399-406 records CredentialsExpiresAt in the
  runtime identity config. Workers use that file whenever the runtime config names a
  ShareFile (ec2_role_provider.go:91-104).
- OnPrem (hybrid): with `Profile.ShareCreds` (default true, agent/appconfig/appconfig.go:
  94-97) the core agent shares its credentials in the shared-credentials file of its own
  user (GetSharedCredsFilePath(""): AWS_SHARED_CREDENTIALS_FILE, else $HOME/.aws/credentials;
  shared_Credentials.go:36-53, shared_Credentials_unix.go:27-55, _windows.go:24-32; common/
  identity/availableidentities/onprem/onprem_identity.go:108-125, common/identity/
  credentialproviders/onpremprovider/role_provider.go:59-67), profile Profile.ShareProfile
  (role_provider.go:278-281) or "default". Without ShareCreds the agent keeps them in memory,
  signed for with the registration's private key, which ssmdiag never reads.

Workers read the shared file through the runtime identity config (runtimeconfig/
identity_config.json: ShareFile, ShareProfile, CredentialsExpiresAt; common/runtimeconfig/
identity_runtimeconfig.go:33-42) and refuse credentials whose CredentialsExpiresAt has
passed (common/identity/credentialproviders/sharedprovider/sharedprovider.go:78-111); the
file is INI as the SDK reads it (extra/aws-sdk-go/aws/credentials/
shared_credentials_provider.go:79-112, 142-151: section and key names case-sensitive, the
last section of a name wins, aws_session_token optional).
"""

from __future__ import annotations

import datetime
import ntpath
import posixpath
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from ssmdiag.identity import (
    _TOKEN,
    CUSTOM,
    EC2,
    ECS,
    IMDS_DEFAULT,
    ONPREM,
    Identity,
    _bounded_loads,
    _get,
    _Imds,
    _imds_address,
    _looks_like_a_page,
    _request,
)
from ssmdiag.platform.base import Platform

INSTANCE_PROFILE = "instance-profile"
DHMC = "default-host-management"
HYBRID = "hybrid-shared-credentials"
SOURCE_WORDS = {
    INSTANCE_PROFILE: "the instance profile (IMDS)",
    DHMC: "Default Host Management Configuration (the agent's shared credentials file)",
    HYBRID: "the hybrid activation (the agent's shared credentials file)",
}
DEFAULT_PROFILE = "default"  # shared_Credentials.go:30, 72-74
# IAM role names: 1-64 of [\w+=,.@-] (IAM API reference, CreateRole RoleName).
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}\Z", re.ASCII)
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})\Z"
)
# Where the agent's own user (root, LocalSystem) keeps ~/.aws/credentials, for a hybrid
# node whose runtime config cannot say (GetSharedCredsFilePath with the agent's HOME).
ROOT_SHARED_CREDENTIALS = {
    "linux": "/root/.aws/credentials",
    "macos": "/var/root/.aws/credentials",
    "windows": r"C:\Windows\System32\config\systemprofile\.aws\credentials",
}
RUN_AS_ROOT = (
    "Run ssmdiag as root (`sudo ssmdiag check`; the daemon's CAP_DAC_READ_SEARCH also "
    "reads it) to verify the agent's permissions."
)


class Secret:
    """A credential value: usable by the code that signs, invisible to repr, str and logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


def parse_time(text: Any) -> Optional[datetime.datetime]:
    """RFC 3339 as Go's time.Time and IMDS write it (any fraction, Z or an offset), in UTC;
    None for anything else and for Go's zero time (nothing recorded)."""
    if not isinstance(text, str):
        return None
    match = _RFC3339.match(text.strip())
    if not match:
        return None
    day, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    micro = f".{(fraction or '')[:6].ljust(6, '0')}"
    try:
        parsed = datetime.datetime.fromisoformat(f"{day}T{clock}{micro}{zone}")
    except ValueError:
        return None
    if parsed.year <= 1:
        return None
    return parsed.astimezone(datetime.timezone.utc)


def _iso(when: Optional[datetime.datetime]) -> Optional[str]:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


@dataclass(frozen=True)
class AgentCredentials:
    """One set of credentials and where it came from. Only `shown()` may leave this module's
    callers; the three secrets are `Secret`s."""

    source: str  # INSTANCE_PROFILE | DHMC | HYBRID
    where: str  # the IMDS path or the file and its profile
    access_key_id: Secret = field(repr=False)
    secret_access_key: Secret = field(repr=False)
    session_token: Optional[Secret] = field(default=None, repr=False)
    role_name: Optional[str] = None  # IMDS names the instance profile's role
    expires_at: Optional[datetime.datetime] = None


@dataclass(frozen=True)
class CredentialsLookup:
    """What looking for the agent's credentials found.

    state: ok (credentials set) | denied (only root can read them) | none (the agent has
    none) | expired (the shared ones expired) | invalid (unusable as written) | unsupported
    (ssmdiag cannot take them: hybrid without shared credentials, custom identity, ECS, no
    identity) | error (IMDS or a file could not be read)."""

    state: str
    summary: str
    fix: Optional[str] = None
    source: Optional[str] = None
    where: Optional[str] = None
    role_name: Optional[str] = None
    expires_at: Optional[datetime.datetime] = None
    credentials: Optional[AgentCredentials] = field(default=None, repr=False)
    notes: tuple[str, ...] = ()

    def without_secrets(self) -> CredentialsLookup:
        return replace(self, credentials=None)

    def shown(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "source": self.source,
            "where": self.where,
            "role_name": self.role_name,
            "expires_at": _iso(self.expires_at),
            "notes": list(self.notes) or None,
        }


@dataclass(frozen=True)
class RuntimeIdentity:
    """The agent's runtime identity config (identity_runtimeconfig.go:33-42), secrets-free."""

    path: str
    state: str  # ok | missing | denied | invalid | error
    identity_type: str = ""
    credential_source: str = ""
    share_file: str = ""
    share_profile: str = ""
    expires_at: Optional[datetime.datetime] = None
    note: str = ""


def read_runtime_identity(platform: Platform, path: str) -> RuntimeIdentity:
    read = platform.read_file(path)
    if read.outcome in ("missing", "denied"):
        return RuntimeIdentity(path, read.outcome, note=f"{path}: {read.message}")
    if read.outcome != "ok" or read.truncated:
        return RuntimeIdentity(path, "error", note=f"{path}: {read.message or 'too large'}")
    try:
        data = _bounded_loads(read.text)
    except ValueError:
        return RuntimeIdentity(path, "invalid", note=f"{path}: not valid JSON")
    if not isinstance(data, dict):
        return RuntimeIdentity(path, "invalid", note=f"{path}: not a JSON object")
    # encoding/json matches field names case-insensitively (identity._get does the same).
    lowered = {k.lower(): v for k, v in data.items() if isinstance(k, str)}
    return RuntimeIdentity(
        path,
        "ok",
        identity_type=_get(data, "IdentityType") or "",
        credential_source=_get(data, "CredentialSource") or "",
        share_file=_get(data, "ShareFile") or "",
        share_profile=_get(data, "ShareProfile") or "",
        expires_at=parse_time(lowered.get("credentialsexpiresat")),
    )


def parse_shared_credentials(text: str) -> dict[str, dict[str, str]]:
    """section -> key -> value, as the SDK's internal ini reads the file: names compared
    exactly (extra/aws-sdk-go/internal/ini/visitor.go:103-107, 134-138), a repeated section
    starts afresh (:86-89), the last value of a key wins (:60-66), `#`/`;` comment lines."""
    sections: dict[str, dict[str, str]] = {}
    current: Optional[dict[str, str]] = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections[line[1:-1].strip()] = {}
            continue
        key, sep, value = line.partition("=")
        if sep and current is not None:
            current[key.strip()] = value.strip()
    return sections


def read_shared_file(
    platform: Platform, path: str, profile: str, source: str, fix_denied: str = RUN_AS_ROOT
) -> CredentialsLookup:
    """The credentials in one profile of a shared-credentials file (expiry not set here)."""
    where = f"{path} [{profile}]"
    read = platform.read_file(path)
    if read.outcome == "missing":
        return CredentialsLookup(
            "none", f"{path} does not exist: the agent has stored no credentials there",
            source=source, where=where,
        )  # fmt: skip
    if read.outcome == "denied":
        return CredentialsLookup(
            "denied",
            f"{path} is readable only by root (it holds the agent's credentials): ssmdiag "
            "cannot verify what they allow",
            fix_denied,
            source=source,
            where=where,
        )
    if read.outcome != "ok":
        return CredentialsLookup(
            "error", f"{path}: {read.message}", "Check the file: the agent writes it as a "
            "regular file.", source=source, where=where,
        )  # fmt: skip
    if read.truncated:
        return CredentialsLookup(
            "invalid", f"{path} is {read.message or 'larger than ssmdiag reads'}: not a "
            "credentials file the agent wrote", _RESTART, source=source, where=where,
        )  # fmt: skip
    values = parse_shared_credentials(read.text).get(profile)
    if values is None:
        return CredentialsLookup(
            "invalid", f"{path} has no [{profile}] profile: the agent cannot load its "
            "credentials (SharedCredsLoad: failed to get profile)", _RESTART,
            source=source, where=where,
        )  # fmt: skip
    key_id, secret = values.get("aws_access_key_id", ""), values.get("aws_secret_access_key", "")
    missing = [
        name
        for name, value in (("aws_access_key_id", key_id), ("aws_secret_access_key", secret))
        if not value
    ]
    if missing:
        return CredentialsLookup(
            "invalid", f"{path} [{profile}] has no {' and no '.join(missing)}: the agent "
            "cannot load its credentials", _RESTART, source=source, where=where,
        )  # fmt: skip
    token = values.get("aws_session_token", "")
    credentials = AgentCredentials(
        source, where, Secret(key_id), Secret(secret), Secret(token) if token else None
    )
    return CredentialsLookup(
        "ok", f"credentials from {where}", source=source, where=where, credentials=credentials
    )


_RESTART = (
    "Restart the agent so that it fetches and stores fresh credentials "
    "(`sudo systemctl restart amazon-ssm-agent`; Windows: `Restart-Service AmazonSSMAgent`), "
    "then look for credential errors in its log."
)


def read_instance_profile(environ: Mapping[str, str], budget: float) -> CredentialsLookup:
    """The instance profile role's credentials from IMDSv2, as the SDK's ec2rolecreds does."""
    endpoint = (environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS_DEFAULT).rstrip("/")
    base = "/latest/meta-data/iam/security-credentials/"
    source = INSTANCE_PROFILE
    if environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return CredentialsLookup(
            "unsupported", "IMDS is disabled (AWS_EC2_METADATA_DISABLED=true)", source=source
        )
    try:
        address = _imds_address(endpoint)
    except ValueError as exc:
        return CredentialsLookup(
            "error", f"AWS_EC2_METADATA_SERVICE_ENDPOINT is not usable ({exc})",
            "Fix or unset AWS_EC2_METADATA_SERVICE_ENDPOINT.", source=source,
        )  # fmt: skip
    deadline = time.monotonic() + budget
    where = f"{endpoint}{base}"
    try:
        status, kind, token = _request(
            address, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
            deadline,
        )  # fmt: skip
        if status != 200 or _looks_like_a_page(kind, token) or not _TOKEN.match(token.strip()):
            return _imds_error(f"the IMDSv2 token request answered HTTP {status}", where)
        headers = {"X-aws-ec2-metadata-token": token.strip()}
        status, kind, listing = _request(address, "GET", base, headers, deadline)
        if status == 404:
            return CredentialsLookup(
                "none", "no instance profile: IMDS lists no role credentials",
                source=source, where=where,
            )  # fmt: skip
        role = next((line.strip() for line in listing.splitlines() if line.strip()), "")
        if status != 200 or _looks_like_a_page(kind, listing) or not _ROLE_NAME.match(role):
            return _imds_error(
                f"{base} answered HTTP {status} without a role name ({len(listing)} bytes)", where
            )
        where = f"{endpoint}{base}{role}"
        status, _, body = _request(address, "GET", base + role, headers, deadline)
    except _Imds as exc:
        return _imds_error(f"IMDS did not answer ({exc.note})", where)
    if status != 200:
        return _imds_error(f"IMDS answered HTTP {status} for the role's credentials", where)
    try:
        data = _bounded_loads(body)
    except ValueError:
        data = None
    # Never echo the body: it holds the secret key.
    if not isinstance(data, dict):
        return _imds_error(
            f"the role's credentials are not a JSON object ({len(body)} bytes)", where
        )
    code = data.get("Code")
    if code != "Success":  # ec2_role_provider.go:182-185
        shown = code if isinstance(code, str) and code.isalnum() and len(code) < 64 else "?"
        return _imds_error(f"IMDS reports Code {shown} for the role's credentials", where)
    key_id, secret, session = (
        data.get(name) for name in ("AccessKeyId", "SecretAccessKey", "Token")
    )
    if not (isinstance(key_id, str) and key_id and isinstance(secret, str) and secret):
        return _imds_error("the role's credentials lack AccessKeyId or SecretAccessKey", where)
    expires = parse_time(data.get("Expiration"))
    credentials = AgentCredentials(
        source,
        where,
        Secret(key_id),
        Secret(secret),
        Secret(session) if isinstance(session, str) and session else None,
        role_name=role,
        expires_at=expires,
    )
    return CredentialsLookup(
        "ok", f"instance profile role {role} (IMDS)", source=source, where=where,
        role_name=role, expires_at=expires, credentials=credentials,
    )  # fmt: skip


def _imds_error(summary: str, where: str) -> CredentialsLookup:
    return CredentialsLookup(
        "error",
        summary,
        "See the identity and identity.credentials checks (IMDSv2 hop limit, a proxy on "
        "169.254.169.254, the instance profile).",
        source=INSTANCE_PROFILE,
        where=where,
    )


def _expired(found: CredentialsLookup, expires: Optional[datetime.datetime]) -> CredentialsLookup:
    """sharedprovider.go:90-93: workers refuse shared credentials past CredentialsExpiresAt."""
    found = replace(found, expires_at=expires)
    if found.state != "ok" or expires is None:
        return found
    if expires <= datetime.datetime.now(datetime.timezone.utc):
        return replace(
            found,
            state="expired",
            summary=f"the credentials the agent shared in {found.where} expired at "
            f"{_iso(expires)}: its workers refuse them, so sessions cannot start",
            fix=_RESTART + " If it keeps failing, check clock.skew and the agent's network "
            "path to ssm.",
            credentials=None,
        )
    return found


def agent_credentials(
    platform: Platform,
    ident: Identity,
    *,
    agent_settings: Mapping[str, Any],
    environ: Mapping[str, str],
    imds_budget: float,
    binary_path: Optional[str] = None,
) -> CredentialsLookup:
    """The credentials the agent's workers (the session worker among them) use now."""
    paths = platform.agent_paths(binary_path)
    kind = ident.identity_type
    if kind == EC2:
        return _ec2(
            platform, ident, runtime_path=paths.runtime_identity_file,
            dhmc_path=paths.dhmc_credentials_file, environ=environ, budget=imds_budget,
        )  # fmt: skip
    if kind == ONPREM:
        return _hybrid(platform, agent_settings, paths.runtime_identity_file)
    if kind == CUSTOM:
        return CredentialsLookup(
            "unsupported",
            "custom identity: the agent takes credentials from the AWS SDK's default chain in "
            "its own environment, which ssmdiag does not reproduce",
        )
    if kind == ECS:
        return CredentialsLookup("unsupported", "ECS identity: ssmdiag does not check ECS tasks")
    return CredentialsLookup(
        "none", "the agent has no identity, so no credentials (see the identity check)"
    )


def _ec2(
    platform: Platform,
    ident: Identity,
    *,
    runtime_path: str,
    dhmc_path: str,
    environ: Mapping[str, str],
    budget: float,
) -> CredentialsLookup:
    runtime = read_runtime_identity(platform, runtime_path)
    notes: list[str] = []
    shared = runtime.state == "ok" and bool(runtime.share_file)
    if runtime.state == "ok" and runtime.credential_source == "SSM":
        shared = True
    if runtime.state not in ("ok", "missing"):
        notes.append(f"runtime identity config unreadable: {runtime.note}")
    if shared:
        # EC2RoleProvider.ShareFile() is DefaultEC2SharedCredentialsFilePath (ec2_role_provider
        # .go:216-223): ssmdiag's view of it follows [agent] data_dir.
        if runtime.share_file and runtime.share_file != dhmc_path:
            notes.append(f"the runtime config names {runtime.share_file}; read {dhmc_path}")
        found = read_shared_file(platform, dhmc_path, runtime.share_profile or DEFAULT_PROFILE,
                                 DHMC)  # fmt: skip
        return replace(_expired(_must_exist(found), runtime.expires_at), notes=tuple(notes))
    imds = ident.imds
    if (
        runtime.state == "denied"
        and imds is not None
        and imds.iam_state == "none"
        and platform.file_exists(dhmc_path)
    ):
        # The agent's choice is unreadable and there is no instance profile: DHMC is all
        # that is left, and its file is root-only as well.
        found = read_shared_file(platform, dhmc_path, DEFAULT_PROFILE, DHMC)
        return replace(found, notes=tuple(notes))
    found = read_instance_profile(environ, budget)
    if found.state == "none" and platform.file_exists(dhmc_path):
        notes.append(
            f"{dhmc_path} exists but the runtime config names no shared file: the agent uses "
            "it only once Systems Manager gives it DHMC credentials"
        )
    return replace(found, notes=tuple(notes))


def _hybrid(
    platform: Platform, agent_settings: Mapping[str, Any], runtime_path: str
) -> CredentialsLookup:
    share = agent_settings.get("Profile.ShareCreds")
    if share is False:
        return CredentialsLookup(
            "unsupported",
            "hybrid node with Profile.ShareCreds false: the agent keeps its credentials in "
            "memory (signed for with the registration's private key, which ssmdiag never "
            "reads), so ssmdiag cannot verify what they allow",
            source=HYBRID,
        )
    runtime = read_runtime_identity(platform, runtime_path)
    notes: list[str] = []
    if runtime.state == "ok" and runtime.share_file:
        path, profile = runtime.share_file, runtime.share_profile
    else:
        if runtime.state != "missing":
            notes.append(f"runtime identity config: {runtime.note or runtime.state}")
        path = ROOT_SHARED_CREDENTIALS.get(platform.family, "")
        configured = agent_settings.get("Profile.ShareProfile")
        profile = configured if isinstance(configured, str) else ""
        if not path:
            return CredentialsLookup("unsupported", f"no shared file known on {platform.family}")
    profile = profile or DEFAULT_PROFILE
    paths = ntpath if platform.family == "windows" else posixpath
    if not paths.isabs(path):
        return CredentialsLookup(
            "invalid", f"the runtime config names a relative shared file {path!r}", _RESTART,
            source=HYBRID,
        )  # fmt: skip
    found = read_shared_file(platform, path, profile, HYBRID)
    if runtime.state == "ok" and runtime.share_file:
        found = _must_exist(found)
    return replace(_expired(found, runtime.expires_at), notes=tuple(notes))


def _must_exist(found: CredentialsLookup) -> CredentialsLookup:
    """The runtime config names the shared file, so the workers read it: missing is broken."""
    if found.state != "none":
        return found
    return replace(
        found,
        state="invalid",
        summary=f"the agent's runtime config names shared credentials, but {found.summary}: "
        "its workers cannot load credentials, so sessions cannot start",
        fix=_RESTART,
    )
