"""The daemon's footprint over time: memory, CPU and log volume of `ssmdiag run`.

1. Memory and CPU (root; uses tests/lab): the real `Daemon` runs REAL cycles
   (each in a check worker process, `ssmdiag.worker.CycleWorker`, as `ssmdiag run`
   does; with --in-process `ssmdiag.service.run_cycle` in a thread) back to back
   inside a network namespace this script creates, where dnsmasq maps the us-east-1
   SSM endpoints to a lab HTTPS server (trusted through a test CA) and a lab IMDSv2
   answers on 169.254.169.254. A freshly compiled amazon-ssm-agent look-alike
   stands in for the agent binary (when `cc` exists); it is not running and this
   machine has no service manager for it, so agent.service fails. The time
   between cycles is skipped (the clock jumps; a cycle itself takes real time, as
   in production); events go to the real file sink in a
   temporary directory, nothing to stdout. The child runs with MALLOC_ARENA_MAX=2,
   as the systemd unit sets it. Printed: RSS after cycle 10 and after the last
   cycle (goals, issue 14: growth under 1 MB from cycle 10 to 1,000, steady RSS
   25 MB or less, both of the daemon process), the check worker's peak RSS, CPU and
   wall milliseconds per cycle, which checks were not ok, and with --where what the
   daemon's resident memory is and which modules it has loaded.
2. Log volume (no root needed): a day of a healthy node at the default schedule
   (interval 300 s, jitter 0.1, heartbeat 3,600 s) with a fake clock and the real
   file sink. The healthy report is the lab cycle's report with every check
   forced to ok. Printed: bytes and lines per event kind for the first day (all
   checks announced once) and a steady-state day (goal: 50 KB or less), what a
   restart adds, and a day of a node where one endpoint check flaps
   ok -> fail -> ok once an hour.

Nothing leaves the namespace; namespaces, servers and temp files go away on exit,
Ctrl-C or SIGTERM.

Run (from the repo root, as root):
    .venv/bin/python bench/daemon.py               # 1,000 cycles, about 9 minutes
    .venv/bin/python bench/daemon.py --quick       # 50 cycles
    .venv/bin/python bench/daemon.py --cycles 300 --tracemalloc   # + top growth sites
    .venv/bin/python bench/daemon.py --quick --where   # + RSS by mapping, modules loaded
    .venv/bin/python bench/daemon.py --quick --in-process   # cycles in a thread, to compare
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Only what `ssmdiag run` itself imports at module level: the child measuring memory runs
# this file too, and the lab and test helpers (pytest, trustme...) must not inflate its RSS.
from ssmdiag.config import Config, load_config  # noqa: E402
from ssmdiag.daemon import CycleOutcome, Daemon, Job, threaded_cycles  # noqa: E402
from ssmdiag.notify import Notifier  # noqa: E402
from ssmdiag.output.sinks import FileSink, SinkChoice, build_sinks  # noqa: E402
from ssmdiag.report import CheckResult, Report, Status  # noqa: E402

REGION = "us-east-1"
ENDPOINT_ADDRESS = "198.18.0.10"
IMDS_ADDRESS = "169.254.169.254"
INSTANCE_ID = "i-0123456789abcdef0"
PROFILE_ARN = "arn:aws:iam::111122223333:instance-profile/AmazonSSMRoleForInstancesQuickSetup"
AGENT_VERSION = "3.3.987.0"
DAY = 86_400.0

# Issue 14, "Cost on the node": less memory than the agent it watches (20 MB RSS).
GOAL_GROWTH_KB = 1024  # RSS growth from cycle 10 to cycle 1,000
GOAL_STEADY_KB = 25 * 1024  # steady RSS, at most
GOAL_DAY_BYTES = 50_000  # log bytes a healthy node writes a day, at most


# --------------------------------------------------------------------------------------
# Part 1, child side: runs inside the namespace, started by the parent with --child.
# --------------------------------------------------------------------------------------


class _TrackedJob:
    """A cycle job that remembers whether the daemon has taken its outcome."""

    def __init__(self, job: Job) -> None:
        self._job = job
        self.collected = False

    @property
    def done(self) -> bool:
        return self._job.done

    def outcome(self) -> CycleOutcome:
        self.collected = True
        return self._job.outcome()


class CycleTracker:
    """The daemon's own threaded cycles, watched so the clock knows when one runs."""

    def __init__(self) -> None:
        self.job: Optional[_TrackedJob] = None
        self.counted: Optional[_TrackedJob] = None  # the last job between_cycles counted
        self.collected = 0

    def __call__(self, work: Callable[[], Report], wake: threading.Event) -> _TrackedJob:
        self.job = _TrackedJob(threaded_cycles(work, wake))
        return self.job

    @property
    def in_cycle(self) -> bool:
        """From the start of a cycle until the daemon has collected its outcome."""
        return self.job is not None and not self.job.collected


