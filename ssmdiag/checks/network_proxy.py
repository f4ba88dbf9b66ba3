"""network.proxy: the proxy the agent uses (from its own environment), per endpoint."""

from __future__ import annotations

from ssmdiag.checks.base import Check, Context
from ssmdiag.report import Finding, ok, warn

IMDS_ADDRESS = "169.254.169.254"

# Where the agent's proxy settings are changed, by OS family.
WHERE_TO_SET = {
    "linux": "in the agent's unit drop-in (`sudo systemctl edit amazon-ssm-agent`: "
    "Environment=...), then `sudo systemctl restart amazon-ssm-agent`",
    "macos": "in the network's proxy settings (`networksetup -setsecurewebproxy` / "
    "`-setproxybypassdomains`), then `sudo launchctl kickstart -k system/com.amazon.aws.ssm`",
    "windows": "in the service's Environment value (`HKLM\\SYSTEM\\CurrentControlSet\\"
    "Services\\AmazonSSMAgent`, REG_MULTI_SZ), then `Restart-Service AmazonSSMAgent`",
}


def run(ctx: Context) -> Finding:
    proxies, env = ctx.fact("proxies")
    where = WHERE_TO_SET.get(ctx.platform.family, WHERE_TO_SET["linux"])
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
        found = env.source if env.source != "none" else "no agent environment found"
        text = f"the agent uses no proxy ({found})"
        if env.problem:
            return warn(
                text + f"; but {env.problem}",
                "Run ssmdiag with the rights to read the agent's settings (Linux: root or "
                "CAP_SYS_PTRACE for /proc/PID/environ).",
                details,
            )
        return ok(text, details)
    if proxies.https_proxy is None:
        return warn(
            "the agent has http_proxy but no https_proxy: Go sends HTTPS direct, so the "
            "endpoints are not reached through the proxy",
            f"Set https_proxy as well, {where}.",
            details,
        )
    if proxies.bypasses(IMDS_ADDRESS, 80) is None:
        return warn(
            f"the agent uses a proxy but no_proxy lacks {IMDS_ADDRESS}: its metadata calls "
            "go to the proxy",
            f"Add {IMDS_ADDRESS} to no_proxy, {where}.",
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
