"""The OS boundary: one interface every platform implements, and the plain data it returns.

Checks ask a `Platform` for facts; they never touch files, processes, the
registry or subprocesses themselves. Platforms return facts, not verdicts:
judging them is the checks' job, so every OS is judged by the same rules.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Optional

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
