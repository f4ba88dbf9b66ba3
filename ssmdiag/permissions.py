"""Harmless AWS calls with the agent's own credentials: what its role may really do.

The only module that imports botocore, lazily (`ssmdiag version` and every other check
never load it; without it the permission checks say how to install it). Each call is one
the agent or a session makes, or a read-only one, and none changes anything in the account:

- `sts:GetCallerIdentity`: which role the credentials belong to (always allowed by IAM);
- `s3:GetEncryptionConfiguration` on the session-log bucket: the agent's own check before a
  session that must log to an encrypted bucket (agent/session/shell/shell.go:133-139,
  agent/s3util/s3util.go:142-162: Rules[0]'s SSEAlgorithm must be aws:kms or AES256);
- `logs:DescribeLogGroups` with the group's name as prefix, page by page until the name
  matches, as the agent looks for its group (agent/agentlogstocloudwatch/
  cloudwatchlogspublisher/cloudwatchlogsservice.go:260-291, 328-371; encryption = the group
  has a KmsKeyId, :488-500; shell.go:108-123);
- `kms:GenerateDataKey` then `kms:Decrypt` with the session key: a session's key exchange
  (agent/session/crypto/blockcipher.go:84-103, kmsservice.go:71-82: 64 bytes, encryption
  context aws:ssm:SessionId and aws:ssm:TargetId). GenerateDataKey only returns a data key
  (plaintext and encrypted copy) to the caller: KMS stores nothing, and the plaintext is
  dropped at once, never logged.

Endpoints are the agent's: the regional host for the identity's region
(endpoints.helper_host, honouring Agent.ServiceDomain), `S3.Endpoint` and `Kms.Endpoint`
from the agent's config (agent/s3util/riputil.go:38-39, agent/session/crypto/kmsservice.go:
55-56), through the agent's proxy (its https_proxy / no_proxy with Go's rules, as
ssmdiag/proxy.py decides) and never ssmdiag's own environment or ~/.aws/config. Every call
has connect and read timeouts and at most one retry (botocore's total_max_attempts=2), and
all calls together finish within one deadline. `[permissions] endpoint_url` sends every
call to one URL instead: a local AWS API (moto) for tests, never a setting for a real node.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import importlib.util
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Optional, Union
from urllib.parse import urlsplit

from ssmdiag import __version__
from ssmdiag.aws_credentials import AgentCredentials
from ssmdiag.endpoints import derive_session_endpoints, helper_host
from ssmdiag.proxy import ProxySettings
from ssmdiag.redact import redact_text

BOTOCORE_MISSING = (
    "botocore (the AWS SDK's core) is not installed: `pip install botocore` in ssmdiag's "
    "environment, or the distribution's package (dnf/apt install python3-botocore)"
)
MAX_LOG_GROUP_PAGES = 5  # DescribeLogGroups pages of 50 before giving up on a name
DATA_KEY_BYTES = 64  # kmsservice.go:30-32 KMSKeySizeInBytes
_MESSAGE_MAX = 300

# AWS error codes, by what they mean for the node.
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden"}
_REJECTED = {
    "InvalidClientTokenId", "UnrecognizedClientException", "InvalidAccessKeyId",
    "SignatureDoesNotMatch", "IncompleteSignature", "AuthFailure", "InvalidToken",
    "MissingAuthenticationToken", "InvalidSignatureException",
}  # fmt: skip
_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired"}
_CLOCK = {"RequestTimeTooSkewed", "RequestExpired", "SignatureExpired"}
_NOT_FOUND = {"NoSuchBucket", "NotFoundException", "ResourceNotFoundException"}
_KEY_STATE = {
    "DisabledException", "KMSInvalidStateException", "KeyUnavailableException",
    "InvalidKeyUsageException", "IncorrectKeyException",
}  # fmt: skip
_INVALID = {"InvalidBucketName", "InvalidParameterException", "ValidationException"}
_NO_ENCRYPTION = "ServerSideEncryptionConfigurationNotFoundError"
_REDIRECT = {"PermanentRedirect", "AuthorizationHeaderMalformed", "301"}
_XML_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_XML_MESSAGE = re.compile(r"<Message>([^<]{0,1000})</Message>")


class BotocoreMissing(RuntimeError):
    pass


def botocore_available() -> bool:
    """Whether botocore can be imported, without importing it."""
    try:
        return importlib.util.find_spec("botocore") is not None
    except (ImportError, ValueError):
        return False


_modules: Optional[dict[str, ModuleType]] = None
_modules_lock = threading.Lock()


def _botocore() -> dict[str, ModuleType]:
    """botocore's modules, imported on first use (typed as plain modules: no stubs)."""
    global _modules  # noqa: PLW0603 - imported once per process
    with _modules_lock:
        if _modules is None:
            try:
                _modules = {
                    name: importlib.import_module(f"botocore.{name}")
                    for name in ("session", "config", "exceptions")
                }
            except ImportError as exc:
                raise BotocoreMissing(BOTOCORE_MISSING) from exc
            # botocore logs signed request headers at DEBUG: never let that reach anything.
            logging.getLogger("botocore").setLevel(logging.ERROR)
        return _modules


