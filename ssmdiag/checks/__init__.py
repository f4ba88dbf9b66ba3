"""The check registry: every check ssmdiag runs, in report order. Ids are stable API."""

from __future__ import annotations

from ssmdiag.checks import (
    agent_config,
    agent_installed,
    agent_log,
    agent_process_user,
    agent_restarts,
    agent_service,
    clock_skew,
    endpoint,
    endpoint_session,
    feature,
    identity,
    identity_credentials,
    network_proxy,
    node_disk,
    node_time_sync,
    os_supported,
    permissions,
    run_as,
    ssm_user,
)
from ssmdiag.checks.base import Check, Context

ALL_CHECKS: tuple[Check, ...] = (
    agent_installed.CHECK,
    agent_service.CHECK,
    agent_restarts.CHECK,
    agent_process_user.CHECK,
    agent_config.CHECK,
    *feature.CHECKS,
    ssm_user.CHECK,
    run_as.CHECK,
    os_supported.CHECK,
    identity.CHECK,
    identity_credentials.CHECK,
    agent_log.CHECK,
    network_proxy.CHECK,
    *endpoint.CHECKS,
    *endpoint_session.CHECKS,
    *permissions.CHECKS,
    clock_skew.CHECK,
    node_time_sync.CHECK,
    node_disk.CHECK,
)
CHECK_IDS: tuple[str, ...] = tuple(check.id for check in ALL_CHECKS)

__all__ = ["ALL_CHECKS", "CHECK_IDS", "Check", "Context"]
