"""One probe of one endpoint, the way the agent connects: DNS -> TCP -> (proxy CONNECT) -> TLS
-> HTTP, each phase timed, every failure classified with what to change.

Everything happens on one connection: the HTTP request goes over the very TLS socket
(or plain socket, or CONNECT tunnel) whose DNS, TCP, CONNECT and TLS phases were
measured, written and read with the standard library. A plain-http endpoint behind an
HTTP proxy is asked through the proxy in absolute form (no CONNECT), as Go does.
Certificates are verified against the operating system's trust store (as the agent
does), plus an optional extra CA bundle.

Bounds: a probe has one deadline (`probe_timeout`) and each phase its own limit
(`connect_timeout` for TCP, CONNECT and TLS); reads are checked against the deadline
between reads, so a peer that drips a byte at a time cannot stretch a probe. Only the
status line and headers of an answer are read, at most 64 KiB (`MAX_HEAD`); the body
never. The name lookup runs on a daemon thread (getaddrinfo has no timeout), probes
run on daemon threads: nothing a probe starts can hold the process at exit.
"""

from __future__ import annotations

import base64
import email.utils
import errno
import ipaddress
import math
import os
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

from ssmdiag import __version__, httpwire
from ssmdiag.endpoints import Endpoint, dns_name_problem
from ssmdiag.httpwire import HeadError as _HeadError
from ssmdiag.httpwire import parse_head as _parse_head
from ssmdiag.httpwire import read_head as _read_head
from ssmdiag.httpwire import send as _send
from ssmdiag.proxy import ProxySettings, ProxyURL

MAX_HEAD = httpwire.MAX_HEAD
MAX_PENDING_LOOKUPS = 16  # name lookups still waiting (each on its own thread) before refusing more


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
    server_date_raw: Optional[str] = None  # the Date header as received (shortened)
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


# --- small helpers ---------------------------------------------------------------------------
def _shown(host: str) -> str:
    """A host name as messages show it: a name of thousands of characters is cut."""
    return host if len(host) <= 80 else f"{host[:60]}... ({len(host)} characters)"


