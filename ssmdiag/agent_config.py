"""amazon-ssm-agent.json read exactly as the agent reads it (agent 3.3.1142.0 code).

The agent starts from its defaults and decodes the file over them with Go's
encoding/json (agent/appconfig/appconfig.go:41-56, agent/jsonutil/jsonutil.go:60-66),
then applies its parser (agent/appconfig/appconfig_parser.go). Any decoding error
stops the agent: core/app/bootstrap/bootstrap.go:67-69 logs "app config could not be
loaded" and the agent does not run. So the rules that matter here are Go's:

- keys match field names case-insensitively (also K/U+212A and s/U+017F), unknown
  keys are ignored, and each later duplicate overwrites (or, for a section, merges);
- a value of the wrong JSON type for the field is an error; integers must be integer
  literals that fit (`1e3`, `1.0` are errors); NaN/Infinity are not JSON;
- `null` leaves a field as it was (a slice becomes nil), and a file holding `null`
  is the defaults;
- arrays decode into the slice's existing elements (a `null` element keeps the old
  value; for []*CustomIdentity it is a nil pointer, on which the parser panics at
  agent/appconfig/appconfig_parser.go:151-152).

The struct types are the table AGENT_CONFIG_FIELDS below, checked against the agent's
own struct definitions (tests/data/agent/contracts.go) and its decoder (the real
agent-config-probe) by tests/test_agent_config_oracle.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ssmdiag.platform.base import Platform

# Field types of appconfig.SsmagentConfig (agent/appconfig/contracts.go:17-150).
STRING, BOOL, INT, INT64, STRINGS = "string", "bool", "int", "int64", "[]string"
CUSTOM_IDENTITIES = "[]*CustomIdentity"

CUSTOM_IDENTITY_FIELDS: dict[str, str] = {  # contracts.go:136-143
    "InstanceID": STRING,
    "Region": STRING,
    "AvailabilityZone": STRING,
    "AvailabilityZoneId": STRING,
    "InstanceType": STRING,
    "CredentialsProvider": STRING,
}

AGENT_CONFIG_FIELDS: dict[str, dict[str, str]] = {
    "Profile": {  # contracts.go:18-23
        "ShareCreds": BOOL,
        "ShareProfile": STRING,
        "ForceUpdateCreds": BOOL,
        "KeyAutoRotateDays": INT,
    },
    "Mds": {  # contracts.go:26-32
        "Endpoint": STRING,
        "CommandWorkersLimit": INT,
        "CommandWorkerBufferLimit": INT,
        "StopTimeoutMillis": INT64,
        "CommandRetryLimit": INT,
    },
    "Ssm": {  # contracts.go:35-53
        "Endpoint": STRING,
        "HealthFrequencyMinutes": INT,
        "AssociationFrequencyMinutes": INT,
        "AssociationRetryLimit": INT,
        "CustomInventoryDefaultLocation": STRING,
        "AssociationLogsRetentionDurationHours": INT,
        "RunCommandLogsRetentionDurationHours": INT,
        "SessionLogsRetentionDurationHours": INT,
        "SessionLogsDestination": STRING,
        "PluginLocalOutputCleanup": STRING,
        "OrchestrationDirectoryCleanup": STRING,
    },
    "Mgs": {  # contracts.go:79-86
        "Region": STRING,
        "Endpoint": STRING,
        "StopTimeoutMillis": INT64,
        "SessionWorkersLimit": INT,
        "SessionWorkerBufferLimit": INT,
        "DeniedPortForwardingRemoteIPs": STRINGS,
    },
    "Agent": {  # contracts.go:56-76
        "Name": STRING,
        "Version": STRING,
        "Region": STRING,
        "ServiceDomain": STRING,
        "OrchestrationRootDir": STRING,
        "DownloadRootDir": STRING,
        "ContainerMode": BOOL,
        "SelfUpdate": BOOL,
        "SelfUpdateScheduleDay": INT,
        "TelemetryMetricsToCloudWatch": BOOL,
        "TelemetryMetricsToSSM": BOOL,
        "TelemetryMetricsNamespace": STRING,
        "LongRunningWorkerMonitorIntervalSeconds": INT,
        "ShouldPurgeInstanceProfileRoleCreds": BOOL,
        "AuditExpirationDay": INT,
        "ForceFileIPC": BOOL,
        "GoMaxProcForAgentWorker": INT,
    },
    "Os": {"Lang": STRING, "Name": STRING, "Version": STRING},  # contracts.go:95-99
    "S3": {  # contracts.go:102-107
        "Endpoint": STRING,
        "Region": STRING,
        "LogBucket": STRING,
        "LogKey": STRING,
    },
    "Birdwatcher": {"ForceEnable": BOOL},  # contracts.go:110-112
    "Kms": {"Endpoint": STRING, "RequireKMSChallengeResponse": BOOL},  # contracts.go:89-92
    "Identity": {  # contracts.go:146-150
        "Ec2SystemInfoDetectionResponse": STRING,
        "ConsumptionOrder": STRINGS,
        "CustomIdentities": CUSTOM_IDENTITIES,
    },
}

# agent/appconfig/constants.go:293 and appconfig_parser.go:138-147.
DEFAULT_CONSUMPTION_ORDER = ("OnPrem", "EC2", "CustomIdentity")
CONSUMPTION_ORDER_VALUES = frozenset({"OnPrem", "ECS", "EC2", "CustomIdentity"})

# The settings ssmdiag reports and uses: where the agent connects and who it is.
REPORTED_SETTINGS = (
    "Agent.Region",
    "Agent.ServiceDomain",
    "Ssm.Endpoint",
    "Mds.Endpoint",
    "Mgs.Endpoint",
    "Mgs.Region",
    "S3.Endpoint",
    "Kms.Endpoint",
    "Identity.ConsumptionOrder",
)

# encoding/json accepts 10000 levels (scanner.go maxNestingDepth); Python's parser would
# recurse far less deep, so ssmdiag refuses to judge past this and says so.
MAX_DEPTH_CHECKED = 200
GO_MAX_DEPTH = 10000
_INT_LITERAL = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")
_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_INT64_RANGE = (-(2**63), 2**63 - 1)


class _Number(str):
    """A JSON number kept as its literal text, as Go's decoder sees it."""


