"""Facts about the local SSM Agent, derived from what the platform's sources say.

Which version counts: the running process (it is what serves sessions now),
then the binary on disk, then the package databases. Disagreement between
sources is itself a finding (an upgrade without a restart, a stale package).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from ssmdiag.platform.base import AgentDiscovery, Platform, VersionReading
from ssmdiag.platform.process import ProcResult
from ssmdiag.versions import AgentVersion, VersionError

_PRECEDENCE = ("process", "binary", "registry", "pkgutil", "rpm", "dpkg", "snap")
_VERSION_LINE = re.compile(r"SSM Agent version:\s*(\S+)")


def version_from_output(output: str) -> Optional[str]:
    """The version in `amazon-ssm-agent -version` output (`SSM Agent version: 3.3.987.0`)."""
    match = _VERSION_LINE.search(output)
    return match.group(1) if match else None


def reading_from_version_run(
    result: ProcResult, path: str, source: str = "binary"
) -> VersionReading:
    """What one `amazon-ssm-agent -version` run says, on every platform."""
    if not result.ran:
        return VersionReading(source, "broken", note=result.describe(), location=path)
    version = version_from_output(result.stdout)
    if version is None:
        name = path.replace("\\", "/").rsplit("/", 1)[-1]
        return VersionReading(
            source,
            "broken",
            note=f"`{name} -version` printed {result.excerpt()!r}, not 'SSM Agent version: X'",
            location=path,
        )
    return VersionReading(source, "found", version, location=path)


@dataclass
class AgentFacts:
    discovery: AgentDiscovery
    installed: bool
    version: Optional[AgentVersion] = None
    version_text: Optional[str] = None
    version_source: Optional[str] = None
    version_error: Optional[str] = None
    # (source kind, label, version) for every source that gave a parseable version.
    parsed: list[tuple[str, str, AgentVersion]] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return bool(self.discovery.processes)


def _rank(reading: VersionReading) -> int:
    try:
        return _PRECEDENCE.index(reading.source)
    except ValueError:
        return len(_PRECEDENCE)


def derive_agent_facts(discovery: AgentDiscovery) -> AgentFacts:
    readings = list(discovery.readings) + [p.version for p in discovery.processes]
    found = sorted((r for r in readings if r.state == "found"), key=_rank)
    installed = (
        bool(found)
        or bool(discovery.processes)
        or any(r.state == "broken" and r.source == "binary" for r in readings)
    )
    facts = AgentFacts(discovery=discovery, installed=installed)
    parsed: list[tuple[VersionReading, AgentVersion]] = []
    errors: list[str] = []
    for reading in found:
        try:
            version = AgentVersion.parse(reading.version_text or "")
        except VersionError as exc:
            errors.append(f"{reading.source}: {exc}")
            continue
        parsed.append((reading, version))
        facts.parsed.append((reading.source, _label(reading), version))
    if parsed:
        best_reading, best = parsed[0]
        facts.version = best
        facts.version_text = best_reading.version_text
        facts.version_source = _label(best_reading)
    elif errors:
        facts.version_error = "; ".join(errors)
    elif installed:
        broken = [f"{_label(r)}: {r.note}" for r in readings if r.state == "broken"]
        facts.version_error = "no source reported a version" + (
            f" ({'; '.join(broken)})" if broken else ""
        )
    return facts


def _label(reading: VersionReading) -> str:
    if reading.source == "process" and reading.location:
        return f"running process (pid {reading.location})"
    if reading.source == "binary" and reading.location:
        return f"binary {reading.location}"
    return reading.source


# Fields of amazon-ssm-agent.json that change where the agent connects or who it is.
AGENT_CONFIG_FIELDS = (
    ("Agent", "Region"),
    ("Agent", "ServiceDomain"),
    ("Ssm", "Endpoint"),
    ("Mds", "Endpoint"),
    ("Mgs", "Endpoint"),
    ("Mgs", "Region"),
    ("Identity", "ConsumptionOrder"),
)


def config_lookup(document: dict[str, Any], section: str, key: str) -> Any:
    """The agent (Go's encoding/json) matches keys case-insensitively."""
    for name, value in document.items():
        if name.lower() == section.lower() and isinstance(value, dict):
            for inner, inner_value in value.items():
                if inner.lower() == key.lower():
                    return inner_value
    return None


@dataclass
class AgentConfigFacts:
    path: str
    path_source: str
    # ok | missing | unreadable | invalid (not JSON) | not_object
    state: str
    settings: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    line: Optional[int] = None
    column: Optional[int] = None


def read_agent_config(platform: Platform, binary_path: Optional[str]) -> AgentConfigFacts:
    paths = platform.agent_paths(binary_path)
    read = platform.read_file(paths.config_file)
    facts = AgentConfigFacts(paths.config_file, paths.config_file_source, "ok")
    if read.outcome == "missing":
        facts.state = "missing"
        return facts
    if read.outcome != "ok":
        facts.state, facts.message = "unreadable", read.message
        return facts
    try:
        document = json.loads(read.text)
    except json.JSONDecodeError as exc:
        facts.state, facts.message = "invalid", exc.msg
        facts.line, facts.column = exc.lineno, exc.colno
        return facts
    if not isinstance(document, dict):
        facts.state, facts.message = "not_object", f"a JSON {type(document).__name__}"
        return facts
    for section, key in AGENT_CONFIG_FIELDS:
        value = config_lookup(document, section, key)
        if value not in (None, "", []):
            facts.settings[f"{section}.{key}"] = value
    return facts
