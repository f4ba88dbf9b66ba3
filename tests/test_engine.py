from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import pytest

from ssmdiag import checks as registry
from ssmdiag.checks.base import Check, Context
from ssmdiag.engine import run_checks
from ssmdiag.platform.linux import LinuxLocations
from ssmdiag.report import Finding, Status, overall_status
from tests.conftest import make_platform


@pytest.mark.parametrize(
    ("statuses", "overall"),
    [
        (["ok", "skip"], "ok"),
        (["ok", "warn", "error"], "warn"),
        (["ok", "error", "skip"], "unknown"),
        (["warn", "fail", "error"], "fail"),
        ([], "ok"),
    ],
)
def test_overall_status_rules(statuses: list[str], overall: str) -> None:
    assert overall_status([Status(s) for s in statuses]).value == overall


def test_a_crashing_check_becomes_its_own_error_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch,
    no_default_agent: LinuxLocations,
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    def explode(ctx: Context) -> Finding:
        raise RuntimeError("boom")

    broken = Check("os.supported", "Operating system supported", explode)
    monkeypatch.setattr("ssmdiag.engine.ALL_CHECKS", (*registry.ALL_CHECKS[:-1], broken))
    platform = make_platform(no_default_agent)
    report = run_checks(platform, platform.config)
    by_id = {c.id: c for c in report.checks}
    assert by_id["os.supported"].status is Status.ERROR
    assert "RuntimeError: boom" in by_id["os.supported"].summary
    assert by_id["agent.installed"].status is Status.FAIL  # the others ran
    validate_report(report.to_dict())


def test_os_release_is_read_for_the_report(
    no_default_agent: LinuxLocations,
    tmp_path: Path,
    validate_report: Callable[[dict[str, Any]], None],
) -> None:
    release = tmp_path / "os-release"
    release.write_text(
        'NAME="Amazon Linux"\nVERSION="2023"\nID="amzn"\nVERSION_ID="2023"\n'
        'PRETTY_NAME="Amazon Linux 2023.6.20241212"\n'
    )
    platform = make_platform(dataclasses.replace(no_default_agent, os_release=str(release)))
    report = run_checks(platform, platform.config, ["os.supported"])
    data = report.to_dict()
    validate_report(data)
    assert data["host"]["os"] == {"family": "linux", "name": "Amazon Linux", "version": "2023"}
    check = data["checks"][0]
    assert check["status"] == "ok" and "Amazon Linux 2023" in check["summary"]
    assert check["details"]["kernel"]


def test_missing_os_release_is_still_a_report(
    no_default_agent: LinuxLocations, tmp_path: Path
) -> None:
    platform = make_platform(
        dataclasses.replace(no_default_agent, os_release=str(tmp_path / "none"))
    )
    check = run_checks(platform, platform.config, ["os.supported"]).checks[0]
    assert check.status is Status.OK and "os_release_problem" in check.details
