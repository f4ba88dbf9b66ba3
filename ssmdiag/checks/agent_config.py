"""agent.config: would the agent accept its amazon-ssm-agent.json? If not, it does not start.

Judged with the agent's own rules (ssmdiag/agent_config.py): Go's encoding/json over the
agent's struct types, then its parser. A refused file stops the agent at start-up: it
logs "app config could not be loaded" (core/app/bootstrap/bootstrap.go:67-69).
"""

from __future__ import annotations

from typing import Any

from ssmdiag.agent import AgentConfigFacts
from ssmdiag.checks.agent_installed import RESTART
from ssmdiag.checks.base import Check, Context
from ssmdiag.report import Finding, error, fail, ok, warn

AGENT_LOG_LINE = "app config could not be loaded"


def run(ctx: Context) -> Finding:
    facts: AgentConfigFacts = ctx.fact("agent_config")
    path = facts.path
    details: dict[str, Any] = {"path": path, "path_source": facts.path_source}
    if facts.path_note:
        details["path_reason"] = facts.path_note
    restart = "restart the agent: " + RESTART.get(ctx.platform.family, RESTART["linux"])
    finding = _judge(facts, details, restart)
    if facts.ignored_file and finding.status.value == "ok":
        # Someone put a relocated config in place and the agent does not read it.
        details["ignored_file"] = facts.ignored_file
        return warn(
            f"the agent ignores {facts.ignored_file} and reads {path}: {facts.path_note}",
            facts.ignored_fix or f"Fix the ownership and modes named above, then {restart}.",
            details,
        )
    return finding


def _judge(facts: AgentConfigFacts, details: dict[str, Any], restart: str) -> Finding:
    path = facts.path
    if facts.state == "missing":
        return ok(f"no {path}: the agent runs on its defaults", details)
    if facts.state == "unreadable":
        return error(
            f"cannot read {path}: {facts.message}",
            "Run ssmdiag as root (the file is usually readable by root only), or set "
            "[agent] config_file if the agent is relocated.",
            details,
        )
    if facts.state == "invalid":
        where = f"line {facts.line}, column {facts.column}: " if facts.line else ""
        return fail(
            f"{path} is not valid JSON ({where}{facts.message}): the agent will not start with "
            f'it (it logs "{AGENT_LOG_LINE}")',
            (
                f"Fix the JSON at line {facts.line}, column {facts.column}"
                if facts.line
                else "Fix the JSON (JSON has no NaN or Infinity)"
            )
            + f", or move the file away to use the defaults, then {restart}.",
            {**details, "line": facts.line, "column": facts.column},
        )
    if facts.state == "refused":
        details["key"] = facts.key_path or None
        what = (
            f"change {facts.key_path} to the type shown"
            if facts.key_path
            else ("make the file a JSON object (see amazon-ssm-agent.json.template)")
        )
        return fail(
            f"{path}: {facts.message}: the agent will not start with this file (it logs "
            f'"{AGENT_LOG_LINE}")',
            f"In {path}, {what}, or remove the key to use its default; then {restart}.",
            details,
        )
    if facts.state == "unverified":
        return warn(
            f"{path} could not be judged: {facts.message}",
            "Keep amazon-ssm-agent.json small and flat (the template is a few KB); move "
            "unrelated data out of it, then run ssmdiag again.",
            details,
        )
    details["settings"] = facts.settings
    if facts.notes:
        details["notes"] = facts.notes
        return warn(
            f"{path} is accepted, but " + "; ".join(facts.notes),
            f"Correct the values in {path} so the agent uses what you meant, then {restart}.",
            details,
        )
    shown = (
        ", ".join(sorted(facts.settings))
        if facts.settings
        else "no endpoint, region or identity overrides"
    )
    where = f"; {facts.path_note}" if facts.path_source == "relocated" and facts.path_note else ""
    return ok(f"{path} is accepted by the agent ({shown}){where}", details)


CHECK = Check("agent.config", "SSM Agent configuration file", run, needs=("agent", "agent_config"))
