"""Log setup: one line per record, each carrying the request id of the request it belongs to, as
text or as one JSON object per line (`--log-format json`, `[server] log_format`).

A request's facts (its agent, model, tokens, time to first token, …) are gathered while it runs in
a `RequestFacts` of its own and written on its one access line at the end. Never a key, and no
message text: the access line holds only what is listed in `RequestFacts`.
"""

from __future__ import annotations

import contextvars
import logging
import threading
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
    global _written_by
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter(_TEXT_FORMAT))
    root = logging.getLogger("chatspark")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    _written_by = _AccessWriter(handler, log_format)
    if log_format == "json":
        for name in ("uvicorn", "uvicorn.error"):
            logger = logging.getLogger(name)
            logger.handlers[:] = [handler] if name == "uvicorn" else []
            logger.propagate = name != "uvicorn"


_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
access_log = logging.getLogger("chatspark.access")


def access(method: str, path: str, status: int, latency_ms: float, fields: dict[str, Any]) -> None:
    """Writes a request's one access line: `METHOD path status 1.2ms` and its facts (`fields`).

    When the line's only destination is the handler `configure` installed (as under `serve`), it is
    formatted and written here, byte for byte what that handler's formatter would write, without a
    `LogRecord`, the caller lookup and the formatter's per-line `strftime` (≈ half a line's CPU).
    Anywhere else (a test's capturing handler, a handler someone added) it goes through `logging`."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    writer = _written_by
    if writer is not None and writer.is_sole_destination():
        writer.write(method, path, status, latency_ms, fields)
        return
    access_log.info("%s %s %s %.1fms", method, path, status or "-", latency_ms, extra={"fields": fields})


class _AccessWriter:
    """The access line's fast path: the line `configure`'s handler would write, written directly."""

    def __init__(self, handler: logging.StreamHandler[Any], log_format: LogFormat) -> None:
        self.handler = handler
        self.json = log_format == "json"
        self._second = -1
        self._stamp = ""
        self._encode = msgspec.json.Encoder().encode

    def is_sole_destination(self) -> bool:
        """True while nothing else would see the record: no handler on `chatspark.access`, ours alone
        on `chatspark`, no propagation past it, and no filter that might change or drop the line."""
        root = access_log.parent
        return (
            not access_log.handlers and not access_log.filters and access_log.propagate and root is not None
            and root.handlers == [self.handler] and not root.propagate and not root.filters
            and len(self.handler.filters) == 1 and not root.disabled and not access_log.disabled
            and self.handler.level <= logging.INFO
        )

    def write(self, method: str, path: str, status: int, latency_ms: float, fields: dict[str, Any]) -> None:
        now = time.time()
        second = int(now)
        millis = int((now - second) * 1000)
        if second != self._second:  # one strftime per second, not per line
            self._second = second
            self._stamp = (
                datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S") if self.json
                else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            )
        message = f"{method} {path} {status or '-'} {latency_ms:.1f}ms"
        if self.json:
            line = self._encode({
                "ts": f"{self._stamp}.{millis:03d}Z", "level": "info", "logger": "chatspark.access",
                "request_id": request_id.get(), "msg": message, **fields,
            }).decode()
        else:
            line = f"{self._stamp},{millis:03d} INFO chatspark.access [{request_id.get()}] {message}"
            extra = " ".join(f"{k}={v}" for k, v in fields.items() if k not in _IN_TEXT_ALREADY)
            if extra:
                line += " " + extra
        handler = self.handler
        with handler.lock or _NO_LOCK:
            try:
                handler.stream.write(line + handler.terminator)
                handler.flush()
            except Exception:  # noqa: BLE001 — as logging.Handler.handleError: a lost line never fails a request
                handler.handleError(logging.makeLogRecord({"msg": line}))


_NO_LOCK = threading.Lock()
_written_by: _AccessWriter | None = None
