"""The Windows service's logic (ServiceController), run here with a real Daemon and thread.

The pywin32 ServiceFramework class around it is a few lines of glue that only
exist on Windows (type-checked with mypy --platform win32 in CI).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest

from ssmdiag.config import Config
from ssmdiag.daemon import RealClock, threaded_cycles
from ssmdiag.platform.windows_service import ServiceController, secure_data_directory
from ssmdiag.report import Report
from tests.daemon_helpers import RecordingSink, make_daemon, report


def test_service_stop_ends_the_loop_within_two_seconds_even_mid_cycle(tmp_path: Path) -> None:
    release = threading.Event()
    entered = threading.Event()
    sink = RecordingSink("eventlog")

    def slow_cycle(_config: Config) -> Report:
        if entered.is_set():  # second cycle: hang like a check on a dead network
            release.wait(30)
        entered.set()
        return report({"agent.installed": "ok"})

    controller = ServiceController(
        lambda: make_daemon(
            tmp_path,
            slow_cycle,
            config=Config(interval=1.5, fail_interval=1.5, jitter=0.0),
            clock=RealClock(),  # type: ignore[arg-type]
            sinks=[sink],
            start_cycle=threaded_cycles,
        )
    )
    runner = threading.Thread(target=controller.run)
    runner.start()
    try:
        assert entered.wait(10)
        time.sleep(2.0)  # into the second, hanging cycle
        started = time.monotonic()
        assert controller.stop() is True  # SvcStop
        assert time.monotonic() - started < 2.0
        runner.join(2)
        assert not runner.is_alive() and controller.exit_code == 0
    finally:
        release.set()
    assert [e["reason"] for e in sink.of("daemon.stop")] == ["service stop"]
    assert len(sink.of("cycle.summary")) == 1


def test_a_stop_before_the_daemon_exists_does_not_hang(tmp_path: Path) -> None:
    def cannot_start() -> object:
        raise RuntimeError("config unreadable")

    controller = ServiceController(cannot_start)  # type: ignore[arg-type]
    runner = threading.Thread(target=lambda: _swallow(controller.run))
    runner.start()
    runner.join(5)
    started = time.monotonic()
    assert controller.stop(timeout=1.0) is True
    assert time.monotonic() - started < 1.5


def _swallow(call: object) -> None:
    with contextlib.suppress(RuntimeError):
        call()  # type: ignore[operator]


def test_the_data_directory_is_locked_down_before_the_config_is_read(tmp_path: Path) -> None:
    calls: list[str] = []
    config = tmp_path / "ProgramData" / "ssmdiag" / "ssmdiag.toml"

    def protect(directory: str) -> None:
        # the config must not be read before this: it does not exist yet either way
        calls.append(directory)

    directory = secure_data_directory(str(config), protect)
    assert calls == [str(config.parent)] and directory == str(config.parent)
    assert config.parent.is_dir()  # created (a fresh install without the MSI's folder)


def test_a_failing_lock_down_stops_the_service_start(tmp_path: Path) -> None:
    def denied(directory: str) -> None:
        raise OSError(5, "Access is denied", directory)

    # a directory that cannot be protected must not be trusted: the start fails (and
    # SvcDoRun writes why to the Application log)
    with pytest.raises(OSError, match="Access is denied"):
        secure_data_directory(str(tmp_path / "ssmdiag" / "ssmdiag.toml"), denied)
