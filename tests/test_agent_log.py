"""agent.log: the agent's own log, read bounded and classified by the agent's format strings.

Every fixture line below is built from a format string of SSM Agent 3.3.1142.0 (the local
mirror, `git -C .mirror/aws+amazon-ssm-agent/repo show HEAD:PATH`), the AWS SDK for Go it
vendors (vendor/github.com/aws/aws-sdk-go, abbreviated SDK/) or the Go standard library,
cited beside it. The line format is seelog's, as the packages install it
(seelog.xml.template): `%Date(2006-01-02 15:04:05.0000) %LEVEL %Msg%n`, and in errors.log
`... %LEVEL [%FuncShort @ %File.%Line] %Msg%n`. Texts that come from AWS itself (IAM's
"is not authorized to perform: ...", "Signature expired: ...") are marked "AWS text".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Optional

import pytest

from ssmdiag import agent_log as al
from ssmdiag.checks import CHECK_IDS
from ssmdiag.checks import agent_log as check_module
from ssmdiag.checks.base import Context
from ssmdiag.config import Config
from ssmdiag.engine import _run_one
from ssmdiag.identity import Identity, ImdsResult
from ssmdiag.platform.base import FileRead
from ssmdiag.platform.linux import LinuxPlatform
from ssmdiag.platform.windows import WindowsPlatform
from ssmdiag.policy import PolicyInputs, statement_text
from ssmdiag.report import CheckResult, Status
from tests.fakes.windows import FakeWindowsApi

DATA = Path(__file__).resolve().parent / "data" / "agent_log"
NOW = datetime.now().replace(microsecond=0)
ACCOUNT = "111122223333"
IID = "i-0123456789abcdef0"
ROLE_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/NodeRole/{IID}"
PROFILE_ARN = f"arn:aws:iam::{ACCOUNT}:instance-profile/NodeProfile"


def stamp(when: datetime) -> str:
    """seelog's %Date(2006-01-02 15:04:05.0000)."""
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 100:04d}"


def line(when: datetime, level: str, message: str) -> str:
    """amazon-ssm-agent.log's format: %Date %LEVEL %Msg%n."""
    return f"{stamp(when)} {level} {message}\n"


def errors_line(when: datetime, level: str, caller: str, message: str) -> str:
    """errors.log's format: %Date %LEVEL [%FuncShort @ %File.%Line] %Msg%n."""
    return f"{stamp(when)} {level} [{caller}] {message}\n"


def denial(action: str, resource: str, why: str = "because no identity-based policy allows") -> str:
    # AWS text: IAM's denial, as the service returns it in the error's message.
    return f"User: {ROLE_ARN} is not authorized to perform: {action} on resource: {resource} {why}"


REQUEST_ID = "status code: 400, request id: 6681f3a3-7c19-4982-9816-52498e9ddb32"
S3_REQUEST_ID = "status code: 403, request id: 0M3T6TSX3R0K6PQN, host id: aGVsbG8="

# (class, action, status, fixture lines). Each line: (level, message, citation).
Fixture = tuple[str, Optional[str], str, list[tuple[str, str, str]]]

