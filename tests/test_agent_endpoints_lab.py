"""What the agent's config does to its endpoints, probed for real in the network lab.

The oracle test (test_agent_config_oracle.py) proves ssmdiag derives what the agent
derives; these prove the probes then go where the agent goes, over the lab's real DNS,
TCP, TLS and plain HTTP, and that users get the right verdict and fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from tests.lab import LabCA, NetNS, start_dns, start_server
from tests.lab.launcher import start_ssm_endpoints
from tests.test_network_lab import check_in

IDS = ("agent.config", "endpoint.ec2messages", "endpoint.ssm", "endpoint.ssmmessages")


def _agent_json(tmp_path: Path, document: object) -> None:
    (tmp_path / "agent.json").write_text(json.dumps(document))


def test_agent_region_only_signs_so_probes_stay_in_the_identity_region(
    netns: NetNS,
    lab_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    # Only us-east-1 names exist in the lab: a probe of eu-west-1 would fail DNS.
    server = start_ssm_endpoints(netns, lab_ca, address="198.18.0.20")
    _agent_json(tmp_path, {"Agent": {"Region": "eu-west-1"}})
    checks, _, _ = check_in(
        netns, tmp_path, lab_ca, fake_agent_factory(), ids=IDS, validate=validate_report
    )
    for name in ("ssm.us-east-1.amazonaws.com", "ec2messages.us-east-1.amazonaws.com"):
        server.wait_for(lambda e, name=name: e.get("sni") == name)
    ssm = checks["endpoint.ssm"]
    assert ssm["details"]["signing_region"] == "eu-west-1"
    assert ssm["status"] == "fail" and "signs its ssm requests for eu-west-1" in ssm["summary"]
    assert "remove it" in ssm["remediation"]
    # ssmmessages follows Mgs.Region / the identity region, not Agent.Region.
    assert checks["endpoint.ssmmessages"]["status"] == "ok"


def test_mgs_endpoint_without_scheme_gives_the_agent_no_ssmmessages(
    netns: NetNS,
    lab_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    server = start_ssm_endpoints(netns, lab_ca, address="198.18.0.21")
    _agent_json(tmp_path, {"Mgs": {"Endpoint": "ssmmessages.us-east-1.amazonaws.com:443"}})
    checks, _, _ = check_in(
        netns, tmp_path, lab_ca, fake_agent_factory(), ids=IDS, validate=validate_report
    )
    mgs = checks["endpoint.ssmmessages"]
    assert mgs["status"] == "fail" and "no ssmmessages endpoint" in mgs["summary"]
    assert "https://HOST:8443" in mgs["remediation"]
    # Nothing was probed for it: the agent would not connect anywhere either.
    server.wait_for(lambda e: e.get("sni") == "ssm.us-east-1.amazonaws.com")
    assert "ssmmessages.us-east-1.amazonaws.com" not in {r.get("sni") for r in server.events()}
    assert checks["endpoint.ssm"]["status"] == "ok"


def test_plain_http_endpoint_is_probed_as_http_and_flagged_unencrypted(
    netns: NetNS,
    lab_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    start_ssm_endpoints(
        netns,
        lab_ca,
        address="198.18.0.22",
        extra_records={"ssm.internal.example": ["198.18.0.23"]},
    )
    plain = start_server("imds", netns.ensure_address("198.18.0.23"), 80, netns)
    _agent_json(tmp_path, {"Ssm": {"Endpoint": "http://ssm.internal.example"}})
    checks, _, _ = check_in(
        netns, tmp_path, lab_ca, fake_agent_factory(), ids=IDS, validate=validate_report
    )
    ssm = checks["endpoint.ssm"]
    assert ssm["details"]["url"] == "http://ssm.internal.example/"
    assert set(ssm["details"]["phases"]) == {"dns", "tcp", "http"}  # no TLS on plain HTTP
    assert ssm["status"] == "warn" and "not encrypted" in ssm["summary"]
    plain.wait_for(lambda e: e["event"] == "request" and e["path"] == "/")


def test_leading_dot_service_domain_is_named_with_the_corrected_host(
    netns: NetNS,
    lab_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    start_dns(netns, {})
    _agent_json(tmp_path, {"Agent": {"ServiceDomain": ".amazonaws.com"}})
    checks, _, _ = check_in(
        netns, tmp_path, lab_ca, fake_agent_factory(), ids=IDS, validate=validate_report
    )
    for service in ("ssm", "ec2messages", "ssmmessages"):
        check = checks[f"endpoint.{service}"]
        assert check["status"] == "fail", check
        assert f"'{service}.us-east-1..amazonaws.com'" in check["summary"]
        assert f"'{service}.us-east-1.amazonaws.com'" in check["remediation"]


def test_a_config_the_agent_refuses_is_named_and_nothing_crashes(
    netns: NetNS,
    lab_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    start_ssm_endpoints(netns, lab_ca, address="198.18.0.24")
    _agent_json(tmp_path, {"Agent": {"Region": 5}})
    checks, report, _ = check_in(
        netns, tmp_path, lab_ca, fake_agent_factory(), ids=IDS, validate=validate_report
    )
    config = checks["agent.config"]
    assert config["status"] == "fail"
    assert "Agent.Region must be a string, not the number 5" in config["summary"]
    assert "app config could not be loaded" in config["summary"]
    assert report["host"]["region"] == "us-east-1"  # never the number from the file


def test_session_preferences_add_s3_logs_and_kms_probes(
    netns: NetNS,
    lab_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    names = [f"{s}.us-east-1.amazonaws.com" for s in ("s3", "logs")]
    start_ssm_endpoints(
        netns, lab_ca, address="198.18.0.25", extra_records={n: ["198.18.0.27"] for n in names}
    )
    server = start_server(
        "https", netns.ensure_address("198.18.0.27"), 443, netns, ca=lab_ca, hostnames=names
    )
    # kms goes to the agent's Kms.Endpoint, which resolves nowhere in the lab.
    _agent_json(tmp_path, {"Kms": {"Endpoint": "https://kms.unresolvable.example"}})
    ids = ("endpoint.s3", "endpoint.logs", "endpoint.kms", "endpoint.ssm")
    checks, _, _ = check_in(
        netns, tmp_path, lab_ca, fake_agent_factory(), ids=ids, validate=validate_report,
        extra_config="[session]\ns3_bucket = 'logs-123'\nlog_group = '/ssm/sessions'\n"
        "kms_key_id = 'alias/ssm'\n",
    )  # fmt: skip
    assert checks["endpoint.s3"]["status"] == "ok", checks["endpoint.s3"]
    assert checks["endpoint.logs"]["status"] == "ok", checks["endpoint.logs"]
    for name in names:
        server.wait_for(lambda e, name=name: e.get("sni") == name)
    kms = checks["endpoint.kms"]
    assert kms["status"] == "fail" and kms["details"]["host"] == "kms.unresolvable.example"
    assert kms["details"]["source"] == "agent-config"


def test_session_endpoints_skip_without_preferences(
    netns: NetNS,
    lab_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
) -> None:
    start_ssm_endpoints(netns, lab_ca, address="198.18.0.26")
    _agent_json(tmp_path, {})
    checks, _, _ = check_in(
        netns, tmp_path, lab_ca, fake_agent_factory(), ids=("endpoint.s3", "endpoint.kms")
    )
    for check in checks.values():
        assert check["status"] == "skip" and "[session]" in check["summary"]
