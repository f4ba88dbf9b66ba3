"""A fake WindowsApi fed by captured data (tests/data/windows/*.json): registry values as
winreg returns them, services as the SCM reports them, command output as printed (a
command's entry is its stdout, or {"stdout": ..., "returncode": N} for one that fails),
volumes as GetDiskFreeSpaceEx/GetVolumeInformation return them ("volumes": {"C:\\": {...}})
and directories that exist ("dirs")."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Optional

from ssmdiag.platform.base import FileRead
from ssmdiag.platform.process import ProcResult

DATA = Path(__file__).resolve().parent.parent / "data" / "windows"


class FakeWindowsApi:
    def __init__(self, fixture: str = "server2022-dc.json") -> None:
        self.data: dict[str, Any] = copy.deepcopy(json.loads((DATA / fixture).read_text()))
        self.commands_run: list[list[str]] = []

    # scenario helpers ----------------------------------------------------------------
    def set_value(self, key: str, name: str, value: Any) -> None:
        self.data["registry"].setdefault(key, {})[name] = value

    def add_user(
        self, name: str, sid: str, enabled: bool, admin: bool = False, domain_admin: bool = False
    ) -> None:
        self.data["users"][name] = {"sid": sid, "enabled": enabled}
        if admin:
            self.data["groups"]["S-1-5-32-544"].append(sid)
        if domain_admin:
            self.data["domain_groups"]["Domain Admins"].append(f"CORP\\{name}")

    # WindowsApi ----------------------------------------------------------------------
    def registry_value(self, key: str, name: str) -> Any:
        return self.data["registry"].get(key, {}).get(name)

    def registry_values(self, key: str) -> Optional[dict[str, Any]]:
        values = self.data["registry"].get(key)
        return dict(values) if values is not None else None

    def service(self, name: str) -> Optional[dict[str, Any]]:
        service = self.data["services"].get(name)
        return dict(service) if service is not None else None

    def local_user(self, name: str) -> Optional[dict[str, Any]]:
        for user, info in self.data["users"].items():
            if user.lower() == name.lower():
                return dict(info)
        return None

    def group_member_sids(self, group_sid: str) -> list[str]:
        return list(self.data["groups"].get(group_sid, []))

    def domain_group_member_names(self, group: str) -> Optional[list[str]]:
        members = self.data["domain_groups"].get(group)
        return list(members) if members is not None else None

    def domain_role(self) -> int:
        return int(self.data["domain_role"])

    def hostname(self) -> str:
        return str(self.data["hostname"])

    def read_file(self, path: str) -> FileRead:
        text = self.data.get("file_texts", {}).get(path)
        if text is None:
            return FileRead(path, "missing", message="does not exist")
        return FileRead(path, "ok", text)

    def exists(self, path: str) -> bool:
        if path in self.data["files"] or path in self.data.get("file_texts", {}):
            return True
        dirs = {d.lower().rstrip("\\") for d in self.data.get("dirs", [])}
        return path.lower().rstrip("\\") in dirs or any(
            d.startswith(path.lower().rstrip("\\") + "\\") for d in dirs
        )

    def run(self, argv: list[str], timeout: float) -> ProcResult:
        self.commands_run.append(list(argv))
        output = self.data["commands"].get(" ".join(argv))
        if output is None:
            return ProcResult(tuple(argv), "not_found", message="not found")
        if isinstance(output, dict):
            code = int(output.get("returncode", 0))
            return ProcResult(
                tuple(argv), "ok" if code == 0 else "nonzero", code, output.get("stdout", "")
            )
        return ProcResult(tuple(argv), "ok", 0, output)

    def disk_free(self, path: str) -> Optional[dict[str, Any]]:
        volumes = self.data.get("volumes", {})
        # GetVolumePathName: the longest volume mount point above the path.
        folder = path.lower().rstrip("\\") + "\\"
        matches = [v for v in volumes if folder.startswith(v.lower())]
        if not matches:
            return None
        volume = max(matches, key=len)
        return {"volume": volume, **volumes[volume]}

    def environ(self, name: str) -> Optional[str]:
        value = self.data["environ"].get(name)
        return str(value) if value is not None else None
