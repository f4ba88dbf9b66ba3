"""One redaction rule for every output path: the table, JSON, stderr and every sink.

What ssmdiag prints comes partly from files and environments nobody vouches for: an
endpoint URL may carry `user:password@`, a proxy variable credentials, a broken IMDS
answer a token. Events go to CloudWatch, so nothing of that kind may pass:

- userinfo in any URL (`scheme://user:pass@host` -> `scheme://***@host`), and a bare
  `user:pass@host` (proxy variables are often written without a scheme);
- AWS access key ids (AKIA/ASIA...);
- the value of any field named like a secret (password, secret, token, authorization,
  private key, session or access key).
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

MASK = "***"
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@'\"<>]*@")
_BARE_USERINFO = re.compile(r"(?<![\w/@])[^\s/:@'\"<>,=()]+:[^\s/@'\"<>]*@(?=[\w\[])")
_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
_SECRET_NAME = re.compile(
    r"(?i)(?:^|[_\-.])(password|passwd|secret|token|authorization|private_?key|"
    r"secret_?access_?key|session_?token|access_?key(?:_?id)?)$"
)


def redact_text(text: str) -> str:
    if "@" in text:
        text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
        text = _BARE_USERINFO.sub(f"{MASK}@", text)
    if "AKIA" in text or "ASIA" in text:
        text = _ACCESS_KEY_ID.sub(MASK, text)
    return text


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of value (str, list, tuple, dict: any nesting) with secrets masked."""
    if depth > 64:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            key: MASK
            if isinstance(key, str) and is_secret_name(key) and item not in (None, "", False)
            else redact(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redact(item, depth + 1) for item in value)
    return value


def redact_processor(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Log processor (ssmdiag.log): every field of every event passes the rule."""
    redacted: MutableMapping[str, Any] = redact(dict(event))
    return redacted
