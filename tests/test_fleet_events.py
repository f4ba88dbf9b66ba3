"""The fleet view's raw material (issue 14 items 1, 4, 5): every event names its node,
cycle summaries carry cost-aware EMF metrics whose 5-minute sums count each node once,
failing checks are restated hourly as flat events, and Custom:SSMDiag inventory is
written where the agent collects it."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from ssmdiag.config import Config
from ssmdiag.daemon import Daemon
from ssmdiag.inventory import inventory_document
from ssmdiag.output.sinks import SinkChoice
from tests.daemon_helpers import (
    FakeClock,
    RecordingNotifier,
    RecordingSink,
    Script,
    inline_cycles,
    report,
)
from tests.test_daemon_loop import BROKEN, HEALTHY, serve


def period_sums(
    summaries: list[dict[str, Any]], metric: str, start: list[float], period: float = 900
) -> list[float]:
    sums: dict[int, float] = {}
    for event in summaries:
        at = start[event["cycle"] - 1]
        sums[int(at // period)] = sums.get(int(at // period), 0.0) + float(event.get(metric, 0.0))
    return [round(v, 2) for _, v in sorted(sums.items())]


def test_emf_weights_count_each_node_once_per_fifteen_minutes(tmp_path: Path) -> None:
    config = Config(interval=300, fail_interval=30, jitter=0.0)
    # 1 h healthy, then 30 min failing (re-checks every 30 s), then 1 h healthy again.
    timeline = [HEALTHY] * 12 + [BROKEN] * 60 + [HEALTHY] * 12
    script, sink, _ = serve(tmp_path, timeline, config=config)
    summaries = sink.of("cycle.summary")
    checked = period_sums(summaries, "NodesChecked", script.started_at)
    failing = period_sums(summaries, "NodesFailing", script.started_at)
    # Every 15-minute period counts this one node once: healthy (one line of weight 1)
    # or failing (30 lines of weight 1/30); the periods where it changes mix both.
    assert all(0.9 <= value <= 1.5 for value in checked[:-1]), checked
    assert max(failing) == 1.0 and failing[0] == 0.0, failing
    broken = next(e for e in summaries if e["status"] == "fail")
    directive = broken["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "ssmdiag"
    assert directive["Dimensions"] == [["Region"], ["Fleet", "Region"]]
    names = [m["Name"] for m in directive["Metrics"]]
    assert names == ["NodesChecked", "NodesFailing", "CheckFailing_endpoint.ssmmessages"]
    for name in names:
        assert isinstance(broken[name], float)
    assert (broken["Region"], broken["Fleet"]) == ("eu-west-1", "default")
    used = {name for dimension_set in directive["Dimensions"] for name in dimension_set}
    assert used == {"Region", "Fleet"}  # never per instance
    assert isinstance(broken["_aws"]["Timestamp"], int)


def test_a_healthy_node_writes_one_short_summary_per_fifteen_minutes(tmp_path: Path) -> None:
    config = Config(interval=300, fail_interval=30, jitter=0.0)
    script, sink, _ = serve(tmp_path, [HEALTHY] * 36, config=config)  # 3 h
    summaries = sink.of("cycle.summary")
    at = [script.started_at[e["cycle"] - 1] for e in summaries]
    assert [b - a for a, b in zip(at, at[1:])] == [900.0] * 11
    steady = summaries[-1]
    assert "counts" not in steady and steady["NodesChecked"] == 1.0
    assert "NodesFailing" not in steady  # zeros are not written
    line = json.dumps(steady, separators=(",", ":"))
    assert len(line) < 520, line


def test_every_event_names_its_node_and_fleet(tmp_path: Path) -> None:
    config = Config(interval=300, fail_interval=30, jitter=0.0, fleet_label="web")
    _, sink, _ = serve(tmp_path, [HEALTHY, BROKEN, HEALTHY], config=config)
    assert {e["event"] for e in sink.events} >= {"daemon.start", "cycle.summary", "heartbeat"}
    for event in sink.events:
        if event["event"] == "daemon.start":
            # Before the first cycle only the host name is known.
            assert event["hostname"] == socket.gethostname() and event["fleet"] == "web"
            continue
        assert event["instance_id"] == "i-0123456789abcdef0", event
        assert event["hostname"] == "node" and event["region"] == "eu-west-1"
        assert event["fleet"] == "web"


def test_failing_checks_are_restated_flat_with_every_heartbeat(tmp_path: Path) -> None:
    config = Config(interval=300, fail_interval=300, jitter=0.0, heartbeat=3600)
    _, sink, _ = serve(tmp_path, [BROKEN] * 14, config=config)  # 14 x 300 s: two heartbeats
    states = sink.of("check.state")
    assert len(sink.of("heartbeat")) == 2 and len(states) == 2
    assert {s["check_id"] for s in states} == {"endpoint.ssmmessages"}
    assert states[0]["status"] == "fail" and states[0]["remediation"]
    _, healthy_sink, _ = serve(tmp_path / "h", [HEALTHY] * 3, config=config)
    assert healthy_sink.of("check.state") == []  # healthy nodes pay nothing for it


def test_inventory_is_written_on_change_and_problems_are_told_once(tmp_path: Path) -> None:
    written: list[bool] = []
    problems = iter(
        [None, "cannot write X: Permission denied", "cannot write X: Permission denied"]
    )

    def publish(_config: Config, _report: Any, changed: bool) -> Any:
        written.append(changed)
        return next(problems, None)

    clock = FakeClock()
    script = Script(clock, [HEALTHY, HEALTHY, BROKEN, BROKEN])
    sink = RecordingSink()
    daemon = Daemon(
        Config(jitter=0.0),
        cycle=script,
        load_config=lambda: Config(jitter=0.0),
        sinks_for=lambda _c: SinkChoice([sink], []),
        state_dir_for=lambda _c: str(tmp_path / "state"),
        notifier=RecordingNotifier(clock=clock),
        clock=clock,
        start_cycle=inline_cycles,
        publish=publish,
    )
    script.daemon = daemon
    assert daemon.serve() == 0
    assert written == [True, False, True, False]  # first cycle and each change
    assert len(sink.of("inventory.unwritable")) == 1


def test_inventory_document_follows_the_custom_inventory_format() -> None:
    document = inventory_document(report(BROKEN), "3.3.987.0")
    assert document["SchemaVersion"] == "1.0" and document["TypeName"] == "Custom:SSMDiag"
    entries = document["Content"]
    assert entries[0]["CheckId"] == "node" and entries[0]["NodeStatus"] == "fail"
    assert {e["CheckId"] for e in entries[1:]} == set(BROKEN)
    for entry in entries:
        assert len(entry) <= 50
        assert all(isinstance(v, str) and len(v) <= 4096 for v in entry.values())
        assert all(1 <= len(k) <= 64 for k in entry)


def test_run_once_writes_inventory_where_configured(
    tmp_path: Path, write_config: Any, fake_agent_factory: Any
) -> None:
    from tests.conftest import run_cli

    inventory = tmp_path / "inventory"
    health = tmp_path / "health.json"
    config = write_config(
        f"[agent]\nbinary = '{fake_agent_factory()}'\n"
        "[checks]\ndisable = ['endpoint.ec2messages', 'endpoint.ssm', 'endpoint.ssmmessages',"
        " 'clock.skew']\n"
        f"[daemon]\nstate_dir = '{tmp_path / 'state'}'\n"
        f"[sinks]\nenabled = ['file']\nfile_path = '{health}'\n"
        f"[fleet]\nlabel = 'batch'\ninventory_dir = '{inventory}'\n"
    )
    result = run_cli("run", "--once", "--config", str(config), "--region", "us-east-1")
    assert "Traceback" not in result.stderr
    document = json.loads((inventory / "SSMDiag.json").read_text())
    assert document["TypeName"] == "Custom:SSMDiag"
    events = [json.loads(line) for line in health.read_text().splitlines()]
    summary = next(e for e in events if e["event"] == "cycle.summary")
    assert summary["Fleet"] == "batch" and summary["fleet"] == "batch"
    assert all("hostname" in e and "instance_id" in e for e in events)
