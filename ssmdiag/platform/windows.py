"""Windows Server: the AmazonSSMAgent service, the registry, local and domain accounts.

Every OS call goes through a `WindowsApi` (registry reader, service manager, account
API, subprocess runner). The real one, `windows_api.Win32Api`, uses pywin32 and is
imported only on Windows; tests drive this module with a fake fed by captured data.
"""

from __future__ import annotations

import ntpath
import sys
from dataclasses import replace
from typing import Any, Optional, Protocol

from ssmdiag.agent import reading_from_version_run
from ssmdiag.config import Config
from ssmdiag.platform.base import (
    AgentDiscovery,
    AgentEnvironment,
    AgentPaths,
    AgentProcess,
    DiskUsage,
    DomainInfo,
    FileRead,
    OsInfo,
    Platform,
    RestartHistory,
    ServiceState,
    TimeService,
    TimeSync,
    UserAccount,
    VersionReading,
)
from ssmdiag.platform.process import ProcResult

SERVICE = "AmazonSSMAgent"
TIME_SERVICE = "W32Time"
# Clock sources that mean "not synchronized with anything" in `w32tm /query /status`.
UNSYNCED_TIME_SOURCES = ("local cmos clock", "free-running system clock")
SERVICE_KEY = r"HKLM\SYSTEM\CurrentControlSet\Services\AmazonSSMAgent"
CURRENT_VERSION_KEY = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion"
MACHINE_ENV_KEY = r"HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\Environment"
# LocalSystem's (S-1-5-18) Internet Settings: the agent runs as LocalSystem.
LOCAL_SYSTEM_INET_KEY = r"HKU\S-1-5-18\Software\Microsoft\Windows\CurrentVersion\Internet Settings"
ADMINISTRATORS_SID = "S-1-5-32-544"
DOMAIN_ROLES = (
    "standalone_workstation",
    "member_workstation",
    "standalone_server",
    "member_server",
    "backup_domain_controller",
    "primary_domain_controller",
)


class WindowsApi(Protocol):
    """The thin boundary to Windows. Values are returned as the OS gives them."""

    def registry_value(self, key: str, name: str) -> Any: ...
    def registry_values(self, key: str) -> Optional[dict[str, Any]]: ...
    def service(self, name: str) -> Optional[dict[str, Any]]:
        """{"state": "running"|"stopped"|..., "start_type": "auto"|"delayed-auto"|"demand"|
        "disabled", "account": "LocalSystem", "pid": int}, None when not installed."""
        ...

    def local_user(self, name: str) -> Optional[dict[str, Any]]:
        """{"sid": ..., "enabled": bool}; None when the account does not exist."""
        ...

    def group_member_sids(self, group_sid: str) -> list[str]: ...
    def domain_group_member_names(self, group: str) -> Optional[list[str]]: ...
    def domain_role(self) -> int: ...
    def hostname(self) -> str: ...
    def read_file(self, path: str) -> FileRead: ...
    def exists(self, path: str) -> bool: ...
    def run(self, argv: list[str], timeout: float) -> ProcResult: ...
    def environ(self, name: str) -> Optional[str]: ...
    def disk_free(self, path: str) -> Optional[dict[str, Any]]:
        """GetDiskFreeSpaceEx and GetVolumeInformation of an existing path: {"volume":
        "C:\\", "total": int, "free": int (all free bytes), "available": int (free to the
        caller), "filesystem": "NTFS", "read_only": bool}; None when the call fails."""
        ...


def parse_multi_sz_environment(value: Any) -> dict[str, str]:
    """A service's Environment value: REG_MULTI_SZ, a list of NAME=value strings."""
    items = value if isinstance(value, (list, tuple)) else []
    values: dict[str, str] = {}
    for item in items:
        key, sep, val = str(item).partition("=")
        if sep and key:
            values[key] = val
    return values


def _validate_host(value: str) -> Optional[str]:
    """agent/proxyconfig/proxy_windows.go ValidateHost: <local>/<-loopback> are skipped,
    `//x` and scheme-less values become http URLs, what url.Parse refuses is skipped."""
    from ssmdiag.gourl import GoURLError, go_url_parse

    if value in ("<-loopback>", "<local>"):
        return None
    if value.startswith("//"):
        value = "http:" + value
    if "://" not in value:
        value = "http://" + value
    try:
        go_url_parse(value)
    except GoURLError:
        return None
    return value


