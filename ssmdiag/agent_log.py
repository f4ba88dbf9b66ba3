"""The SSM Agent's own log: where it is, the part ssmdiag reads, and the failures it records.

Where (data, per family; the agent 3.3.1142.0's own constants):
- Linux and macOS: /var/log/amazon/ssm (DefaultLogDir, agent/log/logger/log_unix.go:27,
  log_darwin.go:32): amazon-ssm-agent.log (LogFile, agent/log/logger/log.go:26), written
  by the agent and its workers alike, and errors.log (ErrorFile, log.go:27), a copy of the
  ERROR and CRITICAL lines (seelog.xml.template: `<filter levels="error,critical">`).
- Windows: %ProgramData%\\Amazon\\SSM\\Logs (filepath.Join(appconfig.SSMDataPath, "Logs"),
  log_windows.go:30; SSMDataPath, agent/appconfig/constants_windows.go:190), one
  `{{EXECUTABLENAME}}.log` per program (seelog_windows.xml.template:13, log_windows.go:
  49-62) and the shared errors.log.

The line format (seelog.xml.template; agent/log/logger/defaultconfig.go:53-55):
`%Date(2006-01-02 15:04:05.0000) %LEVEL %Msg%n`, and in errors.log
`%Date(...) %LEVEL [%FuncShort @ %File.%Line] %Msg%n`. %Date is the agent's local time
(seelog common_context.go:135 time.Now()); %LEVEL is TRACE, DEBUG, INFO, WARN, ERROR or
CRITICAL (seelog format.go:318-325, :364-366). A message may span lines (the SDK's errors
end in "\\n\\tstatus code: 400, request id: ..." or "\\ncaused by: ..."): a line without a
parseable timestamp belongs to the one before it.

Rotation (seelog `<rollingfile type="size" maxrolls="5">`): the full file is renamed to
NAME.N, N one more than the highest N present (vendor/github.com/cihub/seelog/
writers_rollingfilewriter.go:653-660, the "." delimiter at :47, postfix names at :273-
280), and the lowest are deleted: the highest number is the newest rotation. ssmdiag
orders rotations by modification time, then by number, which is right for seelog and
for logrotate-style numbering alike.

Bounds: at most MAX_BYTES_PER_FILE from the end of each file (whole lines only), at most
MAX_ROTATIONS older files per log and MAX_FILES files in all, and only the last WINDOW by
each line's own timestamp. A FIFO, a directory or a device named like a log is refused,
never read (ssmdiag.safeio); a log still being written is read up to its size when
opened. Nothing here keeps a raw line: a finding holds its class, the AWS action, counts,
times and one short redacted excerpt.

Classification: every class is matched on text from a format string of the agent
(tag 3.3.1142.0), the AWS SDK for Go it vendors (vendor/github.com/aws/aws-sdk-go) or the
Go standard library it is built with; each pattern below names its source. Two texts come
from AWS itself and are used only to refine a match, never to make one: the IAM denial
("... is not authorized to perform: ssm:UpdateInstanceInformation on resource ...", which
names the action and an explicit deny) and the signature-expired text.
"""

from __future__ import annotations

import ntpath
import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Optional

from ssmdiag.platform.base import Platform
from ssmdiag.redact import redact_text

UNIX_LOG_DIR = "/var/log/amazon/ssm"  # DefaultLogDir: log_unix.go:27, log_darwin.go:32
LOG_FILE = "amazon-ssm-agent.log"  # LogFile, agent/log/logger/log.go:26
ERRORS_FILE = "errors.log"  # ErrorFile, agent/log/logger/log.go:27
# Windows: one log per program ({{EXECUTABLENAME}}.log, seelog_windows.xml.template:13).
WINDOWS_LOG_NAMES = (LOG_FILE, "ssm-agent-worker.log", "ssm-session-worker.log", ERRORS_FILE)
LOG_NAMES: dict[str, tuple[str, ...]] = {
    "linux": (LOG_FILE, ERRORS_FILE),
    "macos": (LOG_FILE, ERRORS_FILE),
    "windows": WINDOWS_LOG_NAMES,
}

MAX_BYTES_PER_FILE = 2 * 1024 * 1024
MAX_ROTATIONS = 2  # older files per log, read only while the window reaches into them
MAX_FILES = 8
WINDOW = timedelta(hours=24)
MAX_EVENT_CHARS = 4096  # of one message with its continuation lines
MAX_CONTINUATION_LINES = 40
SAME_INCIDENT = timedelta(seconds=1)  # one failure logged by several layers at once
PERSISTENT_COUNT = 3  # a transient class that failed this often and never recovered
EXCERPT_CHARS = 160

FAIL = "fail"
WARN = "warn"
RESOLVED = "resolved"

