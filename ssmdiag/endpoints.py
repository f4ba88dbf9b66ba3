"""The three endpoints the agent connects to, derived as the agent's own code derives them.

Agent 3.3.1142.0, measured with the real agent-config-probe (tests/test_agent_config_oracle.py):

- ssm and ec2messages: the host comes from the *identity's* region through the endpoint
  helper (common/identity/endpoint/endpoint.go:93-121: SERVICE.REGION.DOMAIN, DOMAIN =
  Agent.ServiceDomain verbatim, else the region's partition suffix; "" for a region that
  is empty, longer than 100 or not [A-Za-z0-9-]). `Ssm.Endpoint` / `Mds.Endpoint` replace
  it (agent/ssm/service.go:93-99, agent/runcommand/mds/service.go:92-101). `Agent.Region`
  only replaces the SigV4 signing region. The AWS SDK then adds `https://` unless the
  value has a scheme (aws-sdk-go aws/endpoints/endpoints.go:322-339); with no endpoint at
  all it resolves one itself (aws/session/session.go:906-946, see `_sdk_resolve`).
- ssmmessages: region = `Mgs.Region`, else the identity's region
  (agent/session/... mgsinteractor.go:97-105); host = url.Parse(`Mgs.Endpoint`).Host, else
  its Path, and only when url.Parse fails the helper's host
  (agent/session/config/config.go:95-114). So `host:8443` gives no endpoint at all.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urlsplit

from ssmdiag.gourl import GoURLError, go_url_parse
from ssmdiag.partitions import SERVICES, dns_suffix, sdk_dns_suffix

# Which agent config key overrides which service's endpoint.
AGENT_CONFIG_KEY = {
    "ssm": "Ssm.Endpoint",
    "ec2messages": "Mds.Endpoint",
    "ssmmessages": "Mgs.Endpoint",
}
# The endpoints session preferences add (issue 13): the session worker's SDK clients take
# the identity's region and the endpoint helper (sdkutil/awsconfig.go:30-35), Kms.Endpoint
# for kms (session/crypto/kmsservice.go:55-56), S3.Endpoint for s3 (s3util/riputil.go:38-39).
SESSION_SERVICES = ("s3", "logs", "kms")
SESSION_CONFIG_KEY = {"s3": "S3.Endpoint", "kms": "Kms.Endpoint"}
_HELPER_REGION = re.compile(r"[A-Za-z0-9-]+\Z")  # endpoint.go:43
_HELPER_REGION_MAX = 100  # endpoint.go:39
_SDK_REGION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\Z")  # v3model.go:44
_SDK_SCHEME = re.compile(r"[^:]+://")  # aws-sdk-go endpoints.go:322


class EndpointError(ValueError):
    pass


@dataclass(frozen=True)
class AgentEndpoint:
    """What the agent's code holds for one service: the URL ("" = none) and signing region."""

    service: str
    url: str
    signing_region: str
    origin: str  # in words: where the URL came from
    source: str = "default"  # default | agent-config | sdk | none
    # The host was built with Agent.ServiceDomain (used verbatim: a stray '.' is its fault).
    from_service_domain: bool = False
    # No URL because Mgs.Endpoint has no host for the agent (not for want of a region).
    mgs_endpoint_hostless: bool = False


def helper_host(service: str, region: str, service_domain: str) -> str:
    """endpoint.go:93-121 GetServiceEndpoint."""
    if not region or len(region) > _HELPER_REGION_MAX or not _HELPER_REGION.match(region):
        return ""
    return f"{service}.{region}.{service_domain or dns_suffix(region)}"


def _sdk_resolve(service: str, region: str) -> tuple[str, str]:
    """The SDK's own resolution when the agent hands it no endpoint (session.go:873-946)."""
    if not _SDK_REGION.match(region):  # v3model.go:500 (also "" : no region)
        return "", ""
    resolved = region
    fips = any(mark in region for mark in ("-fips-", "-fips", "fips-"))
    if fips:  # session.go:987-1004 normalizeRegion
        resolved = region.replace("-fips-", "-").replace("-fips", "").replace("fips-", "")
        return f"https://{service}-fips.{resolved}.{sdk_dns_suffix(resolved)}", resolved
    return f"https://{service}.{region}.{sdk_dns_suffix(region)}", region


