"""The fleet view on AWS's own engines (issue 14 items 2, 3, 6): the CloudFormation
templates lint clean, the Contributor Insights rules follow their documented schema, the
Logs Insights saved queries answer their questions on events that real `ssmdiag run
--once` runs wrote, and a real cycle.summary is valid Embedded Metric Format.

The queries run on a small evaluator of exactly the Logs Insights subset they use
(filter, fields, stats latest/max/count ... by, sort, limit; coalesce, in, like). Where
the service's documentation leaves a behaviour open the evaluator refuses instead of
guessing: `latest(field)` over events some of which lack the field is an error, so the
queries normalise such fields with coalesce() first.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import re
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import jsonschema
import pytest

from ssmdiag.config import Config
from tests.conftest import REPO, ROOT_REQUIRED, run_cli

TEMPLATES = REPO / "packaging" / "cloudformation"
FLEET = TEMPLATES / "ssmdiag-fleet.yaml"
DEPLOY = TEMPLATES / "ssmdiag-deploy.yaml"
RULES = REPO / "packaging" / "cloudwatch" / "insights"
FRAGMENTS = REPO / "packaging" / "cloudwatch"
HEALTH_GROUP = "/ssmdiag/health"

# The event contract (issue 14) the templates are built on. EMF_PERIOD_S: a node's metric
# value is next_check_s / EMF_PERIOD_S, so a Sum over that period counts each node once;
# the fleet template's MetricPeriodSeconds default is the same number.
EMF_PERIOD_S = 900  # a healthy node writes one summary per 15 min (the log budget)
EMF_DIMENSIONS = [["Region"], ["Fleet", "Region"]]
TS_FORMAT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(\d{3})?Z$")
INSTANCE_ID = re.compile(r"^(i|mi)-[0-9a-f]{8,17}$")


def load_template(path: Path) -> dict[str, Any]:
    """The template as CloudFormation reads it (cfn-lint's loader: !Sub, !If ... as Fn::)."""
    from cfnlint.decode import cfn_yaml

    template: dict[str, Any] = cfn_yaml.load(str(path))
    return template


def resources(template: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: body["Properties"]
        for name, body in template["Resources"].items()
        if body["Type"] == kind
    }


# -- cfn-lint --------------------------------------------------------------------------------


def test_cfn_lint_passes_on_every_template() -> None:
    """cfn-lint with its bundled resource specifications (offline), every level reported."""
    if importlib.util.find_spec("cfnlint") is None:
        if ROOT_REQUIRED:
            pytest.fail("cfn-lint is missing: pip install '.[test]' installs it")
        pytest.skip("cfn-lint not installed (pip install '.[test]')")
    templates = sorted(TEMPLATES.glob("*.yaml"))
    assert {p.name for p in templates} == {FLEET.name, DEPLOY.name}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, cfnlint.runner; sys.exit(cfnlint.runner.main())",
            "--include-checks",
            "I",
            "--format",
            "parseable",
            *map(str, templates),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


# -- Contributor Insights rules ---------------------------------------------------------------

# CloudWatchLogRule version 1, from "Contributor Insights rule syntax in CloudWatch" (CloudWatch
# User Guide) and PutInsightRule (a definition is at most 8192 ASCII characters).
_JSON_PATH = re.compile(r"^\$(\.[A-Za-z0-9_@-]+(\[[0-9]+\])*)+$")
_STRINGS = {"type": "array", "minItems": 1, "maxItems": 10, "items": {"type": "string"}}


def _operator(name: str, value: dict[str, Any]) -> dict[str, Any]:
    """A filter with exactly one matching operator: Match and `name`, nothing else."""
    return {
        "required": [name],
        "properties": {name: value},
        "propertyNames": {"enum": ["Match", name]},
    }


CLOUDWATCH_LOG_RULE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "CloudWatchLogRule, version 1",
    "type": "object",
    "additionalProperties": False,
    "required": ["Schema", "LogFormat", "Contribution", "AggregateOn"],
    "oneOf": [{"required": ["LogGroupNames"]}, {"required": ["LogGroupARNs"]}],
    "properties": {
        "Schema": {"const": {"Name": "CloudWatchLogRule", "Version": 1}},
        "LogGroupNames": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "pattern": r"^[.\-_/#A-Za-z0-9]{1,512}\*?$"},
        },
        "LogGroupARNs": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "pattern": "^arn:[a-z0-9-]+:logs:"},
        },
        "LogFormat": {"enum": ["JSON", "CLF"]},
        "Fields": {
            "type": "object",
            "propertyNames": {"pattern": "^[1-9][0-9]*$"},
            "additionalProperties": {"type": "string"},
        },
        "Contribution": {
            "type": "object",
            "additionalProperties": False,
            "required": ["Keys"],
            "properties": {
                "Keys": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 4,
                    "items": {"$ref": "#/$defs/field"},
                },
                "ValueOf": {"$ref": "#/$defs/field"},
                "Filters": {"type": "array", "maxItems": 4, "items": {"$ref": "#/$defs/filter"}},
            },
        },
        "AggregateOn": {"enum": ["Count", "Sum"]},
    },
    # ValueOf only, and always, with Sum
    "if": {"properties": {"AggregateOn": {"const": "Sum"}}},
    "then": {"properties": {"Contribution": {"required": ["ValueOf"]}}},
    "else": {"properties": {"Contribution": {"not": {"required": ["ValueOf"]}}}},
    "$defs": {
        "field": {"type": "string", "minLength": 1},
        "filter": {
            "type": "object",
            "required": ["Match"],
            "properties": {"Match": {"$ref": "#/$defs/field"}},
            "oneOf": [
                _operator("In", _STRINGS),
                _operator("NotIn", _STRINGS),
                _operator("StartsWith", _STRINGS),
                _operator("GreaterThan", {"type": "number"}),
                _operator("LessThan", {"type": "number"}),
                _operator("EqualTo", {"type": "number"}),
                _operator("NotEqualTo", {"type": "number"}),
                _operator("IsPresent", {"type": "boolean"}),
            ],
        },
    },
}


def rule_files() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RULES.glob("*.json"))}


