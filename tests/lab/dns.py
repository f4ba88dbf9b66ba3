"""Hermetic DNS for a lab namespace: dnsmasq with no upstream, plus resolv.conf.

Programs started with ``ip netns exec`` see /etc/netns/NAME/{resolv.conf,hosts,
nsswitch.conf} bind-mounted over /etc, so the ordinary system resolver
(socket.getaddrinfo) asks only the lab's dnsmasq and never a real resolver.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

from .netns import LabUnavailable, NetNS, _kill_group

DEFAULT_NXDOMAIN = ("amazonaws.com", "amazonaws.com.cn")
DNS_LISTEN = "198.18.0.53"
RESOLV_OPTIONS = "options timeout:1 attempts:1"
# "files dns" only: no nss-resolve/mdns that could reach a resolver outside the namespace.
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"
HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"


def dnsmasq_path() -> str:
    path = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
    if path is None:
        raise LabUnavailable("dnsmasq not installed (apt-get install dnsmasq-base)")
    return path


def write_resolv_conf(ns: NetNS, nameservers: Sequence[str], options: str = RESOLV_OPTIONS) -> None:
    """Point the namespace's resolver at ``nameservers`` (also pins hosts/nsswitch)."""
    lines = [f"nameserver {a}" for a in nameservers] + ([options] if options else [])
    ns.write_etc("resolv.conf", "\n".join(lines) + "\n")
    ns.write_etc("hosts", HOSTS)
    ns.write_etc("nsswitch.conf", NSSWITCH)


def dns_timeout(ns: NetNS, subnet: str = "198.18.98.0/24") -> str:
    """Resolver pointed at a blackholed nameserver: lookups fail with EAI_AGAIN after ~1 s."""
    server = ns.blackhole(subnet)
    write_resolv_conf(ns, [server])
    return server


class DnsServer:
    """A running dnsmasq inside a namespace.  ``stop()`` is idempotent."""

    def __init__(self, proc: subprocess.Popen[str], address: str) -> None:
        self.proc = proc
        self.address = address
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if len(self.log) < 10000:
                self.log.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any("started, version" in ln for ln in self.log):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("dnsmasq did not start: " + " | ".join(self.log[-10:]))

    def stop(self) -> None:
        _kill_group(self.proc)
        self._reader.join(timeout=2)

    def __enter__(self) -> DnsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_dns(
    ns: NetNS,
    records: Mapping[str, Sequence[str]],
    *,
    nxdomain_domains: Sequence[str] = DEFAULT_NXDOMAIN,
    listen: str = DNS_LISTEN,
    write_resolv: bool = True,
    ready_timeout: float = 5.0,
) -> DnsServer:
    """Start dnsmasq in ``ns`` on ``listen``:53 answering ``records`` (name -> IPv4/IPv6 list).

    Any other name under ``nxdomain_domains`` gets NXDOMAIN; names elsewhere get
    REFUSED (there is no upstream).  Unless ``write_resolv`` is false, the
    namespace's resolv.conf points at it.  Stopped when ``ns`` closes.
    """
    ns.add_address(f"{listen}/32")
    argv = [
        dnsmasq_path(),
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--bind-interfaces",
        f"--listen-address={listen}",
        "--port=53",
        "--pid-file=",
        "--user=root",
        "--log-facility=-",
        "--log-queries",
        "--cache-size=0",
    ]
    argv += [f"--local=/{d.strip('.')}/" for d in nxdomain_domains]
    for name, addrs in records.items():
        for addr in addrs:
            argv.append(f"--host-record={name.strip('.')},{addr}")
    proc = ns.popen(argv, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = DnsServer(proc, listen)
    ns.register(server)
    server.wait_ready(ready_timeout)
    if write_resolv:
        write_resolv_conf(ns, [listen])
    return server
