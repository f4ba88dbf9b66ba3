"""clock.skew: the node's clock against the endpoints' Date headers (SigV4 allows 5 minutes)."""

from __future__ import annotations

from typing import Optional

from ssmdiag.checks.base import Check, Context
from ssmdiag.probe import ProbeResult
from ssmdiag.report import Finding, fail, ok, skip, warn

FAIL_AT_S = 300
WARN_AT_S = 60
FIX = (
    "Synchronise the clock: enable chrony or systemd-timesyncd (on EC2 use the Amazon Time "
    "Sync Service, 169.254.169.123), then check `chronyc tracking` or `timedatectl`."
)


def run(ctx: Context) -> Finding:
    probes: Optional[dict[str, ProbeResult]] = ctx.fact("probes")
    dated = [
        p
        for p in (probes or {}).values()
        if p.server_date is not None and p.local_time_at_answer is not None
    ]
    # A Date header that is not a date (a middlebox's, or garbage) gives no reference:
    # that endpoint is left out, and said so; it never makes the check an error.
    unreadable = {
        p.endpoint.host: p.server_date_raw
        for p in (probes or {}).values()
        if p.server_date is None and p.server_date_raw is not None
    }
    if not dated:
        if unreadable:
            host, value = next(iter(unreadable.items()))
            return skip(
                f"no endpoint answered with a readable Date header to compare against "
                f"({host[:80]} sent Date: {value!r})",
                {"unreadable_dates": unreadable},
            )
        return skip("no endpoint answered with a Date header to compare against")
    # Date has one-second resolution: take the median of the answers.
    skews = sorted(p.local_time_at_answer - p.server_date for p in dated)  # type: ignore[operator]
    skew = skews[len(skews) // 2]
    details = {
        "skew_seconds": round(skew, 1),
        "samples": len(skews),
        "reference": [p.endpoint.host for p in dated],
    }
    if unreadable:
        details["unreadable_dates"] = unreadable
    direction = "ahead of" if skew > 0 else "behind"
    text = f"node clock is {abs(skew):.0f} s {direction} the endpoints' clock"
    if abs(skew) >= FAIL_AT_S:
        return fail(
            text + ": AWS rejects the agent's signed requests (SigV4 allows 5 minutes)",
            FIX,
            details,
        )
    if abs(skew) >= WARN_AT_S:
        return warn(text + ": close to the 5-minute SigV4 limit", FIX, details)
    return ok(text, details)


CHECK = Check("clock.skew", "Clock skew", run, needs=("probes",))
