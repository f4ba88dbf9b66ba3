"""Renderers: a report (or a feature table) to text. Pure functions of their input."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping
from typing import IO, Any

from ssmdiag.report import Report

WIDTH = 80
_STATUS_WIDTH = 6
_ID_WIDTH = 29
_COLOURS = {"ok": "32", "warn": "33", "fail": "31", "error": "35", "unknown": "35", "skip": "2"}


def use_colour(stream: IO[str], environ: Mapping[str, str] = os.environ) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _paint(text: str, status: str, colour: bool) -> str:
    if not colour or status not in _COLOURS:
        return text
    return f"\033[{_COLOURS[status]}m{text}\033[0m"


def _wrap(text: str, width: int) -> list[str]:
    # Never split at hyphens (`amazon-ssm-agent` must survive copy and paste); only a
    # token longer than a whole line (a long URL) is cut, to keep within 80 columns.
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)


def _rows(rows: list[tuple[str, str, str, str | None]], colour: bool) -> list[str]:
    """STATUS  ID  SUMMARY rows, summary and fix wrapped so no line passes WIDTH."""
    lines = []
    indent = " " * (_STATUS_WIDTH + 1 + _ID_WIDTH + 1)
    for status, ident, summary, fix in rows:
        label = status.upper().ljust(_STATUS_WIDTH)
        head = f"{_paint(label, status, colour)} {ident.ljust(_ID_WIDTH)} "
        if len(ident) > _ID_WIDTH:  # long id: summary starts on its own line
            lines.append(f"{_paint(label, status, colour)} {ident}")
            head = indent
        wrapped = _wrap(summary, WIDTH - len(indent)) or [""]
        lines.append(head + wrapped[0])
        lines += [indent + part for part in wrapped[1:]]
        if fix:
            # Fixes get nearly the full width: they hold commands to copy.
            fix_indent = " " * (_STATUS_WIDTH + 1)
            fix_lines = _wrap(fix, WIDTH - len(fix_indent) - 5)
            lines.append(fix_indent + "fix: " + fix_lines[0])
            lines += [fix_indent + "     " + part for part in fix_lines[1:]]
    return lines


def render_table(report: Report, colour: bool = False) -> str:
    host = report.host
    where = f"{host.hostname} · {host.os_name} {host.os_version}"
    header = textwrap.shorten(
        f"ssmdiag {report.tool_version} · {where} · {report.started_at}", WIDTH
    )
    rows = [
        (c.status.value, c.id, c.summary, c.remediation if c.status.value != "ok" else None)
        for c in report.checks
    ]
    counts: dict[str, int] = {}
    for check in report.checks:
        counts[check.status.value] = counts.get(check.status.value, 0) + 1
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    overall = _paint(report.status.value.upper(), report.status.value, colour)
    lines = [header, "", f"{'STATUS'.ljust(_STATUS_WIDTH)} {'CHECK'.ljust(_ID_WIDTH)} SUMMARY"]
    lines += _rows(rows, colour)
    lines += ["", f"overall: {overall} ({tally}) in {report.duration_ms} ms"]
    return "\n".join(lines) + "\n"


def render_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def render_features_table(data: Mapping[str, Any], colour: bool = False) -> str:
    lines = [
        f"SSM Agent {data['version']}",
        "",
        f"{'STATUS'.ljust(_STATUS_WIDTH)} {'FEATURE (minimum)'.ljust(_ID_WIDTH)} SUMMARY",
    ]
    rows = [
        (f["status"], f"{f['id']} ({f['minimum']})", f["summary"], f["remediation"])
        for f in data["features"]
    ]
    lines += _rows(rows, colour)
    return "\n".join(lines) + "\n"
