"""Identity and proxy rules held against the real SSM Agent (3.3.1142.0) on throwaway nodes.

The registration is stored by the agent's own code (`agent-register`) and cleared by the
real `amazon-ssm-agent -register -clear`; which identity the agent takes is read from its
own log ("Agent will take identity from ..."); where its metadata calls go is seen by a
recording proxy and a fake IMDS on 169.254.169.254 inside the node's network namespace.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests.lab.real_agent import NODE, SSMDIAG, node_run, node_ssmdiag, require_real_agent

MI = "mi-0123456789abcdef0"
MI_OLD = "mi-0fedcba98765432100"
EC2_ID = "i-0123456789abcdef0"
AGENT_LOG = "/var/log/amazon/ssm/amazon-ssm-agent.log"
REGISTRATION = "/var/lib/amazon/ssm/registration"
SEPARATOR = "@@@ssmdiag@@@"

# Waits (bounded) until the agent has chosen its identity or given up, then prints it.
AGENT_CHOICE = (
    "for i in $(seq 1 80); do "
    f'grep -q "Agent will take identity from\\|Agent failed to assume any identity" {AGENT_LOG} '
    "2>/dev/null && break; sleep 0.25; done; "
    f'grep -o "Agent will take identity from [A-Za-z0-9]*\\|Agent failed to assume any identity" '
    f"{AGENT_LOG} | head -1"
)
START_AGENT = "(cd /usr/bin && env {env} /usr/bin/amazon-ssm-agent >/dev/null 2>&1 &)"
CHECK = shlex.join([*SSMDIAG, "check", "--format", "json", "--only"])

# A proxy that records each request line (CONNECT host:port, or an absolute URL) and
# answers 502: enough to see where the agent's requests go.
RECORDER = r"""
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(16)
def serve(conn):
    with conn:
        conn.settimeout(5)
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        with open(sys.argv[3], "a") as log:
            log.write(data.split(b"\r\n")[0].decode("latin-1") + "\n")
        try:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@pytest.fixture(autouse=True)
def _real_agent() -> None:
    require_real_agent()


def _report(stdout: str) -> dict[str, dict[str, Any]]:
    body = stdout[stdout.index(SEPARATOR) + len(SEPARATOR) :] if SEPARATOR in stdout else stdout
    return {c["id"]: c for c in json.loads(body)["checks"]}


def _in_node(script: str, **kwargs: Any) -> tuple[str, dict[str, dict[str, Any]]]:
    """Run a bash script on a fresh node; it prints the agent's choice, SEPARATOR, a report."""
    result = node_run(["bash", "-c", script], **kwargs)
    assert "Traceback" not in result.stderr, result.stderr
    assert SEPARATOR in result.stdout, (result.stdout, result.stderr)
    head = result.stdout[: result.stdout.index(SEPARATOR)]
    return head, _report(result.stdout)


def _agent_choice(head: str) -> str:
    found = re.search(r"Agent will take identity from (\w+)|Agent failed to assume", head)
    assert found, head
    return found.group(1) or "none"


def _no_key_anywhere(*texts: str) -> None:
    for text in texts:
        assert "PRIVATE KEY" not in text and "privateKey" not in text


# (a) the registration the agent's code stored ------------------------------------------


@pytest.mark.parametrize("register", [f"{MI} us-west-2", f"{MI} us-west-2 no-file"])
def test_hybrid_registration_from_the_vault(register: str) -> None:
    only = ("identity", "identity.credentials")
    result = node_ssmdiag("check", "--format", "json", "--only", *only, register=register)
    assert "Traceback" not in result.stderr, result.stderr
    _no_key_anywhere(result.stdout, result.stderr)
    checks = _report(result.stdout)
    identity = checks["identity"]
    assert identity["status"] == "ok", identity
    assert f"hybrid node {MI} in us-west-2" in identity["summary"]
    details = identity["details"]
    assert details["region_source"] == "hybrid-vault" and details["identity_type"] == "OnPrem"
    assert details["vault"]["complete"] is True
    expected_file = "missing" if register.endswith("no-file") else "ok"
    assert details["registration_file"]["state"] == expected_file
    assert checks["identity.credentials"]["status"] == "ok"


# (b) the registration file and the vault disagree ---------------------------------------


