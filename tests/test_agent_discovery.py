"""Agent discovery on Linux against real parts: ELF binaries, an rpm database, a dpkg database,
running processes."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

import psutil
import pytest

from ssmdiag.checks import ALL_CHECKS
from ssmdiag.config import Config
from ssmdiag.engine import run_checks
from ssmdiag.platform.base import AgentPaths, PathStat
from ssmdiag.platform.linux import LinuxLocations, LinuxPlatform, launch_path
from tests.conftest import make_platform, require_root, require_tool

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


# -- which amazon-ssm-agent.json the agent reads (agent/appconfig/constants_unix.go) --------
ROOT_EXEC = PathStat("", "ok", 0, 0, 0o755, "file")
ROOT_DIR = PathStat("", "ok", 0, 0, 0o755, "dir")
ROOT_CONFIG = PathStat("", "ok", 0, 0, 0o644, "file")
RELOCATED = "/opt/ssmagent"
RELOCATED_CONFIG = f"{RELOCATED}/configuration/amazon-ssm-agent.json"


def layout(**overrides: PathStat) -> Callable[[str], PathStat]:
    """A stat function for /opt/ssmagent: root-owned workers 0755 and config 0644, except
    `overrides` (keyed by file name: ssm_agent_worker, configuration, config)."""
    files = {
        "ssm-session-worker": ROOT_EXEC,
        "ssm-agent-worker": ROOT_EXEC,
        "configuration": ROOT_DIR,
        "configuration/amazon-ssm-agent.json": ROOT_CONFIG,
    }
    names = {
        "ssm_session_worker": "ssm-session-worker",
        "ssm_agent_worker": "ssm-agent-worker",
        "configuration": "configuration",
        "config": "configuration/amazon-ssm-agent.json",
    }
    for key, value in overrides.items():
        files[names[key]] = value

    def stat_fn(path: str) -> PathStat:
        name = path[len(RELOCATED) + 1 :] if path.startswith(RELOCATED + "/") else None
        found = files.get(name or "")
        if found is None:
            return PathStat(path, "missing", message="does not exist")
        return dataclasses.replace(found, path=path)

    return stat_fn


def choice_for(binary: Optional[str], stat_fn: Callable[[str], PathStat]) -> AgentPaths:
    platform = LinuxPlatform(Config(), LinuxLocations(), stat_fn=stat_fn)
    return platform.agent_paths(binary)


def test_root_owned_relocated_layout_is_read_like_the_agent_does() -> None:
    paths = choice_for(f"{RELOCATED}/amazon-ssm-agent", layout())
    assert (paths.config_file, paths.config_file_source) == (RELOCATED_CONFIG, "relocated")
    assert "owned by root:root" in paths.config_file_note
    assert paths.ignored_config_file == "" and paths.config_file_fix == ""


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"ssm_agent_worker": dataclasses.replace(ROOT_EXEC, mode=0o775)},
            "ssm-agent-worker is writable by group (mode 0775)",
        ),
        (
            {"ssm_session_worker": dataclasses.replace(ROOT_EXEC, mode=0o757)},
            "ssm-session-worker is writable by others (mode 0757)",
        ),
        (
            {"ssm_agent_worker": dataclasses.replace(ROOT_EXEC, mode=0o700)},
            "ssm-agent-worker has mode 0700",
        ),
        (
            {"ssm_agent_worker": dataclasses.replace(ROOT_EXEC, uid=1000)},
            "ssm-agent-worker is owned by uid 1000, gid 0, not root:root",
        ),
        (
            {"ssm_agent_worker": dataclasses.replace(ROOT_EXEC, gid=100)},
            "ssm-agent-worker is owned by uid 0, gid 100, not root:root",
        ),
        ({"ssm_session_worker": PathStat("", "missing")}, "ssm-session-worker"),
    ],
)
def test_relocated_layout_with_an_untrusted_worker_is_ignored(
    overrides: dict[str, PathStat], reason: str
) -> None:
    paths = choice_for(f"{RELOCATED}/amazon-ssm-agent", layout(**overrides))
    assert (paths.config_file, paths.config_file_source) == (
        "/etc/amazon/ssm/amazon-ssm-agent.json",
        "default",
    )
    note = paths.config_file_note
    assert note.startswith(f"relocated layout in {RELOCATED} ignored: ")
    assert reason in note
    assert "so it reads /etc/amazon/ssm/amazon-ssm-agent.json" in note
    assert paths.ignored_config_file == RELOCATED_CONFIG  # it exists, and does not apply
    worker = "ssm-session-worker" if "ssm_session_worker" in overrides else "ssm-agent-worker"
    fix = paths.config_file_fix
    if overrides.get("ssm_session_worker", ROOT_EXEC).outcome == "missing":
        assert "install ssm-agent-worker and ssm-session-worker there" in fix
    else:
        assert f"sudo chown root:root {RELOCATED}/{worker} && sudo chmod 0755" in fix


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"config": dataclasses.replace(ROOT_CONFIG, uid=1000, gid=1000)},
            f"{RELOCATED_CONFIG} is owned by uid 1000, gid 1000, not root:root",
        ),
        (
            {"configuration": dataclasses.replace(ROOT_DIR, uid=1000)},
            f"{RELOCATED}/configuration is owned by uid 1000, gid 0, not root:root",
        ),
        ({"config": PathStat("", "missing", message="does not exist")}, "does not exist"),
        ({"config": dataclasses.replace(ROOT_CONFIG, kind="dir")}, "is not a regular file"),
    ],
)
def test_relocated_config_not_owned_by_root_leaves_the_agent_on_etc(
    overrides: dict[str, PathStat], reason: str
) -> None:
    paths = choice_for(f"{RELOCATED}/amazon-ssm-agent", layout(**overrides))
    assert paths.config_file == "/etc/amazon/ssm/amazon-ssm-agent.json"
    note = paths.config_file_note
    assert reason in note
    assert f"ignores {RELOCATED_CONFIG}" in note
    fix = paths.config_file_fix
    if overrides.get("config", ROOT_CONFIG).outcome == "missing":
        assert f"create {RELOCATED_CONFIG} owned by root:root" in fix
        assert paths.ignored_config_file == ""
    else:
        assert f"sudo chown root:root {RELOCATED}/configuration {RELOCATED_CONFIG}" in fix
        assert paths.ignored_config_file == RELOCATED_CONFIG


def test_relocated_config_mode_is_not_checked_by_the_agent() -> None:
    # validateRelativeConfigFile checks ownership and file type only: a world-writable
    # root-owned config is still read (measured with the real agent in test_real_agent_node).
    world_writable = dataclasses.replace(ROOT_CONFIG, mode=0o666)
    paths = choice_for(f"{RELOCATED}/amazon-ssm-agent", layout(config=world_writable))
    assert paths.config_file == RELOCATED_CONFIG


def test_usr_bin_never_relocates_even_with_a_configuration_folder() -> None:
    def everything_root_owned(path: str) -> PathStat:
        return dataclasses.replace(ROOT_CONFIG if path.endswith(".json") else ROOT_EXEC, path=path)

    paths = choice_for("/usr/bin/amazon-ssm-agent", everything_root_owned)
    assert paths.config_file == "/etc/amazon/ssm/amazon-ssm-agent.json"
    assert "runs from /usr/bin" in paths.config_file_note


def test_unreadable_worker_is_unknown_not_a_verdict() -> None:
    denied = PathStat("", "denied", message="permission denied")
    paths = choice_for(f"{RELOCATED}/amazon-ssm-agent", layout(ssm_session_worker=denied))
    assert paths.config_file == "/etc/amazon/ssm/amazon-ssm-agent.json"
    note = paths.config_file_note
    assert "cannot tell" in note and "run ssmdiag as root" in note


def test_configured_config_file_wins_but_says_what_the_agent_reads() -> None:
    platform = LinuxPlatform(
        Config(agent_config_file="/srv/agent.json"), LinuxLocations(), stat_fn=layout()
    )
    paths = platform.agent_paths(f"{RELOCATED}/amazon-ssm-agent")
    assert (paths.config_file, paths.config_file_source) == ("/srv/agent.json", "ssmdiag-config")
    assert f"the agent itself reads {RELOCATED_CONFIG}" in paths.config_file_note


def test_relocation_uses_real_ownership_and_modes(tmp_path: Path) -> None:
    """The real stat: a group-writable worker is refused whoever owns it; as root, a
    root-owned layout is read."""
    directory = tmp_path / "agent"
    (directory / "configuration").mkdir(parents=True)
    for worker in ("ssm-session-worker", "ssm-agent-worker"):
        (directory / worker).write_text("#!/bin/sh\n")
        (directory / worker).chmod(0o755)
    config = directory / "configuration" / "amazon-ssm-agent.json"
    config.write_text("{}")
    (directory / "ssm-agent-worker").chmod(0o775)
    platform = LinuxPlatform(Config(), LinuxLocations())
    paths = platform.agent_paths(str(directory / "amazon-ssm-agent"))
    assert paths.config_file == "/etc/amazon/ssm/amazon-ssm-agent.json"
    assert "ssm-agent-worker is writable by group (mode 0775)" in paths.config_file_note
    if os.geteuid() != 0:
        return
    (directory / "ssm-agent-worker").chmod(0o755)
    for path in (directory, directory / "configuration", config):
        os.chown(path, 0, 0)
    paths = platform.agent_paths(str(directory / "amazon-ssm-agent"))
    assert (paths.config_file, paths.config_file_source) == (str(config), "relocated")


@pytest.mark.parametrize(
    ("cmdline", "cwd", "expected"),
    [
        (["/opt/ssmagent/amazon-ssm-agent"], None, "/opt/ssmagent/amazon-ssm-agent"),
        (["./amazon-ssm-agent", "-x"], "/opt/ssmagent", "/opt/ssmagent/amazon-ssm-agent"),
        (["amazon-ssm-agent"], "/root", "/root/amazon-ssm-agent"),  # started through PATH
        (["../bin/./amazon-ssm-agent"], "/usr/lib", "/usr/bin/amazon-ssm-agent"),
        (["amazon-ssm-agent"], None, None),
        ([], "/", None),
        (None, "/", None),
    ],
)
def test_launch_path_is_argv0_made_absolute_as_go_does(
    cmdline: Optional[list[str]], cwd: Optional[str], expected: Optional[str]
) -> None:
    assert launch_path(cmdline, cwd) == expected


def test_running_relocated_agent_decides_which_config_is_read(
    no_default_agent: LinuxLocations,
    fake_agent_factory: Callable[..., Path],
    running_agent: Callable[[Path], subprocess.Popen[bytes]],
) -> None:
    """The running agent's own path (argv[0]) is where its layout comes from: discovery
    records it, with the process's effective uid."""
    binary = fake_agent_factory("3.3.987.0", name="relocated-run/amazon-ssm-agent")
    proc = running_agent(binary)
    time.sleep(0.2)
    platform = make_platform(no_default_agent)
    discovery = platform.discover_agent()
    mine = next(p for p in discovery.processes if p.pid == proc.pid)
    assert mine.launch_path == str(binary)
    assert mine.uid == os.geteuid()
    paths = platform.agent_paths(mine.launch_path)
    assert "relocated layout in" in paths.config_file_note  # no workers beside it
    assert "ssm-session-worker does not exist" in paths.config_file_note


