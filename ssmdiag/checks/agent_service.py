"""agent.service: is the agent's service running now, and will it start at boot?"""

from __future__ import annotations

from ssmdiag.checks.base import Check, Context
from ssmdiag.report import Finding, fail, ok, skip, warn


def _start_command(manager: str | None, name: str | None) -> str:
    if manager == "systemd":
        return f"sudo systemctl enable --now {name}"
    if manager == "upstart":
        return f"sudo start {name}"
    if manager == "launchd":
        return f"sudo launchctl load -w /Library/LaunchDaemons/{name}.plist"
    if manager == "scm":
        return f"Set-Service {name} -StartupType Automatic; Start-Service {name}"
    return "start the agent's service"


def run(ctx: Context) -> Finding:
    service = ctx.platform.agent_service()
    processes = ctx.agent.discovery.processes
    details = {
        "manager": service.manager,
        "name": service.name,
        "state": service.state_text,
        "enabled": service.enabled,
        "main_pid": service.main_pid,
        "note": service.note or None,
        "agent_pids": [p.pid for p in processes],
    }
    if not ctx.agent.installed:
        return skip("SSM Agent is not installed (see agent.installed)", details)
    if service.manager is None:
        if processes:
            return warn(
                f"SSM Agent runs (pid {processes[0].pid}) but no service manager was found "
                f"({service.note}): nothing restarts it after a crash or a reboot",
                "Run the agent under the system's service manager (systemd unit "
                "amazon-ssm-agent.service) so it starts at boot.",
                details,
            )
        return fail(
            f"SSM Agent is not running and no service manager was found ({service.note})",
            "Start the agent (`sudo amazon-ssm-agent &` at the least) and run it under the "
            "system's service manager so it starts at boot.",
            details,
        )
    fix = _start_command(service.manager, service.name)
    if not service.exists:
        return fail(
            f"no {service.manager} service for SSM Agent ({service.note or service.state_text})",
            f"Reinstall the agent package so it installs its service, then `{fix}`.",
            details,
        )
    if not service.active:
        return fail(
            f"{service.name} is not running: {service.state_text}",
            f"`{fix}`; "
            # The macOS agent logs where the Linux one does (agent/log/logger/log_darwin.go:32).
            "if it stops again, read its log (Linux and macOS /var/log/amazon/ssm/, "
            "Windows %ProgramData%\\Amazon\\SSM\\Logs; `ssmdiag check --only agent.log` "
            "classifies it).",
            details,
        )
    if service.enabled is False:
        return warn(
            f"{service.name} runs but will not start at boot: {service.state_text}",
            f"`{fix}`",
            details,
        )
    return ok(f"{service.name} is {service.state_text}", details)


CHECK = Check("agent.service", "SSM Agent service", run, needs=("agent",))