def test_registration_file_left_after_register_clear_is_stale() -> None:
    # The real `-register -clear` empties the vault and leaves the file (core/agent_parser.go).
    script = (
        "amazon-ssm-agent -register -clear >/dev/null 2>&1; "
        f"test -f {REGISTRATION} || echo 'registration file gone'; echo {SEPARATOR}; "
        f"{CHECK} identity"
    )
    head, checks = _in_node(script, register=f"{MI} us-west-2", fake_imds=True)
    assert "registration file gone" not in head
    identity = checks["identity"]
    assert identity["status"] == "warn", identity
    summary = identity["summary"]
    assert f"{REGISTRATION} (hybrid node {MI} in us-west-2) is stale" in summary
    assert "-register -clear" in summary
    assert f"the agent takes EC2 (IMDS): {EC2_ID} in us-east-1" in summary
    assert identity["details"]["identity_type"] == "EC2"
    assert f"sudo rm {REGISTRATION}" in identity["remediation"]


def test_registration_file_naming_another_node_is_stale_and_the_vault_is_used() -> None:
    stale = json.dumps({"ManagedInstanceID": MI_OLD, "Region": "eu-west-1"})
    script = f"echo {shlex.quote(stale)} > {REGISTRATION}; echo {SEPARATOR}; {CHECK} identity"
    _, checks = _in_node(script, register=f"{MI} us-west-2 no-file")
    identity = checks["identity"]
    assert identity["status"] == "warn", identity
    assert (
        f"the agent uses the hybrid registration in its vault ({MI} in us-west-2); "
        f"{REGISTRATION} ({MI_OLD} in eu-west-1) is stale" in identity["summary"]
    )
    assert identity["details"]["region"] == "us-west-2"


# (c) ssmdiag agrees with the identity the running agent took ------------------------------


def test_running_agent_takes_onprem_and_ssmdiag_agrees() -> None:
    script = f"{AGENT_CHOICE}; echo {SEPARATOR}; {CHECK} identity"
    head, checks = _in_node(
        script, register=f"{MI} us-west-2", fake_imds=True, start_agent=True, agent_wait=0.5
    )
    assert _agent_choice(head) == "OnPrem"  # IMDS answers too, but OnPrem comes first
    identity = checks["identity"]
    assert identity["status"] == "ok", identity
    assert identity["details"]["identity_type"] == "OnPrem"
    assert identity["details"]["instance_id"] == MI
    # The agent recorded the same identity in its runtime file.
    assert identity["details"]["recorded_identity"]["instance_id"] == MI


def test_running_agent_after_register_clear_takes_ec2_and_ssmdiag_agrees() -> None:
    script = (
        "amazon-ssm-agent -register -clear >/dev/null 2>&1; "
        f"{START_AGENT.format(env='')}; {AGENT_CHOICE}; echo {SEPARATOR}; {CHECK} identity"
    )
    head, checks = _in_node(script, register=f"{MI} us-west-2", fake_imds=True)
    assert _agent_choice(head) == "EC2"
    identity = checks["identity"]
    assert identity["details"]["identity_type"] == "EC2"
    assert identity["details"]["instance_id"] == EC2_ID
    assert "is stale" in identity["summary"]


def test_running_agent_with_no_identity_and_ssmdiag_agrees() -> None:
    script = f"{START_AGENT.format(env='')}; {AGENT_CHOICE}; echo {SEPARATOR}; {CHECK} identity"
    head, checks = _in_node(script)  # no registration, IMDS disabled
    assert _agent_choice(head) == "none"
    identity = checks["identity"]
    assert identity["status"] == "fail"
    assert "the agent finds no identity and does not start" in identity["summary"]


def test_agent_not_restarted_after_register_clear() -> None:
    # The agent took OnPrem at its start; the registration is cleared while it runs.
    script = (
        f"{AGENT_CHOICE}; amazon-ssm-agent -register -clear >/dev/null 2>&1; "
        f"echo {SEPARATOR}; {CHECK} identity"
    )
    head, checks = _in_node(
        script, register=f"{MI} us-west-2", fake_imds=True, start_agent=True, agent_wait=0.5
    )
    assert _agent_choice(head) == "OnPrem"
    identity = checks["identity"]
    assert identity["status"] == "warn"
    assert f"recorded identity OnPrem {MI} at its last start" in identity["summary"]
    assert "systemctl restart amazon-ssm-agent" in identity["remediation"]


# (d) network.proxy: where the running agent's metadata calls really go --------------------