def test_agent_in_another_pid_namespace_is_not_this_nodes_agent(
    no_default_agent: LinuxLocations,
    fake_agent_factory: Callable[..., Path],
    running_agent: Callable[[Path], subprocess.Popen[bytes]],
) -> None:
    """A container's (or a throwaway node's) agent is visible from the host's /proc, but it is
    not the agent that serves this node."""
    require_root("unshare a PID namespace")
    unshare = require_tool("unshare")
    binary = fake_agent_factory("3.3.987.0", name="pidns/amazon-ssm-agent")
    ours = running_agent(binary)
    theirs = subprocess.Popen(
        [unshare, "--pid", "--fork", "--kill-child", "--mount-proc", str(binary)]
    )
    inner: list[int] = []
    try:
        deadline = time.monotonic() + 5
        while not inner and time.monotonic() < deadline:
            inner = [
                child.pid
                for child in psutil.Process(theirs.pid).children(recursive=True)
                if child.name() == "amazon-ssm-agent"
            ]
            time.sleep(0.05)
        assert inner, "the namespaced agent did not start"
        pids = {p.pid for p in make_platform(no_default_agent).discover_agent().processes}
    finally:
        for pid in inner:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        theirs.kill()
        theirs.wait(timeout=5)
    assert ours.pid in pids
    assert not set(inner) & pids
