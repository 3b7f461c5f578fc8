"""The one logging setup of a Plop process, uvicorn's loggers included.

``PLOP_LOG_FORMAT=text`` (the default) writes one readable line per record,
``json`` one JSON object per line: ``time``, ``level``, ``logger``, ``message``,
then, when known, ``request_id``, ``operation``, ``user_id`` and ``duration_ms``,
the record's ``extra`` fields, and ``exc`` (the traceback) for an exception.

Those request fields come from ``LogContext``: ``RequestLog`` opens one per HTTP
request or WebSocket (its id is the client's ``X-Request-ID`` when that is a sane
token, a fresh one otherwise, and is sent back in ``X-Request-ID``) and logs one
line when a request is answered; ``LogFields`` adds the GraphQL operation's name
and the viewer's id. An extra field whose name speaks of a token, password,
secret or authorization is written as ``[redacted]``, and a request's query
string is never logged: neither a token nor a password reaches a log.

A record may carry what a client chose (the operation's name, the path, an error's
text): no such string can forge a line or a field. Every character that is not
printable (a newline, an escape, a bidi override) is written as its escape
(``\n``, ``\u001b``, ``\u202e``); in text, a field's value with a space, ``=`` or
``"`` is quoted, and a traceback's lines are indented.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"token|password|secret|authori[sz]ation|cookie", re.IGNORECASE)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# The attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's coloured copy of the message
}
# Loggers that would write raw protocol data at DEBUG. They stay at INFO whatever
# the level.
_QUIET_AT_DEBUG = ("websockets", "uvicorn.protocols", "aiokafka", "pymongo")

logger = logging.getLogger("plop.http")


@dataclass(slots=True)
class LogContext:
    """What is known of the request a record belongs to."""

    request_id: str | None = None
    operation: str | None = None
    user_id: str | None = None


_CONTEXT: ContextVar[LogContext | None] = ContextVar("plop_log_context", default=None)


def current_context() -> LogContext | None:
    """The context of the request being served in this task, if any."""
    return _CONTEXT.get()


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record's request fields and extra fields, secrets redacted."""
    fields: dict[str, Any] = {}
    if (context := _CONTEXT.get()) is not None:
        for name in ("request_id", "operation", "user_id"):
            if (value := getattr(context, name)) is not None:
                fields[name] = value
    for name, value in record.__dict__.items():
        if name in _RECORD_ATTRIBUTES or name.startswith("_"):
            continue
        fields[name] = REDACTED if _SECRET_NAME.search(name) else value
    return fields


_PLAIN_VALUE = re.compile(r'[^\s="\\]+')
TRACEBACK_INDENT = "  "


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(character: str) -> str:
    """A character that is not printable as JSON escapes it: ``\\n``, ``\\u001b``,
    ``\\u202e`` (valid inside a JSON string too)."""
    if (short := _SHORT_ESCAPES.get(character)) is not None:
        return short
    code = ord(character)
    if code > 0xFFFF:  # as a surrogate pair, as JSON writes it
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def printable(text: str) -> str:
    """The text with every character that is not printable written as its escape:
    one line, read as it is stored."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _text_value(value: object) -> str:
    """A field's value in a text line: as it is, or quoted when it could end the
    field early (a space, ``=``, a quote, a backslash) or is empty."""
    text = str(value)
    if _PLAIN_VALUE.fullmatch(text) and text.isprintable():
        return text
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{printable(quoted)}"'


class NoProtocolTrace(logging.Filter):
    """Drops the websockets library's DEBUG trace, whichever logger it is given
    (uvicorn hands it ``uvicorn.error``): it writes handshake headers and the start
    and end of every frame, and a connection_init frame carries a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno <= logging.DEBUG and f"{os.sep}websockets{os.sep}" in record.pathname
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # json escapes the controls below U+0020 only; the rest it leaves as they are.
        return printable(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``, the traceback on following lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = printable(super().formatMessage(record))
        fields = " ".join(f"{name}={_text_value(value)}" for name, value in _fields(record).items())
        return f"{line} {fields}" if fields else line

    def formatException(self, ei: Any) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    """A traceback below its record's line: each of its lines escaped and indented, so
    that none (an exception's message holds what it was given) reads as a record."""
    return "\n".join(TRACEBACK_INDENT + printable(line) for line in text.splitlines())


def logging_config(level: str, log_format: str) -> dict[str, Any]:
    """The dictConfig of the process: one handler on the root, every logger through it."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, not {log_format!r}")
    level = level.upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    quiet = "INFO" if level == "DEBUG" else level
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plop": {"()": formatter}},
        "filters": {"no_protocol_trace": {"()": NoProtocolTrace}},
        "handlers": {
            "plop": {
                "class": "logging.StreamHandler",
                "formatter": "plop",
                "filters": ["no_protocol_trace"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["plop"], "level": level},
        "loggers": {
            # uvicorn's own loggers write through the root handler, in the same format.
            **{
                name: {"handlers": [], "propagate": True, "level": level}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
            },
            **{name: {"level": quiet} for name in _QUIET_AT_DEBUG},
        },
    }


def configure_logging(level: str, log_format: str) -> dict[str, Any]:
    """Installs the process's logging setup, Python's warnings included, and returns
    it for uvicorn to install again (in a reloading server's child process too)."""
    config = logging_config(level, log_format)
    logging.config.dictConfig(config)
    logging.captureWarnings(True)
    return config


def _request_id(headers: Headers) -> str:
    given = headers.get("x-request-id", "")
    return given if _REQUEST_ID.fullmatch(given) else secrets.token_hex(8)


class RequestLog:
    """Gives each HTTP request and WebSocket a LogContext and a request id, and logs
    one line per answered HTTP request: method, path (no query), status, duration."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        context = LogContext(request_id=_request_id(Headers(scope=scope)))
        reset = _CONTEXT.set(context)
        try:
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)
            else:
                await self._serve(scope, receive, send, context)
        finally:
            _CONTEXT.reset(reset)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, context: LogContext) -> None:
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = context.request_id or ""
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logger.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )


class LogFields(SchemaExtension):
    """Adds the operation's name and the viewer's id to the request's log fields.

    An HTTP request has one operation: its context is filled in place, so the
    request's closing line carries them. A socket runs many operations at once:
    each gets a context of its own for its records.
    """

    def on_operation(self) -> Iterator[None]:
        outer = _CONTEXT.get()
        execution = self.execution_context
        own = outer is None or getattr(execution.context, "over_websocket", False)
        context = replace(outer) if own and outer is not None else (outer or LogContext())
        context.operation = execution.operation_name
        context.user_id = _viewer_id(execution.context) or context.user_id
        reset = _CONTEXT.set(context) if own else None
        try:
            yield
            context.operation = execution.operation_name
            context.user_id = _viewer_id(execution.context) or context.user_id
        finally:
            if reset is not None:
                # A hook resumed in another task cannot reset; that task ends with it.
                with suppress(ValueError):
                    _CONTEXT.reset(reset)

    def on_execute(self) -> Iterator[None]:
        # The document is parsed by now: an unnamed request's operation has its name.
        if (context := _CONTEXT.get()) is not None:
            context.operation = self.execution_context.operation_name
        yield


def _viewer_id(context: object) -> str | None:
    viewer = getattr(context, "viewer", None)
    return None if viewer is None else str(getattr(viewer, "id", None))
