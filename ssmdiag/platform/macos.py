"""macOS: the agent from its .pkg (receipt com.amazon.aws.ssm), run by launchd.

Every OS interaction goes through three thin adapters given to the constructor: a
subprocess runner with the signature of `process.run`, a file reader and an
existence test. The defaults are the real ones; tests pass fakes fed with captured
`sw_vers`, `pkgutil`, `launchctl`, `scutil`, `dscl` and `id` output. Parsing lives in
small pure functions below. Nothing here imports a macOS-only module, so this module
imports (and is tested) on Linux.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from typing import Callable, Optional

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
    Platform,
    RestartHistory,
    ServiceState,
    StatFn,
    StatvfsFn,
    TimeService,
    TimeSync,
    UserAccount,
    VersionReading,
    read_text_file,
    unix_disk_usage,
)
from ssmdiag.platform.process import ProcResult

Runner = Callable[[list[str], float], ProcResult]
FileReader = Callable[[str], FileRead]
ExistsTest = Callable[[str], bool]

PROGRAM_DIR = "/opt/aws/ssm"
AGENT_BINARY = "/opt/aws/ssm/bin/amazon-ssm-agent"
AGENT_CONFIG = "/opt/aws/ssm/amazon-ssm-agent.json"
AGENT_DATA_DIR = "/opt/aws/ssm/data"  # DefaultDataStorePath, agent/appconfig/constants_darwin.go:55
AGENT_LOG_DIR = "/var/log/amazon/ssm"  # DefaultLogDir, agent/log/logger/log_darwin.go:32
# appconfig.RuntimeConfigFolderPath on darwin is DefaultProgramFolder + "runtimeconfig":
# beside data/, not inside it as on Linux.
RUNTIME_IDENTITY = "/opt/aws/ssm/runtimeconfig/identity_config.json"
PACKAGE_ID = "com.amazon.aws.ssm"
LAUNCHD_LABEL = "com.amazon.aws.ssm"
LAUNCHD_TARGET = f"system/{LAUNCHD_LABEL}"
LAUNCHD_PLIST = f"/Library/LaunchDaemons/{LAUNCHD_LABEL}.plist"
SUDO_RULE = "/etc/sudoers.d/ssm-agent-users"

# Absolute paths: ssmdiag may run under sudo or launchd with a minimal PATH.
SW_VERS = "/usr/bin/sw_vers"
UNAME = "/usr/bin/uname"
PKGUTIL = "/usr/sbin/pkgutil"
LAUNCHCTL = "/bin/launchctl"
SCUTIL = "/usr/sbin/scutil"
DSCL = "/usr/bin/dscl"
ID = "/usr/bin/id"
SYSTEMSETUP = "/usr/sbin/systemsetup"

SCUTIL_SOURCE = "scutil --proxy"

# ProductVersion's major number to the release's marketing name (details only).
CODENAMES = {
    "11": "Big Sur",
    "12": "Monterey",
    "13": "Ventura",
    "14": "Sonoma",
    "15": "Sequoia",
    "26": "Tahoe",
}


class DirectoryServiceError(RuntimeError):
    """dscl could not say whether an account exists (not run, timed out, unexpected error)."""


# -- pure parsers ---------------------------------------------------------------------------
def parse_sw_vers(text: str) -> dict[str, str]:
    """`sw_vers`: `ProductName:<tabs>macOS`, `ProductVersion:<tabs>14.4.1`, `BuildVersion:...`
    (and `ProductVersionExtra: (a)` with a Rapid Security Response)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if sep and key and value and " " not in key:
            values[key] = value
    return values


