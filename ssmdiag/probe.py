"""One probe of one endpoint, the way the agent connects: DNS -> TCP -> (proxy CONNECT) -> TLS
-> HTTPS, each phase timed, every failure classified with what to change.

DNS, TCP, CONNECT and TLS run on plain sockets so each phase has its own timing and
error; the HTTPS request itself goes through requests. Certificates are verified
against the operating system's trust store (as the agent does), plus an optional
extra CA bundle, never against requests' bundled certifi.
"""

from __future__ import annotations

import base64
import concurrent.futures
import email.utils
import errno
import functools
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

from ssmdiag.endpoints import Endpoint
from ssmdiag.proxy import ProxySettings, ProxyURL


@dataclass(frozen=True)
class ProbeSettings:
    connect_timeout: float = 3.0
    probe_timeout: float = 5.0
    ca_bundle: Optional[str] = None


@dataclass
class ProbeResult:
    endpoint: Endpoint
    proxy: Optional[str] = None  # display form, never with credentials
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    failure: Optional[str] = None  # a code from FAILURES, None when the path works
    message: str = ""
    addresses: list[str] = field(default_factory=list)
    private_addresses: bool = False
    http_status: Optional[int] = None
    server_date: Optional[float] = None  # epoch seconds from the Date header
    local_time_at_answer: Optional[float] = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def to_details(self) -> dict[str, Any]:
        return {
            "host": self.endpoint.host,
            "port": self.endpoint.port,
            "url": self.endpoint.url,
            "source": self.endpoint.source,
            "origin": self.endpoint.origin or None,
            "signing_region": self.endpoint.signing_region or None,
            "notes": list(self.endpoint.notes),
            "proxy": self.proxy,
            "addresses": self.addresses,
            "private_addresses": self.private_addresses,
            "phases": self.phases,
            "failure": self.failure,
            "http_status": self.http_status,
        }


class _Failed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _stamp(path: Optional[str]) -> Optional[tuple[int, int]]:
    if not path:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


_trust_lock = threading.Lock()
_trust_cache: dict[tuple[Any, ...], ssl.SSLContext] = {}


def trust_context(ca_bundle: Optional[str]) -> ssl.SSLContext:
    """The OS trust store (OpenSSL's default paths: /etc/ssl/certs, /etc/pki/...), plus extras.

    Built once and reused while the trust files are unchanged: loading the store costs
    ~50 ms of CPU and ~1 MB per context, and a daemon probing every few minutes must
    not pay that per probe. A changed store or bundle (update-ca-trust) is picked up
    at the next probe.
    """
    defaults = ssl.get_default_verify_paths()
    key = (ca_bundle, _stamp(ca_bundle), _stamp(defaults.cafile), _stamp(defaults.capath))
    with _trust_lock:
        context = _trust_cache.get(key)
        if context is None:
            context = ssl.create_default_context()  # the system store, not certifi
            if ca_bundle:
                context.load_verify_locations(cafile=ca_bundle)
            _trust_cache.clear()  # only the current trust is worth keeping
            _trust_cache[key] = context
        return context


# --- the smallest DER reader that yields a certificate's subject and issuer -----------------
_NAME_OIDS = {
    b"\x55\x04\x03": "CN",
    b"\x55\x04\x0a": "O",
    b"\x55\x04\x0b": "OU",
    b"\x55\x04\x06": "C",
}


