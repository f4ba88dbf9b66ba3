"""What a check is: an id, a title, the facts it needs, and a function from context to finding.

Like cloud-init's cc_* modules, each check module declares its own metadata in
a `CHECK` (or `CHECKS`) constant; `ssmdiag.checks` registers them in one list.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ssmdiag.agent import AgentFacts, derive_agent_facts, read_agent_config
from ssmdiag.config import Config
from ssmdiag.platform.base import OsInfo, Platform
from ssmdiag.report import Finding


class Context:
    """Facts shared by the checks, each gathered at most once and only when a check needs it."""

    def __init__(
        self, platform: Platform, config: Config, environ: Optional[Mapping[str, str]] = None
    ) -> None:
        self.platform = platform
        self.config = config
        # ssmdiag's own environment: AWS_REGION, AWS_EC2_METADATA_* (never the agent's proxy).
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self._facts: dict[str, Any] = {}
        self._lock = threading.RLock()  # facts may build on other facts

    def fact(self, name: str) -> Any:
        with self._lock:
            if name not in self._facts:
                self._facts[name] = FACTS[name](self)
            return self._facts[name]

    def gathered(self, name: str) -> Any:
        """A fact if some check already needed it, else None (the report never adds work)."""
        with self._lock:
            return self._facts.get(name)

    @property
    def agent(self) -> AgentFacts:
        facts: AgentFacts = self.fact("agent")
        return facts

    @property
    def os(self) -> OsInfo:
        info: OsInfo = self.fact("os")
        return info


def _identity(ctx: Context) -> Any:
    from ssmdiag.identity import resolve_identity

    return resolve_identity(
        ctx.platform,
        configured_region=ctx.config.region,
        agent_config=ctx.fact("agent_config"),
        environ=ctx.environ,
        imds_budget=ctx.config.imds_timeout,
        binary_path=ctx.agent.discovery.binary_path,
    )


def _proxies(ctx: Context) -> Any:
    from ssmdiag.proxy import ProxySettings

    env = ctx.platform.agent_environment()
    return ProxySettings.from_environ(env.values, env.source), env


def _plan(ctx: Context) -> Any:
    """The endpoint plan, or None when no region is known anywhere."""
    from ssmdiag.endpoints import plan_endpoints

    region = ctx.fact("identity").region
    settings = ctx.fact("agent_config").settings
    # With no identity region the agent's SDK still resolves ssm/ec2messages for
    # Agent.Region (see ssmdiag/endpoints.py); with neither there is nothing to derive.
    if region is None and not settings.get("Agent.Region"):
        return None
    prefs = ctx.config.session
    needed = (
        ("s3",) * bool(prefs.s3_bucket)
        + ("logs",) * bool(prefs.log_group)
        + ("kms",) * bool(prefs.kms_key_id)
    )
    return plan_endpoints(region, settings, dict(ctx.config.endpoint_overrides), needed)


def _probes(ctx: Context) -> Any:
    from ssmdiag.probe import ProbeSettings, probe_all

    plan = ctx.fact("endpoint_plan")
    if plan is None:
        return None
    proxies, _ = ctx.fact("proxies")
    settings = ProbeSettings(
        ctx.config.connect_timeout, ctx.config.probe_timeout, ctx.config.ca_bundle
    )
    return probe_all(plan.endpoints, proxies, settings)


def _permissions(ctx: Context) -> Any:
    """The permission checks' AWS calls, kept for an hour (ssmdiag/checks/permissions.py)."""
    from ssmdiag.checks.permissions import gather

    return gather(ctx)


FACTS: dict[str, Callable[[Context], Any]] = {
    "identity": _identity,
    "proxies": _proxies,
    "endpoint_plan": _plan,
    "probes": _probes,
    "agent": lambda ctx: derive_agent_facts(ctx.platform.discover_agent()),
    "os": lambda ctx: ctx.platform.os_info(),
    "agent_config": lambda ctx: read_agent_config(ctx.platform, ctx.agent.discovery.binary_path),
    "permissions": _permissions,
}


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    run: Callable[[Context], Finding]
    needs: tuple[str, ...] = ()  # names in FACTS, gathered before `run`
    description: Optional[str] = None
