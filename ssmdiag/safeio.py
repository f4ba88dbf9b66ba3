"""The one way ssmdiag reads files nobody vouches for, and parses what it read.

Every read is bounded (a size cap, said when hit, never a silent cut), refuses what is
not a regular file (a FIFO would block forever, /dev/zero would never end), and every
parse is depth-limited before the parser recurses (Python's json and tomllib raise
RecursionError on deeply nested input).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_BYTES = 1024 * 1024
MAX_NESTING = 200  # far beyond any real config; far below Python's recursion limit

_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_TOML_STRINGS = re.compile(
    r'"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*', re.DOTALL
)


@dataclass(frozen=True)
class FileRead:
    path: str
    # ok | missing | denied | error | not_regular
    outcome: str
    text: str = ""
    message: str = ""
    truncated: bool = False  # the file is larger than the cap: `text` is only its start
    data: bytes = b""  # the bytes read (at most the cap), for callers that decode strictly


class TooDeep(ValueError):
    """Nested deeper than ssmdiag parses (MAX_NESTING)."""


def path_problem(path: str) -> str | None:
    """Why a configured path can never name a file, or None."""
    if "\x00" in path:
        return "contains a NUL byte"
    return None


def _open_regular(path: str) -> FileRead | tuple[int, os.stat_result]:
    """An open descriptor of a regular file and its stat, or why there is none. Opened
    non-blocking, so a FIFO never blocks the open itself, and refused once seen."""
    problem = path_problem(path)
    if problem:
        return FileRead(path, "error", message=f"the path {problem}")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return FileRead(path, "missing", message="does not exist")
    except PermissionError:
        return FileRead(path, "denied", message="permission denied")
    except OSError as exc:
        return FileRead(path, "error", message=exc.strerror or str(exc))
    try:
        info = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        return FileRead(path, "error", message=exc.strerror or str(exc))
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return FileRead(path, "not_regular", message=f"is {_kind(info.st_mode)}, not a file")
    return fd, info


def write_atomic(path: str, body: bytes, mode: int = 0o640) -> None:
    """Write, fsync, rename: readers see the old file or the new one, never half of one.
    Raises OSError (disk full, read-only, permission) for the caller to report; a
    half-written temporary file is removed."""
    temporary = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            if os.write(fd, body) != len(body):
                raise OSError(28, "short write (disk full?)")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _read_up_to(fd: int, limit: int) -> bytes:
    """At most `limit` bytes from fd, in 1 MiB reads (never more than asked for)."""
    chunks: list[bytes] = []
    while limit > 0:
        chunk = os.read(fd, min(limit, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        limit -= len(chunk)
    return b"".join(chunks)


def read_text(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> FileRead:
    """A regular file's text (UTF-8, invalid bytes replaced), at most max_bytes of it."""
    opened = _open_regular(path)
    if isinstance(opened, FileRead):
        return opened
    fd, _ = opened
    try:
        data = _read_up_to(fd, max_bytes + 1)
    except OSError as exc:
        return FileRead(path, "error", message=exc.strerror or str(exc))
    finally:
        os.close(fd)
    truncated = len(data) > max_bytes
    text = data[:max_bytes].decode("utf-8", "replace")
    message = f"larger than the {max_bytes // 1024} KiB ssmdiag reads" if truncated else ""
    return FileRead(path, "ok", text, message, truncated, data[:max_bytes])


def read_tail(path: str, max_bytes: int) -> FileRead:
    """The last max_bytes of a regular file (a log still being written is fine: the size
    is taken once, so a growing file never keeps the read going)."""
    opened = _open_regular(path)
    if isinstance(opened, FileRead):
        return opened
    fd, info = opened
    try:
        start = max(0, info.st_size - max_bytes)
        os.lseek(fd, start, os.SEEK_SET)
        data = _read_up_to(fd, info.st_size - start)
    except OSError as exc:
        return FileRead(path, "error", message=exc.strerror or str(exc))
    finally:
        os.close(fd)
    if start:  # the first line is cut: start at the next whole line
        data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
    message = f"only the last {max_bytes // 1024} KiB were read" if start else ""
    return FileRead(path, "ok", data.decode("utf-8", "replace"), message, bool(start), data)


def list_files(path: str, limit: int = 1000) -> list[tuple[str, float, int]]:
    """(name, mtime, size) of up to `limit` regular files in a directory."""
    found: list[tuple[str, float, int]] = []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if len(found) >= limit:
                    break
                try:
                    if entry.is_file(follow_symlinks=False):
                        info = entry.stat(follow_symlinks=False)
                        found.append((entry.name, info.st_mtime, info.st_size))
                except OSError:
                    continue
    except OSError:
        return []
    return found


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _deepest(brackets: str, openers: str, closers: str) -> int:
    depth = deepest = 0
    for char in brackets:
        if char in openers:
            depth += 1
            deepest = max(deepest, depth)
        elif char in closers:
            depth -= 1
    return deepest


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest (strings ignored), without recursing."""
    return _deepest(_STRING_LITERAL.sub("", text), "[{", "]}")


def toml_depth(text: str) -> int:
    """An upper bound on how deeply TOML inline tables/arrays and dotted keys nest."""
    bare = _TOML_STRINGS.sub("", text)
    dotted = max((line.count(".") + 1 for line in bare.splitlines()), default=0)
    return max(_deepest(bare, "[{", "]}"), dotted)


def loads_json(text: str, max_depth: int = MAX_NESTING) -> Any:
    """json.loads, refusing input nested deeper than max_depth (TooDeep, a ValueError)."""
    import json

    depth = json_depth(text)
    if depth > max_depth:
        raise TooDeep(f"nested {depth} levels deep (ssmdiag reads at most {max_depth})")
    return json.loads(text)
