"""ssmdiag against the real SSM Agent (3.3.1142.0, built from its public source) on throwaway
nodes (../shared/real-agent/harness/node.sh: private mount, network and PID namespaces, tmpfs
overlays on /etc, /usr/bin, /var/lib, /var/log and /root; nothing stays).

What is measured here is the agent's own behaviour, not our reading of its source: which
amazon-ssm-agent.json a relocated agent loads is taken from the line it prints when it loads
one ("Applying config override from PATH.", agent/appconfig/appconfig.go:50), and ssmdiag
must name the same file. Needs root and ../shared/real-agent: skips without them, fails
instead under SSMDIAG_LAB_REQUIRED=1.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.lab.real_agent import AGENT_VERSION, node_run, node_ssmdiag, require_real_agent

ETC_CONFIG = "/etc/amazon/ssm/amazon-ssm-agent.json"
RELOCATED = "/opt/ssmagent"
RELOCATED_CONFIG = f"{RELOCATED}/configuration/amazon-ssm-agent.json"
# The real agent stays up only with an identity: the harness's fake IMDS with a profile.
IDENTITY: dict[str, Any] = {"fake_imds": True, "imds_profile": "ssmdiag-test-role"}

# Lays out a relocated agent in /opt/ssmagent (an overlay on /opt inside the node's private
# mount namespace, so the host's /opt is never written): the real binary, stand-in workers
# (the real ones are not built at this tag, see ../shared/real-agent/README.md) and
# configuration/amazon-ssm-agent.json, all root:root, 0755 / 0644. $1 then changes it
# (chmod, chown), the real agent is started from there, and $2 (Python) collects the results.
RELOCATE = r"""
set -eu
[ -d /opt ] || { echo "no /opt on this host to overlay" >&2; exit 90; }
mkdir -p "$LAB_T/opt-up" "$LAB_T/opt-work"
mount -t overlay overlay -o "lowerdir=/opt,upperdir=$LAB_T/opt-up,workdir=$LAB_T/opt-work" /opt
D=/opt/ssmagent
install -d -m 0755 -o root -g root "$D" "$D/configuration"
install -m 0755 -o root -g root /usr/bin/amazon-ssm-agent "$D/amazon-ssm-agent"
printf '#!/bin/sh\nexec sleep 60\n' > "$LAB_T/worker"
for w in ssm-agent-worker ssm-session-worker; do
  install -m 0755 -o root -g root "$LAB_T/worker" "$D/$w"
done
printf '{"Agent": {"Region": "eu-west-3"}}\n' > "$LAB_T/relocated.json"
install -m 0644 -o root -g root "$LAB_T/relocated.json" "$D/configuration/amazon-ssm-agent.json"
sh -c "$1"
(cd / && "$D/amazon-ssm-agent" > "$LAB_T/agent.out" 2>&1 &)
sleep 4
exec "$PYTHON" -c "$2"
"""

# Runs inside the node: ssmdiag's report, what the platform derives, and what the agent said.
COLLECT = r"""
import dataclasses, json, os, subprocess, sys
from ssmdiag.config import Config
from ssmdiag.platform.linux import LinuxPlatform

checks = ["agent.installed", "agent.process_user", "agent.config"]
run = subprocess.run(
    [sys.executable, "-m", "ssmdiag", "check", "--format", "json", "--only", *checks],
    capture_output=True, text=True, timeout=60,
)
platform = LinuxPlatform(Config())
discovery = platform.discover_agent()
paths = platform.agent_paths(discovery.binary_path)
with open(os.path.join(os.environ["LAB_T"], "agent.out"), errors="replace") as handle:
    agent_out = handle.read()
