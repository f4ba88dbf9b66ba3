"""ssmdiag's own configuration: an optional TOML file where every key has a default.

The keys are declared once, in `_KEYS`; loading validates every value and turns
any problem into a `ConfigError` that names the file, the key and the fix.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Optional

from ssmdiag.session_prefs import PreferencesError, SessionPreferences

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

ENV_VAR = "SSMDIAG_CONFIG"
MAX_CONFIG_BYTES = 1024 * 1024
MAX_CONFIG_NESTING = 32


def default_config_path() -> str:
    if sys.platform == "win32":
        base = os.environ.get("PROGRAMDATA", r"C:\ProgramData")
        return os.path.join(base, "ssmdiag", "ssmdiag.toml")
    return "/etc/ssmdiag/ssmdiag.toml"


class ConfigError(Exception):
    """A configuration problem; str() is the whole message for the user."""

    def __init__(self, path: Optional[str], problem: str, key: Optional[str] = None) -> None:
        where = path or "(built-in defaults)"
        text = f"configuration error in {where}"
        if key:
            text += f": key {key}"
        super().__init__(f"{text}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class Config:
    source: Optional[str] = None  # the file read, None when running on defaults
    agent_binary: Optional[str] = None
    agent_config_file: Optional[str] = None
    agent_data_dir: Optional[str] = None
    subprocess_timeout: float = 5.0
    disabled_checks: tuple[str, ...] = ()
    required_features: tuple[str, ...] = ()
    log_format: str = "console"
    log_level: str = "info"
    region: Optional[str] = None
    ca_bundle: Optional[str] = None  # extra CAs trusted on top of the OS trust store
    connect_timeout: float = 3.0
    probe_timeout: float = 5.0
    imds_timeout: float = 1.0
    # Endpoint overrides (host or URL) by service: ec2messages, ssm, ssmmessages.
    endpoint_overrides: tuple[tuple[str, str], ...] = ()
    # The daemon (`ssmdiag run`): schedule, state and where health events go.
    interval: float = 300.0  # between cycles while nothing fails
    fail_interval: float = 30.0  # between cycles while any check fails
    jitter: float = 0.1  # +/- this fraction of the interval, so a fleet does not pulse
    heartbeat: float = 3600.0  # a full snapshot this often
    startup_timeout: float = 60.0  # READY=1 at the latest after this, first cycle or not
    cycle_timeout: float = 240.0  # a cycle running longer stops feeding the watchdog
    state_dir: Optional[str] = None  # None: $STATE_DIRECTORY or the OS default
    sinks: Optional[tuple[str, ...]] = None  # None: chosen for the environment (see sinks.py)
    file_path: Optional[str] = None  # None: $LOGS_DIRECTORY/health.json or the OS default
    file_max_bytes: int = 10 * 1024 * 1024
    file_backups: int = 3
    console_device: str = "stderr"  # stderr, or a device path such as /dev/ttyS0
    # [fleet]: how this node appears in the fleet's CloudWatch metrics and Inventory.
    fleet_label: str = "default"  # the EMF `Fleet` dimension (say, "web", "batch")
    metrics_namespace: str = "ssmdiag"
    healthy_summary_interval: float = 900.0  # a healthy, unchanged node's summary line
    inventory: bool = True  # write Custom:SSMDiag where the agent's inventory collects it
    inventory_dir: Optional[str] = (
        None  # None: the agent's <data dir>/<instance id>/inventory/custom
    )
    # [permissions] endpoint_url: every permission check's AWS call goes there instead of
    # AWS (a local AWS API such as moto, for tests); None: the agent's own endpoints.
    permissions_endpoint_url: Optional[str] = None
    # [session] or --session-preferences: what the account's session preferences ask.
    session: SessionPreferences = field(default_factory=SessionPreferences)


def config_to_dict(config: Config) -> dict[str, Any]:
    """The configuration as JSON-able data, for the check worker (`config_from_dict`)."""
    return asdict(config)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """A configuration the daemon already validated, back from `config_to_dict` (JSON turns
    tuples into lists). Missing or unknown keys raise KeyError or TypeError."""
    values = {f.name: _tuples(data[f.name]) for f in fields(Config) if f.name != "session"}
    return Config(**values, session=SessionPreferences(**data["session"]))


class _Bad(ValueError):
    pass


def _absolute_path(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"must be a non-empty string (a path), got {value!r}")
    if "\x00" in value:
        raise _Bad("must not contain a NUL byte")
    if not (os.path.isabs(value) or os.path.isabs(value.replace("\\", "/"))):
        raise _Bad(f"must be an absolute path, got {value!r}")
    return value


def _seconds(low: float, high: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(f"must be a number of seconds, got {value!r}")
        if not (math.isfinite(value) and low < value <= high):
            raise _Bad(f"must be more than {low:g} and at most {high:g} seconds, got {value!r}")
        return float(value)

    return parse


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _Bad(f"must be a whole number from {low} to {high}, got {value!r}")
        return value

    return parse


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 0.5:
        raise _Bad(f"must be a number from 0 to 0.5 (a fraction of the interval), got {value!r}")
    return float(value)


def _console_device(value: Any) -> str:
    if value == "stderr":
        return "stderr"
    try:
        return _absolute_path(value)
    except _Bad:
        raise _Bad(f'must be "stderr" or an absolute device path, got {value!r}') from None


def _label(value: Any) -> str:
    # An EMF dimension value (at most 1024 characters; kept short and plain for queries).
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9._/-]{1,64}", value):
        raise _Bad(f"must be 1-64 letters, digits or . _ / -, got {value!r}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false, got {value!r}")
    return value


def _local_api_url(value: Any) -> str:
    from urllib.parse import urlsplit

    if not isinstance(value, str) or any(c.isspace() for c in value):
        raise _Bad(f"must be an http:// or https:// URL, got {value!r}")
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise _Bad(f"must be an http:// or https:// URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        raise _Bad(f"must be an http:// or https:// URL with a host, got {value!r}")
    return value


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise _Bad(f"must be one of {', '.join(choices)}; got {value!r}")
        return str(value)

    return parse


def _names(known: Callable[[], tuple[str, ...]]) -> Callable[[Any], tuple[str, ...]]:
    def parse(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise _Bad(f"must be a list of strings, got {value!r}")
        allowed = known()
        unknown = [item for item in value if item not in allowed]
        if unknown:
            raise _Bad(f"unknown name(s) {', '.join(unknown)}; known: {', '.join(allowed)}")
        return tuple(value)

    return parse


def _region(value: Any) -> str:
    from ssmdiag.partitions import RegionError, validate_region

    try:
        return validate_region(value)
    except RegionError as exc:
        raise _Bad(str(exc)) from None


def _endpoint(value: Any) -> str:
    from ssmdiag.endpoints import EndpointError, parse_endpoint

    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise _Bad(f"must be a host name or an https:// URL, got {value!r}")
    try:
        parse_endpoint("this", value, "ssmdiag config")
    except EndpointError as exc:
        raise _Bad(str(exc)) from None
    return value


def _sink_names(value: Any) -> tuple[str, ...]:
    from ssmdiag.output.sinks import SINK_NAMES

    names = _names(lambda: SINK_NAMES)(value)
    if not names:
        raise _Bad("must name at least one sink")
    return names


def _check_ids() -> tuple[str, ...]:
    from ssmdiag.checks import CHECK_IDS

    return CHECK_IDS


def _optional_features() -> tuple[str, ...]:
    from ssmdiag.features import OPTIONAL_FEATURE_IDS

    return OPTIONAL_FEATURE_IDS


# [section] -> key -> (Config field, parser). Defaults live on the Config dataclass.
_KEYS: dict[str, dict[str, tuple[str, Callable[[Any], Any]]]] = {
    "agent": {
        "binary": ("agent_binary", _absolute_path),
        "config_file": ("agent_config_file", _absolute_path),
        "data_dir": ("agent_data_dir", _absolute_path),
    },
    "checks": {
        "disable": ("disabled_checks", _names(_check_ids)),
        "subprocess_timeout": ("subprocess_timeout", _seconds(0, 300)),
    },
    "features": {
        "required": ("required_features", _names(_optional_features)),
    },
    "network": {
        "region": ("region", _region),
        "ca_bundle": ("ca_bundle", _absolute_path),
        "connect_timeout": ("connect_timeout", _seconds(0, 60)),
        "probe_timeout": ("probe_timeout", _seconds(0, 120)),
        "imds_timeout": ("imds_timeout", _seconds(0, 30)),
    },
    "endpoints": {
        "ec2messages": ("endpoint_overrides", _endpoint),
        "ssm": ("endpoint_overrides", _endpoint),
        "ssmmessages": ("endpoint_overrides", _endpoint),
    },
    "daemon": {
        "interval": ("interval", _seconds(1, 86400)),
        "fail_interval": ("fail_interval", _seconds(0.5, 86400)),
        "jitter": ("jitter", _fraction),
        "heartbeat": ("heartbeat", _seconds(60, 7 * 86400)),
        "startup_timeout": ("startup_timeout", _seconds(0, 3600)),
        "cycle_timeout": ("cycle_timeout", _seconds(10, 3600)),
        "state_dir": ("state_dir", _absolute_path),
    },
    "sinks": {
        "enabled": ("sinks", _sink_names),
        "file_path": ("file_path", _absolute_path),
        "file_max_bytes": ("file_max_bytes", _integer(4096, 1024**3)),
        "file_backups": ("file_backups", _integer(0, 100)),
        "console_device": ("console_device", _console_device),
    },
    "fleet": {
        "label": ("fleet_label", _label),
        "metrics_namespace": ("metrics_namespace", _label),
        "healthy_summary_interval": ("healthy_summary_interval", _seconds(60, 3600)),
        "inventory": ("inventory", _boolean),
        "inventory_dir": ("inventory_dir", _absolute_path),
    },
    "permissions": {
        "endpoint_url": ("permissions_endpoint_url", _local_api_url),
    },
    "log": {
        "format": ("log_format", _choice("console", "json")),
        "level": ("log_level", _choice("debug", "info", "warning", "error")),
    },
}


def config_from_mapping(data: Mapping[str, Any], path: Optional[str] = None) -> Config:
    values: dict[str, Any] = {}
    for section, table in data.items():
        if section == "session":
            from ssmdiag.session_prefs import from_config_table

            try:
                values["session"] = from_config_table(table, path or "(built-in defaults)")
            except PreferencesError as exc:
                raise ConfigError(path, str(exc)) from None
            continue
        keys = _KEYS.get(section)
        if keys is None:
            raise ConfigError(
                path,
                f"unknown section; known sections: {', '.join([*_KEYS, 'session'])}",
                f"[{section}]",
            )
        if not isinstance(table, Mapping):
            raise ConfigError(path, "must be a table ([section] header)", f"[{section}]")
        for key, value in table.items():
            spec = keys.get(key)
            if spec is None:
                raise ConfigError(
                    path,
                    f"unknown key; known keys in [{section}]: {', '.join(keys)}",
                    f"{section}.{key}",
                )
            field_name, parse = spec
            try:
                parsed = parse(value)
            except _Bad as exc:
                raise ConfigError(path, str(exc), f"{section}.{key}") from None
            if field_name == "endpoint_overrides":
                parsed = (*values.get(field_name, ()), (key, parsed))
            values[field_name] = parsed
    config = replace(Config(source=path), **values)
    if config.fail_interval > config.interval:
        raise ConfigError(
            path,
            f"must not be longer than daemon.interval ({config.interval:g} s): "
            "failing checks are re-checked sooner, not later",
            "daemon.fail_interval",
        )
    return config


def resolve_path(cli_path: Optional[str], environ: Mapping[str, str]) -> tuple[str, bool]:
    """The file to read and whether the user named it (then it must exist)."""
    if cli_path:
        return cli_path, True
    if environ.get(ENV_VAR):
        return environ[ENV_VAR], True
    return default_config_path(), False


def with_overrides(
    config: Config,
    region: Optional[str],
    agent_config: Optional[str],
    session_file: Optional[str] = None,
) -> Config:
    """Command-line flags win over the file; a bad --region is a usage error (64), a bad
    --session-preferences file a configuration error (78)."""
    from ssmdiag.partitions import validate_region

    if region is not None:
        config = replace(config, region=validate_region(region))
    if agent_config is not None:
        if "\x00" in agent_config:
            raise ValueError("--agent-config: the path contains a NUL byte")
        config = replace(config, agent_config_file=agent_config)
    if session_file is not None:
        config = replace(config, session=load_session_file(session_file))
    return config


def load_session_file(path: str) -> SessionPreferences:
    from ssmdiag.safeio import read_text
    from ssmdiag.session_prefs import from_document_text

    read = read_text(path, MAX_CONFIG_BYTES)
    if read.outcome != "ok":
        raise ConfigError(path, f"session preferences cannot be read: {read.message}")
    if read.truncated:
        raise ConfigError(path, f"session preferences file is {read.message}")
    try:
        return from_document_text(read.text, path)
    except PreferencesError as exc:
        raise ConfigError(path, str(exc)) from None


def load_config(
    cli_path: Optional[str] = None, environ: Optional[Mapping[str, str]] = None
) -> Config:
    from ssmdiag.safeio import read_text, toml_depth

    path, explicit = resolve_path(cli_path, os.environ if environ is None else environ)
    if "\x00" in path:
        raise ConfigError(path.replace("\x00", "\\0"), "the path contains a NUL byte")
    read = read_text(path, MAX_CONFIG_BYTES)
    if read.outcome == "missing":
        if explicit:
            raise ConfigError(path, "file does not exist (named by --config or SSMDIAG_CONFIG)")
        return Config()
    if read.outcome == "not_regular":
        raise ConfigError(path, f"{read.message}: name a TOML file")
    if read.outcome == "denied":
        raise ConfigError(path, "cannot be read: permission denied")
    if read.outcome != "ok":
        raise ConfigError(path, f"cannot be read: {read.message}")
    if read.truncated:
        raise ConfigError(path, f"is {read.message}: an ssmdiag config is a few lines of TOML")
    try:
        text = read.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"is not UTF-8 text (byte {exc.start})") from None
    depth = toml_depth(text)
    if depth > MAX_CONFIG_NESTING:
        raise ConfigError(
            path, f"nests tables or arrays {depth} levels deep: not an ssmdiag config"
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(
            path, "nests tables or arrays too deeply: not an ssmdiag config"
        ) from None
    return config_from_mapping(data, path)
