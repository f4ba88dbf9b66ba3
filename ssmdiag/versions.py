"""SSM Agent version numbers: parsed strictly, compared field by field as integers.

Our own parser rather than PEP 440 (`packaging`): agent versions are dotted
integers, and PEP 440 would quietly accept things no agent prints (`3.0a1`,
`1!2.0`) and treat a deb revision as a post-release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

# 3 or 4 dotted integers; optional leading "v"; optional deb revision "-1"/"-1ubuntu2".
# ASCII only (re.ASCII: no full-width or other Unicode digits) and \Z (no trailing newline).
_VERSION_RE = re.compile(
    r"v?(?P<fields>\d{1,9}(?:\.\d{1,9}){2,3})(?:-[0-9A-Za-z.+~]{1,32})?\Z", re.ASCII
)


class VersionError(ValueError):
    """A string that is not an SSM Agent version. The message says what was seen."""


@total_ordering
@dataclass(frozen=True)
class AgentVersion:
    fields: tuple[int, int, int, int]

    @classmethod
    def parse(cls, text: str) -> AgentVersion:
        if not isinstance(text, str):
            raise VersionError(f"expected a version string, got {type(text).__name__}")
        match = _VERSION_RE.match(text.strip())
        if match is None:
            shown = text.strip()[:60] or "(empty)"
            raise VersionError(
                f"unparseable SSM Agent version {shown!r}: expected dotted integers "
                "such as 3.3.987.0"
            )
        numbers = [int(part) for part in match.group("fields").split(".")]
        # Legacy three-part versions (2.0.672) compare as if the fourth field were 0.
        while len(numbers) < 4:
            numbers.append(0)
        return cls((numbers[0], numbers[1], numbers[2], numbers[3]))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, AgentVersion):
            return NotImplemented
        return self.fields < other.fields

    def __str__(self) -> str:
        return ".".join(str(part) for part in self.fields)


def parse_version(text: str) -> AgentVersion:
    return AgentVersion.parse(text)