def _authority(host: str, port: int, default_port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default_port else f"{shown}:{port}"


def _url(endpoint: Endpoint) -> str:
    """The endpoint's URL, well-formed also for IPv6 literals."""
    default = 443 if endpoint.scheme == "https" else 80
    return f"{endpoint.scheme}://{_authority(endpoint.host, endpoint.port, default)}/"


def _sample(data: bytes) -> str:
    """The first bytes of an answer, as a user can read them in a message."""
    if len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 3:
        return "a TLS record (this port speaks TLS, not plain HTTP)"
    return repr(bytes(data[:40])) + ("..." if len(data) > 40 else "")


def _proxy_authorization(raw_proxy: str) -> Optional[str]:
    parts = urlsplit(raw_proxy if "://" in raw_proxy else f"http://{raw_proxy}")
    if parts.username is None:
        return None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def _parse_date(value: str) -> Optional[float]:
    """Epoch seconds of an HTTP Date header; None when it is not a date."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:  # typeshed says never; be safe with older Pythons
        return None
    if parsed.tzinfo is None:  # "-0000": HTTP dates are always GMT
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        stamp = parsed.timestamp()
    except (OverflowError, ValueError, OSError):
        return None
    return stamp if math.isfinite(stamp) else None


# --- reading an answer's head, bounded in size and time -------------------------------------
# The bounded HTTP/1 reader (_read_head & co.) is ssmdiag/httpwire.py, shared with IMDS.

# --- phases ---------------------------------------------------------------------------------
_lookup_lock = threading.Lock()
_pending_lookups = 0


def _resolve(host: str, port: int, until: float) -> list[str]:
    """getaddrinfo has no timeout of its own: it runs on a daemon thread of its own, and
    the probe waits for it until `until`. The thread ends when the resolver gives up (its
    own timeouts, resolv.conf); it never keeps the process alive at exit, and at most
    MAX_PENDING_LOOKUPS of them wait at once."""
    global _pending_lookups  # noqa: PLW0603 (one counter for the process)
    span = max(0.0, until - time.monotonic())
    problem = dns_name_problem(host)
    if problem:
        raise _Failed(
            "dns_invalid_name",
            f"{_shown(host)} cannot be looked up: it is not a valid DNS name ({problem})",
        )
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def lookup() -> None:
        global _pending_lookups  # noqa: PLW0603
        try:
            outcome["infos"] = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except Exception as exc:  # handed to the waiting probe, which names it
            outcome["error"] = exc
        finally:
            with _lookup_lock:
                _pending_lookups -= 1
            finished.set()

    with _lookup_lock:
        if _pending_lookups >= MAX_PENDING_LOOKUPS:
            raise _Failed(
                "dns_timeout",
                f"DNS lookup of {_shown(host)} not started: {_pending_lookups} earlier lookups "
                "are still waiting for an answer (no DNS server answers)",
            )
        _pending_lookups += 1
    try:
        threading.Thread(target=lookup, name="ssmdiag-dns", daemon=True).start()
    except RuntimeError:  # cannot start a thread: count it back
        with _lookup_lock:
            _pending_lookups -= 1
        raise
    if not finished.wait(span):
        raise _Failed(
            "dns_timeout", f"DNS lookup of {_shown(host)} got no answer within {span:.3g} s"
        )
    error = outcome.get("error")
    if isinstance(error, socket.gaierror):
        if error.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            raise _Failed("dns_not_found", f"DNS name {_shown(host)} does not exist (NXDOMAIN)")
        if error.errno == socket.EAI_AGAIN:
            raise _Failed(
                "dns_timeout",
                f"DNS lookup of {_shown(host)} failed temporarily (no DNS server answered)",
            )
        raise _Failed("dns_error", f"DNS lookup of {_shown(host)} failed: {error.strerror}")
    if isinstance(error, UnicodeError):  # the IDNA codec: an empty or over-long label
        raise _Failed(
            "dns_invalid_name",
            f"{_shown(host)} cannot be looked up: it is not a valid DNS name ({error})",
        )
    if error is not None:
        raise _Failed("dns_error", f"DNS lookup of {_shown(host)} failed: {error}")
    addresses: list[str] = []
    for info in outcome["infos"]:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _connect(addresses: Sequence[str], port: int, until: float, what: str) -> socket.socket:
    """Each address in turn before `until`; like Go's dialer, the time left is shared
    among the addresses left (at least 2 s each while there is that much)."""
    last: Optional[_Failed] = None
    for index, address in enumerate(addresses):
        remaining = until - time.monotonic()
        if remaining <= 0:
            break
        timeout = remaining / (len(addresses) - index)
        if timeout < 2.0:
            timeout = min(2.0, remaining)
        shown = f"[{address}]" if ":" in address else address
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except (socket.timeout, TimeoutError):
            last = _Failed(
                "connection_timeout",
                f"TCP connect to {what} ({shown}:{port}) timed out after {timeout:.3g} s",
            )
        except ConnectionRefusedError:
            last = _Failed(
                "connection_refused", f"TCP connect to {what} ({shown}:{port}) was refused"
            )
        except OSError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                last = _Failed("connection_timeout", f"no route to {what} ({shown}:{port})")
            else:
                last = _Failed(
                    "connection_error",
                    f"TCP connect to {what} ({shown}:{port}) failed: {exc.strerror or exc}",
                )
    raise last or _Failed("connection_timeout", f"no time left to connect to {what}")


def _connect_tunnel(
    sock: socket.socket, proxy: ProxyURL, raw_proxy: str, endpoint: Endpoint, until: float
) -> None:
    span = until - time.monotonic()
    target = _authority(endpoint.host, endpoint.port, -1)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    authorization = _proxy_authorization(raw_proxy)
    if authorization:
        lines.append(f"Proxy-Authorization: {authorization}")
    try:
        _send(sock, ("\r\n".join(lines) + "\r\n\r\n").encode("ascii"), until)
        head, _ = _read_head(sock, until)
        status, reason, _ = _parse_head(head)
    except (socket.timeout, TimeoutError):
        raise _Failed(
            "proxy_timeout", f"proxy {proxy.display()} did not take CONNECT within {span:.3g} s"
        ) from None
    except OSError as exc:
        raise _Failed(
            "proxy_refused",
            f"proxy {proxy.display()} dropped the connection: {exc.strerror or exc}",
        ) from None
    except _HeadError as exc:
        raise _proxy_head_failure(exc, proxy, span) from None
    if status == 407:
        raise _Failed(
            "proxy_auth_required", f"proxy {proxy.display()} requires authentication (407)"
        )
    if not 200 <= status < 300:
        raise _Failed(
            "proxy_refused",
            f"proxy {proxy.display()} refused CONNECT {_shown(target)}: {status} {reason[:200]}",
        )


def _proxy_head_failure(exc: _HeadError, proxy: ProxyURL, span: float) -> _Failed:
    who = f"proxy {proxy.display()}"
    if exc.kind == "timeout":
        if exc.data:
            return _Failed(
                "proxy_timeout",
                f"{who} sent only {len(exc.data)} bytes of its answer to CONNECT in "
                f"{span:.3g} s (it stalls or answers very slowly)",
            )
        return _Failed("proxy_timeout", f"{who} did not answer CONNECT within {span:.3g} s")
    if exc.kind in ("closed", "reset"):
        how = f": {exc.reason}" if exc.reason else ""
        return _Failed(
            "proxy_refused",
            f"{who} dropped the connection after {len(exc.data)} bytes, "
            f"without answering CONNECT{how}",
        )
    if exc.kind == "oversized":
        return _Failed(
            "proxy_not_http",
            f"{who} answered CONNECT with more than {len(exc.data) // 1024} KiB of headers "
            "and no end: not an HTTP proxy",
        )
    return _Failed(
        "proxy_not_http",
        f"{who} answered CONNECT with something that is not an HTTP answer: {_sample(exc.data)}",
    )


def _tls(
    sock: socket.socket, endpoint: Endpoint, context: ssl.SSLContext, until: float
) -> ssl.SSLSocket:
    """The TLS handshake, finished before `until` (CPython bounds the whole handshake by
    the socket's timeout, however the peer spreads its bytes)."""
    span = until - time.monotonic()
    host = _shown(endpoint.host)
    try:
        tls = context.wrap_socket(
            sock, server_hostname=endpoint.host, do_handshake_on_connect=False
        )
    except (ValueError, UnicodeError) as exc:  # a name OpenSSL cannot send as SNI
        sock.close()
        raise _Failed("tls_failed", f"TLS with {host} cannot start: {exc}") from None
    try:
        left = until - time.monotonic()
        if left <= 0:
            raise socket.timeout
        tls.settimeout(left)
        tls.do_handshake()
    except ssl.SSLCertVerificationError as exc:
        tls.close()
        raise _Failed(
            "tls_untrusted",
            f"TLS certificate of {host} is not trusted ({exc.verify_message})",
        ) from None
    except (socket.timeout, TimeoutError):
        tls.close()
        raise _Failed(
            "tls_timeout",
            f"TLS handshake with {host} did not complete within {span:.3g} s (stalled or "
            "very slow)",
        ) from None
    except (ssl.SSLError, OSError) as exc:
        tls.close()
        raise _Failed(
            "tls_failed",
            f"TLS handshake with {host} failed: {getattr(exc, 'reason', None) or exc}",
        ) from None
    return tls


def _untrusted_issuer(
    addresses: Sequence[str],
    endpoint: Endpoint,
    proxy: Optional[ProxyURL],
    raw_proxy: Optional[str],
    until: float,
) -> str:
    """Look once more, without verifying, only to name who issued the untrusted certificate
    (Python cannot show the chain of a handshake that failed verification)."""
    sock: Optional[socket.socket] = None
    try:
        sock = _connect(addresses, proxy.port if proxy else endpoint.port, until, "again")
        if proxy and raw_proxy:
            _connect_tunnel(sock, proxy, raw_proxy, endpoint, until)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # a look at the issuer only; no data is sent
        left = until - time.monotonic()
        if left <= 0:
            return "?"
        sock.settimeout(left)
        with context.wrap_socket(sock, server_hostname=endpoint.host) as tls:
            return certificate_names(tls.getpeercert(binary_form=True) or b"")[1]
    except (_Failed, OSError, ssl.SSLError, ValueError):
        return "?"
    finally:
        if sock is not None:
            sock.close()


def _request(endpoint: Endpoint, absolute: bool, raw_proxy: Optional[str]) -> bytes:
    default = 443 if endpoint.scheme == "https" else 80
    authority = _authority(endpoint.host, endpoint.port, default)
    target = f"{endpoint.scheme}://{authority}/" if absolute else "/"
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {authority}",
        f"User-Agent: ssmdiag/{__version__}",
        "Accept: */*",
        "Connection: close",
    ]
    authorization = _proxy_authorization(raw_proxy) if absolute and raw_proxy else None
    if authorization:
        lines.append(f"Proxy-Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _http(
    sock: socket.socket, endpoint: Endpoint, until: float, absolute: bool, raw_proxy: Optional[str]
) -> tuple[int, dict[str, str]]:
    """GET / on the connection the earlier phases measured; (status, headers)."""
    span = until - time.monotonic()
    what = f"{endpoint.scheme.upper()} answer from {_shown(endpoint.host)}"
    try:
        _send(sock, _request(endpoint, absolute, raw_proxy), until)
        rest = b""
        for _ in range(5):  # interim 1xx answers come before the real one
            head, rest = _read_head(sock, until, rest)
            status, _, headers = _parse_head(head)
            if not 100 <= status < 200 or status == 101:
                return status, headers
        raise _HeadError("not_http", head)
    except (socket.timeout, TimeoutError):
        raise _Failed(
            "http_timeout",
            f"{endpoint.scheme.upper()} request to {_shown(endpoint.host)} could not be sent "
            f"within {span:.3g} s",
        ) from None
    except OSError as exc:
        raise _Failed(
            "http_error",
            f"{endpoint.scheme.upper()} request to {_shown(endpoint.host)} could not be sent: "
            f"{exc.strerror or exc}",
        ) from None
    except _HeadError as exc:
        received = len(exc.data)
        if exc.kind == "timeout":
            if received:
                raise _Failed(
                    "http_timeout",
                    f"{what} did not complete within {span:.3g} s: {received} bytes of its "
                    "headers came (the peer stalls or sends very slowly)",
                ) from None
            raise _Failed("http_timeout", f"{what} did not come within {span:.3g} s") from None
        if exc.kind in ("closed", "reset"):
            how = f" ({exc.reason})" if exc.reason else ""
            after = "without answering the request"
            if received:
                after = f"after {received} bytes, before its headers ended"
            raise _Failed(
                "http_error", f"{_shown(endpoint.host)} closed the connection {after}{how}"
            ) from None
        if exc.kind == "oversized":
            raise _Failed(
                "http_oversized",
                f"{what} has more than {received // 1024} KiB of status line and headers "
                "(an AWS answer has under 1 KiB): not the AWS endpoint",
            ) from None
        raise _Failed(
            "http_invalid", f"{what} is not an HTTP answer: it starts with {_sample(exc.data)}"
        ) from None


def probe(endpoint: Endpoint, proxies: ProxySettings, settings: ProbeSettings) -> ProbeResult:
    """Never raises: every failure, even a bug of ours, is this endpoint's result."""
    result = ProbeResult(endpoint)
    if endpoint.problem:  # the agent itself has nothing usable to connect to
        result.failure, result.message = "agent_endpoint", endpoint.problem
        return result
    try:
        _probe(result, proxies, settings)
    except Exception as exc:  # a bug of ours must cost this endpoint only
        # Where, not what: an exception's text might hold the proxy's credentials.
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" in {frames[-1].name} (line {frames[-1].lineno})" if frames else ""
        result.failure = "probe_error"
        result.message = (
            f"the probe of {_shown(endpoint.host)} stopped on an internal error: "
            f"{type(exc).__name__}{where}"
        )
    return result


def _probe(result: ProbeResult, proxies: ProxySettings, settings: ProbeSettings) -> None:
    endpoint = result.endpoint
    deadline = time.monotonic() + settings.probe_timeout

    def until(limit: float) -> float:
        """The end of a phase that may take `limit` seconds: never past the deadline."""
        now = time.monotonic()
        if now >= deadline:
            raise _Failed(
                "probe_timeout",
                f"probe of {_shown(endpoint.host)} ran out of its {settings.probe_timeout:g} s",
            )
        return min(now + limit, deadline)

    proxy = proxies.proxy_for(_url(endpoint))
    # Go's ProxyFromEnvironment: https_proxy for https URLs, http_proxy for http URLs.
    raw_proxy = (
        (proxies.https_proxy if endpoint.scheme == "https" else proxies.http_proxy)
        if proxy
        else None
    )
    result.proxy = proxy.display() if proxy else None
    try:
        context = trust_context(settings.ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        result.failure = "ca_bundle_invalid"
        result.message = f"cannot load CA bundle {settings.ca_bundle}: {exc}"
        return
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

    sock: Optional[socket.socket] = None
    try:
        problem = dns_name_problem(endpoint.host)
        if problem:  # checked even when only the proxy is resolved: nothing can reach it
            raise _Failed(
                "dns_invalid_name",
                f"{_shown(endpoint.host)} cannot be looked up: it is not a valid DNS name "
                f"({problem})",
            )
        # With a proxy the agent resolves only the proxy; the proxy resolves the endpoint.
        lookup_host = proxy.host if proxy else endpoint.host
        lookup_port = proxy.port if proxy else endpoint.port
        addresses = _resolve(lookup_host, lookup_port, until(settings.probe_timeout))
        result.addresses = addresses
        if not proxy:
            result.private_addresses = all(_is_private(a) for a in addresses)
        done("dns", host=lookup_host, addresses=addresses)
        phase = "tcp"
        sock = _connect(
            addresses,
            lookup_port,
            until(settings.connect_timeout),
            f"proxy {proxy.display()}" if proxy else _shown(endpoint.host),
        )
        done("tcp", peer=str(sock.getpeername()[0]))
        # Plain http through a proxy: the request itself goes to the proxy (absolute form).
        absolute = bool(proxy and raw_proxy and endpoint.scheme == "http")
        if proxy and raw_proxy and endpoint.scheme == "https":
            phase = "proxy"
            _connect_tunnel(sock, proxy, raw_proxy, endpoint, until(settings.connect_timeout))
            done("proxy", proxy=proxy.display())
        if endpoint.scheme == "https":
            phase = "tls"
            plain, sock = sock, None  # _tls owns it now, and closes it when it fails
            try:
                tls = _tls(plain, endpoint, context, until(settings.connect_timeout))
            except _Failed as failure:
                if failure.code == "tls_untrusted":
                    issuer = "?"
                    look_until = min(time.monotonic() + settings.connect_timeout, deadline)
                    if time.monotonic() < look_until:
                        issuer = _untrusted_issuer(
                            result.addresses, endpoint, proxy, raw_proxy, look_until
                        )
                    result.phases["tls"] = {"ok": False, "issuer": issuer}
                    failure.message += f"; certificate issued by {issuer}"
                raise
            sock = tls
            subject, issuer = certificate_names(tls.getpeercert(binary_form=True) or b"")
            done("tls", version=tls.version(), subject=subject, issuer=issuer)
        phase = "http"
        status, headers = _http(sock, endpoint, until(settings.probe_timeout), absolute, raw_proxy)
        result.local_time_at_answer = time.time()
        result.http_status = status
        date = headers.get("date")
        if date is not None:
            result.server_date_raw = date[:100]
            result.server_date = _parse_date(date)
        info: dict[str, Any] = {"status": status}
        if headers.get("server"):
            info["server"] = headers["server"][:100]
        if date is not None and result.server_date is None:
            info["date_unreadable"] = date[:100]
        if absolute and status == 407:
            raise _Failed(
                "proxy_auth_required",
                f"proxy {proxy.display() if proxy else '?'} requires authentication (407)",
            )
        done("http", **info)
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
    finally:
        if sock is not None:
            sock.close()


def _is_private(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_private
    except ValueError:
        return False


def probe_all(
    endpoints: Sequence[Endpoint], proxies: ProxySettings, settings: ProbeSettings
) -> dict[str, ProbeResult]:
    """All endpoints at once: three blackholed endpoints cost one timeout, not three.

    Each probe runs on a daemon thread of its own (not a ThreadPoolExecutor, whose
    workers the interpreter joins at exit: SIGTERM during a stalled handshake then
    waited for it). Each probe ends by itself at its deadline; one that has not
    answered shortly after is reported as timed out and left to end on its own."""
    lock = threading.Lock()
    results: dict[str, ProbeResult] = {}

    def work(endpoint: Endpoint) -> None:
        outcome = probe(endpoint, proxies, settings)
        with lock:
            results[endpoint.service] = outcome

    threads = [
        threading.Thread(
            target=work, args=(endpoint,), name=f"ssmdiag-probe-{endpoint.service}", daemon=True
        )
        for endpoint in endpoints
    ]
    for thread in threads:
        thread.start()
    hard_stop = time.monotonic() + settings.probe_timeout + 0.5
    for thread in threads:
        thread.join(max(0.0, hard_stop - time.monotonic()))
    with lock:
        finished = dict(results)
    return {
        endpoint.service: finished.get(endpoint.service)
        or ProbeResult(
            endpoint,
            failure="probe_timeout",
            message=f"probe of {_shown(endpoint.host)} did not finish within "
            f"{settings.probe_timeout:g} s",
        )
        for endpoint in endpoints
    }