print(json.dumps({
    "report": json.loads(run.stdout), "stderr": run.stderr, "binary": discovery.binary_path,
    "processes": [dataclasses.asdict(p) for p in discovery.processes],
    "paths": dataclasses.asdict(paths), "agent_out": agent_out,
}))
"""


@pytest.fixture(autouse=True)
def _real_agent() -> None:
    require_real_agent()


def checks_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


def json_report(
    result: Any, validate: Callable[[dict[str, Any]], None]
) -> dict[str, dict[str, Any]]:
    assert "Traceback" not in result.stderr, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    validate(report)
    return checks_of(report)


def agent_loaded(agent_out: str) -> set[str]:
    """The config files the agent says it applied (appconfig.go:50)."""
    return set(re.findall(r"Applying config override from (\S+)\.\n", agent_out))


def relocated_node(change: str, tmp_path: Path) -> dict[str, Any]:
    etc = tmp_path / "etc.json"
    etc.write_text('{"Agent": {"Region": "us-west-1"}}\n')
    result = node_run(
        ["bash", "-c", RELOCATE, "relocate", change, COLLECT],
        config=etc,
        extra_env={"PYTHON": sys.executable},
        **IDENTITY,
    )
    assert result.returncode == 0, (result.returncode, result.stdout[-2000:], result.stderr)
    collected: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert "Traceback" not in collected["stderr"], collected["stderr"]
    return collected


# -- discovery, version and features from the real binary -------------------------------------
def test_installed_real_agent_is_found_with_its_version(
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    result = node_ssmdiag(
        "check",
        "--format",
        "json",
        "--only",
        "agent.installed",
        "agent.process_user",
        "agent.config",
        "feature.sessions",
        "feature.port_forwarding",
    )
    checks = json_report(result, validate_report)
    installed = checks["agent.installed"]
    assert installed["status"] == "ok"
    assert installed["details"]["version"] == AGENT_VERSION
    assert installed["details"]["binary"] == "/usr/bin/amazon-ssm-agent"
    binary = next(s for s in installed["details"]["sources"] if s["source"] == "binary")
    assert (binary["state"], binary["version"]) == ("found", AGENT_VERSION)
    assert installed["details"]["processes"] == []
    assert checks["agent.process_user"]["status"] == "skip"
    assert checks["agent.config"]["details"]["path"] == ETC_CONFIG
    assert checks["feature.sessions"]["status"] == "ok"
    assert checks["feature.port_forwarding"]["status"] == "ok"
    assert "release_notes" not in checks["feature.port_forwarding"]["details"]


def test_features_of_the_installed_real_agent() -> None:
    result = node_ssmdiag("features", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["version"] == AGENT_VERSION
    assert {f["id"]: f["status"] for f in data["features"]} == {
        "sessions": "ok",
        "kms_encryption": "ok",
        "shell_profiles": "ok",
        "port_forwarding": "ok",
        "cloudwatch_streaming": "ok",
    }


def test_running_real_agent_is_root_and_judged_ok(
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    result = node_ssmdiag(
        "check",
        "--format",
        "json",
        "--only",
        "agent.installed",
        "agent.process_user",
        start_agent=True,
        **IDENTITY,
    )
    checks = json_report(result, validate_report)
    [process] = checks["agent.installed"]["details"]["processes"]
    assert process["user"] == "root"
    assert process["version"] == AGENT_VERSION  # read from /proc/PID/exe, the running image
    assert process["exe"] == "/usr/bin/amazon-ssm-agent"
    user = checks["agent.process_user"]
    assert user["status"] == "ok"
    assert user["details"]["processes"] == [{"pid": process["pid"], "user": "root", "uid": 0}]


def test_real_agent_running_as_nobody_fails_the_user_judgement(
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    # As nobody the agent cannot even create /var/lib/amazon/ssm/ipc and exits at once; with
    # its directories handed to nobody it stays up but cannot store its identity.
    script = r"""
set -eu
chown -R 65534:65534 /var/lib/amazon/ssm /var/log/amazon/ssm
(cd / && setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/amazon-ssm-agent \
    > "$LAB_T/agent.out" 2>&1 &)
