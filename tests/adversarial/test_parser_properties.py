"""Every parser and validator, fed anything: it answers or raises its own error type,
never anything else (which would reach the user as a traceback or an `error` result)."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ssmdiag.agent_config import DecodeLimit, decode_agent_config
from ssmdiag.config import ConfigError, config_from_mapping
from ssmdiag.endpoints import EndpointError, dns_name_problem, plan_endpoints
from ssmdiag.gourl import GoURLError, go_url_parse
from ssmdiag.partitions import RegionError, validate_region
from ssmdiag.redact import redact, redact_text
from ssmdiag.safeio import TooDeep, loads_json
from ssmdiag.versions import AgentVersion, VersionError

FAST = settings(max_examples=300, deadline=None)
URLISH = st.text(alphabet=st.sampled_from(list("ab:/@[]%?#. -_1\x00\ud800\u00e9")), max_size=40)
JSONISH = st.text(
    alphabet=st.sampled_from(list('{}[]":,0123456789.eE-+ntruefalsNI\\ab')), max_size=60
)


@FAST
@given(URLISH)
def test_go_url_parse_raises_only_its_error(text: str) -> None:
    with contextlib.suppress(GoURLError):
        go_url_parse(text)


@FAST
@given(st.one_of(JSONISH, st.text(max_size=60)))
def test_agent_config_decoder_raises_only_decoding_errors(text: str) -> None:
    try:
        decode_agent_config(text)
    except (json.JSONDecodeError, DecodeLimit):
        pass
    except ValueError as exc:  # NaN/Infinity: "is not JSON"
        assert "is not JSON" in str(exc)


@FAST
@given(st.text(max_size=40))
def test_region_validation_raises_only_region_error(text: str) -> None:
    try:
        assert validate_region(text) == text
        assert text.isascii() and "\n" not in text
    except RegionError:
        pass


@FAST
@given(st.text(max_size=30))
def test_version_parse_raises_only_version_error(text: str) -> None:
    try:
        version = AgentVersion.parse(text)
        assert all(0 <= part < 10**9 for part in version.fields)
    except VersionError:
        pass


@FAST
@given(JSONISH)
def test_bounded_json_raises_only_value_errors(text: str) -> None:
    with contextlib.suppress(TooDeep, ValueError):
        loads_json(text, max_depth=5)


@FAST
@given(URLISH, st.sampled_from(["", "us-east-1", "x y", "a" * 101]), URLISH)
def test_endpoint_planning_never_raises_for_any_agent_setting(
    value: str, region: str, domain: str
) -> None:
    settings_ = {
        "Ssm.Endpoint": value,
        "Mds.Endpoint": value,
        "Mgs.Endpoint": value,
        "Agent.ServiceDomain": domain,
        "Agent.Region": region,
    }
    plan = plan_endpoints(region or None, settings_)
    for endpoint in plan.endpoints:
        assert endpoint.problem or (endpoint.host and 0 < endpoint.port < 65536)
        assert endpoint.problem is None or endpoint.fix


@FAST
@given(URLISH)
def test_ssmdiag_overrides_raise_only_endpoint_error(value: str) -> None:
    with contextlib.suppress(EndpointError):
        plan_endpoints("us-east-1", {}, {"ssm": value})


@FAST
@given(st.text(max_size=300))
def test_dns_name_check_and_redaction_never_raise(text: str) -> None:
    dns_name_problem(text)
    assert isinstance(redact_text(text), str)
    assert redact({"token": text, "nested": [text, {"password": text}]})["token"] in ("***", text)


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.lists(st.text(max_size=5), max_size=3),
)


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["agent", "network", "daemon", "sinks", "checks", "log", "x"]),
        st.dictionaries(
            st.sampled_from(["binary", "region", "interval", "enabled", "disable", "level", "y"]),
            SCALARS,
            max_size=3,
        ),
        max_size=3,
    )
)
def test_config_mapping_raises_only_config_error(data: dict[str, object]) -> None:
    with contextlib.suppress(ConfigError):
        config_from_mapping(data, "/etc/ssmdiag/ssmdiag.toml")
