"""endpoint.s3, endpoint.logs, endpoint.kms: the endpoints the session preferences add.

Probed like the three Session Manager endpoints (same phases, classification and fixes,
on the agent's proxy and no_proxy); only when the preferences need them: S3 logging, a
CloudWatch Logs group, KMS encryption. `ssm-cli get-diagnostics` opens TCP to these;
ssmdiag probes them through TLS and HTTP.
"""

from __future__ import annotations

from typing import Callable

from ssmdiag.checks import endpoint
from ssmdiag.checks.base import Check, Context
from ssmdiag.report import Finding, skip

# service -> (title, what needs it, the preference that asks for it)
NEEDS = {
    "s3": ("Reach S3 (HTTPS 443)", "S3 session logging", "s3_bucket"),
    "logs": ("Reach CloudWatch Logs (HTTPS 443)", "CloudWatch session logging", "log_group"),
    "kms": ("Reach KMS (HTTPS 443)", "KMS session encryption", "kms_key_id"),
}


def _make_run(service: str) -> Callable[[Context], Finding]:
    probe_run = endpoint.make_run(service)
    _, what, key = NEEDS[service]

    def run(ctx: Context) -> Finding:
        if not getattr(ctx.config.session, key):
            return skip(
                f"no {what} in the session preferences: {service} is not needed "
                f"(set [session] {key} or --session-preferences to check it)"
            )
        return probe_run(ctx)

    return run


CHECKS = tuple(
    Check(
        f"endpoint.{service}",
        NEEDS[service][0],
        _make_run(service),
        needs=("agent", "identity", "endpoint_plan", "probes"),
    )
    for service in NEEDS
)
