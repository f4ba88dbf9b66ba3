"""Linux: the agent from rpm, deb or snap, run by systemd (or upstart on old distributions)."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import stat
import sys
import time
from dataclasses import dataclass, replace
from typing import IO, Callable, Optional

from ssmdiag.agent import reading_from_version_run
from ssmdiag.config import Config
from ssmdiag.platform import process
from ssmdiag.platform.base import (
    AgentDiscovery,
    AgentEnvironment,
    AgentPaths,
    AgentProcess,
    DiskUsage,
    FileRead,
    OsInfo,
    PathStat,
    Platform,
    RestartHistory,
    ServiceState,
    TimeService,
    TimeSync,
    UserAccount,
    VersionReading,
    read_text_file,
    unix_disk_usage,
)

# Only ever imported on Linux; tells mypy --platform win32 not to check what follows.
assert sys.platform != "win32"

AGENT_PACKAGE = "amazon-ssm-agent"
AGENT_BINARY = "/usr/bin/amazon-ssm-agent"
SNAP_BINARY = "/snap/amazon-ssm-agent/current/amazon-ssm-agent"
AGENT_CONFIG = "/etc/amazon/ssm/amazon-ssm-agent.json"
AGENT_DATA_DIR = "/var/lib/amazon/ssm"  # AgentData, agent/appconfig/constants_unix.go:32
AGENT_LOG_DIR = "/var/log/amazon/ssm"  # DefaultLogDir, agent/log/logger/log_unix.go:27
SYSTEMD_UNITS = ("amazon-ssm-agent.service", "snap.amazon-ssm-agent.amazon-ssm-agent.service")
UPSTART_JOB = "amazon-ssm-agent"
SUDO_RULE = "/etc/sudoers.d/ssm-agent-users"

# How the agent decides to use a relocated directory, from agent/appconfig/constants_unix.go
# (tag 3.3.1142.0). Its directory is filepath.Abs(filepath.Dir(os.Args[0])) (:149); only
# when that is not /usr/bin (:121, :155) and both workers pass validateAgentBinary (:156-157)
# does it move DefaultProgramFolder there, and only when configuration/amazon-ssm-agent.json
# then passes validateRelativeConfigFile (:173-174) does it read that file. Otherwise
# AppConfigPath stays /etc/amazon/ssm/amazon-ssm-agent.json (:119, :129).
DEFAULT_WORKER_DIR = "/usr/bin"
RELOCATION_WORKERS = ("ssm-session-worker", "ssm-agent-worker")  # checked in this order
NECESSARY_WORKER_MODE = 0o511  # NecessaryAgentBinaryPermissionMask (:102)
DISALLOWED_WORKER_MODE = 0o022  # DisallowedAgentBinaryPermissionMask (:103)
RELATIVE_CONFIG = os.path.join("configuration", "amazon-ssm-agent.json")  # :172-174
_WORKER_RULE = "both workers root:root, mode at least 0511, not writable by group or others"

StatFn = Callable[[str], PathStat]

# Time-sync services by their systemd units (on Debian chronyd.service is an alias of
# chrony.service: both show Id=chrony.service, counted once) and by their process names.
TIME_SYNC_UNITS = (
    "chronyd.service",
    "chrony.service",
    "systemd-timesyncd.service",
    "ntpd.service",
    "ntp.service",
    "ntpsec.service",
    "openntpd.service",
)
TIME_SYNC_PROCESSES = ("chronyd", "systemd-timesyncd", "ntpd", "openntpd")
TIME_SYNC_TARGET = "time-sync.target"

# `systemctl show` properties of the agent's unit that tell its restart history.
# NRestarts exists from systemd 235 (Amazon Linux 2 and RHEL 7 have 219: no count there).
RESTART_PROPERTIES = (
    "SubState",
    "Result",
    "NRestarts",
    "ExecMainStartTimestamp",
    "ExecMainStartTimestampMonotonic",
    "ExecMainCode",
    "ExecMainStatus",
    "Restart",
    "RestartUSec",
)
# ExecMainCode is the waitid(2) si_code of the main process's end.
_CLD_EXITED, _CLD_KILLED, _CLD_DUMPED = 1, 2, 3


@dataclass(frozen=True)
class LinuxLocations:
    """Where this platform looks. Real paths by default; tests point them at real temp databases."""

    os_release: str = "/etc/os-release"
    rpm_dbpath: Optional[str] = None
    dpkg_admindir: Optional[str] = None
    systemd_run_dir: str = "/run/systemd/system"  # exists only when systemd is PID 1 (sd_booted)
    systemctl: str = "systemctl"
    initctl: str = "initctl"
    rpm: str = "rpm"
    dpkg_query: str = "dpkg-query"
    snap: str = "snap"
    timedatectl: str = "timedatectl"
    chronyc: str = "chronyc"
    mountinfo: str = "/proc/self/mountinfo"
    default_binaries: tuple[str, ...] = (AGENT_BINARY, SNAP_BINARY)


def parse_os_release(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def parse_systemctl_show(text: str) -> list[dict[str, str]]:
    """`systemctl show -p ... UNIT...` prints one block of KEY=VALUE lines per unit."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, _, value = line.partition("=")
        current[key] = value
    if current:
        blocks.append(current)
    return blocks


