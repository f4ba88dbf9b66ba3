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
between reads, so a peer that drips a byte at a time cannot stretch a probe. The status
line and headers of an answer are read, at most 64 KiB (`MAX_HEAD`); the body only when
the answer carries no AWS request id (at most 4 KiB within 1 s, to tell a web filter's
page from an AWS answer). A refused certificate is read on a second connection over the
same path (no data sent), within `connect_timeout`. The name lookup runs on a daemon
thread (getaddrinfo has no timeout), probes run on daemon threads: nothing a probe
starts can hold the process at exit.
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
from datetime import datetime, timezone
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

from ssmdiag import __version__, httpwire
from ssmdiag.endpoints import Endpoint, dns_name_problem
from ssmdiag.httpwire import HeadError as _HeadError
from ssmdiag.httpwire import parse_head as _parse_head
from ssmdiag.httpwire import read_head as _read_head
from ssmdiag.httpwire import send as _send
from ssmdiag.proxy import ProxySettings, ProxyURL, parse_proxy_url

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
    # The endpoint's own addresses, as this node resolved them; empty through a proxy
    # (the agent resolves only the proxy, and the proxy resolves the endpoint).
    addresses: list[str] = field(default_factory=list)
    private_addresses: bool = False
    proxy_url: Optional[ProxyURL] = None  # the proxy connected to (never its credentials)
    proxy_addresses: list[str] = field(default_factory=list)  # the proxy's, through a proxy
    # A proxy is configured for this URL's scheme, but this no_proxy entry sends it direct.
    no_proxy_entry: Optional[str] = None
    bypassed_proxy: Optional[str] = None  # that proxy (display form)
    certificate: Optional[CertificateInfo] = None  # the refused one, read on a 2nd connection
    http_status: Optional[int] = None
    # Whether the answer came from AWS: True with an AWS request id header, False without
    # one, None when no HTTP answer came. `answer` has what the answer says about its sender.
    from_aws: Optional[bool] = None
    answer: dict[str, Any] = field(default_factory=dict)
    server_date: Optional[float] = None  # epoch seconds from the Date header
    server_date_raw: Optional[str] = None  # the Date header as received (shortened)
    local_time_at_answer: Optional[float] = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def resolved_by(self) -> Optional[str]:
        """Who resolved the endpoint's name: this node, or (through a proxy) the proxy."""
        if self.proxy_addresses:
            return "proxy"
        return "node" if self.addresses else None

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
            "resolved_by": self.resolved_by(),
            "addresses": self.addresses,
            "private_addresses": self.private_addresses,
            "proxy_addresses": self.proxy_addresses,
            "no_proxy_entry": self.no_proxy_entry,
            "phases": self.phases,
            "failure": self.failure,
            "http_status": self.http_status,
            "from_aws": self.from_aws,
        }


