"""The OS boundary: one interface every platform implements, and the plain data it returns.

Checks ask a `Platform` for facts; they never touch files, processes, the
registry or subprocesses themselves. Platforms return facts, not verdicts:
judging them is the checks' job, so every OS is judged by the same rules.
"""

from __future__ import annotations

import abc
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ssmdiag import safeio
from ssmdiag.config import Config


@dataclass(frozen=True)
class OsInfo:
    family: str  # linux | macos | windows
    name: str  # "Amazon Linux 2023", "Windows Server 2022 Datacenter"
    version: str
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionReading:
    """What one source (binary, package database, running process) says about the agent."""

    source: str  # binary | rpm | dpkg | snap | process | registry | pkgutil
    # found: the source has the agent (version_text set) | absent: it does not |
    # unavailable: the source cannot be asked here (no rpm on Debian) |
    # broken: the source answered badly (hung, garbage, denied)
    state: str
    version_text: Optional[str] = None
    note: str = ""
    location: Optional[str] = None  # binary path, package name, pid


@dataclass(frozen=True)
class AgentProcess:
    pid: int
    exe: Optional[str]
    # As the OS names it: "root", "nobody", "LocalSystem", "NT AUTHORITY\\SYSTEM".
    user: Optional[str]
    exe_replaced: bool  # the binary it runs was deleted or replaced since it started
    version: VersionReading
    # Effective uid on Linux and macOS (what `ps -o user=` shows, as ssm-cli asks); None
    # where unknown or on Windows.
    uid: Optional[int] = None
    # The path the agent was started as, made absolute against its working directory:
    # filepath.Abs(os.Args[0]), from which the agent derives its own directory
    # (agent/appconfig/constants_unix.go:149). None when it cannot be read.
    launch_path: Optional[str] = None


@dataclass(frozen=True)
class AgentDiscovery:
    readings: tuple[VersionReading, ...]
    processes: tuple[AgentProcess, ...]
    binary_path: Optional[str]  # the agent binary found on disk, if any


@dataclass(frozen=True)
class ServiceState:
    manager: Optional[str]  # systemd | upstart | launchd | scm | None when there is none
    name: Optional[str]  # unit, job, label or service name that was found
    exists: bool
    active: bool
    enabled: Optional[bool]  # starts at boot; None when unknown
    state_text: str  # the manager's own words, e.g. "active (running)"
    main_pid: Optional[int] = None
    note: str = ""


# Every platform reads files through ssmdiag.safeio: bounded, regular files only.
FileRead = safeio.FileRead

MAX_FILE_BYTES = 1024 * 1024


def read_text_file(path: str) -> FileRead:
    """The real file reader every platform uses: at most 1 MiB (said when cut), regular
    files only (a FIFO or a device is refused, never read), UTF-8 with replacement."""
    return safeio.read_text(path, MAX_FILE_BYTES)


@dataclass(frozen=True)
class PathStat:
    """Ownership and mode of one path, following symlinks as Go's os.Stat does."""

    path: str
    outcome: str  # ok | missing | denied | error | unsupported
    uid: Optional[int] = None
    gid: Optional[int] = None
    mode: int = 0  # permission bits only (Go's FileMode.Perm(): st_mode & 0o777)
    kind: str = ""  # file | dir | other
    message: str = ""


@dataclass(frozen=True)
class UserAccount:
    name: str
    uid: Optional[int]  # None on Windows (SID instead)
    groups: tuple[str, ...]
    home: Optional[str] = None
    shell: Optional[str] = None
    enabled: Optional[bool] = None
    sid: Optional[str] = None
    is_admin: Optional[bool] = None  # member of Administrators (Windows) / sudo rule (Unix)
    in_domain_admins: Optional[bool] = None  # domain controllers only


@dataclass(frozen=True)
class DomainInfo:
    """Windows only: the machine's domain role, and whether the agent treats it as a DC."""

    role: str  # standalone_workstation | member_workstation | standalone_server |
    # member_server | backup_domain_controller | primary_domain_controller | unknown
    is_domain_controller: bool  # as the agent decides: the NTDS service is running
    ntds_state: Optional[str] = None


@dataclass(frozen=True)
class AgentEnvironment:
    values: dict[str, str]  # only proxy-related variables are kept
    source: str  # e.g. "/proc/1234/environ", "systemd unit Environment=", "none"
    problem: Optional[str] = None  # why the preferred source could not be read


@dataclass(frozen=True)
class AgentPaths:
    binary_candidates: tuple[str, ...]
    config_file: str
    config_file_source: str  # default | relocated | ssmdiag-config
    data_dir: str
    runtime_identity_file: str = ""
    registration_file: str = ""
    dhmc_credentials_file: str = ""
    # Why the agent reads config_file, in one sentence a user can act on, e.g.
    # "relocated layout in /opt/x ignored: /opt/x/ssm-agent-worker is writable by group
    # (mode 0775) ...". Empty only where the platform has nothing to say.
    config_file_note: str = ""
    # A relocated <dir>/configuration/amazon-ssm-agent.json that exists but that the agent
    # ignores (its layout or the file fails the agent's ownership/mode rules): someone meant
    # it to apply, and it does not. Empty when there is none.
    ignored_config_file: str = ""
    # What makes the agent use a relocated layout it ignores (a command), else empty.
    config_file_fix: str = ""
    # Where the agent writes its logs (amazon-ssm-agent.log, errors.log): DefaultLogDir,
    # agent/log/logger/log_unix.go:27, log_darwin.go:32, log_windows.go:30.
    log_dir: str = ""


