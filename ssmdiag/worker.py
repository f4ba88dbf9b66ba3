"""The check worker: each cycle of `ssmdiag run` runs its checks in a short-lived process.

Why a process, not a thread: the daemon sleeps minutes between cycles, for months. A
cycle imports ssl, the platform layer and every check, loads TLS trust stores, starts
probe threads and parses the agent's files; in a thread all of that stayed resident for
the daemon's whole life (31 MB steady, bench/daemon.py, issue 14). In a worker it is
returned to the OS when the cycle ends; the daemon keeps only its schedule, events, state
and sinks. A hung check can also be stopped for real (a thread cannot be killed): the
worker is ended before the cycle would overrun, and the event names the check that hung.
The SSM Agent does the same with its own work (ssm-document-worker, ssm-session-worker).

Protocol: JSON, one object per line.
  stdin  <- {"config": config_to_dict(...), "kept": {"permissions": [...]},
             "log": [format, level]}
  stdout -> {"check": "<id>"}   as each check begins (the daemon names a hung one)
            {"report": Report.to_dict(), "kept": {...}, "inventory_dir": str | null}
            or {"error": "..."} when the cycle itself failed
The worker's stderr is the daemon's (its diagnostics reach the journal as before).

This module's top level is the daemon's side and imports nothing heavy; the worker's side
(`main`) imports the checks when it runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any, Callable, Optional

from ssmdiag.config import Config, config_from_dict, config_to_dict
from ssmdiag.log import logging_settings
from ssmdiag.platform import process
from ssmdiag.report import CycleProblem, Report

MAX_REQUEST_BYTES = 1024 * 1024
MAX_ANSWER_BYTES = 8 * 1024 * 1024  # a report is some tens of KB
STOP_GRACE_SECONDS = 1.0  # SIGTERM (the worker ends its own children), then SIGKILL
# The worker is ended this much before the daemon would call the cycle an overrun (and
# stop feeding the watchdog), so a hung check costs one cycle.failed, not a restart.
KILL_MARGIN_SECONDS = 5.0
REPORT_BUG = "Run `ssmdiag check --log-level debug` on the node and report the output as a bug."

# Run by the worker's interpreter: the daemon's sys.path first (as multiprocessing's spawn
# does), so a packaged ssmdiag whose launcher extends sys.path (the RPM's vendored tomli)
# finds the same modules.
_BOOTSTRAP = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from ssmdiag.worker import main; sys.exit(main())"
)


def worker_command() -> Optional[list[str]]:
    """How to start a worker with this interpreter; None when it cannot be (a frozen
    executable has no `-c`): the daemon then runs cycles in a thread."""
    if getattr(sys, "frozen", False) or not sys.executable:
        return None
    flags = [
        flag
        for flag, on in (
            ("-I", sys.flags.isolated),
            ("-E", sys.flags.ignore_environment and not sys.flags.isolated),
            ("-s", sys.flags.no_user_site and not sys.flags.isolated),
        )
        if on
    ]
    return [sys.executable, *flags, "-c", _BOOTSTRAP, json.dumps(sys.path)]


# -- the daemon's side -------------------------------------------------------------------


class _AnswerReader:
    """Reads the worker's stdout on its own thread, bounded while reading."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.current: Optional[tuple[str, float]] = None  # check id, when it began
        self.answer: Optional[dict[str, Any]] = None
        self.problem: Optional[str] = None
        self.finished = threading.Event()  # the answer, EOF or a problem
        self._pipe = pipe
        self._thread = threading.Thread(target=self._read, name="ssmdiag-worker", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        size = 0
        try:
            while True:
                line = self._pipe.readline(MAX_ANSWER_BYTES + 1 - size)
                if not line:
                    return
                size += len(line)
                if size > MAX_ANSWER_BYTES:
                    self.problem = f"said more than {MAX_ANSWER_BYTES // 1024} KiB"
                    return
                self._take(line)
                if self.answer is not None or self.problem is not None:
                    return
        except (OSError, ValueError) as exc:
            self.problem = f"could not be read: {exc}"
        finally:
            self.finished.set()

    def _take(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError as exc:
            self.problem = f"said something that is not JSON ({exc}): {line[:80]!r}"
            return
        if not isinstance(message, dict):
            self.problem = f"said {type(message).__name__}, not a JSON object"
        elif isinstance(message.get("check"), str):
            self.current = (message["check"], time.monotonic())
        elif "report" in message or "error" in message:
            self.answer = message
        else:
            self.problem = f"said an unknown message: {sorted(message)[:5]}"

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class CycleWorker:
    """Runs each cycle in a fresh worker process (`run` is the daemon's cycle function).

    Keeps between cycles only what the checks hand back (the hourly permission results)
    and where the worker found the inventory directory (`publish` writes there)."""

    def __init__(self, command: Sequence[str]) -> None:
        self._command = list(command)
        self._kept: dict[str, Any] = {}
        self._inventory_dir: Optional[str] = None
        self._lock = threading.Lock()
        self._running: Optional[subprocess.Popen[bytes]] = None

    def run(self, config: Config) -> Report:
        """One cycle in a new worker; raises CycleProblem when no report came back."""
        started = time.monotonic()
        limit = config.cycle_timeout - min(KILL_MARGIN_SECONDS, config.cycle_timeout / 10)
        request = json.dumps(
            {"config": config_to_dict(config), "kept": self._kept, "log": logging_settings()}
        ).encode("utf-8")
        proc = self._start()
        reader = _AnswerReader(proc.stdout)  # type: ignore[arg-type]  # stdout=PIPE
        threading.Thread(
            target=_send_request, args=(proc.stdin, request), name="ssmdiag-request", daemon=True
        ).start()
        try:
            if not self._wait(proc, reader, started + limit):
                self._end(proc)
                raise self._timed_out(reader, limit)
            self._end(proc, wait_first=2.0)  # it exits by itself after its answer
            reader.join(1.0)
        finally:
            with self._lock:
                self._running = None
        return self._report_from(reader, proc)

    @staticmethod
    def _wait(proc: subprocess.Popen[bytes], reader: _AnswerReader, deadline: float) -> bool:
        """Until the answer (or the end of its output) or the deadline; False: the deadline.
        A worker that exited counts as ended even if a process it left holds the pipe."""
        while not reader.finished.wait(max(0.0, min(0.2, deadline - time.monotonic()))):
            if proc.poll() is not None:
                reader.finished.wait(1.0)  # what it wrote before exiting is still read
                return True
            if time.monotonic() >= deadline:
                return False
        return True

    def _start(self) -> subprocess.Popen[bytes]:
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True  # its own group: a stop ends all of it
        try:
            proc = subprocess.Popen(
                self._command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                **kwargs,
            )
        except OSError as exc:
            raise CycleProblem(
                f"could not start the check worker ({self._command[0]}): {exc.strerror or exc}",
                "The Python that runs ssmdiag must be able to start itself again; reinstall "
                "ssmdiag (the package) if that interpreter is gone.",
            ) from None
        with self._lock:
            self._running = proc
        return proc

    def _report_from(self, reader: _AnswerReader, proc: subprocess.Popen[bytes]) -> Report:
        answer = reader.answer
        if answer is None:
            raise CycleProblem(_no_answer(reader, proc), REPORT_BUG)
        if "error" in answer:
            failed = f"the check cycle failed in the worker: {answer['error']}"
            raise CycleProblem(failed, REPORT_BUG)
        try:
            report = Report.from_dict(answer["report"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CycleProblem(
                f"the check worker's answer is not a report ({type(exc).__name__}: {exc})",
                REPORT_BUG,
            ) from None
        kept = answer.get("kept")
        self._kept = kept if isinstance(kept, dict) else {}
        directory = answer.get("inventory_dir")
        self._inventory_dir = directory if isinstance(directory, str) else None
        return report

    @staticmethod
    def _timed_out(reader: _AnswerReader, limit: float) -> CycleProblem:
        if reader.current is None:
            return CycleProblem(
                f"the check worker began no check within {limit:g} s (stopped)",
                "The node may be starved of CPU or memory; see `systemctl status ssmdiag`. "
                + REPORT_BUG,
            )
        check_id, began = reader.current
        return CycleProblem(
            f"the checks did not finish within {limit:g} s: {check_id} had run for "
            f"{time.monotonic() - began:.0f} s when the worker was stopped",
            f"Run `ssmdiag check --only {check_id} --log-level debug` on the node to see where "
            "it waits; [daemon] cycle_timeout sets the limit.",
        )

    def _end(self, proc: subprocess.Popen[bytes], wait_first: float = 0.0) -> None:
        """Make sure the worker is gone: wait a little, then SIGTERM (it ends the programs
        its checks run), then SIGKILL its whole group (Windows: `taskkill /T /F` at once)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait_first)
            return
        if sys.platform != "win32":  # Windows has no SIGTERM to catch: straight to the tree
            with contextlib.suppress(OSError):
                proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_GRACE_SECONDS)
                return
        with contextlib.suppress(OSError):
            process.kill_tree(proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_GRACE_SECONDS)

    def stop(self) -> None:
        """The daemon is stopping: end a running worker (and its children) now."""
        with self._lock:
            proc = self._running
        if proc is not None:
            self._end(proc)

    def forget(self) -> None:
        """Drop what the checks kept (SIGHUP): the permissions are verified again."""
        self._kept = {}

    def publish(self, config: Config, report: Report, changed: bool) -> Optional[str]:
        """Custom:SSMDiag into the directory the worker found, when the checks changed."""
        from ssmdiag.inventory import publish_at

        if not config.inventory or not changed:
            return None
        return publish_at(self._inventory_dir, report)


def _send_request(pipe: Optional[IO[bytes]], request: bytes) -> None:
    if pipe is None:
        return
    with contextlib.suppress(OSError, ValueError):  # the worker died first: its exit says why
        pipe.write(request)
        pipe.close()


def _no_answer(reader: _AnswerReader, proc: subprocess.Popen[bytes]) -> str:
    code = proc.poll()
    if reader.problem:
        return f"the check worker's answer {reader.problem}"
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        hint = " (out of memory? the unit's MemoryMax=)" if name == "SIGKILL" else ""
        return f"the check worker was killed by {name}{hint} before it answered"
    where = reader.current[0] if reader.current else "before the first check"
    return (
        f"the check worker exited {code} without a report (last check begun: {where}); its "
        "error is in the daemon's stderr (journalctl -u ssmdiag)"
    )


# -- the worker's side -------------------------------------------------------------------


def _protocol_channel() -> Callable[[dict[str, Any]], None]:
    """The real stdout, for protocol lines only; anything else printed goes to stderr."""
    sys.stdout.flush()
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict[str, Any]) -> None:
        channel.write(json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n")
        channel.flush()

    return send


def _stop_children(_signum: int, _frame: object) -> None:
    process.terminate_all()
    os._exit(128 + signal.SIGTERM)


def main() -> int:
    """The worker: one cycle, told on stdout. Exit 0 once it answered (even with an
    error answer); 2 when the request was unreadable."""
    send = _protocol_channel()
    try:
        request = json.loads(sys.stdin.buffer.read(MAX_REQUEST_BYTES))
        config = config_from_dict(request["config"])
        log_format, log_level = request["log"]
        kept = request.get("kept") or {}
    except (ValueError, KeyError, TypeError) as exc:
        send({"error": f"unreadable request from the daemon: {type(exc).__name__}: {exc}"})
        return 2
    from ssmdiag.log import configure_logging, get_logger

    configure_logging(log_format, log_level)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _stop_children)
    try:
        from ssmdiag.checks import permissions
        from ssmdiag.engine import run_checks
        from ssmdiag.inventory import inventory_location
        from ssmdiag.platform import detect

        permissions.keep_results(kept.get("permissions"))
        report = run_checks(detect(config), config, on_start=lambda id_: send({"check": id_}))
        answer = {
            "report": report.to_dict(),
            "kept": {"permissions": permissions.kept_results()},
            "inventory_dir": inventory_location(config, report),
        }
    except Exception as exc:  # one cycle.failed event, never a silent worker
        get_logger("ssmdiag.worker").debug("cycle.crashed", exc_info=True)
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    send(answer)
    sys.stderr.flush()
    # No waiting for probe threads that outlived their deadline: the answer is out.
    os._exit(0)
