"""network.proxy: the proxy the agent uses (from its own environment), per endpoint."""

from __future__ import annotations

from ssmdiag.checks.base import Check, Context
from ssmdiag.proxy import ProxySettings, Route, UnusableProxy, parse_proxy_url
from ssmdiag.report import Finding, fail, ok, warn

IMDS_ADDRESS = "169.254.169.254"
IMDS_URL = f"http://{IMDS_ADDRESS}/latest/api/token"  # the agent's first IMDSv2 call

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
    proxies: ProxySettings
    proxies, env = ctx.fact("proxies")
    where = WHERE_TO_SET.get(ctx.platform.family, WHERE_TO_SET["linux"])
    plan = ctx.fact("endpoint_plan")
    per_endpoint = {}
    routes: dict[str, Route] = {}
    if plan is not None:
        for endpoint in plan.endpoints:
            route = proxies.route(endpoint.url)
            routes[endpoint.service] = route
            per_endpoint[endpoint.service] = _route_text(route)
    # The agent's IMDS client is an http.Client without a Transport, so Go's
    # DefaultTransport with ProxyFromEnvironment (vendor/github.com/aws/aws-sdk-go/aws/
    # ec2metadata/service.go:83-91), for an http URL: only http_proxy / HTTP_PROXY can
    # send it to a proxy (httpproxy proxy.go:127-139), https_proxy never does.
    imds = proxies.route(IMDS_URL)
    details = {
        "source": env.source,
        "problem": env.problem,
        "https_proxy": _shown(proxies.https_proxy),
        "http_proxy": _shown(proxies.http_proxy),
        "no_proxy": proxies.no_proxy,
        "request_method_set": proxies.cgi,
        "per_endpoint": per_endpoint,
        # A proxy bypassed by a no_proxy entry: which entry (the usual surprise).
        "bypassed": {
            service: route.reason
            for service, route in routes.items()
            if route.kind == "direct" and route.reason.startswith("no_proxy")
        },
        "imds": _route_text(imds),
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
    problems: list[tuple[str, str, str]] = []  # (status, summary, fix)
    for name, value in (("https_proxy", proxies.https_proxy), ("http_proxy", proxies.http_proxy)):
        if value is None:
            continue
        try:
            parse_proxy_url(value)
        except UnusableProxy as exc:
            problems.append(
                (
                    "fail",
                    f"the agent's {name} is unusable ({exc}): its requests through it fail",
                    f"Set {name} to a URL like http://PROXY-HOST:3128, {where}.",
                )
            )
        except ValueError as exc:
            problems.append(
                (
                    "warn",
                    f"the agent ignores its {name} ({exc}) and connects directly",
                    f"Set {name} to a URL like http://PROXY-HOST:3128 (or remove it), {where}.",
                )
            )
    if proxies.https_proxy is None:
        problems.append(
            (
                "warn",
                "the agent has http_proxy but no https_proxy: Go sends HTTPS direct, so the "
                "endpoints are not reached through the proxy",
                (
                    # proxy_windows.go:318-326: a proxy list without `https=` gives the
                    # agent an http proxy only.
                    f"{env.source} names a proxy without a scheme, which the agent takes "
                    "for http only: write it per scheme (`netsh winhttp set proxy "
                    'proxy-server="http=HOST:PORT;https=HOST:PORT"`, or the same in '
                    f"Internet Settings), or set https_proxy {where}."
                    if env.source in ("WinHTTP default proxy", "LocalSystem Internet Settings")
                    else f"Set https_proxy as well, {where}."
                ),
            )
        )
    if imds.kind == "refused":
        problems.append(
            (
                "fail",
                f"the agent's metadata calls to {IMDS_ADDRESS} fail: {imds.reason}",
                "Remove REQUEST_METHOD from the agent's environment, or add "
                f"{IMDS_ADDRESS} to no_proxy, {where}.",
            )
        )
    elif imds.kind == "proxy" and imds.proxy is not None:
        problems.append(
            (
                "warn",
                f"the agent's http_proxy sends its instance metadata calls (IMDS, "
                f"http://{IMDS_ADDRESS}) to the proxy {imds.proxy.display()}: no_proxy lacks "
                f"{IMDS_ADDRESS}, and a proxy cannot reach the instance's metadata, so the "
                "agent gets no EC2 identity or credentials",
                f"Add {IMDS_ADDRESS} to {proxies.no_proxy_name} (Go reads NO_PROXY before "
                f"no_proxy), {where}.",
            )
        )
    for service, route in routes.items():
        if route.kind == "refused" and route.reason not in {p[1] for p in problems}:
            problems.append(
                (
                    "fail",
                    f"the agent's requests to {service} fail: {route.reason}",
                    f"Correct the agent's proxy settings, {where}.",
                )
            )
    if problems:
        worst = fail if any(p[0] == "fail" for p in problems) else warn
        return worst(
            "; ".join(p[1] for p in problems),
            " ".join(dict.fromkeys(p[2] for p in problems)),
            details,
        )
    shown = (
        ", ".join(
            f"{k} via {v}" + (f" ({details['bypassed'][k]})" if k in details["bypassed"] else "")
            for k, v in per_endpoint.items()
        )
        or "no endpoints known"
    )
    return ok(f"the agent's proxy, from {env.source}: {shown}; IMDS {details['imds']}", details)


def _route_text(route: Route) -> str:
    if route.kind == "proxy" and route.proxy is not None:
        return route.proxy.display()
    if route.kind == "refused":
        return f"fails ({route.reason})"
    return "direct"


def _shown(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return parse_proxy_url(value).display()
    except ValueError:
        return "(unusable: not shown, it may hold credentials)"


CHECK = Check(
    "network.proxy", "Agent proxy settings", run, needs=("agent", "proxies", "endpoint_plan")
)
