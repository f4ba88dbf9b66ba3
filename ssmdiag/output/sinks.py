"""Where health events go: small sinks behind one interface, and a fan-out that survives them.

Sinks: ``stdout`` (JSON lines), ``file`` (JSON lines with size-based rotation:
the file the CloudWatch agent ships), ``journald`` (structured fields through
systemd-python), ``eventlog`` (Windows Application log, one event ID per
status) and ``console`` (one plain line per change of overall status, for the
serial console). A sink that fails is reported once through the others, keeps
a bounded backlog, and is retried with every later event.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import errno
import importlib
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Optional

from ssmdiag.health import CHECK_RESULT, CYCLE_SUMMARY, HEARTBEAT, console_line, overall_changed

SINK_NAMES = ("stdout", "file", "journald", "eventlog", "console")

JOURNAL_SOCKET = "/run/systemd/journal/socket"
BACKLOG_LIMIT = 200  # events kept per failing sink, written when it recovers

# syslog priorities for journald's PRIORITY=
PRIORITY_FOR_LEVEL = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}

# Windows Event Log: one event ID per status, so the CloudWatch agent can select them.
# The agent selects by ID across the whole Application log (it has no source filter),
# so the IDs avoid common ones such as 1000 (Application Error): 47xxx.
EVENT_ID_FOR_STATUS = {
    "ok": 47100,
    "skip": 47101,
    "warn": 47200,
    "unknown": 47201,
    "fail": 47300,
    "error": 47301,
}
EVENT_ID_DAEMON = 47010  # the daemon's own news: start, stop, reload
EVENT_ID_DAEMON_PROBLEM = 47011  # its problems: sink failed, config rejected, cycle failed
EVENT_IDS = (EVENT_ID_DAEMON, EVENT_ID_DAEMON_PROBLEM, *EVENT_ID_FOR_STATUS.values())


class Sink(abc.ABC):
    name: str

    @abc.abstractmethod
    def emit(self, event: Mapping[str, Any]) -> None:
        """Deliver one event or raise; the fan-out decides what a failure means."""

    def close(self) -> None:  # noqa: B027 - most sinks hold nothing open
        pass


def json_line(event: Mapping[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str) + "\n"


def human_message(event: Mapping[str, Any]) -> str:
    """The one-line text of an event, for journald's MESSAGE and the Event Log."""
    kind = event.get("event")
    status = str(event.get("status", "")).upper()
    if kind == CHECK_RESULT:
        was = event.get("previous_status")
        text = f"{status} {event.get('check_id')}"
        text += f" (was {was})" if was else ""
        text += f": {event.get('summary')}"
        if event.get("remediation"):
            text += f" | fix: {event['remediation']}"
        return " ".join(text.split())
    if kind == CYCLE_SUMMARY:
        return console_line(event).removeprefix("ssmdiag: ")
    if kind == HEARTBEAT:
        counts: dict[str, int] = {}
        for value in event.get("checks", {}).values():
            counts[value] = counts.get(value, 0) + 1
        told = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return f"heartbeat: {status} ({told})"
    return str(event.get("message") or kind)


class StreamWriter:
    """Writes lines to a stream from its own thread, so a reader that stops reading (a full
    pipe) never blocks the daemon: the lines wait in a bounded queue, and when that is full
    `write` raises, which the fan-out reports once and backlogs (it retries later)."""

    def __init__(self, stream: IO[str], what: str, max_pending: int = 256) -> None:
        self._stream = stream
        self._what = what
        self._pending: queue.Queue[str] = queue.Queue(maxsize=max_pending)
        self._thread: Optional[threading.Thread] = None
        self._failure: Optional[BaseException] = None

    def _run(self) -> None:
        while True:
            line = self._pending.get()
            try:
                self._stream.write(line)
                self._stream.flush()
            except Exception as exc:  # reported by the next write()
                self._failure = exc
            finally:
                self._pending.task_done()

    def write(self, line: str) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ssmdiag-writer", daemon=True)
            self._thread.start()
        try:
            self._pending.put_nowait(line)
        except queue.Full:
            raise BlockingIOError(
                errno.EAGAIN, f"{self._what} is not being read (its pipe is full)"
            ) from None

    def drain(self, timeout: float) -> None:
        """Give pending lines up to `timeout` seconds to go out (at stop); never blocks longer."""
        deadline = time.monotonic() + timeout
        while self._pending.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)