class SkippingClock:
    """Real time while a cycle runs; the sleep between cycles is skipped, not slept.

    `monotonic()` is the real clock plus every skipped wait, so the daemon's
    schedule, cycle timeout and heartbeat logic see consistent time.
    """

    def __init__(self, tracker: CycleTracker, between_cycles: Callable[[], None]) -> None:
        self._tracker = tracker
        self._between_cycles = between_cycles
        self.skipped = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if self._tracker.in_cycle:
            return event.wait(max(timeout, 0.0))  # the worker thread sets it when done
        self._between_cycles()
        if not event.is_set():
            self.skipped += max(timeout, 0.0)
        return event.is_set()


def _proc_status_kb(*keys: str) -> dict[str, int]:
    values: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in keys:
                values[name] = int(rest.split()[0])
    return values


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sample(cycle: int) -> dict[str, Any]:
    wall, cpu = time.monotonic(), _cpu()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    status = _proc_status_kb("VmRSS", "VmHWM")
    tracked = gc.get_objects()
    ssl = sys.modules.get("ssl")  # loaded in this process only when cycles run in it
    contexts = sum(isinstance(o, ssl.SSLContext) for o in tracked) if ssl else 0
    del tracked
    return {
        "cycle": cycle,
        "wall": wall,
        "cpu": cpu,
        "children_cpu": kids.ru_utime + kids.ru_stime,
        "children_peak_kb": kids.ru_maxrss,  # the largest child so far: the check worker
        "rss_kb": status["VmRSS"],
        "hwm_kb": status["VmHWM"],
        "gc_objects": len(gc.get_objects()),
        "ssl_contexts": contexts,
        "threads": threading.active_count(),
        "fds": len(os.listdir("/proc/self/fd")),
        # what taking this sample cost, left out of the per-cycle figures
        "cost_wall": time.monotonic() - wall,
        "cost_cpu": _cpu() - cpu,
    }


