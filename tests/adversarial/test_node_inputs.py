"""Hostile things on the node itself: the agent's files, its environment, its service
manager's answers. Each becomes a finding with a fix, never a hang or a traceback."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Callable

from ssmdiag.engine import run_checks
from ssmdiag.platform.linux import LinuxLocations
from tests.conftest import make_platform
from tests.test_agent_service import DATA, stand_in


def one_check(locations: LinuxLocations, check_id: str, **config: object) -> dict[str, object]:
    platform = make_platform(locations, **config)
    return run_checks(platform, platform.config, [check_id]).checks[0].to_dict()


def test_an_agent_config_that_is_a_fifo_is_named_not_waited_on(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    fifo = tmp_path / "amazon-ssm-agent.json"
    os.mkfifo(fifo)
    started = time.monotonic()
    check = one_check(no_default_agent, "agent.config", agent_config_file=str(fifo))
    assert time.monotonic() - started < 5
    assert check["status"] == "error" and "FIFO" in str(check["summary"])


def test_a_huge_valid_agent_config_is_not_called_broken(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    path = tmp_path / "amazon-ssm-agent.json"
    padding = {"Unknown": {"Field": "x" * (3 * 1024 * 1024)}}
    path.write_text(json.dumps({**padding, "Agent": {"Region": "us-east-1"}}))
    check = one_check(no_default_agent, "agent.config", agent_config_file=str(path))
    # The agent would accept it; ssmdiag read only its first MiB and says so.
    assert check["status"] == "warn"
    assert "could not be judged" in str(check["summary"]) and "larger than" in str(check["summary"])


def test_a_proxy_at_the_end_of_a_huge_agent_environment_is_found(
    fake_agent_factory: Callable[..., Path], no_default_agent: LinuxLocations
) -> None:
    agent = fake_agent_factory("3.3.987.0")
    env = {f"PAD{i}": "x" * 100_000 for i in range(8)}  # 800 KB before the proxy
    env["https_proxy"] = "http://proxy.corp.example:3128"
    env["no_proxy"] = "169.254.169.254"
    proc = subprocess.Popen([str(agent)], env=env)
    try:
        time.sleep(0.3)
        check = one_check(no_default_agent, "network.proxy", agent_binary=str(agent))
    finally:
        proc.kill()
        proc.wait(5)
    details = check["details"]
    assert isinstance(details, dict)
    assert details["https_proxy"] == "http://proxy.corp.example:3128", check
    assert "/proc/" in str(details["source"])


def test_a_garbage_main_pid_from_systemctl_is_a_finding(
    no_default_agent: LinuxLocations, fake_agent_factory: Callable[..., Path], tmp_path: Path
) -> None:
    (tmp_path / "run-systemd").mkdir()
    shown = (DATA / "active-enabled.txt").read_text().replace("MainPID=1234", "MainPID=12ab")
    locations = dataclasses.replace(
        no_default_agent,
        systemd_run_dir=str(tmp_path / "run-systemd"),
        systemctl=stand_in(tmp_path, "systemctl", shown),
    )
    check = one_check(locations, "agent.service", agent_binary=str(fake_agent_factory("3.3.987.0")))
    assert check["status"] in ("ok", "warn"), check
    assert "crashed" not in str(check["summary"]) and "could not gather" not in str(
        check["summary"]
    )


def test_deeply_nested_identity_files_are_problems_not_crashes(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    data = tmp_path / "agent-data"
    (data / "runtimeconfig").mkdir(parents=True)
    (data / "Vault").mkdir()
    deep = "[" * 50_000 + "]" * 50_000
    for path in (
        data / "registration",
        data / "runtimeconfig" / "identity_config.json",
        data / "Vault" / "Manifest",
    ):
        path.write_text(deep)
    check = one_check(no_default_agent, "identity", agent_data_dir=str(data), region="us-east-1")
    assert check["status"] != "error", check
    assert "crashed" not in str(check["summary"]) and "could not gather" not in str(
        check["summary"]
    )