@dataclass(frozen=True)
class DiskUsage:
    """Space and inodes of the filesystem holding one path.

    A path that does not exist (yet) is measured on its nearest existing parent: that is
    where the agent's files would land when it creates it.
    """

    path: str  # the path asked about
    outcome: str  # ok | denied | error | unsupported
    measured: str = ""  # the path actually measured: `path` or its nearest existing parent
    mount_point: str = ""  # where that filesystem starts ("/var", "C:\\")
    filesystem: str = ""  # what it is, e.g. "xfs, /dev/nvme0n1p1", "tmpfs", "NTFS"
    device: str = ""  # identifies the filesystem, to group paths that share one
    total_bytes: Optional[int] = None
    free_bytes: Optional[int] = None  # free to root / LocalSystem, as the agent runs
    available_bytes: Optional[int] = None  # free to other users (df's "Avail")
    inodes_total: Optional[int] = None  # None where inodes do not apply (Windows, btrfs)
    inodes_free: Optional[int] = None
    read_only: Optional[bool] = None  # the filesystem itself is read-only (not a sandbox view)
    message: str = ""


@dataclass(frozen=True)
class RestartHistory:
    """What the service manager says about the agent's restarts (facts, no verdict)."""

    manager: Optional[str]  # systemd | upstart | launchd | scm | None
    name: Optional[str]  # unit, job, label or service name
    # ok | not_found (no agent service) | no_manager | unsupported (the manager keeps no
    # history, e.g. upstart) | unknown (the manager could not be asked: `note` says why)
    outcome: str
    running: Optional[bool] = None
    state_text: str = ""  # the manager's own words, e.g. "activating (auto-restart)"
    restarts: Optional[int] = None  # automatic restarts the manager counted; None: unknown
    restarts_since: str = ""  # what the count covers, e.g. "since the unit was started"
    last_start_age_s: Optional[float] = None  # seconds since its current/last process began
    last_start_text: str = ""  # the manager's own timestamp text
    result: str = ""  # systemd's Result= (success, exit-code, signal, start-limit-hit, ...)
    last_exit: str = ""  # how the last process ended, e.g. "exit status 2", "signal SEGV"
    waiting_to_restart: bool = False  # it exited and the manager will start it again
    gave_up: bool = False  # the manager stopped restarting it (start limit hit)
    # Does the manager restart the agent after a crash? None: unknown.
    restarts_on_failure: Optional[bool] = None
    recovery: str = ""  # how, in the manager's words (Restart=always every 1min 30s, ...)
    note: str = ""


@dataclass(frozen=True)
class TimeService:
    name: str  # chronyd.service, systemd-timesyncd.service, W32Time, "network time"
    active: bool
    enabled: Optional[bool] = None
    state_text: str = ""


@dataclass(frozen=True)
class TimeSync:
    """The node's time-sync service and what it says (facts, no verdict)."""

    manager: Optional[str]  # systemd | scm | launchd | None (processes only)
    services: tuple[TimeService, ...]  # the time-sync services installed or running
    outcome: str = "ok"  # ok | unknown (the manager could not be asked: `note` says why)
    # Whether the OS says the clock is synchronized now; None: it cannot tell or say.
    synchronized: Optional[bool] = None
    source: str = ""  # what said so: "timedatectl show", "chronyc tracking", "w32tm ..."
    reference: str = ""  # the server it follows, e.g. "169.254.169.123"
    offset_s: Optional[float] = None  # its last offset from that reference (+: fast)
    # The agent's unit is ordered after time-sync.target or a sync service (systemd
    # only); None: not applicable or unknown.
    agent_ordered: Optional[bool] = None
    agent_after: tuple[str, ...] = ()
    agent_unit: str = ""
    note: str = ""


