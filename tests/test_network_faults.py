"""Network faults from the field, each named with the fix that fits it (issue 12).

One lab scenario per fault. Each first proves the fault with a tool that is not
ssmdiag (curl, getent, openssl s_client, run inside the lab namespace), so a failing
assertion after that point is ssmdiag's, not the lab's; then it judges what a user of
`ssmdiag check` reads: the failure class, the summary and the fix.

Network rule: everything runs inside namespaces the tests create (addresses on `lo`
or on a blackhole device there); nothing is routed out.
"""

from __future__ import annotations

import datetime
import json
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from subprocess import CompletedProcess
from types import SimpleNamespace
from typing import Any, Callable, cast

import pytest
import trustme

from ssmdiag.checks import endpoint as endpoint_checks
from ssmdiag.checks.base import Context
from ssmdiag.checks.network_proxy import WHERE_TO_SET
from ssmdiag.config import Config
from ssmdiag.endpoints import Endpoint, EndpointPlan
from ssmdiag.platform.base import AgentEnvironment, Platform
from ssmdiag.probe import ProbeResult, ProbeSettings, certificate_info, probe
from ssmdiag.proxy import ProxySettings, ProxyURL
from tests.conftest import REPO, hermetic_env
from tests.lab import LabCA, NetNS, closed_port, start_dns, start_server
from tests.lab.ca import bundle
from tests.lab.launcher import start_ssm_endpoints
from tests.test_network_lab import EC2MESSAGES, NAMES, NETWORK_IDS, REGION, SSM, SSMMESSAGES
from tests.test_network_lab import check_in as _check_in

AGENT_VERSION = "3.3.987.0"
CURL_EXIT_CONNECT = 7  # "Failed to connect to host"
CURL_EXIT_TIMEOUT = 28  # "Operation timed out"
WEB_FILTER = "CorpWebFilter/7.2"
BLOCK_PAGE = (
    "<!DOCTYPE html><html><head><title>Access Denied - Web Filter</title></head>"
    "<body><h1>This site is blocked by your organisation's policy</h1>"
    "<p>Category: Uncategorized</p></body></html>"
)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: scripts/install-test-deps installs it")
    return path


def run_in(ns: NetNS, *argv: str, timeout: float = 20) -> CompletedProcess[str]:
    """A tool inside the lab namespace, without any proxy variable (lab_env)."""
    return ns.run([tool(argv[0]), *argv[1:]], timeout=timeout)


def curl(ns: NetNS, url: str, *options: str, max_time: float = 3) -> CompletedProcess[str]:
    """curl's status line, headers and body of one GET (direct unless options say -x)."""
    return run_in(
        ns, "curl", "-sS", "-i", "--max-time", str(max_time), *options, url, timeout=max_time + 10
    )


def getent(ns: NetNS, name: str) -> list[str]:
    result = run_in(ns, "getent", "ahostsv4", name)
    return sorted({line.split()[0] for line in result.stdout.splitlines() if line.strip()})


def openssl_verify(ns: NetNS, address: str, host: str, ca_pem: Path) -> str:
    """openssl s_client's own verdict on the certificate served at address:443 for host."""
    result = ns.run(
        [
            tool("openssl"),
            "s_client",
            "-connect",
            f"{address}:443",
            "-servername",
            host,
            "-verify_hostname",
            host,
            "-CAfile",
            str(ca_pem),
            "-brief",
        ],
        timeout=20,
        input="",
    )
    return result.stdout + result.stderr


def start_agent(ns: NetNS, factory: Callable[..., Path], name: str, env: dict[str, str]) -> Path:
    """The agent look-alike, running in the namespace with `env` (its proxy settings)."""
    agent = factory(AGENT_VERSION, name=f"faults-{name}/amazon-ssm-agent")
    ns.popen([str(agent)], env=hermetic_env(env))
    return agent