def _proxied_node(agent_env: str, tmp_path: Path) -> tuple[str, dict[str, dict[str, Any]]]:
    """The agent (with agent_env) on a node with a fake IMDS at 169.254.169.254:80 and a
    recording proxy at 127.0.0.1:3129; prints the requests each saw, then ssmdiag's check.

    A custom identity comes last in the agent's order, so that the agent keeps running
    (and ssmdiag reads its environment) even when its metadata calls fail."""
    recorder = tmp_path / "recorder.py"
    recorder.write_text(RECORDER)
    config = tmp_path / "amazon-ssm-agent.json"
    custom = {"InstanceID": "lab-custom-node", "Region": "us-east-1"}
    config.write_text(json.dumps({"Identity": {"CustomIdentities": [custom]}}))
    imds = NODE.parent / "fake-imds.py"
    env = f"-u AWS_EC2_METADATA_DISABLED -u AWS_EC2_METADATA_SERVICE_ENDPOINT {agent_env}"
    script = (
        "ip link set lo up && ip addr add 169.254.169.254/32 dev lo; "
        f"python3 {imds} 169.254.169.254 80 2>/var/log/lab-imds.log & "
        f"python3 {recorder} 127.0.0.1 3129 /var/log/lab-proxy.log & "
        "sleep 0.5; "
        f"{START_AGENT.format(env=env)}; {AGENT_CHOICE}; sleep 1; "
        "echo '--- proxy saw'; cat /var/log/lab-proxy.log 2>/dev/null; "
        "echo '--- imds saw'; cat /var/log/lab-imds.log; "
        f"echo {SEPARATOR}; {CHECK} network.proxy --region us-east-1"
    )
    head, checks = _in_node(script, config=config)
    assert "/proc/" in checks["network.proxy"]["details"]["source"]  # the running agent's
    return head, checks


def test_https_proxy_alone_leaves_imds_direct_as_the_agent_does(tmp_path: Path) -> None:
    head, checks = _proxied_node("https_proxy=http://127.0.0.1:3129", tmp_path)
    assert _agent_choice(head) == "EC2"  # its IMDS calls went direct and were answered
    assert "169.254.169.254" not in head.split("--- proxy saw")[1].split("--- imds saw")[0]
    proxy = checks["network.proxy"]
    assert proxy["status"] == "ok", proxy
    assert proxy["details"]["imds"] == "direct"
    assert proxy["details"]["per_endpoint"]["ssm"] == "http://127.0.0.1:3129"


def test_http_proxy_sends_imds_to_the_proxy_and_ssmdiag_warns(tmp_path: Path) -> None:
    head, checks = _proxied_node(
        "https_proxy=http://127.0.0.1:3129 http_proxy=http://127.0.0.1:3129", tmp_path
    )
    assert "PUT http://169.254.169.254/latest/api/token" in head  # the proxy got it
    assert _agent_choice(head) == "CustomIdentity"  # so the agent found no EC2 identity
    proxy = checks["network.proxy"]
    assert proxy["status"] == "warn", proxy
    assert "IMDS" in proxy["summary"] and "169.254.169.254" in proxy["summary"]
    assert "no_proxy" in proxy["remediation"]
    assert proxy["details"]["imds"] == "http://127.0.0.1:3129"


def test_upper_case_no_proxy_shadows_the_lower_case_one(tmp_path: Path) -> None:
    # Go reads NO_PROXY first: the lower-case exemption is never seen.
    head, checks = _proxied_node(
        "HTTP_PROXY=http://127.0.0.1:3129 NO_PROXY=example.com no_proxy=169.254.169.254",
        tmp_path,
    )
    assert "PUT http://169.254.169.254/latest/api/token" in head
    assert _agent_choice(head) == "CustomIdentity"  # its IMDS calls failed at the proxy
    proxy = checks["network.proxy"]
    assert proxy["status"] == "warn"
    assert "Add 169.254.169.254 to NO_PROXY" in proxy["remediation"]


def test_http_proxy_with_imds_exempt_is_fine(tmp_path: Path) -> None:
    head, checks = _proxied_node(
        "HTTPS_PROXY=http://127.0.0.1:3129 HTTP_PROXY=http://127.0.0.1:3129 "
        "no_proxy=169.254.169.254",
        tmp_path,
    )
    assert _agent_choice(head) == "EC2"
    assert "169.254.169.254" not in head.split("--- proxy saw")[1].split("--- imds saw")[0]
    proxy = checks["network.proxy"]
    assert proxy["status"] == "ok", proxy
    assert proxy["details"]["imds"] == "direct"
