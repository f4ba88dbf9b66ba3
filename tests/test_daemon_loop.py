"""The daemon's schedule and announcements, driven by a fake clock (no sleeping, no threads).

Real parts: the Daemon, the event pipeline (ssmdiag.log), the state file on disk,
the health event rules. Fakes: the clock, the cycle (scripted reports) and a
recording sink.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ssmdiag.config import Config, ConfigError
from ssmdiag.daemon import RealClock, threaded_cycles
from ssmdiag.output.sinks import Sink
from ssmdiag.report import CycleProblem, Report
from tests.daemon_helpers import (
    FakeClock,
    RecordingNotifier,
    RecordingSink,
    Script,
    SlowJob,
    make_daemon,
    report,
)

HEALTHY = {"agent.installed": "ok", "endpoint.ssm": "ok", "endpoint.ssmmessages": "ok"}
BROKEN = {**HEALTHY, "endpoint.ssmmessages": "fail"}


def serve(tmp_path: Path, timeline: list[dict[str, str]], **kwargs: object) -> tuple:
    clock = kwargs.pop("clock", None) or FakeClock()
    script = Script(clock, timeline)
    sink = RecordingSink()
    daemon = make_daemon(tmp_path, script, clock=clock, sinks=[sink], **kwargs)  # type: ignore[arg-type]
    script.daemon = daemon
    assert daemon.serve() == 0
    return script, sink, daemon


def test_cycles_follow_the_interval_and_recheck_fast_while_failing(tmp_path: Path) -> None:
    config = Config(interval=300, fail_interval=30, jitter=0.0, healthy_summary_interval=60)
    script, sink, _ = serve(tmp_path, [HEALTHY, BROKEN, BROKEN, HEALTHY, HEALTHY], config=config)
    gaps = [b - a for a, b in zip(script.started_at, script.started_at[1:])]
    assert script.started_at[0] == 0  # at start, not after a first interval
    assert gaps == [300, 30, 30, 300]
    summaries = sink.of("cycle.summary")
    assert [s["next_check_s"] for s in summaries] == [300, 30, 30, 300, 300]


def test_jitter_spreads_a_fleet_within_the_configured_fraction(tmp_path: Path) -> None:
    config = Config(interval=300, fail_interval=30, jitter=0.1)
    script, _, _ = serve(tmp_path, [HEALTHY] * 40, config=config)
    gaps = [b - a for a, b in zip(script.started_at, script.started_at[1:])]
    assert all(270 <= gap <= 330 for gap in gaps)
    assert len({round(gap) for gap in gaps}) > 5  # not one fixed beat


def test_check_results_only_when_a_status_changes(tmp_path: Path) -> None:
    _, sink, _ = serve(tmp_path, [HEALTHY, HEALTHY, BROKEN, BROKEN, HEALTHY])
    results = sink.of("check.result")
    # three at start-up, then the change to fail and the change back: nothing for repeats
    assert [(e["check_id"], e["previous_status"], e["status"]) for e in results] == [
        ("agent.installed", None, "ok"),
        ("endpoint.ssm", None, "ok"),
        ("endpoint.ssmmessages", None, "ok"),
        ("endpoint.ssmmessages", "ok", "fail"),
        ("endpoint.ssmmessages", "fail", "ok"),
    ]
    failing = results[3]
    assert failing["level"] == "error"
    assert failing["remediation"].startswith("Open security group egress")
    assert failing["instance_id"] == "i-0123456789abcdef0"
    assert failing["region"] == "eu-west-1"
    assert failing["agent_version"] == "3.3.987.0"
    assert len(sink.of("cycle.summary")) == 5
    for event in sink.events:  # the pipeline: every event is stamped and ordered
        assert list(event)[:3] == ["ts", "level", "event"]
        assert event["ts"].endswith("Z")


def test_cycle_summary_names_the_worst_problem(tmp_path: Path) -> None:
    _, sink, _ = serve(tmp_path, [HEALTHY, BROKEN])
    healthy, broken = sink.of("cycle.summary")
    assert healthy["status"] == "ok" and "worst" not in healthy
    assert healthy["counts"] == {"ok": 3}  # the first cycle: a change from nothing known
    assert broken["status"] == "fail" and broken["previous_status"] == "ok"
    assert broken["worst"]["check_id"] == "endpoint.ssmmessages"
    assert broken["problems"] == ["endpoint.ssmmessages"]


def test_heartbeat_at_start_and_then_hourly(tmp_path: Path) -> None:
    config = Config(interval=300, fail_interval=30, jitter=0.0, heartbeat=3600)
    _, sink, _ = serve(tmp_path, [HEALTHY] * 30, config=config)  # 0 .. 8700 s
    beats = sink.of("heartbeat")
    assert len(beats) == 3  # t=0, t=3600, t=7200
    assert beats[0]["checks"] == {}  # all ok: the map would only repeat "ok" 25 times
    assert beats[1]["uptime_s"] == 3600 and beats[2]["uptime_s"] == 7200
    assert beats[0]["problems"] == []
    _, broken_sink, _ = serve(tmp_path / "b", [BROKEN] * 2, config=config)
    assert broken_sink.of("heartbeat")[0]["checks"] == BROKEN


def test_restart_does_not_announce_everything_again(tmp_path: Path) -> None:
    serve(tmp_path, [HEALTHY, HEALTHY])
    saved = json.loads((tmp_path / "state" / "last-status.json").read_text())
    assert saved["checks"] == HEALTHY and saved["overall"] == "ok"

    _, sink, _ = serve(tmp_path, [BROKEN])  # a restart: same state directory
    assert [(e["check_id"], e["previous_status"]) for e in sink.of("check.result")] == [
        ("endpoint.ssmmessages", "ok")
    ]
    assert len(sink.of("heartbeat")) == 1  # the full picture once after every start


def test_a_corrupt_state_file_is_kept_aside_and_everything_announced(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "last-status.json").write_text("{not json")
    _, sink, _ = serve(tmp_path, [HEALTHY])
    ignored = sink.of("state.ignored")
    assert len(ignored) == 1
    assert "last-status.json.corrupt" in ignored[0]["message"]
    assert (state / "last-status.json.corrupt").read_text() == "{not json"
    assert len(sink.of("check.result")) == 3


def test_ready_after_the_first_cycle_then_status_every_cycle(tmp_path: Path) -> None:
    clock = FakeClock()
    notifier = RecordingNotifier(watchdog_interval=10, clock=clock)
    config = Config(interval=300, fail_interval=30, jitter=0.0)
    serve(tmp_path, [HEALTHY, BROKEN], config=config, clock=clock, notifier=notifier)
    ready = notifier.messages("READY=1")
    statuses = notifier.messages("STATUS=")
    assert [t for t, _ in ready] == [0]
    assert statuses[0][1].startswith("STATUS=OK")
    assert statuses[1][1].startswith("STATUS=FAIL endpoint.ssmmessages")
    assert "next check in 30 s" in statuses[1][1]
    pings = [t for t, _ in notifier.messages("WATCHDOG=1")]
    assert len([t for t in pings if 0 < t <= 300]) == 30  # every 10 s while sleeping
    assert notifier.messages("STOPPING=1")


def serve_one_slow_cycle(
    tmp_path: Path,
    clock: FakeClock,
    config: Config,
    notifier: RecordingNotifier,
    sink: RecordingSink,
    *,
    duration: float,
    stop_at: float,
) -> None:
    """Serve with cycles taking `duration` s of fake time; stop when the clock reaches stop_at."""
    daemon = make_daemon(
        tmp_path,
        lambda _c: report(HEALTHY),
        config=config,
        clock=clock,
        sinks=[sink],
        notifier=notifier,
        start_cycle=lambda work, wake: SlowJob(clock, duration, work(), wake),
    )
    clock.on_wait = lambda now: daemon.request_stop("test") if now >= stop_at else None
    daemon.serve()


def test_ready_is_sent_at_the_startup_timeout_when_the_first_cycle_is_slow(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    notifier = RecordingNotifier(watchdog_interval=None, clock=clock)
    config = Config(startup_timeout=60, jitter=0.0)
    serve_one_slow_cycle(
        tmp_path, clock, config, notifier, RecordingSink(), duration=100, stop_at=151
    )
    ready = notifier.messages("READY=1")
    assert [t for t, _ in ready] == [60]
    status = notifier.messages("STATUS=")
    assert "first check cycle still running after 60 s" in status[0][1]
    assert status[1][0] == 100 and status[1][1].startswith("STATUS=OK")


def test_a_cycle_over_its_time_limit_stops_feeding_the_watchdog(tmp_path: Path) -> None:
    clock = FakeClock()
    notifier = RecordingNotifier(watchdog_interval=10, clock=clock)
    sink = RecordingSink()
    config = Config(cycle_timeout=240, jitter=0.0)
    serve_one_slow_cycle(tmp_path, clock, config, notifier, sink, duration=600, stop_at=500)
    pings = [t for t, _ in notifier.messages("WATCHDOG=1")]
    assert pings and max(pings) < 240
    overrun = sink.of("cycle.overrun")
    assert len(overrun) == 1 and "ssmdiag check --log-level debug" in overrun[0]["message"]


def test_reload_with_a_broken_config_keeps_the_old_one(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = RecordingSink()
    old = Config(source="/etc/ssmdiag/ssmdiag.toml", interval=300, jitter=0.0)
    new = Config(source="/etc/ssmdiag/ssmdiag.toml", interval=600, fail_interval=30, jitter=0.0)
    answers: list[object] = [ConfigError("/etc/ssmdiag/ssmdiag.toml", "is not valid TOML"), new]

    def load() -> Config:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, Config)
        return answer

    script = Script(clock, [HEALTHY] * 6)
    forgotten: list[float] = []  # what is checked only hourly (permissions) is redone
    daemon = make_daemon(
        tmp_path, script, config=old, clock=clock, sinks=[sink], load_config=load,
        on_reload=lambda: forgotten.append(clock.now),
    )  # fmt: skip
    script.daemon = daemon
    clock.marks = [100.0, 500.0]  # SIGHUP at these times
    clock.on_wait = lambda now: daemon.request_reload() if now in clock.marks else None
    daemon.serve()
    rejected = sink.of("config.rejected")
    assert len(rejected) == 1
    assert "still running with the previous configuration" in rejected[0]["message"]
    assert "is not valid TOML" in rejected[0]["message"]
    # the broken reload (t=100) leaves the 300 s rhythm alone; the good one (t=500)
    # brings a cycle at once and 600 s after it
    assert script.started_at[:4] == [0, 300, 500, 1100]
    assert len(sink.of("config.reloaded")) == 1
    assert forgotten == [500.0]  # the good reload only
    # events after the reload still name the node (the new pipeline keeps its fields)
    reloaded_at = sink.events.index(sink.of("config.reloaded")[0])
    for event in sink.events[reloaded_at + 1 :]:
        assert event["instance_id"] == "i-0123456789abcdef0" and event["fleet"] == "default"


def test_a_cycle_that_raises_is_reported_and_retried_soon(tmp_path: Path) -> None:
    clock = FakeClock()
    calls: list[float] = []
    sink = RecordingSink()
    daemon = make_daemon(tmp_path, lambda _c: report(HEALTHY), clock=clock, sinks=[sink])

    def cycle(_config: Config) -> Report:
        calls.append(clock.now)
        if len(calls) == 1:
            raise RuntimeError("platform exploded")
        daemon.request_stop("test")
        return report(HEALTHY)

    daemon._cycle = cycle  # the one seam not in the constructor helper
    daemon.serve()
    failed = sink.of("cycle.failed")
    assert len(failed) == 1 and "platform exploded" in failed[0]["message"]
    assert calls == [0, 30]  # fail_interval, not the full interval
    assert len(sink.of("cycle.summary")) == 1


def test_a_worker_that_hung_is_reported_with_its_own_fix_not_as_a_bug(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = RecordingSink()
    daemon = make_daemon(tmp_path, lambda _c: report(HEALTHY), clock=clock, sinks=[sink])
    hung = CycleProblem(
        "the checks did not finish within 235 s: endpoint.ssm had run for 231 s when the "
        "worker was stopped",
        "Run `ssmdiag check --only endpoint.ssm --log-level debug` on the node.",
    )
    outcomes: list[Any] = [hung, report(HEALTHY)]

    def cycle(_config: Config) -> Report:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        daemon.request_stop("test")
        return outcome

    daemon._cycle = cycle
    daemon.serve()
    (failed,) = sink.of("cycle.failed")
    assert failed["error"] == str(hung)
    assert failed["message"] == (
        f"{hung}; retrying in 30 s. Run `ssmdiag check --only endpoint.ssm --log-level debug` "
        "on the node."
    )
    assert "traceback" not in failed["message"]
    assert not sink.of("cycle.overrun")  # stopped in time: the watchdog was fed throughout


class FlakySink(Sink):
    name = "file"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.written: list[dict[str, object]] = []

    def emit(self, event: object) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError(28, "No space left on device", "/var/log/ssmdiag/health.json")
        self.written.append(dict(event))  # type: ignore[call-overload]


def test_a_failing_sink_is_reported_once_and_the_others_keep_working(tmp_path: Path) -> None:
    flaky = FlakySink(failures=12)
    sink = RecordingSink()
    clock = FakeClock()
    script = Script(clock, [HEALTHY, HEALTHY, BROKEN, HEALTHY])
    daemon = make_daemon(tmp_path, script, clock=clock, sinks=[flaky, sink])
    script.daemon = daemon
    daemon.serve()
    failed = sink.of("sink.failed")
    assert len(failed) == 1
    assert "No space left on device: /var/log/ssmdiag/health.json" in failed[0]["message"]
    assert "Free space" in failed[0]["message"]
    assert len(sink.of("cycle.summary")) == 4  # stdout never missed a cycle
    recovered = sink.of("sink.recovered")
    assert len(recovered) == 1 and recovered[0]["dropped"] == 0
    # nothing lost: the file sink got every health event, late but in order
    kinds = [e["event"] for e in flaky.written if e["event"] == "cycle.summary"]
    assert len(kinds) == 4
    assert [e["cycle"] for e in flaky.written if e["event"] == "cycle.summary"] == [1, 2, 3, 4]


def test_stop_during_a_cycle_returns_within_two_seconds(tmp_path: Path) -> None:
    release = threading.Event()
    sink = RecordingSink()

    def stuck_cycle(_config: Config) -> Report:
        release.wait(30)  # a check waiting on a dead network
        return report(HEALTHY)

    daemon = make_daemon(
        tmp_path, stuck_cycle, clock=RealClock(), sinks=[sink], start_cycle=threaded_cycles
    )  # type: ignore[arg-type]
    threading.Timer(0.3, daemon.request_stop, args=("SIGTERM",)).start()
    started = time.monotonic()
    try:
        assert daemon.serve() == 0
        assert time.monotonic() - started < 2.0
    finally:
        release.set()
    stop = sink.of("daemon.stop")
    assert stop and stop[0]["reason"] == "SIGTERM"
    assert not sink.of("cycle.summary")  # the abandoned cycle reports nothing half-done


@pytest.mark.parametrize("status", ["ok", "warn", "fail"])
def test_run_once_exits_with_the_health_code(tmp_path: Path, status: str) -> None:
    sink = RecordingSink()
    daemon = make_daemon(
        tmp_path, lambda _c: report({**HEALTHY, "endpoint.ssm": status}), sinks=[sink]
    )
    assert daemon.run_once() == {"ok": 0, "warn": 1, "fail": 2}[status]
    assert len(sink.of("cycle.summary")) == 1 and len(sink.of("heartbeat")) == 1
