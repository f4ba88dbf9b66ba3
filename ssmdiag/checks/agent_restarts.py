"""agent.restarts: does the agent keep crashing, and does anything restart it when it does?

The service manager's own record: systemd's NRestarts, Result and the start time of the
main process; launchd's `runs` and last exit; on Windows only the recovery actions (the
service control manager does not count restarts). The agent's packaged services restart
it after every exit: Restart=always, RestartSec=90 (packaging/linux/amazon-ssm-agent.service:
16-18), KeepAlive (packaging/darwin/com.amazon.aws.ssm.plist), and `sc failure ...
actions= restart/30000/restart/30000/restart/30000`
(agent/setupcli/managers/packagemanagers/windowsmanager.go:227).
"""

from __future__ import annotations

from typing import Any

from ssmdiag import node_limits
from ssmdiag.checks.base import Check, Context
from ssmdiag.platform.base import RestartHistory
from ssmdiag.report import Finding, error, fail, ok, skip, warn

ERRORS_LOG = "errors.log"  # ErrorFile, agent/log/logger/log.go:27


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _read_logs(history: RestartHistory, log_dir: str) -> str:
    """Where the agent says why it exits."""
    if history.manager == "scm":
        return (
            f"Read why it stops in {log_dir}\\{ERRORS_LOG} and the System event log "
            "(`Get-WinEvent -FilterHashtable @{LogName='System'; "
            "ProviderName='Service Control Manager'} -MaxEvents 20`)"
        )
    journal = (
        f" and `sudo journalctl -u {history.name} -n 100 --no-pager`"
        if history.manager == "systemd"
        else ""
    )
    return f"Read why it exits: `sudo tail -n 50 {log_dir}/{ERRORS_LOG}`{journal}"


def _restart_command(history: RestartHistory) -> str:
    if history.manager == "systemd":
        return (
            f"`sudo systemctl reset-failed {history.name} && sudo systemctl restart {history.name}`"
        )
    if history.manager == "launchd":
        return f"`sudo launchctl kickstart -k system/{history.name}`"
    if history.manager == "scm":
        return f"`Restart-Service {history.name}`"
    return "restart the agent"


def _enable_recovery(history: RestartHistory) -> str:
    if history.manager == "systemd":
        return (
            f"Have systemd restart it as the agent's own unit does: `sudo systemctl edit "
            f"{history.name}` and add `[Service]` `Restart=always` `RestartSec=90`, then "
            f"`sudo systemctl restart {history.name}`."
        )
    if history.manager == "launchd":
        return (
            f"Restore KeepAlive in /Library/LaunchDaemons/{history.name}.plist (reinstall the "
            f"agent's package), then `sudo launchctl bootout system/{history.name}; sudo "
            f"launchctl bootstrap system /Library/LaunchDaemons/{history.name}.plist`."
        )
    return (
        f"Set the recovery actions the agent's installer sets: `sc.exe failure {history.name} "
        f"reset= 86400 actions= restart/30000/restart/30000/restart/30000`."
    )


def _details(history: RestartHistory) -> dict[str, Any]:
    return {
        "manager": history.manager,
        "name": history.name,
        "state": history.state_text or None,
        "restarts": history.restarts,
        "restarts_since": history.restarts_since or None,
        "last_start": history.last_start_text or None,
        "last_start_age_seconds": round(history.last_start_age_s)
        if history.last_start_age_s is not None
        else None,
        "result": history.result or None,
        "last_exit": history.last_exit or None,
        "waiting_to_restart": history.waiting_to_restart,
        "restarts_on_failure": history.restarts_on_failure,
        "recovery": history.recovery or None,
        "note": history.note or None,
        "crash_loop_rule": f">= {node_limits.CRASH_LOOP_RESTARTS} restarts and the last "
        f"start within {node_limits.CRASH_LOOP_WINDOW_S // 60} min (or waiting to restart)",
    }