class _Failed(Exception):
    def __init__(self, code: str, message: str, verify_code: Optional[int] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.verify_code = verify_code  # OpenSSL's X509_V_ERR_* when a certificate was refused


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
    joined = ", ".join(parts) or "(empty name)"
    return joined if len(joined) <= 200 else joined[:197] + "..."  # a peer's input


def certificate_names(der: bytes) -> tuple[str, str]:
    """(subject, issuer) of a DER certificate; ('?', '?') when it cannot be read."""
    info = certificate_info(der)
    return info.subject, info.issuer


@dataclass(frozen=True)
class CertificateInfo:
    """What a certificate says about itself: enough to tell why it was refused."""

    subject: str = "?"
    issuer: str = "?"
    not_before: Optional[float] = None  # epoch seconds
    not_after: Optional[float] = None
    dns_names: tuple[str, ...] = ()  # subjectAltName dNSName entries
    ip_addresses: tuple[str, ...] = ()  # subjectAltName iPAddress entries

    def names(self) -> tuple[str, ...]:
        """The names it is for: its subjectAltNames, else the CN of its subject."""
        if self.dns_names or self.ip_addresses:
            return self.dns_names + self.ip_addresses
        common = [p[3:] for p in self.subject.split(", ") if p.startswith("CN=")]
        return tuple(common)

    def holder(self) -> str:
        """Whose certificate it is, shortly: its CN, else its whole subject."""
        common = [p for p in self.subject.split(", ") if p.startswith("CN=")]
        return common[0] if common else self.subject

    def to_details(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": utc_text(self.not_before),
            "not_after": utc_text(self.not_after),
            "names": list(self.names()[:MAX_CERT_NAMES]),
        }


MAX_CERT_NAMES = 20  # names kept from a subjectAltName (a hostile one may hold thousands)
_SAN_OID = b"\x55\x1d\x11"  # 2.5.29.17


def _der_time(tag: int, raw: bytes) -> Optional[float]:
    """UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ) as epoch seconds."""
    text = raw.decode("ascii")
    if tag == 0x17 and len(text) == 13:
        year = int(text[:2])
        year += 1900 if year >= 50 else 2000  # RFC 5280 4.1.2.5.1
        rest = text[2:]
    elif tag == 0x18 and len(text) == 15:
        year, rest = int(text[:4]), text[4:]
    else:
        return None
    if not rest.endswith("Z") or not rest[:-1].isdigit():
        return None
    month, day, hour, minute, second = (int(rest[i : i + 2]) for i in range(0, 10, 2))
    moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    return moment.timestamp()


def _san(der: bytes, start: int, end: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(dNSNames, iPAddresses) of a subjectAltName extension's value (GeneralNames)."""
    dns: list[str] = []
    ips: list[str] = []
    _, seq_s, seq_e = _der(der, start)
    for tag, body, stop in _children(der, seq_s, min(seq_e, end)):
        if len(dns) + len(ips) >= MAX_CERT_NAMES:
            break
        if tag == 0x82:  # [2] dNSName
            dns.append(der[body:stop].decode("ascii", "replace")[:253])
        elif tag == 0x87 and stop - body in (4, 16):  # [7] iPAddress
            ips.append(str(ipaddress.ip_address(der[body:stop])))
    return tuple(dns), tuple(ips)


def certificate_info(der: bytes) -> CertificateInfo:
    """Subject, issuer, validity and subjectAltNames of a DER certificate; whatever cannot
    be read stays unknown ('?', None, ()): a certificate is a peer's input."""
    try:
        _, cert_s, cert_e = _der(der, 0)
        _, tbs_s, tbs_e = _children(der, cert_s, cert_e)[0]
        fields = _children(der, tbs_s, tbs_e)
        if fields[0][0] == 0xA0:  # explicit version
            fields = fields[1:]
        issuer, validity, subject = fields[2], fields[3], fields[4]
        info = CertificateInfo(_name(der, subject[1], subject[2]), _name(der, issuer[1], issuer[2]))
    except (IndexError, ValueError):
        return CertificateInfo()
    try:
        times = _children(der, validity[1], validity[2])[:2]
        not_before, not_after = (_der_time(tag, der[s:e]) for tag, s, e in times)
    except (IndexError, ValueError, OverflowError):
        not_before = not_after = None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    try:
        for tag, start, stop in fields[6:]:
            if tag != 0xA3:  # [3] extensions
                continue
            _, exts_s, exts_e = _der(der, start)
            for _, ext_s, ext_e in _children(der, exts_s, min(exts_e, stop)):
                parts = _children(der, ext_s, ext_e)
                if parts and der[parts[0][1] : parts[0][2]] == _SAN_OID:
                    value = parts[-1]  # extnValue, an OCTET STRING holding GeneralNames
                    dns_names, ip_addresses = _san(der, value[1], value[2])
    except (IndexError, ValueError):
        pass
    return CertificateInfo(
        info.subject, info.issuer, not_before, not_after, dns_names, ip_addresses
    )


def utc_text(stamp: Optional[float]) -> Optional[str]:
    """An epoch time as users read it: 2024-01-31 12:00 UTC."""
    if stamp is None:
        return None
    try:
        return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return None


def _span(seconds: float) -> str:
    """A duration as users read it: 3 days, 5 h, 12 min, 40 s."""
    seconds = abs(seconds)
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size or (unit != "days" and seconds >= size):
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


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
        code = _VERIFY_CODES.get(exc.verify_code, "tls_untrusted")
        raise _Failed(
            code,
            f"TLS certificate of {host} is not trusted ({exc.verify_message})",
            exc.verify_code,
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


# OpenSSL's verify codes (X509_V_ERR_*) that name a cause other than an unknown issuer.
_VERIFY_CODES = {
    9: "tls_not_yet_valid",  # CERT_NOT_YET_VALID
    10: "tls_expired",  # CERT_HAS_EXPIRED
    62: "tls_name_mismatch",  # HOSTNAME_MISMATCH
    64: "tls_name_mismatch",  # IP_ADDRESS_MISMATCH
}
CERTIFICATE_FAILURES = ("tls_untrusted", "tls_expired", "tls_not_yet_valid", "tls_name_mismatch")


def _refused_certificate(
    addresses: Sequence[str],
    endpoint: Endpoint,
    proxy: Optional[ProxyURL],
    raw_proxy: Optional[str],
    until: float,
) -> CertificateInfo:
    """Look once more, without verifying, only to read the refused certificate (Python
    cannot show the certificate of a handshake that failed verification): a second
    connection on the same path, bounded by `until`, that sends no data."""
    sock: Optional[socket.socket] = None
    try:
        sock = _connect(addresses, proxy.port if proxy else endpoint.port, until, "again")
        if proxy and raw_proxy:
            _connect_tunnel(sock, proxy, raw_proxy, endpoint, until)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # a look at the certificate only; no data is sent
        left = until - time.monotonic()
        if left <= 0:
            return CertificateInfo()
        sock.settimeout(left)
        with context.wrap_socket(sock, server_hostname=endpoint.host) as tls:
            return certificate_info(tls.getpeercert(binary_form=True) or b"")
    except (_Failed, OSError, ssl.SSLError, ValueError):
        return CertificateInfo()
    finally:
        if sock is not None:
            sock.close()


def _certificate_message(failure: _Failed, endpoint: Endpoint, cert: CertificateInfo) -> str:
    """What is wrong with the refused certificate, in the words that lead to the fix."""
    host = _shown(endpoint.host)
    now = time.time()
    whose = f"{cert.holder()}, issued by {cert.issuer}"
    if failure.code == "tls_expired":
        if cert.not_after is None:
            return f"TLS certificate of {host} ({whose}) has expired"
        return (
            f"TLS certificate of {host} ({whose}) expired on {utc_text(cert.not_after)}, "
            f"{_span(now - cert.not_after)} ago by this node's clock ({utc_text(now)})"
        )
    if failure.code == "tls_not_yet_valid":
        if cert.not_before is None:
            return f"TLS certificate of {host} ({whose}) is not valid yet by this node's clock"
        return (
            f"TLS certificate of {host} ({whose}) is valid only from {utc_text(cert.not_before)}, "
            f"{_span(cert.not_before - now)} after this node's clock ({utc_text(now)})"
        )
    if failure.code == "tls_name_mismatch":
        names = ", ".join(cert.names()[:6]) or "no names"
        more = f" and {len(cert.names()) - 6} more" if len(cert.names()) > 6 else ""
        return (
            f"TLS certificate presented for {host} is for {names}{more} (issued by "
            f"{cert.issuer}), not for {host}: the name leads to another endpoint"
        )
    return f"{failure.message}; certificate issued by {cert.issuer}"


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
) -> tuple[int, dict[str, str], bytes]:
    """GET / on the connection the earlier phases measured; (status, headers, the bytes
    of the body that came with the headers)."""
    span = until - time.monotonic()
    what = f"{endpoint.scheme.upper()} answer from {_shown(endpoint.host)}"
    try:
        _send(sock, _request(endpoint, absolute, raw_proxy), until)
        rest = b""
        for _ in range(5):  # interim 1xx answers come before the real one
            head, rest = _read_head(sock, until, rest)
            status, _, headers = _parse_head(head)
            if not 100 <= status < 200 or status == 101:
                return status, headers, rest
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


# Every AWS service answer carries one of these (JSON and query APIs, API Gateway-fronted
# services such as ssmmessages: x-amzn-RequestId; S3: x-amz-request-id and x-amz-id-2).
# A web filter's block page, a captive portal or a proxy's own error page carries none.
AWS_REQUEST_ID_HEADERS = ("x-amzn-requestid", "x-amz-request-id", "x-amzn-request-id", "x-amz-id-2")
MAX_BODY_LOOK = 4096  # bytes of a body read to tell a web page from an AWS answer
BODY_LOOK_TIME = 1.0  # seconds at most spent reading them
_REDIRECTS = (301, 302, 303, 307, 308)


def _body_prefix(sock: socket.socket, data: bytes, headers: dict[str, str], until: float) -> bytes:
    """At most MAX_BODY_LOOK bytes of the body, read before `until`; never raises (what
    came is what there is: a stalled or reset body ends the look, not the probe)."""
    buffer = bytearray(data[:MAX_BODY_LOOK])
    wanted = headers.get("content-length", "")
    length = int(wanted) if wanted.isascii() and wanted.isdigit() else None
    limit = MAX_BODY_LOOK if length is None else min(length, MAX_BODY_LOOK)
    while len(buffer) < limit:
        left = until - time.monotonic()
        if left <= 0:
            break
        try:
            sock.settimeout(left)
            chunk = sock.recv(limit - len(buffer))
        except (OSError, ValueError):  # socket.timeout and ssl errors are OSErrors
            break
        if not chunk:
            break
        buffer += chunk
    return bytes(buffer[:limit])


def _printable(value: str, limit: int = 100) -> str:
    """A peer's text shortened to one line of printable characters."""
    text = " ".join("".join(c if c.isprintable() else " " for c in value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _answer_facts(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """What an answer without an AWS request id says about who sent it."""
    facts: dict[str, Any] = {}
    for name in ("server", "via", "content-type", "location"):
        if headers.get(name):
            facts[name.replace("-", "_")] = _printable(headers[name], 200)
    lowered = body[:MAX_BODY_LOOK].lower()
    facts["html"] = (
        "html" in headers.get("content-type", "").lower()
        or lowered.lstrip().startswith(b"<!doctype html")
        or b"<html" in lowered
    )
    start = lowered.find(b"<title")
    if start >= 0:
        open_end = lowered.find(b">", start)
        close = lowered.find(b"</title", open_end)
        if 0 <= open_end < close:
            title = body[open_end + 1 : close].decode("utf-8", "replace")
            facts["title"] = _printable(title, 80) or None
    facts["redirect"] = status in _REDIRECTS and bool(headers.get("location"))
    return facts


def middlebox(facts: dict[str, Any], tls: dict[str, Any]) -> str:
    """Who answered instead of AWS, as far as the answer and its certificate say."""
    named = []
    if facts.get("server") and facts["server"].lower() not in ("server", "amazonaws.com"):
        named.append(f"Server: {_printable(facts['server'], 80)}")
    if facts.get("via"):
        named.append(f"Via: {_printable(facts['via'], 80)}")
    issuer = str(tls.get("issuer") or "")
    if issuer and issuer != "?" and "amazon" not in issuer.lower():
        named.append(f"its TLS certificate issued by {issuer}, which this node trusts")
    return "; ".join(named)


def _not_aws_message(
    endpoint: Endpoint, status: int, facts: dict[str, Any], tls: dict[str, Any]
) -> str:
    host = _shown(endpoint.host)
    if facts.get("html"):
        title = f" {facts['title']!r}" if facts.get("title") else ""
        kind = f" ({facts['content_type']})" if facts.get("content_type") else ""
        what = f"an HTML page{title}{kind}"
    else:
        what = f"a redirect to {_printable(str(facts.get('location')), 120)}"
    who = middlebox(facts, tls)
    return (
        f"{host} answered HTTP {status} with {what} and no AWS request id: a web filter, "
        f"captive portal or proxy answers, not AWS" + (f" ({who})" if who else "")
    )


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
    setting = proxies.https_proxy if endpoint.scheme == "https" else proxies.http_proxy
    raw_proxy = setting if proxy else None
    result.proxy = proxy.display() if proxy else None
    result.proxy_url = proxy
    if proxy is None and setting:
        _note_bypass(result, proxies, setting)
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
        try:
            addresses = _resolve(lookup_host, lookup_port, until(settings.probe_timeout))
        except _Failed as failure:
            if proxy and failure.code.startswith("dns_"):
                raise _Failed(
                    "proxy_dns", f"the agent's proxy {proxy.display()}: {failure.message}"
                ) from None
            raise
        if proxy:
            result.proxy_addresses = addresses
            done("dns", host=lookup_host, addresses=addresses, of="proxy")
        else:
            result.addresses = addresses
            result.private_addresses = all(_is_private(a) for a in addresses)
            done("dns", host=lookup_host, addresses=addresses)
        phase = "tcp"
        try:
            sock = _connect(
                addresses,
                lookup_port,
                until(settings.connect_timeout),
                f"proxy {proxy.display()}" if proxy else _shown(endpoint.host),
            )
        except _Failed as failure:
            raise _connect_failure(failure, result) from None
        done("tcp", peer=str(sock.getpeername()[0]))
        # Plain http through a proxy: the request itself goes to the proxy (absolute form).
        absolute = bool(proxy and raw_proxy and endpoint.scheme == "http")
        if proxy and raw_proxy and endpoint.scheme == "https":
            phase = "proxy"
            _connect_tunnel(sock, proxy, raw_proxy, endpoint, until(settings.connect_timeout))
            done("proxy", proxy=proxy.display(), resolved_by="proxy")
        if endpoint.scheme == "https":
            phase = "tls"
            plain, sock = sock, None  # _tls owns it now, and closes it when it fails
            try:
                tls = _tls(plain, endpoint, context, until(settings.connect_timeout))
            except _Failed as failure:
                if failure.code in CERTIFICATE_FAILURES:
                    cert = CertificateInfo()
                    look_until = min(time.monotonic() + settings.connect_timeout, deadline)
                    if time.monotonic() < look_until:
                        cert = _refused_certificate(
                            addresses, endpoint, proxy, raw_proxy, look_until
                        )
                    result.certificate = cert
                    result.phases["tls"] = {
                        "ok": False,
                        "issuer": cert.issuer,
                        "verify_code": failure.verify_code,
                        "certificate": cert.to_details(),
                    }
                    failure.message = _certificate_message(failure, endpoint, cert)
                raise
            sock = tls
            subject, issuer = certificate_names(tls.getpeercert(binary_form=True) or b"")
            done("tls", version=tls.version(), subject=subject, issuer=issuer)
        phase = "http"
        status, headers, rest = _http(
            sock, endpoint, until(settings.probe_timeout), absolute, raw_proxy
        )
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
        request_id = next((h for h in AWS_REQUEST_ID_HEADERS if headers.get(h)), None)
        info["aws_request_id"] = request_id
        result.from_aws = request_id is not None
        if request_id is None:
            look = min(until(settings.probe_timeout), time.monotonic() + BODY_LOOK_TIME)
            facts = _answer_facts(status, headers, _body_prefix(sock, rest, headers, look))
            result.answer = facts
            info["answer"] = facts
            if facts["html"] or facts["redirect"]:
                # A middlebox's page proves nothing about the path to AWS, nor its clock.
                result.server_date = result.server_date_raw = None
                raise _Failed(
                    "http_not_aws",
                    _not_aws_message(endpoint, status, facts, result.phases.get("tls", {})),
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


def _note_bypass(result: ProbeResult, proxies: ProxySettings, setting: str) -> None:
    """A proxy is set for this scheme but not used for this host: say which no_proxy
    entry sends it direct (Go's rules, ssmdiag/proxy.py)."""
    route = proxies.route(_url(result.endpoint))
    if route.kind != "direct" or not route.reason.startswith("no_proxy: "):
        return
    result.no_proxy_entry = route.reason[len("no_proxy: ") :]
    try:
        result.bypassed_proxy = parse_proxy_url(setting).display()
    except ValueError:
        result.bypassed_proxy = "(the configured proxy)"


def _connect_failure(failure: _Failed, result: ProbeResult) -> _Failed:
    """A TCP failure named for what was dialled: the agent's proxy, or the endpoint that
    no_proxy sends direct although a proxy is configured."""
    if result.proxy_url is not None:
        code = "proxy_down" if failure.code == "connection_refused" else "proxy_unreachable"
        return _Failed(code, failure.message)
    if result.no_proxy_entry is not None:
        return _Failed(
            "proxy_bypassed",
            f"{failure.message}; the agent's proxy {result.bypassed_proxy} is not used for "
            f"{_shown(result.endpoint.host)}: no_proxy entry {result.no_proxy_entry!r} sends "
            "it direct",
        )
    return failure


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
