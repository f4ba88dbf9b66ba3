"""node.disk, agent.restarts and node.time_sync: node faults from the field (issue 12 item 3).

node.disk is judged on real filesystems: tmpfs mounted over /var/lib and /var/log in a
private mount namespace (the host's are untouched), filled to the brim, out of inodes or
remounted read-only, each fault confirmed with df or touch before ssmdiag is judged; the
real `ssmdiag check` runs inside. systemd is not PID 1 here, so its answers come from
stand-in executables printing captured-style output (tests/data/systemctl,
tests/data/timedatectl); chronyc's output in tests/data/chronyc was captured from chrony
4.3 (Debian 12): one chronyd serving on 169.254.169.123 in a private network namespace and
one following it, both with -x (the host clock untouched), and one without any source.
Windows (sc.exe qfailure, w32tm, GetDiskFreeSpaceEx) and macOS (launchctl, systemsetup,
statvfs) are fakes fed with output in the tools' published formats.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional

import psutil
import pytest

from ssmdiag import node_limits
from ssmdiag.agent_config import AgentConfigFacts, judge_agent_config_text
from ssmdiag.checks import node_disk
from ssmdiag.checks.base import Context
from ssmdiag.config import Config
from ssmdiag.engine import run_checks
from ssmdiag.platform.base import FileRead
from ssmdiag.platform.linux import (
    LinuxLocations,
    LinuxPlatform,
    mount_for,
    parse_chronyc_tracking,
    parse_mountinfo,
)
from ssmdiag.platform.macos import (
    AGENT_BINARY,
    LAUNCHD_PLIST,
    MacPlatform,
)
from ssmdiag.platform.process import ProcResult
from ssmdiag.platform.windows import WindowsPlatform, parse_sc_qfailure
from tests.conftest import REPO, hermetic_env, make_platform, require_root, require_tool
from tests.fakes.windows import FakeWindowsApi

DATA = Path(__file__).parent / "data"
MIB = 1024 * 1024
GIB = 1024 * MIB


def stand_in(tmp_path: Path, name: str, answers: list[tuple[str, str, int, str]]) -> str:
    """An executable standing in for a tool this machine cannot run (systemd is not PID 1):
    for the first `case` glob its arguments match, prints the canned text on the named
    stream and exits with the code. answers: (glob, text, exit code, stdout|stderr)."""
    lines = ["#!/bin/sh", 'case "$*" in']
    for index, (pattern, text, code, stream) in enumerate(answers):
        canned = tmp_path / f"{name}.{index}.out"
        canned.write_text(text)
        redirect = " >&2" if stream == "stderr" else ""
        lines.append(f"  {pattern}) cat '{canned}'{redirect}; exit {code};;")
    lines += ['  *) echo "stand-in: unexpected arguments: $*" >&2; exit 64;;', "esac", ""]
    script = tmp_path / name
    script.write_text("\n".join(lines))
    script.chmod(0o755)
    return str(script)


def data(*parts: str) -> str:
    return DATA.joinpath(*parts).read_text()


@pytest.fixture
def agent(fake_agent_factory: Callable[..., Path]) -> Path:
    return fake_agent_factory("3.3.987.0")


def systemd_locations(locations: LinuxLocations, tmp_path: Path, **tools: str) -> LinuxLocations:
    (tmp_path / "run-systemd").mkdir(exist_ok=True)
    return dataclasses.replace(locations, systemd_run_dir=str(tmp_path / "run-systemd"), **tools)


# -- node.disk: real filesystems in a private mount namespace ------------------------------
def disk_check_in_namespace(
    tmp_path: Path, setup: str, validate: Callable[[dict[str, Any]], None]
) -> tuple[int, dict[str, Any], str]:
    """Run `ssmdiag check --only node.disk` in a private mount namespace after `setup`
    (shell lines that mount and fill tmpfs over /var/lib and /var/log); returns the exit
    code, the check and what the setup printed on stderr (its independent verification)."""
    require_root("mounts tmpfs over /var/lib and /var/log in a private mount namespace")
    require_tool("unshare")
    config = tmp_path / "ssmdiag.toml"
    config.write_text("")
    script = (
        f"set -e\n{setup}\n"
        f'exec "$0" -m ssmdiag check --only node.disk --format json --config {config}\n'
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, sys.executable],
        capture_output=True,
        text=True,
        timeout=120,
        env=hermetic_env(),
        cwd=REPO,
    )
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    validate(report)
    [check] = report["checks"]
    assert check["id"] == "node.disk"
    return result.returncode, check, result.stderr


TWO_HEALTHY_TMPFS = (
    "mount -t tmpfs -o size=64m tmpfs /var/lib\nmount -t tmpfs -o size=64m tmpfs /var/log"
)
# df's own view (bytes and inodes available), printed for the test to check first.
DF = "df -B1 --output=avail,iavail {0} | tail -n 1 | sed 's/^/DF {1} /' >&2"


def df_said(stderr: str, label: str) -> tuple[int, int]:
    line = next(line for line in stderr.splitlines() if line.startswith(f"DF {label} "))
    avail, iavail = line.split()[2:4]
    return int(avail), int(iavail)


def test_healthy_filesystems_are_ok_and_each_is_named(
    tmp_path: Path, validate_report: Callable[[dict[str, Any]], None]
) -> None:
    code, check, _ = disk_check_in_namespace(tmp_path, TWO_HEALTHY_TMPFS, validate_report)
    assert code == 0 and check["status"] == "ok", check
    assert "2 agent directories on 2 filesystem(s)" in check["summary"]
    assert "/var/lib (tmpfs)" in check["summary"] and "/var/log (tmpfs)" in check["summary"]
    by_mount = {fs["mount_point"]: fs for fs in check["details"]["filesystems"]}
    # The directories do not exist yet: their nearest existing parents are measured.
    assert by_mount["/var/lib"]["paths"] == [{"role": "data", "path": "/var/lib/amazon/ssm"}]
    assert by_mount["/var/lib"]["measured"] == ["/var/lib"]
    assert by_mount["/var/log"]["paths"] == [{"role": "logs", "path": "/var/log/amazon/ssm"}]
    assert by_mount["/var/log"]["total_bytes"] == 64 * MIB
    assert by_mount["/var/log"]["read_only"] is False
    assert check["remediation"] is None


def test_a_full_log_filesystem_fails_naming_the_path_the_filesystem_and_the_fix(
    tmp_path: Path, validate_report: Callable[[dict[str, Any]], None]
) -> None:
    setup = (
        "mount -t tmpfs -o size=64m tmpfs /var/lib\n"
        "mount -t tmpfs -o size=1m tmpfs /var/log\n"
        "mkdir -p /var/log/amazon/ssm\n"
        "dd if=/dev/zero of=/var/log/amazon/ssm/filler bs=64k count=64 2>/dev/null || true\n"
        + DF.format("/var/log", "log")
    )
    code, check, said = disk_check_in_namespace(tmp_path, setup, validate_report)
    assert df_said(said, "log")[0] == 0  # df agrees: not one byte left
    assert code == 2 and check["status"] == "fail", check
    summary = check["summary"]
    assert summary.startswith("/var/log (tmpfs) has 0 B free of 1.0 MiB")
    assert "/var/log/amazon/ssm (logs)" in summary and "cannot write its logs" in summary
    fix = check["remediation"]
    assert "sudo du -xh --max-depth=3 /var/log" in fix
    assert "journalctl --vacuum-size" in fix and "grow the volume" in fix
    by_mount = {fs["mount_point"]: fs for fs in check["details"]["filesystems"]}
    assert by_mount["/var/log"]["status"] == "fail" and by_mount["/var/lib"]["status"] == "ok"
    # The directory exists now: it is measured itself.
    assert by_mount["/var/log"]["measured"] == ["/var/log/amazon/ssm"]


def test_exhausted_inodes_fail_although_space_is_free(
    tmp_path: Path, validate_report: Callable[[dict[str, Any]], None]
) -> None:
    setup = (
        "mount -t tmpfs -o size=64m,nr_inodes=64 tmpfs /var/lib\n"
        "i=0; while touch /var/lib/f$i 2>/dev/null; do i=$((i+1)); done\n"
        "mount -t tmpfs -o size=64m tmpfs /var/log\n" + DF.format("/var/lib", "lib")
    )
    code, check, said = disk_check_in_namespace(tmp_path, setup, validate_report)
    avail, iavail = df_said(said, "lib")
    assert iavail == 0 and avail > 60 * MIB  # df agrees: no inode left, space to spare
    assert code == 2 and check["status"] == "fail", check
    assert "/var/lib (tmpfs) has 0 free inodes of 64" in check["summary"]
    assert "/var/lib/amazon/ssm (data)" in check["summary"]
    assert "du -x --inodes --max-depth=3 /var/lib" in check["remediation"]
    assert "Ssm.RunCommandLogsRetentionDurationHours" in check["remediation"]


def test_little_space_left_warns_before_it_fails(
    tmp_path: Path, validate_report: Callable[[dict[str, Any]], None]
) -> None:
    # 10 MiB: fail below 1% (102.4 KiB), warn below 5% (512 KiB); 300 KiB are left.
    setup = (
        "mount -t tmpfs -o size=64m tmpfs /var/lib\n"
        "mount -t tmpfs -o size=10m tmpfs /var/log\n"
        "dd if=/dev/zero of=/var/log/filler bs=1k count=9940 2>/dev/null\n"
        + DF.format("/var/log", "log")
    )
    code, check, said = disk_check_in_namespace(tmp_path, setup, validate_report)
    assert df_said(said, "log")[0] == 300 * 1024
    assert code == 1 and check["status"] == "warn", check
    assert (
        "/var/log (tmpfs) has 300.0 KiB free of 10.0 MiB (2.9%, below 512.0 KiB)"
        in (check["summary"])
    )
    assert "will soon be unable to write" in check["summary"]


def test_a_separate_data_filesystem_and_a_read_only_log_filesystem(
    tmp_path: Path, validate_report: Callable[[dict[str, Any]], None]
) -> None:
    setup = (
        TWO_HEALTHY_TMPFS + "\n"
        "mkdir -p /var/lib/amazon/ssm /var/log/amazon/ssm\n"
        "mount -t tmpfs -o size=32m tmpfs /var/lib/amazon/ssm\n"
        "mount -o remount,ro /var/log\n"
        "touch /var/log/amazon/ssm/probe 2>/dev/null || echo 'VERIFIED read-only' >&2"
    )
    code, check, said = disk_check_in_namespace(tmp_path, setup, validate_report)
    assert "VERIFIED read-only" in said
    assert code == 2 and check["status"] == "fail", check
    assert check["summary"].startswith("/var/log (tmpfs) is read-only")
    assert "mount -o remount,rw /var/log" in check["remediation"]
    by_mount = {fs["mount_point"]: fs for fs in check["details"]["filesystems"]}
    # The data directory is its own filesystem, measured as itself.
    assert by_mount["/var/lib/amazon/ssm"]["total_bytes"] == 32 * MIB
    assert by_mount["/var/lib/amazon/ssm"]["measured"] == ["/var/lib/amazon/ssm"]
    assert by_mount["/var/log"]["read_only"] is True


# -- node.disk: which directories, without root ----------------------------------------------
def test_orchestration_directories_follow_the_identity_and_the_agent_config(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    data_dir = tmp_path / "ssm"
    (data_dir / "i-0123456789abcdef0" / "session").mkdir(parents=True)
    platform = make_platform(no_default_agent, agent_data_dir=str(data_dir))
    ctx = Context(platform, platform.config)
    # As a full run leaves them: the identity and agent.config checks ran before node.disk.
    ctx._facts["identity"] = SimpleNamespace(instance_id="i-0123456789abcdef0")
    facts = AgentConfigFacts("/etc/amazon/ssm/amazon-ssm-agent.json", "default", "ok")
    ctx._facts["agent_config"] = judge_agent_config_text(
        facts, '{"Agent": {"OrchestrationRootDir": "orch"}}'
    )
    found, note = node_disk.targets(ctx)
    assert note == ""
    assert found == [
        ("data", str(data_dir)),
        ("logs", "/var/log/amazon/ssm"),
        ("orchestration", f"{data_dir}/i-0123456789abcdef0/session/orch"),
        ("orchestration", f"{data_dir}/i-0123456789abcdef0/document/orch"),
    ]
    finding = node_disk.run(ctx)
    measured = {m for fs in finding.details["filesystems"] for m in fs["measured"]}
    assert f"{data_dir}/i-0123456789abcdef0/session" in measured  # nearest existing parent


def test_without_the_identity_the_orchestration_directories_are_explained() -> None:
    platform = WindowsPlatform(Config(), FakeWindowsApi())
    found, note = node_disk.targets(Context(platform, platform.config))
    assert [role for role, _ in found] == ["data", "logs"]
    assert "the instance id is known only when the identity check runs" in note


@pytest.mark.parametrize(
    ("instance", "short"),
    [("i-0123456789abcdef0", "i-0123456789abcdef0"), ("x" * 60 + "_mi-0abc" * 2, "mi-0abc")],
)
def test_short_instance_id_as_the_agent_shortens_it(instance: str, short: str) -> None:
    assert node_disk.short_instance_id(instance) == short


def test_mountinfo_names_the_visible_mount_and_the_superblock_state() -> None:
    text = (
        "22 1 259:1 / / rw,relatime shared:1 - xfs /dev/nvme0n1p1 rw,attr2\n"
        "40 22 259:1 /data/log /var/log rw,relatime shared:2 - xfs /dev/nvme0n1p1 rw,attr2\n"
        "41 22 0:45 / /mnt/with\\040space ro,relatime - tmpfs tmpfs ro,size=1024k\n"
        "garbage line\n"
    )
    entries = parse_mountinfo(text)
    assert len(entries) == 3 and entries[2].mount_point == "/mnt/with space"
    found = mount_for(entries, "259:1", "/var/log/amazon/ssm")
    assert found is not None and found.mount_point == "/var/log"  # the bind mount
    root = mount_for(entries, "259:1", "/var/lib/amazon/ssm")
    assert root is not None and root.mount_point == "/"
    assert "ro" in entries[2].super_options


def test_floors_judge_big_volumes_by_amount_and_small_ones_by_share() -> None:
    assert node_limits.SPACE_FAIL.of(2048 * GIB) == 50 * MIB  # not 1% of 2 TB
    assert node_limits.SPACE_WARN.of(100 * MIB) == 5 * MIB  # 5% of a small /var/log
    assert node_limits.INODES_FAIL.of(64) == 1  # a full table is always below its floor


# -- agent.restarts on Linux ---------------------------------------------------------------
STARTED_MONOTONIC_S = 8712.345678  # ExecMainStartTimestampMonotonic in the fixtures


def restarts_check(
    locations: LinuxLocations,
    agent: Path,
    tmp_path: Path,
    fixture: str,
    started_ago_s: float,
) -> dict[str, Any]:
    shown = data("systemctl", fixture)
    systemctl = stand_in(tmp_path, "systemctl", [("*NRestarts*|*ExecMainCode*", shown, 0, "")])
    # The fixtures' main process started at 8712.345678 s of CLOCK_MONOTONIC; "now" is
    # that plus the age the test wants (a real clock may not have run that long).
    platform = LinuxPlatform(
        Config(agent_binary=str(agent)),
        systemd_locations(locations, tmp_path, systemctl=systemctl),
        monotonic_fn=lambda: STARTED_MONOTONIC_S + started_ago_s,
    )
    return run_checks(platform, platform.config, ["agent.restarts"]).checks[0].to_dict()


def test_a_unit_never_restarted_is_ok(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    check = restarts_check(no_default_agent, agent, tmp_path, "restarts-running.txt", 3 * 86400)
    assert check["status"] == "ok", check
    assert check["summary"].startswith("amazon-ssm-agent.service never restarted")
    assert "running for 72.0 h" in check["summary"]
    assert "on a crash: Restart=always, after 1min 30s" in check["summary"]


def test_a_unit_waiting_to_restart_after_many_crashes_is_a_crash_loop(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    check = restarts_check(no_default_agent, agent, tmp_path, "restarts-crash-loop.txt", 100)
    assert check["status"] == "fail", check
    assert "is in a crash loop: restarted 5 times" in check["summary"]
    assert "waiting to be started again" in check["summary"]
    assert "(last exit: exit status 2)" in check["summary"]
    fix = check["remediation"]
    assert "sudo tail -n 50 /var/log/amazon/ssm/errors.log" in fix
    assert "journalctl -u amazon-ssm-agent.service" in fix
    assert "sudo systemctl reset-failed amazon-ssm-agent.service" in fix
    assert check["details"]["restarts"] == 5 and check["details"]["waiting_to_restart"]


def test_a_running_unit_restarted_often_and_lately_is_a_crash_loop(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    check = restarts_check(no_default_agent, agent, tmp_path, "restarts-loop-running.txt", 60)
    assert check["status"] == "fail", check
    assert "restarted 4 times" in check["summary"]
    assert "the last start was 60 s ago" in check["summary"]


def test_restarts_long_ago_warn_without_calling_it_a_loop(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    check = restarts_check(no_default_agent, agent, tmp_path, "restarts-recovered.txt", 3600)
    assert check["status"] == "warn", check
    assert "was restarted 2 times since the unit was last started" in check["summary"]
    assert "the last start was 60 min ago" in check["summary"]
    assert "crash loop" not in check["summary"]


def test_start_limit_hit_fails_saying_systemd_gave_up(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    check = restarts_check(no_default_agent, agent, tmp_path, "restarts-start-limit-hit.txt", 30)
    assert check["status"] == "fail", check
    assert "stopped restarting" in check["summary"]
    assert "Result=start-limit-hit" in check["summary"]
    assert "reset-failed" in check["remediation"]


def test_a_unit_that_is_never_restarted_warns_with_the_drop_in(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    check = restarts_check(no_default_agent, agent, tmp_path, "restarts-restart-no.txt", 600)
    assert check["status"] == "warn", check
    assert (
        "amazon-ssm-agent.service is not restarted after every crash (Restart=no"
        in (check["summary"])
    )
    assert "Restart=always" in check["remediation"] and "RestartSec=90" in check["remediation"]


def test_a_failed_unit_without_restart_fails_with_its_exit(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    check = restarts_check(no_default_agent, agent, tmp_path, "restarts-failed-restart-no.txt", 600)
    assert check["status"] == "fail", check
    assert (
        "stopped after a failure (Result=exit-code) (last exit: exit status 1)"
        in (check["summary"])
    )


def test_systemd_without_nrestarts_says_it_cannot_count(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    check = restarts_check(no_default_agent, agent, tmp_path, "restarts-systemd219.txt", 600)
    assert check["status"] == "ok", check
    assert "restarts are not counted here" in check["summary"]
    assert "NRestarts needs 235" in check["summary"]


def test_upstart_and_no_service_manager_are_skipped_with_the_reason(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    platform = make_platform(no_default_agent, agent_binary=str(agent))
    check = run_checks(platform, platform.config, ["agent.restarts"]).checks[0]
    assert check.status.value == "skip" and "no service manager" in check.summary
    initctl = stand_in(
        tmp_path, "initctl", [("*", "amazon-ssm-agent start/running, process 2417\n", 0, "")]
    )
    locations = dataclasses.replace(no_default_agent, initctl=initctl)
    platform = make_platform(locations, agent_binary=str(agent))
    check = run_checks(platform, platform.config, ["agent.restarts"]).checks[0]
    assert check.status.value == "skip" and "upstart keeps no restart history" in check.summary


def test_restarts_are_not_judged_without_an_agent(no_default_agent: LinuxLocations) -> None:
    platform = make_platform(no_default_agent)
    check = run_checks(platform, platform.config, ["agent.restarts"]).checks[0]
    assert check.status.value == "skip" and "not installed" in check.summary


# -- node.time_sync on Linux ---------------------------------------------------------------
def time_sync_check(
    locations: LinuxLocations,
    tmp_path: Path,
    units: str,
    *,
    after: str = "agent-after-stock.txt",
    timedatectl: Optional[tuple[str, int, str]] = None,
    chronyc: Optional[tuple[str, int, str]] = None,
) -> dict[str, Any]:
    systemctl = stand_in(
        tmp_path,
        "systemctl",
        [
            ("*openntpd.service*", data("systemctl", units), 0, ""),
            ("*ActiveState,After*", data("systemctl", after), 0, ""),
        ],
    )
    td_text, td_code, td_stream = timedatectl or (data("timedatectl", "no-bus.txt"), 1, "stderr")
    tools = {
        "systemctl": systemctl,
        "timedatectl": stand_in(tmp_path, "timedatectl", [("*", td_text, td_code, td_stream)]),
    }
    if chronyc is not None:
        tools["chronyc"] = stand_in(tmp_path, "chronyc", [("tracking", *chronyc)])
    else:
        tools["chronyc"] = str(tmp_path / "no-chronyc")
    platform = make_platform(systemd_locations(locations, tmp_path, **tools))
    return run_checks(platform, platform.config, ["node.time_sync"]).checks[0].to_dict()


SYNCED_SHOW = (data("timedatectl", "show-synchronized.txt"), 0, "stdout")
UNSYNCED_SHOW = (data("timedatectl", "show-unsynchronized.txt"), 0, "stdout")
TRACKING_SYNCED = (data("chronyc", "tracking-synchronized.txt"), 0, "stdout")
TRACKING_UNSYNCED = (data("chronyc", "tracking-unsynchronized.txt"), 0, "stdout")


def test_chrony_synchronized_is_ok_and_the_stock_ordering_is_noted(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    check = time_sync_check(
        no_default_agent,
        tmp_path,
        "timesync-chronyd-active.txt",
        timedatectl=SYNCED_SHOW,
        chronyc=TRACKING_SYNCED,
    )
    assert check["status"] == "ok", check
    summary = check["summary"]
    assert summary.startswith("chronyd.service runs; the clock is synchronized (timedatectl show)")
    assert "following 169.254.169.123, offset +0.000002 s" in summary
    assert "not ordered after time-sync.target" in summary
    details = check["details"]
    assert details["agent_ordered_after_time_sync"] is False
    assert "After=time-sync.target" in details["ordering_fix"]
    assert (
        "/etc/systemd/system/amazon-ssm-agent.service.d/time-sync.conf" in (details["ordering_fix"])
    )


def test_an_agent_ordered_after_time_sync_has_nothing_to_note(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    check = time_sync_check(
        no_default_agent,
        tmp_path,
        "timesync-chronyd-active.txt",
        after="agent-after-time-sync.txt",
        timedatectl=SYNCED_SHOW,
        chronyc=TRACKING_SYNCED,
    )
    assert check["status"] == "ok" and "ordered" not in check["summary"], check
    assert check["details"]["agent_ordered_after_time_sync"] is True


def test_chrony_without_a_source_warns_with_its_fix_and_the_ordering(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    check = time_sync_check(
        no_default_agent,
        tmp_path,
        "timesync-chronyd-active.txt",
        timedatectl=UNSYNCED_SHOW,
        chronyc=TRACKING_UNSYNCED,
    )
    assert check["status"] == "warn", check
    assert "chronyd.service runs but the clock is not synchronized" in check["summary"]
    assert "SigV4" in check["summary"]
    fix = check["remediation"]
    assert "chronyc sources -v" in fix and "server 169.254.169.123 prefer iburst" in fix
    assert "sudo systemctl restart chronyd.service" in fix
    assert "After=time-sync.target" in fix


def test_without_timedatectl_chronyc_tells_the_state(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    check = time_sync_check(
        no_default_agent, tmp_path, "timesync-chronyd-active.txt", chronyc=TRACKING_UNSYNCED
    )
    assert check["status"] == "warn", check
    assert "(chronyc tracking (Leap status: Not synchronised))" in check["summary"]


def test_an_installed_but_stopped_chrony_warns_with_the_command_that_starts_it(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    check = time_sync_check(
        no_default_agent, tmp_path, "timesync-chronyd-inactive.txt", timedatectl=UNSYNCED_SHOW
    )
    assert check["status"] == "warn", check
    assert check["summary"].startswith("no time-sync service runs (chronyd.service: inactive")
    assert check["remediation"] == "`sudo systemctl enable --now chronyd.service`."


def test_no_time_sync_service_at_all_warns_with_the_install(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    check = time_sync_check(no_default_agent, tmp_path, "timesync-none.txt")
    assert check["status"] == "warn", check
    assert "(none is installed)" in check["summary"]
    assert "sudo dnf install -y chrony" in check["remediation"]
    assert "sudo apt-get install -y chrony" in check["remediation"]


def test_two_time_sync_services_at_once_warn(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    check = time_sync_check(
        no_default_agent,
        tmp_path,
        "timesync-chrony-and-timesyncd.txt",
        timedatectl=SYNCED_SHOW,
        chronyc=TRACKING_SYNCED,
    )
    assert check["status"] == "warn", check
    assert "(chrony.service, systemd-timesyncd.service)" in check["summary"]
    assert "sudo systemctl disable --now systemd-timesyncd.service" in check["remediation"]


@pytest.fixture
def fake_chronyd(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real process named chronyd (a copy of sleep), as a node without systemd shows one."""
    binary = tmp_path / "bin" / "chronyd"
    binary.parent.mkdir()
    shutil.copy2(require_tool("sleep"), binary)
    proc = subprocess.Popen([str(binary), "60"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and psutil.Process(proc.pid).name() != "chronyd":
        time.sleep(0.05)
    yield proc
    proc.kill()
    proc.wait(timeout=5)


def test_without_systemd_a_running_chronyd_process_is_found(
    no_default_agent: LinuxLocations, tmp_path: Path, fake_chronyd: subprocess.Popen[bytes]
) -> None:
    chronyc = stand_in(tmp_path, "chronyc", [("tracking", *TRACKING_SYNCED)])
    platform = make_platform(dataclasses.replace(no_default_agent, chronyc=chronyc))
    check = run_checks(platform, platform.config, ["node.time_sync"]).checks[0].to_dict()
    assert check["status"] == "ok", check
    assert "chronyd" in [s["name"] for s in check["details"]["services"]]
    assert (
        "the clock is synchronized (chronyc tracking (Leap status: Normal))" in (check["summary"])
    )


def test_without_systemd_and_without_a_daemon_it_is_skipped(
    no_default_agent: LinuxLocations,
) -> None:
    running = {p.info["name"] for p in psutil.process_iter(["name"])}
    if running & {"chronyd", "ntpd", "openntpd", "systemd-timesyn"}:
        pytest.skip("this host runs a time-sync daemon")
    platform = make_platform(no_default_agent)
    check = run_checks(platform, platform.config, ["node.time_sync"]).checks[0]
    assert check.status.value == "skip"
    assert "a container keeps its host's clock" in check.summary


def test_chronyc_tracking_as_captured() -> None:
    synced = parse_chronyc_tracking(TRACKING_SYNCED[0])
    assert synced is not None and synced.synchronized is True
    assert synced.reference == "169.254.169.123" and synced.offset_s == 0.00000181
    unsynced = parse_chronyc_tracking(TRACKING_UNSYNCED[0])
    assert unsynced is not None and unsynced.synchronized is False and unsynced.reference == ""
    assert parse_chronyc_tracking(data("chronyc", "tracking-no-daemon.txt")) is None


# -- Windows (fake fed with sc.exe, w32tm and GetDiskFreeSpaceEx answers) ---------------------
def windows_check(api: FakeWindowsApi, check_id: str) -> dict[str, Any]:
    platform = WindowsPlatform(Config(), api)
    return run_checks(platform, platform.config, [check_id]).checks[0].to_dict()


def windows_disk(free: int, total: int = 30 * GIB) -> FakeWindowsApi:
    api = FakeWindowsApi()
    api.data["dirs"] = ["C:\\ProgramData\\Amazon\\SSM\\InstanceData"]
    api.data["volumes"] = {
        "C:\\": {
            "total": total,
            "free": free,
            "available": free,
            "filesystem": "NTFS",
            "read_only": False,
        }
    }
    return api


def test_windows_full_system_volume_fails_with_disk_cleanup_and_resize() -> None:
    check = windows_check(windows_disk(free=20 * MIB), "node.disk")
    assert check["status"] == "fail", check
    assert check["summary"].startswith("C:\\ (NTFS) has 20.0 MiB free of 30.0 GiB")
    assert "C:\\ProgramData\\Amazon\\SSM\\InstanceData (data)" in check["summary"]
    assert "C:\\ProgramData\\Amazon\\SSM\\Logs (logs)" in check["summary"]
    assert "cleanmgr /d C" in check["remediation"]
    assert "Resize-Partition -DriveLetter C" in check["remediation"]
    [fs] = check["details"]["filesystems"]
    # The log directory does not exist: its nearest existing parent is measured.
    assert fs["measured"] == [
        "C:\\ProgramData\\Amazon\\SSM\\InstanceData",
        "C:\\ProgramData\\Amazon\\SSM",
    ]
    assert fs["inodes_total"] is None


def test_windows_data_on_its_own_volume_is_judged_on_its_own() -> None:
    api = windows_disk(free=12 * GIB)
    api.data["volumes"]["C:\\ProgramData\\Amazon\\SSM\\InstanceData\\"] = {
        "total": 1 * GIB,
        "free": 0,
        "available": 0,
        "filesystem": "NTFS",
        "read_only": False,
    }
    check = windows_check(api, "node.disk")
    assert check["status"] == "fail", check
    assert check["summary"].startswith(
        "C:\\ProgramData\\Amazon\\SSM\\InstanceData\\ (NTFS) has 0 B free of 1.0 GiB"
    )
    assert len(check["details"]["filesystems"]) == 2


def test_windows_healthy_volume_is_ok() -> None:
    check = windows_check(windows_disk(free=12 * GIB), "node.disk")
    assert check["status"] == "ok" and "C:\\ (NTFS) 12.0 GiB free" in check["summary"], check


def windows_with(command: str, fixture: str, code: int = 0) -> FakeWindowsApi:
    api = FakeWindowsApi()
    api.data["commands"][command] = {"stdout": data("windows", fixture), "returncode": code}
    return api


def test_windows_recovery_as_the_agent_installer_sets_it_is_ok() -> None:
    api = windows_with("sc.exe qfailure AmazonSSMAgent", "sc-qfailure-agent.txt")
    check = windows_check(api, "agent.restarts")
    assert check["status"] == "ok", check
    assert "restart after 30 s, restart after 30 s, restart after 30 s" in check["summary"]
    assert "restarts are not counted here" in check["summary"]
    assert "event 7031" in check["summary"]


@pytest.mark.parametrize("fixture", ["sc-qfailure-none.txt", "sc-qfailure-restart-then-none.txt"])
def test_windows_without_a_lasting_restart_action_warns_with_the_installer_command(
    fixture: str,
) -> None:
    check = windows_check(windows_with("sc.exe qfailure AmazonSSMAgent", fixture), "agent.restarts")
    assert check["status"] == "warn", check
    assert "AmazonSSMAgent is not restarted after every crash" in check["summary"]
    assert check["remediation"] == (
        "Set the recovery actions the agent's installer sets: `sc.exe failure AmazonSSMAgent "
        "reset= 86400 actions= restart/30000/restart/30000/restart/30000`."
    )


def test_sc_qfailure_parsing() -> None:
    assert parse_sc_qfailure(data("windows", "sc-qfailure-agent.txt")) == (
        86400,
        [("RESTART", 30000)] * 3,
    )
    assert parse_sc_qfailure(data("windows", "sc-qfailure-none.txt")) == (0, [])
    assert parse_sc_qfailure(data("windows", "sc-qfailure-not-installed.txt")) is None


def test_windows_time_synchronized_with_the_amazon_time_sync_service_is_ok() -> None:
    api = windows_with("w32tm /query /status", "w32tm-status-ec2.txt")
    api.data["services"]["W32Time"] = {"state": "running", "start_type": "auto"}
    check = windows_check(api, "node.time_sync")
    assert check["status"] == "ok", check
    assert "W32Time runs; the clock is synchronized" in check["summary"]
    assert "following 169.254.169.123" in check["summary"]


def test_windows_time_on_the_local_cmos_clock_warns_with_w32tm_config() -> None:
    api = windows_with("w32tm /query /status", "w32tm-status-local-cmos.txt")
    api.data["services"]["W32Time"] = {"state": "running", "start_type": "demand"}
    check = windows_check(api, "node.time_sync")
    assert check["status"] == "warn", check
    assert "W32Time runs but the clock is not synchronized" in check["summary"]
    assert "following Local CMOS Clock" in check["summary"]
    assert "w32tm /config /manualpeerlist:169.254.169.123" in check["remediation"]


def test_windows_time_service_stopped_warns_with_start_service() -> None:
    api = windows_with("w32tm /query /status", "w32tm-not-started.txt", code=-2147023834)
    api.data["services"]["W32Time"] = {"state": "stopped", "start_type": "demand"}
    check = windows_check(api, "node.time_sync")
    assert check["status"] == "warn", check
    assert "no time-sync service runs (W32Time: stopped, start type demand)" in check["summary"]
    assert "Start-Service W32Time" in check["remediation"]


# -- macOS (fake runner fed with launchctl and systemsetup output, fake statvfs) -----------
LAUNCHCTL = ("/bin/launchctl", "print", "system/com.amazon.aws.ssm")
SYSTEMSETUP = ("/usr/sbin/systemsetup", "-getusingnetworktime")


def mac(
    outputs: dict[tuple[str, ...], tuple[str, int]],
    *,
    dirs: Optional[dict[str, int]] = None,
    volumes: Optional[dict[int, SimpleNamespace]] = None,
) -> MacPlatform:
    commands = {
        (AGENT_BINARY, "-version"): (data("macos", "amazon-ssm-agent-version.txt"), 0),
        ("/usr/sbin/pkgutil", "--pkg-info", "com.amazon.aws.ssm"): (
            data("macos", "pkgutil-pkg-info.txt"),
            0,
        ),
        **outputs,
    }

    def run(argv: list[str], timeout: float) -> ProcResult:
        key = tuple(argv)
        if key not in commands:
            return ProcResult(key, "not_found", message="not found")
        text, code = commands[key]
        return ProcResult(key, "ok" if code == 0 else "nonzero", code, text, "", 0.01)

    devices = dirs or {}

    def stat(path: str) -> SimpleNamespace:
        if path not in devices:
            raise FileNotFoundError(path)
        return SimpleNamespace(st_dev=devices[path])

    def statvfs(path: str) -> SimpleNamespace:
        return (volumes or {})[devices[path]]

    return MacPlatform(
        Config(),
        run,
        read_file_fn=lambda path: FileRead(path, "missing", message="does not exist"),
        exists_fn=lambda path: path in (AGENT_BINARY, LAUNCHD_PLIST),
        stat_fn=stat,
        statvfs_fn=statvfs,
    )


def mac_check(platform: MacPlatform, check_id: str) -> dict[str, Any]:
    return run_checks(platform, platform.config, [check_id]).checks[0].to_dict()


@pytest.mark.parametrize(
    ("fixture", "status", "words"),
    [
        ("launchctl-print-running.txt", "ok", "com.amazon.aws.ssm never restarted since launchd"),
        (
            "launchctl-print-spawn-scheduled.txt",
            "fail",
            "com.amazon.aws.ssm is in a crash loop: restarted 13 times since launchd loaded "
            "the job (at boot), it is waiting to be started again (last exit: exit status 2)",
        ),
        ("launchctl-print-not-running.txt", "warn", "was restarted 2 times"),
    ],
)
def test_macos_restarts_from_launchctl(fixture: str, status: str, words: str) -> None:
    platform = mac({LAUNCHCTL: (data("macos", fixture), 0)})
    check = mac_check(platform, "agent.restarts")
    assert check["status"] == status, check
    assert words in check["summary"]
    if status != "ok":
        assert "sudo tail -n 50 /var/log/amazon/ssm/errors.log" in check["remediation"]


@pytest.mark.parametrize(
    ("fixture", "status", "words"),
    [
        ("systemsetup-networktime-on.txt", "ok", "network time (timed) runs"),
        ("systemsetup-networktime-off.txt", "warn", "no time-sync service runs"),
        ("systemsetup-not-admin.txt", "error", "it needs root"),
    ],
)
def test_macos_network_time(fixture: str, status: str, words: str) -> None:
    platform = mac({SYSTEMSETUP: (data("macos", fixture), 0)})
    check = mac_check(platform, "node.time_sync")
    assert check["status"] == status, check
    assert words in check["summary"]
    if status == "warn":
        assert check["remediation"] == "`sudo systemsetup -setusingnetworktime on`."


def apfs(free_blocks: int, blocks: int = 61_000_000, flag: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        f_bsize=4096,
        f_frsize=4096,
        f_blocks=blocks,
        f_bfree=free_blocks,
        f_bavail=free_blocks,
        f_files=free_blocks + 1_500_000,
        f_ffree=free_blocks,
        f_flag=flag,
    )


def test_macos_disk_paths_are_the_agents_and_a_nearly_full_volume_warns() -> None:
    # The data volume holds /opt and /var (firmlinks), "/" is the sealed system volume.
    dirs = {"/": 1, "/opt": 2, "/opt/aws": 2, "/opt/aws/ssm": 2, "/opt/aws/ssm/data": 2}
    dirs |= {"/var": 2, "/var/log": 2}
    platform = mac({}, dirs=dirs, volumes={1: apfs(0, flag=os.ST_RDONLY), 2: apfs(30_000)})
    check = mac_check(platform, "node.disk")
    assert check["status"] == "warn", check  # 117 MiB left of 232 GiB: below 200 MiB
    [fs] = check["details"]["filesystems"]
    assert fs["paths"] == [
        {"role": "data", "path": "/opt/aws/ssm/data"},
        {"role": "logs", "path": "/var/log/amazon/ssm"},
    ]
    assert fs["mount_point"] == "/opt"  # the top of the data volume above the directory
    assert fs["measured"] == ["/opt/aws/ssm/data", "/var/log"]
    assert fs["read_only"] is False
    assert "sudo du -xh -d 3 /opt" in check["remediation"]


def test_macos_sealed_system_volume_is_not_called_read_only_for_a_missing_agent() -> None:
    # No /opt/aws and no /var/log: "/" (read-only by design) is all that exists.
    platform = mac({}, dirs={"/": 1}, volumes={1: apfs(2_000_000, flag=os.ST_RDONLY)})
    check = mac_check(platform, "node.disk")
    assert check["status"] == "ok", check
    assert check["details"]["filesystems"][0]["read_only"] is None