def test_the_rule_schema_refuses_what_the_documentation_forbids() -> None:
    jsonschema.Draft202012Validator.check_schema(CLOUDWATCH_LOG_RULE_SCHEMA)
    validator = jsonschema.Draft202012Validator(CLOUDWATCH_LOG_RULE_SCHEMA)
    good = rule_files()["ssmdiag-failing-nodes"]
    assert validator.is_valid(good)
    keys = {"Keys": ["$.a"]}
    bad: list[dict[str, Any]] = [
        {**good, "Schema": {"Name": "CloudWatchLogRule", "Version": 2}},
        {**good, "LogFormat": "TEXT"},
        {**good, "AggregateOn": "Sum"},  # Sum without ValueOf
        {**good, "LogGroupARNs": ["arn:aws:logs:us-east-1:111122223333:log-group:x"]},  # both
        {**good, "Contribution": {"Keys": ["$.a"] * 5}},
        {**good, "Contribution": {**keys, "Filters": [{"Match": "$.a", "In": []}]}},
        {**good, "Contribution": {**keys, "Filters": [{"Match": "$.a", "Is": ["x"]}]}},
        {**good, "Contribution": {**keys, "Filters": [{"Match": "$.a", "EqualTo": "x"}]}},
        {
            **good,
            "Contribution": {**keys, "Filters": [{"Match": "$.a", "In": ["x"], "NotIn": ["y"]}]},
        },
        {**good, "Contribution": {**keys, "Filters": [{"Match": "$.a", "In": ["x"]}] * 5}},
    ]
    for body in bad:
        assert not validator.is_valid(body), body


def test_rules_follow_the_documented_schema_and_are_the_templates_rules() -> None:
    validator = jsonschema.Draft202012Validator(CLOUDWATCH_LOG_RULE_SCHEMA)
    files = rule_files()
    assert set(files) == {
        "ssmdiag-failing-nodes",
        "ssmdiag-failing-nodes-by-check",
        "ssmdiag-endpoint-failures-by-class",
    }
    template_rules = resources(load_template(FLEET), "AWS::CloudWatch::InsightRule")
    by_name = {props["RuleName"]: props for props in template_rules.values()}
    assert set(by_name) == set(files)
    for name, body in files.items():
        errors = sorted(e.message for e in validator.iter_errors(body))
        assert not errors, f"{name}: {errors}"
        assert body["LogGroupNames"] == [HEALTH_GROUP]
        contribution = body["Contribution"]
        paths = [*contribution["Keys"], *(f["Match"] for f in contribution.get("Filters", []))]
        assert all(_JSON_PATH.match(p) for p in paths), paths  # JSON logs: property format
        text = by_name[name]["RuleBody"]
        assert len(text) <= 8192 and text.isascii()
        assert json.loads(text) == body, f"{name}: the template and {name}.json differ"
        assert by_name[name]["RuleState"] == "ENABLED"


# -- The events: real `ssmdiag run --once` on three nodes --------------------------------------

# The simulated clock: runs are dated relative to NOW; queries look up to LATER.
NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
LATER = NOW + datetime.timedelta(minutes=5)
DAYS_AGO = datetime.timedelta(days=3)
HOUR = datetime.timedelta(minutes=65)  # "now": one heartbeat (hourly) and some slack


@dataclass
class Node:
    name: str
    instance_id: str
    directory: Path
    events: list[dict[str, Any]] = field(default_factory=list)  # dated by the simulated clock
    written: list[dict[str, Any]] = field(default_factory=list)  # as the daemon wrote them
    report: dict[str, Any] = field(default_factory=dict)  # `ssmdiag check`, the last config

    def state(self) -> dict[str, str]:
        data = json.loads((self.directory / "state" / "last-status.json").read_text())
        checks: dict[str, str] = data["checks"]
        return checks


class ClosingServer:
    """A TCP listener that accepts and closes at once: a TLS handshake that fails."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        self.sock.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def parse_ts(ts: str) -> datetime.datetime:
    at = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    return at.replace(tzinfo=datetime.timezone.utc)


def format_ts(at: datetime.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def run_node(node: Node, config: str, offset: datetime.timedelta) -> None:
    """One real `ssmdiag run --once`; its events dated as if it had started at NOW + offset."""
    path = node.directory / "ssmdiag.toml"
    path.write_text(config)
    health = node.directory / "health.json"
    before = health.stat().st_size if health.exists() else 0
    result = run_cli("run", "--once", "--config", str(path), timeout=120)
    assert result.returncode in (0, 1, 2, 3), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    with open(health, encoding="utf-8") as handle:
        handle.seek(before)
        written = [json.loads(line) for line in handle]
    assert written, "the run wrote no events"
    shift = NOW + offset - parse_ts(written[0]["ts"])  # the gaps between events are kept
    for event in written:
        node.written.append(event)
        node.events.append({**event, "ts": format_ts(parse_ts(event["ts"]) + shift)})
    checked = run_cli("check", "--format", "json", "--config", str(path), timeout=120)
    node.report = json.loads(checked.stdout)


def node_config(node: Node, agent: Path, endpoints: Mapping[str, str], extra: str = "") -> str:
    """A node of its own: the agent's custom identity gives it an instance id and a region."""
    agent_config = node.directory / "amazon-ssm-agent.json"
    identity = {"InstanceID": node.instance_id, "Region": "us-east-1"}
    agent_config.write_text(json.dumps({"Identity": {"CustomIdentities": [identity]}}))
    (node.directory / "agent-data").mkdir(exist_ok=True)
    lines = [
        "[agent]",
        f"binary = '{agent}'",
        f"config_file = '{agent_config}'",
        f"data_dir = '{node.directory / 'agent-data'}'",
        "[network]",
        "connect_timeout = 1.0",
        "probe_timeout = 2.0",
        "[endpoints]",
        *(f"{name} = '{url}'" for name, url in endpoints.items()),
        "[daemon]",
        f"state_dir = '{node.directory / 'state'}'",
        "[sinks]",
        "enabled = ['file']",
        f"file_path = '{node.directory / 'health.json'}'",
        "[fleet]",
        "label = 'web'",
        "inventory = false",
        extra,
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, fake_agent_factory: Callable[..., Path]
) -> Iterator[list[Node]]:
    """Three nodes, no network (every endpoint is a local port):
    A: agent 3.0.100.0 (below three feature minimums, port forwarding required), every
       endpoint refused; its first run 3 days ago, then a restart now: nothing changed,
       so only check.state restates its failures;
    B: agent 3.3.987.0; ssm's endpoint closes the TLS handshake, the others refuse; it
       ran 10 minutes ago;
    C: agent 3.0.100.0 three days ago, upgraded to 3.3.987.0 now (its feature warnings
       recover); endpoint checks disabled."""
    old = fake_agent_factory("3.0.100.0")
    new = fake_agent_factory("3.3.987.0")
    base = tmp_path_factory.mktemp("fleet")
    nodes = [Node(name, f"mi-0{name.lower() * 16}", base / name) for name in "ABC"]
    for node in nodes:
        node.directory.mkdir()
    a, b, c = nodes
    refused = f"https://127.0.0.1:{closed_port()}"
    everything_refused = dict.fromkeys(("ec2messages", "ssm", "ssmmessages"), refused)
    no_endpoints = (
        "[checks]\ndisable = ['endpoint.ec2messages', 'endpoint.ssm', 'endpoint.ssmmessages']"
    )
    server = ClosingServer()
    try:
        config_a = node_config(
            a, old, everything_refused, "[features]\nrequired = ['port_forwarding']"
        )
        run_node(a, config_a, -DAYS_AGO)
        run_node(a, config_a, datetime.timedelta(0))
        tls = {**everything_refused, "ssm": f"https://127.0.0.1:{server.port}"}
        run_node(b, node_config(b, new, tls), -datetime.timedelta(minutes=10))
        run_node(c, node_config(c, old, {}, no_endpoints), -DAYS_AGO)
        run_node(c, node_config(c, new, {}, no_endpoints), datetime.timedelta(0))
    finally:
        server.close()
    yield nodes