def parse_pkgutil_info(text: str) -> dict[str, str]:
    """`pkgutil --pkg-info ID`: `package-id: ...`, `version: ...`, `volume: /`,
    `location: /`, `install-time: <epoch seconds>`."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key and " " not in key:
            values[key] = value.strip()
    return values


def parse_launchctl_print(text: str) -> dict[str, str]:
    """The service's own `key = value` lines of `launchctl print system/LABEL`.

    The output is one `system/LABEL = {` block holding `key = value` lines and nested
    `key = {` ... `}` blocks (arguments, environment, properties of other things);
    only the outer block's own lines are kept, so `state` is the job's state.
    """
    values: dict[str, str] = {}
    depth = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line == "}":
            depth = max(0, depth - 1)
            continue
        if line.endswith("{"):
            depth += 1
            continue
        if depth == 1:
            key, sep, value = line.partition(" = ")
            if sep and key:
                values[key.strip()] = value.strip()
    return values


def _scutil_block(lines: list[str], start: int, kind: str) -> tuple[object, int]:
    """Parse from `start` to the matching `}`; returns (dict or list, index after it)."""
    mapping: dict[str, object] = {}
    items: list[object] = []
    index = start
    while index < len(lines):
        line = lines[index].strip()
        index += 1
        if not line:
            continue
        if line == "}":
            break
        key, sep, value = line.partition(" : ")
        if not sep:
            continue  # garbage: skipped, never fatal
        key, value = key.strip(), value.strip()
        child: object = value
        if value in ("<array> {", "<dictionary> {"):
            child, index = _scutil_block(lines, index, value.split(">")[0][1:])
        if kind == "array":
            items.append(child)
        else:
            mapping[key] = child
    return (items if kind == "array" else mapping), index


def parse_scutil_dictionary(text: str) -> Optional[dict[str, object]]:
    """scutil's printout of a CFDictionary: `<dictionary> {`, `  Key : value`,
    `  Key : <array> {` with `0 : item` lines, nested `<dictionary> {`, each closed by `}`.
    None when the text is not such a printout."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip() == "<dictionary> {":
            parsed, _ = _scutil_block(lines, index + 1, "dictionary")
            return parsed if isinstance(parsed, dict) else None
    return None


def _proxy_address(settings: dict[str, object], prefix: str) -> Optional[str]:
    if str(settings.get(f"{prefix}Enable", "0")).strip() != "1":
        return None
    host = settings.get(f"{prefix}Proxy")
    if not isinstance(host, str) or not host:
        return None
    port = settings.get(f"{prefix}Port")
    # As the agent builds it (proxyconfig.SetProxyConfig on darwin): host + ":" + port.
    return f"{host}:{port}" if isinstance(port, str) and port else host


def parse_scutil_proxy(text: str) -> Optional[dict[str, str]]:
    """`scutil --proxy` to the proxy variables the agent sets from it at start-up.

    https_proxy from HTTPSEnable/HTTPSProxy/HTTPSPort, http_proxy from HTTPEnable/
    HTTPProxy/HTTPPort, no_proxy from ExceptionsList joined with commas (as the agent
    does; `*.local` is written `.local`, the same rule for Go's no_proxy). Entries keep
    their macOS spelling: `169.254/16` is not a CIDR to Go, so it does not exempt
    169.254.169.254. Only the top-level (global) settings count, not `__SCOPED__`.
    None when the output is not scutil's dictionary printout.
    """
    settings = parse_scutil_dictionary(text)
    if settings is None:
        return None
    values: dict[str, str] = {}
    https = _proxy_address(settings, "HTTPS")
    if https:
        values["https_proxy"] = https
    http = _proxy_address(settings, "HTTP")
    if http:
        values["http_proxy"] = http
    exceptions = settings.get("ExceptionsList")
    if isinstance(exceptions, list):
        entries = [
            ("." + item[2:]) if item.startswith("*.") else item
            for item in (str(e).strip() for e in exceptions if isinstance(e, str))
            if item
        ]
        if entries:
            values["no_proxy"] = ",".join(entries)
    return values


def parse_dscl_read(text: str) -> dict[str, list[str]]:
    """`dscl . -read /Users/NAME ATTR...`: `Attr: v1 v2` lines, or `Attr:` followed by
    one ` value` line per value when a value holds spaces. Native attributes carry a
    `dsAttrTypeNative:` prefix (one more colon), so a key ends at the last `: `."""
    values: dict[str, list[str]] = {}
    current: Optional[str] = None
    for raw in text.splitlines():
        if not raw.strip():
            continue
        if raw[0] in " \t":
            if current is not None:
                values[current].append(raw.strip())
            continue
        if raw.startswith("No such key:"):
            current = None
            continue
        if raw.rstrip().endswith(":") and ": " not in raw.rstrip():
            current = raw.rstrip()[:-1]
            values[current] = []
            continue
        key, sep, value = raw.rpartition(": ")
        if not sep:
            current = None
            continue
        current = key
        values[key] = value.split()
    return values


def parse_network_time(text: str) -> Optional[bool]:
    """`systemsetup -getusingnetworktime`: "Network Time: On" / "Network Time: Off". None
    for anything else (without root it prints "You need administrator access ...")."""
    for line in text.splitlines():
        key, found, value = line.partition(":")
        if found and key.strip().lower() == "network time":
            answer = value.strip().lower()
            if answer in ("on", "off"):
                return answer == "on"
    return None


def _first(values: dict[str, list[str]], key: str) -> Optional[str]:
    found = values.get(key)
    return found[0] if found else None


class MacPlatform(Platform):
    family = "macos"

    def __init__(
        self,
        config: Config,
        runner: Optional[Runner] = None,
        *,
        read_file_fn: Optional[FileReader] = None,
        exists_fn: Optional[ExistsTest] = None,
        stat_fn: Optional[StatFn] = None,
        statvfs_fn: Optional[StatvfsFn] = None,
    ) -> None:
        super().__init__(config)
        self._runner: Runner = runner if runner is not None else process.run
        self._read_file: FileReader = read_file_fn if read_file_fn is not None else read_text_file
        # lexists: a dangling symlink at the binary path is still "something installed".
        self._exists: ExistsTest = exists_fn if exists_fn is not None else os.path.lexists
        # os.stat / os.statvfs by default (disk_usage); tests pass fakes.
        self._stat = stat_fn
        self._statvfs = statvfs_fn

    def _run(self, argv: list[str]) -> ProcResult:
        return self._runner(argv, self.config.subprocess_timeout)

    # -- host -------------------------------------------------------------------------------
    def hostname(self) -> str:
        return socket.gethostname()

    def os_info(self) -> OsInfo:
        result = self._run([SW_VERS])
        values = parse_sw_vers(result.stdout) if result.outcome == "ok" else {}
        details: dict[str, str] = {}
        if values.get("BuildVersion"):
            details["build"] = values["BuildVersion"]
        if values.get("ProductVersionExtra"):
            details["rapid_security_response"] = values["ProductVersionExtra"]
        version = values.get("ProductVersion")
        if version:
            codename = CODENAMES.get(version.split(".")[0])
            if codename:
                details["codename"] = codename
        elif result.outcome == "ok":
            details["sw_vers_problem"] = f"sw_vers printed {result.excerpt()!r}"
        else:
            details["sw_vers_problem"] = result.describe()
        uname = self._run([UNAME, "-r", "-m"])
        parts = uname.stdout.split() if uname.outcome == "ok" else []
        if len(parts) == 2:
            details["kernel"], details["machine"] = parts
        return OsInfo("macos", values.get("ProductName") or "macOS", version or "unknown", details)

    # -- agent ------------------------------------------------------------------------------
    def agent_paths(self, binary_path: Optional[str] = None) -> AgentPaths:
        # The macOS agent is not relocatable: its AppConfigPath is fixed at
        # DefaultProgramFolder + amazon-ssm-agent.json (agent/appconfig/constants_darwin.go:22,
        # :25) and, unlike constants_unix.go, that file has no init() that moves it, so
        # binary_path does not move the config file.
        cfg = self.config
        binaries = (cfg.agent_binary,) if cfg.agent_binary else (AGENT_BINARY,)
        if cfg.agent_config_file:
            config_file, source = cfg.agent_config_file, "ssmdiag-config"
            note = "named by ssmdiag's [agent] config_file or --agent-config"
            if os.path.normpath(config_file) != AGENT_CONFIG:
                note += f"; the macOS agent itself always reads {AGENT_CONFIG}"
        else:
            config_file, source = AGENT_CONFIG, "default"
            note = (
                f"the macOS agent always reads {AGENT_CONFIG}, wherever its binary is "
                "(it has no relocated layout)"
            )
        data_dir = cfg.agent_data_dir or AGENT_DATA_DIR
        return AgentPaths(
            binaries,
            config_file,
            source,
            data_dir,
            runtime_identity_file=RUNTIME_IDENTITY,
            registration_file=os.path.join(data_dir, "registration"),
            # Assumption: DefaultEC2SharedCredentialsFilePath is DefaultDataStorePath +
            # "credentials" in the agent's Linux constants; its darwin constants do not
            # spell it out, so the same rule is assumed here (<data dir>/credentials).
            dhmc_credentials_file=os.path.join(data_dir, "credentials"),
            config_file_note=note,
            log_dir=AGENT_LOG_DIR,
        )

    def _binary_reading(self, path: str) -> VersionReading:
        return reading_from_version_run(self._run([path, "-version"]), path)

    def _pkgutil_reading(self) -> VersionReading:
        result = self._run([PKGUTIL, "--pkg-info", PACKAGE_ID])
        if result.outcome == "not_found":
            return VersionReading("pkgutil", "unavailable", note="pkgutil is not installed here")
        said = result.stdout + result.stderr
        if result.outcome == "nonzero" and "No receipt for" in said:
            return VersionReading("pkgutil", "absent", note=f"no receipt for {PACKAGE_ID}")
        if result.outcome == "ok":
            version = parse_pkgutil_info(result.stdout).get("version")
            if version:
                return VersionReading("pkgutil", "found", version, location=PACKAGE_ID)
            return VersionReading(
                "pkgutil",
                "broken",
                note=f"`pkgutil --pkg-info` printed {result.excerpt()!r}, no 'version:' line",
                location=PACKAGE_ID,
            )
        return VersionReading("pkgutil", "broken", note=result.describe(), location=PACKAGE_ID)

    def _launchctl_print(self) -> tuple[ProcResult, dict[str, str]]:
        result = self._run([LAUNCHCTL, "print", LAUNCHD_TARGET])
        return result, parse_launchctl_print(result.stdout) if result.outcome == "ok" else {}

    def discover_agent(self) -> AgentDiscovery:
        readings: list[VersionReading] = []
        for path in self.agent_paths().binary_candidates:
            if self._exists(path):
                readings.append(self._binary_reading(path))
            else:
                note = (
                    "configured path does not exist"
                    if self.config.agent_binary
                    else "not installed at the default path"
                )
                readings.append(VersionReading("binary", "absent", note=note, location=path))
        readings.append(self._pkgutil_reading())
        binary = next(
            (r.location for r in readings if r.source == "binary" and r.state != "absent"), None
        )
        _, job = self._launchctl_print()
        processes: list[AgentProcess] = []
        pid_text = job.get("pid", "")
        if job.get("state") == "running" and pid_text.isdigit():
            exe = job.get("program") or binary
            # macOS has no /proc/PID/exe to ask the running image for its version, so the
            # process gives none (it is not copied from the binary: a pkgutil/binary
            # disagreement would then read as "upgraded but not restarted").
            version = VersionReading(
                "process",
                "unavailable",
                note="macOS cannot show which version a running process was started from; "
                "see the binary's reading",
                location=pid_text,
            )
            # A LaunchDaemon without UserName runs as root.
            user = job.get("username") or "root"
            processes.append(AgentProcess(int(pid_text), exe, user, False, version))
            if binary is None:
                binary = exe
        return AgentDiscovery(tuple(readings), tuple(processes), binary)

    def agent_service(self) -> ServiceState:
        result, job = self._launchctl_print()
        plist = self._exists(LAUNCHD_PLIST)
        # A LaunchDaemon plist in /Library/LaunchDaemons is loaded at every boot; the
        # agent's own plist sets RunAtLoad and KeepAlive.
        enabled: Optional[bool] = True if plist else None
        if result.outcome == "nonzero" and "Could not find service" in (
            result.stderr + result.stdout
        ):
            return ServiceState(
                "launchd",
                LAUNCHD_LABEL,
                False,
                False,
                enabled,
                "not loaded",
                note=f"launchd has no {LAUNCHD_TARGET}"
                + (
                    f" although {LAUNCHD_PLIST} exists"
                    if plist
                    else f" and {LAUNCHD_PLIST} does not exist"
                ),
            )
        if not result.ran or result.outcome != "ok":
            return ServiceState(
                "launchd", LAUNCHD_LABEL, False, False, enabled, "unknown", note=result.describe()
            )
        state = job.get("state")
        if state is None:
            return ServiceState(
                "launchd",
                LAUNCHD_LABEL,
                True,
                False,
                enabled,
                "unknown",
                note=f"`launchctl print` printed {result.excerpt()!r}, no 'state = ' line",
            )
        pid_text = job.get("pid", "")
        pid = int(pid_text) if pid_text.isdigit() else None
        text = state
        if state != "running":
            last = job.get("last exit code") or job.get("last terminating signal")
            if last:
                text += f" (last exit: {last})"
        return ServiceState(
            "launchd",
            LAUNCHD_LABEL,
            True,
            state == "running",
            enabled,
            text,
            main_pid=pid if state == "running" else None,
            note="" if plist else f"{LAUNCHD_PLIST} does not exist: not started at boot",
        )

    # -- files and accounts -----------------------------------------------------------------
    def read_file(self, path: str) -> FileRead:
        return self._read_file(path)

    def file_exists(self, path: str) -> bool:
        return self._exists(path)

    def agent_environment(self) -> AgentEnvironment:
        # The agent itself runs `scutil --proxy` when it starts (proxyconfig.SetProxyConfig)
        # and sets http_proxy, https_proxy and no_proxy from it; this reads the same
        # source now. A change made after the agent started needs a restart to count.
        result = self._run([SCUTIL, "--proxy"])
        if result.outcome != "ok":
            return AgentEnvironment({}, "none", f"`scutil --proxy`: {result.describe()}")
        values = parse_scutil_proxy(result.stdout)
        if values is None:
            return AgentEnvironment(
                {},
                "none",
                f"`scutil --proxy` printed {result.excerpt()!r}, not a proxy dictionary",
            )
        return AgentEnvironment(values, SCUTIL_SOURCE)

    def lookup_user(self, name: str) -> Optional[UserAccount]:
        result = self._run(
            [
                DSCL,
                ".",
                "-read",
                f"/Users/{name}",
                "UniqueID",
                "PrimaryGroupID",
                "NFSHomeDirectory",
                "UserShell",
            ]
        )
        said = result.stdout + result.stderr
        if result.outcome == "nonzero" and ("eDSRecordNotFound" in said or "DS Error" in said):
            return None
        if result.outcome != "ok":
            # Not "absent": saying None here would report a missing account as normal.
            raise DirectoryServiceError(
                f"cannot tell whether {name} exists: dscl {result.describe()}"
            )
        values = parse_dscl_read(result.stdout)
        uid_text = _first(values, "UniqueID") or ""
        uid = int(uid_text) if uid_text.lstrip("-").isdigit() else None
        groups: tuple[str, ...] = ()
        id_result = self._run([ID, "-Gn", name])
        if id_result.outcome == "ok":
            groups = tuple(id_result.stdout.split())
        elif (gid := _first(values, "PrimaryGroupID")) is not None:
            groups = (gid,)
        return UserAccount(
            name,
            uid,
            groups,
            home=_first(values, "NFSHomeDirectory"),
            shell=_first(values, "UserShell"),
        )

    def sudo_rule_path(self) -> Optional[str]:
        return SUDO_RULE

    def disk_usage(self, path: str) -> DiskUsage:
        # Fakes for stat also stand in for realpath: a fake file system has no symlinks.
        usage = unix_disk_usage(
            path,
            stat_fn=self._stat,
            statvfs_fn=self._statvfs,
            realpath_fn=os.path.normpath if self._stat is not None else None,
        )
        # statvfs has no file system type on macOS; "/" is the sealed, read-only system
        # volume, so only a directory that exists is judged read-only (/opt and /var are
        # firmlinks into the writable data volume).
        if usage.outcome == "ok" and usage.measured != os.path.normpath(path):
            usage = replace(usage, read_only=None)
        return usage

    def agent_restarts(self) -> RestartHistory:
        result, job = self._launchctl_print()
        said = result.stderr + result.stdout
        if result.outcome == "nonzero" and "Could not find service" in said:
            return RestartHistory(
                "launchd", LAUNCHD_LABEL, "not_found", note=f"launchd has no {LAUNCHD_TARGET}"
            )
        if result.outcome != "ok" or "state" not in job:
            note = result.describe() if result.outcome != "ok" else "no 'state = ' line"
            return RestartHistory("launchd", LAUNCHD_LABEL, "unknown", note=note)
        runs = job.get("runs", "")
        state = job.get("state", "")
        last_exit = job.get("last exit code", "")
        if last_exit in ("", "(never exited)"):
            last_exit = job.get("last terminating signal", "")
        elif last_exit.lstrip("-").isdigit():
            last_exit = f"exit status {last_exit}"
        properties = [p.strip() for p in job.get("properties", "").split("|")]
        keepalive = "keepalive" in properties if job.get("properties") else None
        minimum = job.get("minimum runtime", "")
        return RestartHistory(
            "launchd",
            LAUNCHD_LABEL,
            "ok",
            running=state == "running",
            state_text=state,
            # launchd counts every spawn since it loaded the job: the first is not a restart.
            restarts=max(0, int(runs) - 1) if runs.isdigit() else None,
            restarts_since="since launchd loaded the job (at boot)",
            last_exit=last_exit,
            waiting_to_restart=state == "spawn scheduled",
            restarts_on_failure=keepalive,
            recovery=(
                "KeepAlive" + (f" (minimum runtime {minimum} s)" if minimum else "")
                if keepalive
                else ""
            ),
            note="" if runs else "`launchctl print` has no 'runs = ' line",
        )

    def time_sync(self) -> TimeSync:
        # timed sets the clock when "Set time and date automatically" is on; its state is
        # what systemsetup reports (it needs root to say so).
        result = self._run([SYSTEMSETUP, "-getusingnetworktime"])
        answer = parse_network_time(result.stdout + result.stderr) if result.ran else None
        if answer is None:
            said = result.describe() if not result.ran else f"printed {result.excerpt()!r}"
            return TimeSync(
                "launchd", (), "unknown", note=f"systemsetup -getusingnetworktime {said}"
            )
        return TimeSync(
            "launchd",
            (
                TimeService(
                    "network time (timed)",
                    answer,
                    answer,
                    f"Network Time: {'On' if answer else 'Off'}",
                ),
            ),
            source="systemsetup -getusingnetworktime",
        )
