"""The IAM policy Session Manager needs on the node, as the seeds describe it: data, then
one builder that every user of it (`ssmdiag policy`, the agent-log findings, the
permission checks) shares.

Source: ../shared/seeds/ "Step 2: Verify or add instance permissions" and "Create a
custom IAM role for Session Manager" (restated in shared/reference/
session-manager-prerequisites.md section 5): the base ssmmessages/ssm statement on
`*`; `s3:GetEncryptionConfiguration` on `*`; `s3:PutObject` on the bucket prefix (and
`s3:PutObjectAcl` for a bucket of another account); the four CloudWatch Logs actions;
`kms:Decrypt` on the key; `kms:GenerateDataKey`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

# Partition of a region: ARNs must name it (arn:aws-cn:..., arn:aws-us-gov:...).
_PARTITION_BY_PREFIX = (
    ("us-gov-", "aws-us-gov"),
    ("cn-", "aws-cn"),
    ("us-isob-", "aws-iso-b"),
    ("us-isof-", "aws-iso-f"),
    ("us-iso-", "aws-iso"),
    ("eu-isoe-", "aws-iso-e"),
    ("eusc-de-", "aws-eusc"),
)

BASE_ACTIONS = (
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
)
LOGS_ACTIONS = (
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
)


def partition_of(region: Optional[str]) -> str:
    for prefix, partition in _PARTITION_BY_PREFIX:
        if region and region.startswith(prefix):
            return partition
    return "aws"


@dataclass(frozen=True)
class PolicyInputs:
    """What the session preferences ask of the node's role."""

    region: Optional[str] = None
    s3_bucket: Optional[str] = None
    s3_prefix: Optional[str] = None
    cross_account_bucket: bool = False
    log_group: Optional[str] = None
    kms_key: Optional[str] = None  # key id, alias or ARN


def _key_statement(key: str, partition: str, region: Optional[str]) -> dict[str, Any]:
    """kms:Decrypt on the session key. IAM authorizes Decrypt on the key's ARN, never on an
    alias ARN: an alias becomes a kms:ResourceAliases condition on the region's keys."""
    region_part = region or "REGION"
    if key.startswith("arn:") and ":alias/" in key:
        key = key.split(":", 5)[5]
    if key.startswith("alias/"):
        statement = _statement(
            "SessionEncryption",
            ("kms:Decrypt",),
            f"arn:{partition}:kms:{region_part}:ACCOUNT_ID:key/*",
        )
        statement["Condition"] = {"ForAnyValue:StringEquals": {"kms:ResourceAliases": key}}
        return statement
    arn = (
        key
        if key.startswith("arn:")
        else (f"arn:{partition}:kms:{region_part}:ACCOUNT_ID:key/{key}")
    )
    return _statement("SessionEncryption", ("kms:Decrypt",), arn)


def _object_arn(inputs: PolicyInputs, partition: str) -> str:
    prefix = (inputs.s3_prefix or "").strip("/")
    path = f"{prefix}/*" if prefix else "*"
    return f"arn:{partition}:s3:::{inputs.s3_bucket}/{path}"


def build_policy(inputs: PolicyInputs) -> dict[str, Any]:
    """The minimal policy for these preferences (an IAM policy document)."""
    partition = partition_of(inputs.region)
    statements: list[dict[str, Any]] = [
        _statement("SessionManagerCore", BASE_ACTIONS, "*"),
    ]
    if inputs.s3_bucket:
        put = ["s3:PutObject"] + (["s3:PutObjectAcl"] if inputs.cross_account_bucket else [])
        statements.append(_statement("SessionLogsToS3", put, _object_arn(inputs, partition)))
    if inputs.s3_bucket or inputs.kms_key:
        # Checked before every session that logs to S3; the seeds grant it on "*".
        statements.append(_statement("S3EncryptionCheck", ("s3:GetEncryptionConfiguration",), "*"))
    if inputs.log_group:
        statements.append(_statement("SessionLogsToCloudWatch", LOGS_ACTIONS, "*"))
    if inputs.kms_key:
        statements.append(_key_statement(inputs.kms_key, partition, inputs.region))
    if inputs.kms_key or inputs.s3_bucket or inputs.log_group:
        statements.append(_statement("SessionDataKey", ("kms:GenerateDataKey",), "*"))
    return {"Version": "2012-10-17", "Statement": statements}


def _statement(sid: str, actions: tuple[str, ...] | list[str], resource: str) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": list(actions) if len(actions) > 1 else actions[0],
        "Resource": resource,
    }


def statement_for(action: str, inputs: PolicyInputs) -> dict[str, Any]:
    """The statement of the minimal policy that grants `action` (for a fix), whatever the
    preferences: an action the preferences did not ask for still gets its seed statement."""
    wanted = action.lower()
    widened = PolicyInputs(
        inputs.region,
        inputs.s3_bucket or "DOC-EXAMPLE-BUCKET",
        inputs.s3_prefix,
        inputs.cross_account_bucket or wanted == "s3:putobjectacl",
        inputs.log_group or "LOG-GROUP",
        inputs.kms_key or "KEY-ID",
    )
    for statement in build_policy(widened)["Statement"]:
        actions = statement["Action"]
        listed = [actions] if isinstance(actions, str) else actions
        if wanted in (a.lower() for a in listed):
            return {**statement, "Action": action}
    return _statement("Grant", (action,), "*")


def statement_text(action: str, inputs: PolicyInputs) -> str:
    """One line of JSON a user can paste into the role's policy."""
    statement = statement_for(action, inputs)
    statement.pop("Sid", None)
    return json.dumps(statement, separators=(", ", ": "))