def _entries(text: str) -> list[str]:
    # strings.Fields, then ";" (proxy_windows.go:179-183, 287-292)
    return [part for field in text.split() for part in field.split(";") if part]


def proxies_from_server_string(server: str) -> tuple[Optional[str], Optional[str]]:
    """(http_proxy, https_proxy) the agent derives from a ProxyServer / WinHTTP list
    (proxy_windows.go:280-331 ParseProxySettings). A bare `host:port` is an *http* proxy
    only: the agent then sends its HTTPS traffic direct."""
    http = https = other = None
    for entry in _entries(server):
        scheme, sep, value = entry.partition("=")
        if sep:
            if scheme == "https":
                https = _validate_host(value)
            elif scheme == "http":
                http = _validate_host(value)
        else:
            other = _validate_host(entry)
    if http is None:  # no scheme given at all, or only https=: the bare entry is http's
        http = other
    elif https is None:
        https = other
    return http, https


def proxy_from_server_string(server: str) -> Optional[str]:
    """The https_proxy the agent derives from a ProxyServer / WinHTTP list."""
    return proxies_from_server_string(server)[1]


def no_proxy_from_bypass(bypass: str) -> tuple[str, list[str]]:
    """ProxyOverride / WinHTTP bypass list to the agent's no_proxy (proxy_windows.go:176-193
    ParseProxyBypass: each entry's URL host; `<local>` and `<-loopback>` are skipped)."""
    entries, notes = [], []
    for entry in _entries(bypass):
        if entry.lower() == "<local>":
            notes.append("<local> (names without dots) has no no_proxy equivalent")
            continue
        valid = _validate_host(entry)
        if valid is None:
            notes.append(f"bypass entry {entry!r} is skipped by the agent")
            continue
        from ssmdiag.gourl import go_url_parse

        entries.append(go_url_parse(valid).host)
    return ",".join(entries), notes


def parse_sc_qfailure(text: str) -> Optional[tuple[Optional[int], list[tuple[str, int]]]]:
    """`sc.exe qfailure NAME`: (RESET_PERIOD in seconds, [(action, delay ms), ...]) from

        RESET_PERIOD (in seconds)    : 86400
        FAILURE_ACTIONS              : RESTART -- Delay = 30000 milliseconds.
                                       RESTART -- Delay = 30000 milliseconds.

    No FAILURE_ACTIONS line means no actions. None when the text is not that block (sc
    failed: "[SC] OpenService FAILED 1060: ...")."""
    if "SERVICE_NAME" not in text:
        return None
    reset: Optional[int] = None
    actions: list[tuple[str, int]] = []
    for line in text.splitlines():
        key, found, value = line.partition(":")
        key = key.strip()
        if found and key.startswith("RESET_PERIOD"):
            reset = int(value.strip()) if value.strip().isdigit() else None
            continue
        entry = value if found and key == "FAILURE_ACTIONS" else line
        if "-- Delay =" not in entry:
            continue
        action, _, delay = entry.partition("-- Delay =")
        digits = delay.strip().split(" ")[0]
        if digits.isdigit():
            actions.append((action.strip().upper(), int(digits)))
    return reset, actions


