"""agent.installed: is there an SSM Agent, which version, and do its sources agree?"""

from __future__ import annotations

from ssmdiag.agent import AgentFacts
from ssmdiag.checks.base import Check, Context
from ssmdiag.report import Finding, error, fail, ok, warn

INSTALL_HELP = {
    "linux": "Install SSM Agent: `sudo dnf install -y amazon-ssm-agent` (Amazon Linux, RHEL), "
    "`sudo snap install amazon-ssm-agent --classic` (Ubuntu); other systems: "
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/manually-install-ssm-agent-linux.html",
    "macos": "Install SSM Agent: download the macOS package from "
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/manually-install-ssm-agent-macos.html"
    " and `sudo installer -pkg amazon-ssm-agent.pkg -target /`.",
    "windows": "Install SSM Agent: download AmazonSSMAgentSetup.exe (see "
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/manually-install-ssm-agent-windows.html)"
    " and run `AmazonSSMAgentSetup.exe /install /quiet` as Administrator.",
}
RESTART = {
    "linux": "`sudo systemctl restart amazon-ssm-agent` "
    "(snap: `sudo snap restart amazon-ssm-agent`)",
    "macos": "`sudo launchctl kickstart -k system/com.amazon.aws.ssm`",
    "windows": "`Restart-Service AmazonSSMAgent`",
}


def _disagreement(facts: AgentFacts, family: str) -> Finding | None:
    running = {v for kind, _, v in facts.parsed if kind == "process"}
    on_disk = {v for kind, _, v in facts.parsed if kind != "process"}
    replaced = [p for p in facts.discovery.processes if p.exe_replaced]
    said = "; ".join(f"{label} says {version}" for _, label, version in facts.parsed)
    if (running and on_disk and running != on_disk) or replaced:
        return warn(
            "the running SSM Agent is not the installed one "
            f"({said or 'binary replaced on disk'}): it was upgraded but not restarted",
            f"Restart the agent so the installed version runs: {RESTART.get(family, '')}.",
        )
    if len(on_disk) > 1:
        return warn(
            f"SSM Agent sources disagree ({said}): "
            "the binary was changed outside the package manager",
            "Reinstall the agent with its installer or package manager so the binary and the "
            "package records agree (for example `sudo dnf reinstall amazon-ssm-agent`).",
        )
    return None


def run(ctx: Context) -> Finding:
    facts = ctx.agent
    discovery = facts.discovery
    details = {
        "version": str(facts.version) if facts.version else None,
        "version_source": facts.version_source,
        "binary": discovery.binary_path,
        "sources": [
            {
                "source": r.source,
                "state": r.state,
                "version": r.version_text,
                "note": r.note or None,
            }
            for r in discovery.readings
        ],
        "processes": [
            {
                "pid": p.pid,
                "exe": p.exe,
                "user": p.user,
                "version": p.version.version_text,
                "binary_replaced": p.exe_replaced,
            }
            for p in discovery.processes
        ],
    }
    if not facts.installed:
        return fail(
            "SSM Agent is not installed (no binary, package or process found)",
            INSTALL_HELP.get(ctx.platform.family, INSTALL_HELP["linux"]),
            details,
        )
    if facts.version is None:
        return error(
            f"SSM Agent found but its version cannot be read: {facts.version_error}",
            "Run `amazon-ssm-agent -version` by hand; reinstall the agent if it fails.",
            details,
        )
    mismatch = _disagreement(facts, ctx.platform.family)
    if mismatch is not None:
        mismatch.details = details
        return mismatch
    running = f", running as pid {discovery.processes[0].pid}" if discovery.processes else ""
    return ok(f"SSM Agent {facts.version} installed ({facts.version_source}){running}", details)


CHECK = Check("agent.installed", "SSM Agent installed", run, needs=("agent",))