@dataclass(frozen=True)
class Target:
    """Where one service's calls go."""

    service: str  # sts | s3 | logs | kms
    url: str  # "" : the agent has no endpoint for it
    origin: str
    region: str
    default_host: bool = True  # from the region (not an override): may follow a bucket's region
    local: bool = False  # [permissions] endpoint_url: a local AWS API on an IP, path-style S3
    domain: str = ""  # Agent.ServiceDomain ("" : the partition's suffix)


def targets(
    region: str, agent_settings: Mapping[str, Any], endpoint_url: Optional[str] = None
) -> dict[str, Target]:
    if endpoint_url:
        origin = "[permissions] endpoint_url in ssmdiag's config (a local AWS API)"
        return {
            service: Target(service, endpoint_url, origin, region, default_host=False, local=True)
            for service in ("sts", "s3", "logs", "kms")
        }
    domain = str(agent_settings.get("Agent.ServiceDomain") or "")
    out: dict[str, Target] = {}
    sts_host = helper_host("sts", region, domain)
    out["sts"] = Target(
        "sts", f"https://{sts_host}" if sts_host else "", "the regional STS host", region
    )
    for service, agent in derive_session_endpoints(
        region, agent_settings, ("s3", "logs", "kms")
    ).items():
        out[service] = Target(
            service,
            agent.url,
            agent.origin,
            region,
            default_host=agent.source == "default",
            domain=domain,
        )
    return out


@dataclass(frozen=True)
class CallSettings:
    connect_timeout: float
    read_timeout: float
    proxies: ProxySettings = field(default_factory=ProxySettings)
    verify: Union[bool, str] = True


@dataclass
class CallResult:
    """One verification: what was asked, and what AWS (or the path to it) answered.

    outcome: ok | denied | not_found | rejected (credentials refused) | expired | clock |
    key_state | invalid | wrong_region | network | timeout | no_endpoint | error."""

    action: str  # the IAM action of the call that decided the outcome
    outcome: str
    summary: str = ""
    code: str = ""
    message: str = ""
    endpoint: str = ""
    proxy: Optional[str] = None
    data: dict[str, Any] = field(default_factory=dict)
    duration_ms: int = 0

    def shown(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "outcome": self.outcome,
            "code": self.code or None,
            "message": self.message or None,
            "endpoint": self.endpoint or None,
            "proxy": self.proxy,
            **self.data,
        }


def _clean(text: str) -> str:
    text = "".join(c if c.isprintable() else " " for c in text)
    text = redact_text(" ".join(text.split()))
    return text if len(text) <= _MESSAGE_MAX else text[: _MESSAGE_MAX - 3] + "..."


def _proxy_for(url: str, proxies: ProxySettings) -> tuple[dict[str, str], Optional[str]]:
    """botocore's `proxies` for this URL as the agent routes it, and the proxy as shown."""
    route = proxies.route(url)
    if route.kind == "refused":
        raise _NoRoute(f"the agent's proxy setting makes every request fail: {route.reason}")
    if route.kind != "proxy" or route.proxy is None:
        return {}, None
    proxy = route.proxy
    if proxy.scheme == "socks5":
        raise _NoRoute(
            f"the agent's proxy {proxy.display()} is SOCKS5, which ssmdiag's AWS client cannot use"
        )
    scheme = urlsplit(url).scheme
    raw = (proxies.https_proxy if scheme == "https" else proxies.http_proxy) or ""
    userinfo = ""
    with contextlib.suppress(ValueError):
        userinfo = urlsplit(raw if "://" in raw else f"http://{raw}").netloc.rpartition("@")[0]
    host = f"[{proxy.host}]" if ":" in proxy.host else proxy.host
    auth = f"{userinfo}@" if userinfo else ""
    return {scheme: f"{proxy.scheme}://{auth}{host}:{proxy.port}"}, proxy.display()


