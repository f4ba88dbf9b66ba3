"""agent.config: does the agent's amazon-ssm-agent.json parse? If not, the agent will not start."""

from __future__ import annotations

from typing import Any

from ssmdiag.agent import AgentConfigFacts
from ssmdiag.checks.base import Check, Context
from ssmdiag.report import Finding, error, fail, ok


def run(ctx: Context) -> Finding:
    facts: AgentConfigFacts = ctx.fact("agent_config")
    path = facts.path
    details: dict[str, Any] = {"path": path, "path_source": facts.path_source}
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
        return fail(
            f"{path} is not valid JSON (line {facts.line}, column {facts.column}: "
            f"{facts.message}): the agent will not start with it",
            f"Fix the JSON at line {facts.line}, column {facts.column}, or move the file away "
            "to use the defaults, then restart the agent.",
            {**details, "line": facts.line, "column": facts.column},
        )
    if facts.state == "not_object":
        return fail(
            f"{path} holds {facts.message}, not an object: the agent will not start with it",
            "Make the file a JSON object (see amazon-ssm-agent.json.template), or remove it.",
            details,
        )
    details["settings"] = facts.settings
    shown = (
        ", ".join(sorted(facts.settings))
        if facts.settings
        else "no endpoint, region or identity overrides"
    )
    return ok(f"{path} parses ({shown})", details)


CHECK = Check("agent.config", "SSM Agent configuration file", run, needs=("agent", "agent_config"))
