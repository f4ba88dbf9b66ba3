"""CloudWatch cost of ssmdiag's fleet view per month, from measured log volume and prices.

1. Volume per node per day (measured unless --no-measure; no root, a few seconds): the
   real `ssmdiag run` loop (`ssmdiag.daemon.Daemon`) with the real file sink and the
   default schedule over two simulated days (a fake clock jumps over the waits; the
   checks' results are fixed, as in bench/daemon.py), the second day counted:
     healthy   every check ok;
     flapping  endpoint.ssmmessages timing out in the first cycle of every hour;
     failing   endpoint.ssmmessages timing out all day (a cycle every 30 s).
   Counted from the day's lines: bytes, events, the gzip -6 ratio CloudWatch archives
   with, the EMF metric names, and the events each Contributor Insights rule in
   packaging/cloudwatch/insights/ matches.
   --no-measure takes --healthy-bytes-per-day and --failing-bytes-per-day instead
   (defaults: README's 77.8 KB/day healthy, 126 KB/day for a node with one failure an
   hour) and assumes the EMF contract's metrics.
2. Cost per month for each fleet size (--nodes, default 1,000 and 10,000) and scenario
   (all healthy; --failing-percent of the nodes failing all month), per region, from the
   published prices (us-east-1; every price is an option): log ingestion (bytes plus
   --event-overhead-bytes per event), storage for --retention-days (compressed as
   measured), custom metrics (tiers; one per metric name and dimension set, the sets
   [Region] and [Fleet, Region] only), the stack's 2 alarms (3 alarm metrics), one
   dashboard, 3 Contributor Insights rules and their matched events, and the dashboard's
   3 Logs Insights widgets (--dashboard-views-per-day over --dashboard-hours). The free
   tier is ignored; GB are 10^9 bytes (both overstate the bill slightly).

Run:  .venv/bin/python bench/cost.py
      .venv/bin/python bench/cost.py --nodes 1000 10000 50000 --failing-percent 5 --fleets 4
      .venv/bin/python bench/cost.py --no-measure --healthy-bytes-per-day 49000
Prints the volumes, the prices used, one table of monthly dollars, and whether 10,000
healthy nodes stay under the goal ($20 a month).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import operator
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RULES_DIR = REPO / "packaging" / "cloudwatch" / "insights"
DAY = 86_400.0
DAYS_PER_MONTH = 365 / 12
GB = 1e9
GOAL_NODES = 10_000
GOAL_DOLLARS = 20.0
# README's figures ("Benchmarks"), the defaults when nothing is measured.
README_HEALTHY_BYTES = 77_800
README_HEALTHY_EVENTS = 311  # 287 cycle.summary + 24 heartbeat
README_FLAPPING_BYTES = 126_000
# The EMF contract's metrics on a healthy node (zeros written for failing and warning).
CONTRACT_METRICS = ("NodesChecked", "NodesFailing", "NodesWarning")


# --------------------------------------------------------------------------------------
# Contributor Insights: which events a rule matches (the documented CloudWatchLogRule
# filter operators; all filters must hold).
# --------------------------------------------------------------------------------------

_MISSING = object()


def json_path(event: Mapping[str, Any], path: str) -> Any:
    """`$.a.b` and `$.a[0]` of a JSON object; _MISSING when absent."""
    if not path.startswith("$."):
        raise ValueError(f"not a JSON property path: {path}")
    value: Any = event
    for part in path[2:].split("."):
        name, _, rest = part.partition("[")
        if not isinstance(value, Mapping) or name not in value:
            return _MISSING
        value = value[name]
        while rest:
            index, _, rest = rest.partition("]")
            rest = rest.removeprefix("[")
            if not isinstance(value, list) or int(index) >= len(value):
                return _MISSING
            value = value[int(index)]
    return value


def _filter_holds(event: Mapping[str, Any], rule_filter: Mapping[str, Any]) -> bool:
    value = json_path(event, rule_filter["Match"])
    present = value is not _MISSING and value is not None
    if "IsPresent" in rule_filter:
        return present is bool(rule_filter["IsPresent"])
    if not present:
        return "NotIn" in rule_filter or "NotEqualTo" in rule_filter
    text = value if isinstance(value, str) else json.dumps(value)
    if "In" in rule_filter:
        return text in rule_filter["In"]
    if "NotIn" in rule_filter:
        return text not in rule_filter["NotIn"]
    if "StartsWith" in rule_filter:
        return any(text.startswith(prefix) for prefix in rule_filter["StartsWith"])
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    comparisons: dict[str, Callable[[float, float], bool]] = {
        "EqualTo": operator.eq,
        "NotEqualTo": operator.ne,
        "GreaterThan": operator.gt,
        "LessThan": operator.lt,
    }
    for name, compare in comparisons.items():
        if name in rule_filter:
            return number is not None and bool(compare(number, float(rule_filter[name])))
    raise ValueError(f"no matching operator in filter {dict(rule_filter)}")


def rule_matches(rule: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    contribution = rule["Contribution"]
    if not all(_filter_holds(event, f) for f in contribution.get("Filters", [])):
        return False
    # An event without a key's field has no contributor to count.
    return all(json_path(event, key) is not _MISSING for key in contribution["Keys"])


def load_rules(directory: Path = RULES_DIR) -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}


# --------------------------------------------------------------------------------------
# Part 1: the volume one node writes per day, measured with the real daemon loop.
# --------------------------------------------------------------------------------------


@dataclass
class Volume:
    """One node's steady-state day."""

    label: str
    bytes: float
    events: float
    compression: float  # raw bytes / gzip -6 bytes
    metrics: tuple[str, ...] = ()  # EMF metric names seen
    dimension_sets: tuple[tuple[str, ...], ...] = (("Region",), ("Fleet", "Region"))
    matched: dict[str, float] = field(default_factory=dict)  # rule -> events/day
    kinds: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (lines, bytes)
    measured: bool = True


