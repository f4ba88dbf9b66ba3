"""Session preferences as input (config [session] and --session-preferences), and
`ssmdiag policy`: the seeds' IAM policy for them, linted by parliament."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from parliament import analyze_policy_string

from ssmdiag.policy import PolicyInputs, build_policy, partition_of, statement_for
from tests.conftest import run_cli

DOCUMENT = {
    "schemaVersion": "1.0",
    "description": "Document to hold regional settings for Session Manager",
    "sessionType": "Standard_Stream",
    "inputs": {
        "s3BucketName": "session-logs-123",
        "s3KeyPrefix": "node-sessions",
        "s3EncryptionEnabled": True,
        "cloudWatchLogGroupName": "/ssm/sessions",
        "cloudWatchEncryptionEnabled": "true",
        "cloudWatchStreamingEnabled": False,
        "kmsKeyId": "1234abcd-12ab-34cd-56ef-1234567890ab",
        "runAsEnabled": False,
        "runAsDefaultUser": "",
        "idleSessionTimeout": "20",
        "maxSessionDuration": "",
        "shellProfile": {"windows": "", "linux": ""},
    },
}

# The seeds' full example policy (../shared/seeds/, "Create a custom IAM role": the one
# with S3 and CloudWatch logging): every action it grants.
SEED_FULL_POLICY_ACTIONS = {
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ssm:UpdateInstanceInformation",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
    "s3:PutObject",
    "s3:GetEncryptionConfiguration",
    "kms:Decrypt",
    "kms:GenerateDataKey",
}


def actions(policy: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for statement in policy["Statement"]:
        value = statement["Action"]
        found.update([value] if isinstance(value, str) else value)
    return found


def policy_cli(*args: str) -> dict[str, Any]:
    result = run_cli("policy", *args)
    assert result.returncode == 0, result.stderr
    policy: dict[str, Any] = json.loads(result.stdout)
    return policy


@pytest.mark.parametrize("form", ["document", "document-as-json-string", "inputs-only"], ids=str)
def test_every_form_of_the_preferences_document_is_read(tmp_path: Path, form: str) -> None:
    body: Any = DOCUMENT if form != "inputs-only" else DOCUMENT["inputs"]
    text = json.dumps(json.dumps(body)) if form == "document-as-json-string" else json.dumps(body)
    path = tmp_path / "prefs.json"
    path.write_text(text)
    policy = policy_cli("--session-preferences", str(path), "--region", "us-east-1")
    assert actions(policy) == SEED_FULL_POLICY_ACTIONS
    put = next(s for s in policy["Statement"] if s["Action"] == "s3:PutObject")
    assert put["Resource"] == "arn:aws:s3:::session-logs-123/node-sessions/*"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"s3Bucket": "x"}, "inputs.s3Bucket: unknown preference"),
        ({"s3EncryptionEnabled": "yes", "s3BucketName": "b"}, "must be true or false"),
        ({"kmsKeyId": 5}, "must be a string"),
        ({"s3EncryptionEnabled": True}, "no S3 bucket is named"),
    ],
)
def test_bad_preference_files_are_configuration_errors(
    tmp_path: Path, inputs: dict[str, Any], message: str
) -> None:
    path = tmp_path / "prefs.json"
    path.write_text(json.dumps({"inputs": inputs}))
    result = run_cli("policy", "--session-preferences", str(path), "--region", "us-east-1")
    assert result.returncode == 78 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_session_section_of_the_config(write_config: Callable[[str], Path]) -> None:
    good = write_config(
        "[session]\ns3_bucket = 'b1'\nlog_group = '/ssm/s'\nkms_key_id = 'alias/ssm'\n"
        "s3_bucket_owner = '111122223333'\n[network]\nregion = 'us-gov-west-1'\n"
    )
    policy = policy_cli("--config", str(good))
    put = next(s for s in policy["Statement"] if "s3:PutObject" in s["Action"])
    assert put["Action"] == ["s3:PutObject", "s3:PutObjectAcl"]  # another account's bucket
    assert put["Resource"] == "arn:aws-us-gov:s3:::b1/*"
    decrypt = next(s for s in policy["Statement"] if s["Action"] == "kms:Decrypt")
    assert decrypt["Condition"] == {
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/ssm"}
    }
    for text, message in (
        ("[session]\nbucket = 'x'\n", "session.bucket: unknown key"),
        ("[session]\nstreaming = 'maybe'\n", "session.streaming: must be true or false"),
        ("[session]\ns3_bucket_owner = '12'\n", "12-digit AWS account id"),
    ):
        result = run_cli("policy", "--config", str(write_config(text)), "--region", "us-east-1")
        assert result.returncode == 78 and message in result.stderr, (text, result.stderr)


def test_flags_win_and_nothing_set_gives_the_minimal_policy() -> None:
    minimal = policy_cli("--region", "eu-west-1")
    assert actions(minimal) == {
        "ssm:UpdateInstanceInformation",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    }
    cn = policy_cli("--region", "cn-north-1", "--s3-bucket", "b", "--kms-key", "k-1")
    assert any("arn:aws-cn:" in json.dumps(s) for s in cn["Statement"])
    bad = run_cli("policy", "--region", "us-east-1", "--s3-bucket-owner", "abc")
    assert bad.returncode == 64 and "12-digit" in bad.stderr


COMBINATIONS = [
    PolicyInputs(region, bucket, prefix, cross, group, key)
    for region in ("us-east-1", "cn-northwest-1", "us-gov-east-1")
    for bucket, prefix, cross in ((None, None, False), ("b-1", "p", False), ("b-2", None, True))
    for group in (None, "/ssm/sessions")
    for key in (None, "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
]


@pytest.mark.parametrize("inputs", COMBINATIONS)
def test_parliament_finds_nothing_but_the_seeds_own_resource_stars(inputs: PolicyInputs) -> None:
    policy = build_policy(inputs)
    findings = analyze_policy_string(json.dumps(policy)).findings
    # The seeds grant s3:GetEncryptionConfiguration, the CloudWatch Logs actions and
    # kms:GenerateDataKey on "*"; anything else parliament flags is ours to fix.
    others = [(f.issue, f.detail) for f in findings if f.issue != "RESOURCE_STAR"]
    assert others == []
    assert actions(policy) <= SEED_FULL_POLICY_ACTIONS | {"s3:PutObjectAcl"}


def test_partitions_and_fix_statements() -> None:
    assert [partition_of(r) for r in ("us-east-1", "cn-north-1", "us-gov-west-1", None)] == [
        "aws",
        "aws-cn",
        "aws-us-gov",
        "aws",
    ]
    decrypt = statement_for("kms:Decrypt", PolicyInputs("us-east-1"))
    assert decrypt["Resource"].startswith("arn:aws:kms:us-east-1:")
    open_data = statement_for("ssmmessages:OpenDataChannel", PolicyInputs())
    assert (open_data["Action"], open_data["Resource"]) == ("ssmmessages:OpenDataChannel", "*")


def test_run_as_default_user_must_exist(write_config: Callable[[str], Path]) -> None:
    def run_as(text: str) -> dict[str, Any]:
        result = run_cli(
            "check", "--format", "json", "--only", "session.run_as",
            "--config", str(write_config(text)),
        )  # fmt: skip
        check: dict[str, Any] = json.loads(result.stdout)["checks"][0]
        return check

    present = run_as("[session]\nrun_as_enabled = true\nrun_as_user = 'root'\n")
    assert present["status"] == "ok" and "uid 0" in present["summary"]
    missing = run_as("[session]\nrun_as_enabled = true\nrun_as_user = 'nobody-here-42'\n")
    assert missing["status"] == "fail" and "does not exist" in missing["summary"]
    assert "useradd -m nobody-here-42" in missing["remediation"]
    off = run_as("[session]\ns3_bucket = 'b'\n")
    assert off["status"] == "skip" and "Run As is not enabled" in off["summary"]
