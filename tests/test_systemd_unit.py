"""systemd/ssmdiag.service and systemd/ssmdiag.sysusers, checked with systemd's own tools.

The unit must give the daemon what it relies on (Type=notify, the state and logs
directories, stderr on the console, exactly two capabilities), stay hardened
(`systemd-analyze security` exposure at most 2.0), load without a single warning
(`systemd-analyze verify`), and explain every line a reader could trip over.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from ssmdiag.config import Config
from ssmdiag.report import ExitCode
from tests.conftest import REPO, require_tool

UNIT = REPO / "systemd" / "ssmdiag.service"
SYSUSERS = REPO / "systemd" / "ssmdiag.sysusers"
UNIT_NAME = "ssmdiag.service"
MAX_EXPOSURE = 2.0
CAPABILITIES = {"CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"}
TIMEOUT = 60  # seconds for any systemd tool

# The units verify needs besides ours: the default dependencies of a service
# (sysinit.target, basic.target, shutdown.target) and what the unit names.
STUB_UNITS = (
    "sysinit.target",
    "basic.target",
    "shutdown.target",
    "network-online.target",
    "multi-user.target",
)
# Programs the unit runs (ExecStart=, ExecReload=); verify checks they exist in the root.
STUB_PROGRAMS = ("usr/bin/ssmdiag", "usr/bin/kill")


# -- helpers ----------------------------------------------------------------------------------
def systemd_env() -> dict[str, str]:
    """Plain, predictable output from systemd tools: to our pipe, no colours, no pager."""
    env = dict(os.environ)
    env.update(
        SYSTEMD_LOG_LEVEL="info",
        SYSTEMD_LOG_TARGET="console",
        SYSTEMD_LOG_COLOR="0",
        SYSTEMD_COLORS="0",
        SYSTEMD_PAGER="",
        LC_ALL="C.UTF-8",
    )
    return env


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=systemd_env(),
        check=False,
    )


@dataclass(frozen=True)
class Directive:
    index: int  # 0-based line index in the file
    section: str
    key: str
    value: str


def parse_unit(text: str) -> list[Directive]:
    """KEY=VALUE lines with their section, in order; repeated keys stay separate."""
    directives: list[Directive] = []
    section = ""
    for index, raw in enumerate(text.splitlines()):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"line {index + 1}: keep directives on one line"
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"line {index + 1} is neither a comment, a section nor KEY=VALUE: {raw!r}"
        directives.append(Directive(index, section, key.strip(), value.strip()))
    return directives


def values(directives: list[Directive], key: str, section: str = "Service") -> list[str]:
    return [d.value for d in directives if d.section == section and d.key == key]


def single(directives: list[Directive], key: str, section: str = "Service") -> str:
    found = values(directives, key, section)
    assert len(found) == 1, f"[{section}] {key}= should be set exactly once, found {found}"
    return found[0]


def seconds(timespan: str) -> float:
    """A systemd time span ("5min", "90", "1min 30s") in seconds, parsed by systemd itself."""
    result = run_tool(require_tool("systemd-analyze"), "timespan", timespan)
    match = re.search(r"(?:μs|us):\s*(\d+)", result.stdout)
    assert result.returncode == 0 and match, f"not a time span: {timespan!r}\n{result.stderr}"
    return int(match.group(1)) / 1_000_000


# Directives that share one comment: the comment sits above the first of them.
SHARED_COMMENT = (
    {"AmbientCapabilities", "CapabilityBoundingSet"},
    {"StateDirectory", "StateDirectoryMode"},
    {"LogsDirectory", "LogsDirectoryMode", "UMask"},
    {"SystemCallFilter"},
    {"MemoryHigh", "MemoryMax"},
    {"CPUQuota", "CPUWeight"},
    {"IOSchedulingClass", "IOSchedulingPriority", "IOWeight"},
)


def covering_comment(lines: list[str], directive: Directive) -> str | None:
    """The comment block right above the directive, or above the first of the directives
    sharing its comment (SHARED_COMMENT); None when there is none."""
    companions = next((g for g in SHARED_COMMENT if directive.key in g), {directive.key})
    i = directive.index - 1
    while i >= 0 and lines[i].partition("=")[0].strip() in companions:
        i -= 1
    block: list[str] = []
    while i >= 0 and lines[i].lstrip().startswith("#"):
        block.insert(0, lines[i].strip().lstrip("#").strip())
        i -= 1
    return "\n".join(block) or None


def comment_text(text: str) -> str:
    return "\n".join(
        line.strip().lstrip("#").strip()
        for line in text.splitlines()
        if line.lstrip().startswith("#")
    )


_UNIT_PREFIX = re.compile(
    r"^(?:\S*/)?(?P<unit>[\w@.\\:-]+\."
    r"(?:service|socket|target|mount|automount|swap|path|timer|slice|scope|device))(?::\d+)?:"
)


def lines_about_our_unit(output: str) -> list[str]:
    """Every message of verify's output except those that name another unit first."""
    ours = []
    for line in output.splitlines():
        if not line.strip():
            continue
        match = _UNIT_PREFIX.match(line.strip())
        if match and match.group("unit") != UNIT_NAME:
            continue  # about some other unit
        ours.append(line)
    return ours


