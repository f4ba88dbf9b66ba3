"""The real WindowsApi: winreg and pywin32 (the `windows` extra). Imported only on Windows.

Kept as thin as possible: each method is one OS call and a translation of its result,
so the logic in windows.py is what the tests exercise.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from typing import Any, Callable, Optional

from ssmdiag.platform import process
from ssmdiag.platform.base import FileRead, read_text_file

if sys.platform == "win32":
    import winreg

    import win32api
    import win32evtlog
    import win32evtlogutil
    import win32net
    import win32security
    import win32service

    _HIVES = {"HKLM": winreg.HKEY_LOCAL_MACHINE, "HKU": winreg.HKEY_USERS}
    _FILE_READ_ONLY_VOLUME = 0x00080000  # GetVolumeInformation's file system flags
    _START = {2: "auto", 3: "demand", 4: "disabled", 0: "boot", 1: "system"}
    _STATE = {
        1: "stopped",
        2: "start-pending",
        3: "stop-pending",
        4: "running",
        5: "continue-pending",
        6: "pause-pending",
        7: "paused",
    }

    class Win32Api:
        def _open(self, key: str) -> Any:
            hive, _, path = key.partition("\\")
            return winreg.OpenKey(_HIVES[hive], path, 0, winreg.KEY_READ)

        def registry_value(self, key: str, name: str) -> Any:
            try:
                with self._open(key) as handle:
                    return winreg.QueryValueEx(handle, name)[0]
            except OSError:
                return None

        def registry_values(self, key: str) -> Optional[dict[str, Any]]:
            try:
                with self._open(key) as handle:
                    values: dict[str, Any] = {}
                    index = 0
                    while True:
                        try:
                            name, value, _ = winreg.EnumValue(handle, index)
                        except OSError:
                            return values
                        values[name] = value
                        index += 1
            except OSError:
                return None

        def service(self, name: str) -> Optional[dict[str, Any]]:
            try:
                manager = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_CONNECT)
                try:
                    handle = win32service.OpenService(
                        manager,
                        name,
                        win32service.SERVICE_QUERY_CONFIG | win32service.SERVICE_QUERY_STATUS,
                    )
                    try:
                        config = win32service.QueryServiceConfig(handle)
                        status = win32service.QueryServiceStatusEx(handle)
                        delayed = win32service.QueryServiceConfig2(
                            handle, win32service.SERVICE_CONFIG_DELAYED_AUTO_START_INFO
                        )
                    finally:
                        win32service.CloseServiceHandle(handle)
                finally:
                    win32service.CloseServiceHandle(manager)
            except Exception:  # pywintypes.error: not installed or no access
                return None
            start = _START.get(config[1], str(config[1]))
            if start == "auto" and delayed:
                start = "delayed-auto"
            return {
                "state": _STATE.get(status["CurrentState"], "unknown"),
                "start_type": start,
                "account": config[7],
                "pid": status.get("ProcessId") or None,
            }

        def local_user(self, name: str) -> Optional[dict[str, Any]]:
            try:
                info = win32net.NetUserGetInfo(None, name, 1)
                sid, _, _ = win32security.LookupAccountName(None, name)
            except Exception:  # NERR_UserNotFound
                return None
            disabled = bool(info["flags"] & 0x0002)  # UF_ACCOUNTDISABLE
            return {"sid": win32security.ConvertSidToStringSid(sid), "enabled": not disabled}

        def group_member_sids(self, group_sid: str) -> list[str]:
            sid = win32security.ConvertStringSidToSid(group_sid)
            group, _, _ = win32security.LookupAccountSid(None, sid)  # localized group name
            members, _, _ = win32net.NetLocalGroupGetMembers(None, group, 0)
            return [win32security.ConvertSidToStringSid(m["sid"]) for m in members]

        def domain_group_member_names(self, group: str) -> Optional[list[str]]:
            try:
                members, _, _ = win32net.NetGroupGetUsers(None, group, 0)
            except Exception:
                return None
            return [m["name"] for m in members]

        def domain_role(self) -> int:
            # DsRoleGetPrimaryDomainInformation is not in pywin32; WMI's DomainRole is the
            # same number. PowerShell without a profile is the least surprising route.
            result = process.run(
                [
                    "powershell.exe",
                    "-NoProfile",
                    "-NonInteractive",
                    "-Command",
                    "(Get-CimInstance Win32_ComputerSystem).DomainRole",
                ],
                timeout=15,
            )
            try:
                return int(result.stdout.strip())
            except ValueError:
                return -1

        def hostname(self) -> str:
            return socket.gethostname()

        def read_file(self, path: str) -> FileRead:
            return read_text_file(path)

        def exists(self, path: str) -> bool:
            return os.path.exists(path)

        def run(self, argv: list[str], timeout: float) -> process.ProcResult:
            return process.run(argv, timeout)

        def environ(self, name: str) -> Optional[str]:
            return os.environ.get(name)

        def disk_free(self, path: str) -> Optional[dict[str, Any]]:
            try:
                volume = win32api.GetVolumePathName(path)
                available, total, free = win32api.GetDiskFreeSpaceEx(path)
                _, _, _, flags, filesystem = win32api.GetVolumeInformation(volume)
            except Exception:  # pywintypes.error: no such volume, not ready, denied
                return None
            return {
                "volume": volume,
                "total": int(total),
                "free": int(free),
                "available": int(available),
                "filesystem": filesystem,
                "read_only": bool(flags & _FILE_READ_ONLY_VOLUME),
            }

    _EVENT_TYPES = {
        "info": win32evtlog.EVENTLOG_INFORMATION_TYPE,
        "warning": win32evtlog.EVENTLOG_WARNING_TYPE,
        "error": win32evtlog.EVENTLOG_ERROR_TYPE,
    }

    def event_log_writer() -> Callable[[int, str, Sequence[str]], None]:
        """Application log, source ssmdiag (registered by the MSI)."""

        def write(event_id: int, event_type: str, strings: Sequence[str]) -> None:
            win32evtlogutil.ReportEvent(
                "ssmdiag",
                event_id,
                eventType=_EVENT_TYPES.get(event_type, win32evtlog.EVENTLOG_INFORMATION_TYPE),
                strings=list(strings),
            )

        return write

    # Who may do what in %ProgramData%\ssmdiag: SYSTEM and Administrators everything,
    # Users read (the service, as LocalSystem, executes what its config names).
    _DATA_DIR_ACES = (
        ("S-1-5-18", 0x1F01FF),  # LocalSystem: FILE_ALL_ACCESS
        ("S-1-5-32-544", 0x1F01FF),  # Administrators: FILE_ALL_ACCESS
        ("S-1-5-32-545", 0x1200A9),  # Users: FILE_GENERIC_READ | FILE_GENERIC_EXECUTE
    )

    def protect_directory(path: str) -> None:
        """Replace the directory's DACL with _DATA_DIR_ACES, inherited by its contents and
        protected from ProgramData's (which lets every user create files there)."""
        dacl = win32security.ACL()
        inherit = win32security.OBJECT_INHERIT_ACE | win32security.CONTAINER_INHERIT_ACE
        for sid, mask in _DATA_DIR_ACES:
            dacl.AddAccessAllowedAceEx(
                win32security.ACL_REVISION_DS,
                inherit,
                mask,
                win32security.ConvertStringSidToSid(sid),
            )
        win32security.SetNamedSecurityInfo(
            path,
            win32security.SE_FILE_OBJECT,
            win32security.DACL_SECURITY_INFORMATION
            | win32security.PROTECTED_DACL_SECURITY_INFORMATION,
            None,
            None,
            dacl,
            None,
        )
