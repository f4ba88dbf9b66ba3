"""agent.service: systemd and upstart answers (captured `systemctl show` / `initctl status`
output replayed by stand-in executables, since CI has no systemd as PID 1); and
agent.process_user, judged on real processes started as root and as nobody."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import psutil
import pytest

from ssmdiag.checks.agent_process_user import runs_as_expected
from ssmdiag.engine import run_checks
from ssmdiag.platform.base import AgentProcess, VersionReading
from ssmdiag.platform.linux import LinuxLocations
from tests.conftest import make_platform, require_root, require_tool

DATA = Path(__file__).parent / "data" / "systemctl"


def stand_in(tmp_path: Path, name: str, stdout: str, exit_code: int = 0) -> str:
    """An executable that prints captured output, standing in for a tool this machine lacks."""
    canned = tmp_path / f"{name}.out"
    canned.write_text(stdout)
    script = tmp_path / name
    script.write_text(f"#!/bin/sh\ncat '{canned}'\nexit {exit_code}\n")
    script.chmod(0o755)
    return str(script)


def service_check(
    locations: LinuxLocations, agent: Path, tmp_path: Path, fixture: str | None = None
) -> dict[str, object]:
    if fixture is not None:
        (tmp_path / "run-systemd").mkdir(exist_ok=True)
        locations = dataclasses.replace(
            locations,
            systemd_run_dir=str(tmp_path / "run-systemd"),
            systemctl=stand_in(tmp_path, "systemctl", (DATA / fixture).read_text()),
        )
    platform = make_platform(locations, agent_binary=str(agent))
    return run_checks(platform, platform.config, ["agent.service"]).checks[0].to_dict()


@pytest.fixture
def agent(fake_agent_factory: Callable[..., Path]) -> Path:
    return fake_agent_factory("3.3.987.0")


def test_active_and_enabled_unit_is_ok(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    check = service_check(no_default_agent, agent, tmp_path, "active-enabled.txt")
    assert check["status"] == "ok"
    assert "amazon-ssm-agent.service" in str(check["summary"])
    assert check["details"]["main_pid"] == 1234  # type: ignore[index]


def test_failed_unit_fails_with_the_command_that_starts_it(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    check = service_check(no_default_agent, agent, tmp_path, "failed.txt")
    assert check["status"] == "fail"
    assert "failed" in str(check["summary"])
    assert "systemctl enable --now amazon-ssm-agent.service" in str(check["remediation"])


def test_running_but_disabled_unit_warns_about_reboot(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    check = service_check(no_default_agent, agent, tmp_path, "active-disabled.txt")
    assert check["status"] == "warn" and "boot" in str(check["summary"])


def test_snap_unit_is_recognised(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    check = service_check(no_default_agent, agent, tmp_path, "snap-active.txt")
    assert check["status"] == "ok"
    assert "snap.amazon-ssm-agent.amazon-ssm-agent.service" in str(check["summary"])


def test_no_unit_at_all_fails(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    check = service_check(no_default_agent, agent, tmp_path, "none.txt")
    assert check["status"] == "fail" and "Reinstall" in str(check["remediation"])


def test_hanging_systemctl_is_bounded(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    (tmp_path / "run-systemd").mkdir()
    script = tmp_path / "systemctl"
    script.write_text("#!/bin/sh\nsleep 30\n")
    script.chmod(0o755)
    locations = dataclasses.replace(
        no_default_agent, systemd_run_dir=str(tmp_path / "run-systemd"), systemctl=str(script)
    )
    platform = make_platform(locations, agent_binary=str(agent), subprocess_timeout=0.5)
    check = run_checks(platform, platform.config, ["agent.service"]).checks[0]
    assert check.duration_ms < 5000
    assert check.status.value == "fail" and "no answer within 0.5 s" in check.details["note"]


def test_upstart_job_on_old_distributions(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    initctl = stand_in(tmp_path, "initctl", "amazon-ssm-agent start/running, process 2417\n")
    locations = dataclasses.replace(no_default_agent, initctl=initctl)
    check = service_check(locations, agent, tmp_path)
    assert check["status"] == "ok" and check["details"]["manager"] == "upstart"  # type: ignore[index]


def test_no_service_manager_with_agent_running_warns(
    no_default_agent: LinuxLocations,
    agent: Path,
    tmp_path: Path,
    running_agent: Callable[[Path], subprocess.Popen[bytes]],
) -> None:
    proc = running_agent(agent)
    check = service_check(no_default_agent, agent, tmp_path)
    assert check["status"] == "warn"
    assert f"pid {proc.pid}" in str(check["summary"]) and "no service manager" in str(
        check["summary"]
    )


def test_no_service_manager_and_no_process_fails(
    no_default_agent: LinuxLocations, agent: Path, tmp_path: Path
) -> None:
    check = service_check(no_default_agent, agent, tmp_path)
    assert check["status"] == "fail" and "not running" in str(check["summary"])


def test_snap_package_version_is_read_from_snap_list(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    listing = (
        "Name              Version    Rev   Tracking       Publisher   Notes\n"
        "amazon-ssm-agent  3.3.987.0  9565  latest/stable  aws\u2713        classic\n"
    )
    locations = dataclasses.replace(no_default_agent, snap=stand_in(tmp_path, "snap", listing))
    platform = make_platform(locations)
    check = run_checks(platform, platform.config, ["agent.installed"]).checks[0]
    assert check.status.value == "ok"
    assert check.details["version"] == "3.3.987.0" and check.details["version_source"] == "snap"


def test_proxy_from_the_unit_environment_when_no_agent_process_runs(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    (tmp_path / "run-systemd").mkdir()
    shown = (
        'Environment="https_proxy=http://proxy.corp:3128" '
        '"no_proxy=169.254.169.254,.internal"\n\nEnvironment=\n'
    )
    locations = dataclasses.replace(
        no_default_agent,
        systemd_run_dir=str(tmp_path / "run-systemd"),
        systemctl=stand_in(tmp_path, "systemctl", shown),
    )
    platform = make_platform(locations, region="us-east-1")
    check = run_checks(platform, platform.config, ["network.proxy"]).checks[0]
    assert check.status.value == "ok"
    assert check.details["source"] == "systemd unit Environment="
    assert check.details["https_proxy"] == "http://proxy.corp:3128"
    assert check.details["per_endpoint"]["ssm"] == "http://proxy.corp:3128"


# -- agent.process_user: the agent must run as root (ssm-cli get-diagnostics' rule) ----------
def process_user_check(
    locations: LinuxLocations, agent: Path, pid: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The check, and the entry of its details for `pid` (other agents may run on this host)."""
    platform = make_platform(locations, agent_binary=str(agent))
    check = run_checks(platform, platform.config, ["agent.process_user"]).checks[0].to_dict()
    mine = next(p for p in check["details"]["processes"] if p["pid"] == pid)
    return check, mine


