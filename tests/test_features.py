from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from ssmdiag.features import FEATURES, evaluate_all
from ssmdiag.versions import AgentVersion
from tests.conftest import run_cli


def statuses(version: str, required: tuple[str, ...] = ()) -> dict[str, str]:
    return {v.feature.id: v.status for v in evaluate_all(AgentVersion.parse(version), required)}


def test_documented_minimums_are_the_reference_values() -> None:
    assert {f.id: str(f.minimum) for f in FEATURES} == {
        "sessions": "2.3.68.0",
        "kms_encryption": "2.3.539.0",
        "shell_profiles": "3.0.161.0",
        "port_forwarding": "3.0.222.0",
        "cloudwatch_streaming": "3.0.284.0",
    }


def test_recent_agent_allows_everything() -> None:
    assert set(statuses("3.3.987.0").values()) == {"ok"}


def test_sessions_below_minimum_always_fail() -> None:
    assert statuses("2.3.67.0")["sessions"] == "fail"
    assert statuses("2.3.68.0")["sessions"] == "ok"


def test_optional_feature_below_minimum_warns_unless_required() -> None:
    assert statuses("3.0.221.0")["port_forwarding"] == "warn"
    assert statuses("3.0.221.0", ("port_forwarding",))["port_forwarding"] == "fail"
    assert statuses("3.0.222.0", ("port_forwarding",))["port_forwarding"] == "ok"


@pytest.mark.parametrize(
    ("feature", "documented", "inside_gap", "release_notes"),
    [
        ("shell_profiles", "3.0.161.0", "3.0.195.0", "3.0.196.0"),
        ("cloudwatch_streaming", "3.0.284.0", "3.0.355.9", "3.0.356.0"),
    ],
)
def test_release_notes_gap_is_a_warning_even_when_required(
    feature: str, documented: str, inside_gap: str, release_notes: str
) -> None:
    assert statuses(documented, (feature,))[feature] == "warn"
    assert statuses(inside_gap, (feature,))[feature] == "warn"
    assert statuses(release_notes, (feature,))[feature] == "ok"
    verdict = next(
        v for v in evaluate_all(AgentVersion.parse(inside_gap)) if v.feature.id == feature
    )
    assert "release notes" in verdict.summary and release_notes in verdict.summary


def test_features_command_prints_the_documented_json() -> None:
    result = run_cli("features", "3.0.200.0", "--format", "json")
    data = json.loads(result.stdout)
    assert data["version"] == "3.0.200.0"
    assert [f["id"] for f in data["features"]] == [
        "sessions",
        "kms_encryption",
        "shell_profiles",
        "port_forwarding",
        "cloudwatch_streaming",
    ]
    by_id = {f["id"]: f for f in data["features"]}
    assert by_id["sessions"]["minimum"] == "2.3.68.0" and by_id["sessions"]["status"] == "ok"
    assert by_id["port_forwarding"]["status"] == "warn"
    assert all(f["title"] for f in data["features"])
    assert result.returncode == 1  # warn


def test_features_honours_required_features_from_config(
    write_config: Callable[[str], Path],
) -> None:
    config = write_config('[features]\nrequired = ["port_forwarding"]\n')
    result = run_cli("features", "3.0.200.0", "--format", "json", "--config", str(config))
    by_id = {f["id"]: f for f in json.loads(result.stdout)["features"]}
    assert by_id["port_forwarding"]["status"] == "fail"
    assert result.returncode == 2


@pytest.mark.parametrize("garbage", ["garbage", "3.0", "3.0.x.0", "'; rm -rf /'"])
def test_features_with_garbage_version_is_a_usage_error_not_a_traceback(garbage: str) -> None:
    result = run_cli("features", garbage)
    assert result.returncode == 64
    assert "unparseable SSM Agent version" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_features_table_fits_80_columns() -> None:
    result = run_cli("features", "2.3.50.0", env={"NO_COLOR": "1"})
    assert result.returncode == 2  # sessions unavailable
    assert "sessions" in result.stdout and "FAIL" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
