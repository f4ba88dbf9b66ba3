"""Wiring the daemon to the real world: config file, platform, sinks, state, signals.

`ssmdiag run` (systemd, launchd, a terminal) and the Windows service both come
through `build_daemon`; only how a stop or reload is requested differs.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any, Callable, Optional

from ssmdiag.config import Config, load_config, with_overrides
from ssmdiag.daemon import Daemon
from ssmdiag.notify import Notifier
from ssmdiag.output.sinks import (
    EventLogWriter,
    SinkChoice,
    build_sinks,
    default_file_path,
    default_sink_names,
)
from ssmdiag.platform import process
from ssmdiag.report import Report
from ssmdiag.state import default_state_dir
from ssmdiag.worker import CycleWorker, worker_command


def run_cycle(config: Config) -> Report:
    from ssmdiag.engine import run_checks
    from ssmdiag.platform import detect

    return run_checks(detect(config), config)


def publish_inventory(config: Config, report: Report, changed: bool) -> Optional[str]:
    """Custom:SSMDiag where the agent's inventory plugin collects it, when the checks
    changed (in-process cycles); a problem or None."""
    from ssmdiag.inventory import inventory_location, publish_at

    if not config.inventory or not changed:
        return None
    return publish_at(inventory_location(config, report), report)


def _forget_hourly_checks() -> None:
    from ssmdiag.checks import permissions

    permissions.forget()


def build_daemon(
    config: Config,
    *,
    config_path: Optional[str],
    cli_sinks: Sequence[str] = (),
    cli_region: Optional[str] = None,
    cli_agent_config: Optional[str] = None,
    cli_session_file: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
    windows_service: bool = False,
    eventlog_writer: Optional[Callable[[], EventLogWriter]] = None,
    stdout: Optional[IO[str]] = None,
    stderr: Optional[IO[str]] = None,
) -> Daemon:
    env: Mapping[str, str] = os.environ if environ is None else environ
    out, err = stdout or sys.stdout, stderr or sys.stderr

    def sinks_for(cfg: Config) -> SinkChoice:
        names = (
            tuple(cli_sinks) or cfg.sinks or default_sink_names(env, sys.platform, windows_service)
        )
        return build_sinks(
            names,
            file_path=cfg.file_path or default_file_path(env, sys.platform),
            file_max_bytes=cfg.file_max_bytes,
            file_backups=cfg.file_backups,
            console_device=cfg.console_device,
            stdout=out,
            stderr=err,
            eventlog_writer=eventlog_writer,
        )

    def reload_config() -> Config:
        # The file named at start-up, read again; command-line overrides still win.
        return with_overrides(
            load_config(config_path, env), cli_region, cli_agent_config, cli_session_file
        )

    common: dict[str, Any] = {
        "load_config": reload_config,
        "sinks_for": sinks_for,
        "state_dir_for": lambda cfg: cfg.state_dir or default_state_dir(env),
        "notifier": Notifier(env),
    }

    # Each cycle in a fresh worker process (ssmdiag/worker.py: the daemon stays small and a
    # hung check can be stopped); in this process only where no worker can be started.
    command = worker_command()
    if command is None:
        return Daemon(
            config,
            cycle=run_cycle,
            publish=publish_inventory,
            on_reload=_forget_hourly_checks,
            on_shutdown=process.terminate_all,
            **common,
        )
    worker = CycleWorker(command)

    def shutdown() -> None:
        worker.stop()
        process.terminate_all()

    return Daemon(
        config,
        cycle=worker.run,
        publish=worker.publish,
        on_reload=worker.forget,
        on_shutdown=shutdown,
        **common,
    )


def install_signal_handlers(daemon: Daemon) -> None:
    """SIGTERM/SIGINT stop, SIGHUP reloads (POSIX; the Windows service has its own control)."""

    def stop(signum: int, _frame: object) -> None:
        daemon.request_stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda _s, _f: daemon.request_reload())
