"""Session preferences: what the account's Session Manager settings ask of this node.

Two ways in, one result:
- `[session]` in ssmdiag's config (validated with the rest of it);
- `--session-preferences FILE`: the JSON that `aws ssm get-document --name
  SSM-SessionManagerRunShell --query Content` prints (a JSON string holding the
  document), the document itself (`{"schemaVersion": ..., "inputs": {...}}`), or just
  its `inputs`. Document inputs may be strings ("true") or booleans.

Unknown or ill-typed keys are configuration errors (exit 78), never guesses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Optional

from ssmdiag.policy import PolicyInputs


class PreferencesError(ValueError):
    """A preference that cannot be used; str() names the key and the problem."""


@dataclass(frozen=True)
class SessionPreferences:
    s3_bucket: Optional[str] = None
    s3_prefix: Optional[str] = None
    s3_encryption: bool = False  # the bucket must be encrypted (s3EncryptionEnabled)
    s3_bucket_owner: Optional[str] = None  # account id, when it is not the node's account
    log_group: Optional[str] = None
    log_group_encryption: bool = False  # cloudWatchEncryptionEnabled
    streaming: bool = False  # cloudWatchStreamingEnabled
    kms_key_id: Optional[str] = None
    run_as_enabled: bool = False
    run_as_user: Optional[str] = None
    source: Optional[str] = None  # where they were read; None: nothing set

    @property
    def any(self) -> bool:
        return any(
            getattr(self, f.name) not in (None, False, "")
            for f in fields(self)
            if f.name != "source"
        )

    def policy_inputs(self, region: Optional[str]) -> PolicyInputs:
        return PolicyInputs(
            region=region,
            s3_bucket=self.s3_bucket,
            s3_prefix=self.s3_prefix,
            cross_account_bucket=bool(self.s3_bucket_owner),
            log_group=self.log_group,
            kms_key=self.kms_key_id,
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _text(limit: int) -> Callable[[Any], Optional[str]]:
    def parse(value: Any) -> Optional[str]:
        if not isinstance(value, str):
            raise PreferencesError(f"must be a string, got {type(value).__name__}")
        value = value.strip()
        if len(value) > limit or any(ord(c) < 0x20 for c in value):
            raise PreferencesError(f"must be at most {limit} printable characters")
        return value or None

    return parse


def _flag(value: Any) -> bool:
    # SSM documents hold "true"/"false" strings; the config file holds booleans.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise PreferencesError(f"must be true or false, got {value!r}")


def _account(value: Any) -> Optional[str]:
    text = _text(12)(value)
    if text is not None and not (text.isascii() and text.isdigit() and len(text) == 12):
        raise PreferencesError(f"must be a 12-digit AWS account id, got {value!r}")
    return text


# ssmdiag config key -> (field, parser)
CONFIG_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "s3_bucket": ("s3_bucket", _text(63)),
    "s3_prefix": ("s3_prefix", _text(1024)),
    "s3_encryption": ("s3_encryption", _flag),
    "s3_bucket_owner": ("s3_bucket_owner", _account),
    "log_group": ("log_group", _text(512)),
    "log_group_encryption": ("log_group_encryption", _flag),
    "streaming": ("streaming", _flag),
    "kms_key_id": ("kms_key_id", _text(2048)),
    "run_as_enabled": ("run_as_enabled", _flag),
    "run_as_user": ("run_as_user", _text(256)),
}

# SSM-SessionManagerRunShell document input -> ssmdiag config key (None: known, unused).
DOCUMENT_INPUTS: dict[str, Optional[str]] = {
    "s3BucketName": "s3_bucket",
    "s3KeyPrefix": "s3_prefix",
    "s3EncryptionEnabled": "s3_encryption",
    "cloudWatchLogGroupName": "log_group",
    "cloudWatchEncryptionEnabled": "log_group_encryption",
    "cloudWatchStreamingEnabled": "streaming",
    "kmsKeyId": "kms_key_id",
    "runAsEnabled": "run_as_enabled",
    "runAsDefaultUser": "run_as_user",
    "idleSessionTimeout": None,
    "maxSessionDuration": None,
    "shellProfile": None,
}


def parse_preference(key: str, value: Any) -> Any:
    """One [session] key's value, checked as the config file checks it (PreferencesError)."""
    return CONFIG_KEYS[key][1](value)


def from_config_table(table: Any, source: str) -> SessionPreferences:
    if not isinstance(table, dict):
        raise PreferencesError("[session] must be a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        spec = CONFIG_KEYS.get(key)
        if spec is None:
            raise PreferencesError(
                f"session.{key}: unknown key; known keys in [session]: {', '.join(CONFIG_KEYS)}"
            )
        try:
            values[spec[0]] = spec[1](value)
        except PreferencesError as exc:
            raise PreferencesError(f"session.{key}: {exc}") from None
    return _checked(replace(SessionPreferences(), source=source, **values))


def from_document_text(text: str, source: str) -> SessionPreferences:
    """The preferences document, as `aws ssm get-document ... --query Content` prints it."""
    from ssmdiag.safeio import TooDeep, loads_json

    try:
        data: Any = loads_json(text, max_depth=16)
        if isinstance(data, str):  # --query Content prints the document as a JSON string
            data = loads_json(data, max_depth=16)
    except TooDeep as exc:
        raise PreferencesError(f"{source}: {exc}") from None
    except ValueError as exc:
        raise PreferencesError(f"{source}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PreferencesError(f"{source}: must be a JSON object (the document or its inputs)")
    inputs = data.get("inputs", data) if "schemaVersion" in data or "inputs" in data else data
    if not isinstance(inputs, dict):
        raise PreferencesError(f"{source}: 'inputs' must be an object")
    values: dict[str, Any] = {}
    for key, value in inputs.items():
        if key not in DOCUMENT_INPUTS:
            raise PreferencesError(
                f"{source}: inputs.{key}: unknown preference; known: {', '.join(DOCUMENT_INPUTS)}"
            )
        config_key = DOCUMENT_INPUTS[key]
        if config_key is None or value in ("", None):
            continue
        field_name, parse = CONFIG_KEYS[config_key]
        try:
            values[field_name] = parse(value)
        except PreferencesError as exc:
            raise PreferencesError(f"{source}: inputs.{key}: {exc}") from None
    return _checked(replace(SessionPreferences(), source=source, **values))


def _checked(prefs: SessionPreferences) -> SessionPreferences:
    if prefs.s3_encryption and not prefs.s3_bucket:
        raise PreferencesError("s3 encryption is required but no S3 bucket is named")
    if prefs.log_group_encryption and not prefs.log_group:
        raise PreferencesError("log group encryption is required but no log group is named")
    if prefs.streaming and not prefs.log_group:
        raise PreferencesError("streaming to CloudWatch needs a log group")
    if prefs.run_as_user and not prefs.run_as_enabled:
        raise PreferencesError("a Run As user is named but Run As is not enabled")
    return prefs


def dumps(prefs: SessionPreferences) -> str:
    return json.dumps(prefs.to_dict(), sort_keys=True)
