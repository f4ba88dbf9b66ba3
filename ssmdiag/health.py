"""Health events: what the daemon says about a cycle, given what it said before.

Pure functions from (report, last known statuses) to event dicts, so the rules
"announce changes, not repeats" are tested without clocks, threads or sinks.

Event kinds and their fields (a contract: CloudWatch queries depend on them):

- ``check.result``: one per check whose status changed (all of them when
  nothing is known yet): check_id, status, previous_status, summary,
  remediation, details (scalars only), instance_id, region, agent_version.
- ``cycle.summary``: one per cycle: cycle, status, previous_status, counts,
  duration_ms, next_check_s, instance_id; and when not ok, ``problems`` (ids)
  and ``worst`` (check_id, status, summary, remediation).
- ``heartbeat``: a full snapshot every heartbeat interval and at start-up:
  status, checks (id -> status), problems (id, status, summary, remediation),
  instance_id, region, agent_version, tool_version, uptime_s.
- ``check.state``: at every heartbeat, one per check that is warn, fail or error
  (healthy nodes emit none): check_id, status, summary, remediation. With
  check.result it lets a Logs Insights query find "which node fails which check
  now" for checks that last changed days ago.

Every event also carries ``event`` and ``level``, and the node's ``instance_id``,
``hostname``, ``region`` and ``fleet`` (the daemon's pipeline adds them); sinks add
``ts``. ``cycle.summary`` also carries CloudWatch Embedded Metric Format (``_aws``):
see ``emf_fields``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from ssmdiag.report import CheckResult, Report, Status

CHECK_RESULT = "check.result"
CYCLE_SUMMARY = "cycle.summary"
HEARTBEAT = "heartbeat"
CHECK_STATE = "check.state"

# One level per status, shared by every sink (journald PRIORITY, Event Log type).
LEVEL_FOR_STATUS = {
    "ok": "info",
    "skip": "info",
    "warn": "warning",
    "unknown": "warning",
    "fail": "error",
    "error": "error",
}

_MAX_DETAIL_ITEMS = 12
_MAX_DETAIL_TEXT = 200
_MAX_CONSOLE_LINE = 240


@dataclass
class HealthState:
    """What was last announced: survives restarts through the state directory."""

    checks: dict[str, str] = field(default_factory=dict)
    overall: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return {"checks": dict(self.checks), "overall": self.overall}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HealthState:
        checks = data.get("checks")
        overall = data.get("overall")
        if not isinstance(checks, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in checks.items()
        ):
            raise ValueError("'checks' must map check ids to status strings")
        if overall is not None and not isinstance(overall, str):
            raise ValueError("'overall' must be a status string")
        return cls(dict(checks), overall)


@dataclass(frozen=True)
class Identity:
    """Fields every event repeats, so one CloudWatch line stands on its own."""

    instance_id: Optional[str]
    region: Optional[str]
    agent_version: Optional[str]
    hostname: Optional[str] = None

    @classmethod
    def from_report(cls, report: Report) -> Identity:
        agent_version: Optional[str] = None
        for check in report.checks:
            if check.id == "agent.installed":
                value = check.details.get("version")
                agent_version = value if isinstance(value, str) else None
        return cls(report.host.instance_id, report.host.region, agent_version, report.host.hostname)

    def fields(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "hostname": self.hostname,
            "region": self.region,
            "agent_version": self.agent_version,
        }


# CloudWatch Embedded Metric Format: the CloudWatch agent turns any log line with an
# `_aws.CloudWatchMetrics` block into metrics. Dimensions are chosen for cost: never the
# instance (10,000 nodes would be 10,000 billed metrics each), only region and fleet.
EMF_DIMENSIONS = (("Region",), ("Fleet", "Region"))
# The metric period: a node's weight in one summary is the time until its next summary
# line over this, so the SUM over any 15-minute period counts each node about once,
# whether it writes a summary every 15 minutes (healthy) or every 30 s (failing). A
# 5-minute period (the first wish) would need a healthy node to write 288 EMF
# lines a day, about 95 KB, twice the 50 KB/day budget; failing nodes still show within
# a minute, so "any node failing" alarms keep a 1-5 minute period.
EMF_PERIOD_S = 900.0


def emf_fields(
    report: Report,
    next_summary_s: float,
    *,
    namespace: str,
    fleet: str,
    region: Optional[str],
    now_ms: int,
) -> dict[str, Any]:
    """The `_aws` directive and the members it names, for a cycle.summary event."""
    weight = round(min(next_summary_s, 2 * EMF_PERIOD_S) / EMF_PERIOD_S, 4)
    status = report.status.value
    # Zeros are not written (a healthy line stays short): alarms and metric math treat the
    # missing data as 0 (FILL(m, 0), TreatMissingData notBreaching).
    values: dict[str, float] = {"NodesChecked": weight}
    if status == "fail":
        values["NodesFailing"] = weight
    if status == "warn":
        values["NodesWarning"] = weight
    for check in report.checks:
        if check.status == Status.FAIL:
            values[f"CheckFailing_{check.id}"] = weight
    return {
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(d) for d in EMF_DIMENSIONS],
                    "Metrics": [{"Name": name, "Unit": "Count"} for name in values],
                }
            ],
        },
        "Region": region or "unknown",
        "Fleet": fleet,
        **values,
    }


def select_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar details, shortened: enough to act on, small enough for every line."""
    chosen: dict[str, Any] = {}
    for key, value in details.items():
        if len(chosen) >= _MAX_DETAIL_ITEMS:
            break
        if isinstance(value, str):
            chosen[key] = (
                value if len(value) <= _MAX_DETAIL_TEXT else value[:_MAX_DETAIL_TEXT] + "…"
            )
        elif value is None or isinstance(value, (bool, int, float)):
            chosen[key] = value
    return chosen