def _where() -> dict[str, Any]:
    """Resident memory by mapping (/proc/self/smaps) and the modules loaded, now.

    File-backed pages (the interpreter, libcrypto...) count in RSS like the rest, though
    other processes share them; [heap] and the unnamed anonymous mappings are malloc's
    arenas, Python's object arenas (1 MiB each, merged when adjacent) and thread stacks.
    """
    by_name: Counter[str] = Counter()
    anon_sizes: list[tuple[int, int]] = []  # (size, rss) of each unnamed anonymous mapping
    name, size = "", 0
    with open("/proc/self/smaps", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            head, _, rest = line.partition(" ")
            if "-" in head and not head.endswith(":"):
                fields = rest.split(None, 4)
                name = fields[4].strip() if len(fields) > 4 else ""
                start, end = (int(x, 16) for x in head.split("-"))
                size = (end - start) // 1024
            elif head == "Rss:":
                rss = int(rest.split()[0])
                if not name:
                    anon_sizes.append((size, rss))
                by_name[name or "[anon]"] += rss
    return {
        "by_name": dict(by_name),
        "anon": anon_sizes,
        "modules": sorted(sys.modules),
        "status": _proc_status_kb("VmRSS", "RssAnon", "RssFile"),
    }


def _sample_points(cycles: int) -> set[int]:
    step = max(cycles // 10, 1)
    return {1, 10, cycles, *range(step, cycles + 1, step)}


def child_main(
    config_path: str, cycles: int, out_path: str, parent_pid: int, *, trace: bool, in_process: bool
) -> None:
    """Run the daemon for `cycles` real cycles and write the measurements to out_path.

    As `ssmdiag run` builds it: each cycle in a check worker process (ssmdiag/worker.py),
    or with `in_process` in a thread of this process (the daemon before the worker)."""
    from ssmdiag.log import configure_logging
    from ssmdiag.platform import process
    from ssmdiag.service import run_cycle
    from ssmdiag.worker import CycleWorker, worker_command

    config = load_config(config_path, os.environ)
    configure_logging(config.log_format, "warning")  # as `ssmdiag run` does
    samples: list[dict[str, Any]] = [_sample(0)]
    growth: list[str] = []
    last: dict[str, Report] = {}
    tracker = CycleTracker()
    points = _sample_points(cycles)
    snapshot: list[Any] = []
    where: dict[str, Any] = {}
    daemon: Optional[Daemon] = None

    command = None if in_process else worker_command()
    worker = CycleWorker(command) if command else None

    def cycle(cfg: Config) -> Report:
        report = worker.run(cfg) if worker else run_cycle(cfg)
        last["report"] = report
        return report

    def shutdown() -> None:
        if worker:
            worker.stop()
        process.terminate_all()

    def between_cycles() -> None:
        job = tracker.job
        if job is None or not job.collected or job is tracker.counted:
            return
        tracker.counted = job
        tracker.collected += 1
        done = tracker.collected
        if done in points:
            samples.append(_sample(done))
            if done % max(cycles // 10, 1) == 0 or done == cycles:
                print(
                    f"  cycle {done}/{cycles}: RSS {samples[-1]['rss_kb'] / 1024:.1f} MB",
                    file=sys.stderr,
                    flush=True,
                )
        if trace and done == 10:
            import tracemalloc

            tracemalloc.start(8)
            snapshot.append(tracemalloc.take_snapshot())
        assert daemon is not None
        if done >= cycles:
            where.update(_where())  # before tracemalloc's own snapshot adds to it
            if snapshot:
                import tracemalloc

                stats = tracemalloc.take_snapshot().compare_to(snapshot[0], "traceback")
                for stat in stats[:8]:
                    frames = [f"{f.filename}:{f.lineno}" for f in stat.traceback[-4:]]
                    growth.append(
                        f"{stat.size_diff / 1024:+.1f} KiB in {stat.count_diff:+d} blocks "
                        f"at {' <- '.join(reversed(frames))}"
                    )
            daemon.request_stop("benchmark finished")
        elif os.getppid() != parent_pid:
            daemon.request_stop("benchmark parent died")

    def sinks_for(cfg: Config) -> SinkChoice:
        assert cfg.file_path is not None
        return build_sinks(
            cfg.sinks or ("file",),
            file_path=cfg.file_path,
            file_max_bytes=cfg.file_max_bytes,
            file_backups=cfg.file_backups,
            console_device=cfg.console_device,
            stdout=sys.stdout,
            stderr=sys.stderr,
        )

    daemon = Daemon(
        config,
        cycle=cycle,
        load_config=lambda: config,
        sinks_for=sinks_for,
        state_dir_for=lambda cfg: cfg.state_dir or "/nonexistent",
        notifier=Notifier({}),
        clock=SkippingClock(tracker, between_cycles),
        start_cycle=tracker,
        on_shutdown=shutdown,
    )
    daemon.serve()
    assert config.file_path is not None
    kinds: Counter[str] = Counter()
    changes: Counter[str] = Counter()  # check.result after the first announcement
    with open(config.file_path, encoding="utf-8") as handle:
        for line in handle:
            event = json.loads(line)
            kinds[event["event"]] += 1
            if event["event"] == "check.result" and event["previous_status"] is not None:
                change = f"{event['check_id']} {event['previous_status']} -> {event['status']}"
                changes[f"{change}: {event['summary']}"] += 1
    result = {
        "samples": samples,
        "report": last["report"].to_dict() if "report" in last else None,
        "log_bytes": os.path.getsize(config.file_path),
        "log_kinds": dict(kinds),
        "changes": dict(changes),
        "growth": growth,
        "where": where,
        "worker": worker is not None,
        "no_bytecode": bool(sys.flags.dont_write_bytecode),
    }
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")


# --------------------------------------------------------------------------------------
# Part 1, parent side: the lab around the child.
# --------------------------------------------------------------------------------------


def _build_fake_agent(directory: Path) -> Optional[Path]:
    """The test suite's amazon-ssm-agent look-alike (prints its version), or None."""
    import shutil

    from tests.conftest import _FAKE_AGENT_C

    cc = shutil.which("cc")
    if cc is None:
        return None
    source, target = directory / "agent.c", directory / "amazon-ssm-agent"
    source.write_text(_FAKE_AGENT_C, encoding="utf-8")
    subprocess.run(
        [cc, "-O0", "-o", str(target), f'-DVERSION="{AGENT_VERSION}"', str(source)],
        check=True,
        timeout=60,
    )
    return target


def run_lab(cycles: int, trace: bool, tmp: Path, in_process: bool = False) -> dict[str, Any]:
    from tests.conftest import hermetic_env
    from tests.lab import LabCA, NetNS, cleanup_stale, start_server
    from tests.lab.launcher import start_ssm_endpoints

    cleanup_stale()
    ca = LabCA(tmp / "ca")
    agent = _build_fake_agent(tmp)
    lines = ["[network]", f"ca_bundle = '{ca.ca_pem}'"]
    if agent is not None:
        lines = [*lines, "[agent]", f"binary = '{agent}'"]
    lines += [
        "[daemon]",
        f"state_dir = '{tmp / 'state'}'",
        "[sinks]",
        "enabled = ['file']",
        f"file_path = '{tmp / 'log' / 'health.json'}'",
    ]
    config = tmp / "ssmdiag.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp / "child.json"
    budget = 120.0 + cycles * 3.0  # a cycle takes well under a second in the lab
    lifetime = str(budget + 60)
    with NetNS() as ns:
        start_ssm_endpoints(ns, ca, REGION, ENDPOINT_ADDRESS, max_lifetime=lifetime)
        start_server(
            "imds",
            ns.ensure_address(IMDS_ADDRESS),
            80,
            ns,
            instance_id=INSTANCE_ID,
            region=REGION,
            profile_arn=PROFILE_ARN,
            max_lifetime=lifetime,
        )
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", str(config)]
        argv += ["--cycles", str(cycles), "--out", str(out), "--parent-pid", str(os.getpid())]
        if trace:
            argv.append("--tracemalloc")
        if in_process:
            argv.append("--in-process")
        # The lab's IMDS only; two malloc arenas, as systemd/ssmdiag.service sets (without it
        # glibc gives each probe thread an arena of its own: about 0.6 MB more here).
        env = hermetic_env({"AWS_EC2_METADATA_DISABLED": "false", "MALLOC_ARENA_MAX": "2"})
        proc = ns.popen(argv, env=env, cwd=str(REPO))
        try:
            code = proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"the daemon did not finish {cycles} cycles in {budget:g} s"
            ) from None
        if code != 0 or not out.exists():
            raise RuntimeError(f"the daemon child failed (exit {code}); see its stderr above")
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    data["agent_built"] = agent is not None
    return data


def print_where(where: Mapping[str, Any]) -> None:
    """Where the resident memory is after the last cycle, and what is imported."""
    by_name = sorted(where["by_name"].items(), key=lambda item: -item[1])
    status = where["status"]
    print(
        f"\nresident memory after the last cycle: {status['VmRSS'] / 1024:.1f} MB,"
        f" {status['RssAnon'] / 1024:.1f} MB anonymous and {status['RssFile'] / 1024:.1f} MB"
        " file-backed; by mapping:"
    )
    for name, rss in by_name[:14]:
        if rss >= 64:
            print(f"  {rss / 1024:6.2f} MB  {name}")
    anon = sorted(where["anon"], key=lambda item: -item[1])
    print("  largest unnamed anonymous mappings (malloc arenas, thread stacks, mmap'd blocks):")
    for size, rss in anon[:8]:
        print(f"    {rss / 1024:6.2f} MB resident of {size / 1024:7.2f} MB mapped")
    tops = Counter(m.split(".")[0] for m in where["modules"])
    print(f"modules loaded: {len(where['modules'])}; packages and modules at the top level:")
    print("  " + ", ".join(sorted(tops)))


def _verdict(met: bool) -> str:
    return " (met)" if met else " (NOT met)"


def print_lab(data: dict[str, Any], cycles: int, trace: bool) -> list[tuple[str, str, str]]:
    samples = {s["cycle"]: s for s in data["samples"]}
    base, first, at10, end = samples[0], samples[1], samples[min(10, cycles)], samples[cycles]
    steady = [s for s in data["samples"] if s["cycle"] >= min(10, cycles)]
    span = max(cycles - min(10, cycles), 1)
    between = [s for s in data["samples"] if min(10, cycles) <= s["cycle"] < cycles]
    cpu = (end["cpu"] - at10["cpu"] - sum(s["cost_cpu"] for s in between)) * 1000 / span
    kids = (end["children_cpu"] - at10["children_cpu"]) * 1000 / span
    wall = (end["wall"] - at10["wall"] - sum(s["cost_wall"] for s in between)) * 1000 / span
    first_cpu = (first["cpu"] - base["cpu"]) * 1000
    growth = end["rss_kb"] - at10["rss_kb"]
    peak = max(s["rss_kb"] for s in steady)
    worker_peak = end["children_peak_kb"]
    mode = "each in a check worker process" if data["worker"] else "in a thread of the daemon"
    print(f"\n== Memory and CPU: {cycles} real cycles in the lab, {mode} ==")
    print(
        f"{'after cycle':>11} {'RSS MB':>8} {'peak MB':>8} {'gc objects':>11} {'SSLContexts':>12}"
        f" {'threads':>8} {'fds':>4} {'CPU ms':>9} {'child CPU ms':>13} {'wall s':>8}"
    )
    for sample in data["samples"]:
        print(
            f"{sample['cycle']:>11} {sample['rss_kb'] / 1024:8.2f} {sample['hwm_kb'] / 1024:8.2f}"
            f" {sample['gc_objects']:>11} {sample['ssl_contexts']:>12}"
            f" {sample['threads']:>8} {sample['fds']:>4}"
            f" {(sample['cpu'] - base['cpu']) * 1000:9.0f}"
            f" {(sample['children_cpu'] - base['children_cpu']) * 1000:13.0f}"
            f" {sample['wall'] - base['wall']:8.1f}"
        )
    print(
        "(cycle 0: the daemon built, before its first cycle. CPU, child CPU and wall are"
        " cumulative from there; child CPU is the check workers and the subprocesses the"
        " checks ran. RSS and peak are the daemon process's own. SSLContexts:"
        " live ssl.SSLContext objects, the probes' trust stores, freed only when the"
        " garbage collector gets to them.)"
    )
    report = data["report"] or {}
    not_ok = [c for c in report.get("checks", []) if c["status"] != "ok"]
    print(f"checks not ok in the lab cycle ({len(not_ok)} of {len(report.get('checks', []))}):")
    for check in not_ok:
        print(f"  {check['id']}: {check['status']}: {check['summary']}")
    if not data["agent_built"]:
        print("  (no C compiler: no agent look-alike, so every agent check fails or skips)")
    print(
        "  (no SSM Agent runs here and there is no service manager for it: agent.service"
        " cannot be ok; every other check ran its healthy path)"
    )
    for change, count in sorted(data["changes"].items()):
        print(f"  status change during the run ({count}x): {change}")
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(data["log_kinds"].items()))
    print(f"lab log: {data['log_bytes']} bytes ({kinds})")
    print(f"first cycle (imports, first TLS contexts...): {first_cpu:.0f} ms CPU")
    if trace:
        print("top allocation growth from cycle 10 (tracemalloc; it inflates the RSS figures):")
        for line in data["growth"] or ["(none)"]:
            print(f"  {line}")
    label = f"RSS growth, cycle {min(10, cycles)} -> {cycles}"
    judged = "" if cycles >= 1000 else "; judge it on a 1,000-cycle run"
    rows = [
        (
            label,
            f"{growth / 1024:+.2f} MB",
            f"< {GOAL_GROWTH_KB / 1024:g} MB (cycle 10 -> 1,000){_verdict(growth < GOAL_GROWTH_KB)}"
            + judged,
        ),
        (
            f"steady RSS (max from cycle {min(10, cycles)})",
            f"{peak / 1024:.2f} MB",
            f"<= {GOAL_STEADY_KB / 1024:g} MB{_verdict(peak <= GOAL_STEADY_KB)}",
        ),
        ("CPU per cycle, daemon process", f"{cpu:.1f} ms", "(figure)"),
        (
            "CPU per cycle, " + ("worker + its subprocesses" if data["worker"] else "subprocesses"),
            f"{kids:.1f} ms",
            "(figure)",
        ),
        ("wall time per cycle", f"{wall:.1f} ms", "(figure)"),
    ]
    if data["worker"] and data.get("no_bytecode"):
        print(
            "note: PYTHONDONTWRITEBYTECODE is set, so each worker compiles the modules that"
            " have no .pyc yet: its CPU figure is higher than with the byte-compiled package"
        )
    if data["worker"]:
        # The worker lives for one cycle's wall time; between cycles (300 s healthy) it is gone.
        average = peak + worker_peak * (wall / 1000) / 300
        rows += [
            ("check worker peak RSS, during a cycle", f"{worker_peak / 1024:.2f} MB", "(figure)"),
            ("mean RSS over a 300 s cycle, both", f"{average / 1024:.2f} MB", "(figure)"),
        ]
    return rows


# --------------------------------------------------------------------------------------
# Part 2: a simulated day at the default schedule, fake clock, real file sink.
# --------------------------------------------------------------------------------------


def healthy_from(report: Report) -> tuple[Report, list[str]]:
    """The report with every check ok; agent.service as systemd reports a running agent."""
    forced: list[str] = []
    checks: list[CheckResult] = []
    for check in report.checks:
        if check.status is Status.OK:
            checks.append(check)
            continue
        forced.append(check.id)
        if check.id == "agent.service":
            details: dict[str, Any] = {
                "manager": "systemd",
                "name": "amazon-ssm-agent.service",
                "state": "active (running), enabled",
                "enabled": True,
                "main_pid": 1234,
                "note": None,
                "agent_pids": [1234],
            }
            summary = "amazon-ssm-agent.service is active (running), enabled"
        else:
            details, summary = check.details, f"{check.title}: ok"
        checks.append(
            CheckResult(check.id, check.title, Status.OK, summary, details, None, check.duration_ms)
        )
    return Report(
        report.tool_version, report.host, report.started_at, report.duration_ms, checks
    ), forced


def flapped(healthy: Report) -> Report:
    """endpoint.ssmmessages timing out, as the probe and the check word it."""
    from ssmdiag.checks.endpoint import REMEDIATION

    checks = []
    for check in healthy.checks:
        if check.id == "endpoint.ssmmessages":
            host = str(check.details.get("host", f"ssmmessages.{REGION}.amazonaws.com"))
            address = (check.details.get("addresses") or [ENDPOINT_ADDRESS])[0]
            phases = check.details.get("phases") or {}
            details = {
                **check.details,
                "phases": {"dns": phases.get("dns", {})},
                "failure": "connection_timeout",
                "http_status": None,
            }
            timeout = Config().connect_timeout
            check = CheckResult(  # noqa: PLW2901 - the replacement is the point
                check.id,
                check.title,
                Status.FAIL,
                f"TCP connect to {host} ({address}:443) timed out after {timeout:g} s",
                details,
                REMEDIATION["connection_timeout"].format(host=host),
                int(timeout * 1000),
            )
        checks.append(check)
    return Report(
        healthy.tool_version, healthy.host, healthy.started_at, healthy.duration_ms, checks
    )


def _kinds(blob: bytes) -> dict[str, tuple[int, int]]:
    """event kind -> (lines, bytes)."""
    counts: dict[str, tuple[int, int]] = {}
    for line in blob.splitlines(keepends=True):
        kind = json.loads(line)["event"]
        lines, size = counts.get(kind, (0, 0))
        counts[kind] = (lines + 1, size + len(line))
    return counts


class DayRun:
    """Two simulated days on one daemon, then a restart; log slices per window."""

    def __init__(self, cycle: Callable[[float], Report], directory: Path, seed: int = 1) -> None:
        self.first_day: dict[str, tuple[int, int]] = {}
        self.steady_day: dict[str, tuple[int, int]] = {}
        self.restart: dict[str, tuple[int, int]] = {}
        self.cycles = 0
        self.cycles_steady = 0
        self.cpu_ms_per_cycle = 0.0
        self._run(cycle, directory, seed)

    def _run(self, cycle: Callable[[float], Report], directory: Path, seed: int) -> None:
        from tests.daemon_helpers import FakeClock, inline_cycles

        path = directory / "health.json"
        config = Config(state_dir=str(directory / "state"), file_path=str(path))

        def make(
            clock: FakeClock,
            work: Callable[[Config], Report],
            on_shutdown: Callable[[], object] = lambda: None,
        ) -> Daemon:
            return Daemon(
                config,
                cycle=work,
                load_config=lambda: config,
                sinks_for=lambda c: SinkChoice(
                    [FileSink(str(path), c.file_max_bytes, c.file_backups)], []
                ),
                state_dir_for=lambda c: c.state_dir or "/nonexistent",
                notifier=Notifier({}),
                clock=clock,
                start_cycle=inline_cycles,
                rng=random.Random(seed),  # jitter, not secrets
                on_shutdown=on_shutdown,
            )

        clock = FakeClock()
        marks: dict[float, int] = {}

        def counted(_config: Config) -> Report:
            self.cycles += 1
            return cycle(clock.now)

        daemon = make(clock, counted)

        def on_wait(now: float) -> None:
            for boundary in (DAY, 2 * DAY):
                if now >= boundary and boundary not in marks:
                    marks[boundary] = path.stat().st_size
            if now >= 2 * DAY:
                daemon.request_stop("simulated days over")

        clock.on_wait = on_wait
        started = time.process_time()
        daemon.serve()
        self.cpu_ms_per_cycle = (time.process_time() - started) * 1000 / max(self.cycles, 1)
        blob = path.read_bytes()
        self.first_day = _kinds(blob[: marks[DAY]])
        self.steady_day = _kinds(blob[marks[DAY] : marks[2 * DAY]])
        self.cycles_steady = self.steady_day.get("cycle.summary", (0, 0))[0]

        again = FakeClock()
        restarted: list[Daemon] = []

        def once(_config: Config) -> Report:
            restarted[0].request_stop("restart measured")
            return cycle(2 * DAY)

        def before_stop() -> None:  # the restarted daemon's own daemon.stop is not counted
            marks[3 * DAY] = path.stat().st_size

        restarted.append(make(again, once, before_stop))
        restarted[0].serve()
        self.restart = _kinds(path.read_bytes()[marks[2 * DAY] : marks[3 * DAY]])


def _bytes(kinds: Mapping[str, tuple[int, int]], skip: tuple[str, ...] = ()) -> int:
    return sum(size for kind, (_, size) in kinds.items() if kind not in skip)


def _describe(kinds: Mapping[str, tuple[int, int]]) -> str:
    return ", ".join(f"{kind} {n} lines/{size} B" for kind, (n, size) in sorted(kinds.items()))


def print_days(healthy: Report, source: str, tmp: Path) -> list[tuple[str, str, str]]:
    print("\n== Log volume: simulated days at the default schedule (file sink) ==")
    print(f"healthy report: {source}")
    calm = DayRun(lambda _now: healthy, tmp / "healthy")
    failing = flapped(healthy)
    flaps: dict[str, int] = {"hour": -1}

    def flapping(now: float) -> Report:
        hour = int(now // 3600)
        if hour != flaps["hour"]:
            flaps["hour"] = hour
            return failing  # the first cycle of every hour; the next (30 s later) is ok
        return healthy

    flappy = DayRun(flapping, tmp / "flapping")
    first, steady = _bytes(calm.first_day), _bytes(calm.steady_day)
    restart = _bytes(calm.restart, skip=("cycle.summary",))
    print(f"first day (fresh state, all {len(healthy.checks)} checks announced): {first} B")
    print(f"  {_describe(calm.first_day)}")
    print(f"steady day ({calm.cycles_steady} cycles): {steady} B")
    print(f"  {_describe(calm.steady_day)}")
    print(f"restart (old daemon.stop, daemon.start, first cycle): {_describe(calm.restart)}")
    print(
        f"  adds {restart} B besides the first cycle's cycle.summary"
        " (state is kept: no check.result is repeated)"
    )
    flap_day = _bytes(flappy.steady_day)
    print(f"steady day, endpoint.ssmmessages failing one cycle an hour: {flap_day} B")
    print(f"  {_describe(flappy.steady_day)}")
    print(
        f"daemon overhead per simulated cycle (events, state file; no checks):"
        f" {calm.cpu_ms_per_cycle:.2f} ms CPU"
    )
    return [
        (
            "log bytes/day, healthy, defaults (steady)",
            f"{steady / 1000:.1f} KB",
            f"<= {GOAL_DAY_BYTES / 1000:g} KB{_verdict(steady <= GOAL_DAY_BYTES)}",
        ),
        ("log bytes, first day (announces all)", f"{first / 1000:.1f} KB", "(figure)"),
        ("log bytes added by a restart", f"{restart / 1000:.2f} KB", "(figure)"),
        ("log bytes/day, one flap an hour", f"{flap_day / 1000:.1f} KB", "(context)"),
    ]


# --------------------------------------------------------------------------------------


def _lab_report(args: argparse.Namespace, tmp: Path) -> tuple[Optional[Report], list[Any]]:
    from tests.lab import netns_unavailable_reason

    reason = netns_unavailable_reason()
    if reason:
        print(f"memory/CPU part skipped: {reason}")
        return None, []
    data = run_lab(args.cycles, args.tracemalloc, tmp, args.in_process)
    rows = print_lab(data, args.cycles, args.tracemalloc)
    if args.where:
        print_where(data["where"])
    return (Report.from_dict(data["report"]) if data["report"] else None), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000, help="real cycles (default 1000)")
    parser.add_argument("--quick", action="store_true", help="50 cycles")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="list the top allocation growth from cycle 10 (inflates RSS)",
    )
    parser.add_argument(
        "--where",
        action="store_true",
        help="after the last cycle: resident memory by mapping, and the modules loaded",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the cycles in a thread of the daemon, not in check workers (for comparison)",
    )
    parser.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.cycles = 50
    if args.cycles < 10:
        parser.error("--cycles must be at least 10")
    if args.child:
        child_main(
            args.child,
            args.cycles,
            args.out,
            args.parent_pid,
            trace=args.tracemalloc,
            in_process=args.in_process,
        )
        return

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds the with-blocks: namespace and servers go

    signal.signal(signal.SIGTERM, terminate)
    from ssmdiag.log import configure_logging

    configure_logging("console", "warning")
    import tempfile  # the parent's; the measured child must not import what ssmdiag does not

    with tempfile.TemporaryDirectory(prefix="ssmdiag-bench-") as name:
        tmp = Path(name)
        lab, rows = _lab_report(args, tmp)
        if lab is not None:
            healthy, forced = healthy_from(lab)
            source = "the lab cycle's report" + (
                f", forced to ok: {', '.join(forced)}" if forced else ""
            )
        else:
            from ssmdiag.checks import CHECK_IDS
            from tests.daemon_helpers import report

            healthy = report(dict.fromkeys(CHECK_IDS, "ok"))
            source = "tests.daemon_helpers.report (short placeholder texts: an underestimate)"
        rows += print_days(healthy, source, tmp)
    print("\n== Summary ==")
    width = max(len(row[0]) for row in rows)
    print(f"{'measure':{width}}  {'result':>12}  goal")
    for measure, result, goal in rows:
        print(f"{measure:{width}}  {result:>12}  {goal}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the with-blocks have already removed the lab
        print("interrupted; the lab namespace and servers are gone", file=sys.stderr)
        sys.exit(130)