# Classes, most telling first: the order ranks findings.
ACCESS_DENIED = "access_denied"
NO_IDENTITY = "no_identity"
NO_CREDENTIALS = "no_credentials"
SIGNATURE = "signature"
ENCRYPTION_CHECK = "encryption_check"
FINGERPRINT = "fingerprint"
REGISTRATION = "registration"
TLS = "tls"
DNS = "dns"
NETWORK = "network"
CLASS_ORDER = (
    ACCESS_DENIED,
    NO_IDENTITY,
    NO_CREDENTIALS,
    SIGNATURE,
    ENCRYPTION_CHECK,
    FINGERPRINT,
    REGISTRATION,
    TLS,
    DNS,
    NETWORK,
)
TRANSIENT = (TLS, DNS, NETWORK)  # warn, unless they persist (see classify)


# ---------------------------------------------------------------------------------------
# Where the logs are and how much of them is read


@dataclass(frozen=True)
class LogFile:
    """What reading one file gave (never its text)."""

    path: str
    outcome: str  # ok | missing | denied | not_regular | error
    bytes_read: int = 0
    truncated: bool = False  # only its last MAX_BYTES_PER_FILE were read
    lines: int = 0  # lines in the agent's format
    oldest: Optional[datetime] = None
    newest: Optional[datetime] = None
    message: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "outcome": self.outcome,
            "bytes_read": self.bytes_read,
            "truncated": self.truncated,
            "lines": self.lines,
            "oldest": _iso(self.oldest),
            "newest": _iso(self.newest),
            "message": self.message,
        }


@dataclass
class Event:
    """One log message: its first line and the lines that continue it."""

    when: datetime
    stamp: str  # the timestamp as written, to recognise errors.log's copy
    level: str
    text: str
    file: str


def log_dir_for(family: str, platform_log_dir: str = "", ssm_data_dir: str = "") -> str:
    """The agent's log directory: the platform's word for it when it has one; else
    DefaultLogDir for the family (Windows: SSMDataPath\\Logs)."""
    if platform_log_dir:
        return platform_log_dir
    if family == "windows":
        return ntpath.join(ssm_data_dir or r"C:\ProgramData\Amazon\SSM", "Logs")
    return UNIX_LOG_DIR


def _join(family: str, directory: str, name: str) -> str:
    return ntpath.join(directory, name) if family == "windows" else posixpath.join(directory, name)


def rotations(base: str, listing: Iterable[tuple[str, float, int]]) -> list[str]:
    """The rotated copies of `base` (NAME.N), newest first: by modification time, then by
    N (seelog gives the newest roll the highest N: writers_rollingfilewriter.go:653-660)."""
    pattern = re.compile(re.escape(base) + r"\.([0-9]{1,9})")
    found = []
    for name, mtime, _size in listing:
        match = pattern.fullmatch(name)
        if match:
            found.append((mtime, int(match.group(1)), name))
    found.sort(reverse=True)
    return [name for _, _, name in found]


# seelog's %Date(2006-01-02 15:04:05.0000) and %LEVEL (format.go:318-325, :364-366).
_HEAD = re.compile(
    r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(\.\d{1,9})? "
    r"(TRACE|DEBUG|INFO|WARN|ERROR|CRITICAL) "
)
# errors.log's "[%FuncShort @ %File.%Line] " (seelog.xml.template fmterror).
_CALLER = re.compile(r"\[[^\]\n]{1,200} @ [^\]\n]{1,200}\.[0-9]{1,7}\] ")


def _parse_head(line: str) -> Optional[tuple[datetime, str, str, int]]:
    match = _HEAD.match(line)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = match.group(7) or ""
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    try:
        when = datetime(year, month, day, hour, minute, second, micro)
    except ValueError:  # 2026-13-45: not a timestamp, so a continuation line
        return None
    stamp = line[: match.end(6)] + fraction
    return when, stamp, match.group(8), match.end()


def parse_events(text: str, file: str, errors_log: bool = False) -> list[Event]:
    """The messages in one file's text. Lines before the first timestamp continue a
    message that was not read, and are dropped."""
    events: list[Event] = []
    parts: list[str] = []
    size = 0
    head: Optional[tuple[datetime, str, str]] = None

    def close() -> None:
        if head is not None:
            events.append(Event(head[0], head[1], head[2], "\n".join(parts), file))

    for raw in text.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        if line.startswith("\x00"):  # a crash can leave NULs where the tail was
            line = line.lstrip("\x00")
        parsed = _parse_head(line)
        if parsed is None:
            if head is not None and len(parts) <= MAX_CONTINUATION_LINES and size < MAX_EVENT_CHARS:
                piece = line[: MAX_EVENT_CHARS - size]
                parts.append(piece)
                size += len(piece) + 1
            continue
        close()
        when, stamp, level, end = parsed
        message = line[end:]
        if errors_log:
            caller = _CALLER.match(message)
            if caller:
                message = message[caller.end() :]
        head = (when, stamp, level)
        parts = [message[:MAX_EVENT_CHARS]]
        size = len(parts[0])
    close()
    return events


