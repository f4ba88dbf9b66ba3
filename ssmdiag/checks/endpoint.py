"""endpoint.ec2messages, endpoint.ssm, endpoint.ssmmessages: one probe each, run concurrently."""

from __future__ import annotations

import ipaddress
import time
from typing import Callable, Optional

from ssmdiag.checks.base import Check, Context
from ssmdiag.checks.network_proxy import WHERE_TO_SET
from ssmdiag.endpoints import AGENT_CONFIG_KEY, Endpoint, EndpointPlan
from ssmdiag.partitions import SERVICES
from ssmdiag.probe import (
    CERTIFICATE_FAILURES,
    CertificateInfo,
    ProbeResult,
    middlebox,
    utc_text,
)
from ssmdiag.proxy import ProxySettings
from ssmdiag.report import Finding, fail, ok, skip, warn
from ssmdiag.versions import AgentVersion

# From this agent version ec2messages is not polled once ssmmessages is connected.
EC2MESSAGES_OPTIONAL_FROM = AgentVersion.parse("3.3.40.0")

# What to change, by failure class. {host} is the endpoint's host name.
REMEDIATION = {
    "dns_not_found": "The name does not resolve: with an interface VPC endpoint enable its "
    "private DNS (or add a Route 53 private zone for {host}); check the VPC's DNS "
    "resolution setting and the endpoint overrides in amazon-ssm-agent.json.",
    "dns_timeout": "No DNS server answered: check /etc/resolv.conf, the VPC resolver "
    "(169.254.169.253) and any firewall blocking UDP/TCP 53.",
    "dns_error": "DNS lookup failed: check /etc/resolv.conf and /etc/nsswitch.conf.",
    "dns_invalid_name": "The host name is not a valid DNS name (too long, an empty or over-long "
    "label, or characters DNS names cannot hold), so no lookup can succeed: correct the "
    "endpoint override ([endpoints] in the ssmdiag config, or Ssm.Endpoint / Mds.Endpoint / "
    "Mgs.Endpoint in amazon-ssm-agent.json) or the proxy host in the agent's environment.",
    "connection_timeout": "Nothing answered on 443: allow outbound TCP 443 to {host} in the "
    "security group and network ACL, and check the route (NAT gateway, internet gateway or "
    "an interface VPC endpoint for this service).",
    "connection_refused": "Something actively refused port 443: a host firewall (iptables, "
    "nftables) or a wrong endpoint override; check both.",
    "connection_error": "The TCP connection failed: check the route and the host firewall.",
    "proxy_down": "Nothing listens at the agent's proxy: start the proxy, or correct the host "
    "and port in the agent's https_proxy where the agent's environment is set.",
    "proxy_unreachable": "The agent's proxy does not answer: check that it is up and that this "
    "node may reach it (security group, network ACL, route), or correct the agent's "
    "https_proxy.",
    "proxy_dns": "The agent's proxy host does not resolve: correct the host in the agent's "
    "https_proxy, or its DNS record.",
    "proxy_bypassed": "A proxy is configured but no_proxy sends {host} direct, and the direct "
    "path is closed: remove the matching entry from the agent's no_proxy, or open the "
    "direct path to {host}:443.",
    "vpc_endpoint_missing": "{host} resolves publicly while the other endpoints use interface "
    "VPC endpoints: create this service's interface VPC endpoint with private DNS enabled.",
    "proxy_refused": "The agent's proxy refused the tunnel to {host}: allow CONNECT to "
    "{host}:443 on the proxy, or add the host to the agent's no_proxy.",
    "proxy_auth_required": "The proxy wants credentials: put them in the agent's https_proxy "
    "(https_proxy=http://user:password@proxy:port in its unit drop-in) or allow the node "
    "without authentication.",
    "proxy_timeout": "The proxy did not answer: check the proxy address in the agent's "
    "environment and that the proxy is up.",
    "proxy_not_http": "Something other than an HTTP proxy answers at the agent's proxy "
    "address: check the host and port in the agent's https_proxy (a TLS, SOCKS or other "
    "service's port?) and that the proxy runs there.",
    "tls_untrusted": "The certificate is not trusted by this node's trust store: a proxy or "
    "firewall is intercepting TLS (exempt {host} from inspection) or the Amazon Trust "
    "Services roots are missing (update ca-certificates).",
    "tls_expired": "The certificate of {host} has expired: AWS endpoints never serve expired "
    "certificates, so something else answers for {host} (renew its certificate or point the "
    "name back at AWS), or this node's clock is far ahead (see clock.skew).",
    "tls_not_yet_valid": "The certificate of {host} is not valid yet by this node's clock: the "
    "clock is behind; set it right (see clock.skew, chrony or systemd-timesyncd).",
    "tls_name_mismatch": "The certificate presented for {host} is for other names: a private "
    "hosted zone, /etc/hosts entry or endpoint override points {host} at another endpoint; "
    "point it at this service (enable the VPC endpoint's private DNS).",
    "tls_timeout": "The TLS handshake stalled: a middlebox accepts TCP but does not pass TLS; "
    "check firewall TLS inspection or MTU issues.",
    "tls_failed": "The TLS handshake failed: check TLS inspection and the system's OpenSSL "
    "policy (update-crypto-policies).",
    "http_error": "TLS works but the HTTPS request failed: check the proxy and any "
    "HTTP-level filtering for {host}.",
    "http_not_aws": "A web filter, captive portal or proxy answers {host} instead of AWS: "
    "allow {host} in its policy and exempt it from TLS inspection.",
    "http_timeout": "The connection works but the HTTP answer from {host} stalls or crawls: "
    "a proxy or firewall that inspects or filters HTTPS holds it back; exempt {host} from "
    "inspection, or check that middlebox.",
    "http_invalid": "What answers is not an HTTP server: a wrong port or scheme in the "
    "endpoint override, or a middlebox in the path to {host}; check the override and the "
    "path.",
    "http_oversized": "The answer's headers are far larger than any AWS answer: a middlebox "
    "or another service answers for {host}; check the endpoint override, DNS for {host} and "
    "the proxy.",
    "probe_error": "ssmdiag could not finish this probe (an internal error; the other "
    "endpoints are probed normally): run `ssmdiag check --log-level debug` and report the "
    "message as a bug.",
    "probe_timeout": "The probe ran out of time: the path is very slow or stalls; check the "
    "proxy and firewall between the node and {host}.",
    "ca_bundle_invalid": "Fix [network] ca_bundle in the ssmdiag config: it must be a PEM file.",
}


