"""ssmdiag as a Systems Manager Distributor package (issue 14 item 6), built by
packaging/build-all: the manifest follows Distributor's documented format and the SSM
Agent's own selection picks the right zip per platform; the zips hold the package and
its scripts, reproducibly; and, as root, the deb zip's install.sh installs the deb for
real (offline: the Debian dependencies must be installed), update.sh is harmless and
uninstall.sh removes it, leaving nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import pwd
import shutil
import stat
import subprocess
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import jsonschema
import pytest

import ssmdiag
from tests.conftest import REPO, require_root, require_tool

BUILD_ALL = REPO / "packaging" / "build-all"
BUILD = REPO / "packaging" / "distributor" / "build"
VERSION = ssmdiag.__version__
SCRIPTS_LINUX = {"install.sh", "update.sh", "uninstall.sh", "ssmdiag-package.sh"}
SCRIPTS_WINDOWS = {"install.ps1", "update.ps1", "uninstall.ps1", "ssmdiag-package.ps1"}

# Distributor's manifest, from "Create a package (advanced)" (Systems Manager User Guide):
# schemaVersion 2.0; a version name of letters, digits, _ - . (at most 128); packages by
# platform code, platform version ("_any" or the exact release) and architecture; every
# zip in files with its sha256; at most 20 files per package. Platform codes and
# architectures: "Supported package platforms and architectures".
PLATFORMS = {
    "almalinux",
    "amazon",
    "centos",
    "debian",
    "opensuse",
    "opensuseleap",
    "oracle",
    "redhat",
    "rocky",
    "suse",
    "ubuntu",
    "windows",
}
MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["schemaVersion", "version", "packages", "files"],
    "properties": {
        "schemaVersion": {"const": "2.0"},
        "version": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,128}$"},
        "publisher": {"type": "string", "minLength": 1},
        "packages": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"enum": sorted(PLATFORMS)},
            "additionalProperties": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": {"pattern": r"^(_any|[A-Za-z0-9][A-Za-z0-9.]*)$"},
                "additionalProperties": {
                    "type": "object",
                    "minProperties": 1,
                    "propertyNames": {"enum": ["_any", "x86_64", "386", "arm64"]},
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "pattern": r"^[^/\\]+\.zip$"}},
                    },
                },
            },
        },
        "files": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 20,
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["checksums"],
                "properties": {
                    "checksums": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["sha256"],
                        "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
                    }
                },
            },
        },
    },
}


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", 300)
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """packaging/build-all into a fresh directory: RPM, deb, MSI, then the Distributor package."""
    for tool in ("git", "rpmbuild", "dpkg-buildpackage", "wixl", "msiinfo", "python3"):
        require_tool(tool)
    out = tmp_path_factory.mktemp("dist")
    result = run(["bash", str(BUILD_ALL), "--out", str(out)], cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def manifest(dist: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((dist / "distributor" / "manifest.json").read_text())
    return data


def select(manifest: dict[str, Any], platform: str, version: str, arch: str) -> Optional[str]:
    """The zip SSM Agent picks: an exact key, else "_any", at each of the three levels
    (agent/plugins/configurepackage/birdwatcher/birdwatcher.go, extractPackageInfo)."""
    level: Any = manifest["packages"]
    for key in (platform, version, arch):
        level = level.get(key, level.get("_any"))
        if level is None:
            return None
    file: str = level["file"]
    return file


def test_manifest_follows_distributors_documented_format(
    dist: Path, manifest: dict[str, Any]
) -> None:
    jsonschema.Draft202012Validator.check_schema(MANIFEST_SCHEMA)
    errors = sorted(
        e.message for e in jsonschema.Draft202012Validator(MANIFEST_SCHEMA).iter_errors(manifest)
    )
    assert not errors, errors
    assert manifest["version"] == VERSION
    referenced = {
        entry["file"]
        for versions in manifest["packages"].values()
        for arches in versions.values()
        for entry in arches.values()
    }
    assert referenced == set(manifest["files"])  # every zip used, every use listed
    folder = dist / "distributor"
    assert {p.name for p in folder.iterdir()} == {"manifest.json", *manifest["files"]}
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert len(data) <= 1 << 30  # Distributor's limit per file
        assert hashlib.sha256(data).hexdigest() == entry["checksums"]["sha256"], name
        assert VERSION in name  # a new version needs new file names


@pytest.mark.parametrize(
    ("platform", "version", "arch", "kind"),
    [
        ("amazon", "2023", "x86_64", "rpm"),
        ("amazon", "2023", "arm64", "rpm"),
        ("amazon", "2", "x86_64", None),  # AL2's systemd is too old for the unit
        ("redhat", "9.4", "x86_64", "rpm"),
        ("rocky", "9.5", "arm64", "rpm"),
        ("almalinux", "9.4", "x86_64", "rpm"),
        ("debian", "12", "x86_64", "deb"),
        ("ubuntu", "24.04", "arm64", "deb"),
        ("ubuntu", "22.04", "x86_64", "deb"),
        ("windows", "10.0.20348", "x86_64", "windows"),
        ("suse", "15.5", "x86_64", None),
    ],
)
def test_the_agent_picks_the_right_zip(
    manifest: dict[str, Any], platform: str, version: str, arch: str, kind: Optional[str]
) -> None:
    expected = f"ssmdiag-{VERSION}-{kind}.zip" if kind else None
    assert select(manifest, platform, version, arch) == expected


def members(path: Path) -> dict[str, tuple[bytes, int]]:
    with zipfile.ZipFile(path) as archive:
        return {
            info.filename: (archive.read(info), (info.external_attr >> 16) & 0o777)
            for info in archive.infolist()
        }


def test_zips_hold_the_package_and_its_scripts(dist: Path) -> None:
    folder = dist / "distributor"
    packages = {
        "rpm": dist / f"ssmdiag-{VERSION}-1.noarch.rpm",
        "deb": next(dist.glob("ssmdiag_*_all.deb")),
        "windows": dist / f"ssmdiag-{VERSION}-x64.msi",
    }
    for kind, package in packages.items():
        content = members(folder / f"ssmdiag-{VERSION}-{kind}.zip")
        scripts = SCRIPTS_WINDOWS if kind == "windows" else SCRIPTS_LINUX
        assert set(content) == {
            package.name,
            *scripts,
        }  # all at the root, where SSM Agent runs them
        assert content[package.name][0] == package.read_bytes()
        source = REPO / "packaging" / "distributor" / ("windows" if kind == "windows" else "linux")
        for script in scripts:
            data, mode = content[script]
            assert data == (source / script).read_bytes()
            if script.endswith(".sh"):
                assert mode == 0o755


def test_the_build_is_reproducible(dist: Path, tmp_path: Path) -> None:
    again = run(
        ["bash", str(BUILD), "--dist", str(dist), "--out", str(tmp_path / "again")], cwd=REPO
    )
    assert again.returncode == 0, again.stderr
    first = (dist / "distributor" / "manifest.json").read_bytes()
    assert (tmp_path / "again" / "manifest.json").read_bytes() == first
    printed = again.stdout.split()
    assert printed[0].endswith("manifest.json") and len(printed) == 4


def test_build_refuses_what_it_cannot_package(dist: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(["bash", str(BUILD), "--dist", str(empty)], cwd=REPO)
    assert result.returncode == 1 and "expected one RPM" in result.stderr
    partial = tmp_path / "partial"
    partial.mkdir()
    for package in dist.glob("ssmdiag*.*"):
        if package.suffix in (".rpm", ".deb"):
            shutil.copy(package, partial)
    result = run(["bash", str(BUILD), "--dist", str(partial)], cwd=REPO)
    assert result.returncode == 1 and "expected one MSI" in result.stderr
    result = run(["bash", str(BUILD), "--dist", str(partial), "--without-windows"], cwd=REPO)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((partial / "distributor" / "manifest.json").read_text())
    assert "windows" not in manifest["packages"] and len(manifest["files"]) == 2


def unpack(zip_path: Path, into: Path) -> Path:
    """As SSM Agent does: the zip's files in one directory, modes kept."""
    into.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            target = into / info.filename
            target.write_bytes(archive.read(info))
            target.chmod((info.external_attr >> 16) & 0o777)
    return into


