"""The check worker (ssmdiag/worker.py): each cycle of `ssmdiag run` in its own process.

The daemon's side is driven against real child processes: stand-in workers (small Python
scripts speaking the protocol, misbehaving on purpose) for the failures a user must be
told about, and the real worker (`worker_command()`) for a whole cycle.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest

from ssmdiag.checks import CHECK_IDS
from ssmdiag.config import Config, config_from_dict, config_to_dict
from ssmdiag.platform import process
from ssmdiag.report import CycleProblem, Report
from ssmdiag.session_prefs import SessionPreferences
from ssmdiag.worker import CycleWorker, worker_command
from tests.daemon_helpers import report

# A stand-in worker: reads the daemon's request, then behaves as argv[1] says. It leaves
# its pid (and a grandchild's) in argv[2] so the test can see they are gone.
STAND_IN = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    mode, pids = sys.argv[1], sys.argv[2]
    request = json.loads(sys.stdin.read())
    out = sys.stdout

    def send(message):
        out.write(json.dumps(message) + "\\n")
        out.flush()

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(pids, "w") as handle:
        json.dump([os.getpid(), child.pid], handle)
    send({"check": "agent.installed"})
    if mode == "hang":
        send({"check": "endpoint.ssm"})
        time.sleep(60)
    elif mode == "crash":
        sys.stderr.write("Traceback: boom\\n")
        sys.exit(1)
    elif mode == "sigkill":
        os.kill(os.getpid(), 9)
    elif mode == "garbage":
        out.write("<html>not json</html>\\n")
    elif mode == "flood":
        while True:
            out.write('{"check": "' + "x" * 60000 + '"}\\n')
    elif mode == "error":
        send({"error": "ValueError: the platform said no"})
    else:
        kept = request["kept"].get("permissions") or 0
        body = json.loads(mode)
        body["kept"] = {"permissions": kept + 1}
        checks = body["report"]["checks"]
        if isinstance(checks, list):
            checks[0]["summary"] = (
                f"kept {kept}; region {request['config']['region']}; log {request['log'][1]}"
            )
        send(body)
    child.kill()
    """
)


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[Callable[[str], tuple[CycleWorker, Path]]]:
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)

    def make(mode: str) -> tuple[CycleWorker, Path]:
        pids = tmp_path / f"pids-{len(list(tmp_path.glob('pids-*')))}.json"
        return CycleWorker([sys.executable, str(script), mode, str(pids)]), pids

    yield make
    for pids in tmp_path.glob("pids-*.json"):  # the stand-ins' own children
        for pid in _alive(pids):
            psutil.Process(pid).kill()


def _alive(pids_file: Path) -> list[int]:
    """The stand-in and its grandchild that still run (zombies count as gone)."""
    alive = []
    for pid in json.loads(pids_file.read_text()):
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _answer(**changes: Any) -> str:
    body = {
        "report": report({"agent.installed": "ok", "endpoint.ssm": "fail"}).to_dict(),
        "inventory_dir": "/var/lib/amazon/ssm/i-0123456789abcdef0/inventory/custom",
    }
    body.update(changes)
    return json.dumps(body)


CONFIG = Config(region="eu-west-1", cycle_timeout=20.0)


def test_a_cycle_comes_back_as_the_report_and_what_the_checks_kept_reaches_the_next(
    stand_in: Callable[[str], tuple[CycleWorker, Path]],
) -> None:
    runner, _ = stand_in(_answer())
    first = runner.run(CONFIG)
    expected = report({"agent.installed": "ok", "endpoint.ssm": "fail"})
    assert [(c.id, c.status, c.remediation) for c in first.checks] == [
        (c.id, c.status, c.remediation) for c in expected.checks
    ]
    assert first.host == expected.host and first.status.value == "fail"
    # The worker got the daemon's configuration and diagnostics level.
    assert first.checks[0].summary.startswith("kept 0; region eu-west-1; log ")
    second = runner.run(CONFIG)
    assert second.checks[0].summary.startswith("kept 1;")  # the hourly results carried over
    runner.forget()  # SIGHUP
    assert runner.run(CONFIG).checks[0].summary.startswith("kept 0;")


def test_a_hung_check_is_stopped_before_the_cycle_overruns_and_named(
    stand_in: Callable[[str], tuple[CycleWorker, Path]],
) -> None:
    runner, pids = stand_in("hang")
    config = replace(CONFIG, cycle_timeout=10.0)
    started = time.monotonic()
    with pytest.raises(CycleProblem) as caught:
        runner.run(config)
    took = time.monotonic() - started
    assert 8.5 <= took < 10.0  # cycle_timeout minus its margin, before the daemon's overrun
    problem = caught.value
    assert "did not finish within 9 s: endpoint.ssm had run for" in str(problem)
    assert "ssmdiag check --only endpoint.ssm --log-level debug" in problem.fix
    # The stand-in is gone (the real worker also ends the programs its checks run: see
    # the next test).
    assert json.loads(pids.read_text())[0] not in _alive(pids)


