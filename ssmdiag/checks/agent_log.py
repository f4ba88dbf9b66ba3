"""agent.log: what the agent's own log says went wrong in the last 24 hours.

The evidence is the agent's: a denied action, missing credentials, a rejected signature,
a session refused by the encryption check, a certificate or a name that failed. Each
finding names the class, the AWS action, how often and when last, and the fix; for a
denied action the fix is the statement of the seeds' policy that grants it
(ssmdiag.policy.statement_text) and where to attach it. Reading and classifying is
ssmdiag.agent_log's job; this module judges and words the result.
"""

from __future__ import annotations

import json
import ntpath
from datetime import datetime
from typing import Any, Optional

from ssmdiag import agent_log as al
from ssmdiag.checks.agent_installed import RESTART
from ssmdiag.checks.base import Check, Context
from ssmdiag.policy import PolicyInputs, build_policy, statement_text
from ssmdiag.report import Finding, fail, ok, skip, warn

WINDOW_TEXT = "the last 24 h"

_SIGNATURE = {
    "clock": "request signature rejected: the clock is off",
    "expired_credentials": "expired credentials (ExpiredToken)",
    "signature": "request signature rejected",
}
_ENCRYPTION = {
    "s3_not_encrypted": "session refused: the S3 bucket for session logs is not encrypted",
    "s3_unverified": "session refused: the S3 bucket's encryption could not be verified",
    "cloudwatch_not_encrypted": "session refused: the CloudWatch log group is not encrypted",
    "cloudwatch_unverified": "session refused: the log group's encryption could not be verified",
}
_TLS = {
    "unknown_authority": "certificate signed by an unknown authority",
    "certificate_time": "certificate expired or not yet valid",
    "hostname": "certificate for another host name",
    "tls": "TLS handshake failed",
}
_ENDPOINT_CHECK = {
    "ssm": "endpoint.ssm",
    "control": "endpoint.ssmmessages",
    "data": "endpoint.ssmmessages",
    "ssmmessages": "endpoint.ssmmessages",
    "websocket": "endpoint.ssmmessages",
    "ec2messages": "endpoint.ec2messages",
    "s3": "endpoint.s3",
    "logs": "endpoint.logs",
    "kms": "endpoint.kms",
    "identity": "identity",
}
_SERVICE_NAME = {
    "ssm": "ssm",
    "control": "ssmmessages (control channel)",
    "data": "ssmmessages (data channel)",
    "websocket": "ssmmessages",
    "identity": "the instance metadata service",
}


def _log_dir(ctx: Context) -> str:
    platform = ctx.platform
    paths = platform.agent_paths()
    ssm_data = ""
    if platform.family == "windows" and paths.runtime_identity_file:
        # %ProgramData%\Amazon\SSM\runtimeconfig\identity_config.json -> SSMDataPath
        ssm_data = ntpath.dirname(ntpath.dirname(paths.runtime_identity_file))
    platform_dir = getattr(paths, "log_dir", "")
    return al.log_dir_for(
        platform.family, platform_dir if isinstance(platform_dir, str) else "", ssm_data
    )


def _identity(ctx: Context) -> Any:
    """The identity fact, only when a fix needs it (it may query IMDS); None if it fails."""
    try:
        return ctx.fact("identity")
    except Exception:  # a fix without "where" is still a fix
        return None


def _where(ident: Any) -> str:
    if ident is None:
        return "the node's IAM role (the role of its instance profile)"
    if getattr(ident, "hybrid", False):
        return "the IAM service role of the node's hybrid activation"
    if getattr(ident, "credential_source", None) == "SSM":
        return (
            "the Default Host Management role (Systems Manager > Fleet Manager > Configure "
            "Default Host Management; by default AWSSystemsManagerDefaultEC2InstanceManagementRole)"
        )
    imds = getattr(ident, "imds", None)
    arn = getattr(imds, "instance_profile_arn", None) if imds is not None else None
    if isinstance(arn, str) and "/" in arn:
        name = arn.rsplit("/", 1)[-1]
        return (
            f"the role of instance profile {name} (`aws iam get-instance-profile "
            f"--instance-profile-name {name} --query 'InstanceProfile.Roles[].RoleName'`)"
        )
    return "the node's IAM role (the role of its instance profile)"