def all_events(nodes: Sequence[Node]) -> list[dict[str, Any]]:
    return sorted((e for n in nodes for e in n.events), key=lambda e: str(e["ts"]))


def problems_now(nodes: Sequence[Node], prefix: str = "") -> dict[tuple[str, str], str]:
    """(instance, check) -> status of every check warn, fail or error, by the state files."""
    return {
        (node.instance_id, check): status
        for node in nodes
        for check, status in node.state().items()
        if status in ("warn", "fail", "error") and check.startswith(prefix)
    }


def last_said(nodes: Sequence[Node], instance: str, check: str) -> dict[str, Any]:
    """The newest check.result or check.state of one check of one node (plain Python)."""
    said = [
        e
        for e in all_events(nodes)
        if e["instance_id"] == instance
        and e.get("check_id") == check
        and e["event"] in ("check.result", "check.state")
    ]
    return said[-1]


# -- A Logs Insights evaluator for the subset the saved queries use ----------------------------


class QueryError(Exception):
    """The query leaves the supported subset, or asks what the documentation leaves open."""


_TOKEN = re.compile(
    r"""\s*(?:
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<backtick>`[^`]+`)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op>!=|<=|>=|=~|[=<>(),\[\]|*])
  | (?P<word>[A-Za-z_@][A-Za-z0-9_.@]*)
  )""",
    re.VERBOSE,
)


@dataclass
class Token:
    kind: str
    text: str


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    at = 0
    while query[at:].strip():
        previous = tokens[-1].text.lower() if tokens else ""
        start = at + len(query[at:]) - len(query[at:].lstrip())
        if previous in ("like", "=~") and query[start] == "/":  # a /regex/
            end = start + 1
            while end < len(query) and (query[end] != "/" or query[end - 1] == "\\"):
                end += 1
            if end == len(query):
                raise QueryError("a /regex/ without its closing slash")
            tokens.append(Token("regex", query[start + 1 : end]))
            at = end + 1
            continue
        match = _TOKEN.match(query, at)
        if match is None or match.end() == at:
            raise QueryError(f"cannot read the query at {query[at : at + 20]!r}")
        kind = match.lastgroup or ""
        text = match.group(kind)
        if kind == "string":
            text = json.loads(text) if text[0] == '"' else text[1:-1]
        elif kind == "backtick":
            kind, text = "word", text[1:-1]
        tokens.append(Token(kind, text))
        at = match.end()
    return tokens


