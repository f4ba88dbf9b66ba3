"""Sinks against real files, a real full filesystem and a real terminal device."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ssmdiag.output.sinks import (
    BACKLOG_LIMIT,
    ConsoleSink,
    EventLogSink,
    FileSink,
    SinkSet,
    StreamSink,
    build_sinks,
    default_file_path,
    default_sink_names,
    journal_fields,
)
from tests.conftest import require_root
from tests.daemon_helpers import RecordingSink


def event(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "ts": "2026-11-23T00:00:00.000000Z",
        "level": "info",
        "event": "cycle.summary",
        "cycle": n,
        "status": "ok",
        "previous_status": "ok",
        "counts": {"ok": 17},
        **extra,
    }


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_file_sink_rotates_by_size_and_keeps_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "health.json"  # the directory is created on first write
    sink = FileSink(str(path), max_bytes=1000, backups=2)
    for n in range(1, 41):
        sink.emit(event(n))
    sink.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["health.json", "health.json.1", "health.json.2"]
    kept: list[int] = []
    for name in ("health.json.2", "health.json.1", "health.json"):
        part = path.parent / name
        assert part.stat().st_size <= 1000
        kept += [e["cycle"] for e in lines(part)]
    assert kept == list(range(kept[0], 41))  # contiguous, newest last, oldest rotated away
    assert kept[0] > 1


def test_file_sink_recreates_a_file_deleted_underneath_it(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    sink = FileSink(str(path), max_bytes=100_000, backups=1)
    sink.emit(event(1))
    path.unlink()  # logrotate without copytruncate, or an operator cleaning up
    sink.emit(event(2))
    assert [e["cycle"] for e in lines(path)] == [2]


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True, timeout=10
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=10)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"x" * 512):
                pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_fails_the_file_sink_only_and_nothing_is_lost(tmp_path: Path) -> None:
    require_root("mounts a tiny tmpfs to fill it")
    with tiny_tmpfs(tmp_path / "small", "64k") as disk:
        path = disk / "health.json"
        file_sink = FileSink(str(path), max_bytes=1_000_000, backups=1)
        other = RecordingSink()
        sinks = SinkSet([file_sink, other])
        sinks.emit(event(1))
        filler = fill(disk)
        for n in range(2, 30):
            sinks.emit(event(n, padding="p" * 300))
        failed = other.of("sink.failed")
        assert len(failed) == 1, "reported once, not once per event"
        assert "No space left on device" in failed[0]["message"]
        assert "Free space on that filesystem" in failed[0]["message"]
        assert [e["cycle"] for e in other.of("cycle.summary")] == list(range(1, 30))
        # no half-written line for the CloudWatch agent to choke on
        assert all(isinstance(e, dict) for e in lines(path))
        filler.unlink()
        sinks.emit(event(30))
        assert len(other.of("sink.recovered")) == 1
        written = [e["cycle"] for e in lines(path) if e["event"] == "cycle.summary"]
        assert written == list(range(1, 31))  # late, but complete and in order
        sinks.close()


def test_backlog_is_bounded_and_says_what_it_dropped(tmp_path: Path) -> None:
    class Broken(RecordingSink):
        broken = True

        def emit(self, event: Any) -> None:
            if self.broken:
                raise OSError(5, "Input/output error")
            super().emit(event)

    broken, other = Broken("file"), RecordingSink()
    sinks = SinkSet([broken, other])
    total = BACKLOG_LIMIT + 50
    for n in range(total):
        sinks.emit(event(n))
    broken.broken = False
    sinks.emit(event(total))
    recovered = other.of("sink.recovered")
    # 252 queued (250 events, the sink.failed notice, the event that found it working)
    assert recovered[0]["dropped"] == 52
    assert "dropped" in recovered[0]["message"] and recovered[0]["level"] == "warning"
    got = [e["cycle"] for e in broken.of("cycle.summary")]
    assert got[-1] == total and len(got) <= BACKLOG_LIMIT + 1


def console_summary(cycle: int, status: str, previous: str | None) -> dict[str, Any]:
    summary = event(cycle, status=status, previous_status=previous, instance_id="i-0abc")
    if status != "ok":
        summary["problems"] = ["endpoint.ssmmessages", "endpoint.ssm"]
        summary["worst"] = {
            "check_id": "endpoint.ssmmessages",
            "status": "fail",
            "summary": "connection timed out",
            "remediation": "Check security group egress 443. Then the NACLs.",
        }
    return summary


def test_console_line_only_at_start_and_on_overall_change_on_a_real_tty() -> None:
    controller, terminal = os.openpty()
    try:
        sink = ConsoleSink(os.ttyname(terminal))
        first = console_summary(1, "ok", "ok")
        first["counts"] = {"ok": 15, "skip": 2}
        sink.emit(first)  # start-up: always said
        sink.emit(console_summary(2, "ok", "ok"))  # unchanged: silent
        sink.emit({"event": "check.result", "status": "fail"})  # not for the console
        sink.emit(console_summary(3, "fail", "ok"))
        os.set_blocking(controller, False)
        raw = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(controller, 65536):
                raw += chunk
        said = raw.decode().replace("\r\n", "\n").splitlines()
    finally:
        os.close(controller)
        os.close(terminal)
    assert said == [
        "ssmdiag: OK: 15 checks pass, 2 skipped, on i-0abc",
        "ssmdiag: FAIL endpoint.ssmmessages: connection timed out "
        "(Check security group egress 443) [+1 more: endpoint.ssm]",
    ]


def test_console_to_stderr_is_one_line_even_for_long_multiline_texts() -> None:
    stream = io.StringIO()
    summary = console_summary(1, "fail", None)
    summary["worst"]["summary"] = "line one\nline two " + "x" * 400
    sink = ConsoleSink("stderr", stream)
    sink.emit(summary)
    sink.close()  # lines go out on the sink's own writer thread
    text = stream.getvalue()
    assert text.count("\n") == 1 and len(text) <= 241
    assert text.startswith("ssmdiag: FAIL endpoint.ssmmessages: line one line two")


def test_journal_fields_carry_the_structured_contract() -> None:
    fields = journal_fields(
        {
            "ts": "t",
            "level": "error",
            "event": "check.result",
            "check_id": "endpoint.ssm",
            "status": "fail",
            "previous_status": "ok",
            "summary": "DNS lookup failed",
            "remediation": "Fix resolv.conf.",
            "details": {"host": "ssm.eu-west-1.amazonaws.com"},
            "instance_id": None,
        }
    )
    assert fields["PRIORITY"] == "3" and fields["SYSLOG_IDENTIFIER"] == "ssmdiag"
    assert fields["SSMDIAG_CHECK_ID"] == "endpoint.ssm"
    assert fields["SSMDIAG_STATUS"] == "fail" and fields["SSMDIAG_PREVIOUS_STATUS"] == "ok"
    assert json.loads(fields["SSMDIAG_DETAILS"]) == {"host": "ssm.eu-west-1.amazonaws.com"}
    assert "SSMDIAG_INSTANCE_ID" not in fields and "SSMDIAG_TS" not in fields
    assert (
        fields["MESSAGE"] == "FAIL endpoint.ssm (was ok): DNS lookup failed | fix: Fix resolv.conf."
    )


@pytest.mark.parametrize(
    ("status", "event_id", "kind"),
    [
        ("ok", 47100, "info"),
        ("warn", 47200, "warning"),
        ("fail", 47300, "error"),
        ("error", 47301, "error"),
    ],
)
def test_event_log_uses_one_event_id_per_status(status: str, event_id: int, kind: str) -> None:
    written: list[tuple[int, str, list[str]]] = []
    sink = EventLogSink(lambda i, t, s: written.append((i, t, list(s))))
    level = {"ok": "info", "warn": "warning"}.get(status, "error")
    sink.emit(
        {
            "level": level,
            "event": "check.result",
            "check_id": "clock.skew",
            "status": status,
            "summary": "s",
        }
    )
    ((got_id, got_kind, strings),) = written
    assert (got_id, got_kind) == (event_id, kind)
    # One insertion string (%1 is all the message file shows, and what CloudWatch ships):
    # the human line, then the event's JSON on the next line.
    (message,) = strings
    human, event_json = message.split("\n", 1)
    assert human.startswith(f"{status.upper()} clock.skew")
    assert json.loads(event_json)["status"] == status


def test_daemon_news_in_the_event_log_has_its_own_ids() -> None:
    written: list[int] = []
    sink = EventLogSink(lambda i, t, s: written.append(i))
    sink.emit({"level": "info", "event": "daemon.start", "message": "started"})
    sink.emit({"level": "error", "event": "config.rejected", "message": "broken"})
    assert written == [47010, 47011]


def test_unavailable_sinks_fall_back_to_stdout_and_say_why(tmp_path: Path) -> None:
    out = io.StringIO()
    choice = build_sinks(
        ["journald", "eventlog", "file"],
        file_path=str(tmp_path / "h.json"),
        file_max_bytes=10_000,
        file_backups=1,
        console_device="stderr",
        stdout=out,
        stderr=io.StringIO(),
        journal_send=lambda: (None, "no journal is running (/run/systemd/journal/socket ...)"),
    )
    assert [s.name for s in choice.sinks] == ["stdout", "file"]  # one stdout, not two
    assert "journald sink unavailable: no journal is running" in choice.notes[0]
    assert "only on Windows" in choice.notes[1]


def test_default_sinks_follow_how_ssmdiag_was_started() -> None:
    assert default_sink_names({"INVOCATION_ID": "x"}, "linux", False) == (
        "stdout",
        "file",
        "console",
    )
    assert default_sink_names({}, "linux", False) == ("stdout",)
    assert default_sink_names({}, "win32", True) == ("eventlog", "file")
    assert (
        default_file_path({"LOGS_DIRECTORY": "/var/log/ssmdiag"}, "linux")
        == "/var/log/ssmdiag/health.json"
    )
    assert default_file_path({}, "linux") == "/var/log/ssmdiag/health.json"


def test_a_stdout_nobody_reads_never_blocks_the_other_sinks(tmp_path: Path) -> None:
    """A real pipe, shrunk to one page and never read: emits keep returning at once, the
    stdout sink reports itself failed once, and the file sink gets every event."""
    import fcntl

    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, 1031, 4096)  # F_SETPIPE_SZ: the smallest pipe
    stream = os.fdopen(write_end, "w")
    problems: list[str] = []
    target = tmp_path / "health.json"
    sinks = SinkSet(
        [StreamSink(stream), FileSink(str(target), 10**6, 1)], on_problem=problems.append
    )

    def emit_all() -> None:
        for cycle in range(2000):
            sinks.emit({"event": "cycle.summary", "cycle": cycle, "pad": "x" * 200})

    worker = threading.Thread(target=emit_all, daemon=True)  # bounded even if emit blocks
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "emit blocked on the full pipe"
    assert len(problems) == 1 and "not being read" in problems[0]
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [e["cycle"] for e in lines if e["event"] == "cycle.summary"] == list(range(2000))
    os.close(read_end)
