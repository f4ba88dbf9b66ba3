"""permissions.*: the agent's own credentials against a real local AWS API.

moto runs in server mode (a child process on 127.0.0.1) with IAM enforcement switched on
after set-up (`POST /moto-api/reset-auth 0`): every call is signed with credentials of a
role assumed in moto, and judged against that role's policy, which is the seeds' policy
(`ssmdiag.policy.build_policy`) with one action taken out. Credentials reach ssmdiag the way
the agent's do: from a fake IMDSv2 (tests/lab's IMDS server kind, extended here with
`iam/security-credentials/ROLE`) or from the shared-credentials file DHMC writes (under an
`[agent] data_dir` override). Nothing leaves 127.0.0.1: `[permissions] endpoint_url` points
every call at moto, and a guard on getaddrinfo refuses (and records) any other name, so a
call to a real AWS host would fail the test.

moto quirks, checked in moto 5.2: it authorizes KMS calls against Resource "*" (it does
not resolve the key first), so the key-scoped kms:Decrypt statement gets "*" added; it
authorizes GetBucketEncryption as s3:ListBucket (its S3 action map has no `encryption`
entry), so the test roles also get s3:ListBucket; its JSON-protocol services answer
AccessDenied as an XML body under the code "403" (ssmdiag reads the inner code);
sts:GetCallerIdentity is always allowed, as in AWS.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from ssmdiag import aws_credentials, permissions
from ssmdiag.aws_credentials import (
    AgentCredentials,
    CredentialsLookup,
    Secret,
    agent_credentials,
    parse_shared_credentials,
    parse_time,
)
from ssmdiag.checks import permissions as permission_checks
from ssmdiag.config import Config, ConfigError, config_from_mapping
from ssmdiag.engine import run_checks
from ssmdiag.identity import ONPREM, Identity
from ssmdiag.platform.base import FileRead
from ssmdiag.platform.linux import LinuxLocations, LinuxPlatform
from ssmdiag.policy import PolicyInputs, build_policy, statement_text
from ssmdiag.proxy import ProxySettings
from ssmdiag.report import Report, Status
from ssmdiag.session_prefs import SessionPreferences
from tests.conftest import run_cli
from tests.lab.servers import ImdsHandler, LabHTTPServer, parse_args

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "ssm-session-logs"  # default encryption aws:kms
PLAIN_BUCKET = "ssm-plain-logs"  # no default encryption
GROUP = "/ssm/sessions"  # with a KMS key
PLAIN_GROUP = "/ssm/plain"
CHECK_IDS = ["permissions.identity", "permissions.s3", "permissions.logs", "permissions.kms"]
# role -> actions taken out of the seeds' policy
ROLES = {
    "ssm-full": (),
    "ssm-no-s3": ("s3:GetEncryptionConfiguration", "s3:ListBucket"),
    "ssm-no-logs": ("logs:DescribeLogGroups",),
    "ssm-no-gdk": ("kms:GenerateDataKey",),
    "ssm-no-decrypt": ("kms:Decrypt",),
}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


# -- nothing but loopback ----------------------------------------------------------------


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every name resolved in this process must be loopback; any other is refused and fails
    the test (unless the test takes the list and clears what it expected)."""
    real = socket.getaddrinfo
    refused: list[str] = []

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK:
            refused.append(str(name))
            raise socket.gaierror(socket.EAI_NONAME, f"test: {name} is not loopback")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    # ssmdiag must ignore its own AWS environment: these would send botocore elsewhere.
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://192.0.2.1:9")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-agents-secret")
    yield refused
    assert refused == [], f"something tried to resolve {refused}"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    permission_checks.forget()
    yield
    permission_checks.forget()


# -- moto in server mode -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _post(url: str, body: bytes) -> bytes:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        data: bytes = answer.read()
        return data


@dataclass
class Moto:
    url: str
    key_id: str
    key_arn: str
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)


def _client(service: str, url: str) -> Any:
    import botocore.config
    import botocore.session

    session = botocore.session.Session(
        session_vars={
            "profile": (None, None, None, None),
            "config_file": (None, None, os.devnull, None),
            "credentials_file": (None, None, os.devnull, None),
        }
    )
    return session.create_client(
        service,
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="AKIDSETUPSETUPSETUP0",
        aws_secret_access_key="setup",
        config=botocore.config.Config(proxies={}, retries={"total_max_attempts": 1}),
    )


