"""Run a program with a hard timeout and no shell; every outcome is a value, never an exception.

The process runs in its own session so a timeout kills the whole group: an
agent binary that forks and hangs cannot hold ssmdiag's pipes open.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Optional

MAX_OUTPUT_BYTES = 64 * 1024

# Children still running, so a daemon that stops mid-cycle can end them too.
_live: set[subprocess.Popen[bytes]] = set()
_live_lock = threading.Lock()


@dataclass(frozen=True)
class ProcResult:
    argv: tuple[str, ...]
    # ok: exit 0 | nonzero: ran, exit != 0 | not_found | denied | timeout | error
    # | flood: printed more than MAX_OUTPUT_BYTES (stopped; stdout/stderr hold the start)
    outcome: str
    returncode: Optional[int] = None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    message: str = ""

    @property
    def ran(self) -> bool:
        return self.outcome in ("ok", "nonzero")

    def excerpt(self) -> str:
        """The start of what the program printed, for "printed X, not Y" messages."""
        return (self.stdout or self.stderr).strip()[:80] or "nothing"

    def describe(self) -> str:
        """One line saying what happened, for summaries and details."""
        name = self.argv[0]
        if self.outcome == "ok":
            return f"{name} exited 0"
        if self.outcome == "nonzero":
            tail = (self.stderr or self.stdout).strip().splitlines()
            said = f": {tail[-1][:160]}" if tail else ""
            return f"{name} exited {self.returncode}{said}"
        return f"{name}: {self.message}"


def run(
    argv: list[str] | tuple[str, ...],
    timeout: float,
    env: Optional[dict[str, str]] = None,
) -> ProcResult:
    args = tuple(argv)
    started = time.monotonic()
    popen_kwargs: dict[str, object] = {}
    if sys.platform != "win32":
        popen_kwargs["start_new_session"] = True
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            **popen_kwargs,  # type: ignore[call-overload]
        )
    except FileNotFoundError:
        return ProcResult(args, "not_found", message="not found")
    except PermissionError:
        return ProcResult(args, "denied", message="permission denied (not executable or no access)")
    except OSError as exc:
        return ProcResult(args, "error", message=f"could not start: {exc.strerror or exc}")
    with _live_lock:
        _live.add(proc)
    flooded = threading.Event()
    readers = [_BoundedReader(pipe, flooded) for pipe in (proc.stdout, proc.stderr)]
    try:
        deadline = started + timeout
        while proc.poll() is None and not flooded.is_set():
            if time.monotonic() >= deadline:
                break
            flooded.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        if proc.poll() is None:
            kill_tree(proc)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)
            if not flooded.is_set():
                return ProcResult(
                    args,
                    "timeout",
                    duration_s=time.monotonic() - started,
                    message=f"no answer within {timeout:g} s (killed)",
                )
        # The program exited; a child it left behind may still hold the pipes open.
        left = max(0.1, deadline - time.monotonic())
        if not all(r.join(left) for r in readers):
            kill_tree(proc)
            for reader in readers:
                reader.join(2)
    finally:
        with _live_lock:
            _live.discard(proc)
    duration = time.monotonic() - started
    stdout, stderr = (r.text() for r in readers)
    if flooded.is_set():
        return ProcResult(
            args,
            "flood",
            proc.returncode,
            stdout,
            stderr,
            duration,
            message=f"printed more than {MAX_OUTPUT_BYTES // 1024} KiB (stopped and killed)",
        )
    outcome = "ok" if proc.returncode == 0 else "nonzero"
    return ProcResult(args, outcome, proc.returncode, stdout, stderr, duration)


class _BoundedReader:
    """Reads one pipe on its own thread, keeping at most MAX_OUTPUT_BYTES: the bound holds
    while reading, so a program that floods its output never fills ssmdiag's memory."""

    def __init__(self, pipe: Optional[IO[bytes]], flooded: threading.Event) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._pipe = pipe
        self._flooded = flooded
        self._thread = threading.Thread(target=self._read, name="ssmdiag-pipe", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        if self._pipe is None:
            return
        with contextlib.suppress(OSError, ValueError):
            while True:
                chunk = (
                    self._pipe.read1(16 * 1024)
                    if hasattr(self._pipe, "read1")
                    else (self._pipe.read(16 * 1024))
                )
                if not chunk:
                    return
                keep = MAX_OUTPUT_BYTES - self._size
                if keep > 0:
                    self._chunks.append(chunk[:keep])
                self._size += len(chunk)
                if self._size > MAX_OUTPUT_BYTES:
                    self._flooded.set()
                    return

    def join(self, timeout: float) -> bool:
        """True when the pipe reached its end (or the bound)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")


def terminate_all() -> int:
    """Kill every child still running (the daemon is stopping); returns how many."""
    with _live_lock:
        running = list(_live)
    for proc in running:
        with contextlib.suppress(OSError):
            kill_tree(proc)
    return len(running)


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process's whole group (it was started in its own session); on Windows
    `taskkill /T /F`, which also ends what it started (TerminateProcess ends only the
    process). The process itself is then killed directly on Windows, and on POSIX when
    its group is already gone."""
    if sys.platform == "win32":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [_taskkill(), "/T", "/F", "/PID", str(proc.pid)],
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=5,
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
            )
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            return
        except OSError:
            pass
    proc.kill()


def _taskkill() -> str:
    """By full path: a taskkill.exe earlier on PATH must not be what a service runs."""
    root = os.environ.get("SYSTEMROOT") or r"C:\Windows"
    return root + r"\System32\taskkill.exe"
