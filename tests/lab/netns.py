"""Throw-away Linux network namespaces for hermetic network tests.

Every lab address (198.18.x.x, 169.254.169.254, ...) only ever exists inside a
namespace created here, so nothing a test does can reach a real network.  The
namespace has only ``lo`` plus optional "blackhole" sinks; there is no route out.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

PREFIX = "ssmdlab-"
NETNS_ETC = Path("/etc/netns")
IP_TIMEOUT = 10.0
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class LabUnavailable(RuntimeError):
    """The machine cannot host the lab (not root, no ``ip netns``, no dnsmasq...)."""


def lab_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without proxy variables, plus ``extra``: a predictable child env."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    env.update(extra or {})
    return env


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def _kill_group(proc: subprocess.Popen[Any], grace: float = 2.0) -> None:
    """SIGTERM the process group of ``proc``, SIGKILL after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _ns_pids(name: str) -> list[int]:
    res = _ip("netns", "pids", name, check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def _delete_ns(name: str) -> None:
    """Kill every process still in namespace ``name``, delete it and its /etc/netns dir."""
    for _ in range(5):  # bounded: processes might fork while we kill
        pids = _ns_pids(name)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    _ip("netns", "delete", name, check=False)
    shutil.rmtree(NETNS_ETC / name, ignore_errors=True)


def cleanup_stale() -> list[str]:
    """Delete lab namespaces left behind by dead processes (names embed the owner pid)."""
    removed = []
    res = _ip("netns", "list", check=False)
    for line in res.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name[len(PREFIX) :].split("-") if name.startswith(PREFIX) else []
        if len(parts) == 2 and parts[0].isdigit():
            try:
                os.kill(int(parts[0]), 0)
                continue  # owner still alive
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            _delete_ns(name)
            removed.append(name)
    return removed


def netns_unavailable_reason() -> str | None:
    """None if this process can create namespaces, else a human-readable reason."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network lab needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "network lab needs the 'ip' command (iproute2)"
    probe = f"{PREFIX}{os.getpid()}-probe{secrets.token_hex(2)}"
    try:
        res = _ip("netns", "add", probe, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"'ip netns add' failed: {exc}"
    if res.returncode != 0:
        return f"'ip netns add' failed: {res.stderr.strip()}"
    _delete_ns(probe)
    return None


class NetNS:
    """A uniquely named network namespace; use as a context manager.

    >>> with NetNS() as ns:
    ...     ns.add_address("198.18.0.10/32")
    ...     ns.run(["ping", "-c1", "-W1", "198.18.0.10"], timeout=5)
    """

    def __init__(self) -> None:
        self.name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.etc_dir = NETNS_ETC / self.name
        self._procs: list[subprocess.Popen[Any]] = []
        self._sinks: dict[str, str] = {}
        self._addresses: set[str] = set()
        self._closers: list[Any] = []  # objects with .stop(), stopped before the ns goes
        self._created = False

    # -- lifecycle -------------------------------------------------------
    def __enter__(self) -> NetNS:
        try:
            _ip("netns", "add", self.name)
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            raise LabUnavailable(f"cannot create network namespace: {exc}") from exc
        self._created = True
        try:
            self.ip("link", "set", "lo", "up")
            self.etc_dir.mkdir(parents=True, exist_ok=True)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop helpers, kill every process in the namespace, delete it. Idempotent."""
        while self._closers:
            with contextlib.suppress(Exception):  # cleanup must go on
                self._closers.pop().stop()
        while self._procs:
            _kill_group(self._procs.pop())
        if self._created:
            _delete_ns(self.name)
            self._created = False

    def register(self, obj: Any) -> None:
        """Have ``obj.stop()`` called when the namespace is closed."""
        self._closers.append(obj)

    # -- configuration ---------------------------------------------------
    def ip(self, *args: str) -> str:
        """Run ``ip -n NAME ARGS`` and return stdout (raises on failure)."""
        return _ip("-n", self.name, *args).stdout

    def add_address(self, cidr: str, dev: str = "lo") -> str:
        """Add ``cidr`` (e.g. ``198.18.0.10/32``) to ``dev``; returns the bare address."""
        self.ip("addr", "add", cidr, "dev", dev)
        self._addresses.add(cidr.split("/", maxsplit=1)[0])
        return cidr.split("/", maxsplit=1)[0]

    def ensure_address(self, address: str) -> str:
        """Make ``address`` exist on ``lo`` unless it is loopback/wildcard or already added."""
        if (
            address in self._addresses
            or address in ("0.0.0.0", "::", "::1")
            or (address.startswith("127."))
        ):
            return address
        self.add_address(f"{address}/{128 if ':' in address else 32}")
        return address

    def blackhole(self, subnet: str = "198.18.99.0/24") -> str:
        """Make ``subnet`` silently drop packets; return an address in it (``.2``).

        Connecting to any address of the subnet except ``.1`` times out (no RST, no
        ICMP).  Uses a ``dummy`` device, or where that module is missing, a veth
        pair with ARP off: frames go to the peer with a MAC it does not own and
        are dropped.
        """
        prefix = subnet.rsplit(".", 1)[0]
        length = subnet.split("/")[1] if "/" in subnet else "24"
        if subnet not in self._sinks:
            dev = f"bh{len(self._sinks)}"
            if _ip("-n", self.name, "link", "add", dev, "type", "dummy", check=False).returncode:
                self.ip("link", "add", dev, "type", "veth", "peer", "name", f"{dev}p")
                self.ip("link", "set", f"{dev}p", "up")
                self.ip("link", "set", dev, "arp", "off")
            self.ip("link", "set", dev, "up")
            self.add_address(f"{prefix}.1/{length}", dev)
            self._sinks[subnet] = dev
        return f"{prefix}.2"

    def start_dns(self, records: Mapping[str, Sequence[str]], **kwargs: Any) -> Any:
        """Shortcut for :func:`tests.lab.dns.start_dns` (returns a DnsServer)."""
        from .dns import start_dns

        return start_dns(self, records, **kwargs)

    def dns_timeout(self, subnet: str = "198.18.98.0/24") -> str:
        """Shortcut for :func:`tests.lab.dns.dns_timeout` (resolver -> blackhole)."""
        from .dns import dns_timeout

        return dns_timeout(self, subnet)

    def write_etc(self, filename: str, content: str) -> Path:
        """Write /etc/netns/NAME/<filename>; ``ip netns exec`` bind-mounts it over /etc."""
        path = self.etc_dir / filename
        path.write_text(content)
        return path

    # -- running things inside ------------------------------------------
    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def popen(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` in the namespace (own process group, killed on close)."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc: subprocess.Popen[Any] = subprocess.Popen(
            self.argv(argv),
            env=dict(env) if env is not None else lab_env(),
            start_new_session=True,
            **kwargs,
        )
        self._procs.append(proc)
        return proc

    def run(
        self,
        argv: Sequence[str],
        timeout: float,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the namespace and capture text output.

        Raises subprocess.TimeoutExpired after ``timeout`` s (the whole process group
        is killed first).  ``env=None`` means :func:`lab_env` (no proxy variables).
        """
        proc = self.popen(
            argv,
            env=env,
            cwd=cwd,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        )
        try:
            out, err = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise
        finally:
            if proc in self._procs and proc.poll() is not None:
                self._procs.remove(proc)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def python(self, code: str, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a Python snippet in the namespace with this interpreter."""
        import sys

        return self.run([sys.executable, "-c", code], timeout=timeout, **kwargs)

    def __repr__(self) -> str:
        return f"NetNS({self.name!r})"