class Parser:
    """Expressions as nested tuples: ("field", name), ("cmp", op, a, b), ("in", a, [...])..."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self, offset: int = 0) -> Optional[Token]:
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, text: Optional[str] = None) -> Token:
        token = self.peek()
        if token is None:
            raise QueryError(f"the query ends where {text or 'more'} was expected")
        if text is not None and token.text.lower() != text:
            raise QueryError(f"expected {text!r}, found {token.text!r}")
        self.at += 1
        return token

    def accept(self, text: str) -> bool:
        token = self.peek()
        if token is not None and token.kind in ("word", "op") and token.text.lower() == text:
            self.at += 1
            return True
        return False

    def expression(self) -> Any:
        left = self.conjunction()
        while self.accept("or"):
            left = ("or", left, self.conjunction())
        return left

    def conjunction(self) -> Any:
        left = self.negation()
        while self.accept("and"):
            left = ("and", left, self.negation())
        return left

    def negation(self) -> Any:
        if self.accept("not"):
            return ("not", self.negation())
        return self.comparison()

    def comparison(self) -> Any:
        left = self.primary()
        token = self.peek()
        if token is None or token.kind not in ("word", "op"):
            return left
        word = token.text.lower()
        if word in ("=", "!=", "<", "<=", ">", ">="):
            self.take()
            return ("cmp", word, left, self.primary())
        following = self.peek(1)
        if word == "in" or (word == "not" and following is not None and following.text == "in"):
            negated = self.accept("not")
            self.take("in")
            result = ("in", left, self.literal_list())
            return ("not", result) if negated else result
        if word in ("like", "=~"):
            self.take()
            pattern = self.take()
            if pattern.kind == "regex":
                return ("regex", left, re.compile(pattern.text))
            if pattern.kind == "string":
                return ("contains", left, pattern.text)
            raise QueryError(f"like needs a /regex/ or a string, not {pattern.text!r}")
        return left

    def literal_list(self) -> list[Any]:
        self.take("[")
        values = [self.literal()]
        while self.accept(","):
            values.append(self.literal())
        self.take("]")
        return values

    def literal(self) -> Any:
        token = self.take()
        if token.kind == "string":
            return token.text
        if token.kind == "number":
            return float(token.text)
        raise QueryError(f"expected a string or a number, found {token.text!r}")

    def primary(self) -> Any:
        token = self.take()
        if token.kind == "string":
            return ("const", token.text)
        if token.kind == "number":
            return ("const", float(token.text))
        if token.text == "(":
            inner = self.expression()
            self.take(")")
            return inner
        if token.kind != "word":
            raise QueryError(f"unexpected {token.text!r}")
        following = self.peek()
        if following is None or following.text != "(":
            return ("field", token.text)
        function = token.text.lower()
        if function not in ("coalesce", "ispresent"):
            raise QueryError(f"function {token.text} is outside the supported subset")
        self.take("(")
        args = [self.expression()]
        while self.accept(","):
            args.append(self.expression())
        self.take(")")
        return ("call", function, args)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}


def evaluate(node: Any, row: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind == "const":
        return node[1]
    if kind == "field":
        return row.get(node[1])
    if kind == "call":
        values = [evaluate(arg, row) for arg in node[2]]
        if node[1] == "coalesce":
            return next((v for v in values if v is not None), None)
        return values[0] is not None  # ispresent
    if kind == "and":
        return bool(evaluate(node[1], row)) and bool(evaluate(node[2], row))
    if kind == "or":
        return bool(evaluate(node[1], row)) or bool(evaluate(node[2], row))
    if kind == "not":
        return not evaluate(node[1], row)
    value = evaluate(node[2] if kind == "cmp" else node[1], row)
    if value is None:
        return False  # a missing field matches no condition
    if kind == "in":
        return value in node[2]
    if kind == "regex":
        return isinstance(value, str) and node[2].search(value) is not None
    if kind == "contains":
        return isinstance(value, str) and node[2] in value
    other = evaluate(node[3], row)
    return other is not None and _COMPARE[node[1]](value, other)


def flatten(event: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """JSON fields as Logs Insights discovers them: nested objects as dotted names."""
    flat: dict[str, Any] = {}
    for key, value in event.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def timestamp_ms(ts: str) -> int:
    return int(parse_ts(ts).timestamp() * 1000)


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, value)
    return (2, str(value))


class LogsInsightsQuery:
    """One query: parsed once, run over events within a time range."""

    AGGREGATES = ("latest", "max", "min", "count")

    def __init__(self, text: str) -> None:
        self.text = text
        self.commands: list[tuple[str, Any]] = []
        segment: list[Token] = []
        for token in [*tokenize(text), Token("op", "|")]:
            if token.kind == "op" and token.text == "|":
                if not segment:
                    raise QueryError("an empty command between pipes")
                self.commands.append(self._command(segment))
                segment = []
            else:
                segment.append(token)
        if sum(name == "stats" for name, _ in self.commands) > 2:
            raise QueryError("at most two stats commands")

    def _command(self, tokens: list[Token]) -> tuple[str, Any]:
        parser = Parser(tokens[1:])
        name = tokens[0].text.lower()
        spec: Any
        if name == "filter":
            spec = parser.expression()
        elif name == "fields":
            spec = [self._aliased(parser)]
            while parser.accept(","):
                spec.append(self._aliased(parser))
        elif name == "stats":
            aggregates = [self._aggregate(parser)]
            while parser.accept(","):
                aggregates.append(self._aggregate(parser))
            groups: list[str] = []
            if parser.accept("by"):
                groups.append(parser.take().text)
                while parser.accept(","):
                    groups.append(parser.take().text)
            spec = (aggregates, groups)
        elif name == "sort":
            key = parser.take().text
            spec = (key, "desc" if parser.accept("desc") else "asc")
            parser.accept("asc")
        elif name == "limit":
            spec = int(parser.take().text)
        else:
            raise QueryError(f"command {name!r} is outside the supported subset")
        if parser.peek() is not None:
            raise QueryError(f"{name}: unexpected {parser.peek()!r}")
        return name, spec

    @staticmethod
    def _aliased(parser: Parser) -> tuple[Any, str]:
        start = parser.at
        expression = parser.expression()
        alias = " ".join(t.text for t in parser.tokens[start : parser.at])
        if parser.accept("as"):
            alias = parser.take().text
        return expression, alias

    @classmethod
    def _aggregate(cls, parser: Parser) -> tuple[str, str, str]:
        function = parser.take().text.lower()
        if function not in cls.AGGREGATES:
            raise QueryError(f"aggregate {function} is outside the supported subset")
        parser.take("(")
        argument = parser.take().text
        parser.take(")")
        alias = parser.take().text if parser.accept("as") else f"{function}({argument})"
        return function, argument, alias

    def run(
        self,
        events: Sequence[Mapping[str, Any]],
        start: datetime.datetime,
        end: datetime.datetime,
    ) -> list[dict[str, Any]]:
        low, high = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        rows: list[dict[str, Any]] = []
        for index, event in enumerate(events):
            row = flatten(event)
            row["@timestamp"] = timestamp_ms(event["ts"])
            row["@message"] = json.dumps(event)
            row["@index"] = index  # ingestion order, for equal timestamps
            if low <= row["@timestamp"] <= high:
                rows.append(row)
        aggregated = False
        for name, spec in self.commands:
            if name == "filter":
                rows = [row for row in rows if evaluate(spec, row)]
            elif name == "fields":
                rows = [{**row, **{alias: evaluate(e, row) for e, alias in spec}} for row in rows]
            elif name == "stats":
                rows = self._stats(rows, spec, aggregated)
                aggregated = True
            elif name == "sort":
                key, order = spec
                rows.sort(key=lambda r: _sort_key(r.get(key)), reverse=order == "desc")
            elif name == "limit":
                rows = rows[:spec]
        return rows

    @staticmethod
    def _stats(
        rows: list[dict[str, Any]],
        spec: tuple[list[tuple[str, str, str]], list[str]],
        again: bool,
    ) -> list[dict[str, Any]]:
        aggregates, groups = spec
        if again and rows:
            for function, argument, _ in [*aggregates, *(("by", g, g) for g in groups)]:
                if argument != "*" and argument not in rows[0]:
                    raise QueryError(f"a second stats sees only the first's fields: {argument}")
                if function == "latest":
                    raise QueryError("latest() after stats: no timestamps are left")
        grouped: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for row in rows:
            grouped.setdefault(tuple(row.get(g) for g in groups), []).append(row)
        result = []
        for key, members in grouped.items():
            out = dict(zip(groups, key))
            ordered = sorted(members, key=lambda r: (r.get("@timestamp", 0), r.get("@index", 0)))
            for function, argument, alias in aggregates:
                if function == "count":
                    out[alias] = sum(
                        argument == "*" or m.get(argument) is not None for m in members
                    )
                    continue
                values = [m.get(argument) for m in ordered]
                if function == "latest":
                    if any(v is None for v in values):
                        raise QueryError(
                            f"latest({argument}) over events some of which lack it: the"
                            " documentation does not say which value wins; coalesce() it first"
                        )
                    out[alias] = values[-1]
                else:
                    present = [v for v in values if v is not None]
                    out[alias] = (max if function == "max" else min)(present) if present else None
            result.append(out)
        return result


def test_the_evaluator_refuses_what_it_does_not_know() -> None:
    for text in (
        "parse @message 'a=*' as a",
        "filter x = 1 | dedup y",
        "stats avg(x) by y",
        "filter strlen(x) > 2",
        "filter x like /unclosed",
        "stats count(*) as a by b | stats count(*) as c by a | stats count(*) as d by c",
    ):
        with pytest.raises(QueryError):
            LogsInsightsQuery(text)
    day = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    events = [
        {"ts": "2026-01-01T00:00:00.000Z", "k": "a", "x": "1", "n": {"m": "deep"}},
        {"ts": "2026-01-01T00:00:01.000Z", "k": "a"},
        {"ts": "2026-01-01T00:00:02.000Z", "k": "b", "x": "2"},
    ]
    with pytest.raises(QueryError, match="coalesce"):
        LogsInsightsQuery("stats latest(x) by k").run(events, day, day + DAYS_AGO)
    query = LogsInsightsQuery(
        'fields coalesce(x, "-") as y | stats latest(y) as z, count(*) as c by k | sort k desc'
    )
    assert query.run(events, day, day + DAYS_AGO) == [
        {"k": "b", "z": "2", "c": 1},
        {"k": "a", "z": "-", "c": 2},
    ]
    deep = LogsInsightsQuery('filter n.m like /^de/ and k in ["a"] and not x = "2"')
    assert len(deep.run(events, day, day + DAYS_AGO)) == 1
    window = day + datetime.timedelta(seconds=1)
    assert len(LogsInsightsQuery("filter k = 'a'").run(events, window, day + DAYS_AGO)) == 1


def saved_queries() -> dict[str, str]:
    definitions = resources(load_template(FLEET), "AWS::Logs::QueryDefinition")
    queries = {props["Name"]: props["QueryString"] for props in definitions.values()}
    assert set(queries) == {
        "ssmdiag/which node fails which check now",
        "ssmdiag/endpoint failures by class",
        "ssmdiag/nodes whose agent is below a feature minimum",
    }
    for props in definitions.values():
        assert props["LogGroupNames"] == [HEALTH_GROUP]
        assert len(props["QueryString"]) <= 10_000
    return queries


def test_which_node_fails_which_check_now_with_the_fix(fleet: list[Node]) -> None:
    query = LogsInsightsQuery(saved_queries()["ssmdiag/which node fails which check now"])
    rows = query.run(all_events(fleet), LATER - HOUR, LATER)
    found = {(r["instance_id"], r["check_id"]): r for r in rows}
    assert {key: r["status_now"] for key, r in found.items()} == problems_now(fleet)
    a, _, c = fleet
    # A's failures began 3 days ago; its restart's check.state events keep them here
    assert (a.instance_id, "endpoint.ssm") in found
    assert (a.instance_id, "feature.port_forwarding") in found
    # C's feature warnings recovered (check.result ok is the latest): not listed
    assert not any(key == (c.instance_id, "feature.shell_profiles") for key in found)
    for (instance, check), row in found.items():
        newest = last_said(fleet, instance, check)
        assert row["why"] == newest["summary"]
        assert row["how_to_fix"] == newest["remediation"] and row["how_to_fix"] != "-"
        assert row["hostname"] == newest["hostname"]
    statuses = [r["status_now"] for r in rows]
    assert statuses == sorted(statuses)  # error, fail, then warn
    # without the hourly check.state, A's day-old failures would be missing
    without_state = [e for e in all_events(fleet) if e["event"] != "check.state"]
    rows = query.run(without_state, LATER - HOUR, LATER)
    assert not any(r["instance_id"] == a.instance_id for r in rows)


def test_endpoint_failures_by_class(fleet: list[Node]) -> None:
    query = LogsInsightsQuery(saved_queries()["ssmdiag/endpoint failures by class"])
    rows = query.run(all_events(fleet), LATER - datetime.timedelta(days=30), LATER)
    got = {(r["check_id"], r["failure_class"]): r["nodes"] for r in rows}
    # what a separate `ssmdiag check` says of each node's endpoints
    expected: Counter[tuple[str, str]] = Counter()
    for node in fleet:
        for check in node.report["checks"]:
            if check["id"].startswith("endpoint.") and check["status"] == "fail":
                expected[check["id"], check["details"]["failure"]] += 1
    assert got == dict(expected)
    assert sum(got.values()) == 6  # A's three, B's three
    assert got[("endpoint.ssm", "connection_refused")] == 1  # A; B's ssm is another class
    assert len({cls for _, cls in got}) == 2
    counts = [r["nodes"] for r in rows]
    assert counts == sorted(counts, reverse=True)


def test_nodes_whose_agent_is_below_a_feature_minimum(fleet: list[Node]) -> None:
    name = "ssmdiag/nodes whose agent is below a feature minimum"
    rows = LogsInsightsQuery(saved_queries()[name]).run(all_events(fleet), LATER - HOUR, LATER)
    found = {(r["instance_id"], r["check_id"]): r for r in rows}
    assert {key: r["status_now"] for key, r in found.items()} == problems_now(fleet, "feature.")
    a = fleet[0].instance_id
    assert set(found) == {
        (a, "feature.shell_profiles"),
        (a, "feature.port_forwarding"),
        (a, "feature.cloudwatch_streaming"),
    }
    assert found[(a, "feature.port_forwarding")]["status_now"] == "fail"  # required by A's config
    for row in rows:
        assert row["agent_version_now"] == "3.0.100.0"
        assert "3.0.100.0" in row["why"] and row["how_to_fix"].startswith("Update SSM Agent")


def test_contributor_insights_rules_count_what_they_say(fleet: list[Node]) -> None:
    """The rules applied to the same events with the documented filter semantics
    (bench/cost.py's matcher, which also prices the matched events)."""
    spec = importlib.util.spec_from_file_location("bench_cost", REPO / "bench" / "cost.py")
    assert spec is not None and spec.loader is not None
    cost = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = cost  # its dataclasses look their module up
    spec.loader.exec_module(cost)
    rules = rule_files()
    hour = [e for e in all_events(fleet) if parse_ts(e["ts"]) >= LATER - HOUR]

    def contributors(rule: str, events: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
        keys = rules[rule]["Contribution"]["Keys"]
        return Counter(
            tuple(cost.json_path(e, k) for k in keys)
            for e in events
            if cost.rule_matches(rules[rule], e)
        )

    failing_nodes = contributors("ssmdiag-failing-nodes", hour)
    assert set(failing_nodes) == {(n.instance_id, n.events[-1]["hostname"]) for n in fleet}
    by_check = contributors("ssmdiag-failing-nodes-by-check", hour)
    expected = Counter(check for (_, check), s in problems_now(fleet).items() if s == "fail")
    assert {key[0]: n for key, n in by_check.items()} == dict(expected)
    by_class = contributors("ssmdiag-endpoint-failures-by-class", all_events(fleet))
    assert sum(by_class.values()) == 6
    assert by_class[("endpoint.ssm", "connection_refused")] == 1


# -- Embedded Metric Format -------------------------------------------------------------------

# "Specification: Embedded metric format" (CloudWatch User Guide): the JSON schema it
# publishes (draft-07); dimension sets of up to 30 keys (the limit since 2023).
_UNITS = (
    "Seconds|Microseconds|Milliseconds|Bytes|Kilobytes|Megabytes|Gigabytes|Terabytes|Bits|"
    "Kilobits|Megabits|Gigabits|Terabits|Percent|Count|Bytes/Second|Kilobytes/Second|"
    "Megabytes/Second|Gigabytes/Second|Terabytes/Second|Bits/Second|Kilobits/Second|"
    "Megabits/Second|Gigabits/Second|Terabits/Second|Count/Second|None"
)
_NAME = {"type": "string", "pattern": "^(.*)$", "minLength": 1, "maxLength": 255}
EMF_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "title": "Root Node",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "title": "Metadata",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer"},
                "CloudWatchMetrics": {
                    "type": "array",
                    "title": "MetricDirectives",
                    "items": {
                        "type": "object",
                        "title": "MetricDirective",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "properties": {
                            "Namespace": _NAME,
                            "Dimensions": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "array",
                                    "minItems": 0,
                                    "maxItems": 30,
                                    "items": _NAME,
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "title": "MetricDefinition",
                                    "required": ["Name"],
                                    "properties": {
                                        "Name": _NAME,
                                        "Unit": {"type": "string", "pattern": f"^({_UNITS})$"},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def check_emf(event: Mapping[str, Any]) -> None:
    """The schema, then the rules the specification states in words."""
    jsonschema.Draft7Validator(EMF_SCHEMA).validate(event)
    assert len(json.dumps(event).encode()) <= 256 * 1024
    for directive in event["_aws"]["CloudWatchMetrics"]:
        names = [m["Name"] for m in directive["Metrics"]]
        dimensions = {d for dimension_set in directive["Dimensions"] for d in dimension_set}
        for dimension in dimensions:  # dimension targets: root members, string values
            assert isinstance(event.get(dimension), str), dimension
            assert 1 <= len(event[dimension]) <= 1024
        for name in names:  # metric targets: root members, numbers
            value = event.get(name)
            assert isinstance(value, (int, float)) and not isinstance(value, bool), name
        assert not dimensions & set(names)


def test_the_emf_schema_is_the_documented_one() -> None:
    jsonschema.Draft7Validator.check_schema(EMF_SCHEMA)
    example = {  # the specification's own valid example
        "_aws": {
            "Timestamp": 1574109732004,
            "CloudWatchMetrics": [
                {
                    "Namespace": "lambda-function-metrics",
                    "Dimensions": [["functionVersion"]],
                    "Metrics": [{"Name": "time", "Unit": "Milliseconds"}],
                }
            ],
        },
        "functionVersion": "$LATEST",
        "time": 100,
        "requestId": "989ffbf8-9ace-4817-a57c-e4dd734019ee",
    }
    check_emf(example)
    with pytest.raises(jsonschema.ValidationError):
        check_emf({**example, "_aws": {"CloudWatchMetrics": []}})  # no Timestamp
    with pytest.raises(jsonschema.ValidationError):
        check_emf({**example, "_aws": {**example["_aws"], "Timestamp": "now"}})
    with pytest.raises(AssertionError):
        check_emf({**example, "functionVersion": 7})  # a dimension must be a string


@pytest.fixture(scope="module")
def summaries(fleet: list[Node]) -> list[dict[str, Any]]:
    found = [e for node in fleet for e in node.written if e["event"] == "cycle.summary"]
    assert len(found) == 5  # one per run
    return found


def test_cycle_summary_is_valid_emf_with_the_contracts_metrics(
    summaries: list[dict[str, Any]],
) -> None:
    """Valid EMF (asserted at once), then the contract's metrics (all differences listed)."""
    problems: dict[str, str] = {}  # what differs -> one example
    for summary in summaries:
        check_emf(summary)
        (directive,) = summary["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == Config().metrics_namespace == "ssmdiag"
        assert directive["Dimensions"] == EMF_DIMENSIONS  # never per instance
        assert summary["Region"] == "us-east-1" and summary["Fleet"] == "web"
        assert abs(summary["_aws"]["Timestamp"] - timestamp_ms(summary["ts"])) < 60_000
        names = {m["Name"] for m in directive["Metrics"]}
        assert all(m["Unit"] == "Count" for m in directive["Metrics"])
        # CheckFailing_<id> for exactly the failing checks (problems are worst first)
        fails = set(summary["problems"][: summary["counts"].get("fail", 0)])
        assert {n.removeprefix("CheckFailing_") for n in names if n.startswith("Check")} == fails
        weight = summary["NodesChecked"]
        for check in fails:
            assert summary[f"CheckFailing_{check}"] == weight
        # the weight: the time until the node's next summary line over EMF_PERIOD_S, so a
        # Sum over that period counts this node once (a healthy node writes one per period)
        until_next = summary["next_check_s"]
        if summary["status"] == "ok":
            until_next = max(until_next, EMF_PERIOD_S)
        expected = until_next / EMF_PERIOD_S
        # (next_check_s is rounded to the second; the weight is not)
        if abs(weight - expected) > 0.01 * expected + 0.5 / EMF_PERIOD_S:
            example = f"{weight} for next_check_s {summary['next_check_s']}"
            problems.setdefault(f"NodesChecked is not next_check_s / {EMF_PERIOD_S}", example)
        for name in ("NodesFailing", "NodesWarning"):
            status = "fail" if name == "NodesFailing" else "warn"
            # written (as the weight) only when the node is in that state: zeros are left
            # out of the line, and the alarms treat missing data as 0
            if (name in names) != (summary["status"] == status):
                problems.setdefault(f"{name} present when status is not {status}", status)
            elif name in names and summary[name] != weight:
                problems.setdefault(f"{name} is not the weight", str(summary[name]))
    assert not problems, [f"{what} (e.g. {example})" for what, example in problems.items()]


def test_every_event_follows_the_contract(fleet: list[Node]) -> None:
    """The fields the fleet's queries and rules read, with their types, on every event as
    the daemon wrote it."""
    required = {
        "cycle.summary": {"status", "cycle", "next_check_s"},
        "check.result": {"check_id", "status", "previous_status", "summary", "agent_version"},
        "check.state": {"check_id", "status", "summary", "remediation", "agent_version"},
        "heartbeat": {"status", "checks", "problems", "agent_version", "tool_version", "uptime_s"},
    }
    every = {"ts", "level", "event", "instance_id", "hostname", "region", "fleet"}
    problems: dict[str, str] = {}  # what differs -> one example
    for event in (e for node in fleet for e in node.written):
        kind = event["event"]
        missing = (every | required.get(kind, set())) - set(event)
        if missing:
            problems.setdefault(f"{kind} lacks {sorted(missing)}", "")
        if not TS_FORMAT.match(event["ts"]):
            problems.setdefault("ts is not ISO 8601 UTC with milliseconds", event["ts"])
        if event.get("level") not in ("info", "warning", "error"):
            problems.setdefault(f"{kind} level is not info, warning or error", str(event))
        instance = event.get("instance_id")
        if instance is not None and not INSTANCE_ID.match(instance):
            problems.setdefault(f"{kind} instance_id is not i-... or mi-...", instance)
        troubled = kind in ("check.result", "check.state") and event["status"] in ("warn", "fail")
        if troubled and not event.get("remediation"):
            problems.setdefault(f"{kind} warn/fail without remediation", event["check_id"])
        if kind == "cycle.summary" and event["status"] != "ok" and "worst" not in event:
            problems.setdefault("cycle.summary not ok without worst", str(event))
        if kind in required and event.get("instance_id") is None:
            problems.setdefault(f"{kind} without the instance id the identity found", "null")
    assert not problems, [f"{what} (e.g. {example})" for what, example in problems.items()]


# -- The fleet template: alarms and dashboard on the contract's metrics ------------------------

_NO_VALUE = object()


def resolve(node: Any, params: Mapping[str, Any], conditions: Mapping[str, bool]) -> Any:
    """The intrinsic functions the templates use (Ref, Fn::If, Fn::Sub), for given values."""
    if isinstance(node, list):
        return [v for v in (resolve(i, params, conditions) for i in node) if v is not _NO_VALUE]
    if not isinstance(node, Mapping):
        return node
    if len(node) == 1:
        ((key, value),) = node.items()
        if key == "Ref":
            return _NO_VALUE if value == "AWS::NoValue" else params[value]
        if key == "Fn::If":
            name, yes, no = value
            return resolve(yes if conditions[name] else no, params, conditions)
        if key == "Fn::Sub":
            text, variables = (value, {}) if isinstance(value, str) else value
            scope = {**params, **{k: resolve(v, params, conditions) for k, v in variables.items()}}
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(scope[m.group(1)]), text)
        assert not key.startswith("Fn::"), f"{key} is not resolved here"
    resolved = ((k, resolve(v, params, conditions)) for k, v in node.items())
    return {k: v for k, v in resolved if v is not _NO_VALUE}


TOPIC = "arn:aws:sns:eu-west-1:111122223333:oncall"


@pytest.mark.parametrize(
    "given",
    [{}, {"FleetLabel": "web", "MetricRegion": "us-east-1", "AlarmTopicArn": TOPIC}],
    ids=["defaults", "one-fleet"],
)
def test_alarms_and_dashboard_read_the_contracts_metrics(given: dict[str, Any]) -> None:
    template = load_template(FLEET)
    assert template["Parameters"]["MetricPeriodSeconds"]["Default"] == EMF_PERIOD_S
    params = {k: v.get("Default") for k, v in template["Parameters"].items()}
    params.update(given)
    params.update({"AWS::Region": "eu-west-1", "AWS::StackName": "ssmdiag"})
    conditions = {
        "HasTopic": bool(params["AlarmTopicArn"]),
        "HasFleet": bool(params["FleetLabel"]),
        "HasMetricRegion": bool(params["MetricRegion"]),
        "MakeLogGroups": params["CreateLogGroups"] == "true",
    }
    assert params["MetricsNamespace"] == Config().metrics_namespace
    region = params["MetricRegion"] or "eu-west-1"
    dims = [{"Name": "Region", "Value": region}]
    if params["FleetLabel"]:
        dims.insert(0, {"Name": "Fleet", "Value": "web"})
    assert [d["Name"] for d in dims] in EMF_DIMENSIONS

    alarms = {
        name: resolve(props, params, conditions)
        for name, props in resources(template, "AWS::CloudWatch::Alarm").items()
    }
    count = alarms["NodesFailingAlarm"]
    assert (count["MetricName"], count["Statistic"], count["Dimensions"]) == (
        "NodesFailing",
        "Sum",
        dims,
    )
    assert count["Period"] == params["MetricPeriodSeconds"]
    assert count["TreatMissingData"] == "notBreaching"  # no failing node, no data
    percent = alarms["FailingPercentAlarm"]
    stats = {m["Id"]: m["MetricStat"] for m in percent["Metrics"] if "MetricStat" in m}
    assert {i: s["Metric"]["MetricName"] for i, s in stats.items()} == {
        "failing": "NodesFailing",
        "checked": "NodesChecked",
    }
    for stat in stats.values():
        assert (stat["Metric"]["Dimensions"], stat["Stat"]) == (dims, "Sum")
        assert stat["Period"] == params["MetricPeriodSeconds"]
    (expression,) = [m for m in percent["Metrics"] if "Expression" in m]
    assert expression["Expression"] == "100 * FILL(failing, 0) / checked"
    assert expression["ReturnData"] is True
    wanted = [TOPIC] if params["AlarmTopicArn"] else None
    for alarm in alarms.values():
        assert alarm.get("AlarmActions") == wanted and alarm.get("OKActions") == wanted

    # the log groups are the ones the agent fragments ship to
    groups = resources(template, "AWS::Logs::LogGroup")
    shipped = {
        entry["log_group_name"]
        for name in ("ssmdiag-linux.json", "ssmdiag-windows.json")
        for kind in json.loads((FRAGMENTS / name).read_text())["logs"]["logs_collected"].values()
        for entry in kind["collect_list"]
    }
    assert (
        {g["LogGroupName"] for g in groups.values()} == shipped == {HEALTH_GROUP, "/ssmdiag/events"}
    )

    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    widgets = json.loads(resolve(dashboard["DashboardBody"], params, conditions))["widgets"]
    queries = {" ".join(q.split()) for q in saved_queries().values()}
    logs = [w["properties"]["query"] for w in widgets if w["type"] == "log"]
    assert len(logs) == len(queries)
    for text in logs:
        source, _, query = text.partition(" | ")
        assert source == f"SOURCE '{HEALTH_GROUP}'"
        assert " ".join(query.split()) in queries  # the saved queries, word for word
    insight = [w["properties"]["insightRule"] for w in widgets if "insightRule" in w["properties"]]
    assert {rule["ruleName"] for rule in insight} == set(rule_files())
    for widget in widgets:
        assert widget["x"] + widget["width"] <= 24
        properties = widget["properties"]
        assert properties.get("region", "eu-west-1") == "eu-west-1"
        for metric in properties.get("metrics", []):
            if isinstance(metric[0], dict):  # an expression
                expression = metric[0]["expression"]
                if expression.startswith("SEARCH("):
                    schema = ",".join([params["MetricsNamespace"], *(d["Name"] for d in dims)])
                    assert expression.startswith(f"SEARCH('{{{schema}}} ")
                    assert all(f'{d["Name"]}="{d["Value"]}"' in expression for d in dims)
                    assert " CheckFailing'" in expression
                continue
            namespace, name, *rest = metric
            assert namespace == params["MetricsNamespace"]
            assert name in ("NodesChecked", "NodesFailing", "NodesWarning")
            pairs = [x for x in rest if not isinstance(x, dict)]
            assert [{"Name": n, "Value": v} for n, v in zip(pairs[::2], pairs[1::2])] == dims


# -- The deploy template: State Manager associations -------------------------------------------

# The parameters of the two documents the associations run, with their allowed values.
DOCUMENT_PARAMETERS: dict[str, dict[str, Optional[set[str]]]] = {
    "AWS-ConfigureAWSPackage": {
        "action": {"Install", "Uninstall"},
        "installationType": {"Uninstall and reinstall", "In-place update"},
        "name": None,
        "version": None,
        "additionalArguments": None,
    },
    "AmazonCloudWatch-ManageAgent": {
        "action": {
            "configure",
            "configure (append)",
            "configure (remove)",
            "start",
            "status",
            "stop",
        },
        "mode": {"ec2", "onPremise", "auto"},
        "optionalConfigurationSource": {"ssm", "default", "all"},
        "optionalConfigurationLocation": None,
        "optionalRestart": {"yes", "no"},
    },
}


def test_deploy_template_installs_the_package_and_appends_the_agent_fragments() -> None:
    template = load_template(DEPLOY)
    params = {k: v.get("Default") for k, v in template["Parameters"].items()}
    assert params["PackageName"] == "ssmdiag"
    assert (
        params["InstallationType"]
        in DOCUMENT_PARAMETERS["AWS-ConfigureAWSPackage"]["installationType"]
    )  # type: ignore[operator]
    parameters = resources(template, "AWS::SSM::Parameter")
    assert len(parameters) == 2
    for props, name in zip(parameters.values(), ("linux", "windows")):
        assert props["Name"] == f"AmazonCloudWatch-ssmdiag-{name}"  # the agent policy's prefix
        shipped = json.loads((FRAGMENTS / f"ssmdiag-{name}.json").read_text())
        assert json.loads(props["Value"]) == shipped
        assert len(props["Value"].encode()) <= 4096  # the Standard tier
    associations = resources(template, "AWS::SSM::Association")
    documents = Counter(a["Name"] for a in associations.values())
    assert documents == {"AWS-ConfigureAWSPackage": 2, "AmazonCloudWatch-ManageAgent": 2}
    for name, association in associations.items():
        allowed = DOCUMENT_PARAMETERS[association["Name"]]
        for key, values in association["Parameters"].items():
            assert key in allowed, f"{name}: {key}"
            choices = allowed[key]
            if choices is not None and isinstance(values, list):
                literal = [v for v in values if isinstance(v, str)]
                assert set(literal) <= choices, f"{name}: {key} = {literal}"
    install = associations["InstallSsmdiag"]["Parameters"]
    assert install["action"] == ["Install"] and install["name"] == [{"Ref": "PackageName"}]
    for name in ("LinuxCloudWatchFragment", "WindowsCloudWatchFragment"):
        fragment = associations[name]["Parameters"]
        assert fragment["action"] == ["configure (append)"]  # the node's own config stays
        assert fragment["optionalConfigurationSource"] == ["ssm"]


def test_the_agent_fragments_name_one_stream_per_node() -> None:
    """{instance_id} alone is i-UNKNOWN on every hybrid node: the hostname tells them apart."""
    for name in ("ssmdiag-linux.json", "ssmdiag-windows.json"):
        collected = json.loads((FRAGMENTS / name).read_text())["logs"]["logs_collected"]
        for kind in collected.values():
            for entry in kind["collect_list"]:
                assert entry["log_stream_name"] == "{instance_id}/{hostname}"


# -- The cost script ----------------------------------------------------------------------------


def test_cost_script_measures_and_prices() -> None:
    """bench/cost.py end to end: measured with the real daemon loop, priced, within bounds."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "cost.py"), "--nodes", "10000", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    bills = json.loads(result.stdout[result.stdout.index("\n[") + 1 :])
    healthy = next(b for b in bills if b["scenario"] == "all healthy")
    failing = next(b for b in bills if b["scenario"] != "all healthy")
    assert healthy["nodes"] == 10_000 and 0 < healthy["total"] < failing["total"]
    assert healthy["metrics_count"] >= 2  # [Region] and [Fleet, Region] of NodesChecked
    assert "Goal: 10,000 healthy nodes under $20/month" in result.stdout
