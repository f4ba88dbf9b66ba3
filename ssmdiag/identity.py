"""Who and where this node is, as the agent decides it (agent 3.3.1142.0 code).

The agent tries the identity types of `Identity.ConsumptionOrder` (default OnPrem,
EC2, CustomIdentity) and takes the first one available
(common/identity/identity/identity_selector.go:77-99):

- OnPrem: the hybrid registration in the agent's vault holds an instance id, a region
  and a private key (instance_info.go:94-99). The vault is `Vault/Manifest` (a JSON map
  of key to file) and `Vault/Store/RegistrationKey` (plain JSON) under the agent's data
  directory (agent/managedInstances/vault/fsvault/fsvault.go:30-32, 64-88, 173-176).
  `registration` beside it is only written at registration (core/agent_parser.go:
  254-268) and never read; `-register -clear` empties the vault but leaves that file
  (core/agent_parser.go:273-281), so it can be stale.
- EC2: IMDS answers the instance id and the region (ec2_identity.go:118-121, 268-272,
  321-339).
- CustomIdentity: the first `Identity.CustomIdentities` entry with an InstanceID and a
  Region (identity_creator.go:53-75, custom_identity.go:59-61).
- ECS: the ECS task metadata endpoint answers; ssmdiag does not check it.

The region is ssmdiag's own (--region / config) first, then the chosen identity's, then
AWS_REGION / AWS_DEFAULT_REGION. `Agent.Region` is not an identity region: it only
changes the SigV4 signing region (ssmdiag.endpoints). Of the registration only the
instance id and region are kept: the private key is never kept, shown or logged (only
whether one is present, the agent's own test). IMDS is asked directly, never through a
proxy, and nothing credential-like (tokens, keys) is ever kept or logged.
"""

from __future__ import annotations

import json
import ntpath
import posixpath
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urlsplit

from ssmdiag import httpwire
from ssmdiag.agent import AgentConfigFacts
from ssmdiag.platform.base import Platform

IMDS_DEFAULT = "http://169.254.169.254"


@dataclass
class ImdsResult:
    # ok | disabled | unreachable | hop_limit | error | not_imds (something else answers)
    state: str
    endpoint: str
    note: str = ""
    instance_id: Optional[str] = None
    region: Optional[str] = None
    instance_profile_arn: Optional[str] = None
    iam_state: str = "unknown"  # profile | none | unknown


class _Imds(Exception):
    """One IMDS exchange ended without an answer. kind: timeout | unreachable | not_imds."""

    def __init__(self, kind: str, note: str) -> None:
        super().__init__(note)
        self.kind = kind
        self.note = note


MAX_IMDS_ANSWER = 64 * 1024
_TOKEN = re.compile(r"[A-Za-z0-9+/=_\-]{1,1024}\Z")
_INSTANCE_ID = re.compile(r"(?:i|mi)-[0-9a-f]{8,17}\Z")


def _imds_address(endpoint: str) -> tuple[str, int]:
    """(host, port) of AWS_EC2_METADATA_SERVICE_ENDPOINT, or ValueError saying what is wrong."""
    parts = urlsplit(endpoint)  # raises ValueError for "http://[::1"
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError("it must be an http:// URL with a host")
    return parts.hostname, parts.port or 80  # .port raises ValueError for ":abc"


