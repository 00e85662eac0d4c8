"""Structured operational logging, one JSON object a line, every outside value sanitised.

Shared by the agent and the appliance; `SampledLog` keeps floods of rejected requests
from filling the disk."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TextIO

from kernel.sanitise import sanitise_and_redact, sanitise_fields, sanitise_text

MAX_MESSAGE_CHARS = 2048
MAX_EXC_CHARS = 8192
MAX_LINE_CHARS = 65536  # beyond this, fields are rendered again with a smaller cap
SHORT_FIELD_CHARS = 256
STANDARD_KEYS = ("ts", "level", "logger", "event", "msg", "exc", "stack")
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
SAMPLE_WINDOW_SECONDS = 60.0


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # bad %-args must not lose the record
        return f"{_safe_repr(record.msg)} % {_safe_repr(record.args)}"


def _traceback_tail(text: str) -> str:
    """Keep the end of a long traceback: the last frames and the error matter most."""
    if len(text) > MAX_EXC_CHARS:
        text = f"[…{len(text) - MAX_EXC_CHARS} chars] {text[-MAX_EXC_CHARS:]}"
    return sanitise_and_redact(text, MAX_EXC_CHARS + 512)


class JsonLineFormatter(logging.Formatter):
    """Render a record as one line of JSON: ts, level, logger, event, msg, the record's
    `fields`, and `exc` when there is exception info. Everything is sanitised."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._render(record)
        except Exception as error:  # a log call must never raise
            return json.dumps(
                {
                    "ts": _timestamp(time.time()),
                    "level": "error",
                    "logger": "redflag.logs",
                    "event": "log.format_failed",
                    "msg": sanitise_text(repr(error), SHORT_FIELD_CHARS),
                }
            )

    def _render(self, record: logging.LogRecord) -> str:
        head: dict[str, object] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": sanitise_text(record.name, 128),
            "event": sanitise_text(getattr(record, "event", None) or "log", 128),
            "msg": sanitise_and_redact(_message(record), MAX_MESSAGE_CHARS),
        }
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            head["exc"] = _traceback_tail(record.exc_text)
        if record.stack_info:
            head["stack"] = _traceback_tail(self.formatStack(record.stack_info))
        raw_fields = getattr(record, "fields", None)
        line = self._dump(head, raw_fields, MAX_MESSAGE_CHARS)
        if len(line) > MAX_LINE_CHARS:
            line = self._dump(head, raw_fields, SHORT_FIELD_CHARS)
        return line

    def _dump(self, head: dict[str, object], raw_fields: object, max_chars: int) -> str:
        entry = dict(head)
        for key, value in _clean_fields(raw_fields, max_chars).items():
            entry[f"field_{key}" if key in STANDARD_KEYS else key] = value
        return json.dumps(entry, separators=(",", ":"), default=_unserialisable)


def _clean_fields(raw_fields: object, max_chars: int) -> dict[str, object]:
    if raw_fields is None:
        return {}
    if not isinstance(raw_fields, Mapping):
        raw_fields = {"fields": raw_fields}
    try:
        return sanitise_fields(raw_fields, max_chars)
    except Exception as error:  # e.g. a mapping whose items() raises
        return {"fields_error": sanitise_text(repr(error), SHORT_FIELD_CHARS)}


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _unserialisable(value: object) -> str:
    return sanitise_and_redact(_safe_repr(value), SHORT_FIELD_CHARS)


def log_event(
    logger: logging.Logger,
    level: int,
    event: str,
    message: str = "",
    *,
    exc_info: BaseException | bool | None = None,
    **fields: object,
) -> None:
    """Log `message` with a dotted `event` name and structured `fields`, e.g.
    `log_event(logger, logging.INFO, "agent.registered", agent_id=agent.id)`."""
    logger.log(
        level,
        message,
        exc_info=exc_info,
        extra={"event": event, "fields": fields},
        stacklevel=2,
    )


def _parse_level(level: str) -> int:
    levels = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
    levels |= {"error": logging.ERROR, "critical": logging.CRITICAL}
    try:
        return levels[level.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(levels)}") from None


QUIET_LIBRARY_LOGGERS = ("httpx", "httpcore")


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log record, uvicorn's included, through one JSON-lines handler on
    `stream` (stderr by default). Calling it again replaces the previous setup."""
    root = logging.getLogger()
    threshold = _parse_level(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root.addHandler(handler)
    root.setLevel(threshold)
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)
    # httpx logs every request at INFO: one line a check-in is noise, not news. Its
    # warnings still come through; at DEBUG, everything does.
    for name in QUIET_LIBRARY_LOGGERS:
        quiet = logging.NOTSET if threshold <= logging.DEBUG else logging.WARNING
        logging.getLogger(name).setLevel(quiet)


@dataclass
class _Window:
    started: float
    emitted: int = 0
    suppressed: int = 0
    level: int = logging.INFO


class SampledLog:
    """Log at most `per_key_per_minute` records per key in each 60 s window and count
    the rest; the count is logged as one `log.suppressed` record when the key's next
    window opens, when the key is evicted, or on `flush()`. Use low-cardinality keys
    (a reject reason, not a client address): the total is bounded per key only."""

    def __init__(
        self,
        logger: logging.Logger,
        per_key_per_minute: int = 10,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
    ) -> None:
        self._logger = logger
        self._limit = per_key_per_minute
        self._clock = clock
        self._max_keys = max_keys
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self._lock = threading.Lock()

    def log(self, key: str, level: int, event: str, message: str = "", **fields: object) -> bool:
        """Log the record unless `key` used up its window; return whether it was logged."""
        key = sanitise_text(key, 128)
        with self._lock:
            finished = self._open_window(key)
            window = self._windows[key]
            allowed = window.emitted < self._limit
            if allowed:
                window.emitted += 1
            else:
                window.suppressed += 1
                window.level = level
        for old_key, old_window in finished:
            self._summarise(old_key, old_window)
        if allowed:
            log_event(self._logger, level, event, message, **fields)
        return allowed

    def flush(self) -> None:
        """Log the pending suppressed counts now, e.g. at shutdown."""
        with self._lock:
            pending = [(key, replace(w)) for key, w in self._windows.items() if w.suppressed]
            for key, _ in pending:
                self._windows[key].suppressed = 0
        for key, window in pending:
            self._summarise(key, window)

    def _open_window(self, key: str) -> list[tuple[str, _Window]]:
        """Make sure `key` has a current window; return finished windows to summarise."""
        now = self._clock()
        finished: list[tuple[str, _Window]] = []
        window = self._windows.get(key)
        if window is not None and now - window.started < SAMPLE_WINDOW_SECONDS:
            return finished
        if window is not None:
            finished.append((key, window))
            del self._windows[key]
        self._windows[key] = _Window(started=now)
        while len(self._windows) > self._max_keys:
            finished.append(self._windows.popitem(last=False))
        return finished

    def _summarise(self, key: str, window: _Window) -> None:
        if window.suppressed:
            log_event(
                self._logger,
                window.level,
                "log.suppressed",
                f"suppressed {window.suppressed} similar log records",
                key=key,
                suppressed=window.suppressed,
                window_seconds=SAMPLE_WINDOW_SECONDS,
            )


__all__ = ["JsonLineFormatter", "SampledLog", "configure_logging", "log_event"]