def parse_snap_list(text: str, name: str = AGENT_PACKAGE) -> Optional[str]:
    """The Version column of `snap list NAME` (header line, then one row per snap)."""
    for line in text.splitlines()[1:]:
        columns = line.split()
        if len(columns) >= 2 and columns[0] == name:
            return columns[1]
    return None


@dataclass(frozen=True)
class MountEntry:
    device: str  # major:minor, as st_dev
    mount_point: str
    fstype: str
    source: str
    super_options: tuple[str, ...]  # the filesystem's own options ("ro" after remount-ro)


def _unescape_mount_field(value: str) -> str:
    # The kernel escapes space, tab, newline and backslash as \ooo (show_mountinfo).
    out, index = [], 0
    while index < len(value):
        chunk = value[index : index + 4]
        if len(chunk) == 4 and chunk[0] == "\\" and chunk[1:].isdigit():
            out.append(chr(int(chunk[1:], 8)))
            index += 4
        else:
            out.append(value[index])
            index += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """/proc/PID/mountinfo: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE
    SOURCE SUPEROPTS` per line (proc(5)); lines that do not fit are skipped."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        if len(fields) < dash + 4:
            continue
        entries.append(
            MountEntry(
                fields[2],
                _unescape_mount_field(fields[4]),
                fields[dash + 1],
                _unescape_mount_field(fields[dash + 2]),
                tuple(fields[dash + 3].split(",")),
            )
        )
    return entries


def mount_for(entries: list[MountEntry], device: str, path: str) -> Optional[MountEntry]:
    """The visible mount of `device` that holds `path`: the longest mount point above it
    (the last one mounted, when several share a mount point)."""
    best: Optional[MountEntry] = None
    for entry in entries:
        if entry.device != device:
            continue
        top = entry.mount_point.rstrip("/") or "/"
        if top not in ("/", path) and not path.startswith(top + "/"):
            continue
        if best is None or len(top) >= len(best.mount_point.rstrip("/") or "/"):
            best = entry
    return best


def parse_key_values(text: str, sep: str = "=") -> dict[str, str]:
    """`KEY=VALUE` (timedatectl show) or `Key   : value` (chronyc tracking) lines."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, found, value = line.partition(sep)
        if found and key.strip():
            values[key.strip()] = value.strip()
    return values


def parse_timedatectl_status(text: str) -> Optional[bool]:
    """`timedatectl status` of systemd < 239 (no `show`): "NTP synchronized: yes", later
    spelled "System clock synchronized: yes"."""
    for line in text.splitlines():
        key, found, value = line.partition(":")
        if found and key.strip().lower().endswith("synchronized"):
            answer = value.strip().lower()
            if answer in ("yes", "no"):
                return answer == "yes"
    return None


@dataclass(frozen=True)
class ChronyTracking:
    synchronized: Optional[bool]
    reference: str
    offset_s: Optional[float]
    leap_status: str


def parse_chronyc_tracking(text: str) -> Optional[ChronyTracking]:
    """`chronyc tracking`: `Reference ID    : A9FEA97B (169.254.169.123)`, `System time
    : 0.000001234 seconds fast of NTP time`, `Leap status     : Normal` (or "Not
    synchronised"). None when the text has no Leap status line (chronyd not reachable)."""
    values = parse_key_values(text, ":")
    leap = values.get("Leap status")
    if leap is None:
        return None
    reference = ""
    ref = values.get("Reference ID", "")
    if "(" in ref and ref.endswith(")"):
        reference = ref[ref.index("(") + 1 : -1]
    offset: Optional[float] = None
    words = values.get("System time", "").split()
    if len(words) >= 3 and words[1] == "seconds" and words[2] in ("fast", "slow"):
        try:
            offset = float(words[0]) * (1 if words[2] == "fast" else -1)
        except ValueError:
            offset = None
    return ChronyTracking(not leap.lower().startswith("not synchron"), reference, offset, leap)


def describe_main_exit(code: str, status: str) -> str:
    """systemd's ExecMainCode/ExecMainStatus as words: "exit status 2", "signal SIGSEGV"."""
    if not (code.isdigit() and status.lstrip("-").isdigit()):
        return ""
    number = int(status)
    if int(code) == _CLD_EXITED:
        return f"exit status {number}"
    if int(code) in (_CLD_KILLED, _CLD_DUMPED):
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return f"signal {name}" + (" (core dumped)" if int(code) == _CLD_DUMPED else "")
    return ""


# REQUEST_METHOD too: Go refuses http proxying when it is set (CGI), and it holds no secret.
_PROXY_VARS = {"https_proxy", "http_proxy", "no_proxy", "request_method"}
MAX_ENVIRON_BYTES = 64 * 1024 * 1024  # far beyond ARG_MAX; read in chunks, never held whole