def _request(
    address: tuple[str, int], method: str, path: str, headers: dict[str, str], until: float
) -> tuple[int, str, str]:
    """(status, content type, body) of one exchange, all of it before `until` (a peer that
    drips never holds it longer), at most 64 KiB of body."""
    left = until - time.monotonic()
    if left <= 0:
        raise _Imds("timeout", "no time left")
    try:
        sock = socket.create_connection(address, timeout=left)
    except (socket.timeout, TimeoutError):
        raise _Imds("timeout", "connect timed out") from None
    except OSError as exc:
        raise _Imds("unreachable", exc.strerror or type(exc).__name__) from None
    try:
        host = f"[{address[0]}]" if ":" in address[0] else address[0]
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if method == "PUT":
            lines.append("Content-Length: 0")
        httpwire.send(sock, ("\r\n".join(lines) + "\r\n\r\n").encode("ascii"), until)
        head, rest = httpwire.read_head(sock, until)
        status, _, answer_headers = httpwire.parse_head(head)
        body = httpwire.read_body(sock, rest, answer_headers, until, MAX_IMDS_ANSWER)
    except httpwire.HeadError as exc:
        if exc.kind == "timeout":
            raise _Imds("timeout", "the answer did not come in time") from None
        if exc.kind in ("not_http", "oversized"):
            raise _Imds("not_imds", f"the answer is not HTTP from IMDS ({exc.kind})") from None
        raise _Imds("unreachable", f"the connection ended ({exc.kind})") from None
    except (socket.timeout, TimeoutError):
        raise _Imds("timeout", "sending timed out") from None
    except OSError as exc:
        raise _Imds("unreachable", exc.strerror or type(exc).__name__) from None
    finally:
        sock.close()
    content_type = answer_headers.get("content-type", "")
    return status, content_type, body.decode("utf-8", "replace")


def _bounded_loads(text: str, **options: Any) -> Any:
    """json.loads for the agent's files and IMDS answers: nesting checked first (a deep
    file would raise RecursionError), refused as a ValueError like any bad JSON."""
    from ssmdiag.safeio import MAX_NESTING, TooDeep, json_depth

    depth = json_depth(text)
    if depth > MAX_NESTING:
        raise TooDeep(f"nested {depth} levels deep (ssmdiag reads at most {MAX_NESTING})")
    return json.loads(text, **options)


def _looks_like_a_page(content_type: str, body: str) -> bool:
    return "html" in content_type.lower() or body.lstrip()[:1] == "<"


def query_imds(environ: Mapping[str, str], budget: float) -> ImdsResult:
    endpoint = (environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS_DEFAULT).rstrip("/")
    if environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return ImdsResult("disabled", endpoint, "AWS_EC2_METADATA_DISABLED=true")
    try:
        address = _imds_address(endpoint)
    except ValueError as exc:
        return ImdsResult(
            "error",
            endpoint,
            f"AWS_EC2_METADATA_SERVICE_ENDPOINT is not usable ({exc}): fix or unset it",
        )
    deadline = time.monotonic() + budget
    try:
        status, content_type, token = _request(
            address, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
            deadline,
        )  # fmt: skip
    except _Imds as exc:
        if exc.kind == "not_imds":
            return ImdsResult("not_imds", endpoint, exc.note)
        if exc.kind == "unreachable":
            return ImdsResult("unreachable", endpoint, exc.note)
        # Hop-limit symptom: the PUT's answer dies one hop short, a plain GET is refused at once.
        try:
            status, _, _ = _request(address, "GET", "/latest/meta-data/", {},
                                    time.monotonic() + 0.5)  # fmt: skip
        except _Imds:
            return ImdsResult("unreachable", endpoint, f"no answer within {budget:g} s")
        if status == 401:
            return ImdsResult("hop_limit", endpoint, "token PUT timed out, plain GET got 401")
        return ImdsResult("error", endpoint, f"token PUT timed out, plain GET got {status}")
    if _looks_like_a_page(content_type, token):
        return ImdsResult(
            "not_imds", endpoint, f"the token request got a web page (HTTP {status}), not IMDS"
        )
    if status != 200:
        return ImdsResult("error", endpoint, f"token PUT answered {status}")
    if not _TOKEN.match(token.strip()):
        # Never echoed: it may hold anything, including line breaks meant for a log.
        return ImdsResult(
            "not_imds", endpoint, f"the token answer ({len(token)} bytes) is not an IMDSv2 token"
        )
    headers = {"X-aws-ec2-metadata-token": token.strip()}
    result = ImdsResult("ok", endpoint)
    try:
        for path, attr, valid in (
            ("/latest/meta-data/instance-id", "instance_id", _INSTANCE_ID.match),
            ("/latest/meta-data/placement/region", "region", _valid_region),
        ):
            code, kind, body = _request(address, "GET", path, headers, deadline)
            if code != 200:
                continue
            value = body.strip()
            if _looks_like_a_page(kind, body) or not valid(value):
                return ImdsResult(
                    "not_imds",
                    endpoint,
                    f"{path} answered something that is not {attr.replace('_', ' ')} "
                    f"({len(body)} bytes)",
                )
            setattr(result, attr, value)
        code, _, body = _request(address, "GET", "/latest/meta-data/iam/info", headers, deadline)
        if code == 200:
            result.iam_state = "profile"
            try:
                info = _bounded_loads(body)
                arn = info.get("InstanceProfileArn") if isinstance(info, dict) else None
                result.instance_profile_arn = arn if isinstance(arn, str) else None
            except ValueError:
                result.instance_profile_arn = None
        elif code == 404:
            result.iam_state = "none"
    except _Imds as exc:
        result.note = f"metadata read incomplete: {exc.note}"
    return result