def _add_scheme(endpoint: str) -> str:
    return endpoint if _SDK_SCHEME.match(endpoint) else f"https://{endpoint}"


def derive_agent_endpoints(
    identity_region: str, settings: Mapping[str, Any]
) -> dict[str, AgentEndpoint]:
    """service -> AgentEndpoint, exactly as agent-config-probe prints them."""
    domain = str(settings.get("Agent.ServiceDomain") or "")
    agent_region = str(settings.get("Agent.Region") or "")
    domain_words = f"Agent.ServiceDomain {domain!r}" if domain else "the partition's suffix"
    out: dict[str, AgentEndpoint] = {}
    for service in ("ssm", "ec2messages"):
        key = AGENT_CONFIG_KEY[service]
        override = str(settings.get(key) or "")
        signing = agent_region or identity_region
        signing_words = "Agent.Region" if agent_region else "the identity region"
        source = "default"
        if override:
            url, origin, source = (
                _add_scheme(override),
                f"{key} in the agent config",
                "agent-config",
            )
        else:
            host = helper_host(service, identity_region, domain)
            if host:
                url = _add_scheme(host)
                origin = f"identity region {identity_region} and {domain_words}"
            else:
                url, signing = _sdk_resolve(service, signing)
                source = "sdk" if url else "none"
                origin = (
                    f"the AWS SDK's own resolution for {signing_words} (the identity region "
                    f"{identity_region!r} gives the agent no host name)"
                    if url
                    else f"nowhere: the identity region {identity_region!r} gives no host name"
                )
        via_domain = bool(domain) and not override and source == "default"
        out[service] = AgentEndpoint(service, url, signing, origin, source, via_domain)
    mgs_region = str(settings.get("Mgs.Region") or "") or identity_region
    region_words = "Mgs.Region" if settings.get("Mgs.Region") else "the identity region"
    raw = str(settings.get("Mgs.Endpoint") or "")
    host, origin, source = "", "", "default"
    parsed_ok = False
    if raw:
        try:
            parsed = go_url_parse(raw)
            parsed_ok = True
            host = parsed.host or parsed.path
            origin, source = "Mgs.Endpoint in the agent config", "agent-config"
        except GoURLError:
            parsed_ok = False
    if not parsed_ok:
        host = helper_host("ssmmessages", mgs_region, domain)
        origin = f"{region_words} {mgs_region} and {domain_words}"
    url = f"https://{host}" if host else ""
    if not url:
        source = "none"
        origin = (
            f"nowhere: Mgs.Endpoint {raw!r} has no host for the agent (Go's url.Parse reads "
            "the part before ':' as a URL scheme)"
            if parsed_ok
            else f"nowhere: {region_words} {mgs_region!r} gives no host name"
        )
    out["ssmmessages"] = AgentEndpoint(
        "ssmmessages", url, mgs_region, origin, source,
        from_service_domain=bool(domain) and not parsed_ok and bool(url),
        mgs_endpoint_hostless=parsed_ok and not url,
    )  # fmt: skip
    return out


@dataclass(frozen=True)
class Endpoint:
    """One endpoint to probe, or why the agent cannot use it (`problem`)."""

    service: str
    host: str
    port: int
    url: str
    source: str  # default | agent-config | ssmdiag-config | sdk
    signing_region: str = ""
    origin: str = ""
    scheme: str = "https"
    problem: Optional[str] = None  # set: the agent cannot connect; nothing to probe
    fix: Optional[str] = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "service": self.service,
            "host": self.host,
            "port": self.port,
            "url": self.url,
            "source": self.source,
            "signing_region": self.signing_region,
            "origin": self.origin,
        }
        if self.problem:
            data["problem"] = self.problem
        if self.notes:
            data["notes"] = list(self.notes)
        return data


@dataclass(frozen=True)
class EndpointPlan:
    region: str
    dns_suffix: str
    dns_suffix_source: str  # partition | agent-config (Agent.ServiceDomain)
    endpoints: tuple[Endpoint, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region or None,
            "dns_suffix": self.dns_suffix,
            "endpoints": [e.to_dict() for e in self.endpoints],
        }

    def get(self, service: str) -> Endpoint:
        return next(e for e in self.endpoints if e.service == service)


