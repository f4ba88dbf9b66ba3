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
from typing import Optional

MAX_OUTPUT_BYTES = 64 * 1024

# Children still running, so a daemon that stops mid-cycle can end them too.
_live: set[subprocess.Popen[bytes]] = set()
_live_lock = threading.Lock()


@dataclass(frozen=True)
class ProcResult:
    argv: tuple[str, ...]
    # ok: exit 0 | nonzero: ran, exit != 0 | not_found | denied | timeout | error
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
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=2)
        return ProcResult(
            args,
            "timeout",
            duration_s=time.monotonic() - started,
            message=f"no answer within {timeout:g} s (killed)",
        )
    finally:
        with _live_lock:
            _live.discard(proc)
    duration = time.monotonic() - started
    stdout = out[:MAX_OUTPUT_BYTES].decode("utf-8", "replace")
    stderr = err[:MAX_OUTPUT_BYTES].decode("utf-8", "replace")
    outcome = "ok" if proc.returncode == 0 else "nonzero"
    return ProcResult(args, outcome, proc.returncode, stdout, stderr, duration)


def terminate_all() -> int:
    """Kill every child still running (the daemon is stopping); returns how many."""
    with _live_lock:
        running = list(_live)
    for proc in running:
        with contextlib.suppress(OSError):
            _kill_tree(proc)
    return len(running)


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    if sys.platform != "win32":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            return
        except OSError:
            pass
    proc.kill()
