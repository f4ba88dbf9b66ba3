"""Structured logging in a few lines: processors in a pipeline, then an output.

A processor is a plain callable ``(logger, method_name, event_dict) -> event_dict``
(the shape structlog made common): ``redact_processor`` and the daemon's own
processors plug in unchanged. A `BoundLogger` has ``debug``/``info``/``warning``/
``error``/``critical``; each call builds the event dict (the keyword fields, then
``event``), runs the processors and hands the result to the wrapped logger's
method of the same name: a rendered line as one argument, a dict as keywords.

Two pipelines use it. The daemon's health events end in the sinks
(ssmdiag.daemon.event_logger). The diagnostics of every command (`get_logger`)
go to stderr, configured once by `configure_logging`: JSON lines or console
text; stdout carries only the report, so `ssmdiag check --format json | jq`
stays clean.

Written here rather than imported: structlog imports asyncio, and dropping it took
3 MB off the daemon's steady RSS (bench/daemon.py: 33.9 -> 30.9 MB) and its import
off every command's start-up.
"""

from __future__ import annotations

import datetime
import json
import sys
import threading
from collections.abc import MutableMapping, Sequence
from typing import Any, Callable, Optional

from ssmdiag.redact import redact_processor

Processor = Callable[[Any, str, MutableMapping[str, Any]], Any]

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}

_UTC = datetime.timezone.utc
_CONSOLE_LEVEL_WIDTH = 9  # len("exception"), as structlog's console renderer pads it
_CONSOLE_EVENT_WIDTH = 30
_CONSOLE_QUOTED = frozenset(" \t=\r\n\"'")
_NOTHING = object()


def add_log_level(
    _logger: Any, method_name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event["level"] = method_name
    return event


def timestamper(key: str = "timestamp") -> Processor:
    """ISO 8601 in UTC with a Z: ``2024-05-01T12:00:00.123456Z``."""

    def stamp(
        _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event[key] = datetime.datetime.now(_UTC).isoformat().replace("+00:00", "Z")
        return event

    return stamp


def format_exc_info(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``exc_info=True`` (or an exception) becomes an ``exception`` traceback text."""
    value = event.pop("exc_info", None)
    if not value:
        return event
    if isinstance(value, BaseException):
        exc: Optional[BaseException] = value
    elif isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        exc = value[1]
    else:
        exc = sys.exc_info()[1]
    if exc is not None:
        import traceback  # only when there is a traceback to tell

        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        event["exception"] = text[:-1] if text.endswith("\n") else text
    return event


def _json_default(value: Any) -> Any:
    return repr(value)


def render_json(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
    return json.dumps(event, default=_json_default)


def _console_value(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if _CONSOLE_QUOTED.intersection(value) else value
    return repr(value)


def render_console(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
    """``<ts> [level    ] event                          key=value ...`` (keys sorted)."""
    stack = event.pop("stack", None)
    exception = event.pop("exception", None)
    parts: list[str] = []
    stamp = event.pop("timestamp", _NOTHING)
    if stamp is not _NOTHING:
        parts.append(str(stamp))
    level = event.pop("level", _NOTHING)
    if level is not _NOTHING:
        parts.append(f"[{str(level).ljust(_CONSOLE_LEVEL_WIDTH)}]")
    name = event.pop("event", _NOTHING)
    if name is not _NOTHING:
        parts.append(str(name).ljust(_CONSOLE_EVENT_WIDTH))
    for key in ("logger", "logger_name"):
        value = event.pop(key, _NOTHING)
        if value is not _NOTHING:
            parts.append(f"[{value}]")
    parts.extend(f"{key}={_console_value(event[key])}" for key in sorted(event))
    line = " ".join(part for part in parts if part).rstrip(" ")
    if stack is not None:
        line += "\n" + str(stack)
        if exception is not None:
            line += "\n\n" + "=" * 79 + "\n"
    if exception is not None:
        line += "\n" + str(exception)
    return line


class BoundLogger:
    """Runs each event through the processors, then calls the logger's method.

    Calls below `min_level` return at once, before any processor runs.
    """

    def __init__(
        self, logger: Any, processors: Sequence[Processor], min_level: str = "debug"
    ) -> None:
        self._logger = logger
        self._processors = tuple(processors)
        self._min_level = LEVELS[min_level]

    def _log(self, method: str, event: str, fields: dict[str, Any]) -> Any:
        if LEVELS[method] < self._min_level:
            return None
        fields["event"] = event
        result: Any = fields
        for processor in self._processors:
            result = processor(self._logger, method, result)
        if isinstance(result, (str, bytes, bytearray)):
            return getattr(self._logger, method)(result)
        return getattr(self._logger, method)(**result)

    def debug(self, event: str, **fields: Any) -> Any:
        return self._log("debug", event, fields)

    def info(self, event: str, **fields: Any) -> Any:
        return self._log("info", event, fields)

    def warning(self, event: str, **fields: Any) -> Any:
        return self._log("warning", event, fields)

    def error(self, event: str, **fields: Any) -> Any:
        return self._log("error", event, fields)

    def critical(self, event: str, **fields: Any) -> Any:
        return self._log("critical", event, fields)


class _Stderr:
    """One line per event on the current sys.stderr (none under a Windows service)."""

    _lock = threading.Lock()

    def _write(self, line: str) -> None:
        stream = sys.stderr
        if stream is None:
            return
        with self._lock:
            stream.write(line + "\n")
            stream.flush()

    debug = info = warning = error = critical = _write


def _stderr_logger(fmt: str, level: str) -> BoundLogger:
    return BoundLogger(
        _Stderr(),
        [
            add_log_level,
            timestamper(),
            format_exc_info,
            redact_processor,
            render_json if fmt == "json" else render_console,
        ],
        level,
    )


# Until configure_logging: console text at info, on stderr (never stdout: the report's).
_configured = [_stderr_logger("console", "info")]
_settings = [("console", "info")]  # what _configured was built from, for the check worker


class _Diagnostics:
    """What `get_logger` returns: follows the latest `configure_logging`."""

    def __init__(self, name: str) -> None:
        self.name = name  # for the reader of the code; not part of the output

    def debug(self, event: str, **fields: Any) -> Any:
        return _configured[0].debug(event, **fields)

    def info(self, event: str, **fields: Any) -> Any:
        return _configured[0].info(event, **fields)

    def warning(self, event: str, **fields: Any) -> Any:
        return _configured[0].warning(event, **fields)

    def error(self, event: str, **fields: Any) -> Any:
        return _configured[0].error(event, **fields)

    def critical(self, event: str, **fields: Any) -> Any:
        return _configured[0].critical(event, **fields)


def get_logger(name: str) -> _Diagnostics:
    """A stderr diagnostics logger; usable at import time, configured later."""
    return _Diagnostics(name)


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    """stderr diagnostics from now on: ``fmt`` console or json, at ``level`` and above."""
    _configured[0] = _stderr_logger(fmt, level)
    _settings[0] = (fmt, level)


def logging_settings() -> tuple[str, str]:
    """The (format, level) of the latest `configure_logging`: a child process repeats it."""
    return _settings[0]