def _valid_region(value: str) -> bool:
    from ssmdiag.partitions import RegionError, validate_region

    try:
        validate_region(value)
    except RegionError:
        return False
    return True


ONPREM, EC2, ECS, CUSTOM = "OnPrem", "EC2", "ECS", "CustomIdentity"
# agent/appconfig/constants.go:293-295 and appconfig_parser.go:138-147, 206-218.
DEFAULT_CONSUMPTION_ORDER = (ONPREM, EC2, CUSTOM)
CONSUMPTION_ORDER_VALUES = frozenset({ONPREM, EC2, ECS, CUSTOM})
REGISTRATION_VAULT_KEY = "RegistrationKey"  # instance_info.go:50


@dataclass
class RegistrationRecord:
    """What one place says about the hybrid registration: its instance id and region only."""

    where: str  # the file (or the vault's directory)
    # ok (read; see `complete`) | missing | denied | invalid | error
    state: str
    instance_id: Optional[str] = None
    region: Optional[str] = None
    has_private_key: bool = False  # presence only: the key itself is never kept
    note: str = ""

    @property
    def complete(self) -> bool:
        """HasManagedInstancesCredentials (instance_info.go:94-99): the agent's OnPrem test."""
        return self.state == "ok" and bool(
            self.instance_id and self.region and self.has_private_key
        )

    def shown(self, *, vault: bool = False) -> dict[str, object]:
        shown: dict[str, object] = {
            "where": self.where,
            "state": self.state,
            "instance_id": self.instance_id,
            "region": self.region,
        }
        if vault:
            shown["complete"] = self.complete if self.state == "ok" else None
        shown["note"] = self.note or None
        return shown


@dataclass
class Identity:
    region: Optional[str] = None
    region_source: Optional[str] = None
    instance_id: Optional[str] = None
    instance_id_source: Optional[str] = None
    identity_type: Optional[str] = None  # the agent's: EC2 | OnPrem | ECS | CustomIdentity
    credential_source: Optional[str] = None  # EC2 | SSM | None (runtime identity file)
    hybrid: bool = False
    imds: Optional[ImdsResult] = None
    dhmc_credentials_file: bool = False
    problems: list[str] = field(default_factory=list)
    # How the agent chooses (Identity.ConsumptionOrder) and what each type gave.
    consumption_order: tuple[str, ...] = DEFAULT_CONSUMPTION_ORDER
    consumption_order_source: str = "default"  # default | agent-config | Agent.ContainerMode
    candidates: dict[str, str] = field(default_factory=dict)  # type -> taken / why not
    # The agent's identity comes from its own rules (True), or ssmdiag could not tell and
    # shows a fallback (the registration file, the runtime file) instead (False).
    verified: bool = True
    vault: Optional[RegistrationRecord] = None
    registration_file: Optional[RegistrationRecord] = None
    # The registration file disagrees with the vault: file-only (the vault holds no
    # registration) | differs | unverified (the vault could not be read)
    registration_conflict: Optional[str] = None
    runtime_identity_file: str = ""
    recorded_identity_type: Optional[str] = None  # what the agent wrote at its last start
    recorded_instance_id: Optional[str] = None


