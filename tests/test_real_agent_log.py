"""agent.log held against what the real SSM Agent (3.3.1142.0) writes on a throwaway node.

The node has no network (harness/node.sh): the agent logs its identity, credential and
network failures into /var/log/amazon/ssm/. For the answers only AWS gives (AccessDenied, a
rejected signature) the agent's `Ssm.Endpoint` points at a fake ssm inside the node that
answers as the AWS JSON protocol does (`{"__type": CODE, "message": TEXT}`, HTTP 400, read by
the SDK's vendor/github.com/aws/aws-sdk-go/private/protocol/jsonrpc/unmarshal_error.go:109-110,
:158); the agent's own code then turns that into its log lines. ssmdiag (this checkout) then runs on
the same node: `ssmdiag check --only agent.log --format json`.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, Optional

import pytest

from ssmdiag.policy import PolicyInputs, statement_text
from tests.lab.ca import LabCA
from tests.lab.real_agent import SSMDIAG, node_run, require_real_agent

AGENT_LOG = "/var/log/amazon/ssm/amazon-ssm-agent.log"
SEPARATOR = "@@@ssmdiag@@@"
PORT = 8088
MI = "mi-0123456789abcdef0"

# A fake ssm endpoint: every call gets the answer MODE names; requests are recorded.
FAKE_SSM = r"""
import json, ssl, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
host, port, mode, record = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
cert = sys.argv[5] if len(sys.argv) > 6 else None
key = sys.argv[6] if len(sys.argv) > 6 else None
ROLE = "arn:aws:sts::111122223333:assumed-role/lab-role/i-0123456789abcdef0"
ANSWERS = {
    "denied": (400, {"__type": "AccessDeniedException", "message": "User: " + ROLE +
        " is not authorized to perform: ssm:UpdateInstanceInformation on resource: "
        "arn:aws:ec2:us-east-1:111122223333:instance/i-0123456789abcdef0 because no "
        "identity-based policy allows the ssm:UpdateInstanceInformation action"}),
    "signature": (400, {"__type": "InvalidSignatureException", "message":
        "Signature expired: 20260101T000000Z is now earlier than 20260101T001000Z "
        "(20260101T001500Z - 5 min.)"}),
    "ok": (200, {}),
}
class H(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with open(record, "a") as out:
            out.write(self.headers.get("X-Amz-Target", "?") + "\n")
        code, body = ANSWERS[mode]
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("x-amzn-RequestId", "6681f3a3-7c19-4982-9816-52498e9ddb32")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
srv = HTTPServer((host, port), H)
if cert:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"""


@pytest.fixture(autouse=True)
def _real_agent() -> None:
    require_real_agent()


def _wait_for(pattern: str, tries: int = 120) -> str:
    """Bounded wait (tries x 0.25 s) for a line in the agent's log."""
    return (
        f"for i in $(seq 1 {tries}); do grep -q {shlex.quote(pattern)} {AGENT_LOG} "
        "2>/dev/null && break; sleep 0.25; done; sleep 0.5"
    )


def _check(
    tmp_path: Path,
    wait_for: str,
    *,
    fake_ssm: Optional[str] = None,
    tls: bool = False,
    fake_imds: bool = True,
    imds_profile: Optional[str] = "lab-role",
    register: Optional[str] = None,
) -> tuple[dict[str, Any], str, Path]:
    """Start a fake ssm (if asked), then the real agent, wait until it logged `wait_for`,
    then run ssmdiag's agent.log check on the node. Returns (check, agent log, record)."""
    record = tmp_path / "requests.log"
    script = tmp_path / "fake_ssm.py"
    script.write_text(FAKE_SSM)
    copy = tmp_path / "agent.log"
    config: Optional[Path] = None
    steps = []
    if fake_ssm:
        scheme = "https" if tls else "http"
        config = tmp_path / "amazon-ssm-agent.json"
        config.write_text(json.dumps({"Ssm": {"Endpoint": f"{scheme}://127.0.0.1:{PORT}"}}))
        server = ["python3", str(script), "127.0.0.1", str(PORT), fake_ssm, str(record)]
        if tls:  # a certificate from a CA the node does not trust (a TLS-inspecting proxy)
            ca = LabCA.intercept(tmp_path / "ca")
            cert, key = ca.issue(("127.0.0.1",))
            server += [str(cert), str(key)]
        steps += [
            "ip link set lo up",
            shlex.join(server) + " &",
            f"for i in $(seq 1 50); do (echo > /dev/tcp/127.0.0.1/{PORT}) 2>/dev/null && break; "
            "sleep 0.1; done",
        ]
    steps += [
        "(cd /usr/bin && /usr/bin/amazon-ssm-agent >/dev/null 2>&1 &)",
        _wait_for(wait_for),
        f"cp {AGENT_LOG} {shlex.quote(str(copy))} 2>/dev/null",
        f"echo {SEPARATOR}",
        shlex.join([*SSMDIAG, "check", "--only", "agent.log", "--format", "json"]),
    ]
    proc = node_run(
        ["bash", "-c", "\n".join(steps)],
        config=config,
        fake_imds=fake_imds,
        imds_profile=imds_profile,
        register=register,
        timeout=120,
    )
    assert SEPARATOR in proc.stdout, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    body = proc.stdout[proc.stdout.index(SEPARATOR) + len(SEPARATOR) :]
    report = json.loads(body)
    (check,) = report["checks"]
    log = copy.read_text() if copy.exists() else ""
    return check, log, record


def _findings(check: dict[str, Any]) -> dict[tuple[str, Optional[str]], dict[str, Any]]:
    return {(f["class"], f["action"]): f for f in check["details"]["findings"]}


def test_a_denied_update_instance_information_names_the_action_and_its_statement(
    tmp_path: Path,
) -> None:
    check, log, record = _check(tmp_path, "Retrieve credentials produced error", fake_ssm="denied")
    # the real agent called the fake ssm and logged AWS's refusal in its own words
    assert "AmazonSSM.UpdateInstanceInformation" in record.read_text()
    assert "Failed to connect to Systems Manager with instance profile role credentials" in log
    assert "AccessDeniedException" in log
    assert check["status"] == "fail"
    assert check["summary"].startswith("AccessDenied for ssm:UpdateInstanceInformation: 1 time")
    statement = statement_text("ssm:UpdateInstanceInformation", PolicyInputs(region="us-east-1"))
    assert statement in check["remediation"]
    assert "instance profile lab-role" in check["remediation"]
    found = _findings(check)
    assert found[("access_denied", "ssm:UpdateInstanceInformation")]["status"] == "fail"
    # the agent then tried Default Host Management and had no credentials at all
    assert ("no_credentials", None) in found
    assert "111122223333" not in json.dumps(check["details"]["files"])


def test_an_expired_signature_is_a_clock_problem(tmp_path: Path) -> None:
    check, log, _ = _check(tmp_path, "Retrieve credentials produced error", fake_ssm="signature")
    assert "InvalidSignatureException: Signature expired" in log
    assert check["status"] == "fail"
    assert check["summary"].startswith("request signature rejected: the clock is off")
    assert "clock.skew" in check["remediation"]


def test_an_untrusted_certificate_is_a_tls_finding(tmp_path: Path) -> None:
    # a hybrid node: its credential provider keeps the SDK's "caused by" (the EC2 one drops it)
    check, log, _ = _check(
        tmp_path,
        "Retrieve credentials produced error",
        fake_ssm="ok",
        tls=True,
        fake_imds=False,
        imds_profile=None,
        register=f"{MI} us-west-2",
    )
    assert "x509: certificate signed by unknown authority" in log
    found = _findings(check)
    tls = found[("tls", None)]
    assert tls["kinds"] == ["unknown_authority"] and tls["hosts"] == ["127.0.0.1"]
    assert check["status"] in ("warn", "fail")
    assert check["summary"].startswith(
        "TLS error with 127.0.0.1: certificate signed by an unknown authority"
    )
    assert "TLS-inspecting proxy" in check["remediation"]


def test_no_instance_profile(tmp_path: Path) -> None:
    check, log, _ = _check(tmp_path, "no valid credentials could be retrieved", imds_profile=None)
    assert "EC2RoleRequestError: no EC2 instance role found" in log
    assert check["status"] == "fail"
    assert check["summary"].startswith(
        "no credentials: no instance profile, no Default Host Management: 1 time"
    )
    assert "associate-iam-instance-profile" in check["remediation"]


def test_a_hybrid_node_without_dns(tmp_path: Path) -> None:
    check, log, _ = _check(
        tmp_path,
        "Retrieve credentials produced error",
        fake_imds=False,
        imds_profile=None,
        register=f"{MI} us-west-2",
    )
    assert "dial tcp: lookup ssm.us-west-2.amazonaws.com" in log
    assert check["status"] == "warn"
    assert check["summary"].startswith("DNS lookup failed for ssm.us-west-2.amazonaws.com: 1 time")


def test_no_identity_at_all(tmp_path: Path) -> None:
    check, log, _ = _check(
        tmp_path,
        "Error occurred when starting amazon-ssm-agent",
        fake_imds=False,
        imds_profile=None,
    )
    assert "Agent failed to assume any identity" in log
    assert check["status"] == "fail"
    assert check["summary"].startswith("the agent found no identity")


def test_a_healthy_start_is_ok(tmp_path: Path) -> None:
    check, log, record = _check(
        tmp_path,
        "Successfully connected with instance profile role credentials",
        fake_ssm="ok",
    )
    assert "Successfully connected with instance profile role credentials" in log
    assert "AmazonSSM.UpdateInstanceInformation" in record.read_text()
    assert check["status"] == "ok"
    assert check["summary"] == "no known failure in the last 24 h of the agent's log"
    # the fake IMDS has no identity-credentials, so the EC2 registration (for Default Host
    # Management) fails; with working instance-profile credentials that does not matter
    for finding in check["details"]["findings"]:
        assert (finding["class"], finding["status"]) == ("registration", "resolved")
        assert "only for Default Host Management" in finding["note"]
