"""pytest fixtures for the network lab; import them from tests/conftest.py::

    from tests.lab.fixtures import *  # noqa: F401,F403

Namespace tests skip when the machine cannot host the lab (not root, no
``ip netns``, no dnsmasq) - unless SSMDIAG_LAB_REQUIRED=1, then they fail, so CI
can never pass by silently skipping them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Callable, NoReturn

import pytest

from .ca import LabCA
from .dns import dnsmasq_path
from .launcher import ServerHandle, start_server
from .netns import LabUnavailable, NetNS, cleanup_stale, netns_unavailable_reason

__all__ = [
    "lab_ca",
    "lab_intercept_ca",
    "lab_netns_support",
    "lab_required",
    "lab_servers",
    "netns",
    "skip_or_fail",
]

LAB_REQUIRED_ENV = "SSMDIAG_LAB_REQUIRED"


def lab_required() -> bool:
    return os.environ.get(LAB_REQUIRED_ENV, "") == "1"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test, or fail it when SSMDIAG_LAB_REQUIRED=1."""
    if lab_required():
        pytest.fail(f"network lab required ({LAB_REQUIRED_ENV}=1) but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lab_ca(tmp_path_factory: pytest.TempPathFactory) -> LabCA:
    """The trusted test CA; pass ``lab_ca.ca_pem`` to the probe as extra CA bundle."""
    return LabCA(tmp_path_factory.mktemp("lab-ca"))


@pytest.fixture(scope="session")
def lab_intercept_ca(tmp_path_factory: pytest.TempPathFactory) -> LabCA:
    """An untrusted CA named "Corp Intercept CA" (TLS interception scenarios)."""
    return LabCA.intercept(tmp_path_factory.mktemp("lab-intercept-ca"))


@pytest.fixture(scope="session")
def lab_netns_support() -> str | None:
    """None if namespaces + dnsmasq work here, else why not (checked once)."""
    reason = netns_unavailable_reason()
    if reason is None:
        cleanup_stale()
        try:
            dnsmasq_path()
        except LabUnavailable as exc:
            reason = str(exc)
    return reason


@pytest.fixture
def netns(lab_netns_support: str | None) -> Iterator[NetNS]:
    """A fresh network namespace, torn down (processes, files) after the test."""
    if lab_netns_support is not None:
        skip_or_fail(lab_netns_support)
    with NetNS() as ns:
        yield ns


@pytest.fixture
def lab_servers() -> Iterator[Callable[..., ServerHandle]]:
    """Factory with start_server's signature; every server is stopped at teardown."""
    handles: list[ServerHandle] = []

    def start(kind: str, *args: Any, **kwargs: Any) -> ServerHandle:
        handle = start_server(kind, *args, **kwargs)
        handles.append(handle)
        return handle

    try:
        yield start
    finally:
        for handle in handles:
            handle.stop()
