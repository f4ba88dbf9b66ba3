"""ssmdiag reads amazon-ssm-agent.json exactly as the real agent does.

The oracle is `agent-config-probe` (../shared/real-agent): the agent's own appconfig
and endpoint code, built from its public source (3.3.1142.0). For every config, ssmdiag
must agree with it on: refuse or accept; the ssm/ec2messages URLs and signing regions;
the ssmmessages region and URL (or none); the effective Identity.ConsumptionOrder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ssmdiag.agent_config import (
    AGENT_CONFIG_FIELDS,
    CUSTOM_IDENTITY_FIELDS,
    AgentConfigFacts,
    judge_agent_config_text,
)
from ssmdiag.endpoints import derive_agent_endpoints, plan_endpoints
from tests.lab.real_agent import ProbeResult, agent_config_probe, require_real_agent

CONTRACTS = Path(__file__).parent / "data" / "agent" / "contracts.go"


def ssmdiag_view(text: str, identity_region: str) -> dict[str, Any]:
    facts = judge_agent_config_text(AgentConfigFacts("x.json", "default", "ok"), text)
    if facts.state in ("invalid", "refused"):
        return {"refused": True, "why": facts.message}
    assert facts.state == "ok", facts
    assert facts.decoded is not None
    decoded = facts.decoded
    derived = derive_agent_endpoints(identity_region, facts.settings)
    return {
        "refused": False,
        "ssm.url": derived["ssm"].url,
        "ssm.signing_region": derived["ssm"].signing_region,
        "ec2messages.url": derived["ec2messages"].url,
        "ec2messages.signing_region": derived["ec2messages"].signing_region,
        "ssmmessages.region": derived["ssmmessages"].signing_region,
        "ssmmessages.url": derived["ssmmessages"].url,
        "Identity.ConsumptionOrder": decoded.get("Identity.ConsumptionOrder")
        or ["OnPrem", "EC2", "CustomIdentity"],
        "Agent.Region": decoded.get("Agent.Region") or "",
        "Agent.ServiceDomain": decoded.get("Agent.ServiceDomain") or "",
        "Mgs.Endpoint": decoded.get("Mgs.Endpoint") or "",
    }


def agent_view(probe: ProbeResult) -> dict[str, Any]:
    if probe.refused:
        return {"refused": True}
    keys = (
        "ssm.url",
        "ssm.signing_region",
        "ec2messages.url",
        "ec2messages.signing_region",
        "ssmmessages.region",
        "ssmmessages.url",
        "Identity.ConsumptionOrder",
        "Agent.Region",
        "Agent.ServiceDomain",
        "Mgs.Endpoint",
    )
    return {"refused": False, **{k: probe.values[k] for k in keys}}


def assert_agrees(tmp_path: Path, text: str, identity_region: str) -> dict[str, Any]:
    path = tmp_path / "amazon-ssm-agent.json"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    ours = ssmdiag_view(text, identity_region)
    theirs = agent_view(agent_config_probe(path, identity_region))
    why = ours.pop("why", None)
    assert ours == theirs, f"config {text!r} region {identity_region!r} (ssmdiag: {why})"
    return ours


# The kinds of files fleets write, and the spellings the issue names.
NAMED_CASES = [
    ("healthy empty", "{}", "us-east-1"),
    ("null file", "null", "us-east-1"),
    ("region 5", '{"Agent": {"Region": 5}}', "us-east-1"),
    ("SelfUpdate string", '{"Agent": {"SelfUpdate": "true"}}', "us-east-1"),
    ("string for a list", '{"Identity": {"ConsumptionOrder": "EC2"}}', "us-east-1"),
    ("1e3 integer", '{"Mds": {"CommandWorkersLimit": 1e3}}', "us-east-1"),
    ("1.0 integer", '{"Ssm": {"HealthFrequencyMinutes": 1.0}}', "us-east-1"),
    ("int64 overflow", '{"Mgs": {"StopTimeoutMillis": 9223372036854775808}}', "us-east-1"),
    ("NaN", '{"Mds": {"CommandWorkersLimit": NaN}}', "us-east-1"),
    ("trailing garbage", '{"Agent": {"Region": "eu-west-1"}} }', "us-east-1"),
    ("top-level array", "[]", "us-east-1"),
    ("section string", '{"Agent": "eu-west-1"}', "us-east-1"),
    ("Agent.Region signs only", '{"Agent": {"Region": "eu-west-1"}}', "us-east-1"),
    ("Mgs.Region", '{"Mgs": {"Region": "eu-central-1"}}', "us-east-1"),
    ("Mgs host:port", '{"Mgs": {"Endpoint": "ssmmessages.example.internal:8443"}}', "us-east-1"),
    ("Mgs bare host", '{"Mgs": {"Endpoint": "vpce-1.ssmmessages.example.com"}}', "us-east-1"),
    ("Mgs https port", '{"Mgs": {"Endpoint": "https://mgs.example.com:8443/x"}}', "us-east-1"),
    ("Mgs IP:port", '{"Mgs": {"Endpoint": "10.0.0.5:443"}}', "us-east-1"),
    ("Ssm http", '{"Ssm": {"Endpoint": "http://ssm.internal.example"}}', "us-east-1"),
    ("Mds host:port", '{"Mds": {"Endpoint": "ec2messages.example:8443"}}', "us-east-1"),
    ("ServiceDomain dot", '{"Agent": {"ServiceDomain": ".example.org"}}', "us-east-1"),
    ("ServiceDomain", '{"Agent": {"ServiceDomain": "amazonaws.com.cn"}}', "cn-north-1"),
    ("duplicate keys", '{"agent": {"region": "a-1"}, "AGENT": {"Region": "b-2"}}', "us-east-1"),
    (
        "sections merge",
        '{"Agent": {"Region": "eu-west-1"}, "agent": {"ServiceDomain": "x.example"}}',
        "us-east-1",
    ),
    ("Kelvin key", '{"\u212ams": {"Endpoint": "k.example"}, "Mgs": {}}', "us-east-1"),
    ("long-s key", '{"\u017fsm": {"Endpoint": "s.example"}}', "us-east-1"),
    ("order lowercase", '{"Identity": {"ConsumptionOrder": ["ec2", "OnPrem"]}}', "us-east-1"),
    ("order nulls", '{"Identity": {"ConsumptionOrder": [null, null, "EC2", null]}}', "us-east-1"),
    ("custom identity null", '{"Identity": {"CustomIdentities": [null]}}', "us-east-1"),
    ("custom identity", '{"Identity": {"CustomIdentities": [{"Region": 1}]}}', "us-east-1"),
    ("no identity region", '{"Agent": {"Region": "eu-west-1"}}', ""),
    ("long region", "{}", "a" * 101),
    ("fips region", '{"Agent": {"Region": "fips-us-east-1"}}', ""),
    ("bad region", "{}", "us-east-1.evil.com#"),
    ("bom", "\ufeff{}", "us-east-1"),
    ("control char", '{"Agent": {"Region": "a\u0001"}}', "us-east-1"),
    ("lone surrogate", '{"Mgs": {"Endpoint": "h\\ud800.example"}}', "us-east-1"),
]


@pytest.mark.parametrize(
    ("text", "region"), [c[1:] for c in NAMED_CASES], ids=[c[0] for c in NAMED_CASES]
)
def test_named_configs_agree_with_the_agent(tmp_path: Path, text: str, region: str) -> None:
    require_real_agent(root=False)
    assert_agrees(tmp_path, text, region)


def test_what_the_named_cases_mean_for_users(tmp_path: Path) -> None:
    """Spot checks of the agreed answers, so the table above is not only self-consistent."""
    require_real_agent(root=False)
    signed = assert_agrees(tmp_path, '{"Agent": {"Region": "eu-west-1"}}', "us-east-1")
    assert signed["ssm.url"] == "https://ssm.us-east-1.amazonaws.com"
    assert signed["ssm.signing_region"] == "eu-west-1"
    colon = assert_agrees(tmp_path, '{"Mgs": {"Endpoint": "h.example:8443"}}', "us-east-1")
    assert colon["ssmmessages.url"] == ""
    assert assert_agrees(tmp_path, '{"Agent": {"Region": 5}}', "us-east-1")["refused"]
    assert not assert_agrees(tmp_path, "null", "us-east-1")["refused"]


# --- property test: generated configs -------------------------------------------------

REGIONS = st.sampled_from(
    ["us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1", "us-isob-east-1", "ap-south-2"]
) | st.sampled_from(["", "x y", "-x-", "us-east-1-fips", "a" * 101, "../../etc", "US-EAST-1"])
HOSTS = st.sampled_from(
    ["ssm.example.com", "vpce-0a.ssm.us-east-1.vpce.amazonaws.com", "10.0.0.5", "[::1]", "h"]
)
URLS = st.one_of(
    st.builds(
        lambda s, h, p, tail: f"{s}{h}{p}{tail}",
        st.sampled_from(
            [
                "",
                "https://",
                "http://",
                "wss://",
                "HTTPS://",
                "ftp://",
                "//",
                " https://",
                "u:p@",
                "https://u:p@",
            ]
        ),
        HOSTS,
        st.sampled_from(["", ":443", ":8443", ":abc", ":", ":99999"]),
        st.sampled_from(["", "/", "/path", "?q", "#f", "%zz", " x"]),
    ),
    st.text(alphabet="ab.:/%[]@#? -", max_size=12),
)
DOMAINS = st.sampled_from(["", "amazonaws.com", ".example.org", "example..org", "x_y.test", "a:b"])


def _case(name: str) -> st.SearchStrategy[str]:
    variants = [name, name.lower(), name.upper()]
    if "s" in name.lower():
        variants.append(name.lower().replace("s", "\u017f", 1))
    if "k" in name.lower():
        variants.append(name.lower().replace("k", "\u212a", 1))
    return st.sampled_from(variants)


WRONG = st.sampled_from(["5", "true", "[]", "{}", "null", '"true"', "1e3", "1.5", "-0", "NaN"])


def _value(kind: str) -> st.SearchStrategy[str]:
    """Mostly well-typed values (so endpoint derivation is exercised), sometimes wrong ones."""
    js = json.dumps
    items = st.sampled_from(
        ['"OnPrem"', '"EC2"', '"ec2"', '"ECS"', '"CustomIdentity"', "null", "1"]
    )
    ident = st.sampled_from(["{}", "null", '{"Region": "x"}', '{"Region": 1}', "[]", '"x"'])
    good = {
        "region": REGIONS.map(js),
        "url": URLS.map(js),
        "domain": DOMAINS.map(js),
        "bool": st.sampled_from(["true", "false"]),
        "int": st.sampled_from(["3", "-1", "0", "9223372036854775807", "9223372036854775808"]),
        "order": st.lists(items, max_size=6).map(lambda xs: "[" + ",".join(xs) + "]"),
        "idents": st.lists(ident, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
    }[kind]
    return st.one_of(good, good, good, good, WRONG)


FIELDS = [
    ("Agent", "Region", "region"),
    ("Agent", "ServiceDomain", "domain"),
    ("Agent", "SelfUpdate", "bool"),
    ("Agent", "SelfUpdateScheduleDay", "int"),
    ("Ssm", "Endpoint", "url"),
    ("Mds", "Endpoint", "url"),
    ("Mds", "StopTimeoutMillis", "int"),
    ("Mgs", "Endpoint", "url"),
    ("Mgs", "Region", "region"),
    ("Mgs", "DeniedPortForwardingRemoteIPs", "order"),
    ("Identity", "ConsumptionOrder", "order"),
    ("Identity", "CustomIdentities", "idents"),
    ("Kms", "Endpoint", "url"),
    ("Unknown", "Field", "url"),
]


@st.composite
def config_text(draw: st.DrawFn) -> str:
    sections = []
    for _ in range(draw(st.integers(0, 4))):
        section = draw(st.sampled_from(sorted({f[0] for f in FIELDS})))
        members = [f for f in FIELDS if f[0] == section]
        pairs = []
        for _ in range(draw(st.integers(0, 3))):
            _, name, kind = draw(st.sampled_from(members))
            pairs.append(f"{json.dumps(draw(_case(name)))}: {draw(_value(kind))}")
        body = "{" + ", ".join(pairs) + "}"
        if draw(st.integers(0, 20)) == 0:
            body = draw(WRONG)
        sections.append(f"{json.dumps(draw(_case(section)))}: {body}")
    text = "{" + ", ".join(sections) + "}"
    tail = draw(st.sampled_from(["", "", "", "\n", " x", "}"]))
    return draw(st.sampled_from([text] * 8 + ["null", "[]", '"x"'])) + tail


@st.composite
def endpoint_config(draw: st.DrawFn) -> str:
    """Well-formed files that only move endpoints: where derivation, not decoding, is tested."""
    document: dict[str, dict[str, str]] = {}
    for section, name, kind in FIELDS:
        if kind in ("region", "url", "domain") and draw(st.booleans()):
            strategy = {"region": REGIONS, "url": URLS, "domain": DOMAINS}[kind]
            document.setdefault(section, {})[name] = draw(strategy)
    return json.dumps(document)


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=st.one_of(config_text(), endpoint_config()), region=REGIONS)
@example(text='{"Mgs": {"Endpoint": "h:8443"}}', region="us-east-1")
def test_generated_configs_agree_with_the_agent(tmp_path: Path, text: str, region: str) -> None:
    require_real_agent(root=False)
    assert_agrees(tmp_path, text, region)


def test_the_field_table_is_the_agents_structs() -> None:
    """AGENT_CONFIG_FIELDS equals agent/appconfig/contracts.go (3.3.1142.0), type by type."""
    source = CONTRACTS.read_text()
    structs: dict[str, dict[str, str]] = {}
    for name, body in re.findall(r"type (\w+) struct \{(.*?)\n\}", source, re.S):
        fields = {}
        for line in body.splitlines():
            match = re.match(r"\s*([A-Z]\w*)\s+(\S+)\s*$", line)
            if match:
                fields[match.group(1)] = match.group(2)
        structs[name] = fields
    top = structs["SsmagentConfig"]
    assert set(top) == set(AGENT_CONFIG_FIELDS)
    go_type = {
        "string": "string",
        "bool": "bool",
        "int": "int",
        "int64": "int64",
        "[]string": "[]string",
        "[]*CustomIdentity": "[]*CustomIdentity",
    }
    for section, struct_name in top.items():
        assert {k: go_type[v] for k, v in structs[struct_name].items()} == (
            AGENT_CONFIG_FIELDS[section]
        ), section
    assert structs["CustomIdentity"] == CUSTOM_IDENTITY_FIELDS


def test_endpoints_for_users_name_the_agents_problem() -> None:
    """What a user sees for the spellings that give the agent no usable endpoint."""
    plan = plan_endpoints("us-east-1", {"Mgs.Endpoint": "ssmmessages.example.internal:8443"})
    mgs = plan.get("ssmmessages")
    assert mgs.problem and "no ssmmessages endpoint" in mgs.problem
    assert mgs.fix and "https://HOST:8443" in mgs.fix
    dotted = plan_endpoints("us-east-1", {"Agent.ServiceDomain": ".example.org"}).get("ssm")
    assert dotted.host == "ssm.us-east-1..example.org"
    assert dotted.problem and "empty label" in dotted.problem
    assert dotted.fix and "'ssm.us-east-1.example.org'" in dotted.fix
    plain = plan_endpoints("us-east-1", {"Ssm.Endpoint": "http://ssm.internal.example"})
    ssm = plain.get("ssm")
    assert (ssm.scheme, ssm.port, ssm.problem) == ("http", 80, None)
    assert "not encrypted" in ssm.notes[0]
    signed = plan_endpoints("us-east-1", {"Agent.Region": "eu-west-1"}).get("ec2messages")
    assert (signed.host, signed.signing_region) == (
        "ec2messages.us-east-1.amazonaws.com",
        "eu-west-1",
    )
