"""A secret planted in the agent's config or ssmdiag's never reaches any output: the table,
the JSON report, `endpoints`, stderr, or the daemon's sinks (which go to CloudWatch).

Runs inside a lab network namespace: the planted hosts resolve nowhere and no packet
leaves the machine."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import REPO, hermetic_env
from tests.lab import NetNS, start_dns

SECRET = "PLANTED-Secret-9f3k"
KEY_ID = "AKIAPLANTEDKEY123456"


def test_no_planted_secret_reaches_any_output(netns: NetNS, tmp_path: Path) -> None:
    start_dns(netns, {})
    agent = tmp_path / "agent.json"
    agent.write_text(
        json.dumps(
            {
                "Ssm": {"Endpoint": f"https://admin:{SECRET}@ssm.internal.example"},
                "Mds": {"Endpoint": f"https://admin:{SECRET}@ec2messages.internal.example:x"},
                "Mgs": {"Endpoint": f"ssmmessages.internal.example/{KEY_ID}"},
            }
        )
    )
    state = tmp_path / "state"
    health = tmp_path / "health.json"
    config = tmp_path / "ssmdiag.toml"
    config.write_text(
        f"[agent]\nconfig_file = '{agent}'\nbinary = '{tmp_path}/no-agent'\n"
        f"[network]\nregion = 'us-east-1'\nconnect_timeout = 1\nprobe_timeout = 2\n"
        f"[daemon]\nstate_dir = '{state}'\n"
        f"[sinks]\nenabled = ['file']\nfile_path = '{health}'\n"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(f"[endpoints]\nssm = 'ftp://admin:{SECRET}@x.example'\n")
    ssmdiag = [sys.executable, "-m", "ssmdiag"]
    runs = [
        ["check", "--config", str(config)],
        ["check", "--format", "json", "--config", str(config)],
        ["endpoints", "--config", str(config)],
        ["endpoints", "--format", "json", "--config", str(config)],
        ["endpoints", "--config", str(bad), "--region", "us-east-1"],
        ["check", "--config", str(config), "--log-level", "debug"],
        ["run", "--once", "--config", str(config)],
    ]
    seen = []
    for args in runs:
        result = netns.run([*ssmdiag, *args], timeout=60, env=hermetic_env(), cwd=str(REPO))
        assert "Traceback" not in result.stderr, (args, result.stderr)
        seen.append((args, result.stdout + result.stderr))
    seen.append((["health.json"], health.read_text()))
    for args, text in seen:
        assert SECRET not in text, args
        assert KEY_ID not in text, args
    everything = "".join(text for _, text in seen)
    assert "https://***@ssm.internal.example" in everything  # still says which endpoint
    assert "ssm.internal.example" in seen[-1][1]  # the daemon's events name it too