def _role_policy(key_arn: str, without: tuple[str, ...]) -> dict[str, Any]:
    """The seeds' policy for these preferences, minus some actions (plus s3:ListBucket for
    moto's GetBucketEncryption, see the module docstring)."""
    inputs = PolicyInputs(REGION, s3_bucket=BUCKET, log_group=GROUP, kms_key=key_arn)
    policy = build_policy(inputs)
    policy["Statement"].append({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"})
    kept = []
    for statement in policy["Statement"]:
        actions = statement["Action"]
        listed = [actions] if isinstance(actions, str) else actions
        remaining = [a for a in listed if a not in without]
        if not remaining:
            continue
        resource = statement["Resource"]
        if statement.get("Sid") == "SessionEncryption":
            # moto authorizes KMS calls against Resource "*" (it does not resolve the key
            # at authorization time), so the key's ARN alone would never match there.
            resource = [resource, "*"]
        kept.append({**statement, "Action": remaining, "Resource": resource})
    return {"Version": policy["Version"], "Statement": kept}


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("AWS_") and "proxy" not in k.lower()
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        iam, sts, s3, logs, kms = (_client(s, url) for s in ("iam", "sts", "s3", "logs", "kms"))
        key = kms.create_key(Description="session encryption")["KeyMetadata"]
        s3.create_bucket(Bucket=BUCKET)
        s3.create_bucket(Bucket=PLAIN_BUCKET)
        s3.put_bucket_encryption(
            Bucket=BUCKET,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": key["Arn"],
                        }
                    }
                ]
            },
        )
        logs.create_log_group(logGroupName=GROUP, kmsKeyId=key["Arn"])
        logs.create_log_group(logGroupName=PLAIN_GROUP)
        found = Moto(url, key["KeyId"], key["Arn"])
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
            ],
        }
        for role, without in ROLES.items():
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
            iam.put_role_policy(
                RoleName=role,
                PolicyName="session-manager",
                PolicyDocument=json.dumps(_role_policy(key["Arn"], without)),
            )
            assumed = sts.assume_role(
                RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}", RoleSessionName="i-0123456789abcdef0"
            )["Credentials"]
            found.credentials[role] = {
                "AccessKeyId": assumed["AccessKeyId"],
                "SecretAccessKey": assumed["SecretAccessKey"],
                "Token": assumed["SessionToken"],
                "Expiration": assumed["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        # From here on every request is authenticated and authorized.
        answer = json.loads(_post(f"{url}/moto-api/reset-auth", b"0"))
        assert answer["status"] == "ok"
        yield found
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# -- a fake IMDS that also hands out role credentials ------------------------------------


class CredentialsImds(ImdsHandler):
    """tests/lab's IMDSv2 plus iam/security-credentials/ROLE (the SDK's ec2rolecreds path)."""

    def data(self) -> dict[str, tuple[int, str]]:
        out = super().data()
        served: dict[str, str] = getattr(self.server, "served", {})
        for role, body in served.items():
            out[f"/latest/meta-data/iam/security-credentials/{role}"] = (200, body)
        return out


@dataclass
class Imds:
    server: LabHTTPServer
    url: str

    def serve(self, role: str | None, credentials: dict[str, str] | None = None) -> None:
        """role None: no instance profile (iam/ answers 404)."""
        opts = self.server.opts
        opts.profile_arn = f"arn:aws:iam::{ACCOUNT}:instance-profile/{role}" if role else ""
        body = {"Code": "Success", "LastUpdated": "2026-01-01T00:00:00Z", "Type": "AWS-HMAC"}
        body.update(credentials or {})
        self.server.served = {role: json.dumps(body)} if role else {}  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def imds() -> Iterator[Imds]:
    opts = parse_args(["imds", "--region", REGION, "--account-id", ACCOUNT])
    server = LabHTTPServer("127.0.0.1", 0, CredentialsImds, opts)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    try:
        yield Imds(server, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


# -- running the checks ------------------------------------------------------------------


@dataclass
class Node:
    tmp: Path
    locations: LinuxLocations
    imds: Imds
    moto: Moto
    monkeypatch: pytest.MonkeyPatch

    @property
    def data_dir(self) -> Path:
        return self.tmp / "agent-data"

    def config(self, prefs: SessionPreferences, **extra: Any) -> Config:
        values: dict[str, Any] = {
            "agent_config_file": str(self.tmp / "no-agent-config.json"),
            "agent_data_dir": str(self.data_dir),
            "session": prefs,
            "permissions_endpoint_url": self.moto.url,
            "imds_timeout": 10.0,  # the fake IMDS answers at once; room for a loaded CI machine
            "connect_timeout": 2.0,
            "probe_timeout": 5.0,
        }
        values.update(extra)
        return Config(**values)

    def run(
        self,
        prefs: SessionPreferences,
        platform_class: type[LinuxPlatform] = LinuxPlatform,
        **extra: Any,
    ) -> dict[str, Any]:
        self.monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
        self.monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", self.imds.url)
        config = self.config(prefs, **extra)
        report = run_checks(platform_class(config, self.locations), config, CHECK_IDS)
        return {**{r.id: r for r in report.checks}, "report": report}

    def write_dhmc(self, role: str, *, expires_in: float = 3600, profile: str = "default") -> Path:
        """What the agent writes for DHMC: the runtime config and the credentials file."""
        creds = self.moto.credentials[role]
        shared = self.data_dir / "credentials"
        runtime = self.data_dir / "runtimeconfig" / "identity_config.json"
        runtime.parent.mkdir(parents=True, exist_ok=True)
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
            seconds=expires_in
        )
        runtime.write_text(
            json.dumps(
                {
                    "SchemaVersion": "1.1",
                    "InstanceId": "i-0123456789abcdef0",
                    "IdentityType": "EC2",
                    "ShareFile": str(shared),
                    "ShareProfile": "",
                    # Go's time.Time JSON: RFC 3339 with nanoseconds.
                    "CredentialsExpiresAt": expires.strftime("%Y-%m-%dT%H:%M:%S.123456789Z"),
                    "CredentialsRetrievedAt": "2026-01-01T00:00:00Z",
                    "CredentialSource": "SSM",
                }
            )
        )
        # As gopkg.in/ini SaveTo writes it (shared_Credentials.go:94-103).
        shared.write_text(
            f"[{profile}]\n"
            f"aws_access_key_id     = {creds['AccessKeyId']}\n"
            f"aws_secret_access_key = {creds['SecretAccessKey']}\n"
            f"aws_session_token     = {creds['Token']}\n\n"
        )
        shared.chmod(0o600)
        return shared


@pytest.fixture
def node(
    tmp_path: Path,
    no_default_agent: LinuxLocations,
    imds: Imds,
    moto: Moto,
    monkeypatch: pytest.MonkeyPatch,
) -> Node:
    imds.serve(None)
    (tmp_path / "agent-data").mkdir()
    return Node(tmp_path, no_default_agent, imds, moto, monkeypatch)


def _prefs(moto: Moto, **changes: Any) -> SessionPreferences:
    base = SessionPreferences(
        s3_bucket=BUCKET,
        s3_encryption=True,
        log_group=GROUP,
        log_group_encryption=True,
        kms_key_id=moto.key_id,
        source="test",
    )
    return replace(base, **changes)


def _everything_shown(result: dict[str, Any]) -> str:
    report: Report = result["report"]
    return json.dumps(report.to_dict())


def _no_secret_in(text: str, moto: Moto) -> None:
    for creds in moto.credentials.values():
        for name in ("AccessKeyId", "SecretAccessKey", "Token"):
            assert creds[name] not in text, f"{name} leaked"


# -- allowed -----------------------------------------------------------------------------


def test_instance_profile_with_the_seeds_policy_passes_every_check(node: Node) -> None:
    node.imds.serve("ssm-full", node.moto.credentials["ssm-full"])
    started = time.monotonic()
    result = node.run(_prefs(node.moto))
    elapsed = time.monotonic() - started
    for check_id in CHECK_IDS:
        assert result[check_id].status.value == "ok", (check_id, result[check_id].summary)
    ident = result["permissions.identity"]
    assert f"arn:aws:sts::{ACCOUNT}:assumed-role/ssm-full/" in ident.summary
    assert "instance profile" in ident.summary
    assert "they expire at" in ident.summary
    assert ident.details["credentials"]["role_name"] == "ssm-full"
    assert ident.details["credentials"]["source"] == "instance-profile"
    assert "aws:kms" in result["permissions.s3"].summary
    assert node.moto.key_arn in result["permissions.logs"].summary
    assert "kms:GenerateDataKey and kms:Decrypt allowed" in result["permissions.kms"].summary
    _no_secret_in(_everything_shown(result), node.moto)
    assert elapsed < 20


def test_dhmc_credentials_come_from_the_shared_file_under_the_data_dir(node: Node) -> None:
    node.imds.serve(None)  # an EC2 node without an instance profile
    shared = node.write_dhmc("ssm-full")
    result = node.run(_prefs(node.moto))
    ident = result["permissions.identity"]
    assert ident.status.value == "ok", ident.summary
    assert "Default Host Management Configuration" in ident.summary
    assert ident.details["credentials"]["where"] == f"{shared} [default]"
    assert ident.details["credentials"]["expires_at"] is not None
    assert all(result[c].status.value == "ok" for c in CHECK_IDS)
    _no_secret_in(_everything_shown(result), node.moto)


# -- denied ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "check_id", "action"),
    [
        ("ssm-no-s3", "permissions.s3", "s3:GetEncryptionConfiguration"),
        ("ssm-no-logs", "permissions.logs", "logs:DescribeLogGroups"),
        ("ssm-no-gdk", "permissions.kms", "kms:GenerateDataKey"),
        ("ssm-no-decrypt", "permissions.kms", "kms:Decrypt"),
    ],
)
def test_a_missing_action_is_named_with_the_statement_that_grants_it(
    node: Node, role: str, check_id: str, action: str
) -> None:
    node.imds.serve(role, node.moto.credentials[role])
    prefs = _prefs(node.moto)
    result = node.run(prefs)
    denied = result[check_id]
    assert denied.status.value == "fail", denied.summary
    assert f"the node's role {role} is denied {action}" in denied.summary
    statement = statement_text(action, prefs.policy_inputs(REGION))
    assert statement in denied.remediation
    assert denied.details["statement"] == statement
    assert json.loads(statement)["Action"] == action
    for other in CHECK_IDS:
        if other != check_id:
            assert result[other].status.value == "ok", (other, result[other].summary)


def test_denied_in_the_table_a_user_reads(node: Node) -> None:
    node.imds.serve("ssm-no-decrypt", node.moto.credentials["ssm-no-decrypt"])
    result = node.run(_prefs(node.moto, s3_bucket=None, s3_encryption=False))
    kms = result["permissions.kms"]
    assert kms.summary.startswith("the node's role ssm-no-decrypt is denied kms:Decrypt on key ")
    assert "sessions with KMS encryption cannot start" in kms.summary
    assert '"Action": "kms:Decrypt"' in kms.remediation
    assert "key policy" in kms.remediation


# -- missing resources, unencrypted ------------------------------------------------------


def test_missing_bucket_log_group_and_key_are_named(node: Node) -> None:
    node.imds.serve("ssm-full", node.moto.credentials["ssm-full"])
    prefs = _prefs(
        node.moto,
        s3_bucket="no-such-session-bucket",
        log_group="/ssm/no-such-group",
        kms_key_id="alias/no-such-key",
    )
    result = node.run(prefs)
    s3, logs, kms = (result[c] for c in CHECK_IDS[1:])
    assert s3.status.value == "fail"
    assert "bucket no-such-session-bucket does not exist (NoSuchBucket)" in s3.summary
    assert "refuses every session" in s3.summary
    assert logs.status.value == "fail"
    assert "log group /ssm/no-such-group does not exist" in logs.summary
    assert kms.status.value == "fail"
    assert "KMS key alias/no-such-key does not exist in us-east-1 (NotFoundException)" in (
        kms.summary
    )
    # Without encryption required, sessions start: a missing bucket or group is a warn.
    relaxed = node.run(replace(prefs, s3_encryption=False, log_group_encryption=False))
    assert relaxed["permissions.s3"].status.value == "warn"
    assert "session logs are not written" in relaxed["permissions.s3"].summary
    assert relaxed["permissions.logs"].status.value == "warn"


def test_an_unencrypted_bucket_fails_only_when_encryption_is_required(node: Node) -> None:
    node.imds.serve("ssm-full", node.moto.credentials["ssm-full"])
    required = node.run(
        _prefs(node.moto, s3_bucket=PLAIN_BUCKET, log_group=PLAIN_GROUP, kms_key_id=None)
    )
    s3 = required["permissions.s3"]
    assert s3.status.value == "fail"
    assert f"bucket {PLAIN_BUCKET} has no default encryption" in s3.summary
    assert "put-bucket-encryption" in s3.remediation
    logs = required["permissions.logs"]
    assert logs.status.value == "fail"
    assert "is not encrypted with a KMS key" in logs.summary
    assert "associate-kms-key" in logs.remediation
    permission_checks.forget()
    relaxed = node.run(
        _prefs(
            node.moto,
            s3_bucket=PLAIN_BUCKET,
            s3_encryption=False,
            log_group=PLAIN_GROUP,
            log_group_encryption=False,
            kms_key_id=None,
        )
    )
    assert relaxed["permissions.s3"].status.value == "ok"
    assert "not required" in relaxed["permissions.s3"].summary
    assert relaxed["permissions.logs"].status.value == "ok"


# -- credentials: where they are, and when they cannot be used ----------------------------


def test_nothing_set_in_the_preferences_skips_saying_what_to_set(node: Node) -> None:
    node.imds.serve("ssm-full", node.moto.credentials["ssm-full"])
    result = node.run(SessionPreferences())
    assert result["permissions.identity"].status.value == "ok"
    for check_id, key in (
        ("permissions.s3", "[session] s3_bucket"),
        ("permissions.logs", "[session] log_group"),
        ("permissions.kms", "[session] kms_key_id"),
    ):
        assert result[check_id].status.value == "skip"
        assert key in result[check_id].summary
        assert "--session-preferences" in result[check_id].summary


def test_no_instance_profile_and_no_dhmc_points_at_identity_credentials(node: Node) -> None:
    node.imds.serve(None)
    result = node.run(_prefs(node.moto))
    ident = result["permissions.identity"]
    assert ident.status.value == "skip"
    assert "no instance profile" in ident.summary
    assert "identity.credentials" in ident.summary
    assert result["permissions.s3"].status.value == "skip"


def test_expired_shared_credentials_fail_as_the_workers_refuse_them(node: Node) -> None:
    node.write_dhmc("ssm-full", expires_in=-60)
    result = node.run(_prefs(node.moto))
    ident = result["permissions.identity"]
    assert ident.status.value == "fail"
    assert "expired at" in ident.summary
    assert "restart amazon-ssm-agent" in ident.remediation
    assert result["permissions.kms"].status.value == "skip"
    assert "see permissions.identity" in result["permissions.kms"].summary


def test_credentials_only_root_can_read_say_run_as_root(node: Node) -> None:
    shared = node.write_dhmc("ssm-full")

    class Unprivileged(LinuxPlatform):
        def read_file(self, path: str) -> FileRead:
            if path == str(shared):  # as for a non-root user: the file is mode 0600 root
                return FileRead(path, "denied", message="permission denied")
            return super().read_file(path)

    result = node.run(_prefs(node.moto), platform_class=Unprivileged)
    ident = result["permissions.identity"]
    assert ident.status.value == "skip"
    assert f"{shared} is readable only by root" in ident.summary
    assert "Run ssmdiag as root" in ident.remediation


def test_hybrid_node_uses_the_credentials_the_agent_shares(node: Node) -> None:
    """OnPrem: the vault holds the registration; the core agent shares its credentials in
    root's ~/.aws/credentials and names the file in the runtime config."""
    vault = node.data_dir / "Vault"
    (vault / "Store").mkdir(parents=True)
    store = vault / "Store" / "RegistrationKey"
    store.write_text(
        json.dumps({"instanceID": "mi-0123456789abcdef0", "region": REGION, "privateKey": "k"})
    )
    (vault / "Manifest").write_text(json.dumps({"RegistrationKey": str(store)}))
    shared = node.write_dhmc("ssm-full", profile="ssm")  # the same two files, hybrid flavour
    runtime = node.data_dir / "runtimeconfig" / "identity_config.json"
    config = json.loads(runtime.read_text())
    config.update(IdentityType="OnPrem", CredentialSource="SSM", ShareProfile="ssm")
    runtime.write_text(json.dumps(config))
    result = node.run(_prefs(node.moto))
    ident = result["permissions.identity"]
    assert ident.status.value == "ok", ident.summary
    assert "the hybrid activation" in ident.summary
    assert ident.details["credentials"]["where"] == f"{shared} [ssm]"
    assert result["permissions.kms"].status.value == "ok"
    # Profile.ShareCreds false: the credentials stay in the agent's memory.
    (node.tmp / "no-agent-config.json").write_text('{"Profile": {"ShareCreds": false}}')
    off = node.run(_prefs(node.moto))["permissions.identity"]
    assert off.status.value == "skip"
    assert "Profile.ShareCreds false" in off.summary


def test_credentials_aws_refuses_fail_naming_the_code(node: Node) -> None:
    node.imds.serve(
        "ssm-full",
        {
            "AccessKeyId": "ASIAZZZZZZZZZZZZZZZZ",
            "SecretAccessKey": "wrong",
            "Token": "wrong",
            "Expiration": "2099-01-01T00:00:00Z",
        },
    )
    result = node.run(_prefs(node.moto))
    ident = result["permissions.identity"]
    assert ident.status.value == "fail"
    assert "InvalidClientTokenId" in ident.summary
    assert "ASIAZZZZZZZZZZZZZZZZ" not in _everything_shown(result)


def test_without_botocore_the_checks_skip_with_the_install_command(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    node.imds.serve("ssm-full", node.moto.credentials["ssm-full"])
    monkeypatch.setattr(permissions, "botocore_available", lambda: False)
    result = node.run(_prefs(node.moto))
    for check_id in CHECK_IDS:
        assert result[check_id].status.value == "skip"
        assert "pip install botocore" in (result[check_id].remediation or "")
    # Found but not importable (a broken installation): the same, never a traceback.
    monkeypatch.setattr(permissions, "botocore_available", lambda: True)

    def broken() -> Any:
        raise permissions.BotocoreMissing(permissions.BOTOCORE_MISSING)

    monkeypatch.setattr(permissions, "_botocore", broken)
    result = node.run(_prefs(node.moto))
    assert result["permissions.identity"].status.value == "skip"
    assert "python3-botocore" in (result["permissions.identity"].remediation or "")


# -- bounds: once an hour, timeouts, nothing but the agent's endpoints --------------------


def _count_identity_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs sts:GetCallerIdentity is called at, from now on: one per verification."""
    calls: list[str] = []
    real = permissions.caller_identity

    def counted(caller: Any, target: Any) -> Any:
        calls.append(target.url)
        return real(caller, target)

    monkeypatch.setattr(permissions, "caller_identity", counted)
    return calls


def test_results_are_kept_for_an_hour_and_forget_drops_them(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    node.imds.serve("ssm-full", node.moto.credentials["ssm-full"])
    calls = _count_identity_calls(monkeypatch)
    prefs = _prefs(node.moto)
    first = node.run(prefs)
    second = node.run(prefs)
    assert len(calls) == 1
    assert second["permissions.identity"].summary == first["permissions.identity"].summary
    assert second["permissions.identity"].details["kept_for_s"] == 3600
    permission_checks.forget()
    node.run(prefs)
    assert len(calls) == 2
    monkeypatch.setattr(permission_checks, "CACHE_SECONDS", 0.0)
    node.run(prefs)
    assert len(calls) == 3


def test_kept_results_cross_to_the_next_check_worker_without_secrets(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ssmdiag run` runs each cycle in a new worker process: what one worker kept goes
    through the daemon (as JSON) to the next, so the calls stay hourly."""
    node.imds.serve("ssm-full", node.moto.credentials["ssm-full"])
    calls = _count_identity_calls(monkeypatch)
    prefs = _prefs(node.moto)
    first = node.run(prefs)
    handed = json.dumps(permission_checks.kept_results())  # worker -> daemon
    _no_secret_in(handed, node.moto)
    permission_checks.forget()  # the next worker starts empty...
    assert permission_checks.keep_results(json.loads(handed)) == 1  # ...and is handed it
    second = node.run(prefs)
    assert len(calls) == 1
    for check in ("permissions.identity", "permissions.s3", "permissions.logs", "permissions.kms"):
        assert second[check].status == first[check].status == Status.OK
        assert second[check].details == first[check].details  # the same verified_at
    # What cannot be read is dropped: the permissions are verified again, nothing crashes.
    assert permission_checks.keep_results([{"key": "k"}, "junk", None]) == 0
    assert permission_checks.keep_results({"not": "a list"}) == 0
    node.run(prefs)
    assert len(calls) == 2


def test_a_stalled_api_is_bounded_by_the_timeouts(node: Node) -> None:
    node.imds.serve("ssm-full", node.moto.credentials["ssm-full"])
    held: list[socket.socket] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        stop = threading.Event()

        def accept() -> None:  # accept and never answer
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(listener.accept()[0])
                except OSError:
                    continue

        threading.Thread(target=accept, daemon=True).start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        result = node.run(
            _prefs(node.moto), permissions_endpoint_url=url, connect_timeout=0.5, probe_timeout=0.5
        )
        elapsed = time.monotonic() - started
        stop.set()
    for sock in held:
        sock.close()
    ident = result["permissions.identity"]
    assert ident.status.value == "warn"
    assert "could not verify sts:GetCallerIdentity" in ident.summary
    assert ident.details["call"]["outcome"] == "timeout"
    assert result["permissions.kms"].status.value == "warn"
    assert "See endpoint.kms" in result["permissions.kms"].remediation
    # At most two attempts of 0.5 s each per call (KMS: not past its first call), all at once.
    assert elapsed < 8, elapsed


def test_without_the_test_key_the_agents_own_endpoints_are_called(
    node: Node, only_loopback: list[str]
) -> None:
    """No endpoint_url: the regional hosts. The guard refuses them, as nothing may leave."""
    node.imds.serve("ssm-full", node.moto.credentials["ssm-full"])
    result = node.run(_prefs(node.moto), permissions_endpoint_url=None)
    assert set(only_loopback) == {
        f"kms.{REGION}.amazonaws.com",
        f"logs.{REGION}.amazonaws.com",
        f"sts.{REGION}.amazonaws.com",
        # Virtual-hosted, as the agent's SDK addresses the bucket.
        f"{BUCKET}.s3.{REGION}.amazonaws.com",
    }
    only_loopback.clear()
    assert result["permissions.identity"].status.value == "warn"
    assert result["permissions.identity"].details["call"]["outcome"] == "network"


def test_the_agents_endpoint_overrides_and_service_domain() -> None:
    found = permissions.targets(
        "cn-north-1",
        {"Kms.Endpoint": "vpce-1.kms.cn-north-1.vpce.amazonaws.com.cn", "S3.Endpoint": ""},
    )
    assert found["sts"].url == "https://sts.cn-north-1.amazonaws.com.cn"
    assert found["kms"].url == "https://vpce-1.kms.cn-north-1.vpce.amazonaws.com.cn"
    assert found["kms"].origin == "Kms.Endpoint in the agent config"
    assert found["s3"].url == "https://s3.cn-north-1.amazonaws.com.cn"
    assert found["logs"].url == "https://logs.cn-north-1.amazonaws.com.cn"
    custom = permissions.targets("us-east-1", {"Agent.ServiceDomain": "example.org"})
    assert custom["sts"].url == "https://sts.us-east-1.example.org"
    local = permissions.targets("us-east-1", {}, "http://127.0.0.1:5000")
    assert {t.url for t in local.values()} == {"http://127.0.0.1:5000"}


def test_the_agents_proxy_is_used_with_gos_rules() -> None:
    proxies = ProxySettings.from_environ(
        {"https_proxy": "user:pa%40ss@proxy.corp:3128", "no_proxy": ".internal,169.254.169.254"},
        "test",
    )
    chosen, shown = permissions._proxy_for("https://kms.us-east-1.amazonaws.com", proxies)
    assert chosen == {"https": "http://user:pa%40ss@proxy.corp:3128"}
    assert shown == "http://***@proxy.corp:3128"
    assert permissions._proxy_for("https://kms.vpce.internal", proxies) == ({}, None)
    assert permissions._proxy_for("http://127.0.0.1:5000", proxies) == ({}, None)
    socks = ProxySettings.from_environ({"HTTPS_PROXY": "socks5://p:1080"}, "test")
    with pytest.raises(permissions._NoRoute, match="SOCKS5"):
        permissions._proxy_for("https://sts.us-east-1.amazonaws.com", socks)


# -- the pieces --------------------------------------------------------------------------


def test_shared_credentials_are_parsed_as_the_sdk_reads_them() -> None:
    text = (
        "; comment\n[Default]\naws_access_key_id = A\n"
        "[default]\naws_access_key_id=OLD\n"
        "[default]\n# again\naws_access_key_id = AKIA1\naws_secret_access_key = s=cret/+\n"
        "AWS_SESSION_TOKEN = upper\n"
    )
    parsed = parse_shared_credentials(text)
    # Names are case-sensitive; a repeated section starts afresh; values keep their '='.
    assert parsed["default"] == {
        "aws_access_key_id": "AKIA1",
        "aws_secret_access_key": "s=cret/+",
        "AWS_SESSION_TOKEN": "upper",
    }
    assert parsed["Default"] == {"aws_access_key_id": "A"}


def test_times_as_go_and_imds_write_them() -> None:
    utc = datetime.timezone.utc
    assert parse_time("2026-05-01T10:00:00Z") == datetime.datetime(2026, 5, 1, 10, tzinfo=utc)
    assert parse_time("2026-05-01T12:00:00.123456789+02:00") == datetime.datetime(
        2026, 5, 1, 10, 0, 0, 123456, tzinfo=utc
    )
    assert parse_time("0001-01-01T00:00:00Z") is None  # Go's zero time: nothing recorded
    assert parse_time("yesterday") is None
    assert parse_time(17) is None


def test_secrets_never_show_in_repr() -> None:
    creds = AgentCredentials("instance-profile", "imds", Secret("AKIDX"), Secret("s3cr3t"))
    lookup = CredentialsLookup("ok", "found", credentials=creds)
    for text in (repr(creds), repr(lookup), str(Secret("s3cr3t")), json.dumps(lookup.shown())):
        assert "s3cr3t" not in text
        assert "AKIDX" not in text
    assert lookup.without_secrets().credentials is None


def test_hybrid_credentials_follow_the_runtime_config(tmp_path: Path) -> None:
    shared = tmp_path / "root-home" / ".aws" / "credentials"
    shared.parent.mkdir(parents=True)
    shared.write_text("[ssm]\naws_access_key_id = AKIDHYBRID\naws_secret_access_key = x\n")
    data = tmp_path / "data"
    (data / "runtimeconfig").mkdir(parents=True)
    (data / "runtimeconfig" / "identity_config.json").write_text(
        json.dumps(
            {
                "identitytype": "OnPrem",  # encoding/json: names match in any case
                "ShareFile": str(shared),
                "ShareProfile": "ssm",
                "CredentialsExpiresAt": "2099-01-01T00:00:00Z",
            }
        )
    )
    platform = LinuxPlatform(Config(agent_data_dir=str(data)), LinuxLocations())
    ident = Identity(identity_type=ONPREM, region=REGION)
    found = agent_credentials(platform, ident, agent_settings={}, environ={}, imds_budget=1)
    assert found.state == "ok"
    assert found.source == aws_credentials.HYBRID
    assert found.where == f"{shared} [ssm]"
    assert found.credentials is not None
    assert found.credentials.access_key_id.reveal() == "AKIDHYBRID"
    assert found.expires_at is not None and found.expires_at.year == 2099
    off = agent_credentials(
        platform, ident, agent_settings={"Profile.ShareCreds": False}, environ={}, imds_budget=1
    )
    assert off.state == "unsupported"
    assert "Profile.ShareCreds false" in off.summary
    shared.unlink()
    gone = agent_credentials(platform, ident, agent_settings={}, environ={}, imds_budget=1)
    assert gone.state == "invalid"
    assert "workers cannot load credentials" in gone.summary


def test_permissions_endpoint_url_is_a_config_key(tmp_path: Path) -> None:
    config = config_from_mapping({"permissions": {"endpoint_url": "http://127.0.0.1:5000"}})
    assert config.permissions_endpoint_url == "http://127.0.0.1:5000"
    for bad in ("ftp://x", "not a url", "http://", 5, "http://u:p@127.0.0.1:5000"):
        with pytest.raises(ConfigError, match=r"permissions\.endpoint_url"):
            config_from_mapping({"permissions": {"endpoint_url": bad}}, "f.toml")


# -- the command line, as a user runs it ---------------------------------------------------


def test_cli_check_reports_a_denied_action(
    node: Node, validate_report: Any, only_loopback: list[str]
) -> None:
    node.imds.serve("ssm-no-logs", node.moto.credentials["ssm-no-logs"])
    config = node.tmp / "ssmdiag.toml"
    config.write_text(
        "[agent]\n"
        f'data_dir = "{node.data_dir}"\n'
        f'config_file = "{node.tmp / "no-agent-config.json"}"\n'
        f'binary = "{node.tmp / "no-agent"}"\n'
        "[session]\n"
        f'log_group = "{GROUP}"\n'
        f'kms_key_id = "{node.moto.key_arn}"\n'
        "[permissions]\n"
        f'endpoint_url = "{node.moto.url}"\n'
    )
    result = run_cli(
        "check", "--format", "json", "--config", str(config), "--only", *CHECK_IDS,
        env={
            "AWS_EC2_METADATA_DISABLED": "false",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": node.imds.url,
        },
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    report = json.loads(result.stdout)
    validate_report(report)
    by_id = {c["id"]: c for c in report["checks"]}
    assert by_id["permissions.logs"]["status"] == "fail"
    assert "logs:DescribeLogGroups" in by_id["permissions.logs"]["summary"]
    assert '"Action": "logs:DescribeLogGroups"' in by_id["permissions.logs"]["remediation"]
    assert by_id["permissions.kms"]["status"] == "ok"
    assert by_id["permissions.s3"]["status"] == "skip"
    _no_secret_in(result.stdout + result.stderr, node.moto)
    assert "Traceback" not in result.stderr