FIXTURES: dict[str, Fixture] = {
    "update_instance_information_denied": (
        al.ACCESS_DENIED,
        "ssm:UpdateInstanceInformation",
        "fail",
        [
            (
                "WARN",
                "EC2RoleProvider Failed to connect to Systems Manager with instance profile role "
                "credentials. Err: retrieved credentials failed to report to ssm. Error: "
                "AccessDeniedException: "
                + denial(
                    "ssm:UpdateInstanceInformation",
                    f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/{IID}",
                ),
                # ec2_role_provider.go:131 (Warnf), :171 (Errorf), :207-208 (awserr.New
                # drops the request id), SDK/aws/awserr/types.go:13 ("%s: %s")
                "common/identity/credentialproviders/ec2roleprovider/ec2_role_provider.go:131, "
                ":171; SDK/aws/awserr/types.go:13",
            )
        ],
    ),
    "health_ping_denied": (
        al.ACCESS_DENIED,
        "ssm:UpdateInstanceInformation",
        "fail",
        [
            (
                "ERROR",
                "[ssm-agent-worker] [HealthCheck] error when calling AWS APIs. error details - "
                "AccessDeniedException: "
                + denial("ssm:UpdateInstanceInformation", f"arn:aws:ec2:us-east-1:{ACCOUNT}:*")
                + f"\n\t{REQUEST_ID}",
                # context "[HealthCheck]" healthcheck.go:96; awserr.go:49; SDK awserr
                # types.go:13 and :147 ("status code: %d, request id: %s")
                "agent/health/healthcheck.go:96, :154; agent/sdkutil/awserr.go:49; "
                "SDK/aws/awserr/types.go:13, :147",
            )
        ],
    ),
    "hibernation_denied": (
        al.ACCESS_DENIED,
        "ssm:UpdateInstanceInformation",
        "fail",
        [
            (
                "ERROR",
                "Health ping failed with error - AccessDeniedException: "
                + denial("ssm:UpdateInstanceInformation", f"arn:aws:ec2:us-east-1:{ACCOUNT}:*"),
                "agent/hibernation/hibernation.go:104; SDK/aws/awserr/types.go:13",
            ),
            (
                "INFO",
                "[ssm-agent-worker] Entering SSM Agent hibernate - AccessDeniedException: "
                + denial("ssm:UpdateInstanceInformation", f"arn:aws:ec2:us-east-1:{ACCOUNT}:*"),
                "agent/agent.go:113",
            ),
        ],
    ),
    "create_control_channel_denied": (
        al.ACCESS_DENIED,
        "ssmmessages:CreateControlChannel",
        "fail",
        [
            (
                "ERROR",
                "[ssm-agent-worker] [MessageService] [MGSInteractor] Failed to get controlchannel "
                "token, error: CreateControlChannel failed with error: createControlChannel "
                "request failed: unexpected response from the service <AccessDeniedException>\n"
                "  <Message>"
                + denial("ssmmessages:CreateControlChannel", f"arn:aws:ssmmessages:*:{ACCOUNT}:*")
                + "</Message>\n</AccessDeniedException>",
                # controlchannel.go:91, :285, :267 ("<AccessDeniedException>");
                # agent/session/service/service.go:181, :126
                "agent/session/controlchannel/controlchannel.go:91, :267, :285; "
                "agent/session/service/service.go:126, :181",
            )
        ],
    ),
    "create_data_channel_denied_by_scp": (
        al.ACCESS_DENIED,
        "ssmmessages:CreateDataChannel",
        "fail",
        [
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [DataBackend] Failed to get datachannel "
                "token, error: CreateDataChannel failed with no output or error: "
                "createDataChannel request failed: unexpected response from the service "
                "<AccessDeniedException> <Message>"
                + denial(
                    "ssmmessages:CreateDataChannel",
                    f"arn:aws:ssmmessages:us-east-1:{ACCOUNT}:*",
                    "with an explicit deny in a service control policy",
                )
                + "</Message> </AccessDeniedException>",
                # datachannel.go:287, :1169; service.go:213, :126
                "agent/session/datachannel/datachannel.go:287, :1169; "
                "agent/session/service/service.go:126, :213",
            )
        ],
    ),
    "open_control_channel_denied": (
        al.ACCESS_DENIED,
        "ssmmessages:OpenControlChannel",
        "fail",
        [
            (
                "INFO",
                "[ssm-agent-worker] [MessageService] [MGSInteractor] Opening websocket connection "
                f"to: wss://ssmmessages.us-east-1.amazonaws.com/v1/control-channel/{IID}"
                "?role=subscribe&stream=input",
                # websocketutil.go:66; the path: config.go:32 ControlChannel
                "agent/session/communicator/websocketutil/websocketutil.go:66; "
                "agent/session/config/config.go:32",
            ),
            (
                "WARN",
                "[ssm-agent-worker] [MessageService] [MGSInteractor] Failed to dial websocket, "
                "status: 403 Forbidden, err: websocket: bad handshake",
                # websocketutil.go:71; vendor/github.com/gorilla/websocket/client.go:24
                "agent/session/communicator/websocketutil/websocketutil.go:71; "
                "vendor/github.com/gorilla/websocket/client.go:24",
            ),
        ],
    ),
    "open_data_channel_denied": (
        al.ACCESS_DENIED,
        "ssmmessages:OpenDataChannel",
        "fail",
        [
            (
                "INFO",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [DataBackend] Opening websocket "
                "connection to: wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/"
                "sess-0a1b2c3d4e5f?role=publish_subscribe",
                # websocketutil.go:66; config.go:33 DataChannel, :37 RolePublishSubscribe
                "agent/session/communicator/websocketutil/websocketutil.go:66; "
                "agent/session/config/config.go:33, :37",
            ),
            (
                "WARN",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [DataBackend] Failed to dial "
                "websocket, status: 403 Forbidden, err: websocket: bad handshake",
                "agent/session/communicator/websocketutil/websocketutil.go:71",
            ),
        ],
    ),
    "get_bucket_encryption_denied": (
        al.ACCESS_DENIED,
        "s3:GetEncryptionConfiguration",
        "fail",
        [
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] Encountered an error "
                f"while calling S3 API GetBucketEncryption AccessDenied: Access Denied\n\t"
                f"{S3_REQUEST_ID}",
                # s3util.go:150; SDK/service/s3/api.go:20017 (AccessDenied);
                # SDK/internal/s3shared/s3err/error.go:25 (", host id: %s")
                "agent/s3util/s3util.go:150; SDK/service/s3/api.go:20017; "
                "SDK/internal/s3shared/s3err/error.go:25",
            )
        ],
    ),
    "put_object_denied": (
        al.ACCESS_DENIED,
        "s3:PutObject",
        "fail",
        [
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] Failed to upload "
                "/var/lib/amazon/ssm/i-0123456789abcdef0/session/orchestration/sess-0a1b2c3d4e5f"
                "/Standard_Stream/ipcTempFile.log to s3://doc-example-bucket/sess-0a1b2c3d4e5f"
                f".log err:AccessDenied: Access Denied\n\t{S3_REQUEST_ID}",
                "agent/s3util/s3util.go:134; SDK/service/s3/api.go:20017",
            ),
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] Failed to upload shell "
                f"session logs to S3: AccessDenied: Access Denied\n\t{S3_REQUEST_ID}",
                "agent/session/shell/shell.go:665",
            ),
        ],
    ),
    "kms_decrypt_denied": (
        al.ACCESS_DENIED,
        "kms:Decrypt",
        "fail",
        [
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [DataBackend] Fetching data key "
                "failed: Unable to retrieve data key, Error when decrypting data key "
                "AccessDeniedException: "
                + denial(
                    "kms:Decrypt",
                    f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                )
                + f"\n\t{REQUEST_ID}",
                # datachannel.go:878 (log.Error), :938; blockcipher.go:102; kmsservice.go:79
                "agent/session/datachannel/datachannel.go:878, :938; "
                "agent/session/crypto/blockcipher.go:102; agent/session/crypto/kmsservice.go:79",
            )
        ],
    ),
    "create_log_stream_denied": (
        al.ACCESS_DENIED,
        "logs:CreateLogStream",
        "fail",
        [
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] Error Calling "
                "CreateLogStream:AccessDeniedException: "
                + denial("logs:CreateLogStream", f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:x")
                + f"\n\t{REQUEST_ID}",
                # cloudwatchlogsservice.go:249; SDK/service/cloudwatchlogs/errors.go:15
                "agent/agentlogstocloudwatch/cloudwatchlogspublisher/cloudwatchlogsservice.go:"
                "249; SDK/service/cloudwatchlogs/errors.go:15",
            ),
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] error when calling AWS "
                "APIs. error details - AccessDeniedException: "
                + denial("logs:CreateLogStream", f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:x"),
                # the copy sdkutil.HandleAwsError adds (awserr.go:49): not counted twice
                "agent/sdkutil/awserr.go:49; cloudwatchlogsservice.go:252",
            ),
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] Error Creating Log "
                "Stream for CloudWatchLogs output: AccessDeniedException: "
                + denial("logs:CreateLogStream", f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:x"),
                "agent/agentlogstocloudwatch/cloudwatchlogspublisher/cloudwatchlogsservice.go:574",
            ),
        ],
    ),
    "put_log_events_denied": (
        al.ACCESS_DENIED,
        "logs:PutLogEvents",
        "fail",
        [
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] Error in PutLogEvents:"
                "AccessDeniedException: "
                + denial("logs:PutLogEvents", f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:x"),
                "agent/agentlogstocloudwatch/cloudwatchlogspublisher/cloudwatchlogsservice.go:461",
            )
        ],
    ),
    "describe_log_groups_denied": (
        al.ACCESS_DENIED,
        "logs:DescribeLogGroups",
        "fail",
        [
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] Error Calling "
                "DescribeLogGroups:AccessDeniedException: "
                + denial("logs:DescribeLogGroups", f"arn:aws:logs:us-east-1:{ACCOUNT}:*"),
                "agent/agentlogstocloudwatch/cloudwatchlogspublisher/cloudwatchlogsservice.go:281",
            ),
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] Error in calling "
                "DescribeLogGroups:AccessDeniedException: "
                + denial("logs:DescribeLogGroups", f"arn:aws:logs:us-east-1:{ACCOUNT}:*"),
                "agent/agentlogstocloudwatch/cloudwatchlogspublisher/cloudwatchlogsservice.go:341",
            ),
        ],
    ),
    "describe_log_streams_denied": (
        al.ACCESS_DENIED,
        "logs:DescribeLogStreams",
        "fail",
        [
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] Error in calling "
                "DescribeLogStreams:AccessDeniedException: "
                + denial("logs:DescribeLogStreams", f"arn:aws:logs:us-east-1:{ACCOUNT}:*"),
                "agent/agentlogstocloudwatch/cloudwatchlogspublisher/cloudwatchlogsservice.go:400",
            )
        ],
    ),
    "s3_put_to_kms_bucket_names_generate_data_key": (
        al.ACCESS_DENIED,
        "kms:GenerateDataKey",
        "fail",
        [
            (
                "WARN",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] Failed uploading "
                "/var/lib/amazon/ssm/x/ipcTempFile.log to s3://doc-example-bucket/x.log "
                "err:AccessDenied: "
                + denial("kms:GenerateDataKey", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k")
                + f"\n\t{S3_REQUEST_ID} - retrying",
                # s3util.go:127; the action is the one AWS names (AWS text)
                "agent/s3util/s3util.go:127",
            )
        ],
    ),
    "no_instance_profile": (
        al.NO_CREDENTIALS,
        None,
        "fail",
        [
            (
                "WARN",
                "EC2RoleProvider Failed to connect to Systems Manager with instance profile role "
                "credentials. Err: retrieved credentials failed to report to ssm. Error: "
                "EC2RoleRequestError: no EC2 instance role found",
                # ec2_role_provider.go:131, :171; SDK/aws/credentials/ec2rolecreds/
                # ec2_role_provider.go:144 (what the real agent logs: tests/data/agent_log)
                "ec2_role_provider.go:131, :171; SDK/aws/credentials/ec2rolecreds/"
                "ec2_role_provider.go:144",
            ),
            (
                "ERROR",
                "[CredentialRefresher] Retrieve credentials produced error: no valid credentials "
                "could be retrieved for ec2 identity. Default Host Management Err: ec2 instance "
                "not yet registered with Systems Manager",
                # credentialrefresher.go:218; ec2_role_provider.go:146;
                # ssm_ec2_role_provider.go:87
                "core/app/credentialrefresher/credentialrefresher.go:218; "
                "ec2_role_provider.go:146; ssmec2roleprovider/ssm_ec2_role_provider.go:87",
            ),
        ],
    ),
    "no_credential_providers": (
        al.NO_CREDENTIALS,
        None,
        "fail",
        [
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] Error Calling "
                "DescribeLogGroups:NoCredentialProviders: no valid providers in chain",
                "cloudwatchlogsservice.go:281; SDK/aws/credentials/chain_provider.go:87",
            )
        ],
    ),
    "no_identity": (
        al.NO_IDENTITY,
        None,
        "fail",
        [
            (
                "ERROR",
                "Agent failed to assume any identity",
                "common/identity/identity/identity_selector.go:98",
            ),
            (
                "ERROR",
                "Error occurred when starting amazon-ssm-agent: failed to get identity: failed "
                "to find agent identity",
                # agent.go:153 wraps identity_selector.go:99 (seen from the real agent)
                "common/identity/identity/identity_selector.go:99",
            ),
        ],
    ),
    "signature_expired_clock": (
        al.SIGNATURE,
        None,
        "fail",
        [
            (
                "ERROR",
                "[CredentialRefresher] Retrieve credentials produced error: unexpected error "
                "getting instance profile role credentials or calling UpdateInstanceInformation. "
                "Skipping default host management fallback: retrieved credentials failed to "
                "report to ssm. Error: InvalidSignatureException: Signature expired: "
                "20261203T071500Z is now earlier than 20261203T072500Z (20261203T073000Z - 5 "
                "min.)",
                # ec2_role_provider.go:134, :171; credentialrefresher.go:218; the code and
                # "Signature expired" are AWS text in the SDK's "%s: %s" (types.go:13)
                "ec2_role_provider.go:134, :171; credentialrefresher.go:218; "
                "SDK/aws/awserr/types.go:13",
            )
        ],
    ),
    "s3_request_time_too_skewed": (
        al.SIGNATURE,
        None,
        "fail",
        [
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] Failed to upload "
                "/var/lib/amazon/ssm/x/ipcTempFile.log to s3://doc-example-bucket/x.log "
                "err:RequestTimeTooSkewed: The difference between the request time and the "
                f"current time is too large.\n\t{S3_REQUEST_ID}",
                "agent/s3util/s3util.go:134; SDK/service/s3/api.go:20320",
            )
        ],
    ),
    "expired_token": (
        al.SIGNATURE,
        None,
        "fail",
        [
            (
                "ERROR",
                "[ssm-agent-worker] [HealthCheck] error when calling AWS APIs. error details - "
                f"ExpiredTokenException: The security token included in the request is expired"
                f"\n\t{REQUEST_ID}",
                "awserr.go:49; SDK/aws/request/retryer.go:103; SDK/service/sts/errors.go:12",
            )
        ],
    ),
    "s3_bucket_not_encrypted": (
        al.ENCRYPTION_CHECK,
        None,
        "fail",
        [
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] S3 bucket "
                "doc-example-bucket is not encrypted",
                "agent/s3util/s3util.go:160 (context only: not a class)",
            ),
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] Validation failed, err: "
                "We couldn't start the session because encryption is not set up on the "
                "selected Amazon S3 bucket. Either encrypt the bucket or choose an option to "
                "enable logging without encryption.",
                "agent/session/shell/shell.go:236, :137; agent/session/config/config.go:92",
            ),
        ],
    ),
    "cloudwatch_group_not_encrypted": (
        al.ENCRYPTION_CHECK,
        None,
        "fail",
        [
            (
                "ERROR",
                "[ssm-session-worker] [sess-0a1b2c3d4e5f] [ShellPlugin] Validation failed, err: "
                "We couldn't start the session because encryption is not set up on the "
                "selected CloudWatch Logs log group. Either encrypt the log group or choose an "
                "option to enable logging without encryption.",
                "agent/session/shell/shell.go:236, :121; agent/session/config/config.go:89",
            )
        ],
    ),
    "fingerprint_mismatch": (
        al.FINGERPRINT,
        None,
        "fail",
        [
            (
                "ERROR",
                "[CredentialRefresher] Retrieve credentials produced error: "
                f"MachineFingerprintDoesNotMatch: Fingerprint doesn't match\n\t{REQUEST_ID}",
                "credentialrefresher.go:218, :233; SDK/service/ssm/errors.go:649",
            )
        ],
    ),
    "hybrid_deregistered": (
        al.REGISTRATION,
        None,
        "fail",
        [
            (
                "ERROR",
                "[CredentialRefresher] Retrieve credentials produced error: InvalidInstanceId: "
                f"\n\t{REQUEST_ID}",
                "credentialrefresher.go:218; credentialrefresher_deps.go:15; "
                "SDK/service/ssm/errors.go:435",
            )
        ],
    ),
    "tls_unknown_authority": (
        al.TLS,
        None,
        "warn",
        [
            (
                "WARN",
                "[ssm-agent-worker] [MessageService] [MGSInteractor] Failed to dial websocket: "
                "tls: failed to verify certificate: x509: certificate signed by unknown "
                "authority",
                "websocketutil.go:73; Go crypto/x509 verify.go (UnknownAuthorityError.Error)",
            )
        ],
    ),
    "dns_no_such_host": (
        al.DNS,
        None,
        "warn",
        [
            (
                "ERROR",
                "[CredentialRefresher] Retrieve credentials produced error: RequestError: send "
                'request failed\ncaused by: Post "https://ssm.us-east-1.amazonaws.com/": dial '
                "tcp: lookup ssm.us-east-1.amazonaws.com on 10.0.0.2:53: no such host",
                # credentialrefresher.go:218; SDK handlers.go:164; SDK types.go:18 ("caused
                # by: "); Go net.DNSError.Error ("lookup NAME on SERVER: ERR")
                "credentialrefresher.go:218; SDK/aws/corehandlers/handlers.go:164; "
                "SDK/aws/awserr/types.go:18; Go net/net.go (DNSError.Error)",
            )
        ],
    ),
    "network_cause_dropped": (
        al.NETWORK,
        None,
        "warn",
        [
            (
                "ERROR",
                "[CredentialRefresher] Retrieve credentials produced error: unexpected error "
                "getting instance profile role credentials or calling UpdateInstanceInformation. "
                "Skipping default host management fallback: retrieved credentials failed to "
                "report to ssm. Error: RequestError: send request failed",
                # what the real agent logs when ssm cannot be reached (tests/data/agent_log):
                # ec2_role_provider.go:207-208 drops the SDK's "caused by"
                "ec2_role_provider.go:134, :171, :207-208; SDK/aws/corehandlers/handlers.go:164",
            )
        ],
    ),
    "ec2_registration": (
        al.REGISTRATION,
        None,
        "warn",
        [
            (
                "ERROR",
                "[Registrar] failed to register identity: error calling RegisterManagedInstance "
                "API: EC2MetadataError: failed to make EC2Metadata request\n\n\tstatus code: "
                "404, request id: ",
                "core/app/registrar/registrar.go:126; ec2_identity.go:206; "
                "SDK/aws/ec2metadata/service.go:237",
            )
        ],
    ),
}


