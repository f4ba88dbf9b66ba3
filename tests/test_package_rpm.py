"""The RPM (packaging/rpm): built once per session with packaging/rpm/build, then checked
for real: its version, rpmlint, its file list installed into a throwaway root, the
installed code run by a real Python, its dependencies and its scriptlets, run against
stand-in systemctl/systemd-sysusers/useradd that record what they were asked to do."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import ssmdiag
from tests.conftest import REPO, require_root, require_tool

BUILD = REPO / "packaging" / "rpm" / "build"
RPMLINTRC = REPO / "packaging" / "rpm" / "ssmdiag.rpmlintrc"
SITELIB = "/usr/lib/python3.9/site-packages"  # the targets' system Python (AL2023, RHEL 9)
VENDOR = "/usr/lib/ssmdiag/vendor"
SYSUSERS = REPO / "systemd" / "ssmdiag.sysusers"


# run_script(TAG, $1, booted=, enabled=, tools=) -> (the calls made, systemd-sysusers' stdin)
ScriptRunner = Callable[..., "tuple[list[str], str]"]


@dataclass(frozen=True)
class Built:
    rpm: Path
    srpm: Path


def run(
    *argv: str | Path, timeout: float = 60, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def query(package: Path, *args: str) -> str:
    result = run("rpm", "-qp", *args, package)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    require_tool("rpmbuild")
    require_tool("git")
    out = tmp_path_factory.mktemp("rpm-out")
    result = run("bash", BUILD, "--out", out, timeout=300, cwd=REPO)
    assert result.returncode == 0, f"packaging/rpm/build failed:\n{result.stderr}"
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert len(paths) == 2, result.stdout
    rpm, srpm = paths
    assert rpm.parent == out and rpm.name.endswith(".noarch.rpm") and rpm.is_file()
    assert srpm.parent == out and srpm.name.endswith(".src.rpm") and srpm.is_file()
    return Built(rpm, srpm)


@pytest.fixture(scope="module")
def root(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package installed into an empty directory, with its own rpm database.

    --nodeps: that database knows none of the dependencies (python3, ...). --noscripts:
    the root has no /bin/sh to run scriptlets with (test_scriptlets_* run them instead).
    Installing files as their owners needs root."""
    require_root("rpm --root installs files with their owners")
    target = tmp_path_factory.mktemp("rpm-root")
    db = ("--root", str(target), "--dbpath", "/var/lib/rpm")
    assert run("rpm", *db, "--initdb").returncode == 0
    result = run("rpm", *db, "-i", "--nodeps", "--noscripts", built.rpm, timeout=120)
    assert result.returncode == 0, result.stderr
    return target