class StreamSink(Sink):
    """JSON lines to a stream: stdout, which systemd hands to the journal."""

    def __init__(self, stream: IO[str], name: str = "stdout") -> None:
        self.name = name
        self._writer = StreamWriter(stream, "standard output")

    def emit(self, event: Mapping[str, Any]) -> None:
        self._writer.write(json_line(event))

    def close(self) -> None:
        self._writer.drain(0.5)


class FileSink(Sink):
    """JSON lines appended to a file, rotated by size (health.json -> health.json.1 ...).

    A write that fails half-way is cut back, so the file never holds a broken
    line the CloudWatch agent would ship; a file deleted or moved by someone
    else is re-created at the next event.
    """

    name = "file"

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd: Optional[int] = None
        self._inode: Optional[tuple[int, int]] = None

    def _open(self) -> int:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        stat = os.fstat(fd)
        self._fd, self._inode = fd, (stat.st_dev, stat.st_ino)
        return fd

    def _current(self) -> int:
        if self._fd is not None:
            try:
                stat = os.stat(self.path)
                if (stat.st_dev, stat.st_ino) == self._inode:
                    return self._fd
            except FileNotFoundError:
                pass
            self.close()  # deleted or replaced underneath us: start a new file
        return self._open()

    def _rotate(self) -> None:
        self.close()
        if self.backups == 0:
            os.unlink(self.path)
            return
        for index in range(self.backups - 1, 0, -1):
            older = f"{self.path}.{index}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{index + 1}")
        os.replace(self.path, f"{self.path}.1")

    def emit(self, event: Mapping[str, Any]) -> None:
        data = json_line(event).encode("utf-8")
        fd = self._current()
        size = os.fstat(fd).st_size
        if size and size + len(data) > self.max_bytes:
            self._rotate()
            fd = self._open()
            size = 0
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = self._inode = None


def journal_fields(event: Mapping[str, Any]) -> dict[str, str]:
    """Journal fields: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and SSMDIAG_<KEY> for the rest."""
    fields = {
        "MESSAGE": human_message(event),
        "PRIORITY": str(PRIORITY_FOR_LEVEL.get(str(event.get("level")), 6)),
        "SYSLOG_IDENTIFIER": "ssmdiag",
    }
    for key, value in event.items():
        if key in ("level", "ts") or value is None:
            continue
        name = "SSMDIAG_" + "".join(c if c.isalnum() else "_" for c in key.upper())
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        fields[name] = text
    return fields


JournalSend = Callable[..., None]


class JournaldSink(Sink):
    name = "journald"

    def __init__(self, send: JournalSend) -> None:
        self._send = send

    def emit(self, event: Mapping[str, Any]) -> None:
        fields = journal_fields(event)
        message = fields.pop("MESSAGE")
        self._send(message, **fields)


def load_journal_send(socket_path: str = JOURNAL_SOCKET) -> tuple[Optional[JournalSend], str]:
    """systemd-python's journal.send, or None and why not (the caller falls back quietly)."""
    try:
        journal: Any = importlib.import_module("systemd.journal")  # the `systemd` extra
    except ImportError:
        return None, "systemd-python is not installed (pip install 'ssmdiag[systemd]')"
    if not os.path.exists(socket_path):
        return None, f"no journal is running ({socket_path} does not exist)"
    send: JournalSend = journal.send
    return send, ""


# (event_id, event_type, strings): event_type is info, warning or error.
EventLogWriter = Callable[[int, str, Sequence[str]], None]