class _Object(list):  # type: ignore[type-arg]
    """A JSON object as its ordered (key, value) pairs: duplicates kept, as Go sees them."""


_Value = Union[None, bool, str, _Number, _Object, list]  # type: ignore[type-arg]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, _Number):
        return f"the number {value[:20]}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, _Object):
        return "an object"
    return "an array"


_EXPECTED = {
    STRING: "a string",
    BOOL: "true or false",
    INT: "an integer",
    INT64: "an integer",
    STRINGS: "an array of strings",
    CUSTOM_IDENTITIES: "an array of objects",
    "section": "an object",
}


def _go_fold(name: str) -> str:
    """Go's encoding/json name folding for ASCII field names (encoding/json/fold.go)."""
    return name.replace("\u017f", "s").replace("\u212a", "k").lower()


def _clean(text: str) -> str:
    """Go replaces invalid UTF-16 surrogate escapes with U+FFFD (encoding/json/decode.go)."""
    return _SURROGATE.sub("\ufffd", text)


@dataclass
class ConfigProblem:
    """Why the agent refuses the file: the key path, what it needed and what it found."""

    path: str
    message: str


@dataclass
class DecodedConfig:
    """The agent's configuration after decoding over the defaults and its parser."""

    values: dict[str, Any]  # section -> field -> value (only fields the file set)
    problem: Optional[ConfigProblem] = None  # set: the agent will not start
    notes: list[str] = field(default_factory=list)  # accepted, but not as the user meant
    seen: set[str] = field(default_factory=set)  # Section.Key the file set (even to null)

    def get(self, dotted: str) -> Any:
        section, _, name = dotted.partition(".")
        return self.values.get(section, {}).get(name)


def _field_for(fields: Mapping[str, Any], key: str) -> Optional[str]:
    exact = key if key in fields else None
    if exact:
        return exact
    folded = _go_fold(key)
    for name in fields:
        if name.lower() == folded:
            return name
    return None


