"""Fake network peers for the lab, one kind per process (stdlib only).

Run as ``python -m tests.lab.servers KIND ...`` or ``python .../servers.py KIND ...``
so a server can be started *inside* a namespace with ``ip netns exec``.  It prints
``READY <host> <port>`` once listening, then one ``EVENT <json>`` line per thing it
saw (requests, CONNECT targets, TLS failures) so tests can assert on traffic.

Kinds: ``https`` (AWS-like error answers with an AWS request id, skewable Date,
optional delay; or, with ``--no-request-id`` and a page, a web filter's answer),
``http`` (the same without TLS: a captive portal's page), ``tls_stall`` (accepts, never
speaks), ``proxy`` (CONNECT + plain forward proxy; modes ok/auth/refuse; ``--resolve``
gives it a resolver of its own), ``imds`` (EC2 IMDSv2 with an optional hop-limit symptom).
Each process exits by itself after ``--max-lifetime`` seconds or when its parent dies.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import select
import socket
import ssl
import sys
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

IO_TIMEOUT = 10.0  # per-socket read/write timeout
TUNNEL_IDLE = 30.0  # proxy tunnel closes after this long without traffic
MAX_BODY = 1 << 20
_out_lock = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    """Report an event to the launcher (one JSON line on stdout)."""
    line = "EVENT " + json.dumps({"event": event, "ts": time.time(), **fields})
    with _out_lock:
        try:
            print(line, flush=True)
        except (BrokenPipeError, ValueError):
            os._exit(0)  # launcher is gone


def _watchdog(max_lifetime: float) -> None:
    """Exit when the lifetime is over or the launching process has died."""
    ppid, deadline = os.getppid(), time.monotonic() + max_lifetime
    while time.monotonic() < deadline and os.getppid() == ppid:
        time.sleep(0.5)
    os._exit(0)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# -- HTTP(S) plumbing --------------------------------------------------------
class LabHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        host: str,
        port: int,
        handler: type,
        opts: argparse.Namespace,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.address_family = _family(host)
        self.opts = opts
        self.ssl_context = ssl_context
        self.tokens: set[str] = set()
        super().__init__((host, port), handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshake happens here, in the per-connection thread, so one stuck
        # client cannot block the accept loop.
        request.settimeout(IO_TIMEOUT)
        if self.ssl_context is not None:
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                emit("tls_error", peer=client_address[0], error=str(exc))
                request.close()
                return
        try:
            super().finish_request(request, client_address)
        finally:
            request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        emit("error", peer=client_address[0], error=repr(sys.exc_info()[1]))


class LabHandler(BaseHTTPRequestHandler):
    """Answers every method through ``respond`` and records each request."""

    protocol_version = "HTTP/1.1"
    server_version = "Server"
    timeout = IO_TIMEOUT
    server: LabHTTPServer

    def __getattr__(self, name: str) -> Callable[[], None]:
        if name.startswith("do_"):
            return self.respond
        raise AttributeError(name)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def read_body(self) -> bytes:
        length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
        return self.rfile.read(length) if length > 0 else b""

    def record(self, **extra: Any) -> None:
        emit(
            "request",
            method=self.command,
            path=self.path,
            peer=self.client_address[0],
            headers=dict(self.headers.items()),
            **extra,
        )

    def reply(
        self,
        status: int,
        body: bytes | str,
        ctype: str = "text/plain",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def respond(self) -> None:
        raise NotImplementedError


class HttpsHandler(LabHandler):
    """AWS-endpoint look-alike: fixed status/body, skewable Date, optional delay, and an
    x-amzn-RequestId header as every AWS answer has (``--no-request-id``: a middlebox's
    answer, which has none; ``--server-name`` sets its Server header)."""

    def version_string(self) -> str:
        return str(self.server.opts.server_name)

    def date_time_string(self, timestamp: float | None = None) -> str:
        now = time.time() if timestamp is None else timestamp
        return formatdate(now + self.server.opts.date_offset, usegmt=True)

    def respond(self) -> None:
        opts = self.server.opts
        self.read_body()
        self.record(sni=getattr(self.connection, "lab_sni", None))
        if opts.delay > 0:
            time.sleep(opts.delay)
        headers = {"x-amzn-RequestId": secrets.token_hex(16)} if opts.request_id else {}
        for line in opts.header:
            key, _, value = line.partition(":")
            headers[key.strip()] = value.strip()
        self.reply(opts.status, opts.body, opts.content_type, headers)


def _remember_sni(sock: Any, name: str | None, ctx: ssl.SSLContext) -> None:
    sock.lab_sni = name  # read back by HttpsHandler.record


# -- IMDS ----------------------------------------------------------------------
class ImdsHandler(LabHandler):
    """EC2 instance metadata service, IMDSv2 flavour."""

    server_version = "EC2ws"

    def data(self) -> dict[str, tuple[int, str]]:
        o = self.server.opts
        az = f"{o.region}a"
        doc = {
            "accountId": o.account_id,
            "architecture": "x86_64",
            "availabilityZone": az,
            "imageId": "ami-0123456789abcdef0",
            "instanceId": o.instance_id,
            "instanceType": "t3.micro",
            "privateIp": "10.0.0.10",
            "region": o.region,
            "version": "2017-09-30",
            "pendingTime": "2024-01-01T00:00:00Z",
        }
        md = "/latest/meta-data/"
        out = {
            md: (200, "ami-id\nhostname\niam/\ninstance-id\nplacement/\nservices/"),
            md + "instance-id": (200, o.instance_id),
            md + "ami-id": (200, doc["imageId"]),
            md + "hostname": (200, "ip-10-0-0-10.ec2.internal"),
            md + "placement/region": (200, o.region),
            md + "placement/availability-zone": (200, az),
            md + "services/domain": (200, "amazonaws.com"),
            "/latest/dynamic/instance-identity/document": (200, json.dumps(doc, indent=2)),
        }
        if o.profile_arn:
            role = o.profile_arn.rsplit("/", 1)[-1]
            out[md + "iam/"] = (200, "info\nsecurity-credentials/")
            out[md + "iam/info"] = (
                200,
                json.dumps(
                    {
                        "Code": "Success",
                        "LastUpdated": "2024-01-01T00:00:00Z",
                        "InstanceProfileArn": o.profile_arn,
                        "InstanceProfileId": "AIPAEXAMPLEEXAMPLE00",
                    }
                ),
            )
            out[md + "iam/security-credentials/"] = (200, role)
        return out

    def respond(self) -> None:
        opts, srv = self.server.opts, self.server
        self.read_body()
        path = self.path.split("?", 1)[0]
        token = self.headers.get("X-aws-ec2-metadata-token")
        self.record(has_token=token is not None, token_valid=token in srv.tokens)
        if path == "/latest/api/token":
            if self.command != "PUT":
                return self.reply(405, "Method Not Allowed")
            if self.headers.get("X-Forwarded-For"):
                return self.reply(403, "Forbidden")  # IMDS refuses proxied token requests
            if opts.hop_limit:
                return self.hang()
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return self.reply(400, "Bad Request")
            new = "AQAE" + secrets.token_urlsafe(32)
            srv.tokens.add(new)
            return self.reply(200, new, headers={"X-aws-ec2-metadata-token-ttl-seconds": ttl})
        if not path.startswith(("/latest/meta-data", "/latest/dynamic")):
            return self.reply(404, "Not Found")
        if (token not in srv.tokens) if token is not None else opts.tokens == "required":
            return self.reply(401, "Unauthorized")
        if self.command not in ("GET", "HEAD"):
            return self.reply(405, "Method Not Allowed")
        status, body = self.data().get(path, (404, "Not Found"))
        ctype = "application/json" if body.startswith("{") else "text/plain"
        self.reply(status, body, ctype)

    def hang(self) -> None:
        """Hop-limit symptom: the answer never arrives; wait for the client to give up."""
        deadline = time.monotonic() + self.server.opts.hang_max
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.5)
            if readable and not self.connection.recv(1, socket.MSG_PEEK):
                break  # client closed
        self.close_connection = True


# -- forward proxy -----------------------------------------------------------
class ProxyHandler(LabHandler):
    """HTTP forward proxy: CONNECT tunnels and absolute-URI requests."""

    rbufsize = 0  # unbuffered, so no tunnel bytes get stuck in a read buffer

    def gate(self) -> int:
        """0 if the request may pass, else the status that was sent."""
        opts = self.server.opts
        if opts.mode == "refuse":
            self.reply(403, "Forbidden by lab proxy policy\n", headers={"Connection": "close"})
            return 403
        if opts.mode == "auth":
            want = "Basic " + base64.b64encode(f"{opts.user}:{opts.password}".encode()).decode()
            if self.headers.get("Proxy-Authorization", "").strip() != want:
                self.reply(
                    407,
                    "Proxy Authentication Required\n",
                    headers={
                        "Proxy-Authenticate": 'Basic realm="ssmdiag-lab"',
                        "Connection": "close",
                    },
                )
                return 407
        return 0

    def do_CONNECT(self) -> None:
        refused = self.gate()
        authed = "Proxy-Authorization" in self.headers
        if refused:
            self.close_connection = True
            emit("connect", target=self.path, status=refused, auth=authed)
            return
        host, _, port = self.path.rpartition(":")
        host = self.server.opts.resolve_map.get(host.strip("[]").lower(), host.strip("[]"))
        try:
            upstream = socket.create_connection((host, int(port)), timeout=5)
        except (OSError, ValueError) as exc:
            emit("connect", target=self.path, status=502, auth=authed, error=str(exc))
            self.reply(502, f"Bad Gateway: {exc}\n", headers={"Connection": "close"})
            self.close_connection = True
            return
        emit("connect", target=self.path, status=200, auth=authed)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        with upstream:
            _relay(self.connection, upstream)

    def respond(self) -> None:
        """Plain proxying of ``METHOD http://host[:port]/path``."""
        body = self.read_body()
        url = urlsplit(self.path)
        refused = self.gate()
        emit(
            "forward",
            method=self.command,
            url=self.path,
            status=refused or None,
            auth="Proxy-Authorization" in self.headers,
        )
        self.close_connection = True
        if refused:
            return
        if url.scheme != "http" or not url.hostname:
            return self.reply(400, "Bad Request: absolute http:// URI required\n")
        lines = [f"{self.command} {url.path or '/'}{'?' + url.query if url.query else ''} HTTP/1.1"]
        lines += [
            f"{k}: {v}"
            for k, v in self.headers.items()
            if not k.lower().startswith("proxy-") and k.lower() != "connection"
        ]
        # Like squid: say who we are and for whom (real IMDS rejects token PUTs with XFF).
        lines += ["Via: 1.1 ssmdiag-lab-proxy", f"X-Forwarded-For: {self.client_address[0]}"]
        lines += ["Connection: close", "", ""]
        try:
            with socket.create_connection((url.hostname, url.port or 80), timeout=5) as up:
                up.sendall("\r\n".join(lines).encode() + body)
                _relay(self.connection, up)
        except OSError as exc:
            self.reply(502, f"Bad Gateway: {exc}\n")


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until one side closes or TUNNEL_IDLE passes quietly."""
    peers = {a: b, b: a}
    last = time.monotonic()
    while time.monotonic() - last < TUNNEL_IDLE:
        readable, _, _ = select.select(list(peers), [], [], 1.0)
        for src in readable:
            try:
                data = src.recv(65536)
                if not data:
                    return
                peers[src].sendall(data)
            except OSError:
                return
            last = time.monotonic()


# -- TLS stall -----------------------------------------------------------------
def serve_stall(sock: socket.socket) -> None:
    """Accept connections and never send a byte (stalls any TLS handshake)."""
    held: list[socket.socket] = []
    while True:
        conn, peer = sock.accept()
        emit("accept", peer=peer[0])
        held.append(conn)
        if len(held) > 256:  # bounded
            held.pop(0).close()


# -- entry point ---------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tests.lab.servers", description=__doc__)
    sub = ap.add_subparsers(dest="kind", required=True)
    kinds = {k: sub.add_parser(k) for k in ("https", "http", "tls_stall", "proxy", "imds")}
    for p in kinds.values():
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=0)
        p.add_argument("--max-lifetime", type=float, default=600.0)
    kinds["https"].add_argument("--cert", required=True, help="PEM chain (leaf first)")
    kinds["https"].add_argument("--key", required=True)
    for h in (kinds["https"], kinds["http"]):
        h.add_argument("--status", type=int, default=400)
        h.add_argument("--body", default='{"__type":"UnknownOperationException"}')
        h.add_argument("--content-type", default="application/x-amz-json-1.1")
        h.add_argument("--date-offset", type=float, default=0.0, help="seconds added to Date")
        h.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
        h.add_argument("--header", action="append", default=[], help="extra 'Name: value'")
        h.add_argument(
            "--request-id",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="send x-amzn-RequestId as AWS does (--no-request-id: a middlebox's answer)",
        )
        h.add_argument("--server-name", default="Server", help="the Server header")
    p = kinds["proxy"]
    p.add_argument("--mode", choices=("ok", "auth", "refuse"), default="ok")
    p.add_argument("--user", default="labuser")
    p.add_argument("--password", default="labpass")
    p.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="NAME=ADDRESS",
        help="the proxy's own resolver: CONNECT NAME goes to ADDRESS (a proxy in another "
        "network, which reaches what its clients cannot)",
    )
    i = kinds["imds"]
    i.add_argument("--instance-id", default="i-0123456789abcdef0")
    i.add_argument("--region", default="us-east-1")
    i.add_argument("--account-id", default="123456789012")
    i.add_argument(
        "--profile-arn",
        default="arn:aws:iam::123456789012:instance-profile/ssm-lab",
        help="empty: no instance profile (iam/info answers 404)",
    )
    i.add_argument("--tokens", choices=("required", "optional"), default="required")
    i.add_argument("--hop-limit", action="store_true", help="token PUT never answered")
    i.add_argument("--hang-max", type=float, default=60.0)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    opts.resolve_map = {
        name.strip().lower(): address.strip()
        for name, _, address in (item.partition("=") for item in getattr(opts, "resolve", []))
    }
    threading.Thread(target=_watchdog, args=(opts.max_lifetime,), daemon=True).start()
    if opts.kind == "tls_stall":
        sock = socket.socket(_family(opts.host), socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((opts.host, opts.port))
        sock.listen(64)
        print(f"READY {opts.host} {sock.getsockname()[1]}", flush=True)
        serve_stall(sock)
        return
    ctx = None
    if opts.kind == "https":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(opts.cert, opts.key)
        ctx.sni_callback = _remember_sni
    handler = {
        "https": HttpsHandler,
        "http": HttpsHandler,
        "proxy": ProxyHandler,
        "imds": ImdsHandler,
    }[opts.kind]
    server = LabHTTPServer(opts.host, opts.port, handler, opts, ctx)
    print(f"READY {opts.host} {server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.5)


if __name__ == "__main__":
    main()