def test_stop_ends_the_real_worker_and_the_program_a_check_was_running(
    tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    hung = fake_agent_factory("3.3.987.0", "hang", name="hung/amazon-ssm-agent")
    command = worker_command()
    assert command is not None
    runner = CycleWorker(command)
    config = replace(
        Config(), agent_binary=str(hung), subprocess_timeout=120.0, state_dir=str(tmp_path)
    )
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(_catch(runner.run, config)))
    thread.start()

    def hung_children() -> list[psutil.Process]:
        return [
            p
            for p in psutil.process_iter(["exe", "status"])
            if p.info["exe"] == str(hung) and p.info["status"] != psutil.STATUS_ZOMBIE
        ]

    deadline = time.monotonic() + 30
    while not hung_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hung_children(), "the worker never reached the hanging agent binary"
    started = time.monotonic()
    runner.stop()
    thread.join(5)
    assert time.monotonic() - started < 2.0
    assert isinstance(outcome[0], CycleProblem)
    assert "killed by SIGTERM" in str(outcome[0]) or "exited" in str(outcome[0])
    time.sleep(0.3)
    assert hung_children() == []


def _catch(run: Callable[[Config], Report], config: Config) -> Any:
    try:
        return run(config)
    except CycleProblem as exc:
        return exc


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("crash", "the check worker exited 1 without a report (last check begun: agent.installed)"),
        (
            "sigkill",
            "the check worker was killed by SIGKILL (out of memory? the unit's MemoryMax=)",
        ),
        ("garbage", "the check worker's answer said something that is not JSON"),
        ("flood", "the check worker's answer said more than 8192 KiB"),
        ("error", "the check cycle failed in the worker: ValueError: the platform said no"),
        (_answer(report={"checks": "none"}), "the check worker's answer is not a report"),
    ],
)
def test_a_worker_that_gives_no_report_becomes_one_named_problem(
    stand_in: Callable[[str], tuple[CycleWorker, Path]], mode: str, said: str
) -> None:
    runner, pids = stand_in(mode)
    started = time.monotonic()
    with pytest.raises(CycleProblem) as caught:
        runner.run(CONFIG)
    assert said in str(caught.value)
    assert "ssmdiag check --log-level debug" in caught.value.fix
    assert time.monotonic() - started < 10
    assert json.loads(pids.read_text())[0] not in _alive(pids)  # never left running


def test_a_worker_that_cannot_start_says_so() -> None:
    runner = CycleWorker(["/nonexistent/python3", "-c", "pass"])
    with pytest.raises(CycleProblem) as caught:
        runner.run(CONFIG)
    assert "could not start the check worker (/nonexistent/python3)" in str(caught.value)
    assert "reinstall ssmdiag" in caught.value.fix


def test_the_real_worker_runs_a_whole_cycle_and_finds_the_inventory_directory(
    tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    agent = fake_agent_factory("3.3.987.0")
    command = worker_command()
    assert command is not None and command[0] == sys.executable
    runner = CycleWorker(command)
    inventory = tmp_path / "custom"
    config = replace(Config(), agent_binary=str(agent), inventory_dir=str(inventory))
    result = runner.run(config)
    checks = {c.id: c for c in result.checks}
    assert checks["agent.installed"].details["version"] == "3.3.987.0"
    assert sorted(checks) == sorted(CHECK_IDS)
    assert runner.publish(config, result, True) is None
    written = json.loads((inventory / "SSMDiag.json").read_text())
    assert written["TypeName"] == "Custom:SSMDiag"
    assert runner.publish(config, result, False) is None  # unchanged: not rewritten
    (inventory / "SSMDiag.json").unlink()
    runner.publish(config, result, False)
    assert not (inventory / "SSMDiag.json").exists()


def test_the_configuration_crosses_to_the_worker_unchanged() -> None:
    config = Config(
        source="/etc/ssmdiag/ssmdiag.toml",
        region="eu-west-1",
        disabled_checks=("clock.skew",),
        endpoint_overrides=(("ssm", "https://vpce.example:443"),),
        sinks=("file", "journald"),
        session=SessionPreferences(s3_bucket="logs", kms_key_id="alias/x", run_as_enabled=True),
    )
    assert config_from_dict(json.loads(json.dumps(config_to_dict(config)))) == config


def test_on_windows_a_stopped_worker_takes_its_whole_tree_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Windows has no SIGTERM and TerminateProcess ends one process: the tree goes with
    `taskkill /T /F`, by its full path (a service must not run a taskkill.exe from PATH).
    The command is recorded here (this machine has no taskkill); the process itself is
    killed for real."""
    ran: list[list[str]] = []
    monkeypatch.setattr(process, "sys", types.SimpleNamespace(platform="win32"))
    monkeypatch.setattr(process.subprocess, "run", lambda argv, **_: ran.append(argv))
    monkeypatch.setenv("SYSTEMROOT", r"D:\Windows")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        process.kill_tree(child)  # type: ignore[arg-type]
        assert child.wait(5) is not None
    finally:
        child.kill()
    assert ran == [[r"D:\Windows\System32\taskkill.exe", "/T", "/F", "/PID", str(child.pid)]]


@pytest.mark.parametrize(
    "request_bytes",
    [b"", b"not json", b'{"config": {}}', b"[1, 2]", b'{"config": {"x\\u0000": 1}, "log": 5}'],
)
def test_the_real_worker_refuses_a_broken_request_in_one_line(request_bytes: bytes) -> None:
    command = worker_command()
    assert command is not None
    done = subprocess.run(command, input=request_bytes, capture_output=True, timeout=30)
    assert done.returncode == 2
    (line,) = done.stdout.decode().splitlines()
    assert json.loads(line)["error"].startswith("unreadable request from the daemon: ")
    assert b"Traceback" not in done.stderr