@dataclass
class LogRead:
    """Everything read from the agent's log directory, as messages in time order."""

    log_dir: str
    names: tuple[str, ...]
    files: list[LogFile] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # inside the window only
    window_start: Optional[datetime] = None
    now: Optional[datetime] = None
    lines_total: int = 0  # lines in the agent's format, in or out of the window
    bytes_total: int = 0
    newest: Optional[datetime] = None  # the newest line read, in or out of the window
    # The window is cut: the oldest line read is younger than window_start and older
    # lines exist (a file cut at MAX_BYTES_PER_FILE, or rotations left unread).
    covered_from: Optional[datetime] = None
    stopped: str = ""  # why reading stopped before the window's start, if it did

    @property
    def found(self) -> bool:
        return any(f.outcome != "missing" for f in self.files)

    @property
    def readable(self) -> list[LogFile]:
        return [f for f in self.files if f.outcome == "ok"]


def read_logs(
    platform: Platform,
    log_dir: str,
    now: datetime,
    names: Optional[Sequence[str]] = None,
    window: timedelta = WINDOW,
) -> LogRead:
    """Read the newest part of each log (and of its newest rotations while the window
    reaches back into them), bounded by MAX_* above."""
    family = platform.family
    names = tuple(names or LOG_NAMES.get(family, LOG_NAMES["linux"]))
    window_start = now - window
    result = LogRead(log_dir, names, window_start=window_start, now=now)
    listing = platform.list_dir(log_dir)
    mtimes = {name: mtime for name, mtime, _ in listing}
    in_window: list[Event] = []
    copies: Counter[tuple[str, str, str]] = Counter()
    cut: list[datetime] = []  # where a log's unread older part begins
    # The per-program logs first: errors.log repeats their ERROR lines, recognised below.
    for base in sorted(names, key=lambda n: n == ERRORS_FILE):
        rotated = rotations(base, listing)
        candidates = [base, *rotated[:MAX_ROTATIONS]]
        for index, name in enumerate(candidates):
            if index > 0 and mtimes.get(name, 0.0) < window_start.timestamp():
                break  # last written before the window began: nothing in it counts
            if len(result.files) >= MAX_FILES:
                result.stopped = f"stopped after {MAX_FILES} files"
                break
            path = _join(platform.family, log_dir, name)
            read = platform.read_file_tail(path, MAX_BYTES_PER_FILE)
            if read.outcome != "ok":
                result.files.append(LogFile(path, read.outcome, message=read.message))
                if read.outcome == "missing" and index == 0:
                    continue  # just rotated away: its rotations still count
                break
            events = parse_events(read.text, name, errors_log=base == ERRORS_FILE)
            oldest = min((e.when for e in events), default=None)
            newest = max((e.when for e in events), default=None)
            note = read.message
            if read.data and not events:
                note = "no line in the agent's log format (binary, or not the agent's log)"
            result.files.append(
                LogFile(
                    path, "ok", len(read.data), read.truncated, len(events), oldest, newest, note
                )
            )
            result.lines_total += len(events)
            result.bytes_total += len(read.data)
            if newest and (result.newest is None or newest > result.newest):
                result.newest = newest
            for event in events:
                if event.when < window_start:
                    continue
                key = (event.stamp, event.level, event.text.split("\n", 1)[0][:200])
                if base == ERRORS_FILE:
                    if copies[key] > 0:  # already read in its program's log
                        copies[key] -= 1
                        continue
                else:
                    copies[key] += 1
                in_window.append(event)
            if oldest is not None and oldest < window_start:
                break  # this file reaches back past the window's start
            unread_older = read.truncated or (
                index == len(candidates) - 1
                and len(rotated) > MAX_ROTATIONS
                and mtimes.get(rotated[MAX_ROTATIONS], 0.0) >= window_start.timestamp()
            )
            if unread_older:
                if oldest is not None:
                    cut.append(oldest)
                break
    result.covered_from = max(cut) if cut else None
    in_window.sort(key=lambda e: e.when)  # stable: file order breaks ties
    result.events = in_window
    return result


# ---------------------------------------------------------------------------------------
# Classification


@dataclass(frozen=True)
class Cause:
    """What failed, recognised by a pattern from a real format string."""

    cls: str
    kind: str
    pattern: re.Pattern[str]
    source: str
    needs_context: bool = False  # counts only inside a known agent operation


def _p(text: str) -> re.Pattern[str]:
    return re.compile(text)


_SDK = "vendor/github.com/aws/aws-sdk-go"
_GO = "Go standard library"