def run(ctx: Context) -> Finding:
    history = ctx.platform.agent_restarts()
    details = _details(history)
    if not ctx.agent.installed:
        return skip("SSM Agent is not installed (see agent.installed)", details)
    if history.outcome == "no_manager":
        return skip(
            f"no service manager runs the agent ({history.note or 'none found'}): nothing "
            "restarts it and nothing counts restarts (see agent.service)",
            details,
        )
    if history.outcome == "not_found":
        return skip(f"no service for the agent ({history.note}): see agent.service", details)
    if history.outcome == "unsupported":
        return skip(f"{history.manager} keeps no restart history: {history.note}", details)
    if history.outcome != "ok":
        return error(
            f"could not ask {history.manager} about {history.name}: {history.note}",
            "Run ssmdiag as root; if the service manager itself does not answer, see "
            "agent.service.",
            details,
        )
    log_dir = ctx.platform.agent_paths().log_dir
    read = _read_logs(history, log_dir)
    restart = _restart_command(history)
    count = history.restarts
    age = history.last_start_age_s
    exited = f" (last exit: {history.last_exit})" if history.last_exit else ""
    since = f" {history.restarts_since}" if history.restarts_since else ""
    if history.gave_up:
        return fail(
            f"{history.name} stopped restarting: it failed too often in a row "
            f"(Result={history.result}){exited}; the agent is down",
            f"{read}; fix what it reports (see also agent.config and node.disk), then {restart}.",
            details,
        )
    recent = age is not None and age < node_limits.CRASH_LOOP_WINDOW_S
    if (
        count is not None
        and count >= node_limits.CRASH_LOOP_RESTARTS
        and (recent or history.waiting_to_restart)
    ):
        when = (
            "it is waiting to be started again"
            if history.waiting_to_restart
            else f"the last start was {_minutes(age or 0)} ago"
        )
        return fail(
            f"{history.name} is in a crash loop: restarted {count} times{since}, {when}"
            f"{exited}; sessions drop at every restart",
            f"{read}; fix what it reports (see also agent.config and node.disk), then {restart}.",
            details,
        )
    if history.waiting_to_restart:
        return warn(
            f"{history.name} exited{exited} and {history.manager} will start it again "
            f"({history.recovery or 'automatic restart'}); restarted {count or 0} times{since}",
            f"{read}; if it keeps exiting, fix what it reports, then {restart}.",
            details,
        )
    if history.running is False and history.result not in ("", "success"):
        return fail(
            f"{history.name} stopped after a failure (Result={history.result}){exited} and "
            "was not restarted",
            f"{read}; fix what it reports, then {restart}.",
            details,
        )
    if history.restarts_on_failure is False:
        return warn(
            f"{history.name} is not restarted after every crash "
            f"({history.recovery or 'no automatic restart configured'}): a crash can leave "
            "the node without Session Manager",
            _enable_recovery(history),
            details,
        )
    if count:
        when = f"; the last start was {_minutes(age)} ago" if age is not None else ""
        return warn(
            f"{history.name} was restarted {count} times{since}{exited}{when}: the agent "
            "exits on its own",
            f"{read}; fix what it reports so the agent stops exiting.",
            details,
        )
    if count is None:
        uncounted = f" ({history.note})" if history.note else ""
        return ok(
            f"{history.name} is {history.state_text}; restarts are not counted here"
            f"{uncounted}; on a crash: {history.recovery or 'unknown'}",
            details,
        )
    if history.running is False:
        running = f"not running now: {history.state_text} (see agent.service)"
    elif age is not None:
        running = f"running for {_minutes(age)}"
    else:
        running = "running"
    return ok(
        f"{history.name} never restarted{since}, {running}; on a crash: "
        f"{history.recovery or 'unknown'}",
        details,
    )


CHECK = Check("agent.restarts", "SSM Agent restarts", run, needs=("agent",))
