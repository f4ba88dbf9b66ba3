"""What each SSM Agent version allows: the one place these numbers live.

Sources: ../shared/reference/session-manager-prerequisites.md (documented
minimums) and the agent's own RELEASENOTES.md at tag 3.3.1142.0
(../shared/real-agent/RELEASENOTES.md): for each feature, the first release
whose notes ship it, with the entry quoted. The verdicts follow the documented
minimums; where the notes disagree, the checks say so (and warn when the notes
are later, so a node between the two is not promised a feature).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

from ssmdiag.versions import AgentVersion


def _v(text: str) -> AgentVersion:
    return AgentVersion.parse(text)


@dataclass(frozen=True)
class ReleaseNote:
    """The first RELEASENOTES.md section (its version heading) whose entry ships a thing."""

    version: AgentVersion
    entry: str  # the line in that section, verbatim (shortened with "..." where long)


def release_notes_remark(
    what: str, documented: AgentVersion, note: Optional[ReleaseNote], version: AgentVersion
) -> Optional[str]:
    """One sentence for a check's details when agent `version` lies where the documentation
    and the release notes disagree (between the two versions); None elsewhere."""
    if note is None or note.version == documented:
        return None
    low, high = min(documented, note.version), max(documented, note.version)
    entry = '"' + note.entry + '"'
    if not low <= version < high:
        return None
    if note.version < documented:
        return (
            f"the agent's release notes ship {what} in {note.version} ({entry}), "
            f"before the documented minimum {documented}; ssmdiag judges by the documented "
            f"minimum, so agent {version} may already have it"
        )
    return (
        f"the documentation gives {documented} for {what}, but the agent's release notes "
        f"first ship it in {note.version} ({entry}); agent {version} may lack it"
    )


@dataclass(frozen=True)
class Feature:
    id: str
    title: str
    minimum: AgentVersion  # the documented minimum: the verdict's threshold
    # The first release whose notes ship the feature. Later than `minimum`: between the
    # two we warn rather than promise it works. Earlier: only said in details.
    release_notes: Optional[ReleaseNote] = None
    always_required: bool = False

    @property
    def release_notes_version(self) -> Optional[AgentVersion]:
        return self.release_notes.version if self.release_notes else None

    @property
    def upgrade_target(self) -> AgentVersion:
        """The version to recommend: the documented minimum, or the notes' if later."""
        notes = self.release_notes_version
        return max(self.minimum, notes) if notes is not None else self.minimum

    def release_notes_remark(self, version: AgentVersion) -> Optional[str]:
        return release_notes_remark(self.title, self.minimum, self.release_notes, version)


# Every release_notes version and entry below is in ../shared/real-agent/RELEASENOTES.md
# (tag 3.3.1142.0) under that version's heading; tests/test_features.py checks them there.
FEATURES: tuple[Feature, ...] = (
    Feature(
        "sessions",
        "Session Manager sessions",
        _v("2.3.68.0"),
        ReleaseNote(
            _v("2.3.68.0"),
            "Enables the Session Manager capability that lets you manage your Amazon EC2 "
            "instance through an interactive one-click browser-based shell or through the "
            "AWS CLI.",
        ),
        always_required=True,
    ),
    Feature(
        "kms_encryption",
        "KMS encryption of session data",
        _v("2.3.539.0"),
        ReleaseNote(
            _v("2.3.539.0"), "Add support for further encryption of session data using AWS KMS"
        ),
    ),
    Feature(
        "shell_profiles",
        "Shell profiles",
        _v("3.0.161.0"),
        ReleaseNote(_v("3.0.196.0"), "Add support for Session Manager configurable shell profile"),
    ),
    Feature(
        "port_forwarding",
        "Port forwarding and SSH sessions",
        _v("3.0.222.0"),
        # SSH/SCP through the port plugin shipped before the documented minimum (3.0.222.0
        # itself adds "Added support for TCP multiplexing in port plugin"); the verdict
        # keeps 3.0.222.0, details mention the notes.
        ReleaseNote(_v("2.3.672.0"), "Add Port plugin for SSH/SCP"),
    ),
    Feature(
        "cloudwatch_streaming",
        "Streaming session data to CloudWatch Logs",
        _v("3.0.284.0"),
        ReleaseNote(
            _v("3.0.356.0"), "Add support for streaming of logs to CloudWatch for Session Manager"
        ),
    ),
)
FEATURE_IDS: tuple[str, ...] = tuple(feature.id for feature in FEATURES)
OPTIONAL_FEATURE_IDS: tuple[str, ...] = tuple(f.id for f in FEATURES if not f.always_required)

# ssm-user thresholds (documented): created at agent start from 2.3.50.0, at the first
# session (and never on domain controllers) from 2.3.612.0.
SSM_USER_CREATED_FROM = _v("2.3.50.0")
SSM_USER_CREATED_AT_FIRST_SESSION_FROM = _v("2.3.612.0")
# The release notes first create ssm-user in 2.3.68.0 (there is no 2.3.50.0 section).
SSM_USER_RELEASE_NOTES = ReleaseNote(
    _v("2.3.68.0"),
    'Beginning this agent version, SSM Agent will create a local user "ssm-user" and either '
    "add it to /etc/sudoers (Linux) or to the Administrators group (Windows) every time the "
    "agent starts. ...",
)


@dataclass(frozen=True)
class FeatureVerdict:
    feature: Feature
    status: str  # ok | warn | fail
    summary: str
    remediation: Optional[str]
    # Where this version lies between the documented minimum and the release notes.
    release_notes: Optional[str] = None


def evaluate_feature(
    feature: Feature, version: AgentVersion, required: Iterable[str] = ()
) -> FeatureVerdict:
    is_required = feature.always_required or feature.id in set(required)
    remark = feature.release_notes_remark(version)
    upgrade = (
        "Update SSM Agent (AWS-UpdateSSMAgent document, or the distribution package) "
        f"to {feature.upgrade_target} or later."
    )
    if version < feature.minimum:
        if is_required:
            return FeatureVerdict(
                feature,
                "fail",
                f"{feature.title} need agent {feature.minimum}; this node has {version}",
                upgrade,
                remark,
            )
        return FeatureVerdict(
            feature,
            "warn",
            f"{feature.title} unavailable: need agent {feature.minimum}, node has {version} "
            "(not listed in features.required)",
            upgrade,
            remark,
        )
    notes = feature.release_notes_version
    if notes is not None and feature.minimum <= version < notes:
        return FeatureVerdict(
            feature,
            "warn",
            f"{feature.title}: agent {version} meets the documented minimum "
            f"{feature.minimum}, but the release notes first ship it in {notes}",
            upgrade,
            remark,
        )
    return FeatureVerdict(
        feature, "ok", f"{feature.title} supported by agent {version}", None, remark
    )


def evaluate_all(version: AgentVersion, required: Iterable[str] = ()) -> list[FeatureVerdict]:
    required = tuple(required)
    return [evaluate_feature(feature, version, required) for feature in FEATURES]