def test_linux_scripts_refuse_a_wrong_directory(dist: Path, tmp_path: Path) -> None:
    """No package, or both kinds, or an RPM where neither dnf nor yum exists: exit 1 with
    the reason, before anything is installed."""
    require_root("the scripts refuse to run as anyone else first")
    bare = tmp_path / "bare"
    bare.mkdir()
    for script in SCRIPTS_LINUX:
        shutil.copy(REPO / "packaging" / "distributor" / "linux" / script, bare)
    result = run(["sh", "install.sh"], cwd=bare, timeout=60)
    assert result.returncode == 1 and "expected exactly one ssmdiag .deb or .rpm" in result.stderr
    rpm_only = unpack(dist / "distributor" / f"ssmdiag-{VERSION}-rpm.zip", tmp_path / "rpm")
    no_dnf = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    if shutil.which("dnf") is None and shutil.which("yum") is None:
        result = run(["sh", "install.sh"], cwd=rpm_only, env=no_dnf, timeout=60)
        assert result.returncode == 1 and "neither dnf nor yum found" in result.stderr
    shutil.copy(next(dist.glob("ssmdiag_*_all.deb")), rpm_only)
    result = run(["sh", "install.sh"], cwd=rpm_only, env=no_dnf, timeout=60)
    assert result.returncode == 1 and "exactly one" in result.stderr


