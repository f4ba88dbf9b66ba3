"""`ssmdiag run`: the checks at start-up and on a schedule, told as events, for months.

The loop runs each cycle on a thread and keeps the main thread free for
signals and the service manager: SIGTERM ends the process at once even
mid-cycle (the cycle is abandoned; its processes are killed), the watchdog
is fed only while a cycle is within its time limit, and READY=1 goes out after
the first cycle or after `startup_timeout`, whichever comes first. Under
`ssmdiag run` that thread only waits for the cycle's check worker process
(ssmdiag/worker.py), so what a cycle loads never stays in the daemon.

Everything that touches time, threads, config files, sinks or the service
manager is injected, so tests drive the schedule with a fake clock.
"""

from __future__ import annotations

import functools
import gc
import random
import socket
import sys
import threading
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Union

from ssmdiag import __version__
from ssmdiag.config import Config, ConfigError
from ssmdiag.health import (
    HealthState,
    Identity,
    check_result_events,
    check_state_events,
    cycle_summary_event,
    emf_fields,
    heartbeat_event,
    state_after,
)
from ssmdiag.log import BoundLogger, add_log_level, get_logger, timestamper
from ssmdiag.notify import Notifier
from ssmdiag.output.sinks import SinkChoice, SinkSet, human_message
from ssmdiag.redact import redact_processor
from ssmdiag.report import CycleProblem, ExitCode, OverallStatus, Report
from ssmdiag.state import StateStore

