from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from ssmdiag import __version__
from ssmdiag.checks import CHECK_IDS
from tests.conftest import REPO, run_cli

DOCUMENTED_IDS = [
    "agent.installed",
    "agent.service",
    "agent.restarts",
    "agent.process_user",
    "agent.config",
    "feature.sessions",
    "feature.kms_encryption",
    "feature.shell_profiles",
    "feature.port_forwarding",
    "feature.cloudwatch_streaming",
    "ssm_user",
    "session.run_as",
    "os.supported",
    "identity",
    "identity.credentials",
    "agent.log",
    "network.proxy",
    "endpoint.ec2messages",
    "endpoint.ssm",
    "endpoint.ssmmessages",
    "endpoint.s3",
    "endpoint.logs",
    "endpoint.kms",
    "permissions.identity",
    "permissions.s3",
    "permissions.logs",
    "permissions.kms",
    "clock.skew",
    "node.time_sync",
    "node.disk",
]


def test_check_ids_are_the_documented_stable_list() -> None:
    assert list(CHECK_IDS) == DOCUMENTED_IDS
    readme = (REPO / "README.md").read_text()
    for ident in DOCUMENTED_IDS:
        assert f"`{ident}`" in readme, f"{ident} missing from the README"


def test_version_prints_the_package_version() -> None:
    result = run_cli("version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"ssmdiag {__version__}"


@pytest.mark.parametrize("args", [("version",), ("features", "3.3.987.0", "--format", "json")])
def test_light_commands_import_neither_requests_nor_psutil(args: tuple[str, ...]) -> None:
    probe = (
        "import sys, runpy\n"
        f"sys.argv = ['ssmdiag', *{list(args)!r}]\n"
        "try:\n    runpy.run_module('ssmdiag', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('requests', 'psutil', 'urllib3') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, cwd=REPO
    )
    assert "HEAVY=\n" in result.stderr, result.stderr


def test_json_report_matches_the_schema_and_the_exit_code(
    validate_report: Callable[[dict[str, Any]], None],
    tmp_path: Path,
    write_config: Callable[[str], Path],
    fake_agent_factory: Callable[..., Path],
) -> None:
    agent = fake_agent_factory("3.3.987.0")
    config = write_config(f"[agent]\nbinary = '{agent}'\nconfig_file = '{tmp_path}/none.json'\n")
    result = run_cli("check", "--format", "json", "--config", str(config))
    report = json.loads(result.stdout)
    validate_report(report)
    assert [c["id"] for c in report["checks"]] == DOCUMENTED_IDS
    expected_exit = {"ok": 0, "warn": 1, "fail": 2, "unknown": 3}[report["status"]]
    assert result.returncode == expected_exit
    by_id = {c["id"]: c for c in report["checks"]}
    assert by_id["feature.sessions"]["status"] == "ok"
    assert by_id["agent.installed"]["details"]["version"] == "3.3.987.0"


def test_only_runs_the_named_checks_and_rejects_unknown_ids() -> None:
    result = run_cli("check", "--format", "json", "--only", "os.supported")
    report = json.loads(result.stdout)
    assert [c["id"] for c in report["checks"]] == ["os.supported"]
    assert report["status"] == "ok" and result.returncode == 0
    bad = run_cli("check", "--only", "agent.bogus")
    assert bad.returncode == 64 and "agent.bogus" in bad.stderr and "agent.installed" in bad.stderr


def test_disabled_check_is_reported_as_skipped_with_the_reason(
    write_config: Callable[[str], Path],
) -> None:
    config = write_config("[checks]\ndisable = ['os.supported']\n")
    result = run_cli("check", "--format", "json", "--only", "os.supported", "--config", str(config))
    check = json.loads(result.stdout)["checks"][0]
    assert check["status"] == "skip" and str(config) in check["summary"]


def test_table_fits_80_columns_and_has_no_colour_off_a_terminal() -> None:
    result = run_cli("check")
    assert result.stdout.startswith("ssmdiag ")
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "\033[" not in result.stdout
    assert "overall:" in result.stdout


def test_colour_on_a_terminal_unless_no_color() -> None:
    from ssmdiag.output.render import use_colour

    class Tty:
        def isatty(self) -> bool:
            return True

    assert use_colour(Tty(), {}) is True  # type: ignore[arg-type]
    assert use_colour(Tty(), {"NO_COLOR": "1"}) is False  # type: ignore[arg-type]


def test_usage_errors_exit_64() -> None:
    assert run_cli().returncode == 64
    assert run_cli("check", "--format", "yaml").returncode == 64
    assert run_cli("frobnicate").returncode == 64


def test_logs_go_to_stderr_so_stdout_is_only_the_report() -> None:
    result = run_cli(
        "check",
        "--format",
        "json",
        "--only",
        "os.supported",
        "--log-level",
        "debug",
        "--log-format",
        "json",
    )
    json.loads(result.stdout)  # nothing but the report on stdout
    events = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert any(
        e.get("event") == "check.result" and e.get("check_id") == "os.supported" for e in events
    )
