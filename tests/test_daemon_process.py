"""The real `ssmdiag run` process: signals, sd_notify, reloads, a full disk, --once."""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest

from tests.conftest import REPO, hermetic_env, require_root, require_tool, run_cli


class RunningDaemon:
    """`ssmdiag run` as a child process, its JSON events read as they come."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ssmdiag", "run", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=hermetic_env(env),
            cwd=REPO,
        )
        self.events: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(json.loads(line))

    def wait_for(self, kind: str, timeout: float = 30, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for seen in self.events:
            if seen["event"] == kind and all(seen.get(k) == v for k, v in match.items()):
                self.events.remove(seen)  # each wait consumes one
                return seen
        while time.monotonic() < deadline:
            try:
                event = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if event["event"] == kind and all(event.get(k) == v for k, v in match.items()):
                return event
            self.events.append(event)
        raise AssertionError(
            f"no {kind} {match} within {timeout} s; saw {[e['event'] for e in self.events]}"
        )

    def stop(self) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=10)
        return code, time.monotonic() - started

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def start_daemon() -> Iterator[Callable[..., RunningDaemon]]:
    started: list[RunningDaemon] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> RunningDaemon:
        daemon = RunningDaemon(args, env or {})
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


class NotifySocket:
    """What systemd's end of NOTIFY_SOCKET receives, on a datagram socket the test binds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []

    def collect(self, until: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            self.sock.settimeout(max(min(deadline - time.monotonic(), 0.5), 0.01))
            try:
                data = self.sock.recv(65536).decode()
            except socket.timeout:
                continue
            now = time.monotonic()
            self.messages += [(now, line) for line in data.splitlines()]

    def lines(self, prefix: str) -> list[str]:
        return [line for _, line in self.messages if line.startswith(prefix)]

    def close(self) -> None:
        self.sock.close()


def config_file(tmp_path: Path, body: str = "") -> Path:
    path = tmp_path / "ssmdiag.toml"
    path.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n{body}')
    return path


def test_sd_notify_ready_status_watchdog_and_a_clean_sigterm(
    tmp_path: Path, start_daemon: Callable[..., RunningDaemon]
) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        daemon = start_daemon(
            ["--config", str(config_file(tmp_path)), "--sink", "stdout"],
            {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"},
        )
        notify.collect(lambda: bool(notify.lines("READY=1")))
        assert notify.lines("READY=1"), f"no READY=1; got {notify.messages}"
        status = notify.lines("STATUS=")[0]
        assert status.startswith("STATUS=FAIL agent.installed") and "next check in" in status
        before = len(notify.lines("WATCHDOG=1"))
        notify.collect(lambda: len(notify.lines("WATCHDOG=1")) >= before + 4, timeout=5)
        assert len(notify.lines("WATCHDOG=1")) >= before + 4  # every 0.2 s for WatchdogSec 0.4 s
        daemon.wait_for("cycle.summary")
        code, took = daemon.stop()
        assert code == 0 and took < 2.0
        notify.collect(lambda: bool(notify.lines("STOPPING=1")), timeout=2)
        assert notify.lines("STOPPING=1")
        assert daemon.wait_for("daemon.stop")["reason"] == "SIGTERM"
    finally:
        notify.close()


def test_sigterm_mid_cycle_exits_at_once_and_kills_the_hung_check(
    tmp_path: Path,
    start_daemon: Callable[..., RunningDaemon],
    fake_agent_factory: Callable[..., Path],
) -> None:
    hung = fake_agent_factory("3.3.987.0", "hang", name="hung/amazon-ssm-agent")
    body = f'[agent]\nbinary = "{hung}"\n[checks]\nsubprocess_timeout = 120\n'
    daemon = start_daemon(["--config", str(config_file(tmp_path, body)), "--sink", "stdout"])
    daemon.wait_for("daemon.start")

    def hung_children() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["exe", "status"]):
            # a killed child may linger as a zombie until init reaps it: dead is dead
            if proc.info["exe"] == str(hung) and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        return found

    deadline = time.monotonic() + 20
    while not hung_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hung_children(), "the cycle never reached the hanging agent binary"
    code, took = daemon.stop()
    assert code == 0 and took < 2.0
    time.sleep(0.3)
    assert hung_children() == []  # its process group went with the daemon


def test_sighup_with_a_broken_config_keeps_the_old_one_then_a_good_one_applies(
    tmp_path: Path, start_daemon: Callable[..., RunningDaemon]
) -> None:
    path = config_file(tmp_path, "interval = 600\nfail_interval = 300\n")
    daemon = start_daemon(["--config", str(path), "--sink", "stdout"])
    first = daemon.wait_for("cycle.summary")
    assert 270 <= first["next_check_s"] <= 330  # fail_interval 300 +/- 10 %

    path.write_text("[daemon\ninterval = ")  # an editor's half-saved file
    daemon.proc.send_signal(signal.SIGHUP)
    rejected = daemon.wait_for("config.rejected", timeout=10)
    assert "still running with the previous configuration" in rejected["message"]
    assert "is not valid TOML" in rejected["message"] and str(path) in rejected["message"]
    assert daemon.proc.poll() is None

    config_file(tmp_path, "interval = 600\nfail_interval = 60\n")
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for("config.reloaded", timeout=10)
    again = daemon.wait_for("cycle.summary", timeout=30)  # checked at once, with the new rhythm
    assert again["cycle"] == 2 and 54 <= again["next_check_s"] <= 66
    code, _ = daemon.stop()
    assert code == 0


def test_run_once_writes_the_health_file_and_state_and_exits_with_the_health_code(
    tmp_path: Path,
) -> None:
    health = tmp_path / "logs" / "health.json"
    path = config_file(tmp_path, f'[sinks]\nenabled = ["file"]\nfile_path = "{health}"\n')
    checked = run_cli("check", "--format", "json", "--config", str(path))
    once = run_cli("run", "--once", "--config", str(path))
    assert once.returncode == checked.returncode == 2, once.stderr
    assert once.stdout == ""  # the config chose the file sink only
    events = [json.loads(line) for line in health.read_text().splitlines()]
    summary = next(e for e in events if e["event"] == "cycle.summary")
    assert summary["status"] == json.loads(checked.stdout)["status"]
    saved = json.loads((tmp_path / "state" / "last-status.json").read_text())
    assert saved["overall"] == summary["status"]
    # a second run knows the last statuses: nothing is announced again
    again = run_cli("run", "--once", "--config", str(path))
    assert again.returncode == 2
    events = [json.loads(line) for line in health.read_text().splitlines()]
    assert sum(e["event"] == "check.result" for e in events) == len(saved["checks"])


def test_run_rejects_unknown_sinks_and_broken_configs_with_their_exit_codes(
    tmp_path: Path,
) -> None:
    bad_sink = run_cli("run", "--once", "--sink", "syslog")
    assert bad_sink.returncode == 64 and "invalid choice: 'syslog'" in bad_sink.stderr
    path = tmp_path / "bad.toml"
    path.write_text('[sinks]\nenabled = ["file", "kafka"]\n')
    broken = run_cli("run", "--once", "--config", str(path))
    assert broken.returncode == 78
    assert "sinks.enabled" in broken.stderr and "kafka" in broken.stderr
    path.write_text("[daemon]\ninterval = 60\nfail_interval = 120\n")
    slower = run_cli("run", "--once", "--config", str(path))
    assert slower.returncode == 78 and "daemon.fail_interval" in slower.stderr


def test_a_full_disk_keeps_the_daemon_alive_and_stdout_writing(tmp_path: Path) -> None:
    require_root("mounts a tiny tmpfs in a private mount namespace")
    require_tool("unshare")
    disk = tmp_path / "disk"
    disk.mkdir()
    path = config_file(
        tmp_path, f'[sinks]\nenabled = ["file", "stdout"]\nfile_path = "{disk}/health.json"\n'
    )
    # Fill a 16 KiB tmpfs completely, then run one cycle: the file sink cannot write.
    script = (
        f"mount -t tmpfs -o size=16k tmpfs {disk} && "
        f"(dd if=/dev/zero of={disk}/filler bs=1k count=64 2>/dev/null; true) && "
        f'exec "$0" -m ssmdiag run --once --config {path}'
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, sys.executable],
        capture_output=True,
        text=True,
        timeout=60,
        env=hermetic_env(),
        cwd=REPO,
    )
    assert result.returncode == 2, result.stderr  # the health code, not a crash
    events = [json.loads(line) for line in result.stdout.splitlines()]
    failed = [e for e in events if e["event"] == "sink.failed"]
    assert len(failed) == 1 and "No space left on device" in failed[0]["message"]
    assert any(e["event"] == "cycle.summary" for e in events)
    assert "Traceback" not in result.stderr
    assert "sink file failed" in result.stderr  # also said where the journal keeps it


def test_the_service_entry_point_refuses_politely_off_windows() -> None:
    result = run_cli("service")
    assert result.returncode == 64
    assert "only the Windows service control manager" in result.stderr