def _json_file(platform: Platform, path: str, problems: list[str]) -> Optional[dict[str, Any]]:
    read = platform.read_file(path)
    if read.outcome == "missing":
        return None
    if read.outcome != "ok":
        problems.append(f"{path}: {read.message}")
        return None
    try:
        data = _bounded_loads(read.text)
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


class _Key:
    """Stands in for the private key while parsing: only whether it is non-empty survives."""

    __slots__ = ("present",)

    def __init__(self, present: bool) -> None:
        self.present = present


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs, in order, duplicates kept."""


def _hide_key(pairs: list[tuple[str, Any]]) -> _Pairs:
    return _Pairs(
        (k, _Key(bool(v)) if k.lower() == "privatekey" and isinstance(v, str) else v)
        for k, v in pairs
    )


# instanceInfo (agent/managedInstances/registration/instance_info.go:31-40): all strings.
_INSTANCE_INFO_FIELDS = {
    name.lower(): name
    for name in (
        "instanceID",
        "region",
        "instanceType",
        "availabilityZone",
        "privateKey",
        "publicKey",
        "privateKeyType",
        "privateKeyCreatedDate",
    )
}


def _decode_instance_info(where: str, text: str) -> RegistrationRecord:
    """json.Unmarshal into instanceInfo, as loadServerInfo does (instance_info.go:209-232):
    field names match case-insensitively, the last duplicate wins, null leaves a field
    empty, and any error (not JSON, a non-string value) leaves the agent no registration."""
    try:
        pairs = _bounded_loads(text, object_pairs_hook=_hide_key)
    except ValueError as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "not JSON"
        return RegistrationRecord(where, "invalid", note=f"{where}: not valid JSON ({msg})")
    if pairs is None:
        return RegistrationRecord(where, "ok")
    if not isinstance(pairs, _Pairs):
        return RegistrationRecord(where, "invalid", note=f"{where}: not a JSON object")
    values: dict[str, Any] = {}
    for key, value in pairs:
        name = _INSTANCE_INFO_FIELDS.get(key.lower())
        if name is None or value is None:
            continue
        if not isinstance(value, (str, _Key)):
            return RegistrationRecord(where, "invalid", note=f"{where}: {name} is not a string")
        values[name] = value
    key = values.get("privateKey")
    instance_id, region = values.get("instanceID"), values.get("region")
    return RegistrationRecord(
        where,
        "ok",
        instance_id=instance_id if isinstance(instance_id, str) and instance_id else None,
        region=region if isinstance(region, str) and region else None,
        has_private_key=isinstance(key, _Key) and key.present,
    )


def read_vault(platform: Platform, data_dir: str) -> RegistrationRecord:
    """The hybrid registration as the agent reads it from its file-system vault."""
    join = ntpath.join if platform.family == "windows" else posixpath.join
    vault = join(data_dir, "Vault")  # fsvault.go:30 (DefaultDataStorePath/Vault)
    manifest_path = join(vault, "Manifest")  # fsvault.go:31, 173-176 (prefix "")
    read = platform.read_file(manifest_path)
    if read.outcome == "missing":
        # IsManifestExists false: the agent has no registration (instance_info.go:215-218).
        return RegistrationRecord(vault, "missing", note=f"{manifest_path} does not exist")
    if read.outcome == "denied":
        return RegistrationRecord(
            vault,
            "denied",
            note=f"{manifest_path}: permission denied (only root can read the agent's vault, "
            "where it keeps its hybrid registration)",
        )
    if read.outcome != "ok":
        return RegistrationRecord(vault, "error", note=f"{manifest_path}: {read.message}")
    try:
        manifest = _bounded_loads(read.text)
    except ValueError:
        manifest = None
    # map[string]string (fsvault.go:150-152): anything else fails, so no registration.
    if not isinstance(manifest, dict) or not all(isinstance(v, str) for v in manifest.values()):
        return RegistrationRecord(
            vault, "invalid", note=f"{manifest_path} is not a JSON map of names to files"
        )
    store = manifest.get(REGISTRATION_VAULT_KEY, "")
    if not store:  # fsvault.go:73-77
        return RegistrationRecord(
            vault, "missing", note=f"{manifest_path} lists no {REGISTRATION_VAULT_KEY}"
        )
    read = platform.read_file(store)
    if read.outcome == "missing":  # fsvault.go:79-81
        return RegistrationRecord(store, "missing", note=f"{store} does not exist")
    if read.outcome == "denied":
        return RegistrationRecord(
            store,
            "denied",
            note=f"{store}: permission denied (only root can read the agent's vault)",
        )
    if read.outcome != "ok":
        return RegistrationRecord(store, "error", note=f"{store}: {read.message}")
    return _decode_instance_info(store, read.text)


def read_registration_file(platform: Platform, path: str) -> RegistrationRecord:
    """`registration`: {"ManagedInstanceID", "Region"} (core/agent_parser.go:254-268)."""
    read = platform.read_file(path)
    if read.outcome in ("missing", "denied"):
        return RegistrationRecord(path, read.outcome, note=f"{path}: {read.message}")
    if read.outcome != "ok":
        return RegistrationRecord(path, "error", note=f"{path}: {read.message}")
    try:
        # Parsed like the vault so that a private key, if one was ever put here, is not kept.
        pairs = _bounded_loads(read.text, object_pairs_hook=_hide_key)
    except ValueError:
        return RegistrationRecord(path, "invalid", note=f"{path}: not valid JSON")
    if not isinstance(pairs, _Pairs):
        return RegistrationRecord(path, "invalid", note=f"{path}: not a JSON object")
    data = {k: v for k, v in pairs if isinstance(v, str)}
    return RegistrationRecord(
        path,
        "ok",
        instance_id=_get(data, "ManagedInstanceID", "instanceID"),
        region=_get(data, "Region"),
    )


def _consumption_order(agent_config: AgentConfigFacts) -> tuple[tuple[str, ...], str]:
    # Arrives filtered by the config reader; filtered again here so that a value from
    # anywhere still follows getStringListEnum (appconfig_parser.go:206-218).
    value = agent_config.settings.get("Identity.ConsumptionOrder")
    kept: tuple[str, ...] = ()
    if isinstance(value, (list, tuple)):
        kept = tuple(v for v in value if isinstance(v, str) and v in CONSUMPTION_ORDER_VALUES)
    order, source = (kept, "agent-config") if kept else (DEFAULT_CONSUMPTION_ORDER, "default")
    decoded = getattr(agent_config, "decoded", None)
    container_mode = decoded.get("Agent.ContainerMode") if decoded is not None else None
    if container_mode is True and order == DEFAULT_CONSUMPTION_ORDER:
        # Container mode with the default order: ECS only (identity_selector.go:58-75).
        return (ECS,), "Agent.ContainerMode"
    return order, source


def _custom_identity(agent_config: AgentConfigFacts) -> Optional[tuple[str, str]]:
    decoded = getattr(agent_config, "decoded", None)
    entries = decoded.get("Identity.CustomIdentities") if decoded is not None else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        instance, region = entry.get("InstanceID"), entry.get("Region")
        # Entries without InstanceID or Region are skipped (identity_creator.go:56-64);
        # the first one left is taken (identity_selector.go:119-129).
        if isinstance(instance, str) and instance and isinstance(region, str) and region:
            return instance, region
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
    ident.runtime_identity_file = paths.runtime_identity_file
    runtime = _json_file(platform, paths.runtime_identity_file, ident.problems)
    if runtime:
        ident.recorded_instance_id = _get(runtime, "InstanceId")
        ident.recorded_identity_type = _get(runtime, "IdentityType")
        ident.credential_source = _get(runtime, "CredentialSource")

    vault = ident.vault = read_vault(platform, paths.data_dir)
    registration = ident.registration_file = read_registration_file(
        platform, paths.registration_file
    )
    for record in (vault, registration):
        if record.state in ("denied", "invalid", "error"):
            ident.problems.append(record.note or f"{record.where}: {record.state}")
    ident.consumption_order, ident.consumption_order_source = _consumption_order(agent_config)

    for kind in ident.consumption_order:
        if kind == ONPREM:
            if vault.complete:
                ident.candidates[kind] = "taken: the hybrid registration in the agent's vault"
                take_instance(vault.instance_id, "hybrid-vault")
                take_region(vault.region, "hybrid-vault")
            elif vault.state == "denied" and registration.instance_id:
                # ssmdiag cannot see what the agent sees: show the file, marked unverified.
                ident.verified = False
                ident.candidates[kind] = "unverified: the vault is unreadable, the file says so"
                take_instance(registration.instance_id, "hybrid-registration-file")
                take_region(registration.region, "hybrid-registration-file")
            else:
                ident.candidates[kind] = (
                    "unknown: the agent's vault is unreadable"
                    if vault.state == "denied"
                    else f"not available: {vault_gap(vault)}"
                )
                continue
        elif kind == EC2:
            if ident.imds is None:
                ident.imds = query_imds(environ, imds_budget)
            imds = ident.imds
            if not (imds.instance_id and imds.region):
                why = imds.note or imds.state
                ident.candidates[kind] = f"not available: IMDS {imds.state} ({why})"
                continue
            ident.candidates[kind] = "taken: IMDS"
            take_instance(imds.instance_id, "imds")
            take_region(imds.region, "imds")
        elif kind == CUSTOM:
            custom = _custom_identity(agent_config)
            if custom is None:
                ident.candidates[kind] = (
                    "not available: no Identity.CustomIdentities entry with InstanceID and Region"
                )
                continue
            ident.candidates[kind] = "taken: Identity.CustomIdentities"
            take_instance(custom[0], "custom-identity")
            take_region(custom[1], "custom-identity")
        else:  # ECS: the task metadata endpoint, which ssmdiag does not query
            ident.candidates[kind] = "not checked by ssmdiag (ECS task metadata)"
            continue
        ident.identity_type = kind
        break

    if ident.identity_type is None and ident.recorded_instance_id:
        # The agent finds no identity now (identity_selector.go:98-99); show what it
        # recorded at its last start.
        ident.verified = False
        take_instance(ident.recorded_instance_id, "runtime-identity")
    take_region(environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION"), "environment")

    if registration.state == "ok" and registration.instance_id:
        if vault.complete:
            if (registration.instance_id, registration.region) != (vault.instance_id, vault.region):
                ident.registration_conflict = "differs"
        elif vault.state == "denied":
            ident.registration_conflict = "unverified"
        else:
            ident.registration_conflict = "file-only"
    ident.dhmc_credentials_file = platform.file_exists(paths.dhmc_credentials_file)
    ident.hybrid = ident.identity_type == ONPREM
    return ident


def vault_gap(vault: RegistrationRecord) -> str:
    """Why the agent's vault gives it no hybrid identity, in words for a report."""
    if vault.state == "ok":
        if not (vault.instance_id or vault.region or vault.has_private_key):
            return (
                "the registration in the agent's vault is empty "
                "(as `amazon-ssm-agent -register -clear` leaves it)"
            )
        missing = [
            name
            for name, present in (
                ("instance id", vault.instance_id),
                ("region", vault.region),
                ("private key", vault.has_private_key),
            )
            if not present
        ]
        return "the registration in the agent's vault has no " + " and no ".join(missing)
    if vault.state == "missing":
        return f"the agent's vault holds no registration ({vault.note})"
    return f"the agent's vault cannot be used ({vault.note or vault.state})"
