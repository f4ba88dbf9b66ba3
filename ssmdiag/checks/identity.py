"""identity: where this node lives (region, instance id) and which source said so."""

from __future__ import annotations

from ssmdiag.checks.base import Check, Context
from ssmdiag.identity import Identity
from ssmdiag.report import Finding, fail, ok, warn

HOP_LIMIT_FIX = (
    "Raise the IMDSv2 hop limit to 2 (needed inside containers): `aws ec2 "
    "modify-instance-metadata-options --instance-id ID --http-put-response-hop-limit 2 "
    "--http-endpoint enabled`"
)


def details_of(ident: Identity) -> dict[str, object]:
    imds = ident.imds
    return {
        "region": ident.region,
        "region_source": ident.region_source,
        "instance_id": ident.instance_id,
        "instance_id_source": ident.instance_id_source,
        "identity_type": ident.identity_type,
        "credential_source": ident.credential_source,
        "hybrid": ident.hybrid,
        "imds": None
        if imds is None
        else {"state": imds.state, "endpoint": imds.endpoint, "note": imds.note or None},
        "problems": ident.problems,
    }


def run(ctx: Context) -> Finding:
    ident: Identity = ctx.fact("identity")
    details = details_of(ident)
    if ident.imds is not None and ident.imds.state == "hop_limit":
        return warn(
            "IMDSv2 token requests time out while plain requests are refused (401): the "
            "hop limit is too low for this network path (container?)",
            HOP_LIMIT_FIX,
            details,
        )
    if ident.region is None:
        return fail(
            "no region found (no ssmdiag region, agent identity, registration, Agent.Region, "
            "IMDS or AWS_REGION)",
            "Set --region, or `region` under [network] in /etc/ssmdiag/ssmdiag.toml; on EC2 make "
            "sure IMDS is enabled; on a hybrid node register it with an activation.",
            details,
        )
    if ident.instance_id is None:
        return warn(
            f"region {ident.region} (from {ident.region_source}) but no instance id: the node is "
            "neither a reachable EC2 instance nor registered as a hybrid node",
            "On EC2, enable IMDS (`aws ec2 modify-instance-metadata-options --http-endpoint "
            "enabled`); elsewhere register the node: `amazon-ssm-agent -register -code CODE "
            "-id ID -region REGION`.",
            details,
        )
    kind = "hybrid node" if ident.hybrid else "EC2 instance"
    return ok(
        f"{kind} {ident.instance_id} in {ident.region} (region from {ident.region_source})", details
    )


CHECK = Check("identity", "Node identity and region", run, needs=("agent", "identity"))