CAUSES: tuple[Cause, ...] = (
    # S3EncryptionErrorMsg / CloudWatchEncryptionErrorMsg, agent/session/config/config.go:92,
    # :89, returned by the shell plugin's validate (agent/session/shell/shell.go:137, :121)
    # and logged as "Validation failed, err: %s" (shell.go:236).
    Cause(
        ENCRYPTION_CHECK,
        "s3_not_encrypted",
        _p(r"encryption is not set up on the selected Amazon S3 bucket"),
        "agent/session/config/config.go:92; agent/session/shell/shell.go:137, :236",
    ),
    Cause(
        ENCRYPTION_CHECK,
        "cloudwatch_not_encrypted",
        _p(r"encryption is not set up on the selected CloudWatch Logs log group"),
        "agent/session/config/config.go:89; agent/session/shell/shell.go:121, :236",
    ),
    Cause(
        ENCRYPTION_CHECK,
        "s3_unverified",
        _p(r"unable to validate encryption on Amazon S3 bucket"),
        "agent/session/shell/shell.go:135, :236",
    ),
    Cause(
        ENCRYPTION_CHECK,
        "cloudwatch_unverified",
        _p(r"unable to validate encryption on CloudWatch Logs log group"),
        "agent/session/shell/shell.go:119, :236",
    ),
    # ssm.ErrCodeMachineFingerprintDoesNotMatch (service/ssm/errors.go:649), the error the
    # credential refresher backs off on (core/app/credentialrefresher/credentialrefresher.go:
    # 233).
    Cause(
        FINGERPRINT,
        "fingerprint",
        _p(r"\bMachineFingerprintDoesNotMatch\b"),
        f"{_SDK}/service/ssm/errors.go:649; "
        "core/app/credentialrefresher/credentialrefresher.go:233",
    ),
    # "AccessDeniedException" (credentialrefresher_deps.go:14; ec2_role_provider_deps.go:42;
    # cloudwatchlogs errors.go:15), "<AccessDeniedException>" in ssmmessages' answer
    # (agent/session/controlchannel/controlchannel.go:267), S3's "AccessDenied"
    # (service/s3/api.go:20017), each printed as "Code: message" (awserr SprintError,
    # aws/awserr/types.go:13).
    Cause(
        ACCESS_DENIED,
        "denied",
        _p(r"\bAccessDenied(?:Exception)?\b"),
        "core/app/credentialrefresher/credentialrefresher_deps.go:14; "
        "agent/session/controlchannel/controlchannel.go:267; "
        f"{_SDK}/service/cloudwatchlogs/errors.go:15; {_SDK}/service/s3/api.go:20017; "
        f"{_SDK}/aws/awserr/types.go:13",
    ),
    # The signature and expired-credential codes: ExpiredToken, ExpiredTokenException,
    # RequestExpired (aws/request/retryer.go:102-104; service/sts/errors.go:12), S3's
    # RequestTimeTooSkewed and SignatureDoesNotMatch (service/s3/api.go:20320, :20328).
    # InvalidSignatureException is the AWS JSON services' code for "Signature expired".
    Cause(
        SIGNATURE,
        "expired_credentials",
        _p(r"\bExpiredToken(?:Exception)?\b"),
        f"{_SDK}/aws/request/retryer.go:102-103; {_SDK}/service/sts/errors.go:12",
    ),
    Cause(
        SIGNATURE,
        "clock",
        _p(r"\b(?:RequestTimeTooSkewed|RequestExpired)\b|Signature (?:expired|not yet current)"),
        f"{_SDK}/service/s3/api.go:20320; {_SDK}/aws/request/retryer.go:104",
    ),
    Cause(
        SIGNATURE,
        "signature",
        _p(r"\b(?:SignatureDoesNotMatch|InvalidSignatureException)\b"),
        f"{_SDK}/service/s3/api.go:20328; {_SDK}/aws/awserr/types.go:13",
    ),
    # common/identity/identity/identity_selector.go:98-99.
    Cause(
        NO_IDENTITY,
        "no_identity",
        _p(r"Agent failed to assume any identity|failed to find agent identity"),
        "common/identity/identity/identity_selector.go:98-99",
    ),
    # EC2RoleRequestError "no EC2 instance role found" (aws/credentials/ec2rolecreds/
    # ec2_role_provider.go:144); NoCredentialProviders (aws/credentials/chain_provider.go:
    # 87); the EC2 role provider giving up on both the instance profile and Default Host
    # Management (common/identity/credentialproviders/ec2roleprovider/ec2_role_provider.go:
    # 146), whose DHMC half says "ec2 instance not yet registered with Systems Manager"
    # (ssmec2roleprovider/ssm_ec2_role_provider.go:87).
    Cause(
        NO_CREDENTIALS,
        "no_instance_profile",
        _p(r"EC2RoleRequestError: no EC2 instance role found"),
        f"{_SDK}/aws/credentials/ec2rolecreds/ec2_role_provider.go:144",
    ),
    Cause(
        NO_CREDENTIALS,
        "no_provider",
        _p(r"NoCredentialProviders: no valid providers in chain"),
        f"{_SDK}/aws/credentials/chain_provider.go:87",
    ),
    Cause(
        NO_CREDENTIALS,
        "no_credentials",
        _p(
            r"no valid credentials could be retrieved for ec2 identity"
            r"|ec2 instance not yet registered with Systems Manager"
        ),
        "common/identity/credentialproviders/ec2roleprovider/ec2_role_provider.go:146; "
        "common/identity/credentialproviders/ssmec2roleprovider/ssm_ec2_role_provider.go:87",
    ),
    # Go's crypto/x509 and crypto/tls errors (not vendored: the standard library the agent
    # is built with): "x509: certificate signed by unknown authority" (verify.go,
    # UnknownAuthorityError.Error), "x509: certificate has expired or is not yet valid: "
    # (CertificateInvalidError.Error), "x509: certificate is valid for ..., not ..."
    # (HostnameError.Error), "tls: ..." alerts.
    Cause(
        TLS,
        "unknown_authority",
        _p(r"x509: certificate signed by unknown authority"),
        f"{_GO} crypto/x509/verify.go (UnknownAuthorityError.Error)",
    ),
    Cause(
        TLS,
        "certificate_time",
        _p(r"x509: certificate has expired or is not yet valid"),
        f"{_GO} crypto/x509/verify.go (CertificateInvalidError.Error, Expired)",
    ),
    Cause(
        TLS,
        "hostname",
        _p(
            r"x509: certificate is valid for |x509: cannot validate certificate for "
            r"|x509: certificate is not valid for any names"
        ),
        f"{_GO} crypto/x509/verify.go (HostnameError.Error)",
    ),
    Cause(TLS, "tls", _p(r"\bx509: |\btls: "), f"{_GO} crypto/x509/verify.go, crypto/tls alert.go"),
    # Go's net.DNSError.Error: "lookup " + Name + " on " + Server + ": " + Err (net/net.go).
    Cause(
        DNS,
        "lookup",
        _p(r"\blookup [A-Za-z0-9][A-Za-z0-9.\-]{0,253}(?: on [^\s]{1,80})?: "),
        f"{_GO} net/net.go (DNSError.Error)",
    ),
    # ssm.ErrCodeInvalidInstanceId (service/ssm/errors.go:435), which the credential
    # refresher treats apart (credentialrefresher_deps.go:15): a hybrid node's
    # registration that Systems Manager no longer knows.
    Cause(
        REGISTRATION,
        "deregistered",
        _p(r"\bInvalidInstanceId\b"),
        f"{_SDK}/service/ssm/errors.go:435; "
        "core/app/credentialrefresher/credentialrefresher_deps.go:15",
    ),
    # The SDK's "send request failed" (aws/corehandlers/handlers.go:164), ssmmessages'
    # "failed to make http client call" (agent/session/service/service.go:114), and Go's
    # socket errors; counted only inside an agent operation named below.
    Cause(
        NETWORK,
        "connect",
        _p(
            r"RequestError: send request failed|failed to make http client call"
            r"|connection refused|i/o timeout|network is unreachable|no route to host"
            r"|connection reset by peer|Client\.Timeout exceeded|context deadline exceeded"
        ),
        f"{_SDK}/aws/corehandlers/handlers.go:164; agent/session/service/service.go:114",
        needs_context=True,
    ),
    # core/app/registrar/registrar.go:126 "failed to register identity: %v", with
    # ec2_identity.go:206 "error calling RegisterManagedInstance API: %w" and
    # iirprovider/iir_role_provider.go:51 "failed to retrieve instance identity role".
    Cause(
        REGISTRATION,
        "ec2_registration",
        _p(r"failed to register identity|failed to retrieve instance identity role"),
        "core/app/registrar/registrar.go:126; "
        "common/identity/availableidentities/ec2/ec2_identity.go:206; "
        "common/identity/credentialproviders/iirprovider/iir_role_provider.go:51",
    ),
)


