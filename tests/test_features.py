from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import pytest

from ssmdiag.engine import run_checks
from ssmdiag.features import (
    FEATURES,
    SSM_USER_CREATED_FROM,
    SSM_USER_RELEASE_NOTES,
    Feature,
    evaluate_all,
)
from ssmdiag.platform.linux import LinuxLocations
from ssmdiag.versions import AgentVersion
from tests.conftest import make_platform, run_cli
from tests.lab.real_agent import require_real_agent


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


# -- the agent's own release notes (../shared/real-agent/RELEASENOTES.md, tag 3.3.1142.0) ----
def release_note_sections() -> dict[str, list[str]]:
    """RELEASENOTES.md as {version: [entries]}, newest first as the file lists them."""
    text = (require_real_agent(root=False) / "RELEASENOTES.md").read_text()
    sections: dict[str, list[str]] = {}
    lines = text.splitlines()
    current: list[str] = []
    for line, underline in zip(lines, [*lines[1:], ""]):
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", line.strip()) and underline.startswith("==="):
            current = sections.setdefault(line.strip(), [])
        elif line.startswith("- "):
            current.append(line[2:].strip())
    return sections


def first_release_with(sections: dict[str, list[str]], text: str) -> str:
    found = [v for v, entries in sections.items() if any(text in e for e in entries)]
    assert found, f"{text!r} is in no section of RELEASENOTES.md"
    return min(found, key=AgentVersion.parse)


@pytest.mark.parametrize(
    "feature", [f for f in FEATURES if f.release_notes], ids=lambda f: str(f.id)
)
def test_each_release_note_is_the_first_section_that_ships_it(feature: Feature) -> None:
    note = feature.release_notes
    assert note is not None
    quoted = note.entry.split(" ...")[0]
    assert first_release_with(release_note_sections(), quoted) == str(note.version)


def test_ssm_user_release_note_is_2_3_68_0_and_2_3_50_0_has_no_notes() -> None:
    sections = release_note_sections()
    quoted = SSM_USER_RELEASE_NOTES.entry.split(" ...")[0]
    assert first_release_with(sections, quoted) == "2.3.68.0"
    assert first_release_with(sections, "ssm-user") == "2.3.68.0"
    assert "2.3.50.0" not in sections
    assert str(SSM_USER_CREATED_FROM) == "2.3.50.0"  # the documented threshold stays


def test_ssh_through_the_port_plugin_predates_the_documented_minimum() -> None:
    sections = release_note_sections()
    assert first_release_with(sections, "Port plugin for SSH/SCP") == "2.3.672.0"
    assert "Added support for TCP multiplexing in port plugin" in sections["3.0.222.0"]


@pytest.mark.parametrize("version", ["2.3.672.0", "3.0.221.0"])
def test_port_forwarding_keeps_the_documented_minimum_and_mentions_the_notes(version: str) -> None:
    verdict = next(
        v for v in evaluate_all(AgentVersion.parse(version)) if v.feature.id == "port_forwarding"
    )
    assert verdict.status == "warn"
    assert "need agent 3.0.222.0" in verdict.summary
    assert verdict.remediation is not None and "to 3.0.222.0 or later" in verdict.remediation
    assert verdict.release_notes is not None
    assert "2.3.672.0" in verdict.release_notes and "Add Port plugin for SSH/SCP" in (
        verdict.release_notes
    )
    assert "before the documented minimum 3.0.222.0" in verdict.release_notes


@pytest.mark.parametrize("version", ["2.3.671.0", "3.0.222.0", "3.3.1142.0"])
def test_release_notes_remark_appears_only_where_notes_and_docs_disagree(version: str) -> None:
    verdicts = evaluate_all(AgentVersion.parse(version))
    assert next(v for v in verdicts if v.feature.id == "port_forwarding").release_notes is None


def test_feature_check_puts_the_release_notes_in_details(
    no_default_agent: LinuxLocations, fake_agent_factory: Callable[..., Path]
) -> None:
    platform = make_platform(no_default_agent, agent_binary=str(fake_agent_factory("3.0.161.0")))
    report = run_checks(platform, platform.config, ["feature.port_forwarding"])
    details = report.checks[0].details
    assert report.checks[0].status.value == "warn"
    assert details["minimum"] == "3.0.222.0" and details["release_notes_version"] == "2.3.672.0"
    assert details["release_notes_entry"] == "Add Port plugin for SSH/SCP"
    assert "ssmdiag judges by the documented minimum" in details["release_notes"]


def test_gap_features_recommend_the_release_notes_version() -> None:
    verdict = next(
        v for v in evaluate_all(AgentVersion.parse("3.0.200.0")) if v.feature.id == "shell_profiles"
    )
    assert verdict.status == "ok"
    verdict = next(
        v for v in evaluate_all(AgentVersion.parse("3.0.170.0")) if v.feature.id == "shell_profiles"
    )
    assert verdict.remediation is not None and "to 3.0.196.0 or later" in verdict.remediation
    assert verdict.release_notes is not None and "may lack it" in verdict.release_notes
