"""`Chatspark`: the blocking client."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar

import httpx

from chatspark_client import _endpoints as ep
from chatspark_client._core import (
    Call, Settings, SSEDecoder, StreamDropped, _PageBase, error_for, page_parts, parse_answer, retryable_in_stream,
    with_cursor,
)
from chatspark_client.errors import ChatsparkConnectionError, ChatsparkError
from chatspark_client.types import (
    Agent, Analytics, ChatEvent, ChatResponse, Conversation, ConversationSummary, Feedback, Lead, Message,
    TrainingSource, Webhook,
)

T = TypeVar("T")
AgentId = int | str


class Page(_PageBase[T], Generic[T]):
    """One page of a list (`items`, `next_cursor`). Iterating it walks every page after it too."""

    def __init__(self, client: Chatspark, call: Call, items: list[T], next_cursor: str | None, raw: Any) -> None:
        super().__init__(items, next_cursor, raw)
        self._client, self._call = client, call

    def next_page(self) -> Page[T] | None:
        if self.next_cursor is None:
            return None
        return self._client._page(with_cursor(self._call, self.next_cursor))

    def __iter__(self) -> Iterator[T]:
        page: Page[T] | None = self
        while page is not None:
            yield from page.items
            page = page.next_page()


class ChatStream:
    """The events of a streamed turn: `ChatDelta`s, then one `ChatDone`. Iterate it (once); use it
    as a context manager, or `close()` it, to hang up early."""

    def __init__(self, client: Chatspark, call: Call) -> None:
        self._events = client._stream(call)
        self.idempotency_key = call.idempotency_key

    def __iter__(self) -> Iterator[ChatEvent]:
        return self._events

    def __next__(self) -> ChatEvent:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Chatspark:
    """A client of the Chatspark API.

    `api_key` (else `$CHATSPARK_API_KEY`), `base_url` (else `$CHATSPARK_BASE_URL`, else
    http://localhost:8000; `…/api/v1` is accepted too). Retryable errors (429, 409
    CONVERSATION_BUSY, 502/503/504) are retried up to `max_retries` times, waiting as `Retry-After`
    says when it says at most `max_retry_delay` seconds (else the error is raised at once).
    `http_client`: an `httpx.Client` of your own (proxies, transports); it is not closed by `close()`.
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *, timeout: float = 60.0,
                 max_retries: int = 2, max_retry_delay: float = 30.0, headers: dict[str, str] | None = None,
                 http_client: httpx.Client | None = None) -> None:
        self._settings = Settings.make(api_key, base_url, max_retries, max_retry_delay, headers)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)
        self.chat = Chat(self)
        self.agents = Agents(self)
        self.conversations = Conversations(self)
        self.feedback = FeedbackResource(self)
        self.leads = Leads(self)
        self.analytics = AnalyticsResource(self)
        self.training = Training(self)
        self.webhooks = Webhooks(self)

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Chatspark:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- running calls

    def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, self._settings.url(call.path), params=call.params,
                                              json=call.json, headers=self._settings.request_headers(call))
            except httpx.TransportError as exc:
                delay = self._settings.retry_delay(attempt, None)
                if delay is None or not (call.resendable or isinstance(exc, httpx.ConnectError)):
                    raise ChatsparkConnectionError(f"{type(exc).__name__}: {exc}") from exc
            else:
                if response.status_code < 400:
                    return response
                error = error_for(response)
                delay = self._settings.retry_delay(attempt, error)
                if delay is None:
                    raise error
            time.sleep(delay)
            attempt += 1

    def _run(self, call: Call) -> Any:
        return parse_answer(call, self._send(call))

    def _page(self, call: Call) -> Page[Any]:
        data = self._send(call).json()
        items, cursor = page_parts(call, data)
        return Page(self, call, items, cursor, data)

    def _stream(self, call: Call) -> Iterator[ChatEvent]:
        """The stream's events; when the connection drops mid-way, the same request again with
        `Last-Event-ID` (the turn is idempotent, so it resumes after the last event seen)."""
        attempt, last_event_id, yielded = 0, None, False
        while True:
            decoder: SSEDecoder | None = None
            try:
                headers = self._settings.request_headers(call, last_event_id)
                with self._http.stream(call.method, self._settings.url(call.path), json=call.json,
                                       headers=headers) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise error_for(response)
                    decoder = SSEDecoder(response.headers.get("x-request-id"))
                    for line in response.iter_lines():
                        event = decoder.feed(line)
                        if decoder.last_event_id is not None:
                            last_event_id = decoder.last_event_id
                        if event is not None:
                            attempt, yielded = 0, True  # progress: the retry budget is per stall, not per stream
                            yield event
                        if decoder.finished:
                            return
                    if decoder.saw_done:
                        return
                    raise StreamDropped()
            except ChatsparkError as exc:
                # An error answer before the stream, or a failed turn that sent nothing yet: the
                # turn was not kept, so asking again (same key) runs it again, as for a JSON turn.
                again = decoder is None or (not yielded and retryable_in_stream(exc))
                delay = self._settings.retry_delay(attempt, exc if decoder is None else None) if again else None
                if delay is None:
                    raise
                if decoder is not None:  # that turn is gone: its retry is a new one, from its first event
                    last_event_id = None
            except (httpx.TransportError, StreamDropped) as exc:
                if decoder is not None and decoder.saw_done:
                    return
                delay = self._settings.retry_delay(attempt, None)
                if delay is None:
                    raise ChatsparkConnectionError(f"the stream dropped and could not be resumed: {exc!r}") from exc
            time.sleep(delay)
            attempt += 1


