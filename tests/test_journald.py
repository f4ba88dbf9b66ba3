"""The journald sink against a real systemd-journald in a private mount namespace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, ROOT_REQUIRED, hermetic_env, require_root, require_tool


def journal_run(
    tmp_path: Path, ssmdiag_args: list[str], *lab_args: str, timeout: float = 90
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Run ssmdiag under the test's own journald: (journal entries, stdout events, result)."""
    require_root("mounts tmpfs over /run/systemd in a private mount namespace")
    require_tool("unshare")
    require_tool("journalctl")
    if not any(
        Path(p).exists()
        for p in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")
    ):
        pytest.fail("systemd-journald is missing (Debian package systemd)")
    try:
        import systemd.journal  # noqa: F401 - the `systemd` extra (systemd-python)
    except ImportError:
        if ROOT_REQUIRED:
            pytest.fail("systemd-python is missing; scripts/test installs the systemd extra")
        pytest.skip("systemd-python is not installed")
    out = tmp_path / "out"
    out.mkdir()
    state = tmp_path / "state"
    config = tmp_path / "ssmdiag.toml"
    config.write_text(f'[daemon]\ninterval = 5\nfail_interval = 1.5\nstate_dir = "{state}"\n')
    subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            sys.executable,
            "-m",
            "tests.lab.journal",
            *lab_args,
            str(out),
            "--",
            sys.executable,
            "-m",
            "ssmdiag",
            "run",
            "--config",
            str(config),
            *ssmdiag_args,
        ],
        cwd=REPO,
        env=hermetic_env(),
        timeout=timeout,
        check=True,
    )
    entries = [json.loads(line) for line in (out / "journal.json").read_text().splitlines() if line]
    ours = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "ssmdiag"]
    stdout = [json.loads(line) for line in (out / "stdout.txt").read_text().splitlines() if line]
    result = json.loads((out / "result.json").read_text())
    result["stderr"] = (out / "stderr.txt").read_text()
    return ours, stdout, result


def test_events_reach_journald_with_structured_fields(tmp_path: Path) -> None:
    entries, stdout, result = journal_run(tmp_path, ["--once", "--sink", "journald"])
    assert result["journal_socket"] is True
    assert result["returncode"] == 2  # no agent on this machine: the health code is fail
    assert stdout == []  # the journal took everything; no fallback
    by_check = {
        e["SSMDIAG_CHECK_ID"]: e for e in entries if e.get("SSMDIAG_EVENT") == "check.result"
    }
    agent = by_check["agent.installed"]
    assert agent["SSMDIAG_STATUS"] == "fail" and agent["PRIORITY"] == "3"
    assert agent["MESSAGE"].startswith("FAIL agent.installed: SSM Agent is not installed")
    assert "fix: Install SSM Agent" in agent["MESSAGE"]
    assert "SSMDIAG_REMEDIATION" in agent
    ok = next(e for e in by_check.values() if e["SSMDIAG_STATUS"] == "ok")
    assert ok["PRIORITY"] == "6"
    summary = next(e for e in entries if e.get("SSMDIAG_EVENT") == "cycle.summary")
    assert summary["SSMDIAG_STATUS"] == "fail"
    assert json.loads(summary["SSMDIAG_COUNTS"])["fail"] >= 1
    assert summary["SSMDIAG_WORST"]  # the worst problem travels as JSON
    assert any(e.get("SSMDIAG_EVENT") == "heartbeat" for e in entries)
    assert any(e.get("SSMDIAG_EVENT") == "daemon.start" for e in entries)


def test_without_a_journal_the_sink_falls_back_to_stdout_quietly(tmp_path: Path) -> None:
    _, stdout, result = journal_run(tmp_path, ["--once", "--sink", "journald"], "--no-journald")
    assert result["journal_socket"] is False and result["returncode"] == 2
    fallback = [e for e in stdout if e["event"] == "sink.fallback"]
    assert len(fallback) == 1 and "no journal is running" in fallback[0]["message"]
    assert any(e["event"] == "cycle.summary" for e in stdout)
    assert "Traceback" not in result["stderr"]


def test_journald_dying_is_reported_once_and_the_daemon_keeps_going(tmp_path: Path) -> None:
    entries, stdout, result = journal_run(
        tmp_path,
        ["--sink", "journald", "--sink", "stdout"],
        "--kill-journald-after",
        "2.5",
        "--stop-after",
        "10",  # journald dies at 2.5 s; cycles every 1.5 s +/- 10 % plus the worker's start
    )
    assert result["returncode"] == 0  # stopped by SIGTERM, cleanly
    failed = [e for e in stdout if e["event"] == "sink.failed"]
    assert len(failed) == 1 and failed[0]["sink"] == "journald"
    assert "systemctl status systemd-journald" in failed[0]["message"]
    after = stdout[stdout.index(failed[0]) :]
    assert sum(e["event"] == "cycle.summary" for e in after) >= 2  # cycles go on
    assert any(e.get("SSMDIAG_EVENT") == "cycle.summary" for e in entries)  # before it died
    assert stdout[-1]["event"] == "daemon.stop"
    assert "Traceback" not in result["stderr"]
