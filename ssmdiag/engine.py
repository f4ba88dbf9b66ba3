"""Run the registered checks against a platform and assemble the report.

A check that raises becomes that check's `error` result: one broken check
never hides the others.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from typing import Callable, Optional

from ssmdiag import __version__
from ssmdiag.checks import ALL_CHECKS, Check, Context
from ssmdiag.config import Config
from ssmdiag.log import get_logger
from ssmdiag.platform.base import Platform
from ssmdiag.redact import redact, redact_text
from ssmdiag.report import CheckResult, Finding, HostInfo, Report, Status

log = get_logger("ssmdiag.engine")


def _utc_now() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _run_one(check: Check, ctx: Context) -> CheckResult:
    started = time.monotonic()
    if check.id in ctx.config.disabled_checks:
        finding = Finding(Status.SKIP, f"disabled by checks.disable in {ctx.config.source}")
    else:
        finding = _guarded(check, ctx)
    # The one place every result passes before any output (table, JSON, events).
    return CheckResult(
        check.id,
        check.title,
        finding.status,
        redact_text(finding.summary),
        redact(finding.details),
        redact_text(finding.remediation) if finding.remediation else finding.remediation,
        int((time.monotonic() - started) * 1000),
    )


def _guarded(check: Check, ctx: Context) -> Finding:
    for need in check.needs:
        try:
            ctx.fact(need)
        except Exception as exc:  # any failure gathering a fact is this check's error
            log.debug("fact.failed", fact=need, check_id=check.id, exc_info=True)
            return Finding(
                Status.ERROR,
                f"could not gather {need} facts: {type(exc).__name__}: {exc}",
                {"fact": need},
                "Run with `--log-level debug` and report the traceback as a bug.",
            )
    try:
        return check.run(ctx)
    except Exception as exc:
        log.debug("check.crashed", check_id=check.id, exc_info=True)
        return Finding(
            Status.ERROR,
            f"check crashed: {type(exc).__name__}: {exc}",
            {},
            "Run with `--log-level debug` and report the traceback as a bug.",
        )


def select_checks(only: Optional[Sequence[str]]) -> list[Check]:
    if not only:
        return list(ALL_CHECKS)
    wanted = set(only)
    return [check for check in ALL_CHECKS if check.id in wanted]


def run_checks(
    platform: Platform,
    config: Config,
    only: Optional[Sequence[str]] = None,
    on_start: Callable[[str], object] = lambda _check_id: None,
) -> Report:
    """`on_start(check_id)` is told as each check begins (the worker reports its progress)."""
    started_at = _utc_now()
    started = time.monotonic()
    ctx = Context(platform, config)
    results = []
    for check in select_checks(only):
        on_start(check.id)
        results.append(_run_one(check, ctx))
    try:
        os_info = ctx.os
        host = HostInfo(platform.hostname(), os_info.family, os_info.name, os_info.version)
        ident = ctx.gathered("identity")
        if ident is not None:
            host.instance_id, host.region = ident.instance_id, ident.region
    except Exception:
        log.debug("host.facts_failed", exc_info=True)
        host = HostInfo("unknown", platform.family, "unknown", "unknown")
    for result in results:
        log.debug(
            "check.result",
            check_id=result.id,
            status=result.status.value,
            duration_ms=result.duration_ms,
        )
    return Report(__version__, host, started_at, int((time.monotonic() - started) * 1000), results)