diagnostics = get_logger("ssmdiag.daemon")


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Wait for the event at most `timeout` seconds; True when it was set."""


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(max(timeout, 0.0))


CycleOutcome = Union[Report, BaseException]


class Job(Protocol):
    @property
    def done(self) -> bool: ...

    def outcome(self) -> CycleOutcome: ...


class CycleStarter(Protocol):
    def __call__(self, work: Callable[[], Report], wake: threading.Event) -> Job: ...


class _ThreadJob:
    def __init__(self, work: Callable[[], Report], wake: threading.Event) -> None:
        self._outcome: Optional[CycleOutcome] = None
        self._done = threading.Event()

        def target() -> None:
            try:
                self._outcome = work()
            except BaseException as exc:  # reported as cycle.failed, never kills the daemon
                self._outcome = exc
            self._done.set()
            wake.set()

        # A daemon thread: an abandoned cycle (SIGTERM) must not keep the process alive.
        threading.Thread(target=target, name="ssmdiag-cycle", daemon=True).start()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def outcome(self) -> CycleOutcome:
        assert self._outcome is not None
        return self._outcome


def threaded_cycles(work: Callable[[], Report], wake: threading.Event) -> Job:
    return _ThreadJob(work, wake)


@dataclass(frozen=True)
class Schedule:
    interval: float
    fail_interval: float
    jitter: float
    heartbeat: float

    @classmethod
    def from_config(cls, config: Config) -> Schedule:
        return cls(config.interval, config.fail_interval, config.jitter, config.heartbeat)

    def delay_after(self, status: str, rng: random.Random) -> float:
        base = self.fail_interval if status == OverallStatus.FAIL.value else self.interval
        return base * (1 + rng.uniform(-self.jitter, self.jitter))


def _seconds_text(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 120 and seconds % 60 == 0 else f"{seconds:g} s"


def _order(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """ts, level and event first: the fields a human scans for in CloudWatch."""
    head: dict[str, Any] = {key: event.pop(key) for key in ("ts", "level", "event") if key in event}
    return {**head, **event}


def event_logger(sinks: SinkSet, *extra: Any) -> BoundLogger:
    """The pipeline ending in the sinks: processors are plain callables."""
    return BoundLogger(
        sinks,
        [*extra, add_log_level, timestamper("ts"), redact_processor, _order],
        # Own filter: the stderr diagnostics' level must never silence health events.
        "debug",
    )


@functools.cache
def _malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's malloc_trim, looked up once for the daemon's life (a CDLL per call creates a
    function-pointer class each time: bench/daemon.py --tracemalloc saw them pile up);
    None off glibc (musl) or off Linux: nothing to trim."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def release_memory() -> None:
    """Free what a cycle left (its answer's objects, reference cycles included) and hand
    the memory back to the OS (glibc keeps freed memory in its arenas).

    Without this the daemon keeps each cycle's peak for the weeks it sleeps between
    problems. The garbage collector runs here, once per cycle, rather than whenever its
    thresholds say (about 6 ms for the daemon's ~16,000 objects, bench/daemon.py).
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        cycle: Callable[[Config], Report],
        load_config: Callable[[], Config],
        sinks_for: Callable[[Config], SinkChoice],
        state_dir_for: Callable[[Config], str],
        notifier: Notifier,
        clock: Optional[Clock] = None,
        start_cycle: CycleStarter = threaded_cycles,
        rng: Optional[random.Random] = None,
        on_shutdown: Callable[[], object] = lambda: None,
        publish: Callable[[Config, Report, bool], Optional[str]] = lambda *_: None,
        on_reload: Callable[[], object] = lambda: None,
    ) -> None:
        self._config = config
        self._cycle = cycle
        self._load_config = load_config
        self._sinks_for = sinks_for
        self._state_dir_for = state_dir_for
        self._notifier = notifier
        self._clock: Clock = clock or RealClock()
        self._start_cycle = start_cycle
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._on_shutdown = on_shutdown
        # Writes the node's state where the fleet collects it (Inventory); returns a problem.
        self._publish = publish
        self._publish_problem: Optional[str] = None
        self._on_reload = on_reload  # forget what is checked only hourly (permissions)
        # Who this node is, on every event (a CloudWatch line must stand on its own).
        self._node: dict[str, Any] = {
            "instance_id": None,
            "hostname": socket.gethostname(),
            "region": None,
            "fleet": config.fleet_label,
        }
        self._wake = threading.Event()
        self._stop_reason: Optional[str] = None
        self._reload_requested = False
        self._ready_sent = False
        self._cycles = 0
        self._state = HealthState()
        self._state_problem: Optional[str] = None
        self._last_heartbeat: Optional[float] = None
        self._last_summary: Optional[float] = None
        self._started = self._clock.monotonic()
        self._schedule = Schedule.from_config(config)
        self._store = StateStore(state_dir_for(config))
        choice = sinks_for(config)
        self._sinks = SinkSet(choice.sinks, on_problem=self._diagnose)
        self._sink_notes = choice.notes
        self._log = event_logger(self._sinks, self._node_fields)

    def _node_fields(
        self, _: Any, __: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in self._node.items():
            event.setdefault(key, value)
        return event

    # -- requests from signal handlers or the Windows service control handler --

    def request_stop(self, reason: str) -> None:
        self._stop_reason = reason
        self._wake.set()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    # -- events --

    def _emit(self, kind: str, level: str, **fields: Any) -> None:
        getattr(self._log, level)(kind, **fields)

    def _emit_event(self, event: Mapping[str, Any]) -> None:
        fields = dict(event)
        kind, level = fields.pop("event"), fields.pop("level")
        self._emit(kind, level, **fields)

    @staticmethod
    def _diagnose(message: str) -> None:
        # Also on stderr (the journal, the console under systemd): a sink's own failure
        # may be the reason nobody sees the event about it.
        diagnostics.warning("sink.failed", message=message)

    # -- the loop --

    def serve(self) -> int:
        """Run until asked to stop; the exit code is 0 for a requested stop."""
        self._begin()
        due = self._clock.monotonic()
        while self._sleep_until(due):
            outcome = self._supervised_cycle()
            if outcome is None:
                break
            due = self._clock.monotonic() + self._after_cycle(outcome)
        self._finish()
        return 0

    def run_once(self) -> int:
        """One cycle with the daemon's sinks and state; the exit code is the health code."""
        self._begin()
        try:
            outcome: CycleOutcome = self._cycle(self._config)
        except Exception as exc:
            outcome = exc
        self._after_cycle(outcome)
        self._finish()
        if isinstance(outcome, Report):
            return int(outcome.exit_code)
        return int(ExitCode.UNKNOWN)

    def _begin(self) -> None:
        self._state, problem = self._store.load()
        self._emit(
            "daemon.start",
            "info",
            tool_version=__version__,
            config=self._config.source,
            sinks=self._sinks.names,
            message=(
                f"ssmdiag {__version__} started: checks every "
                f"{_seconds_text(self._schedule.interval)}, every "
                f"{_seconds_text(self._schedule.fail_interval)} while any fails; "
                f"config {self._config.source or '(built-in defaults)'}"
            ),
        )
        if problem:
            self._emit(
                "state.ignored",
                "warning",
                message=f"{problem}; every check is announced again this once",
            )
        for note in self._sink_notes:
            self._emit("sink.fallback", "warning", message=note)

    def _sleep_until(self, due: float) -> bool:
        """Wait for the next cycle; False when asked to stop. A reload makes the cycle due now."""
        while True:
            if self._stop_reason:
                return False
            if self._reload_requested and self._reload():
                return True  # a new configuration is checked at once
            remaining = due - self._clock.monotonic()
            if remaining <= 0:
                return True
            interval = self._notifier.watchdog_interval
            self._clock.wait(self._wake, min(remaining, interval) if interval else remaining)
            self._wake.clear()
            self._notifier.watchdog()

    def _supervised_cycle(self) -> Optional[CycleOutcome]:
        config = self._config
        started = self._clock.monotonic()
        job = self._start_cycle(lambda: self._cycle(config), self._wake)
        overran = False
        while not job.done:
            now = self._clock.monotonic()
            waits = [max(config.cycle_timeout - (now - started), 1.0)]
            if self._notifier.watchdog_interval:
                waits.append(self._notifier.watchdog_interval)
            if not self._ready_sent:
                waits.append(max(config.startup_timeout - (now - self._started), 0.0))
            self._clock.wait(self._wake, min(waits))
            self._wake.clear()
            if self._stop_reason:
                return None  # abandoned: the worker is a daemon thread, its children are killed
            now = self._clock.monotonic()
            if not self._ready_sent and now - self._started >= config.startup_timeout:
                self._ready_sent = True
                self._notifier.ready(
                    f"first check cycle still running after {config.startup_timeout:g} s"
                )
            if now - started < config.cycle_timeout:
                self._notifier.watchdog()
            elif not overran and not job.done:
                overran = True
                self._emit(
                    "cycle.overrun",
                    "error",
                    message=(
                        f"a check cycle has run for more than {config.cycle_timeout:g} s; the "
                        "watchdog is no longer fed, so systemd restarts ssmdiag. Run `ssmdiag "
                        "check --log-level debug` on the node to see which check hangs."
                    ),
                )
        return job.outcome()

    def _after_cycle(self, outcome: CycleOutcome) -> float:
        """Announce what changed; return the delay to the next cycle."""
        self._cycles += 1
        if not isinstance(outcome, Report):
            delay = self._schedule.fail_interval
            if isinstance(outcome, CycleProblem):
                error, message = str(outcome), f"{outcome}; retrying in {delay:g} s. {outcome.fix}"
            else:
                error = f"{type(outcome).__name__}: {outcome}"
                message = (
                    f"the check cycle itself failed ({error}); retrying in {delay:g} s. Run "
                    "`ssmdiag check --log-level debug` and report the traceback as a bug."
                )
            self._emit("cycle.failed", "error", cycle=self._cycles, error=error, message=message)
            self._tell_manager(f"check cycle failed: {outcome}; retrying in {delay:g} s")
            return delay
        report = outcome
        identity = Identity.from_report(report)
        self._node.update(
            instance_id=identity.instance_id,
            hostname=identity.hostname or self._node["hostname"],
            region=identity.region,
            fleet=self._config.fleet_label,
        )
        delay = self._schedule.delay_after(report.status.value, self._rng)
        changed = False
        for event in check_result_events(report, self._state, identity):
            changed = True
            self._emit_event(event)
        summary = cycle_summary_event(report, self._state, identity, self._cycles, delay)
        now = self._clock.monotonic()
        status = report.status.value
        # Healthy and unchanged: one summary line per healthy_summary_interval, not per
        # cycle (the fleet's log bill); anything else: every cycle.
        healthy_every = self._config.healthy_summary_interval
        quiet = status == "ok" and self._state.overall == "ok" and not changed
        if (
            not quiet
            or self._last_summary is None
            or (now - self._last_summary >= healthy_every - delay / 2)
        ):
            self._last_summary = now
            next_summary = max(delay, healthy_every) if status == "ok" else delay
            summary.update(
                emf_fields(
                    report,
                    next_summary,
                    namespace=self._config.metrics_namespace,
                    fleet=self._config.fleet_label,
                    region=identity.region,
                    now_ms=int(time.time() * 1000),
                )
            )
            self._emit_event(summary)
        # The cycle nearest the hour: waiting for the next one would overshoot by more.
        due = self._schedule.heartbeat - delay / 2
        if self._last_heartbeat is None or now - self._last_heartbeat >= due:
            self._last_heartbeat = now
            self._emit_event(heartbeat_event(report, identity, __version__, now - self._started))
            for event in check_state_events(report, identity):
                self._emit_event(event)
        self._publish_state(report, changed or self._cycles == 1)
        self._state = state_after(report)
        self._save_state()
        release_memory()
        self._tell_manager(f"{human_message(summary)}; next check in {delay:.0f} s")
        return delay

    def _publish_state(self, report: Report, changed: bool) -> None:
        try:
            problem = self._publish(self._config, report, changed)
        except Exception as exc:  # a publisher must never stop the loop
            problem = f"{type(exc).__name__}: {exc}"
        if problem and problem != self._publish_problem:
            self._emit("inventory.unwritable", "warning", message=problem)
        self._publish_problem = problem

    def _save_state(self) -> None:
        try:
            self._store.save(self._state)
        except OSError as exc:
            problem = f"cannot save {self._store.path}: {exc.strerror or exc}"
            if problem != self._state_problem:
                self._emit(
                    "state.unsaved",
                    "warning",
                    message=(
                        f"{problem}; after a restart every check is announced again. Free "
                        "space there or fix the permissions (the unit's StateDirectory=)."
                    ),
                )
            self._state_problem = problem
        else:
            self._state_problem = None

    def _tell_manager(self, status: str) -> None:
        if self._ready_sent:
            self._notifier.status(status)
        else:
            self._ready_sent = True
            self._notifier.ready(status)

    def _reload(self) -> bool:
        """Apply a new configuration; False (and the old one kept) when it is broken."""
        self._reload_requested = False
        self._notifier.reloading()
        previous = self._config.source or "(built-in defaults)"
        try:
            config = self._load_config()
        except (ConfigError, ValueError) as exc:  # ValueError: a --region gone bad
            self._emit(
                "config.rejected",
                "error",
                message=(
                    f"reload refused, still running with the previous configuration "
                    f"({previous}): {exc}. Fix the file and reload again "
                    "(systemctl reload ssmdiag)."
                ),
            )
            self._notifier.ready("reload refused: the new configuration is broken")
            return False
        self._on_reload()
        self._config = config
        self._schedule = Schedule.from_config(config)
        self._store = StateStore(self._state_dir_for(config))
        choice = self._sinks_for(config)
        self._sinks.close()
        self._sinks = SinkSet(choice.sinks, on_problem=self._diagnose)
        self._log = event_logger(self._sinks, self._node_fields)  # the node, on every event
        self._emit(
            "config.reloaded",
            "info",
            config=config.source,
            sinks=self._sinks.names,
            message=f"configuration reloaded from {config.source or '(built-in defaults)'}",
        )
        for note in choice.notes:
            self._emit("sink.fallback", "warning", message=note)
        self._notifier.ready("configuration reloaded; checking now")
        return True

    def _finish(self) -> None:
        self._on_shutdown()
        if self._stop_reason:
            self._notifier.stopping()
            self._emit(
                "daemon.stop",
                "info",
                reason=self._stop_reason,
                message=f"ssmdiag stopping ({self._stop_reason}) after {self._cycles} cycles",
            )
        self._sinks.close()
