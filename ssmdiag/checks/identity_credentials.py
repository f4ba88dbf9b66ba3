"""identity.credentials: how the agent gets AWS credentials (never the credentials themselves)."""

from __future__ import annotations

from ssmdiag.checks.base import Check, Context
from ssmdiag.identity import CUSTOM, Identity
from ssmdiag.report import Finding, fail, ok, skip, warn
from ssmdiag.versions import AgentVersion

DHMC_MINIMUM = AgentVersion.parse("3.2.582.0")
BOTH_FIXES = (
    "Attach an instance profile whose role has the AmazonSSMManagedInstanceCore policy "
    "(`aws ec2 associate-iam-instance-profile --instance-id ID --iam-instance-profile "
    "Name=PROFILE`), or enable Default Host Management Configuration in Systems Manager "
    "Fleet Manager (needs agent >= 3.2.582.0 and IMDSv2)."
)


def run(ctx: Context) -> Finding:
    ident: Identity = ctx.fact("identity")
    imds = ident.imds
    version = ctx.agent.version
    details = {
        "hybrid": ident.hybrid,
        "credential_source": ident.credential_source,
        "instance_profile": None if imds is None else imds.instance_profile_arn,
        "dhmc_credentials_file": ident.dhmc_credentials_file,
        "agent_version": str(version) if version else None,
        "identity_type": ident.identity_type,
    }
    if ident.hybrid:
        return ok(
            f"hybrid node {ident.instance_id}: the registration in the agent's vault is its "
            "identity (no instance profile expected)",
            details,
        )
    if ident.identity_type == CUSTOM:
        # common/identity/availableidentities/customidentity/custom_identity.go:47-56
        return ok(
            f"custom identity {ident.instance_id}: the agent takes credentials from the AWS "
            "SDK's default chain in its own environment (no instance profile expected)",
            details,
        )
    if imds is None or imds.state in ("disabled", "unreachable"):
        why = imds.note if imds else "not queried"
        return skip(f"not an EC2 instance as far as IMDS tells ({why})", details)
    if imds.iam_state == "profile":
        return ok(f"instance profile {imds.instance_profile_arn or '(attached)'}", details)
    dhmc = ident.credential_source == "SSM" or ident.dhmc_credentials_file
    if dhmc:
        if version is not None and version < DHMC_MINIMUM:
            return fail(
                f"Default Host Management Configuration needs agent {DHMC_MINIMUM}; "
                f"this node has {version}",
                "Update SSM Agent.",
                details,
            )
        return ok(
            "Default Host Management Configuration credentials (CredentialSource SSM)", details
        )
    if imds.state == "hop_limit":
        return warn(
            "cannot read the instance profile: IMDSv2 hop limit too low",
            "Raise the IMDSv2 hop limit to 2, see the identity check.",
            details,
        )
    if imds.iam_state == "unknown":
        return warn(
            f"could not read IMDS iam/info ({imds.note or imds.state})", BOTH_FIXES, details
        )
    return fail(
        "no instance profile and no Default Host Management Configuration: the agent "
        "has no credentials to register with Systems Manager",
        BOTH_FIXES,
        details,
    )


CHECK = Check("identity.credentials", "Agent credentials source", run, needs=("agent", "identity"))