def dns_name_problem(host: str) -> Optional[str]:
    """Why Go's resolver refuses this name (net/dnsclient.go isDomainName), or None."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return None
    except ValueError:
        pass
    if not host or len(host) > 254 or (len(host) == 254 and not host.endswith(".")):
        return "it is empty or longer than 253 characters"
    last, label, numeric_only = ".", 0, True
    for char in host:
        if char.isascii() and (char.isalpha() or char == "_"):
            numeric_only, label = False, label + 1
        elif char.isascii() and char.isdigit():
            label += 1
        elif char == "-":
            if last == ".":
                return "a label starts with '-'"
            numeric_only, label = False, label + 1
        elif char == ".":
            if last in ".-":
                return (
                    "it has an empty label ('..' or a leading '.')"
                    if last == "."
                    else ("a label ends with '-'")
                )
            if label > 63:
                return "a label is longer than 63 characters"
            label = 0
        else:
            return f"it contains {char!r}, which DNS names cannot hold"
        last = char
    if last == "-":
        return "a label ends with '-'"
    if label > 63:
        return "a label is longer than 63 characters"
    if numeric_only:
        return "it is all digits"
    return None


def derive_session_endpoints(
    identity_region: str, settings: Mapping[str, Any], services: tuple[str, ...]
) -> dict[str, AgentEndpoint]:
    """s3 / logs / kms as the session worker's SDK clients get them."""
    domain = str(settings.get("Agent.ServiceDomain") or "")
    domain_words = f"Agent.ServiceDomain {domain!r}" if domain else "the partition's suffix"
    out: dict[str, AgentEndpoint] = {}
    for service in services:
        key = SESSION_CONFIG_KEY.get(service, "")
        override = str(settings.get(key) or "") if key else ""
        if override:
            out[service] = AgentEndpoint(
                service, _add_scheme(override), identity_region, f"{key} in the agent config",
                "agent-config",
            )  # fmt: skip
            continue
        host = helper_host(service, identity_region, domain)
        if host:
            origin = f"identity region {identity_region} and {domain_words}"
            out[service] = AgentEndpoint(
                service, _add_scheme(host), identity_region, origin,
                from_service_domain=bool(domain),
            )  # fmt: skip
        else:
            out[service] = AgentEndpoint(
                service, "", "", f"nowhere: the identity region {identity_region!r} gives no "
                "host name", "none",
            )  # fmt: skip
    return out


