"""network.proxy: the proxy the agent uses (from its own environment), per endpoint."""

from __future__ import annotations

from ssmdiag.checks.base import Check, Context
from ssmdiag.report import Finding, ok, warn

IMDS_ADDRESS = "169.254.169.254"


def run(ctx: Context) -> Finding:
    proxies, env = ctx.fact("proxies")
    plan = ctx.fact("endpoint_plan")
    per_endpoint = {}
    if plan is not None:
        for endpoint in plan.endpoints:
            chosen = proxies.proxy_for(endpoint.url)
            per_endpoint[endpoint.service] = chosen.display() if chosen else "direct"
    details = {
        "source": env.source,
        "problem": env.problem,
        "https_proxy": _shown(proxies.https_proxy),
        "http_proxy": _shown(proxies.http_proxy),
        "no_proxy": proxies.no_proxy,
        "per_endpoint": per_endpoint,
    }
    if not proxies.any:
        where = env.source if env.source != "none" else "no agent environment found"
        text = f"the agent uses no proxy ({where})"
        if env.problem:
            return warn(
                text + f"; but {env.problem}",
                "Run ssmdiag as root (or with CAP_SYS_PTRACE) so it can read the "
                "agent's environment.",
                details,
            )
        return ok(text, details)
    if proxies.https_proxy is None:
        return warn(
            "the agent has http_proxy but no https_proxy: Go sends HTTPS direct, so the "
            "endpoints are not reached through the proxy",
            "Set https_proxy as well in the agent's unit drop-in "
            "(`sudo systemctl edit amazon-ssm-agent`), then restart the agent.",
            details,
        )
    if proxies.bypasses(IMDS_ADDRESS, 80) is None:
        return warn(
            f"the agent uses a proxy but no_proxy lacks {IMDS_ADDRESS}: its metadata calls "
            "go to the proxy",
            f"Add {IMDS_ADDRESS} to no_proxy in the agent's environment (unit drop-in), "
            "then restart the agent.",
            details,
        )
    shown = ", ".join(f"{k} via {v}" for k, v in per_endpoint.items()) or "no endpoints known"
    return ok(f"the agent's proxy, from {env.source}: {shown}", details)


def _shown(value: object) -> object:
    if not isinstance(value, str):
        return value
    from ssmdiag.proxy import parse_proxy_url

    try:
        return parse_proxy_url(value).display()
    except ValueError:
        return "(unparseable)"


CHECK = Check(
    "network.proxy", "Agent proxy settings", run, needs=("agent", "proxies", "endpoint_plan")
)
