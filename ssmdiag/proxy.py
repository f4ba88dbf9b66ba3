"""The proxy the agent uses for a URL, from the agent's environment, with Go's rules.

The agent's HTTP clients take `http.ProxyFromEnvironment` (e.g. agent/runcommand/mds/
service.go:105, agent/session/controlchannel/controlchannel.go:204), which is Go's
golang.org/x/net/http/httpproxy. The agent mirror does not vendor that package: it is
the copy inside Go's standard library (src/vendor/golang.org/x/net/http/httpproxy/
proxy.go). The line numbers cited below are those of golang.org/x/net commit de3da570,
the version Go 1.19 ships (the Go that built shared/real-agent). In short:

- HTTPS_PROXY, HTTP_PROXY and NO_PROXY each win over their lower-case spelling; an
  empty value counts as unset (proxy.go:90-106);
- https URLs use the https proxy, http URLs the http proxy, other schemes none
  (proxy.go:127-139): so the metadata service (http://169.254.169.254) is proxied only
  through http_proxy, and https_proxy alone never touches it;
- with REQUEST_METHOD set (a CGI environment), an http URL that would use the http
  proxy fails instead (proxy.go:95, 132-135);
- a proxy value that is not an http, https or socks5 URL is read as "http://" + value;
  a value Go cannot parse is ignored: the agent then connects directly (proxy.go:147-168,
  208-214);
- localhost and loopback addresses never use a proxy (proxy.go:181-189);
- no_proxy (proxy.go:216-274, 339-371): `*` bypasses all; entries are trimmed and
  lower-cased; a CIDR matches IP literals; an IP (optionally `ip:port` / `[ip]:port`)
  matches that IP; anything else is a domain: `example.com` matches it and its
  subdomains, `.example.com` and `*.example.com` subdomains only, `host:port` one port.
  Domain entries are also compared with IP literals as text (so `169.254` bypasses
  169.254.169.254 in this Go version; x/net since cde1dda9, 2025, no longer does).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional, Union
from urllib.parse import urlsplit

from ssmdiag.gourl import GoURLError, go_url_parse

_IP = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_NET = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# canonicalAddr's default ports (proxy.go:277-281).
_PORTS = {"http": 80, "https": 443, "socks5": 1080}


def _env_named(environ: Mapping[str, str], name: str) -> tuple[Optional[str], str]:
    # getEnvAny (proxy.go:92-94, 99-106): the upper-case name first, an empty value is unset.
    for key in (name.upper(), name.lower()):
        value = environ.get(key)
        if value:
            return value, key
    return None, name.lower()


def _env(environ: Mapping[str, str], name: str) -> Optional[str]:
    return _env_named(environ, name)[0]


@dataclass(frozen=True)
class ProxyURL:
    scheme: str
    host: str
    port: int
    has_credentials: bool

    def display(self) -> str:
        """The proxy as it may be shown and logged: credentials never appear."""
        auth = "***@" if self.has_credentials else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{auth}{host}:{self.port}"


class UnusableProxy(ValueError):
    """Go accepts the value but cannot connect through what it names: requests fail."""


def _split_host_port(host_port: str) -> tuple[str, str]:
    """net/url's splitHostPort, as URL.Hostname() and URL.Port() use it."""
    host, port = host_port, ""
    colon = host_port.rfind(":")
    if colon != -1 and all(c in "0123456789" for c in host_port[colon + 1 :]):
        host, port = host_port[:colon], host_port[colon + 1 :]  # validOptionalPort
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def parse_proxy_url(value: str) -> ProxyURL:
    """The proxy Go makes of a proxy variable (parseProxy, proxy.go:147-168).

    Raises ValueError when Go cannot parse it: the agent then ignores the setting.
    The message never contains the value (it may hold credentials)."""
    try:
        parsed = go_url_parse(value)
    except GoURLError as exc:
        first_error: Optional[GoURLError] = exc
    else:
        first_error = None
        if parsed.scheme in ("http", "https", "socks5"):
            return _proxy_url(parsed.scheme, parsed.host, parsed.has_user)
    try:
        # "proxy was bogus": Go tries "http://" + value and keeps it if it parses.
        retry = go_url_parse("http://" + value)
    except GoURLError:
        if first_error is not None:
            # Not the parser's message: it may quote part of the value (credentials).
            raise ValueError("Go cannot parse it as a URL") from None
        # Go keeps the first parse (proxy.go:164-167), a scheme its Transport cannot use.
        raise UnusableProxy(f"the agent cannot use a {parsed.scheme!r} proxy") from None
    return _proxy_url(retry.scheme, retry.host, retry.has_user)


def _proxy_url(scheme: str, host_port: str, has_user: bool) -> ProxyURL:
    host, port = _split_host_port(host_port)
    if not host:
        raise UnusableProxy("it names no proxy host")
    # net/http's Transport dials canonicalAddr(proxyURL): the port, else the same table
    # as httpproxy's portMap (proxy.go:277-281): http 80, https 443, socks5 1080.
    number = int(port) if port else _PORTS.get(scheme, 80)
    return ProxyURL(scheme, host, number, has_user)


def _parse_ip(text: str) -> Optional[_IP]:
    """net.ParseIP: no zones, no brackets; IPv4-mapped IPv6 compares as IPv4 (net.IP.Equal)."""
    if "%" in text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _go_split_host_port(entry: str) -> Optional[tuple[str, str]]:
    """net.SplitHostPort: "host:port" or "[host]:port", else None (an error)."""
    if entry.startswith("["):
        end = entry.find("]")
        if end < 0 or entry[end + 1 : end + 2] != ":":
            return None
        host, port = entry[1:end], entry[end + 2 :]
        if "[" in host or "]" in host or "]" in port or "[" in port:
            return None
        return host, port
    colon = entry.rfind(":")
    if colon < 0 or ":" in entry[:colon] or "[" in entry or "]" in entry:
        return None
    return entry[:colon], entry[colon + 1 :]