def _target(agent: AgentEndpoint) -> Endpoint:
    """Where a probe must go for the agent's URL, or why the agent cannot use it."""
    key = AGENT_CONFIG_KEY.get(agent.service) or SESSION_CONFIG_KEY.get(
        agent.service, "the endpoint"
    )
    correct = (
        f"Correct {key} in the agent config to a URL like https://HOST, then restart the agent."
    )

    def unusable(problem: str, fix: str, host: str = "", url: str = "") -> Endpoint:
        return Endpoint(
            agent.service, host, 0, url or agent.url, agent.source,
            agent.signing_region, agent.origin, problem=problem, fix=fix,
        )  # fmt: skip

    if not agent.url:
        if agent.mgs_endpoint_hostless:
            fix = (
                "Write Mgs.Endpoint as a URL with its scheme, for example "
                '"https://ssmmessages.REGION.amazonaws.com" (a port goes after the host: '
                '"https://HOST:8443"), or remove it; then restart the agent.'
            )
        else:
            fix = (
                "Give the node a valid region (registration or IMDS), or set "
                f"{key} in the agent config; then restart the agent."
            )
        return unusable(
            f"the agent has no {agent.service} endpoint: " + agent.origin.removeprefix("nowhere: "),
            fix,
        )
    try:
        parsed = go_url_parse(agent.url)
    except GoURLError as exc:
        return unusable(f"the agent cannot use {agent.url!r} (from {agent.origin}): {exc}", correct)
    scheme, hostport = parsed.scheme, parsed.host
    bracketed = hostport.startswith("[") and "]:" in hostport
    if hostport.count(":") == 1 or bracketed:
        host, _, port_text = hostport.rpartition(":")
    else:
        host, port_text = hostport, ""
    host = host.strip("[]")
    if scheme not in ("https", "http") or not host:
        why = "no host in it" if not host else f"unsupported scheme {scheme!r}"
        return unusable(
            f"the agent cannot connect to {agent.url!r} (from {agent.origin}): {why}", correct, host
        )
    default_port = 443 if scheme == "https" else 80
    port = int(port_text) if port_text else default_port
    if not 0 < port < 65536:
        return unusable(
            f"the agent's {agent.service} URL {agent.url!r} has port {port_text}, which does "
            "not exist",
            f"Correct the port in {key}, then restart the agent.",
            host,
        )
    problem = dns_name_problem(host)
    if problem:
        fixed = re.sub(r"\.{2,}", ".", host).strip(".")
        fix = (
            "Remove the leading or doubled '.' from Agent.ServiceDomain (the agent uses it "
            f"verbatim: the host should read {fixed!r}), then restart the agent."
            if agent.from_service_domain
            else f"Correct the host name in {key} (or the region it is built from), then "
            "restart the agent."
        )
        return unusable(
            f"the agent's {agent.service} host {host!r} (from {agent.origin}) is not a valid "
            f"DNS name: {problem}; every lookup of it fails",
            fix,
            host,
        )
    notes: tuple[str, ...] = ()
    if scheme == "http":
        notes = (
            f"{key} is a plain http:// URL: the agent's {agent.service} traffic is not encrypted",
        )
    shown = f"[{host}]" if ":" in host else host
    authority = shown if port == default_port else f"{shown}:{port}"
    return Endpoint(
        agent.service, host, port, f"{scheme}://{authority}/", agent.source,
        agent.signing_region, agent.origin, scheme=scheme, notes=notes,
    )  # fmt: skip


def parse_endpoint(service: str, value: str, source: str) -> Endpoint:
    """ssmdiag's own override: a bare host, host:port, or an https URL."""
    text = value.strip()
    try:
        parts = urlsplit(text if "://" in text else f"https://{text}")
    except ValueError as exc:  # "[" and other broken IPv6 literals
        raise EndpointError(f"{service} endpoint {value!r} ({source}): {exc}") from None
    if parts.scheme not in ("https", "wss") or not parts.hostname:
        raise EndpointError(f"{service} endpoint {value!r} ({source}) is not a host or https URL")
    try:
        port = parts.port or 443
    except ValueError:
        raise EndpointError(
            f"{service} endpoint {value!r} ({source}) has an invalid port"
        ) from None
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    authority = shown if port == 443 else f"{shown}:{port}"
    return Endpoint(service, host, port, f"https://{authority}/", source, origin=source)


def plan_endpoints(
    region: Optional[str],
    agent_settings: Mapping[str, Any],
    overrides: Mapping[str, str] | None = None,
    session_services: tuple[str, ...] = (),
) -> EndpointPlan:
    """region: the identity's region (None when unknown). agent_settings: `Section.Key` ->
    value from the agent's config as the agent decodes it. overrides: ssmdiag's own.
    session_services: s3 / logs / kms when the session preferences need them."""
    overrides = overrides or {}
    identity_region = region or ""
    agent = derive_agent_endpoints(identity_region, agent_settings)
    domain = agent_settings.get("Agent.ServiceDomain")
    suffix, suffix_source = (
        (str(domain), "agent-config") if domain else (dns_suffix(identity_region), "partition")
    )
    endpoints = []
    for service in SERVICES:
        if service in overrides:
            endpoint = parse_endpoint(service, overrides[service], "ssmdiag-config")
            endpoints.append(
                Endpoint(**{**endpoint.__dict__, "signing_region": agent[service].signing_region})
            )
            continue
        endpoints.append(_target(agent[service]))
    extra = derive_session_endpoints(identity_region, agent_settings, session_services)
    endpoints += [_target(extra[service]) for service in session_services]
    return EndpointPlan(identity_region, suffix, suffix_source, tuple(endpoints))