class _NoRoute(Exception):
    pass


class Caller:
    """Clients for one verification, one per call, made one at a time (a botocore session is
    not thread-safe; its clients are). Holds the credentials only until `close()`."""

    def __init__(self, credentials: AgentCredentials, settings: CallSettings) -> None:
        modules = _botocore()
        self._config_module = modules["config"]
        self.errors = modules["exceptions"]
        # No profile, config file or shared credentials of ssmdiag's own environment:
        # everything a call uses is passed explicitly.
        self._session = modules["session"].Session(
            session_vars={
                "profile": (None, None, None, None),
                "config_file": (None, None, os.devnull, None),
                "credentials_file": (None, None, os.devnull, None),
            }
        )
        self._credentials: Optional[AgentCredentials] = credentials
        self.settings = settings
        self._lock = threading.Lock()

    def close(self) -> None:
        self._credentials = None

    def client(self, target: Target, s3_style: str = "auto") -> tuple[Any, Optional[str]]:
        proxies, shown = _proxy_for(target.url, self.settings.proxies)
        config = self._config_module.Config(
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
            retries={"total_max_attempts": 2, "mode": "standard"},  # at most one retry
            proxies=proxies,  # {} (not None): never ssmdiag's own proxy variables
            max_pool_connections=2,
            s3={"addressing_style": s3_style},
            user_agent_extra=f"ssmdiag/{__version__}",
        )
        credentials = self._credentials
        if credentials is None:
            raise RuntimeError("the credentials were already dropped")
        token = credentials.session_token
        with self._lock:
            client = self._session.create_client(
                target.service,
                region_name=target.region,
                endpoint_url=target.url,
                verify=self.settings.verify,
                aws_access_key_id=credentials.access_key_id.reveal(),
                aws_secret_access_key=credentials.secret_access_key.reveal(),
                aws_session_token=token.reveal() if token else None,
                config=config,
            )
        return client, shown


def _fail_from(exc: BaseException, errors: ModuleType, action: str) -> CallResult:
    """A CallResult for a botocore exception (ClientError or a transport failure)."""
    if isinstance(exc, _NoRoute):
        return CallResult(action, "network", str(exc))
    if isinstance(exc, errors.ClientError):
        response: dict[str, Any] = getattr(exc, "response", None) or {}
        error = response.get("Error") or {}
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or "")
        meta = response.get("ResponseMetadata") or {}
        status = meta.get("HTTPStatusCode")
        if code.isdigit() and "<Code>" in message:  # an XML error body for a JSON API
            inner = _XML_CODE.search(message)
            text = _XML_MESSAGE.search(message)
            code = inner.group(1) if inner else code
            message = text.group(1) if text else ""
        result = CallResult(action, "error", code=code, message=_clean(message))
        lowered = message.lower()
        if code in _DENIED or "not authorized to perform" in lowered:
            result.outcome = "denied"
        elif code in _CLOCK or "signature expired" in lowered:
            result.outcome = "clock"
        elif code in _EXPIRED:
            result.outcome = "expired"
        elif code in _REJECTED:
            result.outcome = "rejected"
        elif code in _NOT_FOUND:
            result.outcome = "not_found"
        elif code in _KEY_STATE:
            result.outcome = "key_state"
        elif code in _INVALID:
            result.outcome = "invalid"
        elif code in _REDIRECT or status == 301:
            headers = meta.get("HTTPHeaders") or {}
            result.outcome = "wrong_region"
            region = headers.get("x-amz-bucket-region")
            if isinstance(region, str) and re.fullmatch(r"[a-z0-9-]{1,40}", region):
                result.data["bucket_region"] = region
        result.summary = f"{code or status}: {result.message}".rstrip(": ")
        return result
    name = type(exc).__name__
    timeouts = (errors.ConnectTimeoutError, errors.ReadTimeoutError)
    if isinstance(exc, timeouts):
        return CallResult(action, "timeout", _clean(f"{name}: {exc}"))
    network = (
        errors.EndpointConnectionError, errors.ProxyConnectionError, errors.SSLError,
        errors.ConnectionClosedError, errors.HTTPClientError,
    )  # fmt: skip
    if isinstance(exc, network):
        return CallResult(action, "network", _clean(f"{name}: {exc}"))
    if isinstance(exc, errors.ParamValidationError):
        return CallResult(action, "invalid", _clean(f"{exc}"))
    return CallResult(action, "error", _clean(f"{name}: {exc}"))