@dataclass(frozen=True)
class Operation:
    """Which agent operation a message is about: the action a denial means, the service."""

    action: Optional[str]  # the IAM action it needs; None: the message does not say
    service: str  # ssm | control | data | s3 | kms | logs | identity | websocket
    pattern: re.Pattern[str]
    source: str


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "ssm:UpdateInstanceInformation",
        "ssm",
        _p(r"failed to report to ssm"),
        "common/identity/credentialproviders/ec2roleprovider/ec2_role_provider.go:131, :169, :171",
    ),
    Operation(
        "ssm:UpdateInstanceInformation",
        "ssm",
        # The health ping: context "[HealthCheck]" (agent/health/healthcheck.go:96) and
        # sdkutil.HandleAwsError's line (agent/sdkutil/awserr.go:49).
        _p(r"\[HealthCheck\] error when calling AWS APIs"),
        "agent/health/healthcheck.go:96, :154; agent/sdkutil/awserr.go:49",
    ),
    Operation(
        "ssm:UpdateInstanceInformation",
        "ssm",
        _p(r"Health ping failed with error|Entering SSM Agent hibernate"),
        "agent/hibernation/hibernation.go:104; agent/agent.go:113",
    ),
    Operation(
        "ssmmessages:CreateControlChannel",
        "control",
        _p(r"CreateControlChannel failed with error|createControlChannel request failed"),
        "agent/session/controlchannel/controlchannel.go:91, :285; "
        "agent/session/service/service.go:126, :181",
    ),
    Operation(
        "ssmmessages:CreateDataChannel",
        "data",
        _p(r"CreateDataChannel failed with no output or error|createDataChannel request failed"),
        "agent/session/datachannel/datachannel.go:287, :1169; "
        "agent/session/service/service.go:126, :213",
    ),
    Operation(
        None,
        "websocket",
        _p(r"Failed to dial websocket"),
        "agent/session/communicator/websocketutil/websocketutil.go:71, :73",
    ),
    Operation(
        "s3:GetEncryptionConfiguration",
        "s3",
        _p(r"Encountered an error while calling S3 API GetBucketEncryption"),
        "agent/s3util/s3util.go:150",
    ),
    Operation(
        "s3:PutObject",
        "s3",
        _p(
            r"Failed to upload \S.{0,400}? to s3://|Failed uploading \S.{0,400}? to s3://"
            r"|Failed to upload shell session logs to S3"
        ),
        "agent/s3util/s3util.go:127, :134; agent/session/shell/shell.go:665",
    ),
    Operation(
        "kms:Decrypt",
        "kms",
        _p(r"Error when decrypting data key|Fetching data key failed|Unable to retrieve data key"),
        "agent/session/crypto/kmsservice.go:79; agent/session/crypto/blockcipher.go:102; "
        "agent/session/datachannel/datachannel.go:878, :938",
    ),
    Operation(
        "logs:CreateLogStream",
        "logs",
        _p(r"Error Calling CreateLogStream|Error Creating Log Stream for CloudWatchLogs output"),
        "agent/agentlogstocloudwatch/cloudwatchlogspublisher/cloudwatchlogsservice.go:249, :574",
    ),
    Operation(
        "logs:PutLogEvents",
        "logs",
        _p(r"Error in PutLogEvents|Failed to upload message to CloudWatch, err"),
        "agent/agentlogstocloudwatch/cloudwatchlogspublisher/cloudwatchlogsservice.go:461, :609",
    ),
    Operation(
        "logs:DescribeLogGroups",
        "logs",
        _p(r"Error (?:Calling|in calling) DescribeLogGroups"),
        "agent/agentlogstocloudwatch/cloudwatchlogspublisher/cloudwatchlogsservice.go:281, :341",
    ),
    Operation(
        "logs:DescribeLogStreams",
        "logs",
        _p(r"Error (?:Calling|in calling) DescribeLogStreams"),
        "agent/agentlogstocloudwatch/cloudwatchlogspublisher/cloudwatchlogsservice.go:316, :400",
    ),
    Operation(
        None,
        "ssm",
        _p(
            r"Retrieve credentials produced error"
            r"|Failed to connect to Systems Manager with SSM role credentials"
        ),
        "core/app/credentialrefresher/credentialrefresher.go:218; "
        "common/identity/credentialproviders/ec2roleprovider/ec2_role_provider.go:144",
    ),
    Operation(
        None,
        "ssm",
        _p(r"failed to register identity|failed to retrieve instance identity role"),
        "core/app/registrar/registrar.go:126; "
        "common/identity/credentialproviders/iirprovider/iir_role_provider.go:51",
    ),
    Operation(
        None,
        "identity",
        _p(r"Failed to get instance info from IMDS"),
        "common/identity/availableidentities/ec2/ec2_identity.go:270",
    ),
)