def _reports() -> tuple[Any, Any]:
    """(healthy, failing) reports of every registered check, with realistic texts."""
    from ssmdiag.checks import CHECK_IDS
    from ssmdiag.checks.endpoint import REMEDIATION
    from ssmdiag.report import CheckResult, HostInfo, Report, Status

    host = HostInfo(
        "ip-10-20-130-45.eu-west-1.compute.internal",
        "linux",
        "Amazon Linux",
        "2023",
        "i-0123456789abcdef0",
        "eu-west-1",
    )
    checks = []
    for ident in CHECK_IDS:
        details: dict[str, Any] = {"checked": True}
        if ident == "agent.installed":
            details = {"version": "3.3.1142.0", "sources": "rpm, binary, process"}
        checks.append(CheckResult(ident, ident, Status.OK, f"{ident}: ok", details, None, 3))
    healthy = Report("0.1.0", host, "2026-11-23T00:00:00.000Z", 180, checks)
    name = "ssmmessages.eu-west-1.amazonaws.com"
    broken = CheckResult(
        "endpoint.ssmmessages",
        "Endpoint ssmmessages",
        Status.FAIL,
        f"TCP connect to {name} (10.20.0.17:443) timed out after 3 s",
        {"host": name, "port": 443, "failure": "connection_timeout", "http_status": None},
        REMEDIATION["connection_timeout"].format(host=name),
        3000,
    )
    failing_checks = [broken if c.id == broken.id else c for c in checks]
    failing = Report("0.1.0", host, "2026-11-23T00:00:00.000Z", 3180, failing_checks)
    return healthy, failing


def simulate_day(
    label: str,
    cycle: Callable[[float], Any],
    rules: Mapping[str, Mapping[str, Any]],
    config_changes: Mapping[str, Any],
) -> Volume:
    """Two simulated days of `ssmdiag run` at the defaults; the second day's lines."""
    from ssmdiag.config import Config
    from ssmdiag.daemon import Daemon
    from ssmdiag.notify import Notifier
    from ssmdiag.output.sinks import FileSink, SinkChoice
    from tests.daemon_helpers import FakeClock, inline_cycles

    with tempfile.TemporaryDirectory(prefix="ssmdiag-cost-") as name:
        directory = Path(name)
        path = directory / "health.json"
        config = Config(state_dir=str(directory / "state"), file_path=str(path), **config_changes)
        clock = FakeClock()
        marks: dict[float, int] = {}
        daemon = Daemon(
            config,
            cycle=lambda _config: cycle(clock.now),
            load_config=lambda: config,
            sinks_for=lambda c: SinkChoice([FileSink(str(path), 1 << 30, 1)], []),
            state_dir_for=lambda c: c.state_dir or str(directory / "state"),
            notifier=Notifier({}),
            clock=clock,
            start_cycle=inline_cycles,
            rng=random.Random(1),  # jitter, not secrets
        )

        def on_wait(now: float) -> None:
            for boundary in (DAY, 2 * DAY):
                if now >= boundary and boundary not in marks:
                    marks[boundary] = path.stat().st_size
            if now >= 2 * DAY:
                daemon.request_stop("simulated days over")

        clock.on_wait = on_wait
        daemon.serve()
        day = path.read_bytes()[marks[DAY] : marks[2 * DAY]]
    kinds: dict[str, tuple[int, int]] = {}
    metrics: set[str] = set()
    dimension_sets: set[tuple[str, ...]] = set()
    matched: Counter[str] = Counter()
    events = 0
    for line in day.splitlines(keepends=True):
        event = json.loads(line)
        events += 1
        lines, size = kinds.get(event["event"], (0, 0))
        kinds[event["event"]] = (lines + 1, size + len(line))
        for directive in event.get("_aws", {}).get("CloudWatchMetrics", []):
            metrics.update(m["Name"] for m in directive["Metrics"])
            dimension_sets.update(tuple(d) for d in directive["Dimensions"])
        for rule_name, rule in rules.items():
            matched[rule_name] += rule_matches(rule, event)
    compressed = len(gzip.compress(day, compresslevel=6, mtime=0))
    return Volume(
        label,
        float(len(day)),
        float(events),
        len(day) / max(compressed, 1),
        tuple(sorted(metrics)),
        tuple(sorted(dimension_sets)) or Volume.dimension_sets,
        {rule: float(matched[rule]) for rule in rules},
        kinds,
    )


