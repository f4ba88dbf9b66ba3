"""feature.*: one check per Session Manager feature, generated from `ssmdiag.features.FEATURES`."""

from __future__ import annotations

from typing import Callable

from ssmdiag.checks.base import Check, Context
from ssmdiag.features import FEATURES, Feature, evaluate_feature
from ssmdiag.report import Finding, Status, error, skip


def _make_run(feature: Feature) -> Callable[[Context], Finding]:
    def run(ctx: Context) -> Finding:
        facts = ctx.agent
        required = feature.always_required or feature.id in ctx.config.required_features
        details = {
            "minimum": str(feature.minimum),
            "release_notes_version": (
                str(feature.release_notes_version) if feature.release_notes_version else None
            ),
            "release_notes_entry": feature.release_notes.entry if feature.release_notes else None,
            "required": required,
            "agent_version": str(facts.version) if facts.version else None,
        }
        if not facts.installed:
            return skip("SSM Agent is not installed (see agent.installed)", details)
        if facts.version is None:
            return error(f"agent version unknown: {facts.version_error}", None, details)
        verdict = evaluate_feature(feature, facts.version, ctx.config.required_features)
        if verdict.release_notes:
            details["release_notes"] = verdict.release_notes
        return Finding(Status(verdict.status), verdict.summary, details, verdict.remediation)

    return run


CHECKS = tuple(
    Check(f"feature.{feature.id}", feature.title, _make_run(feature), needs=("agent",))
    for feature in FEATURES
)