def rpm_in_root(root: Path, *args: str) -> list[str]:
    result = run("rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_version_is_ssmdiag_version(built: Built) -> None:
    for package in (built.rpm, built.srpm):
        assert query(package, "--qf", "%{NAME} %{VERSION}") == f"ssmdiag {ssmdiag.__version__}"
    assert query(built.rpm, "--qf", "%{ARCH}") == "noarch"
    assert built.rpm.name.startswith(f"ssmdiag-{ssmdiag.__version__}-")


def test_rpmlint_has_no_errors(built: Built) -> None:
    rpmlint = require_tool("rpmlint")
    result = run(rpmlint, "-r", RPMLINTRC, built.rpm, built.srpm, timeout=180)
    output = result.stdout + result.stderr
    print(output)
    summary = re.search(r"(\d+) errors?, (\d+) warnings?", output)
    assert summary is not None, f"no rpmlint summary (exit {result.returncode}):\n{output}"
    assert summary.group(1) == "0", f"rpmlint errors:\n{output}"


def test_source_tarball_holds_exactly_the_tracked_files(built: Built, tmp_path: Path) -> None:
    """Untracked files in the checkout (junk, other work in progress) never get in."""
    result = run("rpm", "-i", "--nodeps", "--define", f"_topdir {tmp_path}", built.srpm)
    assert result.returncode == 0, result.stderr
    prefix = f"ssmdiag-{ssmdiag.__version__}/"
    with tarfile.open(tmp_path / "SOURCES" / f"{prefix[:-1]}.tar.gz") as tar:
        names = {m.name for m in tar.getmembers() if not m.isdir()}
    tracked = run("git", "ls-files", "-z", cwd=REPO).stdout.split("\0")
    expected = {prefix + f for f in tracked if f and os.path.lexists(REPO / f)}
    assert names == expected
    # The sysusers file %pre is made from is the tracked one.
    assert (tmp_path / "SOURCES" / "ssmdiag.sysusers").read_bytes() == SYSUSERS.read_bytes()


def test_files_and_config_in_a_throwaway_root(built: Built, root: Path) -> None:
    files = set(rpm_in_root(root, "-ql", "ssmdiag"))
    vendored = set(query(built.rpm, "--provides").splitlines())
    tomli_version = next(
        p.split(" = ")[1] for p in vendored if p.startswith("bundled(python3dist(tomli))")
    )
    for path in (
        "/usr/bin/ssmdiag",
        "/usr/lib/systemd/system/ssmdiag.service",
        "/usr/lib/systemd/system-preset/50-ssmdiag.preset",
        "/usr/lib/sysusers.d/ssmdiag.conf",
        "/etc/ssmdiag/ssmdiag.toml",
        "/var/log/ssmdiag",
        "/var/lib/ssmdiag",
        "/usr/share/ssmdiag/cloudwatch/amazon-cloudwatch-agent.json",
        f"{SITELIB}/ssmdiag/__init__.py",
        f"{SITELIB}/ssmdiag/cli.py",
        f"{SITELIB}/ssmdiag/schema/report.schema.json",
        f"{SITELIB}/ssmdiag/py.typed",
        f"{VENDOR}/tomli/__init__.py",
        f"{VENDOR}/tomli-{tomli_version}.dist-info/METADATA",
        "/usr/share/licenses/ssmdiag/tomli/LICENSE",
        "/usr/share/doc/ssmdiag/README.md",
    ):
        assert path in files, path
        assert os.path.lexists(f"{root}{path}"), path
    assert not [f for f in files if "/tests/" in f or f.endswith((".pyc", ".egg-info"))]
    # Logging is ssmdiag's own (ssmdiag/log.py): no structlog is bundled any more.
    assert not [f for f in files if "structlog" in f]

    assert rpm_in_root(root, "-qc", "ssmdiag") == ["/etc/ssmdiag/ssmdiag.toml"]
    # %config(noreplace): an edited config survives an upgrade.
    flags = query(built.rpm, "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]").splitlines()
    assert "/etc/ssmdiag/ssmdiag.toml cn" in flags

    # The shipped files are the repository's.
    for shipped, source in (
        ("/usr/lib/systemd/system/ssmdiag.service", "systemd/ssmdiag.service"),
        ("/usr/lib/sysusers.d/ssmdiag.conf", "systemd/ssmdiag.sysusers"),
        ("/etc/ssmdiag/ssmdiag.toml", "packaging/ssmdiag.toml"),
        (
            "/usr/share/ssmdiag/cloudwatch/amazon-cloudwatch-agent.json",
            "packaging/cloudwatch/ssmdiag-linux.json",
        ),
    ):
        assert Path(f"{root}{shipped}").read_bytes() == (REPO / source).read_bytes(), shipped
    preset = Path(f"{root}/usr/lib/systemd/system-preset/50-ssmdiag.preset").read_text()
    assert preset == "enable ssmdiag.service\n"

    # State and log directories: the unit's StateDirectory=/LogsDirectory=, same owner and mode.
    owners = query(
        built.rpm, "--qf", "[%{FILENAMES} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEMODES:perms}\n]"
    ).splitlines()
    assert "/var/lib/ssmdiag ssmdiag:ssmdiag drwxr-x---" in owners
    assert "/var/log/ssmdiag ssmdiag:ssmdiag drwxr-xr-x" in owners
    assert "/usr/bin/ssmdiag root:root -rwxr-xr-x" in owners


def _interpreters() -> list[str]:
    """The host's python3, and Python 3.9 (the targets' version) when there is one."""
    found = [shutil.which("python3") or sys.executable]
    py39 = shutil.which("python3.9")
    if (
        py39
        and run(py39, "-c", "import sys; assert sys.version_info[:2] == (3, 9)").returncode == 0
    ):
        found.append(py39)
    return found


def test_installed_code_runs(root: Path) -> None:
    """The installed ssmdiag runs from the root with the bundled tomli."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{root}{SITELIB}:{root}{VENDOR}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for python in _interpreters():
        result = run(python, "-s", f"{root}/usr/bin/ssmdiag", "version", env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"ssmdiag {ssmdiag.__version__}\n"
        code = (
            "import ssmdiag, tomli, ssmdiag.daemon;"
            "from ssmdiag.config import load_config;"
            f"load_config('{root}/etc/ssmdiag/ssmdiag.toml');"
            "print(ssmdiag.__file__, tomli.__file__)"
        )
        result = run(python, "-s", "-c", code, env=env, cwd=root)
        assert result.returncode == 0, result.stderr
        where = result.stdout.split()
        assert where[0] == f"{root}{SITELIB}/ssmdiag/__init__.py"
        assert where[1] == f"{root}{VENDOR}/tomli/__init__.py"
    entry = Path(f"{root}/usr/bin/ssmdiag").read_text()
    assert entry.startswith("#!/usr/bin/python3 -s\n")
    assert f'sys.path.insert(0, "{VENDOR}")' in entry


def test_requires_and_bundled_provides(built: Built) -> None:
    requires = query(built.rpm, "--requires").splitlines()
    assert "python3 >= 3.9" in requires
    assert "python(abi) = 3.9" in requires
    assert any(r.startswith("python3-psutil") for r in requires)
    # HTTP is the standard library's: neither requests nor packaging is required.
    assert not [r for r in requires if "requests" in r or "packaging" in r]
    assert not [r for r in requires if "structlog" in r or "tomli" in r]
    provides = query(built.rpm, "--provides").splitlines()
    bundled = {p.split(" = ")[0]: p.split(" = ")[1] for p in provides if p.startswith("bundled(")}
    assert set(bundled) == {"bundled(python3dist(tomli))"}
    files = query(built.rpm, "-l").splitlines()
    version = bundled["bundled(python3dist(tomli))"]
    assert f"{VENDOR}/tomli-{version}.dist-info/METADATA" in files


def test_scriptlets_text(built: Built) -> None:
    scripts = query(built.rpm, "--scripts")
    sections = dict(
        re.findall(
            r"^(\w+) scriptlet \(using /bin/sh\):\n(.*?)(?=^\w+ scriptlet|\Z)", scripts, re.M | re.S
        )
    )
    assert set(sections) == {"preinstall", "postinstall", "preuninstall", "postuninstall"}
    post, preun, postun = (
        sections["postinstall"],
        sections["preuninstall"],
        sections["postuninstall"],
    )
    # Install: enabled (through the preset) and started.
    assert "$1 -eq 1" in post
    assert "preset ssmdiag.service" in post or "install-system-units ssmdiag.service" in post
    assert "start --no-block ssmdiag.service" in post
    # Upgrade: restarted.
    assert "$1 -ge 1" in postun
    assert "try-restart ssmdiag.service" in postun or "mark-restart-system-units" in postun
    # Removal: stopped and disabled.
    assert "$1 -eq 0" in preun
    assert "disable --now ssmdiag.service" in preun or "remove-system-units" in preun
    # The user, from the sysusers file.
    assert "ssmdiag" in sections["preinstall"] and "useradd" in sections["preinstall"]


# --- The scriptlets, run ----------------------------------------------------------------

_STAND_IN = """#!/bin/sh
# Stand-in for the tool this link is named after: records the call, then behaves.
PATH=/usr/bin:/bin
name=$(basename "$0")
echo "$name $*" >> "$CALLS"
case "$name" in
    systemd-sysusers) cat > "$CALLS.stdin" ;;
    getent) exit 2 ;;
    systemctl) [ "$1 $2" = "--quiet is-enabled" ] && exit "$ENABLED" ;;