def check_in(
    ns: NetNS, tmp_path: Path, ca_pem: Path, agent: Path, **kwargs: Any
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], float]:
    """tests/test_network_lab.py's check_in, trusting the CAs in ca_pem."""
    trusted = cast(LabCA, SimpleNamespace(ca_pem=ca_pem))
    return _check_in(ns, tmp_path, trusted, agent, **kwargs)


def no_errors(checks: dict[str, dict[str, Any]]) -> None:
    errors = {k: c["summary"] for k, c in checks.items() if c["status"] == "error"}
    assert not errors, errors


# --- 1. the agent's proxy is down -------------------------------------------------------------
def test_proxy_that_is_down_names_the_proxy_its_port_and_where_it_is_set(
    netns: NetNS,
    lab_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    start_ssm_endpoints(netns, lab_ca, address="198.18.1.10")
    proxy_host = netns.ensure_address("198.18.1.11")
    port = closed_port(proxy_host, netns)  # the proxy's process is gone: nothing listens
    proxy_url = f"http://{proxy_host}:{port}"
    # The fault, seen by curl: the proxy refuses; the endpoint itself answers.
    down = curl(netns, f"https://{SSM}/", "-x", proxy_url, "--cacert", str(lab_ca.ca_pem))
    assert down.returncode == CURL_EXIT_CONNECT, down.stderr
    direct = curl(netns, f"https://{SSM}/", "--cacert", str(lab_ca.ca_pem))
    assert direct.returncode == 0 and " 400" in direct.stdout.splitlines()[0]

    agent = start_agent(
        netns,
        fake_agent_factory,
        "proxy-down",
        {"https_proxy": proxy_url, "no_proxy": "169.254.169.254"},
    )
    checks, _, _ = check_in(
        netns,
        tmp_path,
        lab_ca.ca_pem,
        agent,
        ids=("network.proxy", "endpoint.ssm", "endpoint.ssmmessages"),
        validate=validate_report,
    )
    for service in ("ssm", "ssmmessages"):
        check = checks[f"endpoint.{service}"]
        assert check["status"] == "fail" and check["details"]["failure"] == "proxy_down", check
        assert proxy_url in check["summary"] and "proxy is down" in check["summary"]
        fix = check["remediation"]
        assert f"Start the proxy on {proxy_host} port {port}" in fix
        assert "https_proxy" in fix and "systemctl edit amazon-ssm-agent" in fix
        assert "/proc/" in fix and "/environ" in fix  # where ssmdiag read the agent's proxy
        assert "port 443" not in fix and "host firewall" not in fix  # not the direct path's


# --- 2. no_proxy sends the agent direct where only the proxy gets out ------------------------
def test_no_proxy_that_bypasses_the_only_way_out_is_named_with_its_entry(
    netns: NetNS,
    lab_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    # The node resolves the endpoints to addresses it cannot reach (they drop packets);
    # the proxy has a resolver of its own and reaches the endpoints.
    hole = netns.blackhole("198.18.2.0/24")
    start_dns(netns, {name: [hole] for name in NAMES})
    endpoints = netns.ensure_address("198.18.1.20")
    start_server("https", endpoints, 443, netns, ca=lab_ca, hostnames=NAMES)
    proxy = start_server(
        "proxy",
        netns.ensure_address("198.18.1.21"),
        3128,
        netns,
        resolve=[f"{name}={endpoints}" for name in NAMES],
    )
    proxy_url = f"http://{proxy.host}:3128"
    ca = str(lab_ca.ca_pem)
    direct = curl(netns, f"https://{SSM}/", "--noproxy", "*", "--cacert", ca, max_time=2)
    assert direct.returncode == CURL_EXIT_TIMEOUT, (direct.returncode, direct.stderr)
    proxied = curl(netns, f"https://{SSM}/", "-x", proxy_url, "--cacert", ca)
    assert proxied.returncode == 0 and "HTTP/1.1 400" in proxied.stdout, proxied.stderr
    assert proxy.connect_targets() == [f"{SSM}:443"]  # curl's

    agent = start_agent(
        netns,
        fake_agent_factory,
        "no-proxy",
        {"https_proxy": proxy_url, "no_proxy": "169.254.169.254,.amazonaws.com"},
    )
    checks, _, elapsed = check_in(netns, tmp_path, lab_ca.ca_pem, agent, validate=validate_report)
    for service in ("ec2messages", "ssm", "ssmmessages"):
        check = checks[f"endpoint.{service}"]
        assert check["status"] == "fail" and check["details"]["failure"] == "proxy_bypassed"
        assert check["details"]["no_proxy_entry"] == ".amazonaws.com"
        summary = check["summary"]
        assert "timed out" in summary and proxy_url in summary
        assert "no_proxy entry '.amazonaws.com' sends it direct" in summary
        fix = check["remediation"]
        assert fix.startswith("Remove '.amazonaws.com' from the agent's no_proxy")
        assert "systemctl edit amazon-ssm-agent" in fix and "open the direct path" in fix
    assert proxy.connect_targets() == [f"{SSM}:443"]  # the agent's way is direct: only curl's
    assert elapsed < 8, elapsed  # one connect timeout (2 s) for the three, plus start-up


# --- 3. a web filter answers with its own page -------------------------------------------------
def test_web_filter_page_after_trusted_inspection_is_not_taken_for_aws(
    netns: NetNS,
    lab_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    filter_ca = LabCA(tmp_path / "filter-ca", "Corp Web Filter CA")
    trusted = bundle(tmp_path / "trusted.pem", lab_ca, filter_ca)  # the node trusts both
    aws, web_filter = "198.18.1.30", "198.18.1.31"
    start_dns(netns, {SSM: [aws], EC2MESSAGES: [aws], SSMMESSAGES: [web_filter]})
    start_server("https", aws, 443, netns, ca=lab_ca, hostnames=NAMES)
    start_server(
        "https",
        web_filter,
        443,
        netns,
        ca=filter_ca,
        hostnames=[SSMMESSAGES],
        status=403,
        content_type="text/html; charset=utf-8",
        body=BLOCK_PAGE,
        request_id=False,
        server_name=WEB_FILTER,
    )
    page = curl(netns, f"https://{SSMMESSAGES}/", "--cacert", str(trusted))
    assert page.returncode == 0, page.stderr  # TLS is trusted: only the answer tells
    head = page.stdout.split("\r\n\r\n", 1)[0].lower()
    assert head.startswith("http/1.1 403") and "content-type: text/html" in head
    assert "x-amzn-requestid" not in head and "<html>" in page.stdout
    real = curl(netns, f"https://{SSM}/", "--cacert", str(trusted))
    assert "x-amzn-requestid:" in real.stdout.lower()  # the look-alike answers as AWS does

    checks, _, _ = check_in(
        netns,
        tmp_path,
        trusted,
        fake_agent_factory(AGENT_VERSION),
        ids=("endpoint.ssm", "endpoint.ssmmessages", "clock.skew"),
        validate=validate_report,
    )
    check = checks["endpoint.ssmmessages"]
    assert check["status"] == "fail" and check["details"]["failure"] == "http_not_aws", check
    assert check["details"]["from_aws"] is False
    summary = check["summary"]
    assert "HTTP 403 with an HTML page 'Access Denied - Web Filter'" in summary
    assert "no AWS request id" in summary and f"Server: {WEB_FILTER}" in summary
    assert "Corp Web Filter CA" in summary  # the inspection CA the node trusts
    fix = check["remediation"]
    assert f"Allow {SSMMESSAGES}" in fix and "TLS inspection" in fix
    assert "x-amzn-RequestId" in fix
    ssm = checks["endpoint.ssm"]
    assert ssm["status"] == "ok" and ssm["details"]["from_aws"] is True
    reference = checks["clock.skew"]["details"]["reference"]
    assert SSM in reference and SSMMESSAGES not in reference  # not the filter's clock


# --- 4. through a proxy: whose addresses ------------------------------------------------------
def test_through_a_proxy_the_proxys_address_is_not_shown_as_the_endpoints(
    netns: NetNS,
    lab_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    proxy_name = "proxy.corp.internal"
    start_ssm_endpoints(
        netns, lab_ca, address="198.18.1.40", extra_records={proxy_name: ["10.0.4.41"]}
    )
    proxy = start_server("proxy", netns.ensure_address("10.0.4.41"), 3128, netns)
    proxy_url = f"http://{proxy_name}:3128"
    assert getent(netns, proxy_name) == ["10.0.4.41"]
    proxied = curl(netns, f"https://{SSM}/", "-x", proxy_url, "--cacert", str(lab_ca.ca_pem))
    assert proxied.returncode == 0 and "HTTP/1.1 400" in proxied.stdout, proxied.stderr

    agent = start_agent(
        netns, fake_agent_factory, "proxy-label", {"https_proxy": proxy_url, "no_proxy": ""}
    )
    checks, _, _ = check_in(
        netns, tmp_path, lab_ca.ca_pem, agent, ids=("endpoint.ssm",), validate=validate_report
    )
    check = checks["endpoint.ssm"]
    assert check["status"] == "ok", check
    assert (
        f"via proxy {proxy_url} (10.0.4.41, private), which resolved the endpoint"
        in check["summary"]
    )
    assert "public" not in check["summary"] and "VPC endpoint" not in check["summary"]
    details = check["details"]
    assert details["resolved_by"] == "proxy" and details["addresses"] == []
    assert details["proxy_addresses"] == ["10.0.4.41"]
    assert f"{SSM}:443" in proxy.connect_targets()


# --- 5. one service public while the others use VPC endpoints ---------------------------------
def test_one_service_resolving_publicly_among_vpc_endpoints_is_named(
    netns: NetNS,
    lab_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    public = netns.blackhole("52.94.0.0/24")  # a public address that drops packets, in the lab
    start_ssm_endpoints(netns, lab_ca, address="10.0.5.10", extra_records={SSMMESSAGES: [public]})
    assert getent(netns, SSM) == getent(netns, EC2MESSAGES) == ["10.0.5.10"]
    assert getent(netns, SSMMESSAGES) == [public]
    blocked = curl(netns, f"https://{SSMMESSAGES}/", "--cacert", str(lab_ca.ca_pem), max_time=2)
    assert blocked.returncode == CURL_EXIT_TIMEOUT, (blocked.returncode, blocked.stderr)

    checks, _, _ = check_in(
        netns,
        tmp_path,
        lab_ca.ca_pem,
        fake_agent_factory(AGENT_VERSION),
        ids=("endpoint.ec2messages", "endpoint.ssm", "endpoint.ssmmessages"),
        validate=validate_report,
    )
    check = checks["endpoint.ssmmessages"]
    assert check["status"] == "fail", check
    assert check["details"]["failure"] == "vpc_endpoint_missing"
    assert check["details"]["probe_failure"] == "connection_timeout"
    assert (
        f"{SSMMESSAGES} resolves to public {public} while ec2messages and ssm resolve to "
        "private VPC endpoint addresses" in check["summary"]
    )
    fix = check["remediation"]
    assert f"com.amazonaws.{REGION}.ssmmessages" in fix and "private DNS" in fix
    assert f"getent hosts {SSMMESSAGES}" in fix
    for service in ("ec2messages", "ssm"):
        assert checks[f"endpoint.{service}"]["status"] == "ok"
        assert "private, VPC endpoint" in checks[f"endpoint.{service}"]["summary"]


# --- 6. certificates: four faults, four fixes -------------------------------------------------
NOW = datetime.datetime.now(datetime.timezone.utc)
CERT_FAULTS = {
    # fault: (LabCA fixture, server options, openssl's verify error, failure class)
    "untrusted": (
        "lab_intercept_ca",
        {},
        "unable to get local issuer certificate",
        "tls_untrusted",
    ),
    "expired": (
        "lab_ca",
        {
            "not_before": NOW - datetime.timedelta(days=90),
            "not_after": NOW - datetime.timedelta(days=3),
        },
        "certificate has expired",
        "tls_expired",
    ),
    "not-yet-valid": (
        "lab_ca",
        {
            "not_before": NOW + datetime.timedelta(days=2),
            "not_after": NOW + datetime.timedelta(days=90),
        },
        "certificate is not yet valid",
        "tls_not_yet_valid",
    ),
    "wrong-name": (
        "lab_ca",
        {"hostnames": ["vpce-0abc123-ssm.example.internal", "ssm.eu-west-1.amazonaws.com"]},
        "hostname mismatch",
        "tls_name_mismatch",
    ),
}


@pytest.mark.parametrize("fault", list(CERT_FAULTS))
def test_certificate_faults_each_get_their_own_class_and_fix(  # noqa: PLR0917 (fixtures)
    fault: str,
    request: pytest.FixtureRequest,
    netns: NetNS,
    lab_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    issuer_fixture, options, openssl_error, failure = CERT_FAULTS[fault]
    issuer: LabCA = request.getfixturevalue(issuer_fixture)
    address = "198.18.1.60"
    start_dns(netns, {name: [address] for name in NAMES})
    opts = {"hostnames": NAMES, **options}
    start_server("https", address, 443, netns, ca=issuer, **opts)
    said = openssl_verify(netns, address, SSM, lab_ca.ca_pem)
    assert openssl_error in said, said

    checks, _, _ = check_in(
        netns,
        tmp_path,
        lab_ca.ca_pem,
        fake_agent_factory(AGENT_VERSION),
        ids=("endpoint.ssm",),
        validate=validate_report,
    )
    check = checks["endpoint.ssm"]
    assert check["status"] == "fail" and check["details"]["failure"] == failure, check
    summary, fix = check["summary"], check["remediation"]
    tls = check["details"]["phases"]["tls"]
    assert tls["issuer"] == f"O={issuer.name}, OU={issuer.name}"
    fixes = {
        "tls_untrusted": "intercepting TLS",
        "tls_expired": "Renew the certificate",
        "tls_not_yet_valid": "the node's clock is behind",
        "tls_name_mismatch": "to another endpoint",
    }
    assert fixes[failure] in fix
    assert not [other for code, other in fixes.items() if code != failure and other in fix]
    if fault == "untrusted":
        assert "Corp Intercept CA" in summary and "Corp Intercept CA" in fix
    elif fault == "expired":
        expired = options["not_after"].strftime("%Y-%m-%d %H:%M UTC")
        assert f"CN={SSM}" in summary and f"expired on {expired}" in summary
        assert "3 days ago by this node's clock" in summary
        assert "clock.skew" in fix  # a clock far ahead makes a good certificate look expired
    elif fault == "not-yet-valid":
        valid_from = options["not_before"].strftime("%Y-%m-%d %H:%M UTC")
        assert f"valid only from {valid_from}" in summary and "after this node's clock" in summary
        assert "clock.skew" in fix and "chronyc tracking" in fix
    else:
        names = "vpce-0abc123-ssm.example.internal, ssm.eu-west-1.amazonaws.com"
        assert f"is for {names}" in summary and names in fix
        assert f"{SSM} leads to the server at {address}" in fix
        assert tls["certificate"]["names"] == names.split(", ")


# --- 7. a captive portal in front of IMDS -----------------------------------------------------
def test_imds_answering_with_a_web_page_is_named_and_the_rest_goes_on(
    netns: NetNS,
    lab_ca: LabCA,
    tmp_path: Path,
    fake_agent_factory: Callable[..., Path],
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    start_ssm_endpoints(netns, lab_ca, address="198.18.1.70")
    portal = start_server(
        "http",
        netns.ensure_address("169.254.169.254"),
        80,
        netns,
        status=200,
        content_type="text/html",
        body="<html><head><title>Guest network login</title></head><body>Sign in</body></html>",
        request_id=False,
        server_name="CaptivePortal/1.0",
    )
    token = curl(
        netns,
        "http://169.254.169.254/latest/api/token",
        "-X",
        "PUT",
        "-H",
        "X-aws-ec2-metadata-token-ttl-seconds: 60",
    )
    assert token.returncode == 0 and "<html>" in token.stdout
    assert "content-type: text/html" in token.stdout.lower()

    checks, report, _ = check_in(
        netns,
        tmp_path,
        lab_ca.ca_pem,
        fake_agent_factory(AGENT_VERSION),
        ids=(*NETWORK_IDS, "identity.credentials"),
        env={"AWS_EC2_METADATA_DISABLED": "false", "AWS_REGION": REGION},
        region=None,
        validate=validate_report,
    )
    no_errors(checks)
    identity = checks["identity"]
    assert identity["status"] in ("warn", "fail"), identity
    assert "not the instance metadata service" in identity["summary"]
    assert "169.254.169.254" in identity["remediation"]
    assert identity["details"]["region_source"] == "environment"
    assert report["host"]["region"] == REGION
    for service in ("ec2messages", "ssm", "ssmmessages"):
        assert checks[f"endpoint.{service}"]["status"] == "ok"
    assert portal.requests() and "Traceback" not in json.dumps(checks)


# --- the readers behind these verdicts, on loopback (no namespace needed) ---------------------
def test_certificate_reader_gives_validity_and_names_and_survives_any_bytes() -> None:
    ca = trustme.CA()
    not_before = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    not_after = datetime.datetime(2051, 6, 7, 8, 9, 10, tzinfo=datetime.timezone.utc)
    leaf = ca.issue_cert(
        "ssm.example.internal",
        "10.1.2.3",
        "::1",
        common_name="ssm.example.internal",
        not_before=not_before,
        not_after=not_after,
    )
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    info = certificate_info(der)
    assert info.not_before == not_before.timestamp()  # UTCTime
    assert info.not_after == not_after.timestamp()  # GeneralizedTime (2050 and later)
    assert info.dns_names == ("ssm.example.internal",)
    assert info.ip_addresses == ("10.1.2.3", "::1")
    assert info.issuer.startswith("O=trustme") and info.holder() == "CN=ssm.example.internal"
    # A peer's certificate is input: cut anywhere or with any byte changed, it reads as
    # far as it can and never raises.
    rng = random.Random(12)
    for cut in range(len(der)):
        certificate_info(der[:cut])
    for _ in range(2000):
        broken = bytearray(der)
        broken[rng.randrange(len(broken))] = rng.randrange(256)
        certificate_info(bytes(broken))


class TlsPeer:
    """A loopback TLS server that answers each connection with `head`, then `body` bytes
    (or holds the connection silent when body is None) until the client leaves."""

    def __init__(self, context: ssl.SSLContext, head: bytes, body: bytes | None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.context, self.head, self.body = context, head, body
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except OSError:
                continue
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    conn.settimeout(5)
                    conn.recv(65536)
                    conn.sendall(self.head)
                    for _ in range(1000):  # at most 16 MB, or until the client leaves
                        if self.stop.is_set():
                            return
                        if self.body is None:
                            time.sleep(0.05)
                            continue
                        conn.sendall(self.body)
            except OSError:
                continue

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)


@pytest.mark.parametrize("body", [b"<p>" + b"x" * 16381, None], ids=["flood", "stall"])
def test_a_page_is_read_at_most_4_kib_and_1_s_then_named(body: bytes | None) -> None:
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    head = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nServer: BlockIt\r\n\r\n"
    peer = TlsPeer(server, head + b"<html><title>Blocked</title>", body)
    try:
        with tempfile.NamedTemporaryFile(suffix=".pem") as bundle_file:
            ca.cert_pem.write_to_path(bundle_file.name)
            endpoint = Endpoint(
                "ssm", "127.0.0.1", peer.port, f"https://127.0.0.1:{peer.port}/", "test"
            )
            started = time.monotonic()
            result = probe(endpoint, ProxySettings(), ProbeSettings(1.0, 4.0, bundle_file.name))
            elapsed = time.monotonic() - started
    finally:
        peer.close()
    assert result.failure == "http_not_aws", result.message
    assert "'Blocked'" in result.message and "Server: BlockIt" in result.message
    assert result.from_aws is False and result.server_date is None
    assert elapsed < 1.0 + 1.0 + 0.5, elapsed  # handshake, the 1 s look at the body, margin
    if body is not None:  # 4 KiB came at once: no waiting for the end of the look
        assert result.answer["html"] and elapsed < 0.9, elapsed


def test_an_answer_without_request_id_that_is_no_page_warns_that_it_proves_nothing(
    lab_ca: LabCA, tmp_path: Path, fake_agent_factory: Callable[..., Path]
) -> None:
    server = start_server(
        "https", ca=lab_ca, status=404, body="not here", content_type="text/plain",
        request_id=False, server_name="nginx",
    )  # fmt: skip
    try:
        url = f"https://127.0.0.1:{server.port}"
        config = tmp_path / "ssmdiag.toml"
        agent = fake_agent_factory(AGENT_VERSION)
        config.write_text(
            f"[agent]\nbinary = '{agent}'\nconfig_file = '{tmp_path}/agent.json'\n"
            f"data_dir = '{tmp_path}/agent-data'\n"
            f"[network]\nregion = '{REGION}'\nca_bundle = '{lab_ca.ca_pem}'\n"
            f"[endpoints]\nssm = '{url}'\n"
        )
        result = subprocess.run(
            [sys.executable, "-m", "ssmdiag", "check", "--format", "json", "--config",
             str(config), "--only", "endpoint.ssm"],
            capture_output=True, text=True, timeout=60, env=hermetic_env(), cwd=REPO,
        )  # fmt: skip
    finally:
        server.stop()
    check = json.loads(result.stdout)["checks"][0]
    assert check["status"] == "warn", check
    assert "HTTP 404; but the answer carries no AWS request id (Server: nginx)" in check["summary"]
    assert "x-amzn-RequestId" in check["remediation"]


# --- where the proxy is set, on each platform ----------------------------------------------------
@pytest.mark.parametrize(
    ("family", "source"),
    [
        ("linux", "systemd unit Environment="),
        ("windows", "WinHTTP default proxy"),
        ("macos", "scutil --proxy"),
    ],
)
def test_a_proxy_that_is_down_is_fixed_where_each_platform_sets_it(
    family: str, source: str
) -> None:
    proxy = ProxyURL("http", "10.0.0.5", 8080, has_credentials=False)
    hosts = {s: f"{s}.{REGION}.amazonaws.com" for s in ("ec2messages", "ssm", "ssmmessages")}
    endpoints = tuple(Endpoint(s, h, 443, f"https://{h}/", "default") for s, h in hosts.items())
    probes = {
        e.service: ProbeResult(
            e,
            proxy=proxy.display(),
            proxy_url=proxy,
            failure="proxy_down",
            message="TCP connect to proxy http://10.0.0.5:8080 (10.0.0.5:8080) was refused",
        )
        for e in endpoints
    }
    ctx = Context(cast(Platform, SimpleNamespace(family=family)), Config(), environ={})
    ctx._facts.update(
        endpoint_plan=EndpointPlan(REGION, "amazonaws.com", "partition", endpoints),
        probes=probes,
        proxies=(
            ProxySettings(https_proxy="http://10.0.0.5:8080", source=source),
            AgentEnvironment({"https_proxy": "http://10.0.0.5:8080"}, source),
        ),
    )
    ssm = next(c for c in endpoint_checks.CHECKS if c.id == "endpoint.ssm")
    finding = ssm.run(ctx)
    assert finding.status.value == "fail" and finding.details["failure"] == "proxy_down"
    fix = finding.remediation or ""
    assert fix.startswith("Start the proxy on 10.0.0.5 port 8080")
    assert WHERE_TO_SET[family] in fix and source in fix
