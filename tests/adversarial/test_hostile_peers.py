"""Hostile network peers: servers that drip, flood, babble or hang up, written here on
loopback. Each probe must end within its documented deadline (plus a small margin),
name the failure with a fix, raise nothing, and leave no thread of its own behind.

Deadlines: a probe ends by `probe_timeout`; its TCP, proxy CONNECT and TLS phases each by
`connect_timeout` (both from ProbeSettings, [network] in the config). Only the status
line and headers of an answer are read, at most MAX_HEAD (64 KiB).

Network rule: every socket here is on loopback; names under .invalid never resolve and
are only ever sent to a proxy written here, which connects nowhere.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import trustme

from ssmdiag.checks.endpoint import REMEDIATION
from ssmdiag.endpoints import Endpoint
from ssmdiag.probe import MAX_HEAD, ProbeResult, ProbeSettings, probe, probe_all
from ssmdiag.proxy import ProxySettings
from tests.conftest import REPO, hermetic_env
from tests.lab import start_server

SETTINGS_CONNECT = 1.0
SETTINGS_PROBE = 2.0
MARGIN = 0.5  # scheduling, thread start, two shared cores
DRIP_EVERY = 0.5  # seconds between two bytes of a dripping peer
AWS_LIKE = (
    b"HTTP/1.1 400 Bad Request\r\nx-amzn-RequestId: 0c1d6d2e\r\n"
    b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: 0\r\n"
)
SSMDIAG = (sys.executable, "-m", "ssmdiag")
FAR_AWAY = "ssm.hostile.invalid"  # only ever sent to a proxy written here


# --- a hostile server on loopback -------------------------------------------------------------
class Peer:
    """Accepts connections on loopback and runs `behave(peer, conn)` for each, on threads
    named hostile-*; `close()` stops everything it started. `tls`: a server context, the
    handshake is done before `behave` runs (unless `tls_in_behave`)."""

    def __init__(
        self,
        behave: Callable[[Peer, socket.socket], None],
        tls: Optional[ssl.SSLContext] = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.behave = behave
        self.tls = tls
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.host, self.port = host, self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.accepted = 0
        self.received: list[bytes] = []  # each connection's request head
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._accept, name="hostile-accept")]
        self._threads[0].start()

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _accept(self) -> None:
        while not self.stop.is_set() and self.accepted < 50:
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            thread = threading.Thread(target=self._serve, args=(conn,), name="hostile-conn")
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self.behave(self, conn)
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(repr(exc))  # the probe hanging up on us is expected
        finally:
            conn.close()

    # what behaviours use
    def read_request(self, conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        self.received.append(data)
        return data

    def drip(self, conn: socket.socket, data: bytes, then_forever: bytes = b"X") -> None:
        """One byte every DRIP_EVERY seconds: `data`, then `then_forever` over and over,
        until the probe hangs up or the test ends (at most 200 bytes)."""
        stream = data + then_forever * 200
        for index in range(min(len(stream), 200)):
            if self.stop.wait(0 if index == 0 else DRIP_EVERY):
                return
            conn.sendall(stream[index : index + 1])

    def hold(self, conn: socket.socket) -> None:
        """Keep the connection open, silent, until the probe hangs up or the test ends."""
        conn.settimeout(0.1)
        deadline = time.monotonic() + 30
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                if not conn.recv(4096):
                    return
            except socket.timeout:
                continue

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def peers() -> Iterator[Callable[..., Peer]]:
    started: list[Peer] = []

    def start(
        behave: Callable[[Peer, socket.socket], None],
        tls: Optional[ssl.SSLContext] = None,
        host: str = "127.0.0.1",
    ) -> Peer:
        peer = Peer(behave, tls, host)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_bundle(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("hostile-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "::1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def tls_peers(peers: Callable[..., Peer], server_tls: ssl.SSLContext) -> Callable[..., Peer]:
    """Peers that finish a TLS handshake (certificate for 127.0.0.1, ::1) before behaving."""

    def start(behave: Callable[[Peer, socket.socket], None], host: str = "127.0.0.1") -> Peer:
        return peers(behave, server_tls, host)

    return start


def settings(ca_bundle: str) -> ProbeSettings:
    return ProbeSettings(SETTINGS_CONNECT, SETTINGS_PROBE, ca_bundle)


def endpoint_at(peer: Peer, scheme: str = "https", host: str = "") -> Endpoint:
    host = host or peer.host
    shown = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{shown}:{peer.port}/"
    return Endpoint("ssm", host, peer.port, url, "ssmdiag-config", scheme=scheme)


def ours() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if not t.name.startswith("hostile")}


def run_probe(
    endpoint: Endpoint, probe_settings: ProbeSettings, proxies: Optional[ProxySettings] = None
) -> tuple[ProbeResult, float]:
    """The probe, timed; afterwards no thread it started may be left (a short join)."""
    before = ours()
    started = time.monotonic()
    result = probe(endpoint, proxies or ProxySettings(), probe_settings)
    elapsed = time.monotonic() - started
    assert_no_new_threads(before)
    return result, elapsed


def assert_no_new_threads(before: set[threading.Thread], grace: float = 1.0) -> None:
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        left = [t for t in ours() - before if t.is_alive()]
        if not left:
            return
        left[0].join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in ours() - before if t.is_alive()]
    assert not left, f"threads still running after the probe: {left}"


def assert_named(result: ProbeResult, code: str, *words: str) -> None:
    assert result.failure == code, (result.failure, result.message)
    for word in words:
        assert word in result.message, result.message
    assert code in REMEDIATION and REMEDIATION[code].format(host=result.endpoint.host)
    assert result.phases and not all(p.get("ok") for p in result.phases.values())


# --- behaviours -------------------------------------------------------------------------------
def answer(head: bytes) -> Callable[[Peer, socket.socket], None]:
    def behave(peer: Peer, conn: socket.socket) -> None:
        peer.read_request(conn)
        conn.sendall(head)
        peer.hold(conn)

    return behave


def drip_answer(peer: Peer, conn: socket.socket) -> None:
    peer.read_request(conn)
    peer.drip(conn, b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a")


def flood_headers(peer: Peer, conn: socket.socket) -> None:
    peer.read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    line = b"X-Flood: " + b"a" * 1000 + b"\r\n"
    for _ in range(10_000):  # 10 MB at most; the probe hangs up long before
        if peer.stop.is_set():
            return
        conn.sendall(line)


def giant_status_line(peer: Peer, conn: socket.socket) -> None:
    peer.read_request(conn)
    conn.sendall(b"HTTP/1.1 200 ")
    for _ in range(10_000):
        if peer.stop.is_set():
            return
        conn.sendall(b"A" * 1000)


def half_close(peer: Peer, conn: socket.socket) -> None:
    peer.read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nDate: Mon, 0")
    conn.shutdown(socket.SHUT_WR)  # our side is done; we still listen
    peer.hold(conn)


def drip_connect_reply(peer: Peer, conn: socket.socket) -> None:
    peer.read_request(conn)
    peer.drip(conn, b"HTTP/1.1 200 Connection established\r\nX-Slow: ", b"a")


# --- one connection per probe -----------------------------------------------------------------
def test_https_request_goes_over_the_measured_tls_connection(
    tls_peers: Callable[..., Peer], ca_bundle: str
) -> None:
    date = formatdate(usegmt=True).encode()
    peer = tls_peers(answer(AWS_LIKE + b"Date: " + date + b"\r\n\r\n"))
    result, elapsed = run_probe(endpoint_at(peer), settings(ca_bundle))
    assert result.ok, result.message
    assert set(result.phases) == {"dns", "tcp", "tls", "http"}
    assert result.http_status == 400
    assert peer.accepted == 1  # DNS, TCP, TLS and HTTP: one connection
    request = peer.received[0].decode()
    assert request.startswith("GET / HTTP/1.1\r\n") and f"Host: {peer.authority}" in request
    assert result.server_date is not None and abs(result.server_date - time.time()) < 5
    assert elapsed < 1.5


def test_plain_http_endpoint_uses_one_connection_and_no_tls(peers: Callable[..., Peer]) -> None:
    peer = peers(answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
    result, _ = run_probe(endpoint_at(peer, "http"), ProbeSettings(1.0, 2.0))
    assert result.ok and result.http_status == 404, result.message
    assert set(result.phases) == {"dns", "tcp", "http"} and peer.accepted == 1


def test_plain_http_through_a_proxy_is_sent_in_absolute_form_without_connect(
    peers: Callable[..., Peer],
) -> None:
    proxy = peers(answer(b"HTTP/1.1 200 OK\r\nVia: 1.1 hostile\r\nContent-Length: 0\r\n\r\n"))
    proxies = ProxySettings(http_proxy=f"http://user:pa%40ss@{proxy.authority}")
    endpoint = Endpoint("ssm", FAR_AWAY, 80, f"http://{FAR_AWAY}/", "test", scheme="http")
    result, _ = run_probe(endpoint, ProbeSettings(1.0, 2.0), proxies)
    assert result.ok, result.message
    assert set(result.phases) == {"dns", "tcp", "http"}  # no CONNECT, no TLS
    request = proxy.received[0].decode()
    assert request.startswith(f"GET http://{FAR_AWAY}/ HTTP/1.1\r\n")
    assert f"Host: {FAR_AWAY}\r\n" in request
    assert "Proxy-Authorization: Basic " + base64.b64encode(b"user:pa@ss").decode() in request
    assert result.proxy is not None and "pa@ss" not in result.proxy


def test_plain_http_proxy_asking_for_credentials_is_named(peers: Callable[..., Peer]) -> None:
    proxy = peers(answer(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"))
    proxies = ProxySettings(http_proxy=f"http://{proxy.authority}")
    endpoint = Endpoint("ssm", FAR_AWAY, 80, f"http://{FAR_AWAY}/", "test", scheme="http")
    result, _ = run_probe(endpoint, ProbeSettings(1.0, 2.0), proxies)
    assert_named(result, "proxy_auth_required", "407")


def test_ipv6_literal_endpoint_works(tls_peers: Callable[..., Peer], ca_bundle: str) -> None:
    try:
        peer = tls_peers(answer(AWS_LIKE + b"\r\n"), host="::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    result, _ = run_probe(endpoint_at(peer), settings(ca_bundle))
    assert result.ok, result.message
    assert result.addresses == ["::1"] and result.http_status == 400
    assert f"Host: [::1]:{peer.port}" in peer.received[0].decode()


# --- drips: deadlines on whole operations, not per read -----------------------------------
def test_answer_dripping_after_tls_ends_at_the_probe_deadline(
    tls_peers: Callable[..., Peer], ca_bundle: str
) -> None:
    peer = tls_peers(drip_answer)
    result, elapsed = run_probe(endpoint_at(peer), settings(ca_bundle))
    assert_named(result, "http_timeout", "did not complete", "bytes of its headers came")
    assert result.phases["tls"]["ok"] and not result.phases["http"]["ok"]
    assert elapsed < SETTINGS_PROBE + MARGIN, elapsed


def test_proxy_dripping_its_connect_reply_ends_at_the_phase_limit(
    peers: Callable[..., Peer], ca_bundle: str
) -> None:
    proxy = peers(drip_connect_reply)
    proxies = ProxySettings(https_proxy=f"http://{proxy.authority}")
    endpoint = Endpoint("ssm", FAR_AWAY, 443, f"https://{FAR_AWAY}/", "test")
    result, elapsed = run_probe(endpoint, settings(ca_bundle), proxies)
    assert_named(result, "proxy_timeout", "sent only", "CONNECT")
    assert proxy.received[0].startswith(f"CONNECT {FAR_AWAY}:443 HTTP/1.1".encode())
    assert elapsed < SETTINGS_CONNECT + MARGIN, elapsed


def test_tls_handshake_dripped_byte_by_byte_ends_at_the_phase_limit(
    peers: Callable[..., Peer], server_tls: ssl.SSLContext, ca_bundle: str
) -> None:
    def drip_server_hello(peer: Peer, conn: socket.socket) -> None:
        # A real ServerHello and certificate, made in memory, sent one byte at a time.
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = server_tls.wrap_bio(incoming, outgoing, server_side=True)
        incoming.write(conn.recv(65536))
        with contextlib.suppress(ssl.SSLWantReadError):  # it waits for our next flight
            tls.do_handshake()
        flight = outgoing.read()
        assert flight[:1] == b"\x16"  # a handshake record
        peer.drip(conn, flight)

    peer = peers(drip_server_hello)  # TLS done by hand, in the behaviour
    result, elapsed = run_probe(endpoint_at(peer), settings(ca_bundle))
    assert_named(result, "tls_timeout", "did not complete")
    assert elapsed < SETTINGS_CONNECT + MARGIN, elapsed


def test_stalled_probes_leave_no_thread_behind(peers: Callable[..., Peer], ca_bundle: str) -> None:
    def silent(peer: Peer, conn: socket.socket) -> None:
        peer.hold(conn)

    stall = [peers(silent) for _ in range(3)]
    endpoints = [
        Endpoint(s, "127.0.0.1", p.port, f"https://127.0.0.1:{p.port}/", "test")
        for s, p in zip(("ec2messages", "ssm", "ssmmessages"), stall)
    ]
    before = ours()
    started = time.monotonic()
    results = probe_all(endpoints, ProxySettings(), settings(ca_bundle))
    elapsed = time.monotonic() - started
    assert {r.failure for r in results.values()} == {"tls_timeout"}
    assert elapsed < SETTINGS_CONNECT + MARGIN, elapsed  # concurrently, not one after another
    assert_no_new_threads(before)


# --- floods and garbage -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("behave", "code", "words"),
    [
        (flood_headers, "http_oversized", ("KiB of status line and headers",)),
        (giant_status_line, "http_oversized", ("not the AWS endpoint",)),
        (answer(b"SSH-2.0-OpenSSH_9.6\r\n"), "http_invalid", ("not an HTTP answer", "SSH-2.0")),
        (answer(b"HTTP/1.1 two hundred\r\n\r\n"), "http_invalid", ("not an HTTP answer",)),
        (half_close, "http_error", ("closed the connection after", "before its headers ended")),
    ],
    ids=["endless-headers", "giant-status-line", "garbage", "bad-status-line", "half-close"],
)
def test_floods_garbage_and_hang_ups_after_tls_end_at_once_with_a_named_failure(
    tls_peers: Callable[..., Peer],
    ca_bundle: str,
    behave: Callable[[Peer, socket.socket], None],
    code: str,
    words: tuple[str, ...],
) -> None:
    peer = tls_peers(behave)
    result, elapsed = run_probe(endpoint_at(peer), settings(ca_bundle))
    assert_named(result, code, *words)
    assert elapsed < 1.5, elapsed  # no waiting for a deadline: the answer is already wrong
    assert len(result.message) < 400


def test_garbage_from_a_plain_http_port_and_from_a_proxy_is_named(
    peers: Callable[..., Peer], ca_bundle: str
) -> None:
    babbler = peers(answer(b"\x00\x01\x02 hello from something else\r\n"))
    result, _ = run_probe(endpoint_at(babbler, "http"), settings(ca_bundle))
    assert_named(result, "http_invalid", "not an HTTP answer")
    proxy = peers(answer(b"220 mail.example ESMTP\r\n"))
    proxies = ProxySettings(https_proxy=f"http://{proxy.authority}")
    endpoint = Endpoint("ssm", FAR_AWAY, 443, f"https://{FAR_AWAY}/", "test")
    result, _ = run_probe(endpoint, settings(ca_bundle), proxies)
    assert_named(result, "proxy_not_http", "not an HTTP answer", "220 mail")


def test_a_flood_is_read_no_further_than_the_cap(
    tls_peers: Callable[..., Peer], ca_bundle: str
) -> None:
    sent: list[int] = []

    def counting_flood(peer: Peer, conn: socket.socket) -> None:
        peer.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        total = 0
        conn.settimeout(2)
        try:
            for _ in range(10_000):
                total += conn.send(b"X-Flood: " + b"a" * 1000 + b"\r\n")
        finally:
            sent.append(total)

    peer = tls_peers(counting_flood)
    result, _ = run_probe(endpoint_at(peer), settings(ca_bundle))
    assert result.failure == "http_oversized"
    peer.close()
    # The peer could push its 10 MB only as far as the socket buffers; the probe read
    # 64 KiB of it and hung up.
    assert sent and sent[0] < 10_000 * 1011, sent
    assert f"{MAX_HEAD // 1024} KiB" in result.message


# --- input mistakes are findings --------------------------------------------------------------
def test_a_ten_thousand_character_host_fails_that_endpoint_only(
    tls_peers: Callable[..., Peer], ca_bundle: str
) -> None:
    good = tls_peers(answer(AWS_LIKE + b"\r\n"))
    long_host = "h" * 10_000
    many_labels = "a." * 4_999 + "io"  # 10,000 characters in short labels
    endpoints = [
        endpoint_at(good),
        Endpoint("ec2messages", long_host, 443, f"https://{long_host}/", "test"),
        Endpoint("ssmmessages", many_labels, 443, f"https://{many_labels}/", "test"),
    ]
    before = ours()
    results = probe_all(endpoints, ProxySettings(), settings(ca_bundle))
    assert_no_new_threads(before)
    assert results["ssm"].ok, results["ssm"].message
    for service in ("ec2messages", "ssmmessages"):
        assert_named(results[service], "dns_invalid_name", "not a valid DNS name")
        assert len(results[service].message) < 300  # the name is shortened in messages
    assert "10000 characters" in results["ec2messages"].message


def test_a_date_header_that_is_not_a_date_is_no_error(
    tls_peers: Callable[..., Peer], ca_bundle: str
) -> None:
    peer = tls_peers(answer(AWS_LIKE + b"Date: garbage\r\n\r\n"))
    result, _ = run_probe(endpoint_at(peer), settings(ca_bundle))
    assert result.ok and result.server_date is None and result.server_date_raw == "garbage"
    assert result.phases["http"]["date_unreadable"] == "garbage"


def _network_config(tmp_path: Path, agent: Path, ca_bundle: str, body: str) -> Path:
    config = tmp_path / "ssmdiag.toml"
    config.write_text(
        f"[agent]\nbinary = '{agent}'\nconfig_file = '{tmp_path}/agent.json'\n"
        f"data_dir = '{tmp_path}/agent-data'\n"
        f"[network]\nregion = 'us-east-1'\nca_bundle = '{ca_bundle}'\n" + body
    )
    return config


def _check(config: Path, *ids: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [*SSMDIAG, "check", "--format", "json", "--config", str(config), "--only", *ids],
        capture_output=True,
        text=True,
        timeout=60,
        env=hermetic_env(),
        cwd=REPO,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result, time.monotonic() - started


def test_checks_with_a_garbage_date_and_a_giant_host_report_findings_not_errors(
    tls_peers: Callable[..., Peer],
    ca_bundle: str,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    peer = tls_peers(answer(AWS_LIKE + b"Date: garbage\r\n\r\n"))
    url = f"https://{peer.authority}"
    agent = fake_agent_factory("3.3.987.0")
    body = (
        "connect_timeout = 1\nprobe_timeout = 2\n"
        f"[endpoints]\nssm = '{url}'\nec2messages = '{url}'\nssmmessages = '{url}'\n"
    )
    ids = ("endpoint.ssm", "endpoint.ec2messages", "endpoint.ssmmessages", "clock.skew")
    result, _ = _check(_network_config(tmp_path, agent, ca_bundle, body), *ids)
    report = json.loads(result.stdout)
    validate_report(report)
    checks = {c["id"]: c for c in report["checks"]}
    for service in ("ssm", "ec2messages", "ssmmessages"):
        assert checks[f"endpoint.{service}"]["status"] == "ok", checks[f"endpoint.{service}"]
    clock = checks["clock.skew"]
    assert clock["status"] == "skip" and "garbage" in clock["summary"]

    body = body.replace(f"ssm = '{url}'", f"ssm = 'https://{'h' * 10_000}'")
    result, _ = _check(_network_config(tmp_path, agent, ca_bundle, body), *ids[:3])
    if result.returncode == 78:  # ssmdiag's config may refuse such a name itself
        assert "endpoints.ssm" in result.stderr and len(result.stderr) < 2000
        return
    checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    ssm = checks["endpoint.ssm"]
    assert ssm["status"] == "fail" and ssm["details"]["failure"] == "dns_invalid_name"
    assert "not a valid DNS name" in ssm["summary"] and "[endpoints]" in ssm["remediation"]
    assert checks["endpoint.ec2messages"]["status"] == "ok"
    assert checks["endpoint.ssmmessages"]["status"] == "ok"


def test_check_against_dripping_endpoints_exits_right_after_its_deadline(
    tls_peers: Callable[..., Peer],
    ca_bundle: str,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
) -> None:
    peer = tls_peers(drip_answer)  # would drip for 100 s
    url = f"https://{peer.authority}"
    body = (
        "connect_timeout = 1\nprobe_timeout = 2\n"
        f"[endpoints]\nssm = '{url}'\nec2messages = '{url}'\nssmmessages = '{url}'\n"
    )
    config = _network_config(tmp_path, fake_agent_factory("3.3.987.0"), ca_bundle, body)
    result, elapsed = _check(config, "endpoint.ssm", "endpoint.ec2messages", "endpoint.ssmmessages")
    checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    for check in checks.values():
        assert check["status"] == "fail" and check["details"]["failure"] == "http_timeout"
        assert "stalls" in check["remediation"]
    assert result.returncode == 2
    assert elapsed < 2 + 3, elapsed  # probe_timeout + start-up of the interpreter, not 100 s


# --- the daemon under SIGTERM, mid-handshake --------------------------------------------------
def test_sigterm_during_a_stalled_tls_handshake_exits_within_two_seconds(
    tmp_path: Path, ca_bundle: str, fake_agent_factory: Callable[..., Path]
) -> None:
    stall = start_server("tls_stall")  # the lab's: accepts, never sends a byte
    try:
        url = f"https://{stall.host}:{stall.port}"
        body = (
            "connect_timeout = 30\nprobe_timeout = 60\n"
            f"[endpoints]\nssm = '{url}'\nec2messages = '{url}'\nssmmessages = '{url}'\n"
            f"[daemon]\nstate_dir = '{tmp_path / 'state'}'\n"
        )
        config = _network_config(tmp_path, fake_agent_factory("3.3.987.0"), ca_bundle, body)
        proc = subprocess.Popen(
            [*SSMDIAG, "run", "--config", str(config), "--sink", "stdout"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=hermetic_env(),
            cwd=REPO,
        )
        try:
            deadline = time.monotonic() + 30
            while len(stall.events("accept")) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(stall.events("accept")) >= 3, "the daemon never reached the handshakes"
            time.sleep(0.3)  # well inside the handshakes now
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        assert proc.stderr is not None
        stderr = proc.stderr.read()
        proc.stderr.close()
        assert "Traceback" not in stderr, stderr
        assert code == 0 and took < 2.0, (code, took)
    finally:
        stall.stop()


def test_a_bug_inside_one_probe_costs_that_endpoint_only(
    tls_peers: Callable[..., Peer], ca_bundle: str
) -> None:
    class BrokenProxies(ProxySettings):
        def proxy_for(self, url: str) -> Any:
            if "hostile" in url:
                raise KeyError("http://user:secret@proxy")  # a bug, with a secret in its text
            return None

    good = tls_peers(answer(AWS_LIKE + b"\r\n"))
    endpoints = [
        Endpoint("ssm", good.host, good.port, f"https://{good.authority}/", "test"),
        Endpoint("ssmmessages", FAR_AWAY, 443, f"https://{FAR_AWAY}/", "test"),
    ]
    results = probe_all(endpoints, BrokenProxies(), settings(ca_bundle))
    assert results["ssm"].ok, results["ssm"].message
    broken = results["ssmmessages"]
    assert broken.failure == "probe_error" and "KeyError in proxy_for" in broken.message
    assert "secret" not in broken.message and "report" in REMEDIATION["probe_error"]