# -- installed for real, from the deb zip ---------------------------------------------------------

LOG_DIR = Path("/var/log/ssmdiag")
STATE_DIR = Path("/var/lib/ssmdiag")
CONFIG = Path("/etc/ssmdiag/ssmdiag.toml")
COMMAND = Path("/usr/bin/ssmdiag")
LEFT_BEHIND = [
    COMMAND,
    CONFIG.parent,
    Path("/lib/systemd/system/ssmdiag.service"),
    Path("/usr/lib/sysusers.d/ssmdiag.conf"),
    Path("/usr/share/ssmdiag"),
    Path("/usr/lib/python3/dist-packages/ssmdiag"),
    Path("/etc/systemd/system/multi-user.target.wants/ssmdiag.service"),
    LOG_DIR,
    STATE_DIR,
]


def dpkg_status() -> str:
    result = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "ssmdiag"], timeout=60)
    return result.stdout.strip() if result.returncode == 0 else ""


@contextmanager
def set_aside(*paths: Path) -> Iterator[None]:
    """Leave these paths as they were: move existing ones away, and back afterwards."""
    moved = []
    for path in paths:
        if path.exists():
            aside = path.with_name(f"{path.name}.before-test-distributor")
            assert not aside.exists(), f"{aside} is left over from an interrupted run"
            path.rename(aside)
            moved.append((path, aside))
    try:
        yield
    finally:
        for path in paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
        for path, aside in moved:
            aside.rename(path)


