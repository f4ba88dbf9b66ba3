"""What each SSM Agent version allows: the one place these numbers live.

Sources: ../shared/reference/session-manager-prerequisites.md (documented
minimums) and ssm-agent-on-the-node.md (release notes that place two features
later than the documentation).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

from ssmdiag.versions import AgentVersion


@dataclass(frozen=True)
class Feature:
    id: str
    title: str
    minimum: AgentVersion
    # The release notes first mention the feature in this later version; between
    # the two we warn rather than promise it works.
    release_notes_version: Optional[AgentVersion] = None
    always_required: bool = False


def _v(text: str) -> AgentVersion:
    return AgentVersion.parse(text)


FEATURES: tuple[Feature, ...] = (
    Feature("sessions", "Session Manager sessions", _v("2.3.68.0"), always_required=True),
    Feature("kms_encryption", "KMS encryption of session data", _v("2.3.539.0")),
    Feature("shell_profiles", "Shell profiles", _v("3.0.161.0"), _v("3.0.196.0")),
    Feature("port_forwarding", "Port forwarding and SSH sessions", _v("3.0.222.0")),
    Feature(
        "cloudwatch_streaming",
        "Streaming session data to CloudWatch Logs",
        _v("3.0.284.0"),
        _v("3.0.356.0"),
    ),
)
FEATURE_IDS: tuple[str, ...] = tuple(feature.id for feature in FEATURES)
OPTIONAL_FEATURE_IDS: tuple[str, ...] = tuple(f.id for f in FEATURES if not f.always_required)

# ssm-user thresholds: created at agent start from 2.3.50.0, at the first session
# (and never on domain controllers) from 2.3.612.0.
SSM_USER_CREATED_FROM = _v("2.3.50.0")
SSM_USER_CREATED_AT_FIRST_SESSION_FROM = _v("2.3.612.0")


@dataclass(frozen=True)
class FeatureVerdict:
    feature: Feature
    status: str  # ok | warn | fail
    summary: str
    remediation: Optional[str]


def evaluate_feature(
    feature: Feature, version: AgentVersion, required: Iterable[str] = ()
) -> FeatureVerdict:
    is_required = feature.always_required or feature.id in set(required)
    upgrade = (
        "Update SSM Agent (AWS-UpdateSSMAgent document, or the distribution package) "
        f"to {feature.release_notes_version or feature.minimum} or later."
    )
    if version < feature.minimum:
        if is_required:
            return FeatureVerdict(
                feature,
                "fail",
                f"{feature.title} need agent {feature.minimum}; this node has {version}",
                upgrade,
            )
        return FeatureVerdict(
            feature,
            "warn",
            f"{feature.title} unavailable: need agent {feature.minimum}, node has {version} "
            "(not listed in features.required)",
            upgrade,
        )
    notes = feature.release_notes_version
    if notes is not None and version < notes:
        return FeatureVerdict(
            feature,
            "warn",
            f"{feature.title}: agent {version} meets the documented minimum "
            f"{feature.minimum}, but the release notes first ship it in {notes}",
            upgrade,
        )
    return FeatureVerdict(feature, "ok", f"{feature.title} supported by agent {version}", None)


def evaluate_all(version: AgentVersion, required: Iterable[str] = ()) -> list[FeatureVerdict]:
    required = tuple(required)
    return [evaluate_feature(feature, version, required) for feature in FEATURES]