class Platform(abc.ABC):
    """One implementation per OS family; chosen once at start-up by `ssmdiag.platform.detect`."""

    family: str = "unknown"

    def __init__(self, config: Config) -> None:
        self.config = config

    @abc.abstractmethod
    def hostname(self) -> str: ...

    @abc.abstractmethod
    def os_info(self) -> OsInfo: ...

    @abc.abstractmethod
    def agent_paths(self, binary_path: Optional[str] = None) -> AgentPaths:
        """Where the agent's files are, honouring ssmdiag's config and relocated installs."""

    @abc.abstractmethod
    def discover_agent(self) -> AgentDiscovery: ...

    @abc.abstractmethod
    def agent_service(self) -> ServiceState: ...

    @abc.abstractmethod
    def read_file(self, path: str) -> FileRead: ...

    def read_file_tail(self, path: str, max_bytes: int) -> FileRead:
        """The last max_bytes of a regular file (logs): `truncated` when more came before."""
        return safeio.read_tail(path, max_bytes)

    def list_dir(self, path: str) -> list[tuple[str, float, int]]:
        """(name, mtime, size) of the regular files in a directory; empty when unreadable."""
        return safeio.list_files(path)

    @abc.abstractmethod
    def file_exists(self, path: str) -> bool:
        """Existence only: used for files whose contents ssmdiag must never read (credentials)."""

    def stat_path(self, path: str) -> PathStat:
        """Owner, group and mode of a path, following symlinks. Linux overrides it: the
        agent's relocation rule is about ownership and mode (constants_unix.go:191-251)."""
        return PathStat(path, "unsupported", message="file ownership is not read on this platform")

    @abc.abstractmethod
    def agent_environment(self) -> AgentEnvironment:
        """The environment the running agent sees (its proxy settings live there)."""

    @abc.abstractmethod
    def lookup_user(self, name: str) -> Optional[UserAccount]:
        """The account as the OS's name service sees it (NSS, directory service, SAM)."""

    def domain_info(self) -> Optional[DomainInfo]:
        """Windows domain role; None on systems without domains (Linux, macOS)."""
        return None

    @abc.abstractmethod
    def sudo_rule_path(self) -> Optional[str]:
        """Where the agent writes ssm-user's sudo rule; None where there is none (Windows)."""

    @abc.abstractmethod
    def disk_usage(self, path: str) -> DiskUsage:
        """Free space and inodes of the filesystem holding `path` (or its nearest existing
        parent when `path` does not exist)."""

    @abc.abstractmethod
    def agent_restarts(self) -> RestartHistory:
        """How often the service manager restarted the agent, and what it does on a crash."""

    @abc.abstractmethod
    def time_sync(self) -> TimeSync:
        """The time-sync service, whether the clock is synchronized, and (systemd) whether
        the agent starts after it."""


StatFn = Callable[[str], Any]  # os.stat: anything with st_dev
StatvfsFn = Callable[[str], Any]  # os.statvfs: f_frsize, f_blocks, f_bfree, f_bavail, ...


def _nearest_existing(path: str, stat_fn: StatFn) -> tuple[Optional[str], str]:
    """The path itself or its nearest parent that exists; a note when a parent had to do."""
    current = os.path.normpath(path)
    note = ""
    while True:
        try:
            stat_fn(current)
            return current, note
        except (FileNotFoundError, NotADirectoryError):
            pass
        except PermissionError:
            note = f"{current} cannot be looked into (permission denied); its parent was measured"
        except OSError as exc:
            return None, f"{current}: {exc.strerror or exc}"
        parent = os.path.dirname(current)
        if parent == current:
            return None, f"no part of {path} exists"
        current = parent


def unix_disk_usage(
    path: str,
    *,
    stat_fn: Optional[StatFn] = None,
    statvfs_fn: Optional[StatvfsFn] = None,
    realpath_fn: Optional[Callable[[str], str]] = None,
) -> DiskUsage:
    """statvfs(2) of `path` (or its nearest existing parent), on Linux and macOS.

    The mount point is the highest directory above the measured path on the same device
    (st_dev), after resolving symlinks. `free_bytes` counts the blocks reserved for root
    (ext4 keeps 5%): the agent runs as root and may use them. `read_only` is statvfs's
    ST_RDONLY: the mount as this process sees it (callers that may run sandboxed, where
    every mount looks read-only, replace it with the filesystem's own state).
    """
    if sys.platform == "win32":
        return DiskUsage(path, "unsupported", message="statvfs does not exist on Windows")
    stat_fn = stat_fn or os.stat
    statvfs_fn = statvfs_fn or os.statvfs
    realpath_fn = realpath_fn or os.path.realpath
    measured, note = _nearest_existing(path, stat_fn)
    if measured is None:
        return DiskUsage(path, "error", message=note)
    measured = realpath_fn(measured)
    try:
        info = statvfs_fn(measured)
        device = stat_fn(measured).st_dev
    except PermissionError:
        return DiskUsage(path, "denied", measured, message=f"{measured}: permission denied")
    except OSError as exc:
        return DiskUsage(path, "error", measured, message=f"{measured}: {exc.strerror or exc}")
    top = measured
    while True:
        parent = os.path.dirname(top)
        if parent == top:
            break
        try:
            if stat_fn(parent).st_dev != device:
                break
        except OSError:
            break
        top = parent
    unit = info.f_frsize or info.f_bsize
    return DiskUsage(
        path,
        "ok",
        measured,
        mount_point=top,
        device=str(device),
        total_bytes=info.f_blocks * unit,
        free_bytes=info.f_bfree * unit,
        available_bytes=info.f_bavail * unit,
        # Filesystems without a fixed inode table (btrfs, some FUSE) report 0.
        inodes_total=info.f_files or None,
        inodes_free=info.f_ffree if info.f_files else None,
        read_only=bool(info.f_flag & os.ST_RDONLY),
        message=note,
    )
