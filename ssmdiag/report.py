"""The report model: one place for statuses, check results, the report and exit codes.

The JSON form (`Report.to_dict`) is a contract, described by
`ssmdiag/schema/report.schema.json`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional

SCHEMA_VERSION = "1.0"


class Status(str, enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"


class OverallStatus(str, enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    UNKNOWN = "unknown"


class ExitCode(enum.IntEnum):
    OK = 0
    WARN = 1
    FAIL = 2
    UNKNOWN = 3
    USAGE = 64
    CONFIG = 78


EXIT_FOR_OVERALL = {
    OverallStatus.OK: ExitCode.OK,
    OverallStatus.WARN: ExitCode.WARN,
    OverallStatus.FAIL: ExitCode.FAIL,
    OverallStatus.UNKNOWN: ExitCode.UNKNOWN,
}


@dataclass
class Finding:
    """What a check concludes; the engine adds id, title and timing."""

    status: Status
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    remediation: Optional[str] = None


def ok(summary: str, details: Optional[dict[str, Any]] = None) -> Finding:
    return Finding(Status.OK, summary, details or {})


def warn(
    summary: str, remediation: Optional[str], details: Optional[dict[str, Any]] = None
) -> Finding:
    return Finding(Status.WARN, summary, details or {}, remediation)


def fail(summary: str, remediation: str, details: Optional[dict[str, Any]] = None) -> Finding:
    return Finding(Status.FAIL, summary, details or {}, remediation)


def skip(reason: str, details: Optional[dict[str, Any]] = None) -> Finding:
    return Finding(Status.SKIP, reason, details or {})


def error(
    reason: str, remediation: Optional[str] = None, details: Optional[dict[str, Any]] = None
) -> Finding:
    return Finding(Status.ERROR, reason, details or {}, remediation)


@dataclass
class CheckResult:
    id: str
    title: str
    status: Status
    summary: str
    details: dict[str, Any]
    remediation: Optional[str]
    duration_ms: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(
            str(data["id"]),
            str(data["title"]),
            Status(data["status"]),
            str(data["summary"]),
            dict(data["details"]),
            None if data["remediation"] is None else str(data["remediation"]),
            int(data["duration_ms"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status.value,
            "summary": self.summary,
            "details": self.details,
            "remediation": self.remediation,
            "duration_ms": self.duration_ms,
        }


def overall_status(statuses: list[Status]) -> OverallStatus:
    if Status.FAIL in statuses:
        return OverallStatus.FAIL
    if Status.WARN in statuses:
        return OverallStatus.WARN
    if Status.ERROR in statuses:
        return OverallStatus.UNKNOWN
    return OverallStatus.OK


@dataclass
class HostInfo:
    hostname: str
    os_family: str
    os_name: str
    os_version: str
    instance_id: Optional[str] = None
    region: Optional[str] = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostInfo:
        os_info = data["os"]
        return cls(
            str(data["hostname"]),
            str(os_info["family"]),
            str(os_info["name"]),
            str(os_info["version"]),
            data["instance_id"],
            data["region"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "os": {"family": self.os_family, "name": self.os_name, "version": self.os_version},
            "instance_id": self.instance_id,
            "region": self.region,
        }


@dataclass
class Report:
    tool_version: str
    host: HostInfo
    started_at: str  # RFC 3339, UTC
    duration_ms: int
    checks: list[CheckResult]

    @property
    def status(self) -> OverallStatus:
        return overall_status([check.status for check in self.checks])

    @property
    def exit_code(self) -> ExitCode:
        return EXIT_FOR_OVERALL[self.status]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """The report back from its JSON form (the check worker sends it so); a key missing
        or of the wrong kind raises KeyError, TypeError or ValueError."""
        return cls(
            str(data["tool"]["version"]),
            HostInfo.from_dict(data["host"]),
            str(data["started_at"]),
            int(data["duration_ms"]),
            [CheckResult.from_dict(check) for check in data["checks"]],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "ssmdiag", "version": self.tool_version},
            "host": self.host.to_dict(),
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "status": self.status.value,
            "checks": [check.to_dict() for check in self.checks],
        }


class CycleProblem(Exception):
    """A cycle that gave no report for a reason that can be explained (the check worker
    timed out, was killed, or could not start): `fix` says what to do."""

    def __init__(self, summary: str, fix: str) -> None:
        super().__init__(summary)
        self.fix = fix