def _proxy_vars(values: dict[str, str]) -> dict[str, str]:
    # Keep only what decides the proxy: the rest of an environment may hold secrets.
    return {k: v for k, v in values.items() if k.lower() in _PROXY_VARS}


def read_proxy_environ(handle: IO[bytes]) -> tuple[dict[str, str], Optional[str]]:
    """The proxy variables of a /proc/PID/environ, read in chunks so a huge environment
    is neither held in memory nor cut short (a proxy variable at its end still counts)."""
    values: dict[str, str] = {}
    pending = b""
    total = 0
    while True:
        chunk = handle.read(64 * 1024)
        if not chunk:
            break
        total += len(chunk)
        pending += chunk
        *entries, pending = pending.split(b"\0")
        values.update(_proxy_vars(parse_environ(b"\0".join(entries))))
        name = pending[:32].split(b"=", 1)[0].decode("ascii", "replace").lower()
        if len(pending) > 1024 * 1024 and name not in _PROXY_VARS:
            pending = b""  # one giant unrelated entry: drop it, keep reading
        if total > MAX_ENVIRON_BYTES:
            return values, (
                f"the agent's environment is larger than {MAX_ENVIRON_BYTES // 2**20} MiB; "
                "proxy variables past that point were not read"
            )
    values.update(_proxy_vars(parse_environ(pending)))
    return values, None


def parse_environ(raw: bytes) -> dict[str, str]:
    """/proc/PID/environ: NUL-separated NAME=value entries."""
    values: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.decode("utf-8", "replace").partition("=")
        if sep and key:
            values[key] = value
    return values


def split_unit_environment(text: str) -> list[str]:
    """systemctl show's Environment= value: space-separated, double-quoted where needed."""
    import shlex

    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def launch_path(cmdline: Optional[list[str]], cwd: Optional[str]) -> Optional[str]:
    """filepath.Abs(os.Args[0]) of a process: the path its directory is derived from
    (constants_unix.go:149). None when argv[0] is unknown, or relative with no readable cwd."""
    if not cmdline or not cmdline[0]:
        return None
    argv0 = cmdline[0]
    if os.path.isabs(argv0):
        return os.path.normpath(argv0)
    if not cwd:
        return None
    return os.path.normpath(os.path.join(cwd, argv0))


def _pid_namespace(pid: str) -> Optional[str]:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None  # another user's process without CAP_SYS_PTRACE, or already gone


def _in_our_pid_namespace(pid: int) -> bool:
    """An agent in another PID namespace (a container, a throwaway node) is that one's agent,
    not this node's; a process whose namespace cannot be read is kept."""
    ours, theirs = _pid_namespace("self"), _pid_namespace(str(pid))
    return ours is None or theirs is None or ours == theirs


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)  # as `ps -o user=` prints an account without a name


