from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import botocore.loaders
import botocore.regions
import pytest

from ssmdiag.endpoints import EndpointError, plan_endpoints
from ssmdiag.partitions import dns_suffix
from tests.conftest import run_cli


def _botocore_regions() -> list[tuple[str, dict[str, Any]]]:
    data = botocore.loaders.Loader().load_data("endpoints")
    return [
        (region, partition) for partition in data["partitions"] for region in partition["regions"]
    ]


@pytest.mark.parametrize(
    ("region", "partition"), _botocore_regions(), ids=[r for r, _ in _botocore_regions()]
)
def test_derivation_matches_botocore_for_every_region(
    region: str, partition: dict[str, Any]
) -> None:
    data = botocore.loaders.Loader().load_data("endpoints")
    resolver = botocore.regions.EndpointResolver(data)
    plan = plan_endpoints(region, {})
    assert plan.dns_suffix == partition["dnsSuffix"] == dns_suffix(region)
    assert plan.get("ssm").host == resolver.construct_endpoint("ssm", region)["hostname"]
    template = partition["defaults"]["hostname"]  # "{service}.{region}.{dnsSuffix}"
    for service in ("ec2messages", "ssmmessages"):
        expected = template.format(service=service, region=region, dnsSuffix=partition["dnsSuffix"])
        assert plan.get(service).host == expected


def test_agent_config_overrides_apply_as_the_agent_applies_them() -> None:
    plan = plan_endpoints(
        "us-east-1",
        {
            "Mgs.Endpoint": "https://vpce-0abc-ssmmessages.us-east-1.vpce.amazonaws.com",
            "Mds.Endpoint": "ec2messages.internal.example:8443",
            "Agent.ServiceDomain": "example.org",
        },
    )
    mgs, mds, ssm = plan.get("ssmmessages"), plan.get("ec2messages"), plan.get("ssm")
    assert (mgs.host, mgs.port, mgs.source) == (
        "vpce-0abc-ssmmessages.us-east-1.vpce.amazonaws.com",
        443,
        "agent-config",
    )
    assert (mds.host, mds.port, mds.url) == (
        "ec2messages.internal.example",
        8443,
        "https://ec2messages.internal.example:8443/",
    )
    assert (ssm.host, ssm.source) == ("ssm.us-east-1.example.org", "default")
    assert plan.dns_suffix == "example.org"


def test_ssmdiag_override_wins_over_the_agent_config() -> None:
    plan = plan_endpoints("us-east-1", {"Ssm.Endpoint": "a.example"}, {"ssm": "b.example"})
    assert (plan.get("ssm").host, plan.get("ssm").source) == ("b.example", "ssmdiag-config")


def test_an_agent_endpoint_the_agent_cannot_use_is_a_problem_not_a_crash() -> None:
    ssm = plan_endpoints("us-east-1", {"Ssm.Endpoint": "ftp://x.example"}).get("ssm")
    assert ssm.problem is not None and "unsupported scheme 'ftp'" in ssm.problem
    assert ssm.fix is not None and "Ssm.Endpoint" in ssm.fix


def test_an_ssmdiag_override_that_is_not_https_is_rejected() -> None:
    with pytest.raises(EndpointError, match="not a host or https URL"):
        plan_endpoints("us-east-1", {}, {"ssm": "ftp://x.example"})


def test_endpoints_command_prints_the_documented_json(
    tmp_path: Path, write_config: Callable[[str], Path]
) -> None:
    agent_config = tmp_path / "amazon-ssm-agent.json"
    agent_config.write_text(
        json.dumps({"Mgs": {"Endpoint": "mgs.example.net"}, "Agent": {"Region": "cn-north-1"}})
    )
    result = run_cli(
        "endpoints",
        "--region",
        "cn-northwest-1",
        "--format",
        "json",
        "--agent-config",
        str(agent_config),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["region"] == "cn-northwest-1" and data["dns_suffix"] == "amazonaws.com.cn"
    by_service = {e["service"]: e for e in data["endpoints"]}
    assert set(by_service) == {"ec2messages", "ssm", "ssmmessages"}
    assert by_service["ssm"] == {
        "service": "ssm",
        "host": "ssm.cn-northwest-1.amazonaws.com.cn",
        "port": 443,
        "url": "https://ssm.cn-northwest-1.amazonaws.com.cn/",
        "source": "default",
        # Agent.Region signs; the host follows the identity region (ssm/service.go:93-99).
        "signing_region": "cn-north-1",
        "origin": "identity region cn-northwest-1 and the partition's suffix",
    }
    assert by_service["ssmmessages"]["host"] == "mgs.example.net"
    assert by_service["ssmmessages"]["source"] == "agent-config"
    assert by_service["ssmmessages"]["signing_region"] == "cn-northwest-1"
    text = run_cli("endpoints", "--region", "cn-northwest-1", "--agent-config", str(agent_config))
    assert "https://mgs.example.net/  [signed for cn-northwest-1]" in text.stdout
    assert "from Mgs.Endpoint in the agent config" in text.stdout


@pytest.mark.parametrize("region", ["us east 1", "x" * 101, "us-east-1;rm"])
def test_bad_region_is_a_usage_error(region: str, write_config: Callable[[str], Path]) -> None:
    result = run_cli("endpoints", "--region", region)
    assert result.returncode == 64 and "invalid region" in result.stderr
    config = write_config(f"[network]\nregion = '{region}'\n")
    assert run_cli("endpoints", "--config", str(config)).returncode == 78


def test_no_region_anywhere_says_how_to_set_one(tmp_path: Path) -> None:
    result = run_cli("endpoints", "--agent-config", str(tmp_path / "none.json"))
    assert result.returncode == 3 and "--region" in result.stderr
    check = run_cli(
        "check",
        "--format",
        "json",
        "--only",
        "endpoint.ssm",
        "--agent-config",
        str(tmp_path / "none.json"),
    )
    found = json.loads(check.stdout)["checks"][0]
    # Not an error of this check: identity fails and says how; this one says why it skips.
    assert found["status"] == "skip" and "--region" in found["summary"]