def measure(
    rules: Mapping[str, Mapping[str, Any]], config_changes: Mapping[str, Any]
) -> dict[str, Volume]:
    healthy, failing = _reports()
    hours: dict[str, int] = {"last": -1}

    def flapping(now: float) -> Any:
        hour = int(now // 3600)
        if hour != hours["last"]:
            hours["last"] = hour
            return failing  # the first cycle of every hour; the next (30 s later) is ok
        return healthy

    return {
        "healthy": simulate_day("healthy", lambda _now: healthy, rules, config_changes),
        "flapping": simulate_day("one failure an hour", flapping, rules, config_changes),
        "failing": simulate_day("failing all day", lambda _now: failing, rules, config_changes),
    }


def assumed(args: argparse.Namespace) -> dict[str, Volume]:
    """Volumes from the command line (README's figures by default)."""
    average = args.healthy_bytes_per_day / README_HEALTHY_EVENTS
    failing_events = args.failing_events_per_day or args.failing_bytes_per_day / average
    return {
        "healthy": Volume(
            "healthy",
            args.healthy_bytes_per_day,
            args.healthy_events_per_day or README_HEALTHY_EVENTS,
            args.compression,
            CONTRACT_METRICS,
            measured=False,
        ),
        "failing": Volume(
            "failing (as given)",
            args.failing_bytes_per_day,
            failing_events,
            args.compression,
            (*CONTRACT_METRICS, "CheckFailing_endpoint.ssmmessages"),
            # every summary of a failing node matches the failing-nodes rule; assume a
            # check.state an hour for the by-check rule and one transition a day
            matched={
                "ssmdiag-failing-nodes": failing_events,
                "ssmdiag-failing-nodes-by-check": 24.0,
                "ssmdiag-endpoint-failures-by-class": 1.0,
            },
            measured=False,
        ),
    }


# --------------------------------------------------------------------------------------
# Part 2: dollars.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prices:
    ingest_gb: float
    storage_gb_month: float
    insights_scan_gb: float
    metric_tiers: tuple[tuple[float, float], ...]  # (metrics in this tier, $/metric-month)
    alarm_metric: float
    dashboard: float
    ci_rule: float
    ci_million_events: float


def parse_tiers(text: str) -> tuple[tuple[float, float], ...]:
    """ "10000:0.30,240000:0.10,750000:0.05,inf:0.02" -> ((10000, 0.3), ...)."""
    tiers = []
    for part in text.split(","):
        size, _, price = part.partition(":")
        tiers.append((math.inf if size.strip() == "inf" else float(size), float(price)))
    return tuple(tiers)


def metrics_cost(count: float, tiers: Sequence[tuple[float, float]]) -> float:
    total, left = 0.0, count
    for size, price in tiers:
        used = min(left, size)
        total += used * price
        left -= used
        if left <= 0:
            break
    return total


@dataclass
class Bill:
    nodes: int
    scenario: str
    lines: dict[str, float]  # $ per month
    metric_count: int = 0
    ingested_gb: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.lines.values())