def _timed(
    caller: Caller,
    target: Target,
    action: str,
    work: Callable[[Any], CallResult],
    s3_style: str = "auto",
) -> CallResult:
    started = time.monotonic()
    if not target.url:
        result = CallResult(action, "no_endpoint", f"the agent has no {target.service} endpoint "
                            f"({target.origin})")  # fmt: skip
    else:
        shown: Optional[str] = None
        try:
            client, shown = caller.client(target, s3_style)
            result = work(client)
        except Exception as exc:  # botocore's errors and ours; anything else is a bug
            result = _fail_from(exc, caller.errors, action)
        result.proxy = shown
    result.endpoint = target.url
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result


def caller_identity(caller: Caller, target: Target) -> CallResult:
    def work(client: Any) -> CallResult:
        answer = client.get_caller_identity()
        return CallResult(
            "sts:GetCallerIdentity",
            "ok",
            data={
                "arn": str(answer.get("Arn") or ""),
                "account": str(answer.get("Account") or ""),
            },
        )

    return _timed(caller, target, "sts:GetCallerIdentity", work)


def bucket_encryption(caller: Caller, target: Target, bucket: str) -> CallResult:
    action = "s3:GetEncryptionConfiguration"

    def work(client: Any) -> CallResult:
        try:
            answer = client.get_bucket_encryption(Bucket=bucket)
        except caller.errors.ClientError as exc:
            code = str((getattr(exc, "response", {}) or {}).get("Error", {}).get("Code") or "")
            if code == _NO_ENCRYPTION:
                return CallResult(action, "ok", data={"encrypted": False, "algorithm": None})
            raise
        rules = (answer.get("ServerSideEncryptionConfiguration") or {}).get("Rules") or []
        default = (rules[0].get("ApplyServerSideEncryptionByDefault") or {}) if rules else {}
        algorithm = default.get("SSEAlgorithm")
        return CallResult(
            action,
            "ok",
            data={
                # s3util.go:154-158: only these two count as encrypted for the agent.
                "encrypted": algorithm in ("aws:kms", "AES256"),
                "algorithm": algorithm if isinstance(algorithm, str) else None,
                "kms_key": default.get("KMSMasterKeyID"),
            },
        )

    # The agent's SDK (aws-sdk-go v1, no S3ForcePathStyle in the agent) addresses a bucket
    # virtual-hosted, and path-style when its name has dots under https or is not a DNS label
    # (extra/aws-sdk-go/service/s3/host_style_bucket.go:110-130).
    virtual = re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", bucket) and not target.local
    style = "virtual" if virtual else "path"
    result = _timed(caller, target, action, work, style)
    region = result.data.get("bucket_region")
    if result.outcome == "wrong_region" and region and target.default_host:
        # The agent writes to the bucket's own region (its S3 client follows the bucket);
        # ask that region's host once.
        host = helper_host("s3", region, target.domain)
        again = Target("s3", f"https://{host}", f"the bucket's region {region}", region)
        result = _timed(caller, again, action, work, style)
        result.data.setdefault("bucket_region", region)
    return result


