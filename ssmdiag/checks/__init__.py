"""The check registry: every check ssmdiag runs, in report order. Ids are stable API."""

from __future__ import annotations

from ssmdiag.checks import (
    agent_config,
    agent_installed,
    agent_process_user,
    agent_service,
    clock_skew,
    endpoint,
    endpoint_session,
    feature,
    identity,
    identity_credentials,
    network_proxy,
    os_supported,
    run_as,
    ssm_user,
)
from ssmdiag.checks.base import Check, Context

ALL_CHECKS: tuple[Check, ...] = (
    agent_installed.CHECK,
    agent_service.CHECK,
    agent_process_user.CHECK,
    agent_config.CHECK,
    *feature.CHECKS,
    ssm_user.CHECK,
    run_as.CHECK,
    os_supported.CHECK,
    identity.CHECK,
    identity_credentials.CHECK,
    network_proxy.CHECK,
    *endpoint.CHECKS,
    *endpoint_session.CHECKS,
    clock_skew.CHECK,
)
CHECK_IDS: tuple[str, ...] = tuple(check.id for check in ALL_CHECKS)

__all__ = ["ALL_CHECKS", "CHECK_IDS", "Check", "Context"]
