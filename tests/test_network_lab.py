"""The network checks against a real lab: names resolved by dnsmasq inside a network
namespace, real TLS servers, real proxies, a real IMDSv2 stand-in. Nothing leaves the
namespace; no real AWS endpoint is contacted."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from tests.conftest import REPO, hermetic_env
from tests.lab import LabCA, NetNS, closed_port, ssm_endpoints, start_dns, start_server
from tests.lab.dns import dns_timeout
from tests.lab.launcher import start_ssm_endpoints

REGION = "us-east-1"
NAMES = ssm_endpoints(REGION)
SSM, EC2MESSAGES, SSMMESSAGES = (
    f"{s}.{REGION}.amazonaws.com" for s in ("ssm", "ec2messages", "ssmmessages")
)
NETWORK_IDS = (
    "identity",
    "network.proxy",
    "endpoint.ec2messages",
    "endpoint.ssm",
    "endpoint.ssmmessages",
    "clock.skew",
)


def check_in(
    ns: NetNS,
    tmp_path: Path,
    ca: LabCA,
    agent: Path,
    *,
    ids: tuple[str, ...] = NETWORK_IDS,
    extra_config: str = "",
    env: Optional[dict[str, str]] = None,
    region: Optional[str] = REGION,
    validate: Optional[Callable[[dict[str, Any]], None]] = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], float]:
    config = tmp_path / "ssmdiag.toml"
    config.write_text(
        f"[agent]\nbinary = '{agent}'\nconfig_file = '{tmp_path}/agent.json'\n"
        f"data_dir = '{tmp_path}/agent-data'\n"
        f"[network]\nca_bundle = '{ca.ca_pem}'\nconnect_timeout = 2\nprobe_timeout = 3\n"
        + extra_config
    )
    argv = [
        sys.executable,
        "-m",
        "ssmdiag",
        "check",
        "--format",
        "json",
        "--config",
        str(config),
        "--only",
        *ids,
    ]
    if region:
        argv += ["--region", region]
    started = time.monotonic()
    result = ns.run(argv, timeout=60, env=hermetic_env(env), cwd=str(REPO))
    elapsed = time.monotonic() - started
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    if validate:
        validate(report)
    return {c["id"]: c for c in report["checks"]}, report, elapsed


def test_healthy_path_reports_every_phase(
    netns: NetNS,
    lab_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    server = start_ssm_endpoints(netns, lab_ca, address="10.0.5.10")
    checks, report, _ = check_in(
        netns, tmp_path, lab_ca, fake_agent_factory("3.3.987.0"), validate=validate_report
    )
    for service in ("ec2messages", "ssm", "ssmmessages"):
        check = checks[f"endpoint.{service}"]
        assert check["status"] == "ok", check
        phases = check["details"]["phases"]
        assert set(phases) == {"dns", "tcp", "tls", "http"}
        assert phases["tls"]["version"].startswith("TLS")
        assert "Lab" in phases["tls"]["issuer"] or phases["tls"]["issuer"] != "?"
        assert check["details"]["http_status"] == 400  # any HTTP answer proves the path
        assert "private, VPC endpoint" in check["summary"]
    assert checks["clock.skew"]["status"] == "ok"
    assert checks["identity"]["details"]["region_source"] == "ssmdiag-config"
    assert report["host"]["region"] == REGION
    assert {r["sni"] for r in server.requests()} >= set(NAMES)


def test_nxdomain_says_the_name_does_not_exist(
    netns: NetNS, lab_ca: LabCA, tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    start_dns(netns, {})
    checks, _, _ = check_in(netns, tmp_path, lab_ca, fake_agent_factory("3.3.987.0"))
    check = checks["endpoint.ssm"]
    assert check["status"] == "fail" and check["details"]["failure"] == "dns_not_found"
    assert SSM in check["summary"] and "private DNS" in check["remediation"]
    assert checks["clock.skew"]["status"] == "skip"


def test_dns_timeout_is_named(
    netns: NetNS, lab_ca: LabCA, tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    dns_timeout(netns)
    checks, _, _ = check_in(
        netns, tmp_path, lab_ca, fake_agent_factory("3.3.987.0"), ids=("endpoint.ssm",)
    )
    assert checks["endpoint.ssm"]["details"]["failure"] == "dns_timeout"
    assert "resolv.conf" in checks["endpoint.ssm"]["remediation"]


def test_blackholed_endpoints_time_out_concurrently_within_one_probe_timeout(
    netns: NetNS, lab_ca: LabCA, tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    hole = netns.blackhole("198.18.99.0/24")
    start_dns(netns, {name: [hole] for name in NAMES})
    checks, _, elapsed = check_in(netns, tmp_path, lab_ca, fake_agent_factory("3.3.987.0"))
    for service in ("ec2messages", "ssm", "ssmmessages"):
        check = checks[f"endpoint.{service}"]
        assert check["details"]["failure"] == "connection_timeout"
        assert "security group" in check["remediation"]
    # connect_timeout is 2 s: three sequential probes would need 6 s plus start-up.
    assert elapsed < 5.5, elapsed


def test_refused_port_is_named(
    netns: NetNS, lab_ca: LabCA, tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    address = netns.ensure_address("198.18.0.30")
    closed_port(address, netns)
    start_dns(netns, {name: [address] for name in NAMES})
    checks, _, _ = check_in(
        netns, tmp_path, lab_ca, fake_agent_factory("3.3.987.0"), ids=("endpoint.ssm",)
    )
    assert checks["endpoint.ssm"]["details"]["failure"] == "connection_refused"


def test_intercepting_certificate_is_untrusted_and_its_issuer_named(
    netns: NetNS,
    lab_ca: LabCA,
    lab_intercept_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
) -> None:
    start_ssm_endpoints(netns, lab_intercept_ca, address="198.18.0.40")
    checks, _, _ = check_in(
        netns, tmp_path, lab_ca, fake_agent_factory("3.3.987.0"), ids=("endpoint.ssm",)
    )
    check = checks["endpoint.ssm"]
    assert check["details"]["failure"] == "tls_untrusted"
    assert "Corp Intercept CA" in check["summary"]
    assert "intercepting TLS" in check["remediation"]


def test_stalled_tls_handshake_is_named(
    netns: NetNS, lab_ca: LabCA, tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    start_dns(netns, {name: ["198.18.0.50"] for name in NAMES})
    start_server("tls_stall", "198.18.0.50", 443, netns)
    checks, _, _ = check_in(
        netns, tmp_path, lab_ca, fake_agent_factory("3.3.987.0"), ids=("endpoint.ssm",)
    )
    assert checks["endpoint.ssm"]["details"]["failure"] == "tls_timeout"


def test_clock_ten_minutes_off_fails_and_two_minutes_warns(
    netns: NetNS, lab_ca: LabCA, tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    server = start_ssm_endpoints(netns, lab_ca, address="198.18.0.60", date_offset=-600)
    agent = fake_agent_factory("3.3.987.0")
    checks, _, _ = check_in(netns, tmp_path, lab_ca, agent, ids=("endpoint.ssm", "clock.skew"))
    assert checks["clock.skew"]["status"] == "fail"
    assert (
        "ahead of" in checks["clock.skew"]["summary"] and "SigV4" in checks["clock.skew"]["summary"]
    )
    server.stop()
    start_server("https", "198.18.0.60", 443, netns, ca=lab_ca, hostnames=NAMES, date_offset=120)
    checks, _, _ = check_in(netns, tmp_path, lab_ca, agent, ids=("endpoint.ssm", "clock.skew"))
    assert checks["clock.skew"]["status"] == "warn" and "behind" in checks["clock.skew"]["summary"]


def test_probes_use_the_running_agents_proxy_and_honour_its_no_proxy(
    netns: NetNS, lab_ca: LabCA, tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    start_ssm_endpoints(netns, lab_ca, address="198.18.0.70")
    proxy = start_server("proxy", netns.ensure_address("198.18.0.71"), 3128, netns)
    agent = fake_agent_factory("3.3.987.0", name="proxied/amazon-ssm-agent")
    # The agent runs with a proxy in its environment; ssmdiag's own environment has none.
    netns.popen(
        [str(agent)],
        env=hermetic_env(
            {
                "https_proxy": f"http://labuser:secret@{proxy.host}:3128",
                "no_proxy": f"169.254.169.254,{EC2MESSAGES}",
            }
        ),
    )
    checks, _, _ = check_in(netns, tmp_path, lab_ca, agent)
    assert checks["endpoint.ssm"]["status"] == "ok"
    assert checks["endpoint.ssm"]["details"]["proxy"] == f"http://***@{proxy.host}:3128"
    assert checks["endpoint.ec2messages"]["details"]["proxy"] is None  # no_proxy
    targets = proxy.connect_targets()
    assert f"{SSM}:443" in targets and f"{EC2MESSAGES}:443" not in targets
    proxy_check = checks["network.proxy"]
    assert proxy_check["status"] == "ok" and "/proc/" in proxy_check["details"]["source"]
    # Which no_proxy entry sends ec2messages direct, in details and in the summary.
    assert proxy_check["details"]["bypassed"] == {"ec2messages": f"no_proxy: {EC2MESSAGES}"}
    assert f"ec2messages via direct (no_proxy: {EC2MESSAGES})" in proxy_check["summary"]
    assert "secret" not in json.dumps(checks)  # credentials never appear


def test_proxy_without_imds_exemption_warns_and_proxy_errors_are_classified(
    netns: NetNS, lab_ca: LabCA, tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    start_ssm_endpoints(netns, lab_ca, address="198.18.0.80")
    auth = start_server("proxy", netns.ensure_address("198.18.0.81"), 3128, netns, mode="auth")
    refuse = start_server("proxy", netns.ensure_address("198.18.0.82"), 3128, netns, mode="refuse")
    agent = fake_agent_factory("3.3.987.0", name="proxied2/amazon-ssm-agent")
    netns.popen(
        [str(agent)],
        env=hermetic_env(
            {
                "HTTPS_PROXY": f"http://{auth.host}:3128",
                "https_proxy": f"http://{refuse.host}:3128",  # Go takes the upper-case one
                # IMDS (plain http) goes to a proxy only through http_proxy (Go's
                # ProxyFromEnvironment): this one sends it there, so ssmdiag warns.
                "http_proxy": f"http://{auth.host}:3128",
            }
        ),
    )
    checks, _, _ = check_in(netns, tmp_path, lab_ca, agent, ids=("network.proxy", "endpoint.ssm"))
    assert checks["endpoint.ssm"]["details"]["failure"] == "proxy_auth_required"
    assert "407" in checks["endpoint.ssm"]["summary"]
    assert checks["network.proxy"]["status"] == "warn"
    assert "169.254.169.254" in checks["network.proxy"]["summary"]


def test_imds_gives_region_instance_and_profile(
    netns: NetNS, lab_ca: LabCA, tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    start_ssm_endpoints(netns, lab_ca, region="eu-west-1", address="198.18.0.90")
    imds = start_server(
        "imds",
        netns.ensure_address("169.254.169.254"),
        80,
        netns,
        instance_id="i-0123456789abcdef0",
        region="eu-west-1",
        profile_arn="arn:aws:iam::111122223333:instance-profile/ssm",
    )
    env = {"AWS_EC2_METADATA_DISABLED": "false"}
    checks, report, _ = check_in(
        netns,
        tmp_path,
        lab_ca,
        fake_agent_factory("3.3.987.0"),
        ids=("identity", "identity.credentials", "endpoint.ssm"),
        env=env,
        region=None,
    )
    assert checks["identity"]["status"] == "ok"
    assert checks["identity"]["details"]["region_source"] == "imds"
    assert report["host"] == {
        **report["host"],
        "instance_id": "i-0123456789abcdef0",
        "region": "eu-west-1",
    }
    assert checks["identity.credentials"]["status"] == "ok"
    assert "instance-profile/ssm" in checks["identity.credentials"]["summary"]
    assert checks["endpoint.ssm"]["status"] == "ok"
    assert all(
        "X-aws-ec2-metadata-token" in r["headers"] or r["method"] == "PUT" for r in imds.requests()
    )


def test_no_instance_profile_fails_with_both_fixes(
    netns: NetNS, lab_ca: LabCA, tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    start_server(
        "imds",
        netns.ensure_address("169.254.169.254"),
        80,
        netns,
        instance_id="i-0abc1234abcd56789",  # a real id's shape (IMDS answers are validated)
        region="us-east-1",
        profile_arn="",
    )
    checks, _, _ = check_in(
        netns,
        tmp_path,
        lab_ca,
        fake_agent_factory("3.3.987.0"),
        ids=("identity.credentials",),
        env={"AWS_EC2_METADATA_DISABLED": "false"},
        region=None,
    )
    check = checks["identity.credentials"]
    assert check["status"] == "fail"
    assert "AmazonSSMManagedInstanceCore" in check["remediation"]
    assert "Default Host Management" in check["remediation"]


def test_imds_hop_limit_symptom_warns_with_the_fix(
    netns: NetNS, lab_ca: LabCA, tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    start_server("imds", netns.ensure_address("169.254.169.254"), 80, netns, hop_limit=True)
    checks, _, _ = check_in(
        netns,
        tmp_path,
        lab_ca,
        fake_agent_factory("3.3.987.0"),
        ids=("identity", "endpoint.ssm"),
        env={"AWS_EC2_METADATA_DISABLED": "false"},
        region=None,
    )
    assert checks["identity"]["status"] == "warn"
    assert "hop-limit 2" in checks["identity"]["remediation"]
    endpoint = checks["endpoint.ssm"]
    assert endpoint["status"] == "skip" and "--region" in endpoint["summary"]


def test_unreachable_ec2messages_only_warns_for_agents_that_no_longer_need_it(
    netns: NetNS, lab_ca: LabCA, tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    start_ssm_endpoints(
        netns, lab_ca, address="198.18.0.100", extra_records={EC2MESSAGES: ["198.18.0.101"]}
    )
    netns.ensure_address("198.18.0.101")  # nothing listens: refused
    ids = ("endpoint.ec2messages", "endpoint.ssmmessages")
    new, _, _ = check_in(netns, tmp_path, lab_ca, fake_agent_factory("3.3.987.0"), ids=ids)
    assert new["endpoint.ec2messages"]["status"] == "warn"
    assert "3.3.987.0" in new["endpoint.ec2messages"]["summary"]
    old, _, _ = check_in(netns, tmp_path, lab_ca, fake_agent_factory("3.2.582.0"), ids=ids)
    assert old["endpoint.ec2messages"]["status"] == "fail"


def test_proxy_that_refuses_the_tunnel_is_named(
    netns: NetNS, lab_ca: LabCA, tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    start_ssm_endpoints(netns, lab_ca, address="198.18.0.110")
    refuse = start_server("proxy", netns.ensure_address("198.18.0.111"), 3128, netns, mode="refuse")
    agent = fake_agent_factory("3.3.987.0", name="proxied3/amazon-ssm-agent")
    netns.popen(
        [str(agent)],
        env=hermetic_env(
            {"https_proxy": f"http://{refuse.host}:3128", "no_proxy": "169.254.169.254"}
        ),
    )
    checks, _, _ = check_in(netns, tmp_path, lab_ca, agent, ids=("endpoint.ssm",))
    check = checks["endpoint.ssm"]
    assert check["details"]["failure"] == "proxy_refused"
    assert "403" in check["summary"] and "allow CONNECT" in check["remediation"]
    assert f"{SSM}:443" in refuse.connect_targets()