def _label(addresses: list[str], *, endpoint: bool) -> str:
    """private / public / private and public, for addresses as resolved."""
    kinds = {_kind(a) for a in addresses}
    if kinds == {"private"}:
        return "private, VPC endpoint" if endpoint else "private"
    if kinds == {"public"}:
        return "public"
    return " and ".join(sorted(kinds))


def _kind(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if ip.is_global:
        return "public"
    return "private" if ip.is_private else "reserved"


def _summary(result: ProbeResult, others: str = "") -> str:
    parts = []
    if result.proxy:
        where = ""
        if result.proxy_addresses:
            shown = ", ".join(result.proxy_addresses[:2])
            where = f" ({shown}, {_label(result.proxy_addresses, endpoint=False)})"
        parts.append(f"via proxy {result.proxy}{where}, which resolved the endpoint")
    elif result.addresses:
        shown = ", ".join(result.addresses[:2])
        label = _label(result.addresses, endpoint=True)
        if others:
            label += f", while {others} resolve to VPC endpoints"
        parts.append(f"{shown} ({label})")
    tls = result.phases.get("tls", {})
    if tls.get("version"):
        parts.append(f"{tls['version']}")
    parts.append(f"HTTP {result.http_status}")
    return f"{result.endpoint.host} reachable: " + ", ".join(parts)


def _private_peers(service: str, probes: dict[str, ProbeResult]) -> list[str]:
    """The other Session Manager endpoints this node resolves (directly) to private
    addresses: the VPC has interface endpoints for them."""
    return [
        other
        for other in SERVICES
        if other != service
        and other in probes
        and probes[other].addresses
        and not probes[other].proxy
        and all(_kind(a) == "private" for a in probes[other].addresses)
    ]


def _public_among_private(service: str, result: ProbeResult, probes: dict[str, ProbeResult]) -> str:
    """'ssm and ec2messages' when this endpoint resolves only to public addresses while
    those resolve to VPC endpoints; '' otherwise."""
    if service not in SERVICES or result.proxy or not result.addresses:
        return ""
    if not all(_kind(a) == "public" for a in result.addresses):
        return ""
    return " and ".join(_private_peers(service, probes))


def _proxy_place(ctx: Context) -> str:
    """Where the agent's proxy is set on this platform, and where ssmdiag read it."""
    _, env = ctx.fact("proxies")
    where = WHERE_TO_SET.get(ctx.platform.family, WHERE_TO_SET["linux"])
    # Windows: the service's environment wins over these (proxy_windows.go), so either
    # place fixes it.
    elsewhere = {
        "WinHTTP default proxy": "`netsh winhttp show proxy` / `netsh winhttp set proxy`",
        "LocalSystem Internet Settings": "HKU\\S-1-5-18\\Software\\Microsoft\\Windows"
        "\\CurrentVersion\\Internet Settings (ProxyServer, ProxyOverride)",
    }.get(env.source)
    if elsewhere:
        return (
            f"{where} (that setting wins over the {env.source} the agent uses now; or "
            f"change that: {elsewhere})"
        )
    return f"{where} (ssmdiag read the agent's proxy from {env.source})"


def _variable(result: ProbeResult) -> str:
    return "https_proxy" if result.endpoint.scheme == "https" else "http_proxy"


def _diagnose(
    ctx: Context, service: str, result: ProbeResult, probes: dict[str, ProbeResult], region: str
) -> tuple[str, str, str]:
    """(failure class, summary, fix) of a probe that failed."""
    code = result.failure or "unknown"
    host = result.endpoint.host
    generic = REMEDIATION.get(code, "Check the network path.").format(host=host)
    proxy = result.proxy_url
    if code in ("proxy_down", "proxy_unreachable", "proxy_dns") and proxy is not None:
        shown = f"{proxy.host} port {proxy.port}"
        variable = f"the agent's {_variable(result)} ({proxy.display()})"
        if code == "proxy_down":
            return (
                code,
                f"{result.message}: the agent's proxy is down (nothing listens on {shown}), "
                "so the agent reaches no endpoint through it",
                f"Start the proxy on {shown}, or correct {variable} {_proxy_place(ctx)}.",
            )
        if code == "proxy_unreachable":
            return (
                code,
                f"{result.message}: the agent cannot reach its proxy",
                f"Check that the proxy on {shown} is up and that this node may reach it "
                f"(security group, network ACL, route to {proxy.host}); or correct {variable} "
                f"{_proxy_place(ctx)}.",
            )
        return (
            code,
            f"{result.message}: the agent cannot find its proxy",
            f"Correct the proxy host in {variable} {_proxy_place(ctx)}, or its DNS record.",
        )
    if code == "proxy_bypassed" and result.no_proxy_entry is not None:
        proxies: ProxySettings
        proxies, _ = ctx.fact("proxies")
        return (
            code,
            result.message,
            f"Remove {result.no_proxy_entry!r} from the agent's {proxies.no_proxy_name} so "
            f"{host} goes through its proxy {result.bypassed_proxy} (Go reads NO_PROXY before "
            f"no_proxy), {_proxy_place(ctx)}; or open the direct path to {host}:"
            f"{result.endpoint.port} (security group, network ACL, NAT gateway, or an "
            f"interface VPC endpoint for {service}).",
        )
    others = ""
    if code in ("connection_timeout", "connection_refused", "connection_error"):
        others = _public_among_private(service, result, probes)
    if others:
        shown = ", ".join(result.addresses[:2])
        return (
            "vpc_endpoint_missing",
            f"{host} resolves to public {shown} while {others} resolve to private VPC "
            f"endpoint addresses, and the public path is closed ({result.message})",
            f"This VPC has interface endpoints for {others} but {host} does not resolve to "
            f"one: create the interface VPC endpoint com.amazonaws.{region}.{service} in this "
            "VPC (its security group allowing TCP 443 from this node) with private DNS "
            "enabled, or enable private DNS on the one that exists; then "
            f"`getent hosts {host}` shows a private address.",
        )
    cert = result.certificate
    if code in CERTIFICATE_FAILURES and cert is not None:
        return code, result.message, _certificate_fix(code, result, cert, service)
    if code == "http_not_aws":
        who = middlebox(result.answer, result.phases.get("tls", {}))
        through = f" (through the agent's proxy {result.proxy})" if result.proxy else ""
        return (
            code,
            result.message,
            f"Something other than AWS answers {host}{through}"
            + (f": {who}" if who else "")
            + f". Allow {host} (or .amazonaws.com) in that web filter's or proxy's policy and "
            "exempt it from TLS inspection and captive-portal redirects; then "
            f"`curl -sv https://{host}/` from this node shows an x-amzn-RequestId header.",
        )
    return code, result.message, generic


def _certificate_fix(code: str, result: ProbeResult, cert: CertificateInfo, service: str) -> str:
    host = result.endpoint.host
    at = (
        f"the server the proxy {result.proxy} reaches"
        if result.proxy
        else f"the server at {', '.join(result.addresses[:2]) or host}"
    )
    amazon = "amazon" in cert.issuer.lower()
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if code == "tls_untrusted":
        intercepted = (
            f"a proxy or firewall is intercepting TLS: exempt {host} from inspection (or, "
            "when the interception is meant to be, install its CA in the operating system's "
            "trust store, which the agent uses)"
        )
        roots = "the Amazon Trust Services roots are missing (update ca-certificates)"
        return f"The certificate of {host} is issued by {cert.issuer}, which this node does " + (
            f"not trust: {roots}; or {intercepted}."
            if amazon
            else f"not trust: {intercepted}; or {roots}."
        )
    if code == "tls_expired":
        clock = (
            f"this node's clock may be far ahead (it says {now}; see clock.skew and "
            "`chronyc tracking` or `timedatectl`)"
        )
        other = (
            f"{at} is not AWS: AWS endpoints never serve expired certificates. Renew the "
            f"certificate there (a TLS-inspecting proxy re-signs with its own CA: renew or "
            f"exempt {host} there), or point {host} back at AWS (endpoint override, "
            "/etc/hosts, a private hosted zone)"
        )
        return (
            f"The certificate of {host} expired on {utc_text(cert.not_after) or '?'} "
            f"({cert.holder()}, issued by {cert.issuer}): "
            + (f"{clock}; otherwise {other}." if amazon else f"{other}; or {clock}.")
        )
    if code == "tls_not_yet_valid":
        return (
            f"The certificate of {host} is valid only from {utc_text(cert.not_before) or '?'} and "
            f"this node's clock says {now}: the node's clock is behind. Set it right (see "
            "clock.skew): enable chrony or systemd-timesyncd (on EC2 the Amazon Time Sync "
            "Service, 169.254.169.123; Windows: `w32tm /resync`), check `chronyc tracking` or "
            "`timedatectl`, then restart the agent."
        )
    names = ", ".join(cert.names()[:6]) or "other names"
    return (
        f"{host} leads to {at}, whose certificate is for {names}: a Route 53 private hosted "
        f"zone, an /etc/hosts entry or an endpoint override sends {host} to another endpoint. "
        f"Point {host} at this service: for an interface VPC endpoint of {service} enable its "
        "private DNS instead of a hand-made zone (or alias the zone to that endpoint); for "
        "an override (Ssm.Endpoint, Mds.Endpoint or Mgs.Endpoint in amazon-ssm-agent.json, "
        "or [endpoints] in the ssmdiag config) use a name its certificate holds."
    )


def _proven(result: ProbeResult) -> bool:
    """The path works and the answer came from AWS (or did not say otherwise)."""
    return result.ok and result.from_aws is not False


def _signing_mismatch(endpoint: Endpoint, identity_region: str) -> Optional[tuple[str, str]]:
    """Agent.Region only changes the SigV4 signing region (ssm/service.go:93-99): signed for
    one region and sent to another region's host, every request is refused by AWS."""
    if endpoint.source != "default" or endpoint.service == "ssmmessages":
        return None
    if not identity_region or endpoint.signing_region in ("", identity_region):
        return None
    return (
        f"the agent signs its {endpoint.service} requests for {endpoint.signing_region} "
        f"(Agent.Region) and sends them to {endpoint.host}: AWS rejects them "
        '("Credential should be scoped to a valid region")',
        "Agent.Region does not move the agent to another region: remove it from "
        "amazon-ssm-agent.json (or set it to "
        f"{identity_region}); the node's region comes from its identity (IMDS or the hybrid "
        "registration). Then restart the agent.",
    )


def _unproven_answer(result: ProbeResult) -> tuple[str, str]:
    """(summary part, fix) for an answer without an AWS request id that is no web page."""
    facts = result.answer
    said = [f"{k.replace('_', '-').title()}: {facts[k]}" for k in ("server", "via") if facts.get(k)]
    host = result.endpoint.host
    return (
        f"the answer carries no AWS request id ({'; '.join(said) or 'no Server header'}): it "
        "may come from a proxy, a filter or another service, so it does not prove the path "
        "to AWS",
        f"Check what answers {host}: `curl -sv {result.endpoint.url}` from this node must "
        "show an x-amzn-RequestId header; if a proxy or filter answers, allow "
        f"{host} through it and exempt it from TLS inspection.",
    )


def _make_run(service: str) -> Callable[[Context], Finding]:
    def run(ctx: Context) -> Finding:
        plan: Optional[EndpointPlan] = ctx.fact("endpoint_plan")
        if plan is None:
            # Not this check's failure: `identity` fails and says how to give the node a
            # region; without one the agent itself has no endpoint to connect to.
            return skip(
                "no region is known, so there is no endpoint to probe (see identity; "
                "--region or [network] region probes one anyway)"
            )
        probes: dict[str, ProbeResult] = ctx.fact("probes")
        result = probes[service]
        details = result.to_details()
        endpoint = result.endpoint
        if endpoint.problem:
            return fail(endpoint.problem, endpoint.fix or "Correct the agent config.", details)
        mismatch = _signing_mismatch(endpoint, plan.region)
        if result.ok:
            summary = _summary(result, _public_among_private(service, result, probes))
            if mismatch:
                return fail(f"{summary}; but {mismatch[0]}", mismatch[1], details)
            buts: list[tuple[str, str]] = []
            if endpoint.notes:
                buts.append(
                    (
                        endpoint.notes[0],
                        f"Use the https:// form of {AGENT_CONFIG_KEY[service]} unless the "
                        "path is protected otherwise, then restart the agent.",
                    )
                )
            if result.from_aws is False:
                buts.append(_unproven_answer(result))
            if buts:
                return warn(
                    f"{summary}; but " + "; and ".join(b[0] for b in buts),
                    " ".join(b[1] for b in buts),
                    details,
                )
            return ok(summary, details)
        failure, summary, remediation = _diagnose(
            ctx, service, result, probes, endpoint.signing_region or plan.region
        )
        if failure != result.failure:
            details["failure"], details["probe_failure"] = failure, result.failure
        if service == "ec2messages" and _proven(probes["ssmmessages"]):
            version = ctx.agent.version
            if version is not None and version >= EC2MESSAGES_OPTIONAL_FROM:
                return warn(
                    f"{summary}; agent {version} stops using ec2messages once "
                    "ssmmessages is connected, so sessions still work (Windows Server 2012 "
                    "and earlier excepted)",
                    remediation,
                    details,
                )
        return fail(summary, remediation, details)

    return run


TITLES = {
    "ec2messages": "Reach ec2messages (HTTPS 443)",
    "ssm": "Reach ssm (HTTPS 443)",
    "ssmmessages": "Reach ssmmessages (HTTPS 443)",
}
CHECKS = tuple(
    Check(
        f"endpoint.{service}",
        TITLES[service],
        _make_run(service),
        needs=("agent", "identity", "endpoint_plan", "probes"),
    )
    for service in SERVICES
)


# endpoint.s3 / .logs / .kms (checks/endpoint_session.py) probe the same way.
make_run = _make_run