# sdkutil.HandleAwsError logs every API error once more (agent/sdkutil/awserr.go:49) next
# to the caller's own line: only the health check's copy stands alone.
_HANDLE_AWS_ERROR = "error when calling AWS APIs. error details - "
# websocketutil.go:66 "Opening websocket connection to: %s": which channel a dial is for.
_OPENING = _p(r"Opening websocket connection to: \S*?/(control-channel|data-channel)/")
_WS_STATUS = _p(r"Failed to dial websocket, status: (\d{3})")  # websocketutil.go:71
_HOST = _p(r"(?:https?|wss)://([A-Za-z0-9][A-Za-z0-9.\-]{0,253})")
_LOOKUP_HOST = _p(r"\blookup ([A-Za-z0-9][A-Za-z0-9.\-]{0,253}?)(?: on [^\s]{1,80})?: ")
# AWS's denial text (refines an AccessDenied match; never makes one).
_PERFORM = _p(r"not authorized to perform: ([A-Za-z0-9\-]{1,40}:[A-Za-z0-9*]{1,100})")
_EXPLICIT_DENY = _p(r"with an explicit deny in an? ([a-z\-]{1,30}(?: [a-z\-]{1,30}){0,3} policy)")

# Proof that an operation works again, after a failure (service as in Operation).
SUCCESS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (
        "ssm",
        _p(
            r"Successfully connected with instance profile role credentials"
            r"|Successfully connected with Systems Manager role credentials"
        ),
        "common/identity/credentialproviders/ec2roleprovider/ec2_role_provider.go:137, :148",
    ),
    ("identity", _p(r"Agent will take identity from "), "identity_selector.go:69, :89"),
    (
        "control",
        _p(r"Set up control channel successfully"),
        "agent/messageservice/interactor/mgsinteractor/mgsinteractor.go:206",
    ),
    (
        "websocket",
        _p(r"Successfully opened websocket connection to: "),
        "agent/session/communicator/websocketutil/websocketutil.go:78",
    ),
    ("s3", _p(r"Successfully uploaded file to "), "agent/s3util/s3util.go:137"),
)
# Which service a host name belongs to, for causes outside a named operation.
_HOST_SERVICE = (
    ("ssmmessages.", "ssmmessages"),
    ("ssm.", "ssm"),
    ("ec2messages.", "ec2messages"),
    ("logs.", "logs"),
    ("kms.", "kms"),
    ("s3.", "s3"),
)
# What each kind of success resolves.
_RESOLVES = {
    "ssm": ("ssm",),
    "identity": ("identity", "ssm"),
    "control": ("control", "ssmmessages"),
    "data": ("data",),
    "s3": ("s3",),
}


