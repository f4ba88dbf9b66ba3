"""The three endpoints the agent must reach, derived the way the agent derives them.

Precedence per service: ssmdiag's own [endpoints] override, then the agent config's
`Ssm.Endpoint` / `Mds.Endpoint` / `Mgs.Endpoint`, then SERVICE.REGION.SUFFIX where the
suffix is `Agent.ServiceDomain` when set, else the region's partition suffix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit

from ssmdiag.partitions import SERVICES, dns_suffix

# Which agent config section overrides which service's endpoint.
AGENT_CONFIG_KEY = {
    "ssm": "Ssm.Endpoint",
    "ec2messages": "Mds.Endpoint",
    "ssmmessages": "Mgs.Endpoint",
}


class EndpointError(ValueError):
    pass


@dataclass(frozen=True)
class Endpoint:
    service: str
    host: str
    port: int
    url: str
    source: str  # default | agent-config | ssmdiag-config

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "host": self.host,
            "port": self.port,
            "url": self.url,
            "source": self.source,
        }


@dataclass(frozen=True)
class EndpointPlan:
    region: str
    dns_suffix: str
    dns_suffix_source: str  # partition | agent-config (Agent.ServiceDomain)
    endpoints: tuple[Endpoint, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "dns_suffix": self.dns_suffix,
            "endpoints": [e.to_dict() for e in self.endpoints],
        }

    def get(self, service: str) -> Endpoint:
        return next(e for e in self.endpoints if e.service == service)


def parse_endpoint(service: str, value: str, source: str) -> Endpoint:
    """A bare host (`vpce-1.ssm.us-east-1.vpce.amazonaws.com`), host:port, or an https URL."""
    text = value.strip()
    parts = urlsplit(text if "://" in text else f"https://{text}")
    if parts.scheme not in ("https", "wss") or not parts.hostname:
        raise EndpointError(f"{service} endpoint {value!r} ({source}) is not a host or https URL")
    try:
        port = parts.port or 443
    except ValueError:
        raise EndpointError(
            f"{service} endpoint {value!r} ({source}) has an invalid port"
        ) from None
    host = parts.hostname
    authority = host if port == 443 else f"{host}:{port}"
    return Endpoint(service, host, port, f"https://{authority}/", source)


def plan_endpoints(
    region: str,
    agent_settings: Mapping[str, Any],
    overrides: Mapping[str, str] | None = None,
) -> EndpointPlan:
    """agent_settings: `Section.Key` -> value from the agent's config (as agent.config reads it)."""
    overrides = overrides or {}
    domain = agent_settings.get("Agent.ServiceDomain")
    suffix, suffix_source = (
        (str(domain).strip("."), "agent-config") if domain else (dns_suffix(region), "partition")
    )
    endpoints = []
    for service in SERVICES:
        if service in overrides:
            endpoints.append(parse_endpoint(service, overrides[service], "ssmdiag-config"))
        elif agent_settings.get(AGENT_CONFIG_KEY[service]):
            value = str(agent_settings[AGENT_CONFIG_KEY[service]])
            endpoints.append(parse_endpoint(service, value, "agent-config"))
        else:
            host = f"{service}.{region}.{suffix}"
            endpoints.append(Endpoint(service, host, 443, f"https://{host}/", "default"))
    return EndpointPlan(region, suffix, suffix_source, tuple(endpoints))


def region_from_settings(agent_settings: Mapping[str, Any]) -> Optional[str]:
    value = agent_settings.get("Agent.Region")
    return str(value) if value else None
