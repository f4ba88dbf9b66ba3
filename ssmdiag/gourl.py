"""Go's net/url.Parse, for the fields the agent reads (scheme, opaque, userinfo, host, path).

The agent parses `Mgs.Endpoint` with url.Parse and takes the host, else the path
(agent/session/config/config.go:95-114), so `host:8443` (scheme "host", opaque "8443")
gives it no ssmmessages endpoint at all. Ported from Go's src/net/url/url.go (Parse,
parse, getScheme, parseAuthority, parseHost, unescape, validOptionalPort,
validUserinfo) so ssmdiag reads each spelling exactly as the agent does.
"""

from __future__ import annotations

from dataclasses import dataclass

_HEX = "0123456789abcdefABCDEF"
_HOST_SUBDELIMS = set("!$&'()*+,;=:[]<>\"")
_USERINFO_OK = set("-._:~!$&'()*+,;=%@")


class GoURLError(ValueError):
    """url.Parse returned an error (the agent then ignores the value)."""


@dataclass(frozen=True)
class GoURL:
    scheme: str = ""
    opaque: str = ""
    has_user: bool = False
    host: str = ""  # host or host:port, as Go keeps it
    path: str = ""  # unescaped


def _alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _should_escape_host(c: str) -> bool:
    # url.go shouldEscape(c, encodeHost) for ASCII bytes.
    return not (_alnum(c) or c in "-_.~" or c in _HOST_SUBDELIMS)


def _unescape(text: str, host: bool) -> str:
    i = 0
    escaped = False
    while i < len(text):
        c = text[i]
        if c == "%":
            if i + 2 >= len(text) or text[i + 1] not in _HEX or text[i + 2] not in _HEX:
                raise GoURLError(f"invalid URL escape {text[i : i + 3]!r}")
            # In a host, %-encoding is only for non-ASCII bytes (and %25 for IPv6 zones).
            if host and int(text[i + 1], 16) < 8 and text[i : i + 3] != "%25":
                raise GoURLError(f"invalid URL escape {text[i : i + 3]!r}")
            escaped = True
            i += 3
            continue
        if host and c < "\x80" and _should_escape_host(c):
            raise GoURLError(f"invalid character {c!r} in host name")
        i += 1
    if not escaped:
        return text
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            out += text[i].encode("utf-8", "surrogatepass")
            i += 1
    return out.decode("utf-8", "replace")


def _valid_optional_port(port: str) -> bool:
    return port == "" or (port[0] == ":" and all("0" <= b <= "9" for b in port[1:]))


def _parse_host(host: str) -> str:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise GoURLError("missing ']' in host")
        if not _valid_optional_port(host[end + 1 :]):
            raise GoURLError(f"invalid port {host[end + 1 :]!r} after host")
        zone = host[:end].find("%25")
        if zone >= 0:
            return (
                _unescape(host[:zone], True)
                + _unescape_zone(host[zone:end])
                + _unescape(host[end:], True)
            )
    else:
        colon = host.rfind(":")
        if colon != -1 and not _valid_optional_port(host[colon:]):
            raise GoURLError(f"invalid port {host[colon:]!r} after host")
    return _unescape(host, True)


def _unescape_zone(text: str) -> str:
    # encodeZone: escapes may only produce bytes valid in a host (or a space).
    i = 0
    while i < len(text):
        if text[i] == "%":
            if i + 2 >= len(text) or text[i + 1] not in _HEX or text[i + 2] not in _HEX:
                raise GoURLError(f"invalid URL escape {text[i : i + 3]!r}")
            value = chr(int(text[i + 1 : i + 3], 16))
            if text[i : i + 3] != "%25" and value != " " and _should_escape_host(value):
                raise GoURLError(f"invalid URL escape {text[i : i + 3]!r}")
            i += 3
            continue
        if text[i] < "\x80" and _should_escape_host(text[i]):
            raise GoURLError(f"invalid character {text[i]!r} in host name")
        i += 1
    return _unescape(text, False)


def _get_scheme(raw: str) -> tuple[str, str]:
    for i, c in enumerate(raw):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-."):
            if i == 0:
                return "", raw
            continue
        if c == ":":
            if i == 0:
                raise GoURLError("missing protocol scheme")
            return raw[:i], raw[i + 1 :]
        return "", raw
    return "", raw


def go_url_parse(raw: str) -> GoURL:
    """url.Parse(raw): the URL, or GoURLError where Go returns an error."""
    text, _, fragment = raw.partition("#")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise GoURLError("invalid control character in URL")
    result = _parse(text)
    if fragment:
        _unescape(fragment, False)  # setFragment: only a bad %-escape is an error
    return result


def _parse(raw: str) -> GoURL:
    if raw == "*":
        return GoURL(path="*")
    scheme, rest = _get_scheme(raw)
    scheme = scheme.lower()
    rest = rest[:-1] if rest.endswith("?") and rest.count("?") == 1 else rest.partition("?")[0]
    if not rest.startswith("/"):
        if scheme:
            return GoURL(scheme=scheme, opaque=rest)
        if ":" in rest.partition("/")[0]:
            raise GoURLError("first path segment in URL cannot contain colon")
    host = ""
    has_user = False
    if rest.startswith("//") and (scheme or not rest.startswith("///")):
        authority, slash, tail = rest[2:].partition("/")
        rest = slash + tail
        at = authority.rfind("@")
        host = _parse_host(authority[at + 1 :] if at >= 0 else authority)
        if at >= 0:
            userinfo = authority[:at]
            if not all(_alnum(c) or c in _USERINFO_OK for c in userinfo):
                raise GoURLError("invalid userinfo")
            for part in userinfo.split(":", 1):
                _unescape(part, False)
            has_user = True
    return GoURL(scheme=scheme, has_user=has_user, host=host, path=_unescape(rest, False))
