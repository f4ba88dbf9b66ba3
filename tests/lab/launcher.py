"""Start lab servers (see servers.py) on loopback or inside a NetNS, and watch them.

Servers always run as child processes, so the same code works with and without
a namespace, and a misbehaving server can always be killed.
"""

from __future__ import annotations

import datetime
import json
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from .ca import DEFAULT_HOSTNAMES, LabCA
from .netns import NetNS, _kill_group, lab_env

SERVERS_PY = Path(__file__).with_name("servers.py")
KINDS = ("https", "http", "tls_stall", "proxy", "imds")
MAX_EVENTS = 10000


class ServerHandle:
    """A running lab server: address, recorded events, ``stop()``; a context manager."""

    def __init__(self, kind: str, proc: subprocess.Popen[str], ca: LabCA | None = None) -> None:
        self.kind = kind
        self.proc = proc
        self.ca = ca
        self.host = ""
        self.port = 0
        self._events: list[dict[str, Any]] = []
        self._stderr: deque[str] = deque(maxlen=200)
        self._cond = threading.Condition()
        self._ready = False
        self._threads = [
            threading.Thread(target=f, daemon=True) for f in (self._read_stdout, self._read_stderr)
        ]
        for t in self._threads:
            t.start()

    # -- output readers ----------------------------------------------------
    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                if line.startswith("READY "):
                    _, self.host, port = line.split()
                    self.port, self._ready = int(port), True
                elif line.startswith("EVENT ") and len(self._events) < MAX_EVENTS:
                    self._events.append(json.loads(line[6:]))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip("\n"))

    def _wait_ready(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._ready or self.proc.poll() is not None, timeout)
        if not self._ready:
            self.stop()
            raise RuntimeError(f"lab {self.kind} server did not start: {self.stderr}")

    # -- public API --------------------------------------------------------
    @property
    def stderr(self) -> str:
        return "\n".join(self._stderr)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def url(self) -> str:
        """``https://host:port`` / ``http://host:port`` (IPv6 hosts bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.kind == 'https' else 'http'}://{host}:{self.port}"

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """Recorded events so far (optionally only those named ``event``)."""
        with self._cond:
            return [e for e in self._events if event is None or e["event"] == event]

    def requests(self) -> list[dict[str, Any]]:
        """HTTP requests seen: dicts with method, path, headers, peer (+ kind extras)."""
        return self.events("request")

    def connect_targets(self) -> list[str]:
        """Proxy only: ``host:port`` of every CONNECT seen (whatever the answer)."""
        return [e["target"] for e in self.events("connect")]

    def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """Block until an event matching ``pred`` was recorded; TimeoutError otherwise."""
        found: list[dict[str, Any]] = []

        def check() -> bool:
            found[:] = [e for e in self._events if pred(e)][:1]
            return bool(found)

        with self._cond:
            if not self._cond.wait_for(check, timeout):
                raise TimeoutError(f"no matching event from lab {self.kind} server")
        return found[0]

    def stop(self) -> None:
        """Kill the server (idempotent)."""
        _kill_group(self.proc)
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ServerHandle({self.kind!r}, {self.url!r})"


NEGATABLE = frozenset({"request_id"})  # on by default: False gives --no-FLAG


def _cli_args(opts: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False and key in NEGATABLE:
            args.append("--no-" + key.replace("_", "-"))
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


def start_server(
    kind: str,
    host: str = "127.0.0.1",
    port: int = 0,
    ns: NetNS | None = None,
    *,
    ca: LabCA | None = None,
    hostnames: Sequence[str] = DEFAULT_HOSTNAMES,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    ready_timeout: float = 10.0,
    **opts: Any,
) -> ServerHandle:
    """Start a lab server of ``kind`` on ``host:port`` (port 0: any free port).

    With ``ns``, the server runs inside that namespace (``host`` is added to its
    ``lo`` if needed) and is stopped when the namespace closes.  ``https`` needs
    ``ca`` (a LabCA) and gets a certificate for ``hostnames``, valid from
    ``not_before`` to ``not_after`` when given (expired, not yet valid).  Other keyword
    options map to the server's command-line flags (``date_offset=-600`` ->
    ``--date-offset -600``; ``hop_limit=True`` -> ``--hop-limit``); see
    ``python -m tests.lab.servers KIND --help``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown lab server kind {kind!r}; expected one of {KINDS}")
    if kind == "https":
        if ca is None:
            raise ValueError("https lab server needs ca=LabCA(...)")
        cert, key = ca.issue(hostnames, not_before, not_after)
        opts.update(cert=cert, key=key)
    argv = [
        sys.executable,
        str(SERVERS_PY),
        kind,
        "--host",
        host,
        "--port",
        str(port),
        *_cli_args(opts),
    ]
    pipes: dict[str, Any] = dict(
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    if ns is not None:
        ns.ensure_address(host)
        proc = ns.popen(argv, **pipes)
    else:
        proc = subprocess.Popen(argv, env=lab_env(), start_new_session=True, **pipes)
    handle = ServerHandle(kind, proc, ca)
    if ns is not None:
        ns.register(handle)
    handle._wait_ready(ready_timeout)
    return handle


def closed_port(host: str = "127.0.0.1", ns: NetNS | None = None, timeout: float = 10.0) -> int:
    """A TCP port on ``host`` with nothing listening (connects get RST -> refused)."""
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n"
        "s.bind((sys.argv[1],0));print(s.getsockname()[1]);s.close()\n"
    )
    if ns is None:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.bind((host, 0))
            return int(sock.getsockname()[1])
    ns.ensure_address(host)
    res = ns.run([sys.executable, "-c", code, host], timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"closed_port failed: {res.stderr.strip()}")
    return int(res.stdout.strip())


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``pred`` until true or ``timeout`` s passed (bounded helper for tests)."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


SSM_SERVICES = ("ssm", "ec2messages", "ssmmessages")


def ssm_endpoints(region: str = "us-east-1") -> list[str]:
    """The three Session Manager endpoint names for ``region``."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return [f"{svc}.{region}.{suffix}" for svc in SSM_SERVICES]


def start_ssm_endpoints(
    ns: NetNS,
    ca: LabCA,
    region: str = "us-east-1",
    address: str = "198.18.0.10",
    extra_records: dict[str, list[str]] | None = None,
    **https_opts: Any,
) -> ServerHandle:
    """The usual happy path: dnsmasq maps the region's SSM endpoints to ``address``
    and an https server (cert from ``ca``) answers there on port 443."""
    from .dns import start_dns

    names = ssm_endpoints(region)
    start_dns(ns, {**{n: [address] for n in names}, **(extra_records or {})})
    return start_server("https", address, 443, ns, ca=ca, hostnames=names, **https_opts)