def _der(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at pos."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, body, stop = _der(data, start)
        out.append((tag, body, stop))
        start = stop
    return out


def _name(data: bytes, start: int, end: int) -> str:
    parts = []
    for _, rdn_start, rdn_end in _children(data, start, end):
        for _, atv_start, atv_end in _children(data, rdn_start, rdn_end):
            (oid_tag, oid_s, oid_e), (_, val_s, val_e) = _children(data, atv_start, atv_end)[:2]
            label = _NAME_OIDS.get(data[oid_s:oid_e])
            if oid_tag == 6 and label:
                parts.append(f"{label}={data[val_s:val_e].decode('utf-8', 'replace')}")
    return ", ".join(parts) or "(empty name)"


def certificate_names(der: bytes) -> tuple[str, str]:
    """(subject, issuer) of a DER certificate; ('?', '?') when it cannot be read."""
    try:
        _, cert_s, cert_e = _der(der, 0)
        _, tbs_s, tbs_e = _children(der, cert_s, cert_e)[0]
        fields = _children(der, tbs_s, tbs_e)
        if fields[0][0] == 0xA0:  # explicit version
            fields = fields[1:]
        issuer, subject = fields[2], fields[4]
        return _name(der, subject[1], subject[2]), _name(der, issuer[1], issuer[2])
    except (IndexError, ValueError):
        return "?", "?"


# --- phases ---------------------------------------------------------------------------------
def _resolve(host: str, port: int, timeout: float) -> list[str]:
    # getaddrinfo has no timeout of its own: bound it with a worker thread.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
    pool.shutdown(wait=False)
    try:
        infos = future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise _Failed(
            "dns_timeout", f"DNS lookup of {host} got no answer within {timeout:g} s"
        ) from None
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            raise _Failed("dns_not_found", f"DNS name {host} does not exist (NXDOMAIN)") from None
        if exc.errno == socket.EAI_AGAIN:
            raise _Failed(
                "dns_timeout", f"DNS lookup of {host} failed temporarily (no DNS server answered)"
            ) from None
        raise _Failed("dns_error", f"DNS lookup of {host} failed: {exc.strerror}") from None
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _connect(addresses: Sequence[str], port: int, timeout: float, what: str) -> socket.socket:
    last: Optional[_Failed] = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except (socket.timeout, TimeoutError):
            last = _Failed(
                "connection_timeout",
                f"TCP connect to {what} ({address}:{port}) timed out after {timeout:g} s",
            )
        except ConnectionRefusedError:
            last = _Failed(
                "connection_refused", f"TCP connect to {what} ({address}:{port}) was refused"
            )
        except OSError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                last = _Failed("connection_timeout", f"no route to {what} ({address}:{port})")
            else:
                last = _Failed(
                    "connection_error",
                    f"TCP connect to {what} ({address}:{port}) failed: {exc.strerror or exc}",
                )
    raise last or _Failed("dns_not_found", f"DNS returned no address for {what}")


def _connect_tunnel(
    sock: socket.socket, proxy: ProxyURL, raw_proxy: str, endpoint: Endpoint, timeout: float
) -> None:
    target = f"{endpoint.host}:{endpoint.port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    parts = urlsplit(raw_proxy if "://" in raw_proxy else f"http://{raw_proxy}")
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        lines.append("Proxy-Authorization: Basic " + base64.b64encode(pair.encode()).decode())
    sock.settimeout(timeout)
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer and len(answer) < 16384:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    except (socket.timeout, TimeoutError):
        raise _Failed(
            "proxy_timeout", f"proxy {proxy.display()} did not answer CONNECT within {timeout:g} s"
        ) from None
    except OSError as exc:
        raise _Failed(
            "proxy_refused",
            f"proxy {proxy.display()} dropped the connection: {exc.strerror or exc}",
        ) from None
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        raise _Failed(
            "proxy_refused", f"proxy {proxy.display()} gave no HTTP answer to CONNECT"
        ) from None
    if status == 407:
        raise _Failed(
            "proxy_auth_required", f"proxy {proxy.display()} requires authentication (407)"
        )
    if not 200 <= status < 300:
        raise _Failed(
            "proxy_refused", f"proxy {proxy.display()} refused CONNECT {target}: {status_line}"
        )


def _tls(
    sock: socket.socket, endpoint: Endpoint, context: ssl.SSLContext, timeout: float
) -> dict[str, Any]:
    sock.settimeout(timeout)
    try:
        tls = context.wrap_socket(sock, server_hostname=endpoint.host)
    except ssl.SSLCertVerificationError as exc:
        raise _Failed(
            "tls_untrusted",
            f"TLS certificate of {endpoint.host} is not trusted ({exc.verify_message})",
        ) from None
    except (socket.timeout, TimeoutError):
        raise _Failed(
            "tls_timeout",
            f"TLS handshake with {endpoint.host} stalled: no answer within {timeout:g} s",
        ) from None
    except (ssl.SSLError, OSError) as exc:
        raise _Failed(
            "tls_failed",
            f"TLS handshake with {endpoint.host} failed: {getattr(exc, 'reason', None) or exc}",
        ) from None
    der = tls.getpeercert(binary_form=True) or b""
    subject, issuer = certificate_names(der)
    info = {"version": tls.version(), "subject": subject, "issuer": issuer}
    tls.close()
    return info


def _untrusted_issuer(
    addresses: Sequence[str],
    endpoint: Endpoint,
    proxy: Optional[ProxyURL],
    raw_proxy: Optional[str],
    timeout: float,
) -> str:
    """Look once more, without verifying, only to name who issued the untrusted certificate."""
    try:
        sock = _connect(addresses, proxy.port if proxy else endpoint.port, timeout, "again")
        if proxy and raw_proxy:
            _connect_tunnel(sock, proxy, raw_proxy, endpoint, timeout)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # a look at the issuer only
        sock.settimeout(timeout)
        with context.wrap_socket(sock, server_hostname=endpoint.host) as tls:
            return certificate_names(tls.getpeercert(binary_form=True) or b"")[1]
    except (_Failed, OSError, ssl.SSLError):
        return "?"


@functools.lru_cache(maxsize=1)
def _trust_adapter_class() -> Any:
    """A requests adapter class that verifies with a given context (the OS store), not certifi.

    Made once per process (requests is imported only when a probe runs). A class made
    per call and closing over its context forms a reference cycle that kept every
    probe's context (~1 MB of OpenSSL memory, invisible to Python's collector) alive
    until a full GC pass: the daemon grew by tens of MB over a thousand cycles.
    """
    from requests.adapters import HTTPAdapter

    class TrustAdapter(HTTPAdapter):
        def __init__(self, ssl_context: ssl.SSLContext) -> None:
            self._ssl_context = ssl_context
            super().__init__(max_retries=0)

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["ssl_context"] = self._ssl_context
            super().init_poolmanager(*args, **kwargs)

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            kwargs["ssl_context"] = self._ssl_context
            return super().proxy_manager_for(proxy, **kwargs)

    return TrustAdapter


def _http(
    endpoint: Endpoint, context: ssl.SSLContext, raw_proxy: Optional[str], timeout: float
) -> tuple[int, Optional[str]]:
    import requests

    with requests.Session() as session:
        session.trust_env = False  # the agent's proxy, passed explicitly, not ssmdiag's own
        session.mount("https://", _trust_adapter_class()(context))
        proxies = {endpoint.scheme: raw_proxy} if raw_proxy else {}
        response = session.get(
            endpoint.url, timeout=timeout, proxies=proxies, allow_redirects=False, stream=True
        )
        response.close()
        return response.status_code, response.headers.get("Date")


def probe(endpoint: Endpoint, proxies: ProxySettings, settings: ProbeSettings) -> ProbeResult:
    result = ProbeResult(endpoint)
    if endpoint.problem:  # the agent itself has nothing usable to connect to
        result.failure, result.message = "agent_endpoint", endpoint.problem
        return result
    deadline = time.monotonic() + settings.probe_timeout

    def budget(limit: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Failed(
                "probe_timeout",
                f"probe of {endpoint.host} ran out of its {settings.probe_timeout:g} s",
            )
        return min(limit, left)

    proxy = proxies.proxy_for(endpoint.url)
    # Go's ProxyFromEnvironment: https_proxy for https URLs, http_proxy for http URLs.
    raw_proxy = (
        (proxies.https_proxy if endpoint.scheme == "https" else proxies.http_proxy)
        if (proxy)
        else None
    )
    result.proxy = proxy.display() if proxy else None
    addresses: list[str] = []
    try:
        context = trust_context(settings.ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        result.failure = "ca_bundle_invalid"
        result.message = f"cannot load CA bundle {settings.ca_bundle}: {exc}"
        return result
    phase_start = time.monotonic()
    phase = "dns"

    def done(name: str, **info: Any) -> None:
        nonlocal phase_start
        result.phases[name] = {
            "ok": True,
            "ms": round((time.monotonic() - phase_start) * 1000, 1),
            **info,
        }
        phase_start = time.monotonic()

    try:
        # With a proxy the agent resolves only the proxy; the proxy resolves the endpoint.
        lookup_host = proxy.host if proxy else endpoint.host
        lookup_port = proxy.port if proxy else endpoint.port
        addresses = _resolve(lookup_host, lookup_port, budget(settings.probe_timeout))
        result.addresses = addresses
        if not proxy:
            result.private_addresses = all(_is_private(a) for a in addresses)
        done("dns", host=lookup_host, addresses=addresses)
        phase = "tcp"
        sock = _connect(
            addresses,
            lookup_port,
            budget(settings.connect_timeout),
            f"proxy {proxy.display()}" if proxy else endpoint.host,
        )
        done("tcp", peer=str(sock.getpeername()[0]))
        if endpoint.scheme == "http":
            sock.close()  # plain HTTP: no tunnel and no TLS; the request goes as it is
        elif proxy and raw_proxy:
            phase = "proxy"
            _connect_tunnel(sock, proxy, raw_proxy, endpoint, budget(settings.connect_timeout))
            done("proxy", proxy=proxy.display())
        if endpoint.scheme == "https":
            phase = "tls"
            try:
                tls_info = _tls(sock, endpoint, context, budget(settings.connect_timeout))
            except _Failed as failure:
                if failure.code == "tls_untrusted":
                    issuer = _untrusted_issuer(
                        addresses, endpoint, proxy, raw_proxy, budget(settings.connect_timeout)
                    )
                    result.phases["tls"] = {"ok": False, "issuer": issuer}
                    failure.message += f"; certificate issued by {issuer}"
                raise
            done("tls", **tls_info)
        phase = "http"
        try:
            status, date = _http(endpoint, context, raw_proxy, budget(settings.probe_timeout))
        except Exception as exc:  # requests' many exception types: all one phase failure
            raise _Failed(
                "http_error",
                f"{endpoint.scheme.upper()} request to {endpoint.url} failed: {type(exc).__name__}",
            ) from None
        result.http_status = status
        result.local_time_at_answer = time.time()
        if date:
            parsed = email.utils.parsedate_to_datetime(date)
            result.server_date = parsed.timestamp() if parsed else None
        done("http", status=status)
    except _Failed as failure:
        result.failure, result.message = failure.code, failure.message
        result.phases.setdefault(phase, {})
        result.phases[phase].update(
            {
                "ok": False,
                "error": failure.message,
                "ms": round((time.monotonic() - phase_start) * 1000, 1),
            }
        )
    return result


def _is_private(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_private
    except ValueError:
        return False


def probe_all(
    endpoints: Sequence[Endpoint], proxies: ProxySettings, settings: ProbeSettings
) -> dict[str, ProbeResult]:
    """All endpoints at once: three blackholed endpoints cost one timeout, not three."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(endpoints)))
    futures = {e.service: pool.submit(probe, e, proxies, settings) for e in endpoints}
    pool.shutdown(wait=False)
    results: dict[str, ProbeResult] = {}
    hard_stop = time.monotonic() + settings.probe_timeout + 0.5
    for endpoint in endpoints:
        future = futures[endpoint.service]
        try:
            results[endpoint.service] = future.result(max(0.0, hard_stop - time.monotonic()))
        except concurrent.futures.TimeoutError:
            results[endpoint.service] = ProbeResult(
                endpoint,
                failure="probe_timeout",
                message=f"probe of {endpoint.host} did not finish within "
                f"{settings.probe_timeout:g} s",
            )
    return results
