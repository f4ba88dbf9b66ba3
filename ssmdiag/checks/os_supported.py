"""os.supported: is this operating system one Session Manager supports?"""

from __future__ import annotations

from ssmdiag.checks.base import Check, Context
from ssmdiag.os_support import (
    OLDEST_SUPPORTED_WINDOWS_BUILD,
    WINDOWS_PAST_END_OF_SUPPORT,
    windows_server_release,
)
from ssmdiag.platform.base import OsInfo
from ssmdiag.report import Finding, fail, ok, warn


def _windows(info: OsInfo, details: dict[str, str]) -> Finding:
    installation = info.details.get("installation_type", "")
    try:
        build = int(info.details.get("build", ""))
    except ValueError:
        build = 0
    release = windows_server_release(build)
    details["release"] = release or "unknown"
    if installation.lower() == "nano server":
        return fail(
            f"{info.name} is Nano Server (build {build}): Session Manager does not "
            "support Windows Server 2016 Nano Server",
            "Use a Server or Server Core installation of Windows Server 2016 or later.",
            details,
        )
    if installation.lower() == "client":
        return warn(
            f"{info.name} (build {build}) is a client edition: Session Manager "
            "documents Windows Server 2012 through 2025",
            "Expect it to work but it is not a documented platform; use Windows "
            "Server for supported nodes.",
            details,
        )
    if 0 < build < OLDEST_SUPPORTED_WINDOWS_BUILD:
        return fail(
            f"{info.name} (build {build}) is older than Windows Server 2012",
            "Upgrade to Windows Server 2016 or later.",
            details,
        )
    text = f"{info.name} ({release or 'build ' + str(build)}, {installation or 'Server'})"
    if release in WINDOWS_PAST_END_OF_SUPPORT:
        return ok(
            text + ": supported by Session Manager, but past Microsoft's end of support", details
        )
    return ok(text + ": supported", details)


def run(ctx: Context) -> Finding:
    info = ctx.os
    details = {"family": info.family, "name": info.name, "version": info.version, **info.details}
    if info.family == "windows":
        return _windows(info, details)
    if info.family == "linux":
        kernel = info.details.get("kernel", "unknown kernel")
        return ok(f"{info.name} {info.version} (kernel {kernel}): Linux is supported", details)
    return ok(f"{info.name} {info.version}: macOS is supported", details)


CHECK = Check("os.supported", "Operating system supported", run, needs=("os",))