def write_log(
    directory: Path,
    entries: Sequence[tuple[datetime, str, str]],
    name: str = al.LOG_FILE,
    mode: str = "w",
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    with path.open(mode, encoding="utf-8", newline="") as out:
        for when, level, message in entries:
            out.write(line(when, level, message))
    return path


def context(
    log_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    ident: Optional[Identity] = None,
    config: Optional[Config] = None,
) -> Context:
    platform = LinuxPlatform(config or Config())
    ctx = Context(platform, platform.config, environ={"AWS_EC2_METADATA_DISABLED": "true"})
    ctx._facts["identity"] = ident or Identity(
        region="us-east-1",
        instance_id=IID,
        identity_type="EC2",
        imds=ImdsResult(
            "ok", "http://169.254.169.254", instance_profile_arn=PROFILE_ARN, iam_state="profile"
        ),
    )
    monkeypatch.setattr(check_module, "_log_dir", lambda _ctx: str(log_dir))
    return ctx


def run_check(ctx: Context) -> CheckResult:
    """Through the engine, so the result is redacted as every output is."""
    check = next(c for c in check_module.__dict__.values() if c is check_module.CHECK)
    return _run_one(check, ctx)


def by_class(result: CheckResult) -> dict[tuple[str, Optional[str]], dict[str, Any]]:
    return {(f["class"], f["action"]): f for f in result.details["findings"]}


# ---------------------------------------------------------------------------------------
# Registration, parsing


def test_agent_log_is_registered_after_the_credentials_check() -> None:
    ids = list(CHECK_IDS)
    assert ids.index("agent.log") == ids.index("identity.credentials") + 1


def test_seelog_lines_continuations_and_a_cut_first_line() -> None:
    t = datetime(2026, 12, 3, 8, 34, 53, 764800)
    text = (
        "\tstatus code: 404, request id: \n"  # the tail began inside an earlier message
        + line(t, "ERROR", "[Registrar] failed to register identity: EC2MetadataError: x")
        + "\n\tstatus code: 404, request id: \r\n"
        + "2026-13-45 99:99:99.0000 ERROR not a time: a continuation\n"
        + "\x00\x00\x00"
        + line(t, "INFO", "after a crash's NULs")
        + line(t, "NOTICE", "no such level: a continuation too")
    )
    events = al.parse_events(text, "amazon-ssm-agent.log")
    assert [(e.level, e.when) for e in events] == [("ERROR", t), ("INFO", t)]
    assert events[0].text.splitlines()[1:] == [
        "",
        "\tstatus code: 404, request id: ",
        "2026-13-45 99:99:99.0000 ERROR not a time: a continuation",
    ]
    assert "no such level" in events[1].text


def test_a_message_is_bounded_however_many_lines_follow_it() -> None:
    t = datetime(2026, 12, 3, 8, 0, 0)
    text = line(t, "ERROR", "start") + "x" * 100 + "\n" + ("y\n" * 100_000)
    (event,) = al.parse_events(text, "amazon-ssm-agent.log")
    assert len(event.text) <= al.MAX_EVENT_CHARS + al.MAX_CONTINUATION_LINES + 2


def test_rotations_are_ordered_newest_first() -> None:
    listing = [
        ("amazon-ssm-agent.log", 500.0, 1),
        ("amazon-ssm-agent.log.3", 300.0, 1),  # seelog: the highest number is the newest
        ("amazon-ssm-agent.log.2", 200.0, 1),
        ("amazon-ssm-agent.log.10", 300.0, 1),
        ("amazon-ssm-agent.log.bak", 900.0, 1),
        ("errors.log.1", 900.0, 1),
    ]
    assert al.rotations("amazon-ssm-agent.log", listing) == [
        "amazon-ssm-agent.log.10",
        "amazon-ssm-agent.log.3",
        "amazon-ssm-agent.log.2",
    ]


# ---------------------------------------------------------------------------------------
# Classification: every fixture, through the whole check


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_each_fixture_is_classified_with_its_action_and_fix(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls, action, status, lines = FIXTURES[name]
    start = NOW - timedelta(minutes=30)
    entries = [
        (start + timedelta(seconds=5 * i), lvl, msg) for i, (lvl, msg, _) in enumerate(lines)
    ]
    write_log(tmp_path, entries)
    result = run_check(context(tmp_path, monkeypatch))
    found = by_class(result)
    assert (cls, action) in found, (name, found.keys())
    finding = found[(cls, action)]
    assert finding["status"] == status
    assert finding["count"] >= 1 and finding["last"]
    assert finding["fix"], "every warn and fail has a fix"
    assert result.status.value == status
    assert result.remediation
    if cls == al.ACCESS_DENIED:
        assert action is not None
        assert action in result.summary
        # the fix is the seeds' statement for that action, for the node's region
        assert statement_text(action, PolicyInputs(region="us-east-1")) in result.remediation


def test_a_failure_logged_by_several_layers_at_once_counts_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, _, lines = FIXTURES["create_log_stream_denied"]
    t = NOW - timedelta(minutes=10)
    # the three lines of one incident, a few milliseconds apart, then the same again later
    entries = [
        (t + timedelta(milliseconds=3 * i), lvl, msg) for i, (lvl, msg, _) in enumerate(lines)
    ]
    entries += [
        (t + timedelta(minutes=5, milliseconds=i), lvl, msg)
        for i, (lvl, msg, _) in enumerate(lines)
    ]
    write_log(tmp_path, entries)
    result = run_check(context(tmp_path, monkeypatch))
    finding = by_class(result)[(al.ACCESS_DENIED, "logs:CreateLogStream")]
    assert finding["count"] == 2
    assert "2 times in the last 24 h" in result.summary
    assert result.details["classes"] == {al.ACCESS_DENIED: 2}


def test_denied_fix_names_the_instance_profile_and_the_preferences_bucket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ssmdiag.session_prefs import SessionPreferences

    _, _, _, lines = FIXTURES["put_object_denied"]
    write_log(tmp_path, [(NOW - timedelta(minutes=3), lvl, msg) for lvl, msg, _ in lines])
    prefs = SessionPreferences(s3_bucket="doc-example-bucket", s3_prefix="sessions")
    ident = Identity(
        region="eu-west-1",
        imds=ImdsResult("ok", "http://169.254.169.254", instance_profile_arn=PROFILE_ARN),
    )
    ctx = context(tmp_path, monkeypatch, ident, Config(session=prefs))
    result = run_check(ctx)
    assert result.status is Status.FAIL
    assert result.summary.startswith("AccessDenied for s3:PutObject: 1 time in the last 24 h")
    expected = statement_text("s3:PutObject", prefs.policy_inputs("eu-west-1"))
    assert "arn:aws:s3:::doc-example-bucket/sessions/*" in expected
    assert expected in (result.remediation or "")
    assert "instance profile NodeProfile" in (result.remediation or "")


def test_every_denied_action_gets_its_statement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = []
    for offset, name in enumerate(("update_instance_information_denied", "kms_decrypt_denied")):
        for lvl, msg, _ in FIXTURES[name][3]:
            entries.append((NOW - timedelta(minutes=20 - offset), lvl, msg))
    write_log(tmp_path, entries)
    result = run_check(context(tmp_path, monkeypatch))
    inputs = PolicyInputs(region="us-east-1")
    for action in ("ssm:UpdateInstanceInformation", "kms:Decrypt"):
        assert statement_text(action, inputs) in (result.remediation or "")
    assert "(+1 more problem in details)" in result.summary


def test_an_explicit_deny_is_named_as_what_to_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, _, lines = FIXTURES["create_data_channel_denied_by_scp"]
    write_log(tmp_path, [(NOW - timedelta(minutes=3), lvl, msg) for lvl, msg, _ in lines])
    result = run_check(context(tmp_path, monkeypatch))
    remediation = result.remediation or ""
    assert remediation.startswith("An explicit deny in a service control policy refuses")
    assert "ssmmessages:CreateDataChannel" in remediation


def test_the_hybrid_role_is_where_a_hybrid_node_gets_its_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, _, lines = FIXTURES["health_ping_denied"]
    write_log(tmp_path, [(NOW - timedelta(minutes=3), lvl, msg) for lvl, msg, _ in lines])
    ident = Identity(region="us-west-2", instance_id="mi-0123456789abcdef0", hybrid=True)
    result = run_check(context(tmp_path, monkeypatch, ident))
    assert "the IAM service role of the node's hybrid activation" in (result.remediation or "")


def test_no_secret_session_content_or_raw_line_reaches_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_key = "ASIAABCDEFGHIJKLMNOP"
    message = (
        "[ssm-session-worker] [sess-1] [ShellPlugin] Failed to upload /tmp/x.log to "
        "s3://doc-example-bucket/x.log err:AccessDenied: Access Denied while calling "
        f"https://user:hunter2@proxy.example:3128/ https://doc-example-bucket.s3.amazonaws.com/"
        f"x?X-Amz-Credential={secret_key}%2F20261203&X-Amz-Signature=deadbeef " + "A" * 400
    )
    write_log(
        tmp_path,
        [
            (NOW - timedelta(minutes=2), "ERROR", message),
            (NOW - timedelta(minutes=1), "INFO", "[ssm-session-worker] typed: password=hunter2"),
        ],
    )
    result = run_check(context(tmp_path, monkeypatch))
    report = json.dumps(result.to_dict())
    for leaked in (secret_key, "hunter2", "deadbeef", "A" * 200, "typed:"):
        assert leaked not in report
    excerpt = by_class(result)[(al.ACCESS_DENIED, "s3:PutObject")]["excerpt"]
    assert len(excerpt) <= al.EXCERPT_CHARS and excerpt.startswith("[ssm-session-worker]")


# ---------------------------------------------------------------------------------------
# Time: the window, resolution, persistence


def test_only_the_last_24_hours_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, _, denied = FIXTURES["create_control_channel_denied"]
    old = NOW - timedelta(hours=25)
    write_log(
        tmp_path,
        [(old, lvl, msg) for lvl, msg, _ in denied]
        + [(NOW - timedelta(hours=1), "INFO", "[amazon-ssm-agent] Starting Core Agent")],
    )
    result = run_check(context(tmp_path, monkeypatch))
    assert result.status is Status.OK
    assert result.summary == "no known failure in the last 24 h of the agent's log"
    # 23 hours ago does count
    write_log(tmp_path, [(NOW - timedelta(hours=23), lvl, msg) for lvl, msg, _ in denied])
    result = run_check(context(tmp_path, monkeypatch))
    assert result.status is Status.FAIL
    assert "AccessDenied for ssmmessages:CreateControlChannel" in result.summary


def test_a_log_older_than_the_window_says_the_agent_wrote_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_log(
        tmp_path, [(NOW - timedelta(days=3), "INFO", "[amazon-ssm-agent] Starting Core Agent")]
    )
    result = run_check(context(tmp_path, monkeypatch))
    assert result.status is Status.OK
    assert "it wrote nothing in that time" in result.summary


def test_a_failure_the_agent_later_overcame_is_reported_as_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, _, denied = FIXTURES["update_instance_information_denied"]
    t = NOW - timedelta(hours=2)
    write_log(
        tmp_path,
        [(t, lvl, msg) for lvl, msg, _ in denied]
        + [
            (
                t + timedelta(minutes=30),
                "INFO",
                # ec2_role_provider.go:137
                "EC2RoleProvider Successfully connected with instance profile role credentials",
            )
        ],
    )
    result = run_check(context(tmp_path, monkeypatch))
    assert result.status is Status.OK
    assert (
        "since" in result.summary
        and "AccessDenied for ssm:UpdateInstanceInformation" in result.summary
    )
    finding = by_class(result)[(al.ACCESS_DENIED, "ssm:UpdateInstanceInformation")]
    assert finding["status"] == "resolved" and finding["resolved_at"]


def _dns(when: datetime) -> tuple[datetime, str, str]:
    return (when, "ERROR", FIXTURES["dns_no_such_host"][3][0][1])


def test_network_errors_warn_but_fail_when_nothing_worked_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok_line = "EC2RoleProvider Successfully connected with instance profile role credentials"
    start = NOW - timedelta(hours=3)
    # blips between successes: transient
    write_log(
        tmp_path,
        [
            _dns(start),
            (start + timedelta(minutes=5), "INFO", ok_line),
            _dns(start + timedelta(minutes=30)),
            (start + timedelta(minutes=35), "INFO", ok_line),
            _dns(start + timedelta(hours=1)),
        ],
    )
    result = run_check(context(tmp_path, monkeypatch))
    assert result.status is Status.WARN
    assert result.summary.startswith("DNS lookup failed for ssm.us-east-1.amazonaws.com: 3 times")
    # every attempt failed, and it never worked since: it dominates
    write_log(tmp_path, [_dns(start + timedelta(minutes=20 * i)) for i in range(4)])
    result = run_check(context(tmp_path, monkeypatch))
    assert result.status is Status.FAIL
    assert "never worked since" in result.summary
    assert "ssm.us-east-1.amazonaws.com does not resolve" in (result.remediation or "")


# ---------------------------------------------------------------------------------------
# Files: missing, rotated, errors.log, huge, binary, unreadable, still being written


def test_no_log_is_a_skip_that_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_check(context(tmp_path / "nowhere", monkeypatch))
    assert result.status is Status.SKIP
    assert result.summary == (
        f"no agent log in {tmp_path / 'nowhere'} (looked for amazon-ssm-agent.log, errors.log "
        "and their rotations)"
    )


def test_errors_log_copies_count_once_and_older_errors_still_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, _, denied = FIXTURES["create_control_channel_denied"]
    level, message, _ = denied[0]
    recent, older = NOW - timedelta(minutes=5), NOW - timedelta(hours=5)
    # the main log was rotated away since `older`: only errors.log still has that line
    write_log(tmp_path, [(recent, level, message)])
    with (tmp_path / al.ERRORS_FILE).open("w") as out:
        caller = "getControlChannelToken @ controlchannel.go.91"
        out.write(errors_line(older, level, caller, message))
        out.write(errors_line(recent, level, caller, message))
    result = run_check(context(tmp_path, monkeypatch))
    finding = by_class(result)[(al.ACCESS_DENIED, "ssmmessages:CreateControlChannel")]
    assert finding["count"] == 2
    assert finding["first"].startswith(older.strftime("%Y-%m-%d %H:%M"))


def test_the_newest_rotation_is_read_and_stale_ones_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, _, denied = FIXTURES["kms_decrypt_denied"]
    level, message, _ = denied[0]
    # just rotated: the current file holds one line; seelog's newest roll is .2
    write_log(tmp_path, [(NOW - timedelta(minutes=1), "INFO", "[amazon-ssm-agent] OS: linux")])
    newest = write_log(
        tmp_path, [(NOW - timedelta(hours=2), level, message)], "amazon-ssm-agent.log.2"
    )
    stale = write_log(
        tmp_path, [(NOW - timedelta(hours=40), level, message)], "amazon-ssm-agent.log.1"
    )
    recent = time.time() - 3600
    os.utime(newest, (recent, recent))
    old = time.time() - 30 * 3600
    os.utime(stale, (old, old))
    result = run_check(context(tmp_path, monkeypatch))
    assert by_class(result)[(al.ACCESS_DENIED, "kms:Decrypt")]["count"] == 1
    read = [f["path"] for f in result.details["files"]]
    assert str(newest) in read and str(stale) not in read


def test_a_huge_log_is_read_only_at_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, _, denied = FIXTURES["update_instance_information_denied"]
    level, message, _ = denied[0]
    path = tmp_path / al.LOG_FILE
    filler = line(NOW - timedelta(hours=3), "INFO", "[MessageService] " + "x" * 200)
    with path.open("w") as out:
        out.write(line(NOW - timedelta(hours=4), level, message))  # beyond the 2 MiB read
        out.write(filler * (3 * 1024 * 1024 // len(filler)))
        out.write(line(NOW - timedelta(minutes=1), "INFO", "[amazon-ssm-agent] still here"))
    with path.open("r+b") as grow:  # plus a sparse 200 MiB hole before it all
        grow.truncate(200 * 1024 * 1024 + path.stat().st_size)
    started = time.monotonic()
    result = run_check(context(tmp_path, monkeypatch))
    assert time.monotonic() - started < 10
    (entry,) = [f for f in result.details["files"] if f["path"] == str(path)]
    assert entry["truncated"] and entry["bytes_read"] <= al.MAX_BYTES_PER_FILE


def test_a_huge_log_says_how_far_back_it_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filler = line(NOW - timedelta(hours=3), "INFO", "[MessageService] " + "x" * 200)
    path = tmp_path / al.LOG_FILE
    path.write_text(filler * (3 * 1024 * 1024 // len(filler)))
    result = run_check(context(tmp_path, monkeypatch))
    assert result.status is Status.OK
    assert "(only since" in result.summary and "the older part was not read" in result.summary
    assert result.details["read_from"]


def test_a_binary_log_is_a_clear_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / al.LOG_FILE).write_bytes(
        os.urandom(256 * 1024) + Path(sys.executable).read_bytes()[:65536]
    )
    result = run_check(context(tmp_path, monkeypatch))
    assert result.status is Status.SKIP
    assert "holds no line in the agent's format" in result.summary


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_fifo_or_directory_named_like_the_log_is_refused_at_once(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / al.LOG_FILE
    if kind == "fifo":
        os.mkfifo(path)  # nobody writes: reading it would block forever
    else:
        path.mkdir()
    started = time.monotonic()
    result = run_check(context(tmp_path, monkeypatch))
    assert time.monotonic() - started < 5
    assert result.status is Status.WARN
    assert ("FIFO" if kind == "fifo" else "directory") in result.summary
    assert f"sudo mv {path} {path}.bad" in (result.remediation or "")
    # with a readable errors.log beside it, its evidence still counts
    _, _, _, denied = FIXTURES["create_control_channel_denied"]
    level, message, _ = denied[0]
    with (tmp_path / al.ERRORS_FILE).open("w") as out:
        out.write(
            errors_line(NOW - timedelta(minutes=1), level, "f @ controlchannel.go.91", message)
        )
    result = run_check(context(tmp_path, monkeypatch))
    assert result.status is Status.FAIL
    outcomes = {Path(f["path"]).name: f["outcome"] for f in result.details["files"]}
    assert outcomes == {al.LOG_FILE: "not_regular", al.ERRORS_FILE: "ok"}


def _drop_read_permission_prefix() -> tuple[str, ...]:
    """Run a child that cannot read a mode-000 file even as root (no DAC override)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("setpriv is needed to drop root's read override")
    return (
        setpriv,
        "--inh-caps=-dac_override,-dac_read_search",
        "--bounding-set=-dac_override,-dac_read_search",
        "--",
    )


def test_an_unreadable_log_is_a_skip_that_says_why(tmp_path: Path) -> None:
    log = tmp_path / "logs"
    path = write_log(log, [(NOW, "ERROR", "Agent failed to assume any identity")])
    path.chmod(0)
    probe = (
        "import sys, json\n"
        "from unittest import mock\n"
        "from ssmdiag.checks import agent_log as m\n"
        "from ssmdiag.checks.base import Context\n"
        "from ssmdiag.config import Config\n"
        "from ssmdiag.platform.linux import LinuxPlatform\n"
        "p = LinuxPlatform(Config())\n"
        f"m._log_dir = lambda ctx: {str(log)!r}\n"
        "f = m.run(Context(p, p.config))\n"
        "print(json.dumps([f.status.value, f.summary]))\n"
    )
    proc = subprocess.run(
        [*_drop_read_permission_prefix(), sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    status, summary = json.loads(proc.stdout)
    assert status == "skip"
    assert summary == (
        f"cannot read the agent's log {path}: permission denied (run ssmdiag as root or "
        "Administrator to read it)"
    )


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Path]:
    """A process appending agent lines as fast as it can while the test reads."""
    log = tmp_path / "live"
    log.mkdir()
    message = FIXTURES["dns_no_such_host"][3][0][1].replace("\n", "\\n")
    script = (
        "import datetime, sys, time\n"
        "end = time.monotonic() + 20\n"
        f"out = open({str(log / al.LOG_FILE)!r}, 'a', buffering=1)\n"
        "while time.monotonic() < end:\n"
        "    now = datetime.datetime.now()\n"
        "    stamp = now.strftime('%Y-%m-%d %H:%M:%S.') + '%04d' % (now.microsecond // 100)\n"
        f"    out.write(stamp + ' ERROR ' + {message!r}.replace('\\\\n', '\\n') + '\\n')\n"
        f"    out.write(stamp + ' INFO ' + 'x' * 300 + '\\n')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 10
        while not (log / al.LOG_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield log
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_a_log_still_being_written_gives_a_bounded_consistent_result(
    writer: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = []
    for _ in range(5):
        started = time.monotonic()
        result = run_check(context(writer, monkeypatch))
        assert time.monotonic() - started < 10
        results.append(result)
        time.sleep(0.2)
    for result in results:
        assert result.status in (Status.WARN, Status.FAIL)
        assert result.summary.startswith("DNS lookup failed for ssm.us-east-1.amazonaws.com")
        (entry,) = result.details["files"][:1]
        assert entry["bytes_read"] <= al.MAX_BYTES_PER_FILE


# ---------------------------------------------------------------------------------------
# Windows: the log directory and one log per program


class _WindowsWithLogs(WindowsPlatform):
    """The Windows platform over a fake API, its log directory mapped to a real one."""

    def __init__(self, logs: Path, program_data: str) -> None:
        api = FakeWindowsApi()
        api.data["environ"]["ProgramData"] = program_data
        super().__init__(Config(), api)  # type: ignore[arg-type]
        self.logs = logs
        self.asked: list[str] = []

    def _local(self, path: str) -> Path:
        self.asked.append(path)
        return self.logs / path.rsplit("\\", 1)[-1]

    def list_dir(self, path: str) -> list[tuple[str, float, int]]:
        self.asked.append(path)
        return [(p.name, p.stat().st_mtime, p.stat().st_size) for p in self.logs.iterdir()]

    def read_file_tail(self, path: str, max_bytes: int) -> FileRead:
        return super().read_file_tail(str(self._local(path)), max_bytes)


def test_windows_reads_the_session_workers_own_log(tmp_path: Path) -> None:
    _, _, _, denied = FIXTURES["kms_decrypt_denied"]
    level, message, _ = denied[0]
    write_log(tmp_path, [(NOW - timedelta(minutes=1), "INFO", "started")])
    write_log(tmp_path, [(NOW - timedelta(minutes=2), level, message)], "ssm-session-worker.log")
    platform = _WindowsWithLogs(tmp_path, r"D:\Data")
    ctx = Context(platform, platform.config, environ={})
    ctx._facts["identity"] = Identity(region="us-east-1")
    result = _run_one(check_module.CHECK, ctx)
    assert result.details["log_dir"] == r"D:\Data\Amazon\SSM\Logs"
    assert r"D:\Data\Amazon\SSM\Logs\ssm-session-worker.log" in platform.asked
    assert result.status is Status.FAIL
    assert "AccessDenied for kms:Decrypt" in result.summary


# ---------------------------------------------------------------------------------------
# The real agent's own lines (captured from it: tests/data/agent_log/README.md)


@pytest.mark.parametrize(
    ("capture", "expected"),
    [
        ("no-instance-profile", {(al.NO_CREDENTIALS, None), (al.REGISTRATION, None)}),
        ("imds-disabled", {(al.NO_IDENTITY, None)}),
        ("hybrid-no-network", {(al.DNS, None)}),
        ("instance-profile-no-network", {(al.NETWORK, None), (al.REGISTRATION, None)}),
    ],
)
def test_captured_real_agent_logs(capture: str, expected: set[tuple[str, None]]) -> None:
    directory = DATA / capture
    text = (directory / al.LOG_FILE).read_text()
    events = al.parse_events(text, al.LOG_FILE)
    newest = max(e.when for e in events)

    read = al.read_logs(LinuxPlatform(Config()), str(directory), newest + timedelta(minutes=1))
    assert {(f.cls, f.action) for f in al.classify(read.events)} == expected


def test_classifying_a_full_2_mib_log_is_quick() -> None:
    t = NOW - timedelta(hours=2)
    info = line(t, "INFO", "[ssm-agent-worker] [MessageService] [MGSInteractor] " + "y" * 120)
    failure = "".join(line(t, lvl, msg) for lvl, msg, _ in FIXTURES["dns_no_such_host"][3])
    text = (info * 99 + failure) * (2 * 1024 * 1024 // len(info * 100))
    started = time.monotonic()
    events = al.parse_events(text, al.LOG_FILE)
    findings = al.classify(events)
    elapsed = time.monotonic() - started
    assert findings and findings[0].cls == al.DNS
    assert elapsed < 3, elapsed


def test_threads_do_not_share_state() -> None:
    """classify is pure: two threads classifying different logs do not mix."""
    t = NOW - timedelta(minutes=5)
    a = [al.Event(t, stamp(t), "ERROR", FIXTURES["no_identity"][3][0][1], "a")]
    b = [al.Event(t, stamp(t), "ERROR", FIXTURES["fingerprint_mismatch"][3][0][1], "b")]
    out: dict[str, list[str]] = {}

    def work(name: str, events: list[al.Event]) -> None:
        for _ in range(200):
            out[name] = [f.cls for f in al.classify(events)]

    threads = [threading.Thread(target=work, args=args) for args in (("a", a), ("b", b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert out == {"a": [al.NO_IDENTITY], "b": [al.FINGERPRINT]}


def test_a_failed_ec2_registration_does_not_matter_once_credentials_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, _, registration = FIXTURES["ec2_registration"]
    level, message, _ = registration[0]
    t = NOW - timedelta(hours=1)
    write_log(
        tmp_path,
        [
            (t, level, message),
            # ec2_role_provider.go:137
            (
                t + timedelta(seconds=5),
                "INFO",
                "EC2RoleProvider Successfully connected with instance profile role credentials",
            ),
            (t + timedelta(minutes=10), level, message),  # it keeps retrying: still moot
        ],
    )
    result = run_check(context(tmp_path, monkeypatch))
    assert result.status is Status.OK
    assert result.summary == "no known failure in the last 24 h of the agent's log"
    (finding,) = result.details["findings"]
    assert finding["status"] == "resolved" and "Default Host Management" in finding["note"]
