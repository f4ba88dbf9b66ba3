"""The daemon's memory across restarts: the last announced statuses, in the state directory.

A restart (upgrade, reboot, crash) must not re-announce every check, so the
last statuses are kept in `<state_dir>/last-status.json`, written atomically.
A missing, unreadable or corrupt file means "nothing known": the daemon
announces everything once, says why, and keeps the bad file for inspection.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Optional

from ssmdiag.health import HealthState
from ssmdiag.safeio import loads_json, read_text, write_atomic

STATE_FILE = "last-status.json"
_FORMAT = 1
MAX_STATE_BYTES = 1024 * 1024


def default_state_dir(environ: Mapping[str, str]) -> str:
    # systemd's StateDirectory= says where; otherwise the OS convention.
    if environ.get("STATE_DIRECTORY"):
        return environ["STATE_DIRECTORY"].split(":")[0]
    if sys.platform == "win32":
        return os.path.join(environ.get("PROGRAMDATA", r"C:\ProgramData"), "ssmdiag", "state")
    return "/var/lib/ssmdiag"


class StateStore:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, STATE_FILE)

    def load(self) -> tuple[HealthState, Optional[str]]:
        """The saved state, and a problem description when it could not be used."""
        read = read_text(self.path, MAX_STATE_BYTES)
        if read.outcome == "missing":
            return HealthState(), None
        if read.outcome not in ("ok", "not_regular"):
            return HealthState(), f"cannot read {self.path}: {read.message}"
        try:
            if read.outcome == "not_regular" or read.truncated:
                raise ValueError(read.message)
            data = loads_json(read.data.decode("utf-8"))
            if not isinstance(data, dict) or data.get("format") != _FORMAT:
                raise ValueError(f"not a format-{_FORMAT} ssmdiag state file")
            return HealthState.from_dict(data), None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # Any shape the file may have taken (hand edits, a full disk, another program).
            kept = self.path + ".corrupt"
            try:
                os.replace(self.path, kept)
            except OSError:
                kept = self.path
            return HealthState(), f"ignored {self.path} ({exc}); kept as {kept}"

    def save(self, state: HealthState) -> None:
        """Write atomically; raises OSError (disk full, read-only) for the caller to report."""
        os.makedirs(self.directory, mode=0o750, exist_ok=True)
        body = json.dumps({"format": _FORMAT, **state.to_dict()}, sort_keys=True).encode()
        write_atomic(self.path, body, 0o640)  # the old state stays if this fails