def bill(
    nodes: int,
    scenario: str,
    mix: Sequence[tuple[float, Volume]],
    *,
    args: argparse.Namespace,
    prices: Prices,
    rules: int,
) -> Bill:
    """One month for `nodes` nodes in `args.regions` regions; mix = (share of nodes, volume)."""
    per_day = sum(share * v.bytes for share, v in mix)
    events = sum(share * v.events for share, v in mix)
    ingested = nodes * (per_day + events * args.event_overhead_bytes) * DAYS_PER_MONTH
    stored = sum(
        nodes * share * (v.bytes + v.events * args.event_overhead_bytes) / v.compression
        for share, v in mix
    ) * min(args.retention_days, 3653)  # steady state: retention_days of data kept
    names: set[str] = set()
    dimension_sets: set[tuple[str, ...]] = set()
    for share, volume in mix:
        if share > 0:
            names.update(volume.metrics)
            dimension_sets.update(volume.dimension_sets)
    per_check = sum(n.startswith("CheckFailing_") for n in names)
    if per_check:  # --failing-checks different checks fail somewhere in a region in a month
        per_check = max(per_check, args.failing_checks)
    name_count = sum(not n.startswith("CheckFailing_") for n in names) + per_check
    series_per_name = sum(args.fleets if "Fleet" in d else 1 for d in dimension_sets)
    metric_count = name_count * series_per_name * args.regions
    matched = sum(nodes * share * sum(v.matched.values()) * DAYS_PER_MONTH for share, v in mix)
    window = nodes * per_day * args.dashboard_hours / 24  # bytes one log widget scans
    scans = args.dashboard_views_per_day * DAYS_PER_MONTH * 3  # 3 log widgets per view
    lines = {
        "ingestion": ingested / GB * prices.ingest_gb,
        "storage": stored / GB * prices.storage_gb_month,
        "metrics": metrics_cost(metric_count, prices.metric_tiers),
        "contributors": args.regions * rules * prices.ci_rule
        + matched / 1e6 * prices.ci_million_events,
        "alarms": args.regions * 3 * prices.alarm_metric,
        "dashboard": args.regions * prices.dashboard,
        "queries": window * scans / GB * prices.insights_scan_gb,
    }
    return Bill(nodes, scenario, lines, metric_count, ingested / GB)


def print_table(bills: Sequence[Bill], markdown: bool = False) -> None:
    heads = list(bills[0].lines)
    if markdown:
        print("| nodes | scenario | " + " | ".join(heads) + " | total |")
        print("|" + " --- |" * (len(heads) + 3))
        for b in bills:
            cells = " | ".join(f"{b.lines[h]:.2f}" for h in heads)
            print(f"| {b.nodes:,} | {b.scenario} | {cells} | **{b.total:.2f}** |")
        return
    print(f"{'nodes':>7}  {'scenario':<22}" + "".join(f"{h:>13}" for h in heads) + f"{'total':>9}")
    for b in bills:
        cells = "".join(f"{b.lines[h]:13.2f}" for h in heads)
        print(f"{b.nodes:>7,}  {b.scenario:<22}{cells}{b.total:9.2f}")


