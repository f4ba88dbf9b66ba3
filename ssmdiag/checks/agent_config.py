"""agent.config: does the agent's amazon-ssm-agent.json parse? If not, the agent will not start."""

from __future__ import annotations

import json
from typing import Any

from ssmdiag.checks.base import Check, Context
from ssmdiag.report import Finding, error, fail, ok

# Fields that change where the agent connects or how it identifies itself.
_INTERESTING = (
    ("Agent", "Region"),
    ("Agent", "ServiceDomain"),
    ("Ssm", "Endpoint"),
    ("Mds", "Endpoint"),
    ("Mgs", "Endpoint"),
    ("Mgs", "Region"),
    ("Identity", "ConsumptionOrder"),
)


def lookup(document: dict[str, Any], section: str, key: str) -> Any:
    """The agent (Go's encoding/json) matches keys case-insensitively."""
    for name, value in document.items():
        if name.lower() == section.lower() and isinstance(value, dict):
            for inner, inner_value in value.items():
                if inner.lower() == key.lower():
                    return inner_value
    return None


def run(ctx: Context) -> Finding:
    paths = ctx.platform.agent_paths(ctx.agent.discovery.binary_path)
    read = ctx.platform.read_file(paths.config_file)
    details: dict[str, Any] = {"path": paths.config_file, "path_source": paths.config_file_source}
    if read.outcome == "missing":
        return ok(f"no {paths.config_file}: the agent runs on its defaults", details)
    if read.outcome != "ok":
        return error(
            f"cannot read {paths.config_file}: {read.message}",
            "Run ssmdiag as root (the file is usually readable by root only), or set "
            "[agent] config_file if the agent is relocated.",
            details,
        )
    try:
        document = json.loads(read.text)
    except json.JSONDecodeError as exc:
        return fail(
            f"{paths.config_file} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}): the agent will not start with it",
            f"Fix the JSON at line {exc.lineno}, column {exc.colno}, or move the file away to "
            "use the defaults, then restart the agent.",
            {**details, "line": exc.lineno, "column": exc.colno},
        )
    if not isinstance(document, dict):
        return fail(
            f"{paths.config_file} holds a JSON {type(document).__name__}, not an object: "
            "the agent will not start with it",
            "Make the file a JSON object (see amazon-ssm-agent.json.template), or remove it.",
            details,
        )
    settings = {
        f"{section}.{key}": value
        for section, key in _INTERESTING
        if (value := lookup(document, section, key)) not in (None, "", [])
    }
    details["settings"] = settings
    shown = ", ".join(sorted(settings)) if settings else "no endpoint, region or identity overrides"
    return ok(f"{paths.config_file} parses ({shown})", details)


CHECK = Check("agent.config", "SSM Agent configuration file", run, needs=("agent",))
