"""os.supported: is this operating system one Session Manager supports?"""

from __future__ import annotations

from ssmdiag.checks.base import Check, Context
from ssmdiag.report import Finding, ok


def run(ctx: Context) -> Finding:
    info = ctx.os
    details = {"family": info.family, "name": info.name, "version": info.version, **info.details}
    if info.family == "linux":
        kernel = info.details.get("kernel", "unknown kernel")
        return ok(f"{info.name} {info.version} (kernel {kernel}): Linux is supported", details)
    return ok(f"{info.name} {info.version}", details)


CHECK = Check("os.supported", "Operating system supported", run, needs=("os",))