def build_root(root: Path, unit_text: str) -> Path:
    """A file system root holding the unit as installed, its programs (stub scripts) and the
    units it depends on (empty stubs): verify then judges our unit, not the host's."""
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    (root / "etc" / "systemd" / "system" / UNIT_NAME).write_text(unit_text)
    units = root / "usr" / "lib" / "systemd" / "system"
    units.mkdir(parents=True)
    for name in STUB_UNITS:
        (units / name).write_text(f"[Unit]\nDescription=Stub {name} for the test\n")
    for program in STUB_PROGRAMS:
        path = root / program
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    (root / "bin").symlink_to("usr/bin")  # merged /usr: /bin/kill is /usr/bin/kill
    return root


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    return run_tool(
        require_tool("systemd-analyze"), "verify", "--man=no", f"--root={root}", UNIT_NAME
    )


@pytest.fixture(scope="module")
def unit_text() -> str:
    return UNIT.read_text()


@pytest.fixture(scope="module")
def unit(unit_text: str) -> list[Directive]:
    return parse_unit(unit_text)


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory: pytest.TempPathFactory, unit_text: str) -> Path:
    return build_root(tmp_path_factory.mktemp("unit-root"), unit_text)


# -- (a) hardening score ----------------------------------------------------------------------
def test_security_exposure_is_at_most_2(unit_root: Path) -> None:
    result = run_tool(
        require_tool("systemd-analyze"),
        "security",
        "--offline=yes",
        "--no-pager",
        f"--root={unit_root}",
        UNIT_NAME,
    )
    table = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for ssmdiag\.service:\s*(\d+\.\d)", table)
    assert result.returncode == 0 and match, f"systemd-analyze security failed:\n{table}"
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, (
        f"exposure {exposure} > {MAX_EXPOSURE}; harden the unit again:\n{table}"
    )


# -- (b) systemd-analyze verify -----------------------------------------------------------------
def test_verify_is_clean(unit_root: Path) -> None:
    result = verify(unit_root)
    output = result.stdout + result.stderr
    assert lines_about_our_unit(output) == [], f"systemd-analyze verify:\n{output}"
    assert result.returncode == 0, f"systemd-analyze verify exited {result.returncode}:\n{output}"


