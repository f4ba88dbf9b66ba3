"""agent.process_user: does the running agent run as root (Linux, macOS) or LocalSystem (Windows)?

The rule is ssm-cli get-diagnostics' own "Agent service" check: it asks which user runs
the agent process and fails when it is not the expected one
(agent/cli/diagnostics/service_check.go:53-68, tag 3.3.1142.0). The expected user is
"root" on Linux and macOS (agent/cli/diagnosticsutil/diagnosticsutil_unix.go:35,
diagnosticsutil_darwin.go:30, read with `ps -o user=`, diagnosticsutil_unix.go:88) and
"NT AUTHORITY\\SYSTEM" on Windows (diagnosticsutil_windows.go:36, read with
`Get-Process -IncludeUserName`, :308). The service manager names that same account
"LocalSystem", so every spelling of it is accepted here.
"""

from __future__ import annotations

from typing import Any, Optional

from ssmdiag.checks.base import Check, Context
from ssmdiag.platform.base import AgentProcess
from ssmdiag.report import Finding, error, fail, ok, skip

EXPECTED = {"linux": "root", "macos": "root", "windows": "LocalSystem"}

# Spellings of LocalSystem (SID S-1-5-18): the SCM's service account name ("LocalSystem",
# ".\LocalSystem"), the process token as Get-Process / Task Manager show it
# ("NT AUTHORITY\SYSTEM", "SYSTEM"), and the SID itself. Compared case-insensitively.
LOCAL_SYSTEM_NAMES = frozenset(
    {
        "localsystem",
        ".\\localsystem",
        "nt authority\\localsystem",
        "system",
        "nt authority\\system",
        "s-1-5-18",
    }
)

WHY = {
    "linux": "as another user the agent cannot store its identity in its vault (it logs "
    "'Try running as sudo/administrator.'), create ssm-user or its sudo rule, or start "
    "sessions as other users",
    "macos": "as another user the agent cannot store its identity, create ssm-user or start "
    "sessions as other users",
    "windows": "as another account the agent cannot manage ssm-user or start sessions",
}
FIX = {
    "linux": "Run the agent as root, as its package installs it: remove `User=`/`Group=` from "
    "amazon-ssm-agent.service and its drop-ins (`systemctl cat amazon-ssm-agent`), then "
    "`sudo systemctl daemon-reload && sudo systemctl restart amazon-ssm-agent` (snap: "
    "`sudo snap restart amazon-ssm-agent`); if you started it by hand, stop pid {pid} and "
    "start it with sudo.",
    "macos": "Run the agent as root: remove the UserName key from "
    "/Library/LaunchDaemons/com.amazon.aws.ssm.plist, then `sudo launchctl bootout "
    "system/com.amazon.aws.ssm; sudo launchctl bootstrap system "
    "/Library/LaunchDaemons/com.amazon.aws.ssm.plist`.",
    "windows": "Run the service as LocalSystem (as elevated PowerShell): "
    "`sc.exe config AmazonSSMAgent obj= LocalSystem; Restart-Service AmazonSSMAgent`.",
}


def runs_as_expected(family: str, process: AgentProcess) -> Optional[bool]:
    """True/False when the user is known; None when it is not."""
    if family == "windows":
        if not process.user:
            return None
        return process.user.strip().lower() in LOCAL_SYSTEM_NAMES
    if process.uid is not None:
        return process.uid == 0
    if not process.user:
        return None
    return process.user == "root"


def run(ctx: Context) -> Finding:
    facts = ctx.agent
    family = ctx.platform.family
    expected = EXPECTED.get(family, "root")
    processes = facts.discovery.processes
    details: dict[str, Any] = {
        "expected_user": expected,
        "processes": [{"pid": p.pid, "user": p.user, "uid": p.uid} for p in processes],
    }
    if not facts.installed:
        return skip("SSM Agent is not installed (see agent.installed)", details)
    if not processes:
        return skip(
            "SSM Agent is not running, so there is no process user to judge (see agent.service)",
            details,
        )
    verdicts = [(p, runs_as_expected(family, p)) for p in processes]
    wrong = [p for p, good in verdicts if good is False]
    if wrong:
        first = wrong[0]
        who = first.user if first.user else f"uid {first.uid}"
        return fail(
            f"SSM Agent (pid {first.pid}) runs as {who}, not {expected}: "
            f"{WHY.get(family, WHY['linux'])}",
            FIX.get(family, FIX["linux"]).format(pid=first.pid),
            details,
        )
    unknown = [p for p, good in verdicts if good is None]
    if unknown:
        return error(
            f"cannot tell which user runs SSM Agent (pid {unknown[0].pid})",
            "Run ssmdiag as root (Windows: as Administrator) so it can see the agent's process.",
            details,
        )
    users = sorted({p.user or str(p.uid) for p in processes})
    pids = ", ".join(str(p.pid) for p in processes)
    return ok(f"SSM Agent (pid {pids}) runs as {', '.join(users)}, as it must", details)


CHECK = Check("agent.process_user", "SSM Agent process user", run, needs=("agent",))
