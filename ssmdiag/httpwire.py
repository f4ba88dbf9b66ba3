"""HTTP/1 on a socket ssmdiag already holds, bounded in bytes and in time.

Used by the endpoint probes (on the very connection whose DNS/TCP/CONNECT/TLS phases
were measured) and by the IMDS client. Deadlines are absolute (time.monotonic()) and
checked between reads, so a peer that drips a byte at a time ends at the deadline; at
most MAX_HEAD bytes of status line and headers are read, and at most a small cap of
a body.
"""

from __future__ import annotations

import re
import socket
import ssl
import time

MAX_HEAD = 64 * 1024  # status line + headers of an answer (CONNECT or HTTP)
MAX_STATUS_LINE = 8 * 1024


class HeadError(Exception):
    """How reading a status line and headers ended without them. kind: timeout | closed |
    reset | oversized | not_http."""

    def __init__(self, kind: str, data: bytes, reason: str = "") -> None:
        super().__init__(kind)
        self.kind = kind
        self.data = data
        self.reason = reason


def head_end(data: bytearray) -> int:
    """Where the blank line after the headers ends, 0 when it has not arrived yet."""
    ends = [i + 4 for i in (data.find(b"\r\n\r\n"),) if i >= 0]
    ends += [i + 2 for i in (data.find(b"\n\n"),) if i >= 0]
    return min(ends) if ends else 0


def read_head(sock: socket.socket, until: float, data: bytes = b"") -> tuple[bytes, bytes]:
    """(status line + headers, what came after them), read before `until` (monotonic).

    The deadline is checked between reads and each read waits only for the time left,
    so a peer that drips one byte at a time ends here at the deadline. Reads never
    go past MAX_HEAD bytes; anything that does not start like HTTP ends at once."""
    buffer = bytearray(data)
    while True:
        end = head_end(buffer)
        if end:
            return bytes(buffer[:end]), bytes(buffer[end:])
        start = bytes(buffer[:5])
        if not b"HTTP/".startswith(start) and not start.startswith(b"HTTP/"):
            raise HeadError("not_http", bytes(buffer))
        line_end = buffer.find(b"\n")
        if len(buffer) >= MAX_HEAD or (line_end < 0 and len(buffer) > MAX_STATUS_LINE):
            raise HeadError("oversized", bytes(buffer))
        left = until - time.monotonic()
        if left <= 0:
            raise HeadError("timeout", bytes(buffer))
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(16384, MAX_HEAD - len(buffer)))
        except (socket.timeout, TimeoutError):
            raise HeadError("timeout", bytes(buffer)) from None
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
            raise HeadError("reset", bytes(buffer), str(reason)) from None
        if not chunk:
            raise HeadError("closed", bytes(buffer))
        buffer += chunk


_STATUS_LINE = re.compile(rb"HTTP/[0-9]\.[0-9] ([0-9]{3})(?:[ \t]([^\r\n]*))?")


def parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    """(status, reason, headers with lower-case names: the first of each name wins)."""
    lines = head.split(b"\n")
    match = _STATUS_LINE.fullmatch(lines[0].rstrip(b"\r"))
    if not match:
        raise HeadError("not_http", head)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.rstrip(b"\r").partition(b":")
        if colon and name and name == name.strip():  # malformed lines are skipped
            headers.setdefault(name.decode("latin-1").lower(), value.strip().decode("latin-1"))
    reason = (match.group(2) or b"").decode("latin-1", "replace")
    return int(match.group(1)), reason, headers


def send(sock: socket.socket, data: bytes, until: float) -> None:
    """sendall before `until` (sendall's timeout bounds the whole call)."""
    left = until - time.monotonic()
    if left <= 0:
        raise socket.timeout("no time left to send")
    sock.settimeout(left)
    sock.sendall(data)


def read_body(
    sock: socket.socket, data: bytes, headers: dict[str, str], until: float, limit: int
) -> bytes:
    """At most `limit` bytes of the body (Content-Length, else until the peer closes),
    before `until`. Raises HeadError("timeout"/"oversized") when it does not fit."""
    buffer = bytearray(data)
    wanted = headers.get("content-length", "")
    length = int(wanted) if wanted.isascii() and wanted.isdigit() else None
    if length is not None and length > limit:
        raise HeadError("oversized", bytes(buffer[:256]))
    while length is None or len(buffer) < length:
        if len(buffer) > limit:
            raise HeadError("oversized", bytes(buffer[:256]))
        left = until - time.monotonic()
        if left <= 0:
            raise HeadError("timeout", bytes(buffer[:256]))
        sock.settimeout(left)
        try:
            chunk = sock.recv(16384)
        except (socket.timeout, TimeoutError):
            raise HeadError("timeout", bytes(buffer[:256])) from None
        except OSError as exc:
            raise HeadError("reset", bytes(buffer[:256]), exc.strerror or str(exc)) from None
        if not chunk:
            break
        buffer += chunk
    return bytes(buffer[:length] if length is not None else buffer)
