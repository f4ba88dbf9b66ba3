"""Facts about the local SSM Agent, derived from what the platform's sources say.

Which version counts: the running process (it is what serves sessions now),
then the binary on disk, then the package databases. Disagreement between
sources is itself a finding (an upgrade without a restart, a stale package).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from ssmdiag.platform.base import AgentDiscovery, VersionReading
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


# amazon-ssm-agent.json is read in ssmdiag.agent_config, exactly as the agent decodes it.
from ssmdiag.agent_config import AgentConfigFacts, read_agent_config  # noqa: E402

__all__ = [
    "AgentConfigFacts",
    "AgentFacts",
    "derive_agent_facts",
    "read_agent_config",
    "reading_from_version_run",
    "version_from_output",
]