sleep 4
"$PYTHON" -m ssmdiag check --format json --only agent.installed agent.process_user || true
echo "--- agent output"
cat "$LAB_T/agent.out"
"""
    result = node_run(["bash", "-c", script], extra_env={"PYTHON": sys.executable}, **IDENTITY)
    assert result.returncode == 0, result.stderr
    report_text, _, agent_out = result.stdout.partition("--- agent output\n")
    report = json.loads(report_text)
    validate_report(report)
    checks = checks_of(report)
    [process] = checks["agent.installed"]["details"]["processes"]
    assert process["user"] == "nobody"
    user = checks["agent.process_user"]
    assert user["status"] == "fail"
    assert user["summary"].startswith(f"SSM Agent (pid {process['pid']}) runs as nobody, not root")
    assert "User=" in user["remediation"] and "systemctl restart" in user["remediation"]
    # The agent's own words for why it must be root.
    assert "Try running as sudo/administrator." in agent_out


# -- relocated layouts: the agent's choice (its own output) and ssmdiag's must agree ---------
@pytest.mark.parametrize(
    ("change", "reads", "words"),
    [
        pytest.param(":", RELOCATED_CONFIG, "owned by root:root", id="root-owned-0755-0644"),
        pytest.param(
            f"chmod 0666 {RELOCATED_CONFIG}",
            RELOCATED_CONFIG,
            "owned by root:root",
            id="config-world-writable-still-read",  # the agent checks only its ownership
        ),
        pytest.param(
            f"chmod 0775 {RELOCATED}/ssm-agent-worker",
            ETC_CONFIG,
            f"relocated layout in {RELOCATED} ignored: {RELOCATED}/ssm-agent-worker is "
            "writable by group (mode 0775)",
            id="worker-group-writable",
        ),
        pytest.param(
            f"chown 1000:1000 {RELOCATED}/ssm-session-worker",
            ETC_CONFIG,
            "ssm-session-worker is owned by uid 1000, gid 1000, not root:root",
            id="worker-not-root-owned",
        ),
        pytest.param(
            f"chown 1000:0 {RELOCATED_CONFIG}",
            ETC_CONFIG,
            f"ignores {RELOCATED_CONFIG}: {RELOCATED_CONFIG} is owned by uid 1000, gid 0",
            id="config-owned-by-another-uid",
        ),
        pytest.param(
            f"chown 0:1000 {RELOCATED}/configuration",
            ETC_CONFIG,
            f"{RELOCATED}/configuration is owned by uid 0, gid 1000, not root:root",
            id="configuration-folder-group-not-root",
        ),
    ],
)
def test_relocated_layout_is_judged_as_the_agent_judges_it(
    change: str,
    reads: str,
    words: str,
    tmp_path: Path,
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    collected = relocated_node(change, tmp_path)
    # The agent's own choice, from what it printed while loading its configuration.
    assert agent_loaded(collected["agent_out"]) == {reads}, collected["agent_out"][-2000:]
    # ssmdiag follows the running agent to /opt/ssmagent and reads the same file.
    [process] = collected["processes"]
    assert process["launch_path"] == f"{RELOCATED}/amazon-ssm-agent"
    assert process["uid"] == 0
    assert collected["binary"] == f"{RELOCATED}/amazon-ssm-agent"
    paths = collected["paths"]
    assert paths["config_file"] == reads
    assert paths["config_file_source"] == ("relocated" if reads == RELOCATED_CONFIG else "default")
    assert words in paths["config_file_note"]
    assert paths["ignored_config_file"] == ("" if reads == RELOCATED_CONFIG else RELOCATED_CONFIG)
    report = collected["report"]
    validate_report(report)
    checks = checks_of(report)
    assert checks["agent.config"]["details"]["path"] == reads
    assert words in checks["agent.config"]["details"]["path_reason"]
    if reads == RELOCATED_CONFIG:
        assert checks["agent.config"]["status"] == "ok"
    else:  # a relocated config someone put there, which the agent does not read
        assert checks["agent.config"]["status"] == "warn"
        assert f"the agent ignores {RELOCATED_CONFIG}" in checks["agent.config"]["summary"]
    assert checks["agent.process_user"]["status"] == "ok"
