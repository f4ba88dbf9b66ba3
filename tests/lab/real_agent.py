"""The real SSM Agent (built from its public source) and its throwaway-node harness.

`../shared/real-agent/` beside the repository holds the agent, `ssm-cli`,
`agent-config-probe` (the agent's own appconfig and endpoint code) and
`harness/node.sh` (private mount, network and PID namespaces; the agent installed at
/usr/bin as the RPM does). Tests that need it skip without it or without root, and fail
instead under SSMDIAG_LAB_REQUIRED=1 (CI), like the rest of the lab.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
REAL_AGENT = Path(os.environ.get("SSMDIAG_REAL_AGENT", REPO.parent / "shared" / "real-agent"))
AGENT_VERSION = "3.3.1142.0"  # the tag the binaries were built from (README beside them)
PROBE = REAL_AGENT / "bin" / "agent-config-probe"
NODE = REAL_AGENT / "harness" / "node.sh"
SSMDIAG = (sys.executable, "-m", "ssmdiag")


def require_real_agent(*, root: bool = True) -> Path:
    """The real-agent directory, or skip (fail in CI) when it or root is missing."""
    required = os.environ.get("SSMDIAG_LAB_REQUIRED") == "1"
    problem = None
    if not PROBE.is_file():
        problem = f"{REAL_AGENT} (the real agent, shared/real-agent) is missing"
    elif root and os.geteuid() != 0:
        problem = "the throwaway-node harness needs root"
    if problem:
        if required:
            pytest.fail(f"{problem} but SSMDIAG_LAB_REQUIRED=1 forbids skipping")
        pytest.skip(problem)
    return REAL_AGENT


@dataclass
class ProbeResult:
    """What the agent's own code derives from one config file for one identity region."""

    refused: bool  # the agent will not start with this file
    error: str
    values: dict[str, Any]
    crashed: bool = False  # the agent's config code panicked (it will not start either)


def agent_config_probe(config_file: Path, identity_region: str, timeout: float = 20) -> ProbeResult:
    """Run the agent's appconfig + endpoint code on a file (no root needed)."""
    proc = subprocess.run(
        [str(PROBE), str(config_file), identity_region],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=config_file.parent,
        env={"PATH": "/usr/bin:/bin", "HOME": str(config_file.parent)},
        check=False,
    )
    out = proc.stdout
    start = out.find("\n{")
    body = out[start + 1 :] if start >= 0 else out if out.startswith("{") else ""
    if proc.returncode == 2 and "panic" in proc.stderr:
        return ProbeResult(True, "panic: " + proc.stderr.splitlines()[0], {}, crashed=True)
    if not body:
        raise AssertionError(
            f"probe printed no JSON (rc {proc.returncode}): {out!r} {proc.stderr!r}"
        )
    values: dict[str, Any] = json.loads(body)
    if proc.returncode == 3:
        return ProbeResult(True, str(values.get("config_error", "")), values)
    if proc.returncode != 0:
        raise AssertionError(f"probe exited {proc.returncode}: {proc.stderr!r}")
    return ProbeResult(False, "", values)


def node_run(
    argv: list[str] | tuple[str, ...],
    *,
    config: Optional[Path] = None,
    fake_imds: bool = False,
    imds_region: str = "us-east-1",
    imds_instance_id: str = "i-0123456789abcdef0",
    imds_profile: Optional[str] = None,
    register: Optional[str] = None,
    start_agent: bool = False,
    agent_env: str = "",
    agent_wait: float = 3,
    extra_env: Optional[dict[str, str]] = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run argv as root on a fresh throwaway node (harness/node.sh); nothing stays."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LAB_CONFIG": str(config) if config else "none",
        "PYTHONPATH": str(REPO),
    }
    if fake_imds:
        env.update(LAB_FAKE_IMDS="1", IMDS_REGION=imds_region, IMDS_INSTANCE_ID=imds_instance_id)
        if imds_profile:
            env["IMDS_PROFILE"] = imds_profile
    else:
        env["AWS_EC2_METADATA_DISABLED"] = "true"
    if register:
        env["LAB_REGISTER"] = register
    if start_agent:
        env.update(LAB_START_AGENT="1", LAB_AGENT_ENV=agent_env, LAB_AGENT_WAIT=str(agent_wait))
    env.update(extra_env or {})
    return subprocess.run(
        ["bash", str(NODE), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        check=False,
    )


def node_ssmdiag(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """`ssmdiag ARGS` (this checkout's code) on a throwaway node."""
    return node_run([*SSMDIAG, *args], **kwargs)