def test_verify_would_catch_a_broken_unit(tmp_path: Path, unit_text: str) -> None:
    # The clean result above means something only if this harness sees mistakes:
    # an unknown key (verify still exits 0) and a missing ExecStart= program.
    broken = unit_text.replace("[Service]\n", "[Service]\nNotAKnownKey=yes\n", 1)
    root = build_root(tmp_path / "root", broken)
    (root / "usr" / "bin" / "ssmdiag").unlink()
    result = verify(root)
    output = "\n".join(lines_about_our_unit(result.stdout + result.stderr))
    assert "NotAKnownKey" in output, output
    assert "/usr/bin/ssmdiag" in output, output


# -- (c) sysusers -----------------------------------------------------------------------------
def test_sysusers_creates_a_system_user(tmp_path: Path, unit: list[Directive]) -> None:
    tool = require_tool("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    installed = tmp_path / "usr" / "lib" / "sysusers.d" / "ssmdiag.conf"  # where packages put it
    installed.parent.mkdir(parents=True)
    shutil.copyfile(SYSUSERS, installed)

    result = run_tool(tool, f"--root={tmp_path}", "ssmdiag.conf")
    said = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and not line.startswith(("Creating group ", "Creating user "))
    ]
    assert result.returncode == 0 and said == [], result.stdout + result.stderr

    passwd = [line.split(":") for line in (tmp_path / "etc" / "passwd").read_text().splitlines()]
    users = [entry for entry in passwd if entry[0] == "ssmdiag"]
    assert len(users) == 1, passwd
    _, _, uid, gid, gecos, home, shell = users[0]
    assert 0 < int(uid) < 1000, f"not a system user: uid {uid}"
    assert shell == "/usr/sbin/nologin"
    assert gecos.strip(), "the user needs a description"
    # The home directory is the unit's StateDirectory=, which systemd creates for it.
    assert home == "/var/lib/" + single(unit, "StateDirectory")

    group = [line.split(":") for line in (tmp_path / "etc" / "group").read_text().splitlines()]
    assert [entry[2] for entry in group if entry[0] == "ssmdiag"] == [gid], group

    again = run_tool(tool, f"--root={tmp_path}", "ssmdiag.conf")  # as at every boot
    assert again.returncode == 0 and not (again.stdout + again.stderr).strip(), again.stderr