@dataclass
class LogFinding:
    """One class of failure (with its action) over the window."""

    cls: str
    action: Optional[str]
    status: str  # fail | warn | resolved
    count: int
    first: datetime
    last: datetime
    service: str
    sources: list[str]
    kinds: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    explicit_deny: Optional[str] = None  # "service control policy", ...
    excerpt: str = ""
    resolved_at: Optional[datetime] = None
    persistent: bool = False
    note: str = ""
    _counted_at: Optional[datetime] = None

    def to_dict(self) -> dict[str, object]:
        return {
            "class": self.cls,
            "action": self.action,
            "status": self.status,
            "count": self.count,
            "first": _iso(self.first),
            "last": _iso(self.last),
            "resolved_at": _iso(self.resolved_at),
            "persistent": self.persistent,
            "note": self.note,
            "service": self.service,
            "kinds": list(self.kinds),
            "hosts": list(self.hosts),
            "explicit_deny": self.explicit_deny,
            "excerpt": self.excerpt,
            "source": "; ".join(self.sources),
        }


def excerpt(text: str) -> str:
    """At most EXCERPT_CHARS of a message's first line: printable ASCII, query strings
    dropped (signed URLs), secrets masked by the one redaction rule."""
    first = text.split("\n", 1)[0]
    first = re.sub(r"\?[^\s\"'<>]*", "?...", first)
    first = "".join(ch if " " <= ch <= "~" else "?" for ch in first[: EXCERPT_CHARS * 2])
    if len(first) > EXCERPT_CHARS:
        first = first[: EXCERPT_CHARS - 3] + "..."
    return redact_text(first)


def _service_of_host(host: str) -> Optional[str]:
    lowered = host.lower()
    for prefix, service in _HOST_SERVICE:
        if lowered.startswith(prefix) or f".{prefix}" in lowered:
            return service
    return None


# Retried failures repeat the same message but for request ids, times and counters: the
# decision (which operation, which cause) is kept per message with its digits masked.
_DIGITS = re.compile(r"[0-9]+")
_DECISIONS_KEPT = 1024


def _match_operation(text: str) -> Optional[Operation]:
    return next((op for op in OPERATIONS if op.pattern.search(text)), None)


def _match_cause(text: str, has_operation: bool) -> Optional[Cause]:
    for cause in CAUSES:
        if cause.needs_context and not has_operation:
            continue
        if cause.pattern.search(text):
            return cause
    return None


def _decide(
    text: str, decisions: dict[str, tuple[Optional[Operation], Optional[Cause]]]
) -> tuple[Optional[Operation], Optional[Cause]]:
    key = _DIGITS.sub("#", text)
    decision = decisions.get(key)
    if decision is None:
        operation = _match_operation(text)
        decision = (operation, _match_cause(text, operation is not None))
        if len(decisions) < _DECISIONS_KEPT:
            decisions[key] = decision
    return decision


