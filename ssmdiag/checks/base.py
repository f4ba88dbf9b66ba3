"""What a check is: an id, a title, the facts it needs, and a function from context to finding.

Like cloud-init's cc_* modules, each check module declares its own metadata in
a `CHECK` (or `CHECKS`) constant; `ssmdiag.checks` registers them in one list.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ssmdiag.agent import AgentFacts, derive_agent_facts, read_agent_config
from ssmdiag.config import Config
from ssmdiag.platform.base import OsInfo, Platform
from ssmdiag.report import Finding


class Context:
    """Facts shared by the checks, each gathered at most once and only when a check needs it."""

    def __init__(self, platform: Platform, config: Config) -> None:
        self.platform = platform
        self.config = config
        self._facts: dict[str, Any] = {}
        self._lock = threading.RLock()  # facts may build on other facts

    def fact(self, name: str) -> Any:
        with self._lock:
            if name not in self._facts:
                self._facts[name] = FACTS[name](self)
            return self._facts[name]

    @property
    def agent(self) -> AgentFacts:
        facts: AgentFacts = self.fact("agent")
        return facts

    @property
    def os(self) -> OsInfo:
        info: OsInfo = self.fact("os")
        return info


FACTS: dict[str, Callable[[Context], Any]] = {
    "agent": lambda ctx: derive_agent_facts(ctx.platform.discover_agent()),
    "os": lambda ctx: ctx.platform.os_info(),
    "agent_config": lambda ctx: read_agent_config(ctx.platform, ctx.agent.discovery.binary_path),
}


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    run: Callable[[Context], Finding]
    needs: tuple[str, ...] = ()  # names in FACTS, gathered before `run`
    description: Optional[str] = None
