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


def test_each_unusable_host_gets_the_fix_for_where_it_came_from() -> None:
    """A leading '.' in Agent.ServiceDomain (the agent uses it verbatim), a host:port in
    Mgs.Endpoint (Go reads the host as a URL scheme) and a doubled '.' in an override each
    point at the setting to correct, for every service built from it."""
    plan = plan_endpoints(
        "eu-west-1", {"Agent.ServiceDomain": ".amazonaws.com"}, session_services=("s3",)
    )
    for service in ("ssm", "ec2messages", "ssmmessages", "s3"):
        endpoint = plan.get(service)
        assert endpoint.problem is not None and "is not a valid DNS name" in endpoint.problem
        assert endpoint.fix == (
            "Remove the leading or doubled '.' from Agent.ServiceDomain (the agent uses it "
            f"verbatim: the host should read '{service}.eu-west-1.amazonaws.com'), then "
            "restart the agent."
        )
    mgs = plan_endpoints(
        "eu-west-1", {"Mgs.Endpoint": "ssmmessages.eu-west-1.amazonaws.com:8443"}
    ).get("ssmmessages")
    assert mgs.problem is not None and mgs.problem.startswith(
        "the agent has no ssmmessages endpoint: Mgs.Endpoint"
    )
    assert mgs.fix is not None and mgs.fix.startswith("Write Mgs.Endpoint as a URL with its scheme")
    ssm = plan_endpoints("eu-west-1", {"Ssm.Endpoint": "ssm..example.com"}).get("ssm")
    assert ssm.fix == (
        "Correct the host name in Ssm.Endpoint (or the region it is built from), then "
        "restart the agent."
    )
    nowhere = plan_endpoints(None, {}).get("ssm")
    assert nowhere.fix is not None and nowhere.fix.startswith("Give the node a valid region")


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
