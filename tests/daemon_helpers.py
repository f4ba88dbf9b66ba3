"""Test doubles at the daemon's seams: a jumping clock, inline cycles, a recording sink.

Everything else the daemon touches (state files, config loading, the event
pipeline of ssmdiag.log) is real.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Optional

from ssmdiag.config import Config
from ssmdiag.daemon import CycleOutcome, Daemon
from ssmdiag.notify import Notifier
from ssmdiag.output.sinks import Sink, SinkChoice
from ssmdiag.report import CheckResult, HostInfo, Report, Status


class FakeClock:
    """Monotonic time that only moves when the daemon waits (or a cycle takes time)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.on_wait: Optional[Callable[[float], None]] = None
        self.marks: list[float] = []  # times a wait must stop at (to request a reload, say)
        self._alarms: list[tuple[float, threading.Event]] = []

    def monotonic(self) -> float:
        return self.now

    def alarm(self, at: float, event: threading.Event) -> None:
        """Set `event` when the clock reaches `at` (a slow cycle finishing, say)."""
        self._alarms.append((at, event))

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        stops = [t for t in self.marks if self.now < t < self.now + timeout]
        stops += [t for t, _ in self._alarms if self.now < t < self.now + timeout]
        self.now = min(stops, default=self.now + timeout)
        for at, alarm_event in list(self._alarms):
            if at <= self.now:
                self._alarms.remove((at, alarm_event))
                alarm_event.set()
        if self.on_wait:
            self.on_wait(self.now)
        return event.is_set()


class _Done:
    def __init__(self, outcome: CycleOutcome) -> None:
        self._outcome = outcome

    @property
    def done(self) -> bool:
        return True

    def outcome(self) -> CycleOutcome:
        return self._outcome


def inline_cycles(work: Callable[[], Report], wake: threading.Event) -> _Done:
    try:
        return _Done(work())
    except Exception as exc:
        return _Done(exc)


class SlowJob:
    """A cycle that finishes once the fake clock has moved `duration` seconds."""

    def __init__(
        self, clock: FakeClock, duration: float, outcome: Report, wake: threading.Event
    ) -> None:
        self._clock, self._end, self._result = clock, clock.now + duration, outcome
        clock.alarm(self._end, wake)  # as a real cycle thread sets `wake` when it ends

    @property
    def done(self) -> bool:
        return self._clock.now >= self._end

    def outcome(self) -> CycleOutcome:
        return self._result


class RecordingSink(Sink):
    def __init__(self, name: str = "stdout") -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []

    def emit(self, event: Mapping[str, Any]) -> None:
        self.events.append(dict(event))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]


class RecordingNotifier(Notifier):
    def __init__(self, watchdog_interval: Optional[float] = None, clock: Any = None) -> None:
        super().__init__({})
        self.watchdog_interval = watchdog_interval
        self.sent: list[tuple[float, tuple[str, ...]]] = []
        self._clock = clock

    def send(self, *assignments: str) -> bool:
        self.sent.append((self._clock.monotonic() if self._clock else 0.0, assignments))
        return True

    def messages(self, prefix: str) -> list[tuple[float, str]]:
        return [(t, a) for t, group in self.sent for a in group if a.startswith(prefix)]


def report(statuses: Mapping[str, str], instance_id: str = "i-0123456789abcdef0") -> Report:
    checks = [
        CheckResult(
            ident,
            ident,
            Status(status),
            f"{ident} is {status}",
            {"version": "3.3.987.0"} if ident == "agent.installed" else {"n": 1},
            "Open security group egress on 443. Then wait." if status in ("warn", "fail") else None,
            3,
        )
        for ident, status in statuses.items()
    ]
    host = HostInfo("node", "linux", "Amazon Linux", "2023", instance_id, "eu-west-1")
    return Report("0.1.0", host, "2026-11-23T00:00:00.000Z", 12, checks)


def make_daemon(
    tmp_path: Path,
    cycle: Callable[[Config], Report],
    *,
    config: Optional[Config] = None,
    clock: Optional[FakeClock] = None,
    sinks: Optional[list[Sink]] = None,
    notifier: Optional[Notifier] = None,
    load_config: Optional[Callable[[], Config]] = None,
    start_cycle: Any = inline_cycles,
    on_reload: Callable[[], object] = lambda: None,
) -> Daemon:
    # A summary line every cycle unless a test asks otherwise (healthy nodes write one per
    # healthy_summary_interval in production: tests/test_fleet_events.py).
    cfg = config or Config(jitter=0.0, healthy_summary_interval=60)
    clock = clock or FakeClock()
    chosen = sinks if sinks is not None else [RecordingSink()]
    return Daemon(
        cfg,
        cycle=cycle,
        load_config=load_config or (lambda: cfg),
        sinks_for=lambda _cfg: SinkChoice(list(chosen), []),
        state_dir_for=lambda _cfg: str(tmp_path / "state"),
        notifier=notifier or RecordingNotifier(clock=clock),
        clock=clock,
        start_cycle=start_cycle,
        on_reload=on_reload,
    )


class Script:
    """Cycle function: one status map per cycle, stopping the daemon after the last one."""

    def __init__(self, clock: FakeClock, timeline: list[Mapping[str, str]]) -> None:
        self.clock = clock
        self.timeline = timeline
        self.started_at: list[float] = []
        self.daemon: Optional[Daemon] = None

    def __call__(self, _config: Config) -> Report:
        self.started_at.append(self.clock.now)
        index = len(self.started_at) - 1
        if index == len(self.timeline) - 1 and self.daemon is not None:
            self.daemon.request_stop("test finished")
        return report(self.timeline[index])
