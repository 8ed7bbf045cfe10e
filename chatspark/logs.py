"""Log setup: one line per record, each carrying the request id of the request it belongs to, as
text or as one JSON object per line (`--log-format json`, `[server] log_format`).

A request's facts (its agent, model, tokens, time to first token, …) are gathered while it runs in
a `RequestFacts` of its own and written on its one access line at the end. Never a key, and no
message text: the access line holds only what is listed in `RequestFacts`.
"""

from __future__ import annotations

import contextvars
import logging
import time
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

LogFormat = Literal["text", "json"]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestFacts(msgspec.Struct, kw_only=True):
    """What one request's access line says, filled in by the code the request runs through. A task
    started by the request (an idempotent turn's runner) shares it: contexts copy the reference."""

    started: float = msgspec.field(default_factory=time.perf_counter)
    route: str = "-"
    agent: int | None = None
    model: str | None = None
    ttft_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    idempotent: bool = False
    replayed: bool = False
    client_disconnected: bool = False
    traceparent: str | None = None


_facts: contextvars.ContextVar[RequestFacts | None] = contextvars.ContextVar("request_facts", default=None)


def facts() -> RequestFacts | None:
    """The running request's facts (None outside a request: background workers, the CLI)."""
    return _facts.get()


def begin_request(rid: str, facts: RequestFacts) -> tuple[contextvars.Token[str], contextvars.Token[Any]]:
    return request_id.set(rid), _facts.set(facts)


def end_request(tokens: tuple[contextvars.Token[str], contextvars.Token[Any]]) -> None:
    request_id.reset(tokens[0])
    _facts.reset(tokens[1])


def client_disconnected() -> None:
    current = _facts.get()
    if current is not None:
        current.client_disconnected = True


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request id, message, and a record's `fields`
    (the access line's facts) as top-level keys."""

    _encoder = msgspec.json.Encoder()

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return self._encoder.encode(line).decode()


class _TextFormatter(logging.Formatter):
    """The classic line, the access line's facts appended as `key=value`."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items() if k not in _IN_TEXT_ALREADY)
        return text


_IN_TEXT_ALREADY = {"method", "path", "status", "latency_ms"}


def configure(level: str = "info", log_format: LogFormat = "text") -> None:
    """Chatspark's loggers, and in JSON mode uvicorn's too (so every line of the process parses)."""
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger("chatspark")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    if log_format == "json":
        for name in ("uvicorn", "uvicorn.error"):
            logger = logging.getLogger(name)
            logger.handlers[:] = [handler] if name == "uvicorn" else []
            logger.propagate = name != "uvicorn"
