"""Files every package ships (the default config, the CloudWatch agent fragments, checked
against the agent's documented rules), the launchd plist, and packaging/build-all."""

from __future__ import annotations

import datetime
import json
import plistlib
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ssmdiag import __version__
from ssmdiag.cli import _build_parser
from ssmdiag.config import Config, load_config
from ssmdiag.output.sinks import EVENT_IDS, default_file_path
from tests.conftest import REPO, require_tool, run_cli

PACKAGING = REPO / "packaging"

# The CloudWatch agent's documented keys (shared/reference/cloudwatch-and-inventory-formats.md).
FILE_KEYS = {
    "file_path",
    "log_group_name",
    "log_stream_name",
    "timestamp_format",
    "timezone",
    "multi_line_start_pattern",
    "encoding",
    "retention_in_days",
    "filters",
}
EVENT_KEYS = {
    "event_name",
    "event_levels",
    "event_ids",
    "log_group_name",
    "log_stream_name",
    "event_format",
    "retention_in_days",
}
RETENTION = {-1, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827}
RETENTION |= {2192, 2557, 2922, 3288, 3653}
PLACEHOLDERS = {"instance_id", "hostname", "local_hostname", "ip_address"}
STRFTIME_SUBSET = set("yYmdbBaAjHIklpMSfZz")  # what the agent's timestamp_format understands


def check_log_entry(entry: dict[str, Any], allowed: set[str]) -> None:
    assert set(entry) <= allowed, f"unknown keys {set(entry) - allowed}"
    assert entry["log_group_name"].startswith("/ssmdiag/")
    for name in re.findall(r"\{([^}]*)\}", entry["log_stream_name"]):
        assert name in PLACEHOLDERS
    assert entry.get("retention_in_days", -1) in RETENTION


def fragment(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PACKAGING / "cloudwatch" / name).read_text())
    assert set(data) == {"logs"} and set(data["logs"]) == {"logs_collected"}
    return data["logs"]["logs_collected"]


@pytest.mark.parametrize(
    ("name", "system"), [("ssmdiag-linux.json", "linux"), ("ssmdiag-windows.json", "win32")]
)
def test_cloudwatch_fragment_collects_the_health_file(name: str, system: str) -> None:
    collected = fragment(name)
    (entry,) = collected["files"]["collect_list"]
    check_log_entry(entry, FILE_KEYS)
    env = {"PROGRAMDATA": "C:\\ProgramData"} if system == "win32" else {}
    expected = default_file_path(env, system)
    assert entry["file_path"].replace("\\", "/") == expected.replace("\\", "/")
    # One stream per node: hybrid nodes off EC2 all have {instance_id} "i-UNKNOWN" to the agent.
    assert entry["log_stream_name"] == "{instance_id}/{hostname}"
    directives = re.findall(r"%(.)", entry["timestamp_format"])
    assert set(directives) <= STRFTIME_SUBSET
    # ssmdiag's own `ts` must parse with that format (so CloudWatch keeps event times)
    sample = "2026-11-23T12:27:06.549995Z"
    datetime.datetime.strptime(sample, entry["timestamp_format"])


def test_windows_fragment_selects_exactly_ssmdiags_event_ids() -> None:
    collected = fragment("ssmdiag-windows.json")
    (events,) = collected["windows_events"]["collect_list"]
    check_log_entry(events, EVENT_KEYS)
    assert events["event_name"] == "Application"
    assert sorted(events["event_ids"]) == sorted(EVENT_IDS)
    assert events["log_stream_name"] == "{instance_id}/{hostname}"
    assert events["event_format"] in ("text", "xml")
    assert "windows_events" not in fragment("ssmdiag-linux.json")


def test_launchd_plist_starts_ssmdiag_run_at_boot_and_after_a_crash() -> None:
    path = PACKAGING / "macos" / "com.ssmdiag.daemon.plist"
    with open(path, "rb") as handle:
        plist = plistlib.load(handle)
    assert plist["Label"] == path.name.removesuffix(".plist")
    program, *args = plist["ProgramArguments"]
    assert Path(program).is_absolute() and Path(program).name == "ssmdiag"
    parsed = _build_parser().parse_args(args)  # the real CLI accepts these arguments
    assert parsed.command == "run" and parsed.sink == ["file"] and not parsed.once
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}  # restart on crash only
    log_dir = Path(default_file_path({}, "darwin")).parent
    assert Path(plist["StandardErrorPath"]).parent == log_dir
    assert plist["ExitTimeOut"] >= 2  # ssmdiag stops within 2 s of SIGTERM
    assert "UserName" not in plist  # root: see the comment in the plist


def test_the_packaged_default_config_loads_to_the_built_in_defaults() -> None:
    path = PACKAGING / "ssmdiag.toml"
    assert load_config(str(path)) == Config(source=str(path))
    text = path.read_text()
    for section in ("agent", "checks", "features", "network", "endpoints", "daemon", "sinks"):
        assert f"[{section}]" in text


def test_build_all_builds_every_package_with_the_one_version(tmp_path: Path) -> None:
    """`packaging/build-all` from this checkout: RPM, deb and MSI agree with `ssmdiag version`."""
    for tool in ("rpmbuild", "rpm", "dpkg-buildpackage", "dpkg-deb", "wixl", "msiinfo"):
        require_tool(tool)
    out = tmp_path / "dist"
    built = subprocess.run(
        ["bash", str(PACKAGING / "build-all"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    said = run_cli("version").stdout.split()[-1]
    assert said == __version__
    (rpm,) = out.glob("ssmdiag-*.noarch.rpm")
    (deb,) = out.glob("ssmdiag_*_all.deb")
    (msi,) = out.glob("ssmdiag-*-x64.msi")
    rpm_version = subprocess.run(
        ["rpm", "-qp", "--qf", "%{VERSION}", str(rpm)], capture_output=True, text=True, timeout=30
    ).stdout
    deb_version = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    properties = subprocess.run(
        ["msiinfo", "export", str(msi), "Property"], capture_output=True, text=True, timeout=30
    ).stdout
    msi_version = re.search(r"^ProductVersion\t(\S+)", properties, re.MULTILINE)
    assert msi_version is not None
    assert rpm_version == said
    assert deb_version.split("-")[0] == said
    assert msi_version.group(1) == said
