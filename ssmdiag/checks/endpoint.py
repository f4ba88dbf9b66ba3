"""endpoint.ec2messages, endpoint.ssm, endpoint.ssmmessages: one probe each, run concurrently."""

from __future__ import annotations

from typing import Callable, Optional

from ssmdiag.checks.base import Check, Context
from ssmdiag.endpoints import AGENT_CONFIG_KEY, Endpoint, EndpointPlan
from ssmdiag.partitions import SERVICES
from ssmdiag.probe import ProbeResult
from ssmdiag.report import Finding, error, fail, ok, warn
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
    "tls_timeout": "The TLS handshake stalled: a middlebox accepts TCP but does not pass TLS; "
    "check firewall TLS inspection or MTU issues.",
    "tls_failed": "The TLS handshake failed: check TLS inspection and the system's OpenSSL "
    "policy (update-crypto-policies).",
    "http_error": "TLS works but the HTTPS request failed: check the proxy and any "
    "HTTP-level filtering for {host}.",
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


def _summary(result: ProbeResult) -> str:
    phases = result.phases
    parts = []
    if "dns" in phases and result.addresses:
        where = "private, VPC endpoint" if result.private_addresses else "public"
        parts.append(f"{', '.join(result.addresses[:2])} ({where})")
    if result.proxy:
        parts.append(f"via proxy {result.proxy}")
    tls = phases.get("tls", {})
    if tls.get("version"):
        parts.append(f"{tls['version']}")
    parts.append(f"HTTP {result.http_status}")
    return f"{result.endpoint.host} reachable: " + ", ".join(parts)


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


def _make_run(service: str) -> Callable[[Context], Finding]:
    def run(ctx: Context) -> Finding:
        plan: Optional[EndpointPlan] = ctx.fact("endpoint_plan")
        if plan is None:
            return error(
                "no region known, so the endpoint cannot be derived",
                "set --region or region in the config ([network] region)",
            )
        probes: dict[str, ProbeResult] = ctx.fact("probes")
        result = probes[service]
        details = result.to_details()
        endpoint = result.endpoint
        if endpoint.problem:
            return fail(endpoint.problem, endpoint.fix or "Correct the agent config.", details)
        mismatch = _signing_mismatch(endpoint, plan.region)
        if result.ok:
            if mismatch:
                return fail(f"{_summary(result)}; but {mismatch[0]}", mismatch[1], details)
            if endpoint.notes:
                return warn(
                    f"{_summary(result)}; but {endpoint.notes[0]}",
                    f"Use the https:// form of {AGENT_CONFIG_KEY[service]} unless the path "
                    "is protected otherwise, then restart the agent.",
                    details,
                )
            return ok(_summary(result), details)
        remediation = REMEDIATION.get(result.failure or "", "Check the network path.")
        remediation = remediation.format(host=result.endpoint.host)
        if service == "ec2messages" and probes["ssmmessages"].ok:
            version = ctx.agent.version
            if version is not None and version >= EC2MESSAGES_OPTIONAL_FROM:
                return warn(
                    f"{result.message}; agent {version} stops using ec2messages once "
                    "ssmmessages is connected, so sessions still work (Windows Server 2012 "
                    "and earlier excepted)",
                    remediation,
                    details,
                )
        return fail(result.message, remediation, details)

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
