"""sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET per message.

The protocol is a few lines, so the daemon needs no compiled dependency for
READY=1, STATUS=, WATCHDOG=1, RELOADING=1 and STOPPING=1.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Optional


class Notifier:
    """Talks to the service manager, or does nothing when not started by one."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self._address: Optional[str] = address or None
        self.watchdog_interval = _watchdog_interval(environ)

    def send(self, *assignments: str) -> bool:
        if self._address is None or not hasattr(socket, "AF_UNIX"):
            return False
        # One line per assignment; a STATUS= text must not break the framing.
        payload = "\n".join(" ".join(a.split()) for a in assignments).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(1.0)
                sock.sendto(payload, self._address)
        except OSError:
            return False  # the manager went away: nothing to tell, nothing to fix here
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        # Only when WatchdogSec= asked for it: the loop calls this at every wake-up.
        return self.watchdog_interval is not None and self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.send("RELOADING=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")


def _watchdog_interval(environ: Mapping[str, str]) -> Optional[float]:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec=), or None when unset."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = environ.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2_000_000