def test_deb_zip_installs_updates_and_uninstalls_for_real(dist: Path, tmp_path: Path) -> None:
    """SSM Agent's way: unzip, then `sh install.sh` in that directory as root. Offline: apt
    sees no package sources (APT_CONFIG), so it installs from the deb and what is installed."""
    require_root("apt-get installs the package")
    for tool in ("apt-get", "dpkg-query", "sh", "bash"):
        require_tool(tool)
    if dpkg_status() not in ("", "un", "pn"):
        pytest.fail(f"ssmdiag is already known to dpkg ({dpkg_status()!r}): purge it first")
    package = unpack(dist / "distributor" / f"ssmdiag-{VERSION}-deb.zip", tmp_path / "package")
    sources = tmp_path / "apt"
    (sources / "sources.list.d").mkdir(parents=True)
    (sources / "sources.list").touch()
    apt_config = tmp_path / "apt.conf"
    apt_config.write_text(
        f'Dir::Etc::SourceList "{sources / "sources.list"}";\n'
        f'Dir::Etc::SourceParts "{sources / "sources.list.d"}";\n'
    )
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LC_ALL": "C.UTF-8",
        "APT_CONFIG": str(apt_config),
        "AWS_EC2_METADATA_DISABLED": "true",
        # what SSM Agent exports for a package script (ssminstaller.go, getEnvVars)
        "BWS_ACTION_NAME": "install",
        "BWS_PLATFORM_NAME": "debian",
    }
    user_before = _user_exists("ssmdiag")
    with set_aside(LOG_DIR, STATE_DIR):
        try:
            installed = run(["sh", "install.sh"], cwd=package, env=env)
            assert installed.returncode == 0, installed.stdout + installed.stderr
            assert f"ssmdiag install: done: ssmdiag {VERSION}" in installed.stdout
            assert dpkg_status() == "ii"
            version = run([str(COMMAND), "version"], env=env, cwd="/", timeout=60)
            assert version.stdout == f"ssmdiag {VERSION}\n"
            assert stat.S_ISDIR(LOG_DIR.stat().st_mode)

            with CONFIG.open("a") as config:
                config.write("# changed by the administrator\n")
            updated = run(
                ["sh", "update.sh"], cwd=package, env={**env, "BWS_ACTION_NAME": "update"}
            )
            assert updated.returncode == 0, updated.stdout + updated.stderr
            assert dpkg_status() == "ii"

            removed = run(
                ["sh", "uninstall.sh"], cwd=package, env={**env, "BWS_ACTION_NAME": "uninstall"}
            )
            assert removed.returncode == 0, removed.stdout + removed.stderr
            assert dpkg_status() == "rc"  # removed, its configuration kept (as for upgrades)
            assert not COMMAND.exists()
            assert CONFIG.read_text().endswith("# changed by the administrator\n")

            again = run(["sh", "uninstall.sh"], cwd=package, env=env)
            assert again.returncode == 0 and "nothing to remove" in again.stdout
        finally:
            if dpkg_status() not in ("", "un", "pn"):
                purged = run(["apt-get", "-y", "-q", "purge", "ssmdiag"], env=env)
                assert purged.returncode == 0, purged.stdout + purged.stderr
            if not user_before and _user_exists("ssmdiag"):
                run(["userdel", "ssmdiag"], timeout=60)
                run(["groupdel", "ssmdiag"], timeout=60)
        left = [str(p) for p in LEFT_BEHIND if p.exists() or p.is_symlink()]
        assert not left, f"left behind: {left}"
        assert dpkg_status() in ("", "un", "pn")
    assert _user_exists("ssmdiag") == user_before


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_windows_scripts_use_msiexec_and_never_ask_for_a_reboot() -> None:
    """Not run here (no Windows): what the scripts say, checked as text."""
    folder = REPO / "packaging" / "distributor" / "windows"
    main = (folder / "ssmdiag-package.ps1").read_text()
    assert "msiexec.exe" in main and "'/qn'" in main and "'/norestart'" in main
    assert "$code -eq 3010" in main and "exit 0" in main  # 3010 would make SSM Agent reboot
    assert "1605" in main  # uninstalling what is not installed is done
    for action in ("install", "update", "uninstall"):
        stub = (folder / f"{action}.ps1").read_text()
        assert f"-Action {action}" in stub and "exit $LASTEXITCODE" in stub