def stat_real_path(path: str) -> PathStat:
    """os.stat (following symlinks, as Go's os.Stat) reduced to what the agent looks at."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return PathStat(path, "missing", message="does not exist")
    except PermissionError:
        return PathStat(path, "denied", message="permission denied")
    except OSError as exc:
        return PathStat(path, "error", message=exc.strerror or str(exc))
    if stat.S_ISREG(st.st_mode):
        kind = "file"
    elif stat.S_ISDIR(st.st_mode):
        kind = "dir"
    else:
        kind = "other"
    return PathStat(path, "ok", st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode) & 0o777, kind)


def _unreadable(found: PathStat) -> Optional[str]:
    if found.outcome == "ok":
        return None
    return f"{found.path} {found.message or found.outcome}"


def _not_root_owned(found: PathStat) -> Optional[str]:
    if found.uid == 0 and found.gid == 0:
        return None
    return f"{found.path} is owned by uid {found.uid}, gid {found.gid}, not root:root"


def worker_problem(found: PathStat) -> Optional[str]:
    """Why validateAgentBinary (constants_unix.go:191-216) refuses a worker; None: accepted.

    The same tests in the same order: it exists (:193), mode has 0511 (:197), mode has
    none of 0022 (:203), owner and group are root (:210-211). The file type is not checked.
    """
    unreadable = _unreadable(found)
    if unreadable:
        return unreadable
    mode = found.mode
    if mode & NECESSARY_WORKER_MODE != NECESSARY_WORKER_MODE:
        return (
            f"{found.path} has mode {mode:04o}: the agent needs read and execute for its "
            "owner and execute for group and others (0511)"
        )
    if mode & DISALLOWED_WORKER_MODE:
        writers = [who for bit, who in ((0o020, "group"), (0o002, "others")) if mode & bit]
        return f"{found.path} is writable by {' and '.join(writers)} (mode {mode:04o})"
    return _not_root_owned(found)


def relative_config_problem(folder: PathStat, config: PathStat) -> Optional[str]:
    """Why validateRelativeConfigFile (constants_unix.go:218-251) refuses the file; None: used.

    The folder must be owned by root:root (:220-230); the file must exist (:233), be a
    regular file (:239) and be owned by root:root (:245-248). Its mode is not checked.
    """
    problem = _unreadable(folder) or _not_root_owned(folder) or _unreadable(config)
    if problem:
        return problem
    if config.kind != "file":
        return f"{config.path} is not a regular file"
    return _not_root_owned(config)


@dataclass(frozen=True)
class ConfigChoice:
    path: str
    source: str  # default | relocated
    note: str
    ignored: str = ""  # a relocated configuration/amazon-ssm-agent.json the agent ignores
    fix: str = ""  # what makes the agent use the relocated layout, when one is ignored


def agent_config_choice(binary_path: Optional[str], stat_fn: StatFn) -> ConfigChoice:
    """The amazon-ssm-agent.json the agent started as binary_path reads, and why (with what
    to do when a relocated layout is ignored)."""
    if not binary_path:
        return ConfigChoice(
            AGENT_CONFIG,
            "default",
            f"no agent binary was found, so the packaged layout is assumed: {AGENT_CONFIG}",
        )
    # filepath.Abs(filepath.Dir(os.Args[0])) (constants_unix.go:149).
    directory = os.path.abspath(os.path.dirname(binary_path))
    if directory == DEFAULT_WORKER_DIR:
        return ConfigChoice(
            AGENT_CONFIG,
            "default",
            f"the agent runs from {DEFAULT_WORKER_DIR}, the packaged layout: it reads "
            f"{AGENT_CONFIG}",
        )
    for worker in RELOCATION_WORKERS:
        found = stat_fn(os.path.join(directory, worker))
        problem = worker_problem(found)
        if problem is None:
            continue
        if found.outcome == "denied":  # the agent, as root, would see it: ssmdiag cannot
            return ConfigChoice(
                AGENT_CONFIG,
                "default",
                f"cannot tell whether the agent in {directory} uses a relocated layout "
                f"({problem}); assuming it reads {AGENT_CONFIG}: run ssmdiag as root to know",
            )
        if found.outcome == "ok":
            fix = (
                f"To have the agent use {directory}: `sudo chown root:root {found.path} && "
                f"sudo chmod 0755 {found.path}`, then restart the agent."
            )
        else:
            fix = (
                f"To have the agent use {directory}: install ssm-agent-worker and "
                f"ssm-session-worker there, then restart the agent."
            )
        relative = os.path.join(directory, RELATIVE_CONFIG)
        return ConfigChoice(
            AGENT_CONFIG,
            "default",
            f"relocated layout in {directory} ignored: {problem} (the agent needs "
            f"{_WORKER_RULE}), so it reads {AGENT_CONFIG}",
            ignored=relative if stat_fn(relative).outcome == "ok" else "",
            fix=fix,
        )
    relative = os.path.join(directory, RELATIVE_CONFIG)
    folder_path = os.path.dirname(relative)
    folder = stat_fn(folder_path)
    config = stat_fn(relative)
    problem = relative_config_problem(folder, config)
    if problem is None:
        return ConfigChoice(
            relative,
            "relocated",
            f"relocated layout in {directory} (workers, configuration/ and the file owned by "
            f"root:root): the agent reads {relative}, not {AGENT_CONFIG}",
        )
    if "denied" in (folder.outcome, config.outcome):
        return ConfigChoice(
            AGENT_CONFIG,
            "default",
            f"cannot tell whether the agent in {directory} reads {relative} ({problem}); "
            f"assuming it reads {AGENT_CONFIG}: run ssmdiag as root to know",
        )
    if config.outcome == "missing":
        fix = f"To relocate the agent's configuration, create {relative} owned by root:root."
    else:
        fix = (
            f"To have the agent read {relative}: `sudo chown root:root {folder_path} "
            f"{relative}`, then restart the agent."
        )
    return ConfigChoice(
        AGENT_CONFIG,
        "default",
        f"the agent in {directory} uses its workers there but ignores {relative}: {problem} "
        f"(it needs the file and configuration/ owned by root:root), so it reads "
        f"{AGENT_CONFIG}",
        ignored=relative if config.outcome == "ok" else "",
        fix=fix,
    )


class LinuxPlatform(Platform):
    family = "linux"

    def __init__(
        self,
        config: Config,
        locations: Optional[LinuxLocations] = None,
        *,
        stat_fn: Optional[StatFn] = None,
        monotonic_fn: Optional[Callable[[], float]] = None,
    ) -> None:
        super().__init__(config)
        self.locations = locations or LinuxLocations()
        self._stat: StatFn = stat_fn if stat_fn is not None else stat_real_path
        # CLOCK_MONOTONIC, the clock of systemd's *TimestampMonotonic properties.
        self._monotonic = monotonic_fn if monotonic_fn is not None else time.monotonic

    def _run(self, argv: list[str]) -> process.ProcResult:
        return process.run(argv, timeout=self.config.subprocess_timeout)

    # -- host -------------------------------------------------------------------------------
    def hostname(self) -> str:
        return socket.gethostname()

    def os_info(self) -> OsInfo:
        read = self.read_file(self.locations.os_release)
        release = parse_os_release(read.text) if read.outcome == "ok" else {}
        uname = os.uname()
        details = {"kernel": uname.release, "machine": uname.machine}
        details.update({k: v for k, v in release.items() if k in ("ID", "ID_LIKE", "VERSION_ID")})
        if read.outcome != "ok":
            details["os_release_problem"] = f"{read.path}: {read.message or read.outcome}"
        name = release.get("NAME") or "Linux"
        version = release.get("VERSION_ID") or release.get("VERSION") or uname.release
        return OsInfo("linux", name, version, details)

    # -- agent ------------------------------------------------------------------------------
    def agent_paths(self, binary_path: Optional[str] = None) -> AgentPaths:
        cfg = self.config
        binaries = (cfg.agent_binary,) if cfg.agent_binary else self.locations.default_binaries
        choice = agent_config_choice(binary_path, self.stat_path)
        config_file, source, note = choice.path, choice.source, choice.note
        if cfg.agent_config_file:
            config_file, source = cfg.agent_config_file, "ssmdiag-config"
            note = "named by ssmdiag's [agent] config_file or --agent-config"
            if os.path.normpath(config_file) != choice.path:
                note += f"; the agent itself reads {choice.path}: {choice.note}"
        data_dir = cfg.agent_data_dir or AGENT_DATA_DIR
        return AgentPaths(
            binaries,
            config_file,
            source,
            data_dir,
            runtime_identity_file=os.path.join(data_dir, "runtimeconfig", "identity_config.json"),
            registration_file=os.path.join(data_dir, "registration"),
            dhmc_credentials_file=os.path.join(data_dir, "credentials"),
            config_file_note=note,
            ignored_config_file=choice.ignored,
            config_file_fix=choice.fix,
            log_dir=AGENT_LOG_DIR,
        )

    def _binary_reading(self, path: str, source: str = "binary") -> VersionReading:
        return reading_from_version_run(self._run([path, "-version"]), path, source)

    def _rpm_reading(self) -> VersionReading:
        argv = [self.locations.rpm, "-q", "--qf", "%{VERSION}", AGENT_PACKAGE]
        if self.locations.rpm_dbpath:
            argv[1:1] = ["--dbpath", self.locations.rpm_dbpath]
        result = self._run(argv)
        if result.outcome == "not_found":
            return VersionReading("rpm", "unavailable", note="rpm is not installed here")
        if result.outcome == "ok" and result.stdout.strip():
            return VersionReading("rpm", "found", result.stdout.strip(), location=AGENT_PACKAGE)
        if result.outcome == "nonzero" and "not installed" in result.stdout + result.stderr:
            return VersionReading("rpm", "absent", note="package not installed")
        return VersionReading("rpm", "broken", note=result.describe())

    def _dpkg_reading(self) -> VersionReading:
        argv = [self.locations.dpkg_query, "-W", "-f=${db:Status-Abbrev}|${Version}", AGENT_PACKAGE]
        if self.locations.dpkg_admindir:
            argv[1:1] = [f"--admindir={self.locations.dpkg_admindir}"]
        result = self._run(argv)
        if result.outcome == "not_found":
            return VersionReading("dpkg", "unavailable", note="dpkg is not installed here")
        if result.outcome == "nonzero" and "no packages found" in result.stderr:
            return VersionReading("dpkg", "absent", note="package not installed")
        if result.outcome == "ok":
            status, _, version = result.stdout.partition("|")
            if status.startswith("ii") and version.strip():
                return VersionReading("dpkg", "found", version.strip(), location=AGENT_PACKAGE)
            return VersionReading(
                "dpkg", "absent", note=f"package state {status.strip() or 'unknown'!r}"
            )
        return VersionReading("dpkg", "broken", note=result.describe())

    def _snap_reading(self) -> VersionReading:
        if shutil.which(self.locations.snap) is None:
            return VersionReading("snap", "unavailable", note="snap is not installed here")
        result = self._run([self.locations.snap, "list", AGENT_PACKAGE])
        if result.outcome == "ok":
            version = parse_snap_list(result.stdout)
            if version:
                return VersionReading("snap", "found", version, location=AGENT_PACKAGE)
        if result.outcome == "nonzero" and "no matching snaps" in result.stderr:
            return VersionReading("snap", "absent", note="snap not installed")
        return VersionReading("snap", "broken", note=result.describe())

    def _agent_processes(self, binary_readings: dict[str, VersionReading]) -> list[AgentProcess]:
        import psutil  # imported here: `ssmdiag version` must stay light

        found: list[AgentProcess] = []
        attrs = ["pid", "name", "username", "uids", "cmdline", "cwd"]
        for proc in psutil.process_iter(attrs):
            name = proc.info.get("name") or ""
            if name != AGENT_PACKAGE or not _in_our_pid_namespace(int(proc.info["pid"])):
                continue
            pid = int(proc.info["pid"])
            uids = proc.info.get("uids")
            # ssm-cli asks `ps -o user=`, the effective user (diagnosticsutil_unix.go:88).
            euid: Optional[int] = int(uids.effective) if uids is not None else None
            user = proc.info.get("username")
            if euid is not None:
                user = _user_name(euid)
            exe, replaced = self._process_exe(pid)
            reading = binary_readings.get(exe or "")
            if reading is None or replaced or reading.state != "found":
                # Ask the image the process actually runs: /proc/PID/exe still opens a
                # deleted or replaced binary, so this is the running version.
                reading = self._binary_reading(f"/proc/{pid}/exe", source="process")
            found.append(
                AgentProcess(
                    pid,
                    exe,
                    user,
                    replaced,
                    VersionReading(
                        "process", reading.state, reading.version_text, reading.note, str(pid)
                    ),
                    uid=euid,
                    launch_path=launch_path(proc.info.get("cmdline"), proc.info.get("cwd")),
                )
            )
        return found

    @staticmethod
    def _process_exe(pid: int) -> tuple[Optional[str], bool]:
        try:
            target = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return None, False  # another user's process without CAP_SYS_PTRACE
        if target.endswith(" (deleted)"):
            return target[: -len(" (deleted)")], True
        return target, False

    def discover_agent(self) -> AgentDiscovery:
        readings: list[VersionReading] = []
        by_path: dict[str, VersionReading] = {}
        for path in self.agent_paths().binary_candidates:
            if os.path.lexists(path):
                reading = self._binary_reading(path)
                readings.append(reading)
                by_path[os.path.realpath(path)] = reading
            elif self.config.agent_binary:
                readings.append(
                    VersionReading(
                        "binary", "absent", note="configured path does not exist", location=path
                    )
                )
        readings += [self._rpm_reading(), self._dpkg_reading(), self._snap_reading()]
        processes = self._agent_processes(by_path)
        binary = next(
            (r.location for r in readings if r.source == "binary" and r.state != "absent"), None
        )
        started_as = next((p.launch_path for p in processes if p.launch_path), None)
        if not self.config.agent_binary and started_as and os.path.exists(started_as):
            # The running agent's own path decides which directory (and so which config
            # file) it uses, even when /usr/bin also holds an agent.
            binary = started_as
        if binary is None and processes and processes[0].exe:
            binary = processes[0].exe
        return AgentDiscovery(tuple(readings), tuple(processes), binary)

    def agent_service(self) -> ServiceState:
        if os.path.isdir(self.locations.systemd_run_dir):
            return self._systemd_state()
        upstart = self._run([self.locations.initctl, "status", UPSTART_JOB])
        if upstart.ran:
            text = (upstart.stdout or upstart.stderr).strip()
            exists = upstart.outcome == "ok"
            return ServiceState(
                "upstart",
                UPSTART_JOB,
                exists,
                "start/running" in text,
                enabled=exists or None,
                state_text=text.splitlines()[0] if text else "",
            )
        return ServiceState(
            None,
            None,
            False,
            False,
            None,
            "no service manager",
            note="systemd is not PID 1 and upstart's initctl is not available",
        )

    def _systemd_available(self) -> bool:
        return os.path.isdir(self.locations.systemd_run_dir)

    def _agent_unit(
        self, properties: tuple[str, ...]
    ) -> tuple[process.ProcResult, Optional[dict[str, str]]]:
        """`systemctl show` of the agent's unit (deb/rpm or snap): the loaded one, the
        active one when both are; None when neither is loaded or systemctl did not answer."""
        wanted = ["Id", "LoadState", "ActiveState"]
        wanted += [p for p in properties if p not in wanted]
        result = self._run(
            [self.locations.systemctl, "show", f"--property={','.join(wanted)}", *SYSTEMD_UNITS]
        )
        if not result.ran:
            return result, None
        loaded = [b for b in parse_systemctl_show(result.stdout) if b.get("LoadState") == "loaded"]
        if not loaded:
            return result, None
        return result, next((b for b in loaded if b.get("ActiveState") == "active"), loaded[0])

    def _systemd_state(self) -> ServiceState:
        result, unit = self._agent_unit(("SubState", "UnitFileState", "MainPID"))
        if not result.ran:
            return ServiceState(
                "systemd", None, False, False, None, "unknown", note=result.describe()
            )
        if unit is None:
            return ServiceState(
                "systemd",
                SYSTEMD_UNITS[0],
                False,
                False,
                None,
                "not-found",
                note=f"none of {', '.join(SYSTEMD_UNITS)} is loaded",
            )
        file_state = unit.get("UnitFileState", "")
        enabled: Optional[bool] = None
        if file_state:
            enabled = file_state in ("enabled", "enabled-runtime", "static", "alias", "generated")
        main_pid = unit.get("MainPID", "0").strip()
        # systemctl prints a number; anything else (a broken or fake systemctl) is "unknown".
        pid = int(main_pid) if main_pid.isascii() and main_pid.isdigit() else 0
        return ServiceState(
            "systemd",
            unit.get("Id") or SYSTEMD_UNITS[0],
            True,
            unit.get("ActiveState") == "active",
            enabled,
            f"{unit.get('ActiveState', '?')} ({unit.get('SubState', '?')}), "
            f"{file_state or 'unit file state unknown'}",
            main_pid=pid or None,
        )

    def agent_restarts(self) -> RestartHistory:
        if not self._systemd_available():
            service = self.agent_service()
            if service.manager == "upstart":
                return RestartHistory(
                    "upstart",
                    service.name,
                    "unsupported" if service.exists else "not_found",
                    running=service.active,
                    state_text=service.state_text,
                    note="upstart respawns the job (packaging/linux/amazon-ssm-agent.conf: "
                    "respawn) but keeps no restart count",
                )
            return RestartHistory(None, None, "no_manager", note=service.note)
        result, unit = self._agent_unit(RESTART_PROPERTIES)
        if not result.ran:
            return RestartHistory("systemd", None, "unknown", note=result.describe())
        if unit is None:
            return RestartHistory(
                "systemd",
                SYSTEMD_UNITS[0],
                "not_found",
                note=f"none of {', '.join(SYSTEMD_UNITS)} is loaded",
            )
        count = unit.get("NRestarts", "")
        started = unit.get("ExecMainStartTimestampMonotonic", "")
        age: Optional[float] = None
        if started.isdigit() and int(started) > 0:
            # Microseconds of CLOCK_MONOTONIC, the clock time.monotonic() reads on Linux.
            age = max(0.0, self._monotonic() - int(started) / 1e6)
        sub_state = unit.get("SubState", "")
        result_text = unit.get("Result", "")
        restart = unit.get("Restart", "")
        every = unit.get("RestartUSec", "")
        return RestartHistory(
            "systemd",
            unit.get("Id") or SYSTEMD_UNITS[0],
            "ok",
            running=unit.get("ActiveState") == "active",
            state_text=f"{unit.get('ActiveState', '?')} ({sub_state or '?'})",
            restarts=int(count) if count.isdigit() else None,
            restarts_since="since the unit was last started at boot or by hand",
            last_start_age_s=age,
            last_start_text=unit.get("ExecMainStartTimestamp", ""),
            result=result_text,
            last_exit=describe_main_exit(
                unit.get("ExecMainCode", ""), unit.get("ExecMainStatus", "")
            ),
            waiting_to_restart=sub_state == "auto-restart",
            gave_up=result_text == "start-limit-hit",
            # Restart=no and Restart=on-success leave a crashed agent down.
            restarts_on_failure=(restart not in ("no", "on-success")) if restart else None,
            recovery=f"Restart={restart}" + (f", after {every}" if every else "")
            if restart
            else "",
            note="" if count else "this systemd does not count restarts (NRestarts needs 235)",
        )

    def time_sync(self) -> TimeSync:
        if self._systemd_available():
            return self._systemd_time_sync()
        services = self._time_sync_processes()
        synchronized, source, reference, offset, note = self._clock_status(services, False)
        return TimeSync(
            None,
            services,
            synchronized=synchronized,
            source=source,
            reference=reference,
            offset_s=offset,
            note=note or "systemd is not PID 1: time-sync daemons were looked for as processes",
        )

    def _systemd_time_sync(self) -> TimeSync:
        result = self._run(
            [
                self.locations.systemctl,
                "show",
                "--property=Id,LoadState,ActiveState,SubState,UnitFileState",
                *TIME_SYNC_UNITS,
            ]
        )
        if not result.ran:
            return TimeSync("systemd", (), "unknown", note=f"systemctl: {result.describe()}")
        services: list[TimeService] = []
        for block in parse_systemctl_show(result.stdout):
            name = block.get("Id", "")
            if block.get("LoadState") != "loaded" or any(s.name == name for s in services):
                continue
            file_state = block.get("UnitFileState", "")
            services.append(
                TimeService(
                    name,
                    block.get("ActiveState") == "active",
                    file_state in ("enabled", "enabled-runtime", "static", "alias")
                    if file_state
                    else None,
                    f"{block.get('ActiveState', '?')} ({block.get('SubState', '?')}), "
                    f"{file_state or 'unit file state unknown'}",
                )
            )
        _, agent = self._agent_unit(("After",))
        after = tuple(agent.get("After", "").split()) if agent else ()
        ordered: Optional[bool] = None
        if agent is not None:
            ordered = TIME_SYNC_TARGET in after or any(u in after for u in TIME_SYNC_UNITS)
        synchronized, source, reference, offset, note = self._clock_status(tuple(services), True)
        return TimeSync(
            "systemd",
            tuple(services),
            synchronized=synchronized,
            source=source,
            reference=reference,
            offset_s=offset,
            agent_ordered=ordered,
            agent_after=after,
            agent_unit=(agent.get("Id") or SYSTEMD_UNITS[0]) if agent else "",
            note=note,
        )

    def _time_sync_processes(self) -> tuple[TimeService, ...]:
        import psutil

        found: list[TimeService] = []
        for proc in psutil.process_iter(["pid", "name"]):
            name = proc.info.get("name") or ""
            # comm is cut at 15 characters: systemd-timesyncd shows as systemd-timesyn.
            match = next((d for d in TIME_SYNC_PROCESSES if d[:15] == name[:15]), None)
            if match and not any(s.name == match for s in found):
                found.append(TimeService(match, True, None, f"running (pid {proc.info['pid']})"))
        return tuple(found)

    def _clock_status(
        self, services: tuple[TimeService, ...], systemd: bool
    ) -> tuple[Optional[bool], str, str, Optional[float], str]:
        """(synchronized, what said so, reference, offset, note): timedatectl (the kernel's
        synchronized flag, whichever daemon sets it), then chronyc when chrony runs."""
        synchronized: Optional[bool] = None
        source, notes = "", []
        if systemd:
            shown = self._run([self.locations.timedatectl, "show"])
            if shown.outcome == "ok" and "NTPSynchronized" in shown.stdout:
                value = parse_key_values(shown.stdout).get("NTPSynchronized", "")
                if value in ("yes", "no"):
                    synchronized, source = value == "yes", "timedatectl show"
            if synchronized is None:
                status = self._run([self.locations.timedatectl, "status"])
                answer = parse_timedatectl_status(status.stdout) if status.ran else None
                if answer is not None:
                    synchronized, source = answer, "timedatectl status"
                else:
                    notes.append(f"timedatectl: {shown.describe()}")
        reference, offset = "", None
        if any(s.active and s.name.startswith("chrony") for s in services):
            tracked = self._run([self.locations.chronyc, "tracking"])
            tracking = parse_chronyc_tracking(tracked.stdout) if tracked.ran else None
            if tracking is not None:
                reference, offset = tracking.reference, tracking.offset_s
                if synchronized is None:
                    synchronized = tracking.synchronized
                    source = f"chronyc tracking (Leap status: {tracking.leap_status})"
            else:
                notes.append(f"chronyc tracking: {tracked.describe()}")
        return synchronized, source, reference, offset, "; ".join(notes)

    # -- files and accounts -----------------------------------------------------------------
    def read_file(self, path: str) -> FileRead:
        return read_text_file(path)

    def file_exists(self, path: str) -> bool:
        return os.path.exists(path)

    def stat_path(self, path: str) -> PathStat:
        return self._stat(path)

    def agent_environment(self) -> AgentEnvironment:
        problem = None
        for pid in self._agent_pids():
            try:
                with open(f"/proc/{pid}/environ", "rb") as handle:
                    values, too_big = read_proxy_environ(handle)
            except PermissionError:
                problem = (
                    f"/proc/{pid}/environ: permission denied (reading another "
                    "user's process environment needs root or CAP_SYS_PTRACE)"
                )
                continue
            except OSError as exc:
                problem = f"/proc/{pid}/environ: {exc.strerror or exc}"
                continue
            return AgentEnvironment(values, f"/proc/{pid}/environ", too_big)
        unit = self._unit_environment()
        if unit is not None:
            return AgentEnvironment(_proxy_vars(unit), "systemd unit Environment=", problem)
        return AgentEnvironment({}, "none", problem)

    def _agent_pids(self) -> list[int]:
        import psutil

        return [
            int(p.info["pid"])
            for p in psutil.process_iter(["pid", "name"])
            if p.info.get("name") == AGENT_PACKAGE and _in_our_pid_namespace(int(p.info["pid"]))
        ]

    def _unit_environment(self) -> Optional[dict[str, str]]:
        if not os.path.isdir(self.locations.systemd_run_dir):
            return None
        result = self._run(
            [self.locations.systemctl, "show", "--property=Environment", *SYSTEMD_UNITS]
        )
        if result.outcome != "ok":
            return None
        values: dict[str, str] = {}
        for block in parse_systemctl_show(result.stdout):
            for item in split_unit_environment(block.get("Environment", "")):
                key, _, value = item.partition("=")
                values.setdefault(key, value)
        return values

    def lookup_user(self, name: str) -> Optional[UserAccount]:
        # getpwnam goes through NSS, so LDAP/SSSD accounts count like local ones.
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        gids = os.getgrouplist(name, entry.pw_gid)
        groups = []
        for gid in gids:
            try:
                groups.append(grp.getgrgid(gid).gr_name)
            except KeyError:
                groups.append(str(gid))
        return UserAccount(
            name, entry.pw_uid, tuple(groups), home=entry.pw_dir, shell=entry.pw_shell
        )

    def sudo_rule_path(self) -> Optional[str]:
        return SUDO_RULE

    def disk_usage(self, path: str) -> DiskUsage:
        usage = unix_disk_usage(path)
        if usage.outcome != "ok" or not usage.device.isdigit():
            return usage
        read = self.read_file(self.locations.mountinfo)
        if read.outcome != "ok":
            return replace(usage, read_only=None)
        device = int(usage.device)
        entry = mount_for(
            parse_mountinfo(read.text), f"{os.major(device)}:{os.minor(device)}", usage.measured
        )
        if entry is None:
            return replace(usage, read_only=None)
        # The superblock's options, not the mount's: under ssmdiag's own sandbox
        # (ProtectSystem=strict) every mount looks read-only, the filesystem is not.
        return replace(
            usage,
            mount_point=entry.mount_point,
            filesystem=entry.fstype
            if entry.source in ("", "none", entry.fstype)
            else f"{entry.fstype}, {entry.source}",
            read_only="ro" in entry.super_options,
        )
