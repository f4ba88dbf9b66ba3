from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssmdiag.versions import AgentVersion, VersionError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3.3.987.0", "3.3.987.0"),
        ("2.0.672", "2.0.672.0"),  # legacy three-part version
        ("v3.0.222.0", "3.0.222.0"),  # tag with a leading v
        ("  3.2.582.0\n", "3.2.582.0"),
        ("3.3.987.0-1", "3.3.987.0"),  # deb revision
        ("3.3.987.0-1ubuntu2", "3.3.987.0"),
    ],
)
def test_accepts_every_form_the_agent_and_its_packages_print(text: str, expected: str) -> None:
    assert str(AgentVersion.parse(text)) == expected


@pytest.mark.parametrize(
    "text", ["", "garbage", "3", "3.0", "3.0.x.0", "3.0.0.0.0", "3..0.0", "latest", "3.0a1.0"]
)
def test_rejects_what_is_not_a_version_with_its_own_error(text: str) -> None:
    with pytest.raises(VersionError, match="unparseable SSM Agent version"):
        AgentVersion.parse(text)


def test_compares_numerically_field_by_field() -> None:
    assert AgentVersion.parse("3.0.1000.0") > AgentVersion.parse("3.0.284.0")
    assert AgentVersion.parse("2.3.612.0") > AgentVersion.parse("2.3.68.0")
    assert AgentVersion.parse("2.0.672") < AgentVersion.parse("2.0.672.1")
    assert AgentVersion.parse("v3.3.987.0") == AgentVersion.parse("3.3.987.0-1")


@given(st.text(max_size=40))
def test_never_raises_anything_but_version_error(text: str) -> None:
    try:
        version = AgentVersion.parse(text)
    except VersionError:
        return
    assert all(field >= 0 for field in version.fields)


@given(
    st.lists(st.integers(min_value=0, max_value=99999), min_size=4, max_size=4),
    st.lists(st.integers(min_value=0, max_value=99999), min_size=4, max_size=4),
)
def test_order_matches_integer_tuples(a: list[int], b: list[int]) -> None:
    va = AgentVersion.parse(".".join(map(str, a)))
    vb = AgentVersion.parse(".".join(map(str, b)))
    assert (va < vb) == (tuple(a) < tuple(b))
    assert (va == vb) == (a == b)