def classify(events: Sequence[Event]) -> list[LogFinding]:
    """The failures among the events (in time order), one finding per class and action,
    ranked: unresolved before resolved, fail before warn, then by CLASS_ORDER."""
    findings: dict[tuple[str, Optional[str]], LogFinding] = {}
    successes: list[tuple[datetime, str]] = []
    channel: Optional[str] = None  # the websocket the agent last opened: control | data
    decisions: dict[str, tuple[Optional[Operation], Optional[Cause]]] = {}
    for event in events:
        text = event.text
        opening = _OPENING.search(text) if "Opening websocket" in text else None
        if opening:
            channel = "control" if opening.group(1) == "control-channel" else "data"
            continue
        if event.level in ("INFO", "DEBUG", "TRACE"):
            if "uccess" in text or "Agent will take identity" in text:
                for kind, pattern, _source in SUCCESS:
                    if pattern.search(text):
                        worked = (channel or kind) if kind == "websocket" else kind
                        successes.append((event.when, worked))
                        break
            # Info lines that report a failure: the hibernation notice (agent.go:113).
            if "Entering SSM Agent hibernate" not in text:
                continue
        if _HANDLE_AWS_ERROR in text and "[HealthCheck]" not in text:
            continue  # the caller's own line says which operation (awserr.go:49)
        operation, cause = _decide(text, decisions)
        action = operation.action if operation else None
        service = operation.service if operation else ""
        if operation and operation.service == "websocket":
            service = channel or "websocket"
            status_match = _WS_STATUS.search(text)
            if status_match and cause is None:
                if status_match.group(1) == "403":
                    cause = next(c for c in CAUSES if c.cls == ACCESS_DENIED)
                else:
                    cause = next(c for c in CAUSES if c.cls == NETWORK)
            if channel:
                action = f"ssmmessages:Open{'Control' if channel == 'control' else 'Data'}Channel"
        if cause is None:
            continue
        if cause.cls != ACCESS_DENIED:
            # A denial names an action; other classes are about the service or the node.
            action = None
        else:
            named = _PERFORM.search(text) if "perform: " in text else None
            if named:
                action = named.group(1)
        hosts = [m.group(1) for m in _HOST.finditer(text)] if "://" in text else []
        if "lookup " in text:
            hosts += [m.group(1) for m in _LOOKUP_HOST.finditer(text)]
        if not service:
            service = next((s for s in map(_service_of_host, hosts) if s), "")
        if not service and cause.cls == NO_IDENTITY:
            service = "identity"
        key = (cause.cls, action)
        finding = findings.get(key)
        if finding is None:
            finding = LogFinding(
                cause.cls,
                action,
                WARN,
                0,
                event.when,
                event.when,
                service,
                [],
            )
            findings[key] = finding
        for source in ((operation.source,) if operation else ()) + (cause.source,):
            for part in source.split("; "):
                if part not in finding.sources:
                    finding.sources.append(part)
        if finding._counted_at is None or event.when - finding._counted_at >= SAME_INCIDENT:
            finding.count += 1
            finding._counted_at = event.when
        finding.last = max(finding.last, event.when)
        if cause.kind not in finding.kinds:
            finding.kinds.append(cause.kind)
        for host in hosts:
            if host not in finding.hosts and len(finding.hosts) < 3:
                finding.hosts.append(host)
        deny = _EXPLICIT_DENY.search(text) if "explicit deny" in text else None
        if deny:
            finding.explicit_deny = deny.group(1)
        if not finding.service and service:
            finding.service = service
        finding.excerpt = text  # made an excerpt below, once per finding
    for finding in findings.values():
        finding.excerpt = excerpt(finding.excerpt)
        _judge(finding, successes)
    return sorted(findings.values(), key=_rank)


def _judge(finding: LogFinding, successes: Sequence[tuple[datetime, str]]) -> None:
    resolvers = {kind for kind, services in _RESOLVES.items() if finding.service in services}
    if finding.cls in (ENCRYPTION_CHECK, FINGERPRINT) or (
        finding.cls == REGISTRATION and "deregistered" in finding.kinds
    ):
        resolvers = set()  # nothing in the log proves these fixed
    after_first = [when for when, kind in successes if kind in resolvers and when > finding.first]
    resolved = [when for when in after_first if when > finding.last]
    if finding.cls == REGISTRATION and "deregistered" not in finding.kinds:
        connected = [when for when, kind in successes if kind == "ssm" and when > finding.first]
        if connected:
            # The EC2 registration serves Default Host Management only: with working
            # instance profile credentials it does not matter whether it succeeds.
            finding.status = RESOLVED
            finding.resolved_at = min(connected)
            finding.note = (
                "the agent connected with its credentials since: this registration matters "
                "only for Default Host Management"
            )
            return
    if resolved:
        finding.status = RESOLVED
        finding.resolved_at = min(resolved)
        return
    if finding.cls in TRANSIENT or (
        finding.cls == REGISTRATION and "deregistered" not in finding.kinds
    ):
        # Transient, unless it dominates: it kept failing and never worked since it began.
        finding.persistent = finding.count >= PERSISTENT_COUNT and not after_first
        finding.status = FAIL if finding.persistent and finding.cls in TRANSIENT else WARN
        return
    finding.status = FAIL


def _rank(finding: LogFinding) -> tuple[int, int, float]:
    order = {FAIL: 0, WARN: 1, RESOLVED: 2}[finding.status]
    return (order, CLASS_ORDER.index(finding.cls), -finding.last.timestamp())


def _iso(when: Optional[datetime]) -> Optional[str]:
    return when.isoformat(sep=" ", timespec="seconds") if when else None


def when_text(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S")
