"""Linux: the agent from rpm, deb or snap, run by systemd (or upstart on old distributions)."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import sys
from dataclasses import dataclass
from typing import Optional

from ssmdiag.agent import reading_from_version_run
from ssmdiag.config import Config
from ssmdiag.platform import process
from ssmdiag.platform.base import (
    AgentDiscovery,
    AgentEnvironment,
    AgentPaths,
    AgentProcess,
    FileRead,
    OsInfo,
    Platform,
    ServiceState,
    UserAccount,
    VersionReading,
    read_text_file,
)

# Only ever imported on Linux; tells mypy --platform win32 not to check what follows.
assert sys.platform != "win32"

AGENT_PACKAGE = "amazon-ssm-agent"
AGENT_BINARY = "/usr/bin/amazon-ssm-agent"
SNAP_BINARY = "/snap/amazon-ssm-agent/current/amazon-ssm-agent"
AGENT_CONFIG = "/etc/amazon/ssm/amazon-ssm-agent.json"
AGENT_DATA_DIR = "/var/lib/amazon/ssm"
SYSTEMD_UNITS = ("amazon-ssm-agent.service", "snap.amazon-ssm-agent.amazon-ssm-agent.service")
UPSTART_JOB = "amazon-ssm-agent"
SUDO_RULE = "/etc/sudoers.d/ssm-agent-users"


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


_PROXY_VARS = {"https_proxy", "http_proxy", "no_proxy"}


def _proxy_vars(values: dict[str, str]) -> dict[str, str]:
    # Keep only what decides the proxy: the rest of an environment may hold secrets.
    return {k: v for k, v in values.items() if k.lower() in _PROXY_VARS}


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


class LinuxPlatform(Platform):
    family = "linux"

    def __init__(self, config: Config, locations: Optional[LinuxLocations] = None) -> None:
        super().__init__(config)
        self.locations = locations or LinuxLocations()

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
        if cfg.agent_config_file:
            config_file, source = cfg.agent_config_file, "ssmdiag-config"
        else:
            config_file, source = AGENT_CONFIG, "default"
            # A relocated agent (binary beside its workers) reads <dir>/configuration/.
            if binary_path:
                directory = os.path.dirname(binary_path)
                workers = ("ssm-agent-worker", "ssm-session-worker")
                if directory != "/usr/bin" and all(
                    os.path.exists(os.path.join(directory, w)) for w in workers
                ):
                    config_file = os.path.join(directory, "configuration", "amazon-ssm-agent.json")
                    source = "relocated"
        data_dir = cfg.agent_data_dir or AGENT_DATA_DIR
        return AgentPaths(
            binaries,
            config_file,
            source,
            data_dir,
            runtime_identity_file=os.path.join(data_dir, "runtimeconfig", "identity_config.json"),
            registration_file=os.path.join(data_dir, "registration"),
            dhmc_credentials_file=os.path.join(data_dir, "credentials"),
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
        for proc in psutil.process_iter(["pid", "name", "username"]):
            name = proc.info.get("name") or ""
            if name != AGENT_PACKAGE:
                continue
            pid = int(proc.info["pid"])
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
                    proc.info.get("username"),
                    replaced,
                    VersionReading(
                        "process", reading.state, reading.version_text, reading.note, str(pid)
                    ),
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

    def _systemd_state(self) -> ServiceState:
        props = "Id,LoadState,ActiveState,SubState,UnitFileState,MainPID"
        result = self._run(
            [self.locations.systemctl, "show", f"--property={props}", *SYSTEMD_UNITS]
        )
        if not result.ran:
            return ServiceState(
                "systemd", None, False, False, None, "unknown", note=result.describe()
            )
        blocks = parse_systemctl_show(result.stdout)
        loaded = [b for b in blocks if b.get("LoadState") == "loaded"]
        if not loaded:
            return ServiceState(
                "systemd",
                SYSTEMD_UNITS[0],
                False,
                False,
                None,
                "not-found",
                note=f"none of {', '.join(SYSTEMD_UNITS)} is loaded",
            )
        unit = next((b for b in loaded if b.get("ActiveState") == "active"), loaded[0])
        file_state = unit.get("UnitFileState", "")
        enabled: Optional[bool] = None
        if file_state:
            enabled = file_state in ("enabled", "enabled-runtime", "static", "alias", "generated")
        pid = int(unit.get("MainPID", "0") or 0)
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

    # -- files and accounts -----------------------------------------------------------------
    def read_file(self, path: str) -> FileRead:
        return read_text_file(path)

    def file_exists(self, path: str) -> bool:
        return os.path.exists(path)

    def agent_environment(self) -> AgentEnvironment:
        problem = None
        for pid in self._agent_pids():
            try:
                with open(f"/proc/{pid}/environ", "rb") as handle:
                    raw = handle.read(256 * 1024)
            except PermissionError:
                problem = (
                    f"/proc/{pid}/environ: permission denied (reading another "
                    "user's process environment needs root or CAP_SYS_PTRACE)"
                )
                continue
            except OSError as exc:
                problem = f"/proc/{pid}/environ: {exc.strerror or exc}"
                continue
            return AgentEnvironment(_proxy_vars(parse_environ(raw)), f"/proc/{pid}/environ")
        unit = self._unit_environment()
        if unit is not None:
            return AgentEnvironment(_proxy_vars(unit), "systemd unit Environment=", problem)
        return AgentEnvironment({}, "none", problem)

    def _agent_pids(self) -> list[int]:
        import psutil

        return [
            int(p.info["pid"])
            for p in psutil.process_iter(["pid", "name"])
            if p.info.get("name") == AGENT_PACKAGE
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