@pytest.fixture
def world_executable_agent(agent: Path) -> Iterator[Path]:
    """A copy of the fake agent that an unprivileged user can execute (pytest's tmp is 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="ssmdiag-agent-user-"))
    directory.chmod(0o755)
    copy = directory / "amazon-ssm-agent"
    shutil.copy2(agent, copy)
    copy.chmod(0o755)
    yield copy
    shutil.rmtree(directory, ignore_errors=True)


def test_agent_running_as_root_is_ok(
    no_default_agent: LinuxLocations,
    agent: Path,
    running_agent: Callable[[Path], subprocess.Popen[bytes]],
) -> None:
    require_root("the agent process must be root's")
    proc = running_agent(agent)
    check, mine = process_user_check(no_default_agent, agent, proc.pid)
    assert mine == {"pid": proc.pid, "user": "root", "uid": 0}
    if check["status"] == "ok":  # another agent on this host could be someone else's
        assert "runs as root" in check["summary"]
    assert check["details"]["expected_user"] == "root"


def test_agent_running_as_nobody_fails_with_the_fix(
    no_default_agent: LinuxLocations, world_executable_agent: Path
) -> None:
    require_root("starting a process as another user")
    setpriv = require_tool("setpriv")
    proc = subprocess.Popen(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", str(world_executable_agent)]
    )
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # setpriv execs the agent: wait for its name
            try:
                if psutil.Process(proc.pid).name() == "amazon-ssm-agent":
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        check, mine = process_user_check(no_default_agent, world_executable_agent, proc.pid)
    finally:
        proc.kill()
        proc.wait(timeout=5)
    assert mine["uid"] == 65534
    assert check["status"] == "fail"
    assert "runs as" in check["summary"] and "not root" in check["summary"]
    assert "User=" in check["remediation"] and "systemctl restart" in check["remediation"]


def test_process_user_is_skipped_when_the_agent_does_not_run(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    platform = make_platform(no_default_agent, agent_binary=str(tmp_path / "none"))
    check = run_checks(platform, platform.config, ["agent.process_user"]).checks[0]
    assert check.status.value == "skip"


@pytest.mark.parametrize(
    ("family", "user", "uid", "verdict"),
    [
        ("linux", "root", 0, True),
        ("linux", "toor", 0, True),  # uid 0 under another name is root
        ("linux", "root", None, True),
        ("linux", "nobody", 65534, False),
        ("linux", "ssm", None, False),
        ("linux", None, None, None),
        ("macos", "root", None, True),
        ("macos", "_ssmagent", None, False),
        ("windows", "LocalSystem", None, True),
        ("windows", "NT AUTHORITY\\SYSTEM", None, True),
        ("windows", "nt authority\\system", None, True),
        ("windows", "SYSTEM", None, True),
        ("windows", ".\\LocalSystem", None, True),
        ("windows", "S-1-5-18", None, True),
        ("windows", "NT AUTHORITY\\LocalService", None, False),
        ("windows", "NT AUTHORITY\\NetworkService", None, False),
        ("windows", ".\\Administrator", None, False),
        ("windows", "CORP\\svc-ssm", None, False),
        ("windows", None, None, None),
    ],
)
def test_expected_user_per_platform(
    family: str, user: Optional[str], uid: Optional[int], verdict: Optional[bool]
) -> None:
    reading = VersionReading("process", "found", "3.3.987.0")
    process = AgentProcess(1, None, user, False, reading, uid=uid)
    assert runs_as_expected(family, process) is verdict
