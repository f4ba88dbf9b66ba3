"""identity: where this node lives (region, instance id), which identity the agent takes
and why, and whether the hybrid registration file tells the same story as the vault."""

from __future__ import annotations

from typing import Callable

from ssmdiag.checks.base import Check, Context
from ssmdiag.identity import CUSTOM, EC2, ECS, ONPREM, Identity, vault_gap
from ssmdiag.report import Finding, fail, ok, warn

HOP_LIMIT_FIX = (
    "Raise the IMDSv2 hop limit to 2 (needed inside containers): `aws ec2 "
    "modify-instance-metadata-options --instance-id ID --http-put-response-hop-limit 2 "
    "--http-endpoint enabled`"
)

# Commands by OS family.
REGISTER = {
    "linux": "sudo amazon-ssm-agent -register -code CODE -id ID -region {region}",
    "macos": "sudo /opt/aws/ssm/bin/amazon-ssm-agent -register -code CODE -id ID -region {region}",
    "windows": '& "$env:ProgramFiles\\Amazon\\SSM\\amazon-ssm-agent.exe" -register -code CODE '
    "-id ID -region {region}",
}
REMOVE = {"linux": "sudo rm {path}", "macos": "sudo rm {path}", "windows": 'Remove-Item "{path}"'}
RESTART = {
    "linux": "sudo systemctl restart amazon-ssm-agent",
    "macos": "sudo launchctl kickstart -k system/com.amazon.aws.ssm",
    "windows": "Restart-Service AmazonSSMAgent",
}
AS_ROOT = {
    "linux": "Run ssmdiag as root (`sudo ssmdiag check`)",
    "macos": "Run ssmdiag as root (`sudo ssmdiag check`)",
    "windows": "Run ssmdiag as Administrator",
}


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
        "verified": ident.verified,
        "consumption_order": list(ident.consumption_order),
        "consumption_order_source": ident.consumption_order_source,
        "candidates": ident.candidates,
        "vault": None if ident.vault is None else ident.vault.shown(vault=True),
        "registration_file": (
            None if ident.registration_file is None else ident.registration_file.shown()
        ),
        "registration_conflict": ident.registration_conflict,
        "recorded_identity": (
            None
            if ident.recorded_identity_type is None and ident.recorded_instance_id is None
            else {
                "file": ident.runtime_identity_file,
                "identity_type": ident.recorded_identity_type,
                "instance_id": ident.recorded_instance_id,
            }
        ),
        "imds": None
        if imds is None
        else {"state": imds.state, "endpoint": imds.endpoint, "note": imds.note or None},
        "problems": ident.problems,
    }


def _taken(ident: Identity) -> str:
    """What the agent takes, in words."""
    where = {
        ONPREM: "its vault's hybrid registration",
        EC2: "EC2 (IMDS)",
        CUSTOM: "Identity.CustomIdentities",
        ECS: "ECS",
    }.get(ident.identity_type or "", "no identity")
    return f"{where}: {ident.instance_id} in {ident.region}"


def _registration_problem(ident: Identity, family: str) -> tuple[str, str] | None:
    """(summary, fix) when the registration file and the vault disagree."""
    file, vault = ident.registration_file, ident.vault
    if ident.registration_conflict is None or file is None or vault is None:
        return None
    named = f"{file.instance_id} in {file.region or '(no region)'}"
    remove = REMOVE.get(family, REMOVE["linux"]).format(path=file.where)
    register = REGISTER.get(family, REGISTER["linux"]).format(region=file.region or "REGION")
    restart = RESTART.get(family, RESTART["linux"])
    if ident.registration_conflict == "unverified":
        return (
            f"{file.where} names hybrid node {named}, but the agent takes its hybrid identity "
            f"from its vault ({vault.where}), which only root can read: ssmdiag cannot tell "
            "whether that file is current or stale",
            f"{AS_ROOT.get(family, AS_ROOT['linux'])} to see the identity the agent uses.",
        )
    if ident.registration_conflict == "differs":
        return (
            f"the agent uses the hybrid registration in its vault ({vault.instance_id} in "
            f"{vault.region}); {file.where} ({named}) is stale and the agent never reads it",
            f"Delete the stale file (`{remove}`). If this node should be {file.instance_id}, "
            f"register it again with an activation (`{register}`), then `{restart}`.",
        )
    taken = "" if ident.identity_type is None else f"; the agent takes {_taken(ident)}"
    return (
        f"{file.where} (hybrid node {named}) is stale: {vault_gap(vault)}, and the agent "
        f"never reads that file{taken}",
        f"If this node should be hybrid node {file.instance_id}, register it again with an "
        f"activation (`{register}`), then `{restart}`; otherwise delete the stale file "
        f"(`{remove}`).",
    )


def _imds_problem(ident: Identity, family: str) -> tuple[str, str] | None:
    """Something that is not the metadata service answers there (a captive proxy, a web
    filter redirecting 169.254.169.254): the agent cannot take an EC2 identity."""
    imds = ident.imds
    if imds is None or imds.state not in ("not_imds", "error"):
        return None
    if imds.state == "error" and "AWS_EC2_METADATA_SERVICE_ENDPOINT" in imds.note:
        return (imds.note, "Unset AWS_EC2_METADATA_SERVICE_ENDPOINT or make it http://HOST:PORT.")
    if imds.state == "error":
        return None
    return (
        f"something that is not the instance metadata service answers at {imds.endpoint} "
        f"({imds.note}): the agent cannot take an EC2 identity from it",
        "Make 169.254.169.254 reach the instance metadata service directly: exempt it from "
        "any proxy or web filter (no_proxy=169.254.169.254 for the agent; no iptables/"
        "nftables rule redirecting it), and check `curl -s -X PUT -H "
        "'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token`.",
    )


