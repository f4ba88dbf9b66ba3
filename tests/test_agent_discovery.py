"""Agent discovery on Linux against real parts: ELF binaries, an rpm database, a dpkg database,
running processes."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from ssmdiag.checks import ALL_CHECKS
from ssmdiag.config import Config
from ssmdiag.engine import run_checks
from ssmdiag.platform.linux import LinuxLocations
from tests.conftest import make_platform, require_tool

RPM_SPEC = """Name: amazon-ssm-agent
Version: {version}
Release: 1
Summary: test double of the SSM Agent package
License: Apache-2.0
BuildArch: noarch
%description
Test double.
%files
"""


def build_rpm_db(tmp_path: Path, version: str) -> Path:
    """rpmbuild a real amazon-ssm-agent package and install it into a private rpm database."""
    require_tool("rpmbuild")
    top, db = tmp_path / "rpmtop", tmp_path / "rpmdb"
    db.mkdir()
    spec = tmp_path / "agent.spec"
    spec.write_text(RPM_SPEC.format(version=version))
    subprocess.run(
        ["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}", str(spec)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    package = next(top.rglob("*.rpm"))
    subprocess.run(["rpm", "--dbpath", str(db), "--initdb"], check=True, timeout=60)
    subprocess.run(
        ["rpm", "--dbpath", str(db), "-i", "--justdb", "--nodeps", "--noscripts", str(package)],
        check=True,
        timeout=60,
        capture_output=True,
    )
    return db


def build_dpkg_db(tmp_path: Path, version: str) -> Path:
    """dpkg-deb a real amazon-ssm-agent package and install it into a private dpkg database."""
    require_tool("dpkg-deb")
    root, admin, inst = tmp_path / "debroot", tmp_path / "dpkgadmin", tmp_path / "inst"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: amazon-ssm-agent\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: ssmdiag tests <tests@example.invalid>\nDescription: test double\n"
    )
    for sub in ("info", "updates"):
        (admin / sub).mkdir(parents=True)
    (admin / "status").write_text("")
    inst.mkdir()
    deb = tmp_path / "agent.deb"
    subprocess.run(
        ["dpkg-deb", "--build", str(root), str(deb)], check=True, timeout=60, capture_output=True
    )
    subprocess.run(
        [
            "dpkg",
            f"--admindir={admin}",
            f"--instdir={inst}",
            "--force-script-chrootless",
            "--force-not-root",
            "-i",
            str(deb),
        ],
        check=True,
        timeout=60,
        capture_output=True,
    )
    return admin


def report_for(locations: LinuxLocations, **config: object) -> dict[str, dict[str, object]]:
    platform = make_platform(locations, **config)
    ids = ("agent.installed", "feature.sessions", "feature.port_forwarding")
    report = run_checks(platform, platform.config, ids)
    return {c.id: c.to_dict() for c in report.checks}


def test_no_agent_anywhere_fails_with_install_instructions(
    no_default_agent: LinuxLocations,
) -> None:
    checks = report_for(no_default_agent)
    installed = checks["agent.installed"]
    assert installed["status"] == "fail"
    assert "not installed" in str(installed["summary"])
    assert "dnf install" in str(installed["remediation"])
    assert checks["feature.sessions"]["status"] == "skip"


def test_binary_version_drives_the_feature_verdicts(
    no_default_agent: LinuxLocations, fake_agent_factory: Callable[..., Path]
) -> None:
    old = fake_agent_factory("3.0.161.0")
    checks = report_for(no_default_agent, agent_binary=str(old))
    assert checks["agent.installed"]["status"] == "ok"
    assert "3.0.161.0" in str(checks["agent.installed"]["summary"])
    assert checks["feature.sessions"]["status"] == "ok"
    assert checks["feature.port_forwarding"]["status"] == "warn"
    required = report_for(
        no_default_agent, agent_binary=str(old), required_features=("port_forwarding",)
    )
    assert required["feature.port_forwarding"]["status"] == "fail"


def test_hanging_binary_is_a_bounded_result_not_a_hang(
    no_default_agent: LinuxLocations, fake_agent_factory: Callable[..., Path]
) -> None:
    hanging = fake_agent_factory(mode="hang")
    started = time.monotonic()
    checks = report_for(no_default_agent, agent_binary=str(hanging), subprocess_timeout=0.5)
    assert time.monotonic() - started < 5
    installed = checks["agent.installed"]
    assert installed["status"] == "error"
    assert "no answer within 0.5 s" in str(installed["summary"])
    assert checks["feature.sessions"]["status"] == "error"


def test_garbage_printing_binary_is_named_not_crashed(
    no_default_agent: LinuxLocations, fake_agent_factory: Callable[..., Path]
) -> None:
    garbage = fake_agent_factory(mode="garbage")
    installed = report_for(no_default_agent, agent_binary=str(garbage))["agent.installed"]
    assert installed["status"] == "error"
    assert "exited 2" in str(installed["summary"]) or "printed" in str(installed["summary"])


def test_unparseable_version_is_a_named_result(
    no_default_agent: LinuxLocations, fake_agent_factory: Callable[..., Path]
) -> None:
    weird = fake_agent_factory("latest-build")
    checks = report_for(no_default_agent, agent_binary=str(weird))
    assert checks["agent.installed"]["status"] == "error"
    assert "unparseable SSM Agent version 'latest-build'" in str(
        checks["agent.installed"]["summary"]
    )
    assert checks["feature.sessions"]["status"] == "error"


def test_non_executable_binary_is_reported(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    path = tmp_path / "amazon-ssm-agent"
    path.write_text("not a program")
    path.chmod(0o644)
    installed = report_for(no_default_agent, agent_binary=str(path))["agent.installed"]
    assert installed["status"] == "error" and "permission denied" in str(installed["summary"])


def test_rpm_database_is_read(no_default_agent: LinuxLocations, tmp_path: Path) -> None:
    db = build_rpm_db(tmp_path, "3.2.582.0")
    locations = dataclasses.replace(no_default_agent, rpm_dbpath=str(db))
    installed = report_for(locations)["agent.installed"]
    assert installed["status"] == "ok"
    assert installed["details"]["version"] == "3.2.582.0"  # type: ignore[index]
    assert installed["details"]["version_source"] == "rpm"  # type: ignore[index]


def test_dpkg_database_with_revision_is_read(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    admin = build_dpkg_db(tmp_path, "3.3.987.0-1")
    locations = dataclasses.replace(no_default_agent, dpkg_admindir=str(admin))
    installed = report_for(locations)["agent.installed"]
    assert installed["status"] == "ok"
    assert installed["details"]["version"] == "3.3.987.0"  # type: ignore[index]
    assert installed["details"]["version_source"] == "dpkg"  # type: ignore[index]


def test_binary_changed_outside_the_package_manager_warns(
    no_default_agent: LinuxLocations, fake_agent_factory: Callable[..., Path], tmp_path: Path
) -> None:
    db = build_rpm_db(tmp_path, "3.2.582.0")
    locations = dataclasses.replace(no_default_agent, rpm_dbpath=str(db))
    binary = fake_agent_factory("3.3.987.0")
    installed = report_for(locations, agent_binary=str(binary))["agent.installed"]
    assert installed["status"] == "warn"
    assert "rpm says 3.2.582.0" in str(installed["summary"])
    assert "reinstall" in str(installed["remediation"]).lower()


def test_missing_rpm_tool_is_a_fact_not_a_failure(
    no_default_agent: LinuxLocations, fake_agent_factory: Callable[..., Path], tmp_path: Path
) -> None:
    locations = dataclasses.replace(no_default_agent, rpm=str(tmp_path / "no-rpm"))
    binary = fake_agent_factory("3.3.987.0")
    installed = report_for(locations, agent_binary=str(binary))["agent.installed"]
    assert installed["status"] == "ok"
    sources = {s["source"]: s for s in installed["details"]["sources"]}  # type: ignore[index]
    assert sources["rpm"]["state"] == "unavailable"


def test_running_process_is_found_with_pid_and_user(
    no_default_agent: LinuxLocations,
    fake_agent_factory: Callable[..., Path],
    running_agent: Callable[[Path], subprocess.Popen[bytes]],
) -> None:
    binary = fake_agent_factory("3.3.987.0", name="running/amazon-ssm-agent")
    proc = running_agent(binary)
    installed = report_for(no_default_agent, agent_binary=str(binary))["agent.installed"]
    assert installed["status"] == "ok"
    assert f"pid {proc.pid}" in str(installed["summary"])
    processes = installed["details"]["processes"]  # type: ignore[index]
    mine = next(p for p in processes if p["pid"] == proc.pid)
    assert mine["version"] == "3.3.987.0" and mine["user"]


def test_upgraded_but_not_restarted_agent_warns(
    no_default_agent: LinuxLocations,
    fake_agent_factory: Callable[..., Path],
    running_agent: Callable[[Path], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    binary = fake_agent_factory("3.2.582.0", name="upgrade/amazon-ssm-agent")
    proc = running_agent(binary)
    # The package manager replaces the file (new inode) while the old agent keeps running.
    new = fake_agent_factory("3.3.987.0")
    staged = binary.with_suffix(".new")
    shutil.copy2(new, staged)
    os.replace(staged, binary)
    installed = report_for(no_default_agent, agent_binary=str(binary))["agent.installed"]
    assert installed["status"] == "warn"
    summary = str(installed["summary"])
    assert "3.2.582.0" in summary and "3.3.987.0" in summary and "not restarted" in summary
    assert "systemctl restart amazon-ssm-agent" in str(installed["remediation"])
    # The running version is what serves sessions now, so it is the one reported.
    assert installed["details"]["version"] == "3.2.582.0"  # type: ignore[index]
    assert proc.poll() is None


def test_every_check_has_a_unique_id_and_title() -> None:
    ids = [c.id for c in ALL_CHECKS]
    assert len(ids) == len(set(ids)) and all(c.title for c in ALL_CHECKS)


@pytest.mark.parametrize("config", [Config()])
def test_real_machine_report_never_crashes(config: Config) -> None:
    from ssmdiag.platform.linux import LinuxPlatform

    report = run_checks(LinuxPlatform(config), config)
    assert all(c.status.value != "error" or "crashed" not in c.summary for c in report.checks)