def parse_w32tm_status(text: str) -> dict[str, str]:
    """`w32tm /query /status`: `Leap Indicator: 0(no warning)`, `Source: 169.254.169.123,0x9`,
    `Last Successful Sync Time: ...` lines (English output)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, found, value = line.partition(":")
        if found and key.strip() and not key.startswith(" "):
            values.setdefault(key.strip(), value.strip())
    return values


def _seconds_text(ms: int) -> str:
    return f"{ms // 1000} s" if ms % 1000 == 0 else f"{ms} ms"


def parse_netsh_winhttp(text: str) -> tuple[Optional[str], str]:
    """`netsh winhttp show proxy`: (proxy server or None for direct access, bypass list)."""
    server, bypass = None, ""
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        if not sep:
            continue
        label = label.strip().lower()
        if label.startswith("proxy server"):
            server = value.strip() or None
        elif label.startswith("bypass list"):
            bypass = value.strip()
    return server, bypass


class WindowsPlatform(Platform):
    family = "windows"

    def __init__(self, config: Config, api: Optional[WindowsApi] = None) -> None:
        super().__init__(config)
        self.api = api if api is not None else _real_api()

    def _program_files(self) -> str:
        return self.api.environ("ProgramFiles") or r"C:\Program Files"

    def _program_data(self) -> str:
        return self.api.environ("ProgramData") or r"C:\ProgramData"

    def hostname(self) -> str:
        return self.api.hostname()

    def os_info(self) -> OsInfo:
        values = self.api.registry_values(CURRENT_VERSION_KEY) or {}
        build = str(values.get("CurrentBuild") or values.get("CurrentBuildNumber") or "")
        details = {
            "build": build,
            "installation_type": str(values.get("InstallationType") or ""),
            "edition": str(values.get("EditionID") or ""),
            "display_version": str(values.get("DisplayVersion") or ""),
        }
        name = str(values.get("ProductName") or "Windows")
        return OsInfo("windows", name, build or "unknown", details)

    def agent_paths(self, binary_path: Optional[str] = None) -> AgentPaths:
        cfg = self.config
        base = ntpath.join(self._program_files(), "Amazon", "SSM")
        data = ntpath.join(self._program_data(), "Amazon", "SSM")
        binary = cfg.agent_binary or ntpath.join(base, "amazon-ssm-agent.exe")
        config_file, source, note = self._agent_config_choice(base, binary_path or binary)
        if cfg.agent_config_file:
            agent_reads = config_file
            config_file, source = cfg.agent_config_file, "ssmdiag-config"
            note_prefix = "named by ssmdiag's [agent] config_file or --agent-config"
            if ntpath.normcase(ntpath.normpath(config_file)) != ntpath.normcase(agent_reads):
                note = f"{note_prefix}; the agent itself reads {agent_reads}: {note}"
            else:
                note = note_prefix
        data_dir = cfg.agent_data_dir or ntpath.join(data, "InstanceData")
        # DefaultLogDir = SSMDataPath\Logs (agent/log/logger/log_windows.go:30).
        return AgentPaths(
            (binary,),
            config_file,
            source,
            data_dir,
            runtime_identity_file=ntpath.join(data, "runtimeconfig", "identity_config.json"),
            registration_file=ntpath.join(data_dir, "registration"),
            dhmc_credentials_file=ntpath.join(base, "credentials"),
            config_file_note=note,
            log_dir=ntpath.join(data, "Logs"),
        )

    def _agent_config_choice(self, program_folder: str, binary: str) -> tuple[str, str, str]:
        """The agent's rule (agent/appconfig/constants_windows.go, tag 3.3.1142.0): it reads
        DefaultProgramFolder\\amazon-ssm-agent.json (:196, :204) unless
        configuration\\amazon-ssm-agent.json exists beside the binary it was started as
        (filepath.Abs(filepath.Dir(os.Args[0])), :230; :235-239). Existence is the only test
        (shouldUseConfig, :248-252): no ownership or ACL check as on Linux."""
        default = ntpath.join(program_folder, "amazon-ssm-agent.json")
        directory = ntpath.dirname(ntpath.normpath(binary))
        relative = ntpath.join(directory, "configuration", "amazon-ssm-agent.json")
        if self.api.exists(relative):
            return (
                relative,
                "relocated",
                f"{relative} exists beside the agent binary, so the agent reads it instead "
                f"of {default}",
            )
        return (
            default,
            "default",
            f"the agent reads {default} (no configuration\\amazon-ssm-agent.json beside {binary})",
        )

    def discover_agent(self) -> AgentDiscovery:
        readings: list[VersionReading] = []
        registered = self.api.registry_value(SERVICE_KEY, "Version")
        if isinstance(registered, str) and registered.strip():
            readings.append(
                VersionReading("registry", "found", registered.strip(), location=SERVICE_KEY)
            )
        else:
            readings.append(VersionReading("registry", "absent", note="no Version value"))
        binary = self.agent_paths().binary_candidates[0]
        if self.api.exists(binary):
            result = self.api.run([binary, "-version"], self.config.subprocess_timeout)
            readings.append(reading_from_version_run(result, binary))
        processes: list[AgentProcess] = []
        service = self.api.service(SERVICE)
        if service and service.get("state") == "running" and service.get("pid"):
            best = next((r for r in readings if r.state == "found"), None)
            processes.append(
                AgentProcess(
                    int(service["pid"]),
                    binary,
                    service.get("account"),
                    False,
                    VersionReading(
                        "process",
                        best.state if best else "broken",
                        best.version_text if best else None,
                        location=str(service["pid"]),
                    ),
                )
            )
        found_binary = binary if any(r.source == "binary" for r in readings) else None
        return AgentDiscovery(tuple(readings), tuple(processes), found_binary)

    def agent_service(self) -> ServiceState:
        service = self.api.service(SERVICE)
        if service is None:
            return ServiceState(
                "scm", SERVICE, False, False, None, "not installed", note=f"no {SERVICE} service"
            )
        start = str(service.get("start_type", "unknown"))
        state = str(service.get("state", "unknown"))
        return ServiceState(
            "scm",
            SERVICE,
            True,
            state == "running",
            start in ("auto", "delayed-auto"),
            f"{state}, start type {start}, account {service.get('account', '?')}",
            main_pid=service.get("pid") or None,
        )

    def read_file(self, path: str) -> FileRead:
        return self.api.read_file(path)

    def file_exists(self, path: str) -> bool:
        return self.api.exists(path)

    def agent_environment(self) -> AgentEnvironment:
        """What the agent sets up at start (proxy_windows.go:108-175 SetProxyConfig): its
        environment (the machine environment plus the service's Environment value); proxy
        settings from LocalSystem's Internet Settings, else the WinHTTP default proxy, unless
        the environment already names a proxy (then those are ignored) or no_proxy."""
        machine = {k: str(v) for k, v in (self.api.registry_values(MACHINE_ENV_KEY) or {}).items()}
        service_env = parse_multi_sz_environment(
            self.api.registry_value(SERVICE_KEY, "Environment")
        )
        env = {k.lower(): v for k, v in {**machine, **service_env}.items() if v}
        env_source = (
            f"{SERVICE_KEY}\\Environment"
            if _has_proxy(service_env)
            else "machine environment"
            if _has_proxy(machine)
            else ""
        )
        proxy, bypass, source, notes = "", "", "", []
        inet = self.api.registry_values(LOCAL_SYSTEM_INET_KEY) or {}
        if inet.get("ProxyEnable") in (1, "1") and inet.get("ProxyServer"):
            proxy, bypass = str(inet["ProxyServer"]), str(inet.get("ProxyOverride") or "")
            source = "LocalSystem Internet Settings"
        else:
            result = self.api.run(
                ["netsh", "winhttp", "show", "proxy"], self.config.subprocess_timeout
            )
            if result.outcome == "ok":
                server, winhttp_bypass = parse_netsh_winhttp(result.stdout)
                if server:
                    proxy, bypass, source = server, winhttp_bypass, "WinHTTP default proxy"
            elif not env_source:
                notes.append(result.describe())
        if env.get("https_proxy") or env.get("http_proxy"):
            proxy = ""  # the environment's proxy wins (proxy_windows.go:147-158)
        if env.get("no_proxy"):
            bypass = ""
        values = _proxy_only(env)
        http, https = proxies_from_server_string(proxy)
        if https:
            values["https_proxy"] = https
        if http:
            values["http_proxy"] = http
        no_proxy, bypass_notes = no_proxy_from_bypass(bypass)
        notes += bypass_notes
        if no_proxy:
            values["no_proxy"] = no_proxy
        where = env_source if env_source and not proxy else source or env_source
        if not values:
            where = "WinHTTP default proxy (direct access)" if not notes else "none"
        return AgentEnvironment(values, where or "none", "; ".join(notes) or None)

    def lookup_user(self, name: str) -> Optional[UserAccount]:
        user = self.api.local_user(name)
        if user is None:
            return None
        sid = str(user.get("sid") or "")
        admin = sid in self.api.group_member_sids(ADMINISTRATORS_SID) if sid else None
        domain_admins: Optional[bool] = None
        domain = self.domain_info()
        if domain is not None and domain.is_domain_controller:
            members = self.api.domain_group_member_names("Domain Admins")
            if members is not None:
                domain_admins = name.lower() in {m.lower().split("\\")[-1] for m in members}
        return UserAccount(
            name,
            None,
            (),
            enabled=user.get("enabled"),
            sid=sid or None,
            is_admin=admin,
            in_domain_admins=domain_admins,
        )

    def domain_info(self) -> Optional[DomainInfo]:
        try:
            role_number = self.api.domain_role()
        except OSError:
            role_number = -1
        role = DOMAIN_ROLES[role_number] if 0 <= role_number < len(DOMAIN_ROLES) else "unknown"
        ntds = self.api.service("NTDS")
        state = ntds.get("state") if ntds else None
        # The agent's own test: the NTDS service is running.
        return DomainInfo(role, state == "running", state)

    def sudo_rule_path(self) -> Optional[str]:
        return None

    def disk_usage(self, path: str) -> DiskUsage:
        measured = ntpath.normpath(path)
        while not self.api.exists(measured):
            parent = ntpath.dirname(measured)
            if parent == measured:
                return DiskUsage(path, "error", message=f"no part of {path} exists")
            measured = parent
        found = self.api.disk_free(measured)
        if not found:
            return DiskUsage(
                path, "error", measured, message=f"GetDiskFreeSpaceEx({measured}) failed"
            )
        volume = str(found.get("volume") or ntpath.splitdrive(measured)[0] + "\\")
        return DiskUsage(
            path,
            "ok",
            measured,
            mount_point=volume,
            filesystem=str(found.get("filesystem") or ""),
            device=volume.lower(),
            total_bytes=found.get("total"),
            free_bytes=found.get("free"),
            available_bytes=found.get("available"),
            read_only=found.get("read_only"),
        )

    def agent_restarts(self) -> RestartHistory:
        service = self.api.service(SERVICE)
        if service is None:
            return RestartHistory("scm", SERVICE, "not_found", note=f"no {SERVICE} service")
        state = str(service.get("state", "unknown"))
        base = RestartHistory(
            "scm",
            SERVICE,
            "ok",
            running=state == "running",
            state_text=state,
            note="the service control manager does not say how often it restarted the "
            "agent (the System event log does: Service Control Manager event 7031)",
        )
        result = self.api.run(["sc.exe", "qfailure", SERVICE], self.config.subprocess_timeout)
        parsed = parse_sc_qfailure(result.stdout) if result.outcome == "ok" else None
        if parsed is None:
            said = result.describe() if result.outcome != "ok" else f"printed {result.excerpt()!r}"
            return replace(base, note=f"{base.note}; recovery actions unknown: sc.exe {said}")
        reset, actions = parsed
        # The SCM takes action N for the Nth failure and repeats the last one after that
        # (SERVICE_FAILURE_ACTIONS): only a RESTART last keeps restarting it.
        restarts = bool(actions) and actions[-1][0] == "RESTART"
        words = ", ".join(f"{a.lower()} after {_seconds_text(ms)}" for a, ms in actions)
        if reset is not None and actions:
            words += f"; failure count reset after {reset} s without failures"
        return replace(base, restarts_on_failure=restarts, recovery=words or "no actions")

    def time_sync(self) -> TimeSync:
        service = self.api.service(TIME_SERVICE)
        if service is None:
            return TimeSync("scm", (), note=f"no {TIME_SERVICE} service")
        state = str(service.get("state", "unknown"))
        start = str(service.get("start_type", "unknown"))
        services = (
            TimeService(
                TIME_SERVICE,
                state == "running",
                start in ("auto", "delayed-auto"),
                f"{state}, start type {start}",
            ),
        )
        result = self.api.run(["w32tm", "/query", "/status"], self.config.subprocess_timeout)
        values = parse_w32tm_status(result.stdout) if result.outcome == "ok" else {}
        leap, source = values.get("Leap Indicator", ""), values.get("Source", "")
        if not leap or not source:
            said = result.describe() if result.outcome != "ok" else f"printed {result.excerpt()!r}"
            return TimeSync("scm", services, note=f"w32tm /query /status {said}")
        unsynced = leap.startswith("3") or source.lower() in UNSYNCED_TIME_SOURCES
        return TimeSync(
            "scm",
            services,
            synchronized=not unsynced,
            source=f"w32tm /query /status (Leap Indicator: {leap})",
            reference=source.split(",")[0],
            note=f"last successful sync: {values.get('Last Successful Sync Time', 'unknown')}",
        )


def _real_api() -> WindowsApi:
    if sys.platform == "win32":
        from ssmdiag.platform.windows_api import Win32Api

        return Win32Api()
    raise RuntimeError("the real Windows API needs Windows; pass a WindowsApi")


def _has_proxy(values: dict[str, str]) -> bool:
    return any(k.lower() in ("https_proxy", "http_proxy") and v for k, v in values.items())


def _proxy_only(values: dict[str, str]) -> dict[str, str]:
    return {
        k: v for k, v in values.items() if k.lower() in ("https_proxy", "http_proxy", "no_proxy")
    }