def _restart_problem(ident: Identity, family: str) -> tuple[str, str] | None:
    """The agent recorded another identity at its last start than it would take now."""
    recorded_type, recorded_id = ident.recorded_identity_type, ident.recorded_instance_id
    restart = RESTART.get(family, RESTART["linux"])
    if recorded_type is None:
        return None
    if ident.identity_type is None and ident.instance_id_source == "runtime-identity":
        return (
            f"the agent recorded identity {recorded_type} {recorded_id} at its last start "
            f"({ident.runtime_identity_file}), but it would find no identity now: if it "
            "runs, it keeps the old one only until it restarts, and then does not start",
            "Give the node an identity the agent can take (a hybrid registration, or IMDS "
            f"on EC2) before the agent restarts, then `{restart}`.",
        )
    if not ident.verified or ident.identity_type is None:
        return None
    if (recorded_type, recorded_id) == (ident.identity_type, ident.instance_id):
        return None
    return (
        f"the agent recorded identity {recorded_type} {recorded_id} at its last start "
        f"({ident.runtime_identity_file}), but it now finds {ident.identity_type} "
        f"{ident.instance_id}: a running agent keeps its old identity until it restarts",
        f"Restart the agent: `{restart}`.",
    )


def run(ctx: Context) -> Finding:
    ident: Identity = ctx.fact("identity")
    family = ctx.platform.family
    details = details_of(ident)
    if ident.imds is not None and ident.imds.state == "hop_limit":
        return warn(
            "IMDSv2 token requests time out while plain requests are refused (401): the "
            "hop limit is too low for this network path (container?)",
            HOP_LIMIT_FIX,
            details,
        )
    notes: list[tuple[str, str]] = []
    for problem in (_registration_problem, _restart_problem, _imds_problem):
        found = problem(ident, family)
        if found is not None:
            notes.append(found)
    if ident.region is None:
        return _combined(
            fail,
            notes,
            (
                f"no region found: {_none_found(ident)}; and no ssmdiag region or AWS_REGION",
                "On EC2 make sure IMDS is enabled (`aws ec2 modify-instance-metadata-options "
                "--http-endpoint enabled`); on a hybrid node register it with an activation "
                f"(`{REGISTER.get(family, REGISTER['linux']).format(region='REGION')}`); or "
                "set --region, or `region` under [network] in /etc/ssmdiag/ssmdiag.toml.",
            ),
            details,
        )
    if ident.instance_id is None:
        return _combined(
            warn,
            notes,
            (
                f"region {ident.region} (from {ident.region_source}) but no instance id: "
                f"{_none_found(ident)}",
                "On EC2, enable IMDS (`aws ec2 modify-instance-metadata-options --http-endpoint "
                "enabled`); elsewhere register the node: "
                f"`{REGISTER.get(family, REGISTER['linux']).format(region='REGION')}`.",
            ),
            details,
        )
    if notes:
        return _combined(warn, notes, None, details)
    kind = {ONPREM: "hybrid node", EC2: "EC2 instance", CUSTOM: "custom identity", ECS: "ECS task"}
    name = kind.get(ident.identity_type or "", "node")
    where = {
        "hybrid-vault": "the agent's vault",
        "imds": "IMDS",
        "custom-identity": "Identity.CustomIdentities",
    }
    taken_from = where.get(ident.instance_id_source or "", ident.instance_id_source)
    unused = _unused_registration(ident)
    return ok(
        f"{name} {ident.instance_id} in {ident.region} (region from {ident.region_source}); "
        f"identity from {taken_from}" + unused,
        details,
    )


def _none_found(ident: Identity) -> str:
    tried = "; ".join(
        f"{kind}: {why.removeprefix('not available: ')}"
        for kind, why in ident.candidates.items()
        # The stale-file note already says why OnPrem is not available.
        if not (kind == ONPREM and ident.registration_conflict == "file-only")
    )
    if ECS in ident.consumption_order:
        return (
            "ssmdiag finds no identity the agent can take (Identity.ConsumptionOrder "
            f"{', '.join(ident.consumption_order)} from {ident.consumption_order_source}: {tried})"
        )
    return (
        f'the agent finds no identity and does not start ("failed to find agent identity"; {tried})'
    )


def _unused_registration(ident: Identity) -> str:
    vault = ident.vault
    if vault is None or not vault.complete or ident.identity_type == ONPREM:
        return ""
    return (
        f"; the hybrid registration {vault.instance_id} in its vault is not used: "
        f"Identity.ConsumptionOrder puts {ident.identity_type} first"
    )


def _combined(
    verdict: Callable[..., Finding],
    notes: list[tuple[str, str]],
    main: tuple[str, str] | None,
    details: dict[str, object],
) -> Finding:
    parts = notes + ([main] if main else [])
    return verdict(
        "; ".join(p[0] for p in parts), " ".join(dict.fromkeys(p[1] for p in parts)), details
    )


CHECK = Check("identity", "Node identity and region", run, needs=("agent", "identity"))
