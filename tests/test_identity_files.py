"""Identity from the agent's own files (no network: IMDS is disabled in every test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from tests.conftest import run_cli


def identity_report(
    tmp_path: Path,
    write_config: Callable[[str], Path],
    agent: Path,
    env: dict[str, str] | None = None,
) -> dict[str, dict[str, object]]:
    config = write_config(
        f"[agent]\nbinary = '{agent}'\ndata_dir = '{tmp_path}/data'\n"
        f"config_file = '{tmp_path}/agent.json'\n"
    )
    result = run_cli(
        "check",
        "--format",
        "json",
        "--only",
        "identity",
        "identity.credentials",
        "--config",
        str(config),
        env=env,
    )
    assert "Traceback" not in result.stderr
    return {c["id"]: c for c in json.loads(result.stdout)["checks"]}


def test_hybrid_registration_gives_id_and_region_and_never_the_key(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "registration").write_text(
        json.dumps(
            {
                "ManagedInstanceID": "mi-0123456789abcdef0",
                "Region": "eu-central-1",
                "privateKey": "PRIVATE-KEY-MATERIAL",
            }
        )
    )
    checks = identity_report(tmp_path, write_config, fake_agent_factory("3.3.987.0"))
    assert checks["identity"]["status"] == "ok"
    assert "hybrid node mi-0123456789abcdef0 in eu-central-1" in str(checks["identity"]["summary"])
    assert checks["identity.credentials"]["status"] == "ok"
    assert "PRIVATE-KEY-MATERIAL" not in json.dumps(checks)


def test_region_from_agent_config_and_environment_in_that_order(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    agent = fake_agent_factory("3.3.987.0")
    checks = identity_report(tmp_path, write_config, agent, env={"AWS_REGION": "ap-south-1"})
    details = checks["identity"]["details"]
    assert details["region"] == "ap-south-1" and details["region_source"] == "environment"  # type: ignore[index]
    (tmp_path / "agent.json").write_text(json.dumps({"Agent": {"Region": "sa-east-1"}}))
    checks = identity_report(tmp_path, write_config, agent, env={"AWS_REGION": "ap-south-1"})
    details = checks["identity"]["details"]
    assert details["region"] == "sa-east-1" and details["region_source"] == "agent-config"  # type: ignore[index]
    assert checks["identity"]["status"] == "warn"  # a region, but no instance id anywhere


def test_malformed_runtime_identity_is_reported_not_crashed(
    tmp_path: Path, write_config: Callable[[str], Path], fake_agent_factory: Callable[..., Path]
) -> None:
    runtime = tmp_path / "data" / "runtimeconfig"
    runtime.mkdir(parents=True)
    (runtime / "identity_config.json").write_text("{not json")
    checks = identity_report(tmp_path, write_config, fake_agent_factory("3.3.987.0"))
    assert checks["identity"]["status"] == "fail"  # no region anywhere
    problems = checks["identity"]["details"]["problems"]  # type: ignore[index]
    assert any("identity_config.json: not valid JSON" in p for p in problems)