def event_id_for(event: Mapping[str, Any]) -> int:
    if event.get("event") in (CHECK_RESULT, CYCLE_SUMMARY, HEARTBEAT):
        return EVENT_ID_FOR_STATUS.get(str(event.get("status")), EVENT_ID_DAEMON_PROBLEM)
    return EVENT_ID_DAEMON if event.get("level") == "info" else EVENT_ID_DAEMON_PROBLEM


class EventLogSink(Sink):
    """The Windows Application log, source `ssmdiag`: the message, then the event as JSON,
    in the one insertion string the message file shows (%1: EventLogMessages.dll), so the
    CloudWatch agent, which ships the rendered message, ships the JSON too."""

    name = "eventlog"

    def __init__(self, writer: EventLogWriter) -> None:
        self._write = writer

    def emit(self, event: Mapping[str, Any]) -> None:
        level = str(event.get("level", "info"))
        kind = "error" if level in ("error", "critical") else level
        self._write(
            event_id_for(event), kind, [f"{human_message(event)}\n{json_line(event).strip()}"]
        )


class ConsoleSink(Sink):
    """One plain line at start-up and on each change of overall status, nothing else.

    Under systemd the unit sends stderr to journal+console (systemd opens the
    console, so ssmdiag needs no access to /dev/console); elsewhere a device
    path may be given. Writes never block: a stuck serial line drops a line
    rather than the daemon.
    """

    name = "console"

    def __init__(self, target: str, stderr: Optional[IO[str]] = None) -> None:
        self.target = target
        self._stderr = stderr
        self._writer: Optional[StreamWriter] = None

    def emit(self, event: Mapping[str, Any]) -> None:
        if event.get("event") != CYCLE_SUMMARY:
            return
        if event.get("cycle") != 1 and not overall_changed(event):
            return
        line = console_line(event) + "\n"
        if self.target == "stderr":
            if self._writer is None:
                self._writer = StreamWriter(self._stderr or sys.stderr, "standard error")
            self._writer.write(line)
            return
        flags = (
            os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_NONBLOCK", 0)
        )
        fd = os.open(self.target, flags)
        try:
            os.write(fd, line.encode("utf-8", "replace"))
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.drain(0.5)


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc}"


FIX_FOR_SINK = {
    "file": "Free space on that filesystem or fix the directory's permissions "
    "(the unit's LogsDirectory= creates it for the ssmdiag user).",
    "journald": "Check that systemd-journald is running: systemctl status systemd-journald.",
    "eventlog": "Check the Windows Event Log service and that the installer registered "
    "the ssmdiag source.",
    "console": "Check the console device named by [sinks] console_device.",
    "stdout": "Check what reads ssmdiag's standard output.",
}


@dataclass
class _Guard:
    sink: Sink
    failure: Optional[str] = None
    backlog: collections.deque[Mapping[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=BACKLOG_LIMIT)
    )
    dropped: int = 0


