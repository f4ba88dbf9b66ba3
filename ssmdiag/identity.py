"""Who and where this node is: region, instance id and credential source, each with its source.

Order (first answer wins): --region / ssmdiag config; the agent's runtime identity
file; the hybrid registration; the agent config's Agent.Region; IMDSv2;
AWS_REGION / AWS_DEFAULT_REGION. IMDS is asked directly, never through a proxy,
and nothing credential-like (tokens, keys) is ever kept or logged.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urlsplit

from ssmdiag.agent import AgentConfigFacts
from ssmdiag.platform.base import Platform

IMDS_DEFAULT = "http://169.254.169.254"


@dataclass
class ImdsResult:
    # ok | disabled | unreachable | hop_limit | error
    state: str
    endpoint: str
    note: str = ""
    instance_id: Optional[str] = None
    region: Optional[str] = None
    instance_profile_arn: Optional[str] = None
    iam_state: str = "unknown"  # profile | none | unknown


def _request(
    endpoint: str, method: str, path: str, headers: dict[str, str], timeout: float
) -> tuple[int, str]:
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    try:
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(64 * 1024).decode("utf-8", "replace")
    finally:
        conn.close()


def query_imds(environ: Mapping[str, str], budget: float) -> ImdsResult:
    endpoint = (environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS_DEFAULT).rstrip("/")
    if environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return ImdsResult("disabled", endpoint, "AWS_EC2_METADATA_DISABLED=true")
    deadline = time.monotonic() + budget

    def left() -> float:
        return max(0.05, deadline - time.monotonic())

    try:
        status, token = _request(
            endpoint,
            "PUT",
            "/latest/api/token",
            {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
            left(),
        )
    except (socket.timeout, TimeoutError):
        # Hop-limit symptom: the PUT's answer dies one hop short, a plain GET is refused at once.
        try:
            status, _ = _request(endpoint, "GET", "/latest/meta-data/", {}, 0.5)
        except OSError:
            return ImdsResult("unreachable", endpoint, f"no answer within {budget:g} s")
        if status == 401:
            return ImdsResult("hop_limit", endpoint, "token PUT timed out, plain GET got 401")
        return ImdsResult("error", endpoint, f"token PUT timed out, plain GET got {status}")
    except OSError as exc:
        return ImdsResult("unreachable", endpoint, exc.strerror or type(exc).__name__)
    except http.client.HTTPException as exc:
        return ImdsResult("error", endpoint, f"bad HTTP answer: {type(exc).__name__}")
    if status != 200:
        return ImdsResult("error", endpoint, f"token PUT answered {status}")
    headers = {"X-aws-ec2-metadata-token": token.strip()}
    result = ImdsResult("ok", endpoint)
    try:
        for path, attr in (
            ("/latest/meta-data/instance-id", "instance_id"),
            ("/latest/meta-data/placement/region", "region"),
        ):
            code, body = _request(endpoint, "GET", path, headers, left())
            if code == 200:
                setattr(result, attr, body.strip())
        code, body = _request(endpoint, "GET", "/latest/meta-data/iam/info", headers, left())
        if code == 200:
            result.iam_state = "profile"
            try:
                result.instance_profile_arn = json.loads(body).get("InstanceProfileArn")
            except (ValueError, AttributeError):
                result.instance_profile_arn = None
        elif code == 404:
            result.iam_state = "none"
    except (OSError, http.client.HTTPException) as exc:
        result.note = f"metadata read incomplete: {type(exc).__name__}"
    return result


@dataclass
class Identity:
    region: Optional[str] = None
    region_source: Optional[str] = None
    instance_id: Optional[str] = None
    instance_id_source: Optional[str] = None
    identity_type: Optional[str] = None  # EC2 | OnPrem | ECS | CustomIdentity
    credential_source: Optional[str] = None  # EC2 | SSM | None (runtime identity file)
    hybrid: bool = False
    imds: Optional[ImdsResult] = None
    dhmc_credentials_file: bool = False
    problems: list[str] = field(default_factory=list)


def _json_file(platform: Platform, path: str, problems: list[str]) -> Optional[dict[str, Any]]:
    read = platform.read_file(path)
    if read.outcome == "missing":
        return None
    if read.outcome != "ok":
        problems.append(f"{path}: {read.message}")
        return None
    try:
        data = json.loads(read.text)
    except ValueError as exc:
        problems.append(f"{path}: not valid JSON ({exc})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: not a JSON object")
        return None
    return data


def _get(data: Mapping[str, Any], *names: str) -> Optional[str]:
    lowered = {k.lower(): v for k, v in data.items()}
    for name in names:
        value = lowered.get(name.lower())
        if isinstance(value, str) and value:
            return value
    return None


def resolve_identity(
    platform: Platform,
    *,
    configured_region: Optional[str],
    agent_config: AgentConfigFacts,
    environ: Mapping[str, str],
    imds_budget: float,
    binary_path: Optional[str],
) -> Identity:
    ident = Identity()
    paths = platform.agent_paths(binary_path)

    def take_region(value: Optional[str], source: str) -> None:
        if value and ident.region is None:
            ident.region, ident.region_source = value, source

    def take_instance(value: Optional[str], source: str) -> None:
        if value and ident.instance_id is None:
            ident.instance_id, ident.instance_id_source = value, source

    take_region(configured_region, "ssmdiag-config")
    runtime = _json_file(platform, paths.runtime_identity_file, ident.problems)
    if runtime:
        take_instance(_get(runtime, "InstanceId"), "runtime-identity")
        ident.identity_type = _get(runtime, "IdentityType")
        ident.credential_source = _get(runtime, "CredentialSource")
    # Only the id and region are taken: the registration also holds the node's private key.
    registration = _json_file(platform, paths.registration_file, ident.problems)
    if registration:
        instance = _get(registration, "ManagedInstanceID", "instanceID")
        ident.hybrid = bool(instance and instance.startswith("mi-"))
        take_instance(instance, "hybrid-registration")
        take_region(_get(registration, "Region"), "hybrid-registration")
    take_region(agent_config.settings.get("Agent.Region"), "agent-config")
    if not ident.hybrid and ident.identity_type not in ("OnPrem",):
        ident.imds = query_imds(environ, imds_budget)
        take_instance(ident.imds.instance_id, "imds")
        take_region(ident.imds.region, "imds")
    take_region(environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION"), "environment")
    ident.dhmc_credentials_file = platform.file_exists(paths.dhmc_credentials_file)
    if ident.identity_type == "OnPrem":
        ident.hybrid = True
    return ident
