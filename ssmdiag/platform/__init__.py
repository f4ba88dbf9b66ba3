"""Choose the platform once, at start-up (the factory, as in WALinuxAgent's osutil/factory.py).

Seats: linux is implemented; macos (`platform/macos.py`) and windows
(`platform/windows.py`) arrive with issue 4 and are refused plainly until then,
rather than pretending with empty answers.
"""

from __future__ import annotations

import sys
from typing import Optional

from ssmdiag.config import Config
from ssmdiag.platform.base import Platform

_PLANNED = {"darwin": "macOS", "win32": "Windows"}


class UnsupportedPlatform(Exception):
    pass


def detect(config: Config, system: Optional[str] = None) -> Platform:
    system = system or sys.platform
    if system.startswith("linux"):
        from ssmdiag.platform.linux import LinuxPlatform

        return LinuxPlatform(config)
    if system in _PLANNED:
        raise UnsupportedPlatform(
            f"ssmdiag does not support {_PLANNED[system]} yet: its platform module is not "
            "written. Run ssmdiag on Linux, or use a release that lists "
            f"{_PLANNED[system]} support."
        )
    raise UnsupportedPlatform(f"ssmdiag does not run on {system!r}: Linux, macOS and Windows only")