class SinkSet:
    """The fan-out: every event to every sink; one failing sink never stops the others.

    Also the logger at the end of the daemon's event pipeline (ssmdiag.daemon,
    ssmdiag.log): the pipeline calls ``info(**event)`` and friends.
    """

    def __init__(
        self, sinks: Sequence[Sink], on_problem: Optional[Callable[[str], None]] = None
    ) -> None:
        self._guards = [_Guard(sink) for sink in sinks]
        self._on_problem = on_problem

    @property
    def names(self) -> list[str]:
        return [g.sink.name for g in self._guards]

    def emit(self, event: Mapping[str, Any]) -> None:
        notices: list[dict[str, Any]] = []
        for guard in self._guards:
            notice = self._deliver(guard, event)
            if notice:
                notices.append(notice)
        for notice in notices:
            notice["ts"] = event.get("ts")
            for guard in self._guards:
                self._deliver(guard, notice)

    def _deliver(self, guard: _Guard, event: Mapping[str, Any]) -> Optional[dict[str, Any]]:
        if guard.failure is None:
            try:
                guard.sink.emit(event)
                return None
            except Exception as exc:
                guard.failure = describe_failure(exc)
                self._keep(guard, event)
                message = (
                    f"sink {guard.sink.name} failed: {guard.failure}; "
                    f"keeping up to {BACKLOG_LIMIT} events and retrying with every event. "
                    f"{FIX_FOR_SINK[guard.sink.name]}"
                )
                if self._on_problem:
                    self._on_problem(message)
                return {
                    "event": "sink.failed",
                    "level": "error",
                    "sink": guard.sink.name,
                    "error": guard.failure,
                    "message": message,
                }
        self._keep(guard, event)
        try:
            while guard.backlog:
                guard.sink.emit(guard.backlog[0])
                guard.backlog.popleft()
        except Exception:
            return None  # still failing: reported once already
        dropped, guard.dropped = guard.dropped, 0
        guard.failure = None
        message = f"sink {guard.sink.name} works again; the events it missed were written"
        if dropped:
            message += f"; {dropped} older events did not fit the backlog and were dropped"
        return {
            "event": "sink.recovered",
            "level": "info" if not dropped else "warning",
            "sink": guard.sink.name,
            "dropped": dropped,
            "message": message,
        }

    @staticmethod
    def _keep(guard: _Guard, event: Mapping[str, Any]) -> None:
        if len(guard.backlog) == guard.backlog.maxlen:
            guard.dropped += 1
        guard.backlog.append(event)

    def _pipeline_entry(self, **event: Any) -> None:
        self.emit(event)

    # The pipeline hands the processed event to the method named after the level.
    debug = info = warning = error = critical = _pipeline_entry

    def close(self) -> None:
        for guard in self._guards:
            with contextlib.suppress(Exception):
                guard.sink.close()


def default_sink_names(
    environ: Mapping[str, str], system: str, windows_service: bool
) -> tuple[str, ...]:
    """Sinks when the config names none: what each way of running needs."""
    if system == "win32":
        return ("eventlog", "file") if windows_service else ("stdout",)
    if environ.get("INVOCATION_ID"):  # started by systemd
        return ("stdout", "file", "console")
    return ("stdout",)


def default_file_path(environ: Mapping[str, str], system: str) -> str:
    if environ.get("LOGS_DIRECTORY"):  # systemd's LogsDirectory=
        return os.path.join(environ["LOGS_DIRECTORY"].split(":")[0], "health.json")
    if system == "win32":
        base = environ.get("PROGRAMDATA", r"C:\ProgramData")
        return os.path.join(base, "ssmdiag", "logs", "health.json")
    return "/var/log/ssmdiag/health.json"


@dataclass
class SinkChoice:
    sinks: list[Sink]
    notes: list[str]  # sinks replaced by a fallback, and why


def build_sinks(
    names: Sequence[str],
    *,
    file_path: str,
    file_max_bytes: int,
    file_backups: int,
    console_device: str,
    stdout: IO[str],
    stderr: IO[str],
    journal_send: Callable[[], tuple[Optional[JournalSend], str]] = load_journal_send,
    eventlog_writer: Optional[Callable[[], EventLogWriter]] = None,
) -> SinkChoice:
    sinks: list[Sink] = []
    notes: list[str] = []

    def add_stdout() -> None:
        if not any(s.name == "stdout" for s in sinks) and "stdout" not in names:
            sinks.append(StreamSink(stdout))

    for name in names:
        if name == "stdout":
            sinks.append(StreamSink(stdout))
        elif name == "file":
            sinks.append(FileSink(file_path, file_max_bytes, file_backups))
        elif name == "console":
            sinks.append(ConsoleSink(console_device, stderr))
        elif name == "journald":
            send, why = journal_send()
            if send is None:
                notes.append(
                    f"journald sink unavailable: {why}; writing JSON lines to stdout instead"
                )
                add_stdout()
            else:
                sinks.append(JournaldSink(send))
        elif name == "eventlog":
            if eventlog_writer is None:
                notes.append(
                    "eventlog sink exists only on Windows; writing JSON lines to stdout instead"
                )
                add_stdout()
            else:
                sinks.append(EventLogSink(eventlog_writer()))
    return SinkChoice(sinks, notes)
