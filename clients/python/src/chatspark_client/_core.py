"""What the sync and async clients share: one request described as data (`Call`), the retry
policy, the SSE decoder, pages, and the headers every request carries. No I/O here."""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from chatspark_client.errors import ChatsparkError, StreamingError, error_from_event, error_from_response
from chatspark_client.types import ChatEvent, chat_event

T = TypeVar("T")
VERSION = "0.1.0"
DEFAULT_BASE_URL = "http://localhost:8000"
API_PREFIX = "/api/v1"


@dataclass(frozen=True)
class Call:
    """One API request: what to send and how to read the answer.

    `idempotency_key`: sent as `Idempotency-Key`, the same on every retry of this call.
    `resendable`: whether it may be sent again after a network failure that left its fate unknown
    (GET and DELETE; a POST only where the server honours its Idempotency-Key). A refused connection
    (nothing sent) and a retryable error answer (nothing done) are retried either way."""

    method: str
    path: str
    parse: Callable[[Any, httpx.Headers], Any] = lambda data, headers: data
    params: dict[str, Any] | None = None
    json: Any = None
    idempotency_key: str | None = None
    resendable: bool = False
    page_key: str | None = None  # a list answer: the key of its items


def new_idempotency_key() -> str:
    return f"cspy_{uuid.uuid4().hex}"


def query(**params: Any) -> dict[str, Any] | None:
    found = {k: v for k, v in params.items() if v is not None}
    return found or None


def body(**fields: Any) -> dict[str, Any]:
    """A JSON body from keyword arguments: None left out, snake_case names sent in camelCase."""
    return {camel(k): v for k, v in fields.items() if v is not None}


def camel(name: str) -> str:
    if name == "ga_id":
        return "gaID"
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def agent_path(agent_id: int | str) -> str:
    return f"/agents/{agent_id}"


@dataclass
class Settings:
    api_key: str = field(repr=False)  # never in a repr, a log line or a traceback's locals display
    base_url: str
    max_retries: int
    max_retry_delay: float
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(cls, api_key: str | None, base_url: str | None, max_retries: int, max_retry_delay: float,
             headers: dict[str, str] | None) -> Settings:
        key = api_key or os.environ.get("CHATSPARK_API_KEY")
        if not key:
            raise ValueError("an API key is required: pass api_key= or set CHATSPARK_API_KEY")
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        url = (base_url or os.environ.get("CHATSPARK_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        # Chatspark documents its base URL with the version path; both spellings work here.
        url = url.removesuffix(API_PREFIX)
        return cls(api_key=key, base_url=url, max_retries=max_retries, max_retry_delay=max_retry_delay,
                   headers=dict(headers or {}))

    def url(self, path: str) -> str:
        return f"{self.base_url}{API_PREFIX}{path}"

    def request_headers(self, call: Call, last_event_id: int | None = None) -> dict[str, str]:
        headers = {"authorization": f"Bearer {self.api_key}", "user-agent": f"chatspark-client-python/{VERSION}",
                   "accept": "application/json", **self.headers}
        if call.idempotency_key is not None:
            headers["idempotency-key"] = call.idempotency_key
        if last_event_id is not None:
            headers["last-event-id"] = str(last_event_id)
        return headers

    def retry_delay(self, attempt: int, error: ChatsparkError | None) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None: give up. `error` None: a network
        failure. A `Retry-After` is honoured as sent, unless it is longer than `max_retry_delay`
        (then the error is raised at once: its `retry_after` says when to come back)."""
        if attempt >= self.max_retries:
            return None
        if error is not None:
            if not error.retryable:
                return None
            if error.retry_after is not None:
                return error.retry_after if error.retry_after <= self.max_retry_delay else None
        backoff = min(0.25 * 2**attempt, 8.0) * (0.75 + random.random() / 2)
        return min(backoff, self.max_retry_delay)


RETRYABLE_CAUSES = frozenset({"UPSTREAM_ERROR", "UPSTREAM_TIMEOUT", "SERVICE_UNAVAILABLE"})


def retryable_in_stream(error: ChatsparkError) -> bool:
    """An in-stream error whose turn may be run again: retryable itself, or a STREAMING_ERROR whose
    cause (the code a JSON request would have got) is."""
    return error.retryable or (isinstance(error, StreamingError) and error.cause in RETRYABLE_CAUSES)


def error_for(response: httpx.Response) -> ChatsparkError:
    try:
        data = response.json()
    except ValueError:
        data = None
    return error_from_response(response.status_code, data, dict(response.headers), response.headers.get("x-request-id"))


def parse_answer(call: Call, response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return call.parse(None, response.headers)
    return call.parse(response.json(), response.headers)


class StreamDropped(Exception):
    """The stream ended before its done event and `[DONE]`."""


class SSEDecoder:
    """The contract's event stream, line by line: `id:` and `data:` fields, `:` comments
    (pings), an event dispatched at its blank line. A half-received event is never dispatched."""

    def __init__(self, request_id: str | None) -> None:
        self.request_id = request_id
        self.last_event_id: int | None = None
        self.saw_done = False
        self.finished = False  # `[DONE]` seen
        self._id: int | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> ChatEvent | None:
        line = line.rstrip("\r")
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "id" and value.isdigit():
            self._id = int(value)
        return None

    def _dispatch(self) -> ChatEvent | None:
        if not self._data:
            return None
        data, event_id = "\n".join(self._data), self._id
        self._data, self._id = [], None
        if event_id is not None:
            self.last_event_id = event_id
        if data == "[DONE]":
            self.finished = True
            return None
        payload = json.loads(data)
        if isinstance(payload.get("error"), dict):
            self.finished = True
            raise error_from_event(payload["error"], self.request_id)
        event = chat_event(payload, event_id)
        self.saw_done = self.saw_done or event.done
        return event


class _PageBase(Generic[T]):
    def __init__(self, items: list[T], next_cursor: str | None, raw: Any) -> None:
        self.items = items
        self.next_cursor = next_cursor
        self.raw = raw

    def has_next_page(self) -> bool:
        return self.next_cursor is not None

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(items={self.items!r}, next_cursor={self.next_cursor!r})"


def page_parts(call: Call, data: Any) -> tuple[list[Any], str | None]:
    assert call.page_key is not None
    return [call.parse(item, httpx.Headers()) for item in data[call.page_key]], data.get("nextCursor")


def with_cursor(call: Call, cursor: str) -> Call:
    return Call(method=call.method, path=call.path, parse=call.parse, params={**(call.params or {}), "cursor": cursor},
                resendable=call.resendable, page_key=call.page_key)


__all__ = ["Call", "ChatsparkError", "SSEDecoder", "Settings", "StreamDropped", "StreamingError"]