class _Fixes:
    """Fix texts for the findings, sharing the identity and the preferences' inputs."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.family = ctx.platform.family
        self._ident: Any = None
        self._asked = False

    @property
    def ident(self) -> Any:
        if not self._asked:
            self._asked = True
            self._ident = _identity(self.ctx)
        return self._ident

    def inputs(self) -> PolicyInputs:
        region = getattr(self.ident, "region", None)
        region = region if isinstance(region, str) else None
        session = getattr(self.ctx.config, "session", None)
        if session is not None and hasattr(session, "policy_inputs"):
            inputs = session.policy_inputs(region)
            if isinstance(inputs, PolicyInputs):
                return inputs
        return PolicyInputs(region=region)

    def statement(self, action: Optional[str]) -> str:
        if action:
            return statement_text(action, self.inputs())
        core = dict(build_policy(self.inputs())["Statement"][0])
        core.pop("Sid", None)
        return json.dumps(core, separators=(", ", ": "))

    def restart(self) -> str:
        return RESTART.get(self.family, RESTART["linux"])

    def denied(self, findings: list[al.LogFinding]) -> str:
        where = _where(self.ident)
        blocked = [f for f in findings if f.explicit_deny]
        if blocked:
            first = blocked[0]
            return (
                f"An explicit deny in a {first.explicit_deny} refuses "
                f"{first.action or 'the call'}: an Allow cannot override it, so narrow or "
                "remove that deny (AWS Organizations SCP, permissions boundary or VPC "
                f"endpoint policy). The statement that grants it: {self.statement(first.action)}"
            )
        statements = []
        for finding in findings:
            text = self.statement(finding.action)
            if text not in statements:
                statements.append(text)
        if len(statements) == 1:
            return f"Add this statement to a policy of {where}: {statements[0]}"
        return f"Add these statements to a policy of {where}: " + " ".join(statements)

    def fix(self, finding: al.LogFinding) -> str:
        cls, kinds = finding.cls, finding.kinds
        host = finding.hosts[0] if finding.hosts else None
        check = _ENDPOINT_CHECK.get(finding.service, "the endpoint.* checks")
        if cls == al.ACCESS_DENIED:
            return self.denied([finding])
        if cls == al.NO_IDENTITY:
            return (
                "On EC2, let the agent reach the instance metadata service (see the "
                "`identity` check: IMDSv2 hop limit, AWS_EC2_METADATA_DISABLED, a proxy for "
                "169.254.169.254); elsewhere register the node with a hybrid activation: "
                "`sudo amazon-ssm-agent -register -code CODE -id ID -region REGION`; then "
                f"restart the agent: {self.restart()}."
            )
        if cls == al.NO_CREDENTIALS:
            return (
                "Attach an instance profile whose role has the AmazonSSMManagedInstanceCore "
                "policy (`aws ec2 associate-iam-instance-profile --instance-id ID "
                "--iam-instance-profile Name=PROFILE`), or enable Default Host Management "
                "Configuration (agent >= 3.2.582.0, IMDSv2); see identity.credentials."
            )
        if cls == al.SIGNATURE:
            if "expired_credentials" in kinds and len(kinds) == 1:
                return (
                    "The agent signed with expired credentials: check the clock (clock.skew) "
                    f"and restart the agent so it fetches new ones: {self.restart()}."
                )
            return (
                "Synchronise the clock: AWS refuses requests signed more than 5 minutes off "
                "(chrony or systemd-timesyncd; on EC2 the Amazon Time Sync Service, "
                f"169.254.169.123; see clock.skew), then restart the agent: {self.restart()}."
            )
        if cls == al.ENCRYPTION_CHECK:
            return self._encryption(kinds)
        if cls == al.FINGERPRINT:
            return (
                "The hybrid node's hardware fingerprint changed (a cloned, restored or rebuilt "
                "machine): register it again with a new activation: `sudo amazon-ssm-agent "
                "-register -clear`, then `sudo amazon-ssm-agent -register -code CODE -id ID "
                f"-region REGION`, and restart the agent: {self.restart()}."
            )
        if cls == al.REGISTRATION:
            if "deregistered" in kinds:
                return (
                    "Systems Manager no longer knows this hybrid node's instance id (it was "
                    "deregistered): register it again: `sudo amazon-ssm-agent -register "
                    "-code CODE -id ID -region REGION -y`, then restart the agent: "
                    f"{self.restart()}."
                )
            return (
                "The agent could not register the instance for Default Host Management "
                "(needed only without an instance profile): check its metadata access (the "
                "`identity` check) and that ssm is reachable (endpoint.ssm)."
            )
        if cls == al.TLS:
            where = host or "the endpoint"
            if "unknown_authority" in kinds:
                return (
                    f"The certificate {where} presented is not from a CA this node trusts: a "
                    "TLS-inspecting proxy or firewall re-signs the traffic. Exempt "
                    "*.amazonaws.com from inspection, or add its CA to the OS trust store "
                    f"(`update-ca-trust`, `update-ca-certificates`); see {check}."
                )
            if "certificate_time" in kinds:
                return (
                    f"The certificate {where} presented was not valid at the node's time: "
                    "check the clock (clock.skew); otherwise a TLS-inspecting proxy serves an "
                    f"expired certificate; see {check}."
                )
            if "hostname" in kinds:
                return (
                    f"The certificate {where} presented names another host: an endpoint "
                    "override (Ssm.Endpoint, Mgs.Endpoint) or a proxy sends the agent "
                    f"elsewhere; see `ssmdiag endpoints` and {check}."
                )
            return f"The TLS handshake with {where} failed: see network.proxy and {check}."
        if cls == al.DNS:
            return (
                f"{host or 'The endpoint'} does not resolve on this node: check the resolver "
                "(/etc/resolv.conf; the VPC's DNS support and DNS hostnames) and, for an "
                f"interface VPC endpoint, its private DNS; see {check}."
            )
        target = host or _SERVICE_NAME.get(finding.service, finding.service or "AWS")
        return (
            f"The agent could not connect to {target}: check security groups, network ACLs "
            "and routes to the internet or to the VPC endpoints, and the proxy "
            f"(network.proxy); see {check}."
        )

    def _encryption(self, kinds: list[str]) -> str:
        session = getattr(self.ctx.config, "session", None)
        bucket = getattr(session, "s3_bucket", None) or "BUCKET"
        group = getattr(session, "log_group", None) or "LOG_GROUP"
        where = _where(self.ident)
        parts = []
        if "s3_not_encrypted" in kinds:
            parts.append(
                "Turn on default encryption for the session-log bucket (`aws s3api "
                f"put-bucket-encryption --bucket {bucket} --server-side-encryption-configuration "
                '\'{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":'
                '"AES256"}}]}\'`) or clear "Allow only encrypted S3 buckets" in the '
                "Session Manager preferences."
            )
        if "s3_unverified" in kinds:
            parts.append(
                "The agent could not read the bucket's encryption: add to a policy of "
                f"{where}: {self.statement('s3:GetEncryptionConfiguration')}; check the "
                "bucket exists (endpoint.s3)."
            )
        if "cloudwatch_not_encrypted" in kinds or "cloudwatch_unverified" in kinds:
            parts.append(
                "Associate a KMS key with the log group (`aws logs associate-kms-key "
                f'--log-group-name {group} --kms-key-id KEY_ARN`) or clear "Allow only '
                'encrypted CloudWatch log groups" in the Session Manager preferences. The '
                "agent says the same when it cannot find the group: check it exists and "
                f"add to a policy of {where}: {self.statement('logs:DescribeLogGroups')}."
            )
        return " ".join(parts)


def label(finding: al.LogFinding) -> str:
    """What failed, in a few words."""
    cls, kinds = finding.cls, finding.kinds
    host = finding.hosts[0] if finding.hosts else None
    if cls == al.ACCESS_DENIED:
        return f"AccessDenied for {finding.action or 'an action the log does not name'}"
    if cls == al.NO_IDENTITY:
        return "the agent found no identity (neither EC2 nor a hybrid registration)"
    if cls == al.NO_CREDENTIALS:
        if "no_instance_profile" in kinds:
            return "no credentials: no instance profile, no Default Host Management"
        return "no credentials for the agent"
    if cls == al.SIGNATURE:
        return "; ".join(_SIGNATURE[k] for k in kinds if k in _SIGNATURE)
    if cls == al.ENCRYPTION_CHECK:
        return "; ".join(_ENCRYPTION[k] for k in kinds if k in _ENCRYPTION)
    if cls == al.FINGERPRINT:
        return "hybrid registration refused: hardware fingerprint does not match"
    if cls == al.REGISTRATION:
        if "deregistered" in kinds:
            return "hybrid registration unknown to Systems Manager (InvalidInstanceId)"
        return "registration of the instance with Systems Manager failed"
    target = host or _SERVICE_NAME.get(finding.service, finding.service or "AWS")
    if cls == al.TLS:
        reason = next((_TLS[k] for k in kinds if k in _TLS), "TLS error")
        return f"TLS error with {target}: {reason}"
    if cls == al.DNS:
        return f"DNS lookup failed for {target}"
    return f"cannot connect to {target}"


def _times(finding: al.LogFinding) -> str:
    count = f"{finding.count} time{'s' if finding.count != 1 else ''}"
    text = f"{count} in {WINDOW_TEXT}, last at {al.when_text(finding.last)}"
    if finding.persistent:
        text += f"; never worked since {al.when_text(finding.first)}"
    return text


def _files_problem(read: al.LogRead, family: str) -> Optional[Finding]:
    """A result when nothing could be read; None when some file was read."""
    details: dict[str, Any] = {
        "log_dir": read.log_dir,
        "files": [f.to_dict() for f in read.files],
    }
    if not read.found:
        return skip(
            f"no agent log in {read.log_dir} (looked for {', '.join(read.names)} and their "
            "rotations)",
            details,
        )
    if read.readable:
        return None
    broken = [f for f in read.files if f.outcome not in ("ok", "missing")]
    odd = next((f for f in broken if f.outcome == "not_regular"), None)
    if odd is not None:
        if family == "windows":
            move = f"`Rename-Item '{odd.path}' '{odd.path}.bad'`"
        else:
            move = f"`sudo mv {odd.path} {odd.path}.bad`"
        return warn(
            f"the agent's log {odd.path} {odd.message}: ssmdiag does not read it and the "
            "agent cannot write its log there",
            f"Move it aside so the agent can log again: {move}, then restart the agent: "
            f"{RESTART.get(family, RESTART['linux'])}.",
            details,
        )
    first = broken[0]
    hint = " (run ssmdiag as root or Administrator to read it)" if first.outcome == "denied" else ""
    return skip(f"cannot read the agent's log {first.path}: {first.message}{hint}", details)


def run(ctx: Context) -> Finding:
    read = al.read_logs(ctx.platform, _log_dir(ctx), datetime.now())
    problem = _files_problem(read, ctx.platform.family)
    if problem is not None:
        return problem
    findings = al.classify(read.events)
    fixes = _Fixes(ctx)
    details: dict[str, Any] = {
        "log_dir": read.log_dir,
        "window_hours": int(al.WINDOW.total_seconds() // 3600),
        "window_start": al.when_text(read.window_start) if read.window_start else None,
        "read_from": al.when_text(read.covered_from) if read.covered_from else None,
        "files": [f.to_dict() for f in read.files],
        "lines_read": read.lines_total,
        "lines_in_window": len(read.events),
        "classes": {},
        "findings": [],
    }
    if read.stopped:
        details["stopped"] = read.stopped
    for finding in findings:
        entry = finding.to_dict()
        entry["fix"] = fixes.fix(finding) if finding.status != al.RESOLVED else None
        details["findings"].append(entry)
        details["classes"][finding.cls] = details["classes"].get(finding.cls, 0) + finding.count
    cut = (
        f" (only since {al.when_text(read.covered_from)}: the older part was not read)"
        if read.covered_from
        else ""
    )
    if read.bytes_total and not read.lines_total:
        return skip(
            "the agent's log holds no line in the agent's format (binary, or not the "
            "agent's log): nothing to judge",
            details,
        )
    active = [f for f in findings if f.status != al.RESOLVED]
    if not active:
        overcome = [f for f in findings if not f.note]
        if overcome:
            last = max(f.resolved_at for f in overcome if f.resolved_at is not None)
            names = ", ".join(label(f) for f in overcome[:3])
            return ok(
                f"no known failure in the agent's log since {al.when_text(last)}; resolved "
                f"earlier in {WINDOW_TEXT}: {names}",
                details,
            )
        if read.lines_total and not read.events and read.newest:
            return ok(
                f"no known failure in {WINDOW_TEXT} of the agent's log (it wrote nothing in "
                f"that time: its newest line is from {al.when_text(read.newest)})",
                details,
            )
        return ok(f"no known failure in {WINDOW_TEXT} of the agent's log{cut}", details)
    worst = active[0]
    more = len(active) - 1
    summary = f"{label(worst)}: {_times(worst)}" + (
        f" (+{more} more problem{'s' if more != 1 else ''} in details)" if more else ""
    )
    if worst.cls == al.ACCESS_DENIED:
        denied = [f for f in active if f.cls == al.ACCESS_DENIED]
        remediation = fixes.denied(denied)
    else:
        remediation = fixes.fix(worst)
    if worst.status == al.FAIL:
        return fail(summary, remediation, details)
    return warn(summary, remediation, details)


CHECK = Check(
    "agent.log",
    "Agent log evidence",
    run,
    description="Known failures in the last 24 h of the agent's own log, with their fix.",
)