def log_group(caller: Caller, target: Target, name: str) -> CallResult:
    action = "logs:DescribeLogGroups"

    def work(client: Any) -> CallResult:
        token: Optional[str] = None
        for page in range(1, MAX_LOG_GROUP_PAGES + 1):
            params: dict[str, Any] = {"logGroupNamePrefix": name, "limit": 50}
            if token:
                params["nextToken"] = token
            answer = client.describe_log_groups(**params)
            for group in answer.get("logGroups") or []:
                if group.get("logGroupName") == name:
                    kms = group.get("kmsKeyId")
                    return CallResult(
                        action, "ok",
                        data={"exists": True, "kms_key": kms if isinstance(kms, str) else None},
                    )  # fmt: skip
            token = answer.get("nextToken")
            if not token:
                return CallResult(action, "ok", data={"exists": False, "pages": page})
        return CallResult(
            action, "ok", data={"exists": None, "pages": MAX_LOG_GROUP_PAGES},
            summary=f"not among the first {MAX_LOG_GROUP_PAGES * 50} groups named like it",
        )  # fmt: skip

    return _timed(caller, target, action, work)


def kms_round_trip(caller: Caller, target: Target, key_id: str, instance_id: str) -> CallResult:
    context = {
        "aws:ssm:SessionId": "ssmdiag-permission-check",
        "aws:ssm:TargetId": instance_id or "unknown",
    }

    def work(client: Any) -> CallResult:
        # Harmless: GenerateDataKey returns a data key and stores nothing in the account;
        # Decrypt returns it again. The plaintext is never kept, shown or logged.
        generated = client.generate_data_key(
            KeyId=key_id, NumberOfBytes=DATA_KEY_BYTES, EncryptionContext=context
        )
        key_arn = generated.get("KeyId")
        blob = generated.get("CiphertextBlob")
        del generated
        try:
            decrypted = client.decrypt(CiphertextBlob=blob, EncryptionContext=context, KeyId=key_id)
        except Exception as exc:
            result = _fail_from(exc, caller.errors, "kms:Decrypt")
            result.data["key_arn"] = key_arn
            return result
        del decrypted
        return CallResult("kms:Decrypt", "ok", data={"key_arn": key_arn})

    return _timed(caller, target, "kms:GenerateDataKey", work)


def run_all(
    jobs: Mapping[str, tuple[str, Callable[[], CallResult]]], deadline: float
) -> dict[str, CallResult]:
    """Run the calls concurrently; whatever has not answered by `deadline` is a timeout
    (its daemon thread is abandoned, bounded by botocore's own timeouts)."""
    results: dict[str, CallResult] = {}
    lock = threading.Lock()
    threads = []
    for name, (action, job) in jobs.items():

        def work(
            name: str = name, action: str = action, job: Callable[[], CallResult] = job
        ) -> None:
            try:
                result = job()
            except Exception as exc:  # a bug must not hide the other calls
                result = CallResult(action, "error", f"ssmdiag failed: {type(exc).__name__}")
            with lock:
                results[name] = result

        thread = threading.Thread(target=work, name=f"ssmdiag-{name}", daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        out = dict(results)
    for name, (action, _) in jobs.items():
        out.setdefault(name, CallResult(action, "timeout", "no answer before the deadline"))
    return out


@contextlib.contextmanager
def trust(ca_bundle: Optional[str]) -> Iterator[Union[bool, str]]:
    """What botocore verifies TLS against: the OS trust store, as the agent (Go) does, plus
    [network] ca_bundle when set (merged into a private temporary file, removed after)."""
    paths = ssl.get_default_verify_paths()
    system = next(
        (p for p in (paths.cafile, paths.openssl_cafile) if p and os.path.isfile(p)), None
    )
    if not ca_bundle:
        if system:
            yield system
        elif paths.capath and os.path.isdir(paths.capath):
            yield paths.capath
        else:
            yield True  # botocore's own bundle (Windows: no OS PEM file)
        return
    if system is None:
        yield ca_bundle
        return
    from ssmdiag.safeio import read_text

    extra = read_text(ca_bundle)
    base = read_text(system, 16 * 1024 * 1024)
    if extra.outcome != "ok" or base.outcome != "ok":
        yield ca_bundle
        return
    import tempfile  # only here: its imports cost every check worker about 6 ms

    handle, merged = tempfile.mkstemp(prefix="ssmdiag-ca-", suffix=".pem")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(base.text + "\n" + extra.text + "\n")
        yield merged
    finally:
        with contextlib.suppress(OSError):
            os.unlink(merged)


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
