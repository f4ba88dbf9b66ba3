"""Which operating systems Session Manager supports: data, in one place.

Source: session-manager-prerequisites.md section 4 (Windows Server 2012 through 2025,
not 2016 Nano Server; Linux and macOS: every version Systems Manager supports).
"""

from __future__ import annotations

# Windows Server releases by build number (CurrentBuild in the registry).
WINDOWS_SERVER_BUILDS: tuple[tuple[int, str], ...] = (
    (26100, "Windows Server 2025"),
    (20348, "Windows Server 2022"),
    (17763, "Windows Server 2019"),
    (14393, "Windows Server 2016"),
    (9600, "Windows Server 2012 R2"),
    (9200, "Windows Server 2012"),
)
OLDEST_SUPPORTED_WINDOWS_BUILD = 9200
# Supported by Session Manager but past Microsoft's end of support.
WINDOWS_PAST_END_OF_SUPPORT = ("Windows Server 2012", "Windows Server 2012 R2")


def windows_server_release(build: int) -> str | None:
    for first_build, name in WINDOWS_SERVER_BUILDS:
        if build >= first_build:
            return name
    return None