@dataclass(frozen=True)
class _Rule:
    text: str
    domain: Optional[str] = None  # ".example.com"
    match_host: bool = False  # the bare domain matches too
    ip: Optional[_IP] = None
    net: Optional[_NET] = None
    port: str = ""  # "" matches every port


def _parse_no_proxy(value: str) -> tuple[bool, tuple[_Rule, ...]]:
    """config.init's no_proxy part (proxy.go:216-274)."""
    rules: list[_Rule] = []
    for raw in value.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True, ()  # proxy.go:222-226
        if "/" in entry and "%" not in entry:  # net.ParseCIDR (proxy.go:229-232)
            address, _, bits = entry.partition("/")
            ip = _parse_ip(address)
            if ip is not None and bits.isdigit() and bits.isascii():
                try:
                    net = ipaddress.ip_network(f"{ip}/{int(bits)}", strict=False)
                except ValueError:
                    net = None
                if net is not None:
                    rules.append(_Rule(entry, net=net))
                    continue
        split = _go_split_host_port(entry)  # proxy.go:235-246
        if split is not None:
            host, port = split
            if not host:
                continue
        else:
            host, port = entry, ""
        ip = _parse_ip(host)
        if ip is not None:  # proxy.go:248-251
            rules.append(_Rule(entry, ip=ip, port=port))
            continue
        if host.startswith("*."):  # proxy.go:262-269
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
class Route:
    """How the agent's Go code sends a request to one URL."""

    kind: str  # direct | proxy | refused (Go returns an error, the request fails)
    proxy: Optional[ProxyURL] = None
    reason: str = ""  # why direct or refused


@dataclass(frozen=True)
class ProxySettings:
    """What the agent's environment says about proxies. `source` says where it was read."""

    https_proxy: Optional[str] = None
    http_proxy: Optional[str] = None
    no_proxy: Optional[str] = None
    source: str = "none"
    notes: tuple[str, ...] = field(default=())
    cgi: bool = False  # REQUEST_METHOD is set in the agent's environment
    no_proxy_name: str = "no_proxy"  # the spelling Go reads: NO_PROXY wins when set

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], source: str) -> ProxySettings:
        no_proxy, no_proxy_name = _env_named(environ, "no_proxy")
        return cls(
            _env(environ, "https_proxy"),
            _env(environ, "http_proxy"),
            no_proxy,
            source,
            cgi=bool(environ.get("REQUEST_METHOD")),  # proxy.go:95
            no_proxy_name=no_proxy_name,
        )

    @property
    def any(self) -> bool:
        return bool(self.https_proxy or self.http_proxy)

    def bypasses(self, host: str, port: int) -> Optional[str]:
        """The no_proxy entry (or rule) that sends host:port direct, or None (useProxy,
        proxy.go:173-206)."""
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if host == "localhost":  # compared before lower-casing, as Go does (:181)
            return "localhost is never proxied"
        ip = _parse_ip(host)
        if ip is not None and ip.is_loopback:
            return "loopback is never proxied"
        host = host.strip().lower()
        everything, rules = _parse_no_proxy(self.no_proxy or "")
        if everything:
            return "*"
        for rule in rules:
            if rule.net is not None:
                if ip is not None and ip.version == rule.net.version and ip in rule.net:
                    return rule.text  # cidrMatch ignores the port (:343-345)
                continue
            if rule.port and rule.port != str(port):
                continue
            if rule.ip is not None:
                if ip is not None and ip == rule.ip:
                    return rule.text
                continue
            # domainMatch (:366-371), also tried against IP literals (:200-204).
            if rule.domain is not None and (
                host.endswith(rule.domain) or (rule.match_host and host == rule.domain[1:])
            ):
                return rule.text
        return None

    def route(self, url: str) -> Route:
        """proxyForURL (proxy.go:127-145) for this URL."""
        try:
            parsed = go_url_parse(url)
            scheme, (host, port_text) = parsed.scheme, _split_host_port(parsed.host)
        except GoURLError:
            parts = urlsplit(url)
            scheme, host, port_text = parts.scheme.lower(), parts.hostname or "", ""
        # gorilla/websocket asks the proxy function with ws/wss mapped to http/https
        # (vendor/github.com/gorilla/websocket/client.go:164-168).
        scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
        if scheme == "https":
            setting, name = self.https_proxy, "https_proxy"
        elif scheme == "http":
            setting, name = self.http_proxy, "http_proxy"
        else:
            return Route("direct", reason=f"Go proxies only http and https URLs, not {scheme}")
        if not setting:
            return Route("direct", reason=f"no {name} is set")
        try:
            proxy = parse_proxy_url(setting)
        except UnusableProxy as exc:
            return Route("refused", reason=f"{name} is unusable: {exc}")
        except ValueError as exc:
            return Route("direct", reason=f"{name} is ignored: {exc}")
        if scheme == "http" and self.cgi:
            return Route(
                "refused",
                proxy,
                "REQUEST_METHOD is set, so Go refuses to use HTTP_PROXY and the request fails",
            )
        # canonicalAddr (proxy.go:284-294): the URL's port, else the scheme's.
        port = int(port_text) if port_text else _PORTS[scheme]
        entry = self.bypasses(host, port)
        if entry:
            return Route("direct", reason=f"no_proxy: {entry}")
        return Route("proxy", proxy)

    def proxy_for(self, url: str) -> Optional[ProxyURL]:
        """The proxy the agent would use for this URL, None for a direct connection
        (or a request Go refuses to send, see `route`)."""
        found = self.route(url)
        return found.proxy if found.kind == "proxy" else None
