from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from ssmdiag.engine import run_checks
from ssmdiag.platform.linux import LinuxLocations
from tests.conftest import make_platform, require_root


def config_check(locations: LinuxLocations, **config: object) -> dict[str, object]:
    platform = make_platform(locations, **config)
    return run_checks(platform, platform.config, ["agent.config"]).checks[0].to_dict()


def test_missing_config_file_means_defaults(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    check = config_check(no_default_agent, agent_config_file=str(tmp_path / "absent.json"))
    assert check["status"] == "ok" and "defaults" in str(check["summary"])


def test_malformed_json_fails_with_line_and_column(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    path = tmp_path / "amazon-ssm-agent.json"
    path.write_text('{\n  "Agent": {\n    "Region": "us-east-1",\n  }\n}\n')
    check = config_check(no_default_agent, agent_config_file=str(path))
    assert check["status"] == "fail"
    assert "line 4, column 3" in str(check["summary"]) and "will not start" in str(check["summary"])
    assert check["details"]["line"] == 4  # type: ignore[index]


def test_json_that_is_not_an_object_fails(no_default_agent: LinuxLocations, tmp_path: Path) -> None:
    path = tmp_path / "amazon-ssm-agent.json"
    path.write_text("[1, 2]")
    check = config_check(no_default_agent, agent_config_file=str(path))
    assert check["status"] == "fail" and "not a JSON object" in str(check["summary"])


def test_overrides_are_read_case_insensitively_like_the_agent(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    path = tmp_path / "amazon-ssm-agent.json"
    path.write_text(
        json.dumps(
            {
                "agent": {"region": "eu-west-1"},
                "MGS": {"endpoint": "vpce-123.ssmmessages.eu-west-1.vpce.amazonaws.com"},
            }
        )
    )
    check = config_check(no_default_agent, agent_config_file=str(path))
    assert check["status"] == "ok"
    settings = check["details"]["settings"]  # type: ignore[index]
    assert settings["Agent.Region"] == "eu-west-1"
    assert settings["Mgs.Endpoint"].startswith("vpce-123")


def test_unreadable_config_is_an_error_that_says_to_run_as_root(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    path = tmp_path / "amazon-ssm-agent.json"
    path.write_text("{}")
    check = config_check(no_default_agent, agent_config_file=str(tmp_path))  # a directory
    assert check["status"] == "error" and str(tmp_path) in str(check["summary"])
    assert "root" in str(check["remediation"])


def test_relocated_agent_reads_its_configuration_directory(
    no_default_agent: LinuxLocations, fake_agent_factory: Callable[..., Path], tmp_path: Path
) -> None:
    require_root("the agent relocates only for root-owned workers and configuration")
    binary = fake_agent_factory("3.3.987.0", name="relocated/amazon-ssm-agent")
    for worker in ("ssm-agent-worker", "ssm-session-worker"):
        (binary.parent / worker).write_text("")
        (binary.parent / worker).chmod(0o755)
    (binary.parent / "configuration").mkdir()
    (binary.parent / "configuration" / "amazon-ssm-agent.json").write_text("{oops")
    check = config_check(no_default_agent, agent_binary=str(binary))
    assert check["details"]["path_source"] == "relocated"  # type: ignore[index]
    assert check["details"]["path"] == os.path.join(
        binary.parent,
        "configuration",  # type: ignore[index]
        "amazon-ssm-agent.json",
    )
    assert check["status"] == "fail"