# -- (d) what the daemon relies on ----------------------------------------------------------------
def test_unit_runs_the_daemon_as_it_expects(unit: list[Directive]) -> None:
    assert single(unit, "ExecStart") == "/usr/bin/ssmdiag run"
    assert single(unit, "Type") == "notify"
    assert single(unit, "NotifyAccess") == "main"  # READY/STATUS/WATCHDOG from the daemon only
    assert single(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert single(unit, "Restart") == "on-failure"
    assert values(unit, "RestartSec")
    # A usage or config error at start stays failed instead of restarting in a loop.
    assert set(single(unit, "RestartPreventExitStatus").split()) == {
        str(int(ExitCode.USAGE)),
        str(int(ExitCode.CONFIG)),
    }
    assert single(unit, "User") == "ssmdiag"
    assert single(unit, "StateDirectory") == "ssmdiag"  # $STATE_DIRECTORY
    assert single(unit, "LogsDirectory") == "ssmdiag"  # $LOGS_DIRECTORY/health.json
    assert single(unit, "LogsDirectoryMode") == "0755"  # the CloudWatch agent reads it
    assert single(unit, "UMask") == "0022"  # ... and the file in it
    assert single(unit, "StandardOutput") == "journal"  # JSON events
    assert single(unit, "StandardError") == "journal+console"  # the console sink
    # Nothing else is writable: no ReadWritePaths= beside the two directories.
    assert single(unit, "ProtectSystem") == "strict"
    assert values(unit, "ReadWritePaths") == []

    after = single(unit, "After", "Unit").split()
    for name in (
        "network-online.target",
        "amazon-ssm-agent.service",
        "snap.amazon-ssm-agent.amazon-ssm-agent.service",
    ):
        assert name in after
    assert single(unit, "Wants", "Unit") == "network-online.target"
    assert single(unit, "WantedBy", "Install") == "multi-user.target"


def test_timeouts_fit_the_daemons_own_limits(unit: list[Directive]) -> None:
    defaults = Config()
    # READY=1 comes at the latest after startup_timeout: systemd must wait longer.
    assert seconds(single(unit, "TimeoutStartSec")) > defaults.startup_timeout
    # The watchdog must outlast the longest legitimate cycle.
    assert seconds(single(unit, "WatchdogSec")) > defaults.cycle_timeout
    # The daemon exits within 2 s of SIGTERM; a stop that hangs should not hang for long.
    assert 2 < seconds(single(unit, "TimeoutStopSec")) <= 30


def test_exactly_the_two_capabilities(unit: list[Directive]) -> None:
    for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
        assert set(single(unit, key).split()) == CAPABILITIES, key
    assert single(unit, "NoNewPrivileges") == "yes"
    # In a user namespace the capabilities would not reach the host's agent.
    assert values(unit, "PrivateUsers") in ([], ["no"])
    # The checks read /proc/PID of the root-owned agent and psutil reads /proc/stat.
    assert values(unit, "ProtectProc") in ([], ["default"])
    assert values(unit, "ProcSubset") in ([], ["all"])
    # D-Bus/journald/notify socket, HTTPS and IMDS, and getaddrinfo's netlink query.
    families = set(single(unit, "RestrictAddressFamilies").split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert values(unit, "PrivateNetwork") in ([], ["no"])
    assert values(unit, "IPAddressDeny") == []


# -- (e) every surprising line says why ---------------------------------------------------------
EXPLAINED = {
    # key: words its comment must contain (any comment at all when empty)
    "AmbientCapabilities": ("CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE", "/proc/PID/environ"),
    "CapabilityBoundingSet": ("CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"),
    "RestrictAddressFamilies": ("AF_UNIX", "AF_INET", "AF_NETLINK", "getaddrinfo"),
    "WatchdogSec": ("240",),
    "TimeoutStartSec": ("60",),
    "TimeoutStopSec": ("SIGTERM",),
    "NotifyAccess": (),
    "ExecReload": ("SIGHUP",),
    "RestartSec": (),
    "RestartPreventExitStatus": ("64", "78"),
    "StateDirectory": (),
    "LogsDirectory": ("CloudWatch",),
    "LogsDirectoryMode": ("CloudWatch",),
    "UMask": ("CloudWatch",),
    "StandardError": ("console",),
    "ProtectSystem": (),
    "ProtectHome": ("/home",),
    "PrivateMounts": (),
    "PrivateDevices": ("console",),
    "ProtectHostname": ("hostname",),
    "MemoryDenyWriteExecute": (),
    "SystemCallFilter": (),
    "SystemCallErrorNumber": ("EPERM",),
    "MemoryHigh": (),
    "MemoryMax": (),
    "TasksMax": (),
    "CPUQuota": (),
    "IOSchedulingClass": (),
    "OOMScoreAdjust": (),
}


def test_surprising_lines_are_explained(unit_text: str, unit: list[Directive]) -> None:
    lines = unit_text.splitlines()
    problems = []
    for directive in unit:
        if directive.key not in EXPLAINED:
            continue
        comment = covering_comment(lines, directive)
        if comment is None:
            problems.append(f"line {directive.index + 1} ({directive.key}=) has no comment")
            continue
        missing = [word for word in EXPLAINED[directive.key] if word not in comment]
        if missing:
            problems.append(
                f"line {directive.index + 1} ({directive.key}=): its comment does not "
                f"mention {missing}:\n{comment}"
            )
    assert problems == [], "\n".join(problems)


def test_settings_left_out_on_purpose_say_why(unit_text: str) -> None:
    comments = comment_text(unit_text)
    for key in ("PrivateUsers=", "ProtectProc=", "ProcSubset=", "IPAddressDeny="):
        assert key in comments, f"say in a comment why {key} is not set"
