"""ssmdiag network lab: namespaces, fake DNS, fake AWS/IMDS/proxy servers, test CAs.

See README.md.  pytest fixtures live in ``tests.lab.fixtures`` (import them from
conftest.py); this package itself does not import pytest.
"""

from __future__ import annotations

from .ca import DEFAULT_HOSTNAMES, INTERCEPT_NAME, LabCA
from .dns import DnsServer, dns_timeout, start_dns, write_resolv_conf
from .launcher import (
    ServerHandle,
    closed_port,
    ssm_endpoints,
    start_server,
    start_ssm_endpoints,
    wait_until,
)
from .netns import LabUnavailable, NetNS, cleanup_stale, lab_env, netns_unavailable_reason

__all__ = [
    "DEFAULT_HOSTNAMES",
    "INTERCEPT_NAME",
    "DnsServer",
    "LabCA",
    "LabUnavailable",
    "NetNS",
    "ServerHandle",
    "cleanup_stale",
    "closed_port",
    "dns_timeout",
    "lab_env",
    "netns_unavailable_reason",
    "ssm_endpoints",
    "start_dns",
    "start_server",
    "start_ssm_endpoints",
    "wait_until",
    "write_resolv_conf",
]
