"""How the engine's own log records are written: readable text, or one JSON object a line.

``ENGINE_LOG_FORMAT=text`` (the default) keeps the classic
``time LEVEL logger: message`` lines; ``json`` writes every record of the
engine's loggers and of uvicorn's error log as one JSON object on stderr::

    {"ts":"2025-01-31T12:00:00.123Z","level":"info","logger":"engine","msg":"engine stopped"}

with ``exc`` (the formatted traceback) when the record carries one. The access
log (``engine.accesslog``) is separate: it goes to stdout and does not pass
through :mod:`logging`.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))  # no format spec per stamp


class Stamp:
    """RFC 3339 UTC timestamps with milliseconds; the seconds part is formatted once a second."""

    __slots__ = ("_cached",)

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, now: float) -> str:
        second = int(now)
        cached_second, prefix = self._cached  # one tuple: threads never see half an update
        if second != cached_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cached = (second, prefix)
        return prefix + _MILLIS[int((now - second) * 1000)]


def _printable(value: Any) -> Any:
    """A string orjson can encode (lone surrogates, e.g. from a decoded token, escaped)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def json_line(entry: dict[str, Any]) -> bytes:
    """``entry`` as one JSON line (newline included); a string orjson refuses is escaped."""
    try:
        return orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        clean = {key: _printable(value) for key, value in entry.items()}
        return orjson.dumps(clean, option=orjson.OPT_APPEND_NEWLINE)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, and exc / stack when present."""

    def __init__(self) -> None:
        super().__init__()
        self._stamp = Stamp()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._stamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json_line(entry)[:-1].decode("utf-8")  # the handler adds its own newline


def configure(level: str, fmt: str) -> None:
    """Set up the root logger on stderr in ``fmt`` (text or json) at ``level``.

    Raises ValueError for an unknown format or level, so the CLI can say which setting is bad.
    """
    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise ValueError(f"ENGINE_LOG_FORMAT={fmt!r}: expected one of {', '.join(FORMATS)}")
    name = level.strip().upper()
    if not isinstance(logging.getLevelName(name), int):
        raise ValueError(f"ENGINE_LOG_LEVEL={level!r}: expected DEBUG, INFO, WARNING or ERROR")
    if fmt == "text":
        logging.basicConfig(level=name, format=TEXT_FORMAT)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=name, handlers=[handler])


def is_json(fmt: str) -> bool:
    return fmt.strip().lower() == "json"