def print_volumes(volumes: Mapping[str, Volume]) -> None:
    print("== Volume per node per day (steady state) ==")
    for volume in volumes.values():
        how = "measured" if volume.measured else "given"
        print(
            f"{volume.label:>22}: {volume.bytes / 1000:8.1f} KB, {volume.events:6.0f} events,"
            f" gzip -6 x{volume.compression:.1f} ({how})"
        )
        if volume.kinds:
            kinds = ", ".join(
                f"{k} {n}/{b / 1000:.1f} KB" for k, (n, b) in sorted(volume.kinds.items())
            )
            print(f"{'':>24}{kinds}")
        if volume.matched:
            matched = ", ".join(f"{r} {n:.0f}" for r, n in volume.matched.items())
            print(f"{'':>24}Contributor Insights matches/day: {matched}")
        if volume.metrics:
            print(f"{'':>24}EMF metrics: {', '.join(volume.metrics)}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--nodes", type=int, nargs="+", default=[1_000, 10_000], help="fleet sizes")
    add("--failing-percent", type=float, default=1.0, help="nodes failing all month (%%)")
    add("--regions", type=int, default=1, help="regions with nodes (one stack each)")
    add("--fleets", type=int, default=1, help="[fleet] labels per region")
    add("--failing-checks", type=int, default=3, help="check ids failing in a month, per region")
    add("--retention-days", type=int, default=30)
    add("--dashboard-views-per-day", type=float, default=10)
    add("--dashboard-hours", type=float, default=3, help="the dashboard's time range")
    add(
        "--healthy-summary-interval",
        type=float,
        help="measure with this [fleet] healthy_summary_interval (s) instead of the default",
    )
    add("--no-measure", action="store_true", help="use the byte figures below")
    add("--healthy-bytes-per-day", type=float, default=README_HEALTHY_BYTES)
    add("--healthy-events-per-day", type=float, default=0, help="0: README's 311")
    add("--failing-bytes-per-day", type=float, default=README_FLAPPING_BYTES)
    add("--failing-events-per-day", type=float, default=0, help="0: from the average size")
    add("--compression", type=float, default=8.0, help="gzip ratio when not measured")
    add("--event-overhead-bytes", type=float, default=26, help="per event, as metered")
    add("--price-ingest-gb", type=float, default=0.50, help="Logs Standard ingestion, $/GB")
    add("--price-storage-gb-month", type=float, default=0.03, help="archive, $/GB-month")
    add("--price-insights-scan-gb", type=float, default=0.005, help="Logs Insights, $/GB scanned")
    add(
        "--price-metric-tiers",
        default="10000:0.30,240000:0.10,750000:0.05,inf:0.02",
        help="custom metrics, metrics:$ per metric-month, in tier order",
    )
    add("--price-alarm-metric", type=float, default=0.10, help="standard alarm, $/metric-month")
    add("--price-dashboard", type=float, default=3.00, help="$/dashboard-month")
    add("--price-ci-rule", type=float, default=0.50, help="Contributor Insights, $/rule-month")
    add("--price-ci-million-events", type=float, default=0.02, help="$/million matched events")
    add("--markdown", action="store_true", help="print the table as Markdown")
    add("--json", action="store_true", help="also print the bills as JSON")
    args = parser.parse_args(argv)
    if args.failing_checks < 1 or not 0 <= args.failing_percent <= 100:
        parser.error("--failing-checks must be >= 1 and --failing-percent within 0..100")
    prices = Prices(
        args.price_ingest_gb,
        args.price_storage_gb_month,
        args.price_insights_scan_gb,
        parse_tiers(args.price_metric_tiers),
        args.price_alarm_metric,
        args.price_dashboard,
        args.price_ci_rule,
        args.price_ci_million_events,
    )
    rules = load_rules()
    started = time.monotonic()
    changes = {}
    if args.healthy_summary_interval is not None:
        changes["healthy_summary_interval"] = args.healthy_summary_interval
    volumes = assumed(args) if args.no_measure else measure(rules, changes)
    print_volumes(volumes)
    if not args.no_measure:
        print(f"(measured in {time.monotonic() - started:.1f} s)")
    print(
        f"\n== Prices (us-east-1, as published; options) ==\n"
        f"logs ${prices.ingest_gb}/GB ingested + {args.event_overhead_bytes:g} B/event,"
        f" ${prices.storage_gb_month}/GB-month stored, ${prices.insights_scan_gb}/GB scanned;"
        f" metrics {args.price_metric_tiers} per metric-month;"
        f" alarms ${prices.alarm_metric}/metric; dashboard ${prices.dashboard};"
        f" Contributor Insights ${prices.ci_rule}/rule + ${prices.ci_million_events}/M events"
    )
    share = args.failing_percent / 100
    bills: list[Bill] = []
    for nodes in args.nodes:
        for label, mix in (
            ("all healthy", [(1.0, volumes["healthy"])]),
            (
                f"{args.failing_percent:g}% failing all month",
                [(1 - share, volumes["healthy"]), (share, volumes["failing"])],
            ),
        ):
            bills.append(bill(nodes, label, mix, args=args, prices=prices, rules=len(rules)))
    print(
        f"\n== CloudWatch $ per month ({args.regions} region(s), {args.fleets} fleet label(s),"
        f" {args.retention_days}-day retention) =="
    )
    print_table(bills, markdown=args.markdown)
    print(
        "ingestion: logs ingested (EMF lines included); storage: kept for the retention;"
        " metrics: custom metrics from EMF; contributors: Contributor Insights rules and"
        " matched events; alarms: 2 alarms (3 alarm metrics); dashboard: 1; queries: the"
        " dashboard's 3 Logs Insights widgets"
    )
    goal = next((b for b in bills if b.nodes == GOAL_NODES and b.scenario == "all healthy"), None)
    if goal is not None:
        verdict = "meets" if goal.total < GOAL_DOLLARS else "MISSES"
        print(
            f"\nGoal: {GOAL_NODES:,} healthy nodes under ${GOAL_DOLLARS:.0f}/month:"
            f" ${goal.total:.2f} {verdict} it"
            f" ({volumes['healthy'].bytes / 1000:.1f} KB/node/day"
            f" {'measured' if volumes['healthy'].measured else 'given'})."
        )
    if args.json:
        rows = [
            {
                "nodes": b.nodes,
                "scenario": b.scenario,
                "metrics_count": b.metric_count,
                "ingested_gb": b.ingested_gb,
                **b.lines,
                "total": b.total,
            }
            for b in bills
        ]
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
