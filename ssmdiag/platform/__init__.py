"""Choose the platform once, at start-up (the factory, as in WALinuxAgent's osutil/factory.py).

One module per OS family behind `base.Platform`: linux.py, macos.py, windows.py
(with windows_api.py, the pywin32 boundary, imported only on Windows).
"""

from __future__ import annotations

import sys
from typing import Optional

from ssmdiag.config import Config
from ssmdiag.platform.base import Platform


class UnsupportedPlatform(Exception):
    pass


def detect(config: Config, system: Optional[str] = None) -> Platform:
    system = system or sys.platform
    if system.startswith("linux"):
        if sys.platform != "win32":  # linux.py uses pwd/grp, which Windows lacks
            from ssmdiag.platform.linux import LinuxPlatform

            return LinuxPlatform(config)
        raise UnsupportedPlatform("the Linux platform module cannot run on Windows")
    if system == "darwin":
        from ssmdiag.platform.macos import MacPlatform

        return MacPlatform(config)
    if system == "win32":
        from ssmdiag.platform.windows import WindowsPlatform

        return WindowsPlatform(config)
    raise UnsupportedPlatform(f"ssmdiag does not run on {system!r}: Linux, macOS and Windows only")