esac
exit 0
"""


@pytest.fixture
def scriptlet_runner(built: Built, tmp_path: Path) -> ScriptRunner:
    scripts = {
        tag: query(built.rpm, "--qf", f"%{{{tag}}}")
        for tag in ("PREIN", "POSTIN", "PREUN", "POSTUN")
    }
    for tag in scripts:
        assert query(built.rpm, "--qf", f"%{{{tag}PROG}}") == "/bin/sh"
    if any("systemd-update-helper" in s for s in scripts.values()):
        # Built with systemd-rpm-macros: the scriptlets call the real helper by its path,
        # which would act on this machine.
        pytest.skip("scriptlets from systemd-rpm-macros; only the spec's fallbacks run here")
    sh = require_tool("sh")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = tmp_path / "stand-in"
    tool.write_text(_STAND_IN)
    tool.chmod(0o755)
    systemd_run = tmp_path / "run-systemd-system"

    def run_script(
        tag: str,
        arg: int,
        *,
        booted: bool = True,
        enabled: bool = True,
        tools: tuple[str, ...] = ("systemctl", "systemd-sysusers", "getent", "groupadd", "useradd"),
    ) -> tuple[list[str], str]:
        for link in bindir.iterdir():
            link.unlink()
        for name in tools:
            (bindir / name).symlink_to(tool)
        if booted:
            systemd_run.mkdir(exist_ok=True)
        elif systemd_run.exists():
            systemd_run.rmdir()
        calls = tmp_path / f"calls-{tag}-{arg}"
        calls.unlink(missing_ok=True)
        stdin = Path(f"{calls}.stdin")
        stdin.unlink(missing_ok=True)
        # "Is systemd running" asks for this directory instead of the host's.
        script = tmp_path / f"{tag}.sh"
        script.write_text(scripts[tag].replace("/run/systemd/system", str(systemd_run)))
        env = {"PATH": str(bindir), "CALLS": str(calls), "ENABLED": "0" if enabled else "1"}
        result = run(sh, script, str(arg), env=env, timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        return (
            calls.read_text().splitlines() if calls.exists() else [],
            stdin.read_text() if stdin.exists() else "",
        )

    return run_script


def test_scriptlets_install_enables_and_starts(scriptlet_runner: ScriptRunner) -> None:
    calls, _ = scriptlet_runner("POSTIN", 1)
    assert calls == [
        "systemctl --no-reload preset ssmdiag.service",
        "systemctl daemon-reload",
        "systemctl --quiet is-enabled ssmdiag.service",
        "systemctl start --no-block ssmdiag.service",
    ]
    # Disabled by a preset of the administrator's: not started.
    calls, _ = scriptlet_runner("POSTIN", 1, enabled=False)
    assert "systemctl start --no-block ssmdiag.service" not in calls
    # No systemd running (image build, container): enabled for the next boot only.
    calls, _ = scriptlet_runner("POSTIN", 1, booted=False)
    assert calls == ["systemctl --no-reload preset ssmdiag.service"]
    # No systemctl at all: nothing, and no failure.
    assert scriptlet_runner("POSTIN", 1, tools=()) == ([], "")


def test_scriptlets_upgrade_restarts(scriptlet_runner: ScriptRunner) -> None:
    assert scriptlet_runner("POSTIN", 2) == ([], "")
    assert scriptlet_runner("PREUN", 1) == ([], "")
    calls, _ = scriptlet_runner("POSTUN", 1)
    assert calls == ["systemctl daemon-reload", "systemctl try-restart ssmdiag.service"]


def test_scriptlets_removal_stops_and_disables(scriptlet_runner: ScriptRunner) -> None:
    calls, _ = scriptlet_runner("PREUN", 0)
    assert calls == ["systemctl --no-reload disable --now ssmdiag.service"]
    calls, _ = scriptlet_runner("PREUN", 0, booted=False)
    assert calls == ["systemctl --no-reload disable ssmdiag.service"]
    calls, _ = scriptlet_runner("POSTUN", 0)
    assert "systemctl try-restart ssmdiag.service" not in calls


def test_scriptlets_create_the_user_from_the_sysusers_file(scriptlet_runner: ScriptRunner) -> None:
    calls, stdin = scriptlet_runner("PREIN", 1)
    assert calls == ["systemd-sysusers --replace=/usr/lib/sysusers.d/ssmdiag.conf -"]
    assert stdin == SYSUSERS.read_text()
    # Without systemd-sysusers (a minimal container): getent, groupadd, useradd.
    calls, _ = scriptlet_runner("PREIN", 1, tools=("getent", "groupadd", "useradd"))
    assert calls == [
        "getent group ssmdiag",
        "groupadd -r ssmdiag",
        "getent passwd ssmdiag",
        "useradd -r -M -N -g ssmdiag -c ssmdiag - SSM Agent diagnostics daemon"
        " -d /var/lib/ssmdiag -s /usr/sbin/nologin ssmdiag",
    ]
