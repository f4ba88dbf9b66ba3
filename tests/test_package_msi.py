"""The MSI: windows/ssmdiag.wxs built for real by windows/build-msi (Debian's wixl, a
placeholder payload), then read back table by table with msitools, as Windows Installer
would read it: the service, its start and stop, the Event Log source, upgrades, the
installed layout and the x64 package type.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

import ssmdiag
from ssmdiag.platform import windows_service
from tests.conftest import REPO, require_tool

WINDOWS = REPO / "windows"
WXS = WINDOWS / "ssmdiag.wxs"
UPGRADE_CODE = "{EC43ADD9-A9E4-45B4-9C7C-FDBCE83DF24F}"
WIX_NS = "http://schemas.microsoft.com/wix/2006/wi"
TIMEOUT = 120

EVENTLOG_KEY = r"SYSTEM\CurrentControlSet\Services\EventLog\Application\ssmdiag"
SERVICE_KEY = r"SYSTEM\CurrentControlSet\Services\ssmdiag"
MESSAGE_FILE = r"%SystemRoot%\Microsoft.NET\Framework64\v4.0.30319\EventLogMessages.dll"
HKLM = "2"

# msidbComponentAttributes*, msidbServiceControlEvent*, msidbUpgradeAttributes*
PERMANENT, NEVER_OVERWRITE, COMPONENT_64BIT = 16, 128, 256
START_ON_INSTALL, STOP_ON_INSTALL, STOP_ON_UNINSTALL, DELETE_ON_UNINSTALL = 1, 2, 32, 128
START_ON_UNINSTALL, DELETE_ON_INSTALL = 16, 8
ONLY_DETECT = 2
SERVICE_WIN32_OWN_PROCESS, SERVICE_AUTO_START = 0x10, 2
SERVICE_ERROR_NORMAL, ERROR_CONTROL_VITAL = 1, 0x8000

# One .wxs serves the Windows WiX build and the CI wixl build, so it may use only the
# elements wixl implements (msitools 0.101, Debian 12: its WixlWix* classes). wixl aborts on
# any other child ("unhandled child ... node ServiceConfig"); the WiX features ssmdiag would
# otherwise reach for are named here so that a failure says why.
WIXL_ELEMENTS = {
    "Wix", "Product", "Package", "MajorUpgrade", "Upgrade", "UpgradeVersion", "Media",
    "MediaTemplate", "Property", "Condition", "Directory", "DirectoryRef", "Component",
    "ComponentGroup", "ComponentGroupRef", "ComponentRef", "Feature", "Fragment", "File",
    "CreateFolder", "RemoveFolder", "RegistryKey", "RegistryValue", "RegistrySearch",
    "ServiceInstall", "ServiceControl", "ServiceArgument", "ServiceDependency", "Shortcut",
    "Icon", "Binary", "CustomAction", "InstallExecuteSequence", "InstallUISequence",
}  # fmt: skip
WIXL_REJECTS = {
    "EventSource",  # util: extension; the EventLog registry values do its work
    "ServiceConfig",  # DelayedAutoStart; the DelayedAutostart registry value instead
    "ServiceConfigFailureActions",
    "Environment",
    "Permission",
    "PermissionEx",
    "UI",
    "UIRef",
}


@dataclass(frozen=True)
class Msi:
    path: Path

    def rows(self, table: str) -> list[dict[str, str]]:
        return _export(self.path, table)

    def row(self, table: str, **match: str) -> dict[str, str]:
        found = [r for r in self.rows(table) if all(r[k] == v for k, v in match.items())]
        assert len(found) == 1, f"{table} rows matching {match}: {found}"
        return found[0]

    def directory_path(self, directory: str) -> str:
        """The directory as a path of standard folder + names, e.g. ProgramFiles64Folder/x."""
        dirs = {r["Directory"]: r for r in self.rows("Directory")}
        parts: list[str] = []
        while directory != "TARGETDIR":
            entry = dirs[directory]
            name = entry["DefaultDir"].split(":")[0].split("|")[-1]
            if entry["Directory_Parent"] == "TARGETDIR":
                name = directory  # a standard folder (ProgramFiles64Folder, ...)
            if name != ".":
                parts.append(name)
            directory = entry["Directory_Parent"]
        return "/".join(reversed(parts))

    def file_path(self, file_key: str) -> str:
        file = self.row("File", File=file_key)
        component = self.row("Component", Component=file["Component_"])
        name = file["FileName"].split("|")[-1]
        return f"{self.directory_path(component['Directory_'])}/{name}"

    def file_named(self, name: str) -> dict[str, str]:
        """The File row of the long name `name` (FileName may be "SHORT~1|long")."""
        found = [r for r in self.rows("File") if r["FileName"].split("|")[-1] == name]
        assert len(found) == 1, f"files named {name}: {found}"
        return found[0]


@cache
def _export(path: Path, table: str) -> list[dict[str, str]]:
    out = subprocess.run(
        [require_tool("msiinfo"), "export", str(path), table],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    lines = out.splitlines()
    columns = lines[0].split("\t")
    rows = []
    for line in lines[3:]:
        values = line.split("\t")
        rows.append(dict(zip(columns, values + [""] * (len(columns) - len(values)))))
    return rows


@pytest.fixture(scope="module")
def msi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Msi]:
    """windows/build-msi run once for the module, as CI and packaging/build-all run it."""
    for tool in ("wixl", "wixl-heat", "msiinfo", "msibuild"):
        require_tool(tool)
    out = tmp_path_factory.mktemp("msi")
    result = subprocess.run(
        [str(WINDOWS / "build-msi"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())  # the path is all build-msi prints on stdout
    assert path.parent == out
    yield Msi(path)
    _export.cache_clear()


def test_build_msi_prints_the_versioned_path(msi: Msi) -> None:
    assert msi.path.name == f"ssmdiag-{ssmdiag.__version__}-x64.msi"
    assert msi.path.is_file()
    assert msi.path.read_bytes()[:8] == bytes.fromhex("d0cf11e0a1b11ae1")  # OLE compound file


def test_package_is_x64_per_machine(msi: Msi) -> None:
    info = subprocess.run(
        [require_tool("msiinfo"), "suminfo", str(msi.path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    fields = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line)
    assert fields["Template"] == "x64;1033"
    assert int(fields["Version"].split()[0]) >= 200  # x64 packages need Windows Installer 2.0+
    assert msi.row("Property", Property="ALLUSERS")["Value"] == "1"


def test_product_properties_come_from_the_single_version(msi: Msi) -> None:
    props = {r["Property"]: r["Value"] for r in msi.rows("Property")}
    assert props["ProductVersion"] == ssmdiag.__version__
    assert props["UpgradeCode"] == UPGRADE_CODE
    assert props["ProductName"] == "ssmdiag"
    assert props["Manufacturer"]
    # Product Id="*": a fresh ProductCode per build, which major upgrades need.
    assert props["ProductCode"].startswith("{")
    assert props["ProductCode"] != UPGRADE_CODE


def test_upgrade_replaces_older_and_refuses_newer(msi: Msi) -> None:
    version = ssmdiag.__version__
    rows = msi.rows("Upgrade")
    assert {r["UpgradeCode"] for r in rows} == {UPGRADE_CODE}
    older = msi.row("Upgrade", ActionProperty="WIX_UPGRADE_DETECTED")
    assert (older["VersionMin"], older["VersionMax"]) == ("", version)
    assert not int(older["Attributes"]) & ONLY_DETECT  # found => removed
    newer = msi.row("Upgrade", ActionProperty="WIX_DOWNGRADE_DETECTED")
    assert (newer["VersionMin"], newer["VersionMax"]) == (version, "")
    assert int(newer["Attributes"]) & ONLY_DETECT  # found => only detected ...
    refusal = msi.row("LaunchCondition", Condition="NOT WIX_DOWNGRADE_DETECTED")
    assert "newer version of ssmdiag" in refusal["Description"]  # ... and refused
    secure = msi.row("Property", Property="SecureCustomProperties")["Value"].split(";")
    assert {"WIX_UPGRADE_DETECTED", "WIX_DOWNGRADE_DETECTED"} <= set(secure)
    actions = {r["Action"] for r in msi.rows("InstallExecuteSequence")}
    assert {"FindRelatedProducts", "RemoveExistingProducts"} <= actions


def test_service_is_installed_as_the_scm_expects(msi: Msi) -> None:
    service = msi.row("ServiceInstall", Name=windows_service.SERVICE_NAME)
    assert service["DisplayName"] == windows_service.SERVICE_DISPLAY_NAME
    assert int(service["ServiceType"]) == SERVICE_WIN32_OWN_PROCESS
    assert int(service["StartType"]) == SERVICE_AUTO_START
    assert int(service["ErrorControl"]) == SERVICE_ERROR_NORMAL | ERROR_CONTROL_VITAL
    assert service["StartName"] == "LocalSystem"
    assert service["Password"] == ""
    assert service["Arguments"] == "service"
    assert service["Description"]
    # The SCM command line is "<key path file of the component>" <Arguments>.
    component = msi.row("Component", Component=service["Component_"])
    assert msi.row("File", File=component["KeyPath"])["FileName"] == "ssmdiag.exe"
    assert msi.directory_path(component["Directory_"]) == "ProgramFiles64Folder/ssmdiag"
    assert int(component["Attributes"]) & COMPONENT_64BIT


def test_service_started_on_install_stopped_and_removed_on_uninstall(msi: Msi) -> None:
    control = msi.row("ServiceControl", Name=windows_service.SERVICE_NAME)
    event = int(control["Event"])
    assert event == START_ON_INSTALL | STOP_ON_INSTALL | STOP_ON_UNINSTALL | DELETE_ON_UNINSTALL
    assert not event & (START_ON_UNINSTALL | DELETE_ON_INSTALL)
    assert control["Wait"] == "1"
    assert control["Component_"] == msi.row("ServiceInstall", Name="ssmdiag")["Component_"]
    actions = {r["Action"] for r in msi.rows("InstallExecuteSequence")}
    assert {"StopServices", "DeleteServices", "InstallServices", "StartServices"} <= actions


def test_delayed_automatic_start_is_set_where_sc_config_puts_it(msi: Msi) -> None:
    delayed = msi.row("Registry", Key=SERVICE_KEY, Name="DelayedAutostart")
    assert delayed["Root"] == HKLM
    assert delayed["Value"] == "#1"  # REG_DWORD 1
    # Same component as the service: installed and removed with it.
    assert delayed["Component_"] == msi.row("ServiceInstall", Name="ssmdiag")["Component_"]


def test_event_log_source_is_registered(msi: Msi) -> None:
    message = msi.row("Registry", Key=EVENTLOG_KEY, Name="EventMessageFile")
    assert message["Root"] == HKLM
    assert message["Value"] == "#%" + MESSAGE_FILE  # REG_EXPAND_SZ: %SystemRoot% expands
    types = msi.row("Registry", Key=EVENTLOG_KEY, Name="TypesSupported")
    assert types["Value"] == "#7"  # REG_DWORD: error | warning | information
    component = msi.row("Component", Component=message["Component_"])
    assert int(component["Attributes"]) & COMPONENT_64BIT  # the 64-bit registry view


def test_installed_layout(msi: Msi) -> None:
    paths = {msi.file_path(r["File"]) for r in msi.rows("File")}
    assert {
        "ProgramFiles64Folder/ssmdiag/ssmdiag.exe",
        "ProgramFiles64Folder/ssmdiag/cloudwatch/amazon-cloudwatch-agent.json",
        "CommonAppDataFolder/ssmdiag/ssmdiag.toml",
    } <= paths
    folders = {msi.directory_path(r["Directory_"]) for r in msi.rows("CreateFolder")}
    assert {"CommonAppDataFolder/ssmdiag/logs", "CommonAppDataFolder/ssmdiag/state"} <= folders
    for component in msi.rows("Component"):
        assert int(component["Attributes"]) & COMPONENT_64BIT, component["Component"]
    features = msi.rows("FeatureComponents")
    assert {r["Component_"] for r in features} == {r["Component"] for r in msi.rows("Component")}


def test_default_config_survives_upgrades(msi: Msi) -> None:
    config = msi.file_named("ssmdiag.toml")
    component = msi.row("Component", Component=config["Component_"])
    attributes = int(component["Attributes"])
    assert attributes & NEVER_OVERWRITE  # an existing (edited) file is left alone
    assert attributes & PERMANENT  # the old product's removal in an upgrade keeps it
    assert component["KeyPath"] == config["File"]


def test_payload_files_are_the_repository_files(msi: Msi, tmp_path: Path) -> None:
    subprocess.run(
        [require_tool("msiextract"), "-C", str(tmp_path), str(msi.path)],
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    )
    # msiextract drops the standard folders: both land in ssmdiag/.
    extracted = tmp_path / "ssmdiag"
    packaging = REPO / "packaging"
    assert (extracted / "ssmdiag.toml").read_bytes() == (packaging / "ssmdiag.toml").read_bytes()
    assert (extracted / "cloudwatch" / "amazon-cloudwatch-agent.json").read_bytes() == (
        packaging / "cloudwatch" / "ssmdiag-windows.json"
    ).read_bytes()


def test_placeholder_build_refuses_to_install(msi: Msi) -> None:
    guard = msi.row("LaunchCondition", Condition="0")
    assert "placeholder" in guard["Description"]


def test_wixl_compat_changes_nothing_in_a_complete_msi(msi: Msi, tmp_path: Path) -> None:
    """build-msi's fix-ups for wixl 0.101 apply only what is missing (so WiX output, or a
    newer wixl's, passes through unchanged)."""
    copy = tmp_path / "copy.msi"
    shutil.copy2(msi.path, copy)
    defines = ["Version=1.0.0", "SourceDir=s", "PackagingDir=p", "PlaceholderPayload=1"]
    preprocess = [require_tool("wixl"), "-E", "-a", "x64", str(WXS)]
    for define in defines:
        preprocess += ["-D", define]
    pre = subprocess.run(
        preprocess, capture_output=True, text=True, timeout=TIMEOUT, check=True
    ).stdout
    pre_path = tmp_path / "main.pre.wxs"
    pre_path.write_text(pre)
    compat = [sys.executable, str(WINDOWS / "wixl-compat.py"), str(copy), str(pre_path)]
    result = subprocess.run(compat, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert copy.read_bytes() == msi.path.read_bytes()


def test_the_wxs_stays_within_what_wixl_accepts() -> None:
    root = ET.parse(WXS).getroot()
    names = set()
    for element in root.iter():
        namespace, _, name = element.tag[1:].partition("}")
        assert namespace == WIX_NS, f"{element.tag}: WiX extensions are not available to wixl"
        names.add(name)
    assert not names & WIXL_REJECTS
    assert names <= WIXL_ELEMENTS, names - WIXL_ELEMENTS
    assert not any(key.startswith("xmlns:") for key in root.attrib)
    assert "xmlns:util" not in WXS.read_text()


def test_the_wxs_takes_the_version_from_outside() -> None:
    product = ET.parse(WXS).getroot().find(f"{{{WIX_NS}}}Product")
    assert product is not None
    assert product.get("Version") == "$(var.Version)"
    assert product.get("Id") == "*"
    assert "{" + (product.get("UpgradeCode") or "") + "}" == UPGRADE_CODE


def test_build_ps1_produces_the_layout_the_wxs_registers() -> None:
    script = (WINDOWS / "build.ps1").read_text()
    assert r"_internal\win32\win32evtlog.pyd" in script  # the Event Log sink's module, checked
    assert '"--contents-directory", "_internal"' in script
    assert '"--onedir", "--console", "--name", "ssmdiag"' in script
    for hidden in ("servicemanager", "win32timezone"):
        assert f'"{hidden}"' in script
    assert r"ssmdiag\__init__.py" in script  # the version's single source
    assert "InternalDir=" in script
    assert "FrozenApp" in script
