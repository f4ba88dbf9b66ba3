"""The proxy the agent uses for a URL, from the agent's environment, with Go's rules.

The agent is a Go program: it takes HTTPS_PROXY (then https_proxy) for https URLs,
and NO_PROXY (then no_proxy) with golang.org/x/net/http/httpproxy semantics:
`*` bypasses all; `example.com` matches it and its subdomains; `.example.com` and
`*.example.com` match subdomains only; IPs and CIDRs match IP literals; `host:port`
limits an entry to one port; localhost and loopback addresses never use a proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional, Union
from urllib.parse import urlsplit

_IP = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_NET = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def _env(environ: Mapping[str, str], name: str) -> Optional[str]:
    for key in (name.upper(), name.lower()):
        value = environ.get(key)
        if value:
            return value
    return None


@dataclass(frozen=True)
class ProxyURL:
    scheme: str
    host: str
    port: int
    has_credentials: bool

    def display(self) -> str:
        """The proxy as it may be shown and logged: credentials never appear."""
        auth = "***@" if self.has_credentials else ""
        return f"{self.scheme}://{auth}{self.host}:{self.port}"


def parse_proxy_url(value: str) -> ProxyURL:
    text = value.strip()
    if "://" not in text:
        text = "http://" + text  # Go: a proxy without a scheme is an http proxy
    parts = urlsplit(text)
    if not parts.hostname:
        raise ValueError(
            f"proxy setting has no host: {ProxyURL('http', '?', 0, '@' in text).display()}"
        )
    port = parts.port or (
        443 if parts.scheme == "https" else 1080 if parts.scheme.startswith("socks") else 80
    )
    return ProxyURL(parts.scheme, parts.hostname, port, bool(parts.username or parts.password))


@dataclass(frozen=True)
class _Rule:
    text: str
    domain: Optional[str] = None  # ".example.com"
    match_host: bool = False  # the bare domain matches too
    ip: Optional[_IP] = None
    net: Optional[_NET] = None
    port: Optional[str] = None


def _parse_no_proxy(value: str) -> tuple[bool, tuple[_Rule, ...]]:
    rules: list[_Rule] = []
    for raw in value.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True, ()
        try:
            return_net = ipaddress.ip_network(entry, strict=False) if "/" in entry else None
        except ValueError:
            return_net = None
        if return_net is not None:
            rules.append(_Rule(entry, net=return_net))
            continue
        host, port = entry, None
        if entry.count(":") == 1 or (entry.startswith("[") and "]:" in entry):
            host, _, port = entry.rpartition(":")
            host = host.strip("[]")
        try:
            rules.append(_Rule(entry, ip=ipaddress.ip_address(host.strip("[]")), port=port))
            continue
        except ValueError:
            pass
        if host.startswith("*."):
            host = host[1:]
        match_host = not host.startswith(".")
        rules.append(
            _Rule(
                entry,
                domain=host if host.startswith(".") else "." + host,
                match_host=match_host,
                port=port,
            )
        )
    return False, tuple(rules)


@dataclass(frozen=True)
class ProxySettings:
    """What the agent's environment says about proxies. `source` says where it was read."""

    https_proxy: Optional[str] = None
    http_proxy: Optional[str] = None
    no_proxy: Optional[str] = None
    source: str = "none"
    notes: tuple[str, ...] = field(default=())

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], source: str) -> ProxySettings:
        return cls(
            _env(environ, "https_proxy"),
            _env(environ, "http_proxy"),
            _env(environ, "no_proxy"),
            source,
        )

    @property
    def any(self) -> bool:
        return bool(self.https_proxy or self.http_proxy)

    def bypasses(self, host: str, port: int) -> Optional[str]:
        """The no_proxy entry (or rule) that sends host:port direct, or None."""
        host = host.lower().rstrip(".")
        if host == "localhost":
            return "localhost is never proxied"
        try:
            ip: Optional[_IP] = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            ip = None
        if ip is not None and ip.is_loopback:
            return "loopback is never proxied"
        everything, rules = _parse_no_proxy(self.no_proxy or "")
        if everything:
            return "*"
        for rule in rules:
            if rule.port is not None and rule.port != str(port):
                continue
            if rule.net is not None and ip is not None and ip in rule.net:
                return rule.text
            if rule.ip is not None and ip is not None and ip == rule.ip:
                return rule.text
            if (
                rule.domain is not None
                and ip is None
                and (host.endswith(rule.domain) or (rule.match_host and host == rule.domain[1:]))
            ):
                return rule.text
        return None

    def proxy_for(self, url: str) -> Optional[ProxyURL]:
        """The proxy the agent would use for this URL, None for a direct connection."""
        parts = urlsplit(url)
        setting = self.https_proxy if parts.scheme == "https" else self.http_proxy
        if not setting or not parts.hostname:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if self.bypasses(parts.hostname, port):
            return None
        return parse_proxy_url(setting)