class _Resource:
    def __init__(self, client: Chatspark) -> None:
        self._client = client


class Chat(_Resource):
    def send(self, agent_id: AgentId, message: str, *, conversation_id: str | None = None,
             temperature: float | None = None, idempotency_key: str | None = None) -> ChatResponse:
        """One turn, answered whole. Omit `conversation_id` to start a conversation."""
        return self._client._run(ep.chat(agent_id, message, conversation_id, temperature, idempotency_key, False))

    def send_streaming(self, agent_id: AgentId, message: str, *, conversation_id: str | None = None,
                       temperature: float | None = None, idempotency_key: str | None = None) -> ChatStream:
        """One turn, streamed: `ChatDelta` events, then a `ChatDone`. Each delta arrives once, even
        if the connection drops and the stream is resumed."""
        return ChatStream(self._client, ep.chat(agent_id, message, conversation_id, temperature, idempotency_key, True))


class Agents(_Resource):
    def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Agent]:
        return self._client._page(ep.agents_list(limit, cursor))

    def get(self, agent_id: AgentId) -> Agent:
        return self._client._run(ep.agents_get(agent_id))

    def create(self, name: str, *, idempotency_key: str | None = None, **fields: Any) -> Agent:
        """`fields`: the contract's agent fields in snake_case (`bot_personality`, `model`, …)."""
        return self._client._run(ep.agents_create(name, idempotency_key, fields))

    def update(self, agent_id: AgentId, **fields: Any) -> Agent:
        return self._client._run(ep.agents_update(agent_id, fields))

    def delete(self, agent_id: AgentId) -> None:
        self._client._run(ep.agents_delete(agent_id))


class Conversations(_Resource):
    def list(self, agent_id: AgentId, *, limit: int | None = None, cursor: str | None = None) -> Page[ConversationSummary]:
        return self._client._page(ep.conversations_list(agent_id, limit, cursor))

    def get(self, agent_id: AgentId, conversation_id: str) -> Conversation:
        return self._client._run(ep.conversations_get(agent_id, conversation_id))

    def get_messages(self, agent_id: AgentId, conversation_id: str, *, limit: int | None = None,
                     cursor: str | None = None) -> Page[Message]:
        return self._client._page(ep.conversations_messages(agent_id, conversation_id, limit, cursor))

    def delete(self, agent_id: AgentId, conversation_id: str) -> None:
        self._client._run(ep.conversations_delete(agent_id, conversation_id))


class FeedbackResource(_Resource):
    """`client.feedback(...)` or `client.feedback.send(...)`: rate an assistant message."""

    def send(self, agent_id: AgentId, conversation_id: str, message_id: str, rating: str | None) -> Feedback:
        return self._client._run(ep.feedback(agent_id, conversation_id, message_id, rating))

    __call__ = send


class Leads(_Resource):
    def list(self, agent_id: AgentId, *, limit: int | None = None, cursor: str | None = None) -> Page[Lead]:
        return self._client._page(ep.leads_list(agent_id, limit, cursor))

    def create(self, agent_id: AgentId, *, idempotency_key: str | None = None, **fields: Any) -> Lead:
        return self._client._run(ep.leads_create(agent_id, idempotency_key, fields))

    def delete(self, agent_id: AgentId, lead_id: str) -> None:
        self._client._run(ep.leads_delete(agent_id, lead_id))


class AnalyticsResource(_Resource):
    def get(self, agent_id: AgentId, *, start: str | dt.date | None = None, end: str | dt.date | None = None) -> Analytics:
        return self._client._run(ep.analytics_get(agent_id, start, end))


class Training(_Resource):
    def list(self, agent_id: AgentId, *, limit: int | None = None, cursor: str | None = None) -> Page[TrainingSource]:
        return self._client._page(ep.training_list(agent_id, limit, cursor))

    def get(self, agent_id: AgentId, training_id: int) -> TrainingSource:
        return self._client._run(ep.training_get(agent_id, training_id))

    def add(self, agent_id: AgentId, source: str, *, type: str = "text", data: str | None = None,
            url: str | None = None, idempotency_key: str | None = None) -> TrainingSource:
        return self._client._run(ep.training_add(agent_id, source, type, data, url, idempotency_key))

    def delete(self, agent_id: AgentId, training_id: int) -> None:
        self._client._run(ep.training_delete(agent_id, training_id))


class Webhooks(_Resource):
    def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Webhook]:
        return self._client._page(ep.webhooks_list(limit, cursor))

    def get(self, webhook_id: int) -> Webhook:
        return self._client._run(ep.webhooks_get(webhook_id))

    def create(self, name: str, url: str, events: Sequence[str], *, agent_ids: Sequence[int] | None = None,
               idempotency_key: str | None = None) -> Webhook:
        """The answer's `secret` is shown only here: keep it to check deliveries' signatures."""
        return self._client._run(ep.webhooks_create(name, url, events, agent_ids, idempotency_key))

    def update(self, webhook_id: int, **fields: Any) -> Webhook:
        return self._client._run(ep.webhooks_update(webhook_id, fields))

    def delete(self, webhook_id: int) -> None:
        self._client._run(ep.webhooks_delete(webhook_id))