def _problems(report: Report) -> list[CheckResult]:
    """Checks that need attention, worst first, in registry order within a status."""
    rank = {Status.FAIL: 0, Status.ERROR: 1, Status.WARN: 2}
    troubled = [c for c in report.checks if c.status in rank]
    return sorted(troubled, key=lambda c: rank[c.status])


def check_result_events(
    report: Report, previous: HealthState, identity: Identity
) -> list[dict[str, Any]]:
    events = []
    for check in report.checks:
        before = previous.checks.get(check.id)
        if before == check.status.value:
            continue
        event: dict[str, Any] = {
            "event": CHECK_RESULT,
            "level": LEVEL_FOR_STATUS[check.status.value],
            "check_id": check.id,
            "status": check.status.value,
            "previous_status": before,
            "summary": check.summary,
        }
        if check.remediation:
            event["remediation"] = check.remediation
        details = select_details(check.details)
        if details:
            event["details"] = details
        event.update(identity.fields())
        events.append(event)
    return events


def cycle_summary_event(
    report: Report,
    previous: HealthState,
    identity: Identity,
    cycle: int,
    next_check_s: float,
) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for check in report.checks:
        counts[check.status.value] = counts.get(check.status.value, 0) + 1
    status = report.status.value
    event: dict[str, Any] = {
        "event": CYCLE_SUMMARY,
        "level": LEVEL_FOR_STATUS[status],
        "cycle": cycle,
        "status": status,
        "next_check_s": round(next_check_s),
        "instance_id": identity.instance_id,
    }
    if status != "ok" or previous.overall != status:
        # A healthy node's line stays short (CloudWatch bills every byte of it, every day).
        event.update(previous_status=previous.overall, counts=counts)
        event["duration_ms"] = report.duration_ms
    problems = _problems(report)
    if problems:
        worst = problems[0]
        event["problems"] = [c.id for c in problems]
        event["worst"] = {
            "check_id": worst.id,
            "status": worst.status.value,
            "summary": worst.summary,
            "remediation": worst.remediation,
        }
    return event


def heartbeat_event(
    report: Report, identity: Identity, tool_version: str, uptime_s: float
) -> dict[str, Any]:
    status = report.status.value
    event: dict[str, Any] = {
        "event": HEARTBEAT,
        "level": LEVEL_FOR_STATUS[status],
        "status": status,
        # All ok: the map adds nothing a healthy status does not say (and costs 1 KB/h).
        "checks": {check.id: check.status.value for check in report.checks}
        if status != "ok"
        else {},
        "problems": [
            {
                "check_id": c.id,
                "status": c.status.value,
                "summary": c.summary,
                "remediation": c.remediation,
            }
            for c in _problems(report)
        ],
        "tool_version": tool_version,
        "uptime_s": round(uptime_s),
    }
    event.update(identity.fields())
    return event


def check_state_events(report: Report, identity: Identity) -> list[dict[str, Any]]:
    """One flat event per check that needs attention: emitted with every heartbeat."""
    return [
        {
            "event": CHECK_STATE,
            "level": LEVEL_FOR_STATUS[check.status.value],
            "check_id": check.id,
            "status": check.status.value,
            "summary": check.summary,
            "remediation": check.remediation,
            **identity.fields(),
        }
        for check in _problems(report)
    ]


def state_after(report: Report) -> HealthState:
    return HealthState({c.id: c.status.value for c in report.checks}, report.status.value)


def _first_sentence(text: str) -> str:
    for end in (". ", ".\n", "; "):
        cut = text.find(end)
        if cut > 0:
            return text[:cut]
    return text.rstrip(".")


def console_line(summary: Mapping[str, Any]) -> str:
    """One plain line for the serial console, from a cycle.summary event.

    ``ssmdiag: FAIL endpoint.ssmmessages: connection timed out (check security group egress 443)``
    """
    status = str(summary.get("status", "unknown"))
    worst = summary.get("worst")
    if not isinstance(worst, Mapping):
        counts = summary.get("counts", {})
        skipped = f", {counts['skip']} skipped," if counts.get("skip") else ""
        where = summary.get("instance_id") or "this node"
        return f"ssmdiag: {status.upper()}: {counts.get('ok', 0)} checks pass{skipped} on {where}"
    line = f"ssmdiag: {status.upper()} {worst['check_id']}: {worst['summary']}"
    remediation = worst.get("remediation")
    if remediation:
        line += f" ({_first_sentence(str(remediation))})"
    others = [p for p in summary.get("problems", []) if p != worst["check_id"]]
    suffix = f" [+{len(others)} more: {', '.join(others)}]" if others else ""
    line = " ".join(line.split())  # one line, whatever the texts contained
    room = _MAX_CONSOLE_LINE - len(suffix)
    if len(line) > room:
        line = line[: max(room - 1, 40)] + "…"
    return line + suffix


def overall_changed(summary: Mapping[str, Any]) -> bool:
    return summary.get("status") != summary.get("previous_status")
