"""The Debian package, built by packaging/deb/build and checked for real.

Built once per module from a clean copy of the tree. Its control fields follow ssmdiag's
version and pyproject's dependencies, lintian reports no errors, and, as root, apt-get
installs it (offline: the Debian dependencies must already be installed), the installed
command runs on Debian's own python3, the unit passes `systemd-analyze verify`, the user
and directories are there, and `apt-get purge` takes everything away again (except the
ssmdiag system user, which Debian leaves, like every package's system user).
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import pytest
from packaging.requirements import Requirement

import ssmdiag
from ssmdiag.cli import _build_parser
from tests.conftest import REPO, require_root, require_tool

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

BUILD_SCRIPT = REPO / "packaging" / "deb" / "build"
DEBIAN_DIR = REPO / "packaging" / "deb" / "debian"
BUILD_TIMEOUT = 180  # seconds; a build takes about 5
TOOL_TIMEOUT = 120  # lintian, dpkg-deb, systemd-analyze, the installed ssmdiag
APT_TIMEOUT = 300

UNIT = Path("/lib/systemd/system/ssmdiag.service")
SYSUSERS = Path("/usr/lib/sysusers.d/ssmdiag.conf")
CONFIG = Path("/etc/ssmdiag/ssmdiag.toml")
CLOUDWATCH = Path("/usr/share/ssmdiag/cloudwatch/amazon-cloudwatch-agent.json")
COMMAND = Path("/usr/bin/ssmdiag")
MAN_PAGE = Path("/usr/share/man/man1/ssmdiag.1.gz")
LINTIAN_OVERRIDES = Path("/usr/share/lintian/overrides/ssmdiag")
DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")
LOG_DIR = Path("/var/log/ssmdiag")
STATE_DIR = Path("/var/lib/ssmdiag")
WANTS_LINK = Path("/etc/systemd/system/multi-user.target.wants/ssmdiag.service")
# Repository file -> where the package installs it (byte for byte).
SHIPPED = {
    "systemd/ssmdiag.service": UNIT,
    "systemd/ssmdiag.sysusers": SYSUSERS,
    "packaging/ssmdiag.toml": CONFIG,
    "packaging/cloudwatch/ssmdiag-linux.json": CLOUDWATCH,
}
# pyproject dependency -> the Debian package that provides it.
DEBIAN_NAME = {
    "psutil": "python3-psutil",
    "tomli": "python3-tomli",
}
# The environment the installed command runs in: nothing from the test's venv or pyenv.
CLEAN_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "AWS_EC2_METADATA_DISABLED": "true",
    "LC_ALL": "C.UTF-8",
}


# -- helpers ----------------------------------------------------------------------------------
def run(
    argv: list[str], timeout: float = TOOL_TIMEOUT, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def debian_upstream_version(version: str) -> str:
    """PEP 440 -> Debian, as packaging/deb/build does: 1.2.0rc1 -> 1.2.0~rc1."""
    return re.sub(r"\.?(a|b|rc|dev)(\d+)", r"~\1\2", version)


def relations(field: str) -> list[list[str]]:
    """A Depends-like field as groups of alternatives: "a (>= 1), b | c" -> [[a (>= 1)], [b, c]]."""
    return [
        [" ".join(alt.split()) for alt in group.split("|")]
        for group in field.split(",")
        if group.strip()
    ]


def control_field(deb: Path, name: str) -> str:
    result = run([require_tool("dpkg-deb"), "-f", str(deb), name])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def apt_get(offline_sources: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """apt-get with no package sources at all: it can use what is installed and the local
    .deb, and fails on anything it would have to download (the project's network rule)."""
    empty_list = offline_sources / "sources.list"
    empty_parts = offline_sources / "sources.list.d"
    empty_parts.mkdir(parents=True, exist_ok=True)
    empty_list.touch()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return run(
        [
            require_tool("apt-get"),
            "-y",
            "-q",
            "-o",
            f"Dir::Etc::SourceList={empty_list}",
            "-o",
            f"Dir::Etc::SourceParts={empty_parts}",
            "-o",
            "Dpkg::Use-Pty=0",
            *args,
        ],
        timeout=APT_TIMEOUT,
        env=env,
    )


def package_status() -> str:
    """dpkg's status abbreviation for ssmdiag ("ii" installed, "rc" config left), "" if unknown."""
    result = run([require_tool("dpkg-query"), "-W", "-f=${db:Status-Abbrev}", "ssmdiag"])
    return result.stdout.strip() if result.returncode == 0 else ""


def known_to_dpkg() -> bool:
    """Installed, half-installed or with its configuration left: anything purge would clear."""
    return package_status() not in ("", "un", "pn")


def sysusers_entry() -> tuple[str, str, str, str]:
    """(name, gecos, home, shell) of the `u` line in systemd/ssmdiag.sysusers."""
    for line in (REPO / "systemd" / "ssmdiag.sysusers").read_text().splitlines():
        fields = shlex.split(line, comments=True)
        if fields and fields[0] == "u":
            _, name, _, gecos, home, shell = fields
            return name, gecos, home, shell
    raise AssertionError("no `u` line in systemd/ssmdiag.sysusers")


def assert_user_as_declared(entry: str) -> None:
    """A passwd(5) line for ssmdiag matches the sysusers declaration: a system user."""
    name, gecos, home, shell = sysusers_entry()
    fields = entry.strip().split(":")
    assert fields[0] == name
    assert int(fields[2]) < 1000, f"not a system uid: {entry}"
    assert fields[4].split(",")[0] == gecos  # adduser appends ",,," (empty room/phone fields)
    assert (fields[5], fields[6]) == (home, shell)


def passwd_line(name: str) -> str:
    result = run(["getent", "passwd", name])
    assert result.returncode == 0, f"no user {name}"
    return result.stdout.strip()


@contextmanager
def set_aside(*paths: Path) -> Iterator[None]:
    """Leave these paths as they were before the block: move existing ones out of the way
    (purge deletes them) and back afterwards; remove what the block left where there was none."""
    moved: list[tuple[Path, Path]] = []
    try:
        for path in paths:
            if path.exists() or path.is_symlink():
                aside = path.with_name(f"{path.name}.before-test-package-deb")
                assert not aside.exists(), f"{aside} is left over from an interrupted run"
                path.rename(aside)
                moved.append((path, aside))
        yield
    finally:
        for path in paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        for path, aside in moved:
            aside.rename(path)


# -- the build --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("git", "dpkg-buildpackage", "dh", "dh_python3"):
        require_tool(tool)
    out = tmp_path_factory.mktemp("deb")
    result = run([str(BUILD_SCRIPT), "--out", str(out)], timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, f"build failed:\n{result.stdout}\n{result.stderr}"
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.parent == out and path.is_file(), result.stdout
    return path


@pytest.fixture(scope="module")
def contents(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's files, unpacked (dpkg-deb -x) into a directory."""
    root = tmp_path_factory.mktemp("deb-contents")
    result = run([require_tool("dpkg-deb"), "-x", str(deb), str(root)])
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def control_dir(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's control files (control, conffiles, maintainer scripts)."""
    root = tmp_path_factory.mktemp("deb-control") / "DEBIAN"
    result = run([require_tool("dpkg-deb"), "-e", str(deb), str(root)])
    assert result.returncode == 0, result.stderr
    return root


def test_version_and_name_follow_ssmdiag_version(deb: Path) -> None:
    version = control_field(deb, "Version")
    expected = f"{debian_upstream_version(ssmdiag.__version__)}-1"
    assert version == expected
    assert version.startswith(ssmdiag.__version__) or "~" in version
    assert control_field(deb, "Package") == "ssmdiag"
    assert control_field(deb, "Architecture") == "all"
    assert deb.name == f"ssmdiag_{version}_all.deb"


def test_depends_on_debian_python_and_every_pyproject_dependency(deb: Path) -> None:
    depends = relations(control_field(deb, "Depends"))
    assert ["python3 (>= 3.9)"] in depends, depends

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted_python = {"python3"} | {
        DEBIAN_NAME.get(Requirement(spec).name, spec)
        for spec in pyproject["project"]["dependencies"]
    }
    named = {alt.split()[0].split(":")[0] for relation in depends for alt in relation}
    # No Python library beyond pyproject's (python3-structlog is gone: logging is ssmdiag's).
    assert {n for n in named if n.startswith("python3")} <= wanted_python, depends
    for spec in pyproject["project"]["dependencies"]:
        requirement = Requirement(spec)
        debian = DEBIAN_NAME.get(requirement.name)
        assert debian, f"pyproject dependency {spec!r} has no Debian package in DEBIAN_NAME"
        minimum = next(s.version for s in requirement.specifier if s.operator == ">=")
        wanted = f"{debian} (>= {minimum})"
        marker = re.fullmatch(r'python_version < "(\d+\.\d+)"', str(requirement.marker or ""))
        if marker:
            # Only needed below that Python: "python3 (>= X) | python3-foo (>= N)".
            assert [f"python3 (>= {marker.group(1)})", wanted] in depends, (spec, depends)
        else:
            assert requirement.marker is None, f"no rule for the marker of {spec!r}"
            assert [wanted] in depends, (spec, depends)

    # postinst's fallback when systemd-sysusers is missing.
    assert ["adduser"] in depends
    assert relations(control_field(deb, "Recommends")) == [["python3-systemd"]]


def test_contents_are_the_tracked_files_in_debian_places(deb: Path, contents: Path) -> None:
    tracked = run(["git", "ls-files", "ssmdiag"], cwd=REPO).stdout.split()
    assert tracked
    site = contents / DIST_PACKAGES.relative_to("/")
    packaged = {str(p.relative_to(site)) for p in (site / "ssmdiag").rglob("*") if p.is_file()}
    # Exactly the tracked files: no __pycache__ or anything else untracked from the tree.
    assert packaged == set(tracked)

    for source, target in SHIPPED.items():
        shipped = contents / target.relative_to("/")
        assert shipped.read_bytes() == (REPO / source).read_bytes(), source
    command = contents / COMMAND.relative_to("/")
    assert command.read_text().startswith("#!/usr/bin/python3\n")
    assert command.stat().st_mode & 0o777 == 0o755
    assert (contents / MAN_PAGE.relative_to("/")).is_file()
    dist_info = site / f"ssmdiag-{ssmdiag.__version__}.dist-info"
    assert f"Version: {ssmdiag.__version__}\n" in (dist_info / "METADATA").read_text()

    every = {"/" + str(p.relative_to(contents)) for p in contents.rglob("*") if not p.is_dir()}
    allowed = (f"{DIST_PACKAGES}/", "/usr/share/doc/ssmdiag/")
    placed = {str(path) for path in (*SHIPPED.values(), COMMAND, MAN_PAGE, LINTIAN_OVERRIDES)}
    extra = {p for p in every if not p.startswith(allowed) and p not in placed}
    assert not extra, f"unexpected files in the package: {sorted(extra)}"
    assert not [p for p in every if "__pycache__" in p or p.endswith(".pyc")]


def test_only_the_config_is_a_conffile(control_dir: Path) -> None:
    assert (control_dir / "conffiles").read_text().split() == [str(CONFIG)]


def test_lintian_reports_no_errors(deb: Path) -> None:
    lintian = require_tool("lintian")
    result = run([lintian, "--allow-root", "--info", "--pedantic", "--show-overrides", str(deb)])
    output = result.stdout + result.stderr
    print(output)
    errors = [line for line in output.splitlines() if line.startswith("E: ")]
    assert not errors and result.returncode == 0, f"lintian:\n{output}"


def test_every_lintian_override_is_justified() -> None:
    lines = (DEBIAN_DIR / "ssmdiag.lintian-overrides").read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            assert index > 0 and lines[index - 1].startswith("#"), f"no comment above {line!r}"


def test_man_page_names_every_command_and_option() -> None:
    page = (DEBIAN_DIR / "ssmdiag.1").read_text().replace("\\-", "-")
    parser = _build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in commands.items():
        if name == "service":  # Windows only: the service control manager starts it
            continue
        assert re.search(rf"\.B {name}\b", page), f"command {name} missing from ssmdiag.1"
        for action in sub._actions:
            for option in action.option_strings:
                assert option in page, f"ssmdiag {name} {option} missing from ssmdiag.1"


# -- installed for real -----------------------------------------------------------------------
def assert_installed_command_runs_on_debian_python() -> None:
    result = run([str(COMMAND), "version"], cwd="/", env=CLEAN_ENV)
    assert (result.returncode, result.stdout) == (0, f"ssmdiag {ssmdiag.__version__}\n")

    # Where everything is imported from, by the interpreter the command's #! names.
    probe = (
        "import json, ssmdiag, ssmdiag.daemon, psutil;"
        "print(json.dumps({m.__name__: m.__file__ for m in (ssmdiag, psutil)}))"
    )
    result = run(["/usr/bin/python3", "-c", probe], cwd="/", env=CLEAN_ENV)
    assert result.returncode == 0, result.stderr
    for module, path in json.loads(result.stdout).items():
        assert path.startswith(f"{DIST_PACKAGES}/{module}/"), f"{module} from {path}"


def assert_check_reports_json(validate_report: Callable[[dict[str, Any]], None]) -> None:
    result = run([str(COMMAND), "check", "--format", "json"], cwd="/", env=CLEAN_ENV)
    # No SSM Agent on the test machine: 2 (fail) here, but any health code is a run.
    assert result.returncode in (0, 1, 2, 3), f"{result.returncode}\n{result.stderr}"
    report = json.loads(result.stdout)
    assert isinstance(report["checks"], list) and report["checks"]
    assert report["tool"]["version"] == ssmdiag.__version__
    validate_report(report)


def assert_unit_verifies() -> None:
    result = run([require_tool("systemd-analyze"), "verify", str(UNIT)], cwd="/")
    output = (result.stdout + result.stderr).strip()
    about_ours = [line for line in output.splitlines() if "ssmdiag" in line]
    assert not about_ours, f"systemd-analyze verify {UNIT}:\n{output}"


def assert_installed_layout(config_changed: bool = False) -> None:
    assert package_status() == "ii"
    for source, target in SHIPPED.items():
        if target == CONFIG and config_changed:
            continue
        assert target.read_bytes() == (REPO / source).read_bytes(), target
    assert COMMAND.read_text().startswith("#!/usr/bin/python3\n")

    conffiles = run([require_tool("dpkg-query"), "-W", "-f=${Conffiles}", "ssmdiag"]).stdout.split()
    assert conffiles[:1] == [str(CONFIG)], conffiles

    user = pwd.getpwnam("ssmdiag")
    assert_user_as_declared(passwd_line("ssmdiag"))
    assert grp.getgrgid(user.pw_gid).gr_name == "ssmdiag"

    info = LOG_DIR.stat()
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o755
    assert (info.st_uid, info.st_gid) == (user.pw_uid, user.pw_gid)

    # Enabled (deb-systemd-helper), though not started: systemd is not running here.
    assert os.readlink(WANTS_LINK) == str(UNIT)


def test_install_run_and_purge(
    deb: Path, tmp_path: Path, validate_report: Callable[[dict[str, Any]], None]
) -> None:
    require_root("apt-get installs the package")
    require_tool("systemd-analyze")
    if known_to_dpkg():
        pytest.fail(
            f"ssmdiag is already installed (dpkg status {package_status()!r}); this test "
            "installs and purges it: remove it first with `apt-get purge ssmdiag`"
        )

    with set_aside(LOG_DIR, STATE_DIR):
        installed = False
        try:
            result = apt_get(tmp_path / "apt", "install", str(deb.resolve()))
            installed = known_to_dpkg()
            assert result.returncode == 0, (
                f"apt-get install failed (Debian dependencies missing? scripts/install-test-deps "
                f"installs them):\n{result.stdout}\n{result.stderr}"
            )
            assert "1 newly installed" in result.stdout, result.stdout

            assert_installed_layout()
            assert_installed_command_runs_on_debian_python()
            assert_check_reports_json(validate_report)
            assert_unit_verifies()

            # Upgrade path (same version again): postinst runs again without harm, and a
            # changed conffile is kept.
            with CONFIG.open("a") as config:
                config.write("# changed by the administrator\n")
            result = apt_get(tmp_path / "apt", "install", "--reinstall", str(deb.resolve()))
            assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
            assert CONFIG.read_text().endswith("# changed by the administrator\n")
            assert_installed_layout(config_changed=True)

            # What the daemon leaves behind; purge removes it.
            STATE_DIR.mkdir(exist_ok=True)
            (STATE_DIR / "last-status.json").write_text("{}\n")
            (LOG_DIR / "health.json").write_text("{}\n")

            result = apt_get(tmp_path / "apt", "purge", "ssmdiag")
            assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
            installed = known_to_dpkg()
            assert not installed, package_status()
        finally:
            if installed:
                apt_get(tmp_path / "apt", "purge", "ssmdiag")

        gone = [
            COMMAND,
            UNIT,
            SYSUSERS,
            CONFIG,
            CONFIG.parent,
            CLOUDWATCH.parent.parent,
            MAN_PAGE,
            DIST_PACKAGES / "ssmdiag",
            DIST_PACKAGES / f"ssmdiag-{ssmdiag.__version__}.dist-info",
            LOG_DIR,
            STATE_DIR,
            WANTS_LINK,
        ]
        left = [str(p) for p in gone if p.exists() or p.is_symlink()]
        assert not left, f"left after purge: {left}"
        # The system user stays (Debian's practice: files may still carry its uid).
        pwd.getpwnam("ssmdiag")


def test_postinst_falls_back_to_adduser_without_systemd_sysusers(
    control_dir: Path, tmp_path: Path
) -> None:
    """postinst's own part (before debhelper's snippets), where systemd-sysusers is missing:
    in a private mount namespace with a copy of /etc (the host's users stay as they are),
    systemd-sysusers hidden and a scratch /var/log."""
    require_root("mount namespace, a copy of /etc")
    unshare = require_tool("unshare")
    require_tool("adduser")
    sysusers = shutil.which("systemd-sysusers")

    postinst = (control_dir / "postinst").read_text()
    own_part = postinst.split("\n# Automatically added by dh_", 1)[0]
    assert "systemd-sysusers ssmdiag.conf" in own_part and "adduser" in own_part
    script = tmp_path / "postinst-own-part"
    script.write_text(own_part + "\nexit 0\n")
    etc = tmp_path / "etc"
    result = run(["cp", "-a", "/etc", str(etc)])
    assert result.returncode == 0, result.stderr

    hide = f"mount --bind /dev/null {shlex.quote(os.path.realpath(sysusers))}" if sysusers else ":"
    inner = f"""set -e
mount --bind {shlex.quote(str(etc))} /etc
{hide}
mount -t tmpfs tmpfs /var/log
userdel ssmdiag >/dev/null 2>&1 || true
groupdel ssmdiag >/dev/null 2>&1 || true
if command -v systemd-sysusers >/dev/null; then echo "systemd-sysusers still found" >&2; exit 9; fi
if getent passwd ssmdiag >/dev/null; then echo "ssmdiag user still there" >&2; exit 9; fi
sh -e {shlex.quote(str(script))} configure
getent passwd ssmdiag
getent group ssmdiag
stat -c '%U:%G %a' /var/log/ssmdiag
"""
    result = run([unshare, "--mount", "sh", "-c", inner], env={**os.environ, **CLEAN_ENV})
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    user_line, group_line, log_dir = result.stdout.strip().splitlines()
    assert_user_as_declared(user_line)
    assert group_line.split(":")[0] == "ssmdiag"
    assert group_line.split(":")[2] == user_line.split(":")[3]  # the user's primary group
    assert log_dir == "ssmdiag:ssmdiag 755"