class _Decoder:
    def __init__(self) -> None:
        self.problem: Optional[ConfigProblem] = None
        self.seen: set[str] = set()  # top-level fields the file sets (Section.Key)

    def error(self, path: str, expected: str, found: Any) -> None:
        # Go keeps decoding after a type error and returns the first one (decode.go saveError).
        if self.problem is None:
            self.problem = ConfigProblem(
                path, f"{path} must be {_EXPECTED[expected]}, not {_json_type(found)}"
            )

    def struct(self, target: dict[str, Any], fields: dict[str, str], obj: Any, path: str) -> None:
        for key, value in obj:
            name = _field_for(fields, key)
            if name is None:
                continue  # unknown keys are ignored
            where = f"{path}.{name}" if path else name
            self.seen.add(where)
            kind = fields[name]
            if value is None:
                if kind in (STRINGS, CUSTOM_IDENTITIES):
                    target[name] = None  # a nil slice
                continue
            if kind == STRING:
                if isinstance(value, str) and not isinstance(value, _Number):
                    target[name] = _clean(value)
                else:
                    self.error(where, kind, value)
            elif kind == BOOL:
                if isinstance(value, bool):
                    target[name] = value
                else:
                    self.error(where, kind, value)
            elif kind in (INT, INT64):
                if isinstance(value, _Number) and _INT_LITERAL.match(value):
                    number = int(value)
                    if _INT64_RANGE[0] <= number <= _INT64_RANGE[1]:
                        target[name] = number
                        continue
                self.error(where, kind, value)
            elif kind in (STRINGS, CUSTOM_IDENTITIES):
                if isinstance(value, list) and not isinstance(value, _Object):
                    target[name] = self.slice(target.get(name, _Slice()), kind, value, where)
                else:
                    self.error(where, kind, value)

    def slice(self, old: Any, kind: str, items: list[Any], path: str) -> _Slice:
        """encoding/json/decode.go array(): decode into the existing backing array."""
        current = old if isinstance(old, _Slice) else _Slice()
        backing, cap = list(current.backing), current.cap
        for index, item in enumerate(items):
            if index >= cap:
                cap = max(4, cap + cap // 2)
                backing += [None] * (cap - len(backing))
            where = f"{path}[{index}]"
            if kind == STRINGS:
                if item is None:
                    continue  # keeps what the backing array held
                if isinstance(item, str) and not isinstance(item, _Number):
                    backing[index] = _clean(item)
                else:
                    self.error(where, STRING, item)
            elif item is None:
                backing[index] = _NIL
            elif isinstance(item, _Object):
                element = backing[index]
                element = dict(element) if isinstance(element, dict) else {}
                self.struct(element, CUSTOM_IDENTITY_FIELDS, item, where)
                backing[index] = element
            else:
                self.error(where, CUSTOM_IDENTITIES, item)
        if not items:
            return _Slice()
        return _Slice(backing, cap, len(items))


_NIL = "<nil>"


@dataclass
class _Slice:
    backing: list[Any] = field(default_factory=list)
    cap: int = 0
    length: int = 0

    def items(self) -> list[Any]:
        return [v if v is not None else "" for v in self.backing[: self.length]]


def _max_depth(text: str) -> int:
    brackets = _STRING_LITERAL.sub("", text)
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


class DecodeLimit(Exception):
    """The file is valid for the agent as far as ssmdiag can tell, but beyond what it checks."""


def decode_agent_config(text: str) -> DecodedConfig:
    """Decode as the agent does. Raises json.JSONDecodeError for text that is not JSON,
    DecodeLimit when nesting is too deep for ssmdiag to judge."""
    depth = _max_depth(text)
    if depth > GO_MAX_DEPTH:
        return DecodedConfig(
            {},
            ConfigProblem("", f"nested {depth} levels deep; Go's JSON decoder stops at 10000"),
        )
    if depth > MAX_DEPTH_CHECKED:
        raise DecodeLimit(f"nested {depth} levels deep (ssmdiag checks up to {MAX_DEPTH_CHECKED})")
    document = json.loads(
        text,
        object_pairs_hook=_Object,
        parse_int=_Number,
        parse_float=_Number,
        parse_constant=_reject_constant,
    )
    decoder = _Decoder()
    raw: dict[str, dict[str, Any]] = {}
    # Defaults the decoder writes into (appconfig.go:91-164): only the slice matters here.
    defaults = {"Identity": {"ConsumptionOrder": _Slice(list(DEFAULT_CONSUMPTION_ORDER), 3, 3)}}
    if document is None:
        return DecodedConfig({})
    if not isinstance(document, _Object):
        return DecodedConfig(
            {},
            ConfigProblem("", f"the file holds {_json_type(document)}, not a JSON object"),
        )
    for key, value in document:
        section = _field_for(AGENT_CONFIG_FIELDS, key)
        if section is None or value is None:
            continue
        if not isinstance(value, _Object):
            decoder.error(section, "section", value)
            continue
        target = raw.setdefault(section, dict(defaults.get(section, {})))
        decoder.struct(target, AGENT_CONFIG_FIELDS[section], value, section)
    return _apply_parser(raw, decoder.problem, decoder.seen)


def _apply_parser(
    raw: dict[str, dict[str, Any]], problem: Optional[ConfigProblem], seen: set[str]
) -> DecodedConfig:
    """appconfig_parser.go for the fields ssmdiag uses; slices become plain lists."""
    values: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for section, fields in raw.items():
        out = values.setdefault(section, {})
        for name, value in fields.items():
            if isinstance(value, _Slice) or value is None:
                out[name] = value.items() if isinstance(value, _Slice) else []
            else:
                out[name] = value
    identity = values.get("Identity", {})
    if "Identity.ConsumptionOrder" in seen:
        given = identity["ConsumptionOrder"]
        # appconfig_parser.go:144-147 (getStringListEnum, :206-218): unknown names are
        # dropped (the match is case-sensitive); nothing left means the default order.
        kept = [v for v in given if v in CONSUMPTION_ORDER_VALUES]
        dropped = [v for v in given if v not in CONSUMPTION_ORDER_VALUES]
        if dropped:
            notes.append(
                "Identity.ConsumptionOrder: the agent ignores "
                + ", ".join(repr(v) for v in dropped)
                + " (valid, case-sensitive: OnPrem, EC2, ECS, CustomIdentity)"
            )
        identity["ConsumptionOrder"] = kept or list(DEFAULT_CONSUMPTION_ORDER)
        if not kept:
            notes.append(
                "Identity.ConsumptionOrder: nothing valid left, the agent uses its default"
            )
    elif "Identity" in values:
        identity.pop("ConsumptionOrder", None)
    customs = identity.get("CustomIdentities") or []
    if problem is None and any(item == _NIL for item in customs):
        index = customs.index(_NIL)
        problem = ConfigProblem(
            f"Identity.CustomIdentities[{index}]",
            f"Identity.CustomIdentities[{index}] is null: the agent's config parser crashes on "
            "it (nil pointer, appconfig_parser.go:152)",
        )
    return DecodedConfig(values, problem, notes, seen)


def reported_settings(config: DecodedConfig) -> dict[str, Any]:
    """`Section.Key` -> value for the settings that change where the agent connects."""
    settings: dict[str, Any] = {}
    for dotted in REPORTED_SETTINGS:
        value = config.get(dotted)
        if dotted in config.seen and value not in (None, "", []):
            settings[dotted] = value
    return settings


@dataclass
class AgentConfigFacts:
    path: str
    path_source: str
    # ok | missing | unreadable | invalid (not JSON) | refused (JSON the agent rejects)
    # | unverified (ssmdiag could not read all of it, or it is nested too deep to judge)
    state: str
    settings: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    line: Optional[int] = None
    column: Optional[int] = None
    key_path: str = ""  # refused: the key the agent stumbles on
    notes: list[str] = field(default_factory=list)
    decoded: Optional[DecodedConfig] = None
    path_note: str = ""  # why the agent reads this file (relocation rules)
    ignored_file: str = ""  # a relocated config that exists but that the agent ignores
    ignored_fix: str = ""  # what makes the agent use it


def read_agent_config(platform: Platform, binary_path: Optional[str]) -> AgentConfigFacts:
    paths = platform.agent_paths(binary_path)
    read = platform.read_file(paths.config_file)
    facts = AgentConfigFacts(paths.config_file, paths.config_file_source, "ok")
    facts.path_note = paths.config_file_note
    facts.ignored_file, facts.ignored_fix = paths.ignored_config_file, paths.config_file_fix
    if read.outcome == "missing":
        facts.state = "missing"
        return facts
    if read.outcome != "ok":
        facts.state, facts.message = "unreadable", read.message
        return facts
    if read.truncated:
        facts.state = "unverified"
        facts.message = f"it is {read.message}; the agent reads all of it"
        return facts
    return judge_agent_config_text(facts, read.text)


def judge_agent_config_text(facts: AgentConfigFacts, text: str) -> AgentConfigFacts:
    try:
        decoded = decode_agent_config(text)
    except json.JSONDecodeError as exc:
        facts.state, facts.message = "invalid", exc.msg
        facts.line, facts.column = exc.lineno, exc.colno
        return facts
    except DecodeLimit as exc:
        facts.state, facts.message = "unverified", str(exc)
        return facts
    except ValueError as exc:  # NaN / Infinity (parse_constant)
        facts.state, facts.message = "invalid", str(exc)
        return facts
    facts.decoded = decoded
    facts.notes = decoded.notes
    if decoded.problem is not None:
        facts.state = "refused"
        facts.message, facts.key_path = decoded.problem.message, decoded.problem.path
        return facts
    facts.settings = reported_settings(decoded)
    return facts
