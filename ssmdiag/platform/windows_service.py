"""The Windows service `ssmdiag`: pywin32's ServiceFramework around the same daemon loop.

`ServiceController` holds the logic (start the loop on a thread, stop it
within the SCM's patience) and runs anywhere, so it is tested on Linux; the
pywin32 class below it is a few lines of glue, defined only on Windows.

Installation (the MSI, see windows/ssmdiag.wxs) registers:
- the service: name `ssmdiag`, command `"<install dir>\\ssmdiag.exe" service`,
  automatic (delayed) start, LocalSystem;
- the Event Log source: key
  HKLM\\SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\ssmdiag with
  EventMessageFile = .NET Framework 4's EventLogMessages.dll (its message table
  maps every event ID to "%1", so the event's own text shows; pywin32's
  win32evtlog.pyd covers only IDs 1-9) and TypesSupported = 7.
  Event IDs: 47100 ok, 47101 skip, 47200 warn, 47201 unknown, 47300 fail, 47301 error,
  47010 daemon news, 47011 daemon problems (ssmdiag.output.sinks).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from typing import Callable, Optional, Protocol

SERVICE_NAME = "ssmdiag"
SERVICE_DISPLAY_NAME = "ssmdiag: Session Manager reachability checks"
STOP_WAIT_SECONDS = 2.0


class Stoppable(Protocol):
    def serve(self) -> int: ...

    def request_stop(self, reason: str) -> None: ...


class ServiceController:
    """Runs a daemon for the SCM: `run()` blocks in SvcDoRun, `stop()` comes from SvcStop."""

    def __init__(self, make_daemon: Callable[[], Stoppable]) -> None:
        self._make_daemon = make_daemon
        self._daemon: Optional[Stoppable] = None
        self._ready = threading.Event()
        self._finished = threading.Event()
        self.exit_code: Optional[int] = None

    def run(self) -> int:
        try:
            self._daemon = self._make_daemon()
            self._ready.set()
            code = self._daemon.serve()
            self.exit_code = code
        finally:
            self._ready.set()
            self._finished.set()
        return code

    def stop(self, timeout: float = STOP_WAIT_SECONDS) -> bool:
        """Ask the loop to stop; True when it ended within `timeout` seconds."""
        self._ready.wait(timeout)
        if self._daemon is not None:
            self._daemon.request_stop("service stop")
        return self._finished.wait(timeout)


def secure_data_directory(config_path: str, protect: Callable[[str], None]) -> str:
    """Lock %ProgramData%\\ssmdiag down before its config is read, and return that directory.

    ProgramData lets every user create files, and the service runs as LocalSystem and
    executes what its config names (`[agent] binary ... -version`): a config planted
    by a user must not be possible. The MSI cannot set permissions (wixl has no
    Permission element), so the service does it at every start, before reading.
    """
    directory = os.path.dirname(config_path)
    os.makedirs(directory, exist_ok=True)
    protect(directory)
    return directory


def make_service_daemon() -> Stoppable:
    from ssmdiag.config import default_config_path, load_config
    from ssmdiag.log import configure_logging
    from ssmdiag.service import build_daemon

    if sys.platform == "win32":
        from ssmdiag.platform.windows_api import protect_directory

        secure_data_directory(default_config_path(), protect_directory)
    config = load_config()
    configure_logging(config.log_format, "warning")
    writer = None
    if sys.platform == "win32":
        from ssmdiag.platform.windows_api import event_log_writer

        writer = event_log_writer
    return build_daemon(config, config_path=None, windows_service=True, eventlog_writer=writer)


if sys.platform == "win32":
    import servicemanager
    import win32event
    import win32service
    import win32serviceutil

    class SsmdiagService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = SERVICE_DISPLAY_NAME
        _svc_description_ = (
            "Checks at boot and every few minutes whether AWS Systems Manager Session "
            "Manager can reach this node, and logs what is wrong and how to fix it."
        )

        def __init__(self, args: Sequence[str]) -> None:
            super().__init__(args)
            self._stop_event = win32event.CreateEvent(None, 0, 0, None)
            self._controller = ServiceController(make_service_daemon)

        def SvcStop(self) -> None:  # pywin32's name
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
            self._controller.stop()
            win32event.SetEvent(self._stop_event)

        def SvcDoRun(self) -> None:  # pywin32's name
            self.ReportServiceStatus(win32service.SERVICE_RUNNING)
            try:
                self._controller.run()
            except Exception as exc:
                # A broken config file at start: say so where Windows admins look, then stop.
                servicemanager.LogErrorMsg(
                    f"ssmdiag cannot start: {exc}. Fix the file and start the service again "
                    "(Start-Service ssmdiag)."
                )
                raise

    def dispatch() -> int:
        """Hand the process to the SCM (the MSI's ServiceInstall runs `ssmdiag.exe service`)."""
        servicemanager.Initialize()
        servicemanager.PrepareToHostSingle(SsmdiagService)
        servicemanager.StartServiceCtrlDispatcher()
        return 0
