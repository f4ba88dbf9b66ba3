"""Hostile or impostor metadata services on loopback: every answer ends within the IMDS
budget as a named state, never a traceback, and nothing it sent is echoed."""

from __future__ import annotations

import json
import socket
import time
from typing import Callable

import pytest

from ssmdiag.identity import query_imds
from tests.adversarial.test_hostile_peers import Peer, answer
from tests.conftest import run_cli

BUDGET = 1.5


def imds_env(peer: Peer) -> dict[str, str]:
    return {
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://{peer.authority}",
        "AWS_EC2_METADATA_DISABLED": "false",
    }


def drip(peer: Peer, conn: socket.socket) -> None:
    peer.read_request(conn)
    peer.drip(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 56\r\n\r\n", b"A")


def captive_portal(peer: Peer, conn: socket.socket) -> None:
    peer.read_request(conn)
    page = b"<html><body>Please log in to the corporate network</body></html>"
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s"
        % (len(page), page)
    )


def crlf_token(peer: Peer, conn: socket.socket) -> None:
    peer.read_request(conn)
    body = b"INJECTED\r\nX-Planted: PLANTED-TOKEN-LINE"
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


@pytest.mark.parametrize(
    ("behave", "state", "words"),
    [
        (drip, "unreachable", "no answer within"),
        (captive_portal, "not_imds", "web page"),
        (crlf_token, "not_imds", "not an IMDSv2 token"),
        (answer(b"SSH-2.0-OpenSSH_9.6\r\n"), "not_imds", "not HTTP"),
    ],
    ids=["drip", "captive-portal", "crlf-token", "not-http"],
)
def test_impostor_imds_is_named_within_its_budget(
    peers: Callable[..., Peer], behave: Callable[[Peer, socket.socket], None], state: str,
    words: str,
) -> None:  # fmt: skip
    peer = peers(behave)
    started = time.monotonic()
    result = query_imds(imds_env(peer), BUDGET)
    elapsed = time.monotonic() - started
    assert elapsed < BUDGET + 0.8, elapsed  # + the 0.5 s hop-limit GET at most
    assert result.state == state, result
    assert words in result.note
    assert "PLANTED" not in result.note


@pytest.mark.parametrize(
    "endpoint", ["http://[::1", "http://127.0.0.1:abc", "ftp://127.0.0.1", "http://"]
)
def test_a_broken_imds_endpoint_variable_is_a_finding(endpoint: str) -> None:
    result = run_cli(
        "check", "--format", "json", "--only", "identity",
        env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoint, "AWS_EC2_METADATA_DISABLED": "false"},
    )  # fmt: skip
    assert "Traceback" not in result.stderr
    check = json.loads(result.stdout)["checks"][0]
    assert check["status"] in ("warn", "fail"), check
    assert "AWS_EC2_METADATA_SERVICE_ENDPOINT" in check["summary"]


def test_a_captive_portal_on_imds_is_named_and_the_rest_goes_on(
    peers: Callable[..., Peer],
) -> None:
    peer = peers(captive_portal)
    result = run_cli(
        "check", "--format", "json", "--only", "identity", "identity.credentials",
        "--region", "us-east-1", env=imds_env(peer),
    )  # fmt: skip
    assert "Traceback" not in result.stderr
    checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    identity = checks["identity"]
    assert identity["status"] in ("warn", "fail")
    assert "not the instance metadata service" in identity["summary"]
    assert "no_proxy=169.254.169.254" in identity["remediation"]
    assert checks["identity.credentials"]["status"] != "error"
