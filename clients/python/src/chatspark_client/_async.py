"""`AsyncChatspark`: the asyncio client (the same surface as `Chatspark`, awaited)."""

from __future__ import annotations

import datetime as dt
import asyncio
from collections.abc import AsyncIterator, Generator, Sequence
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


class AsyncPage(_PageBase[T], Generic[T]):
    """One page of a list (`items`, `next_cursor`). `async for` over it walks every page after it too."""

    def __init__(self, client: AsyncChatspark, call: Call, items: list[T], next_cursor: str | None, raw: Any) -> None:
        super().__init__(items, next_cursor, raw)
        self._client, self._call = client, call

    async def next_page(self) -> AsyncPage[T] | None:
        if self.next_cursor is None:
            return None
        return await self._client._page(with_cursor(self._call, self.next_cursor))

    async def __aiter__(self) -> AsyncIterator[T]:
        page: AsyncPage[T] | None = self
        while page is not None:
            for item in page.items:
                yield item
            page = await page.next_page()


class AsyncPager(Generic[T]):
    """What an async `list` method returns: `await` it for the first `AsyncPage`, or `async for`
    over it to walk every item of every page."""

    def __init__(self, client: AsyncChatspark, call: Call) -> None:
        self._client, self._call = client, call

    def __await__(self) -> Generator[Any, None, AsyncPage[T]]:
        return self._client._page(self._call).__await__()

    async def __aiter__(self) -> AsyncIterator[T]:
        page: AsyncPage[T] = await self
        async for item in page:
            yield item


class AsyncChatStream:
    """The events of a streamed turn: `ChatDelta`s, then one `ChatDone`. `async for` over it (once);
    use it as an async context manager, or `await aclose()`, to hang up early."""

    def __init__(self, client: AsyncChatspark, call: Call) -> None:
        self._events = client._stream(call)
        self.idempotency_key = call.idempotency_key

    def __aiter__(self) -> AsyncIterator[ChatEvent]:
        return self._events

    async def __anext__(self) -> ChatEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncChatspark:
    """An asyncio client of the Chatspark API; the arguments are `Chatspark`'s.

    `api_key` (else `$CHATSPARK_API_KEY`), `base_url` (else `$CHATSPARK_BASE_URL`, else
    http://localhost:8000; `…/api/v1` is accepted too). Retryable errors (429, 409
    CONVERSATION_BUSY, 502/503/504) are retried up to `max_retries` times, waiting as `Retry-After`
    says when it says at most `max_retry_delay` seconds (else the error is raised at once).
    `http_client`: an `httpx.AsyncClient` of your own (proxies, transports); it is not closed by `aclose()`.
    """

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *, timeout: float = 60.0,
                 max_retries: int = 2, max_retry_delay: float = 30.0, headers: dict[str, str] | None = None,
                 http_client: httpx.AsyncClient | None = None) -> None:
        self._settings = Settings.make(api_key, base_url, max_retries, max_retry_delay, headers)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
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

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncChatspark:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- running calls

    async def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, self._settings.url(call.path), params=call.params,
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
            await asyncio.sleep(delay)
            attempt += 1

    async def _run(self, call: Call) -> Any:
        return parse_answer(call, await self._send(call))

    async def _page(self, call: Call) -> AsyncPage[Any]:
        data = (await self._send(call)).json()
        items, cursor = page_parts(call, data)
        return AsyncPage(self, call, items, cursor, data)

    async def _stream(self, call: Call) -> AsyncIterator[ChatEvent]:
        """The stream's events; when the connection drops mid-way, the same request again with
        `Last-Event-ID` (the turn is idempotent, so it resumes after the last event seen)."""
        attempt, last_event_id, yielded = 0, None, False
        while True:
            decoder: SSEDecoder | None = None
            try:
                headers = self._settings.request_headers(call, last_event_id)
                async with self._http.stream(call.method, self._settings.url(call.path), json=call.json,
                                       headers=headers) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise error_for(response)
                    decoder = SSEDecoder(response.headers.get("x-request-id"))
                    async for line in response.aiter_lines():
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
            await asyncio.sleep(delay)
            attempt += 1


class _Resource:
    def __init__(self, client: AsyncChatspark) -> None:
        self._client = client


class Chat(_Resource):
    async def send(self, agent_id: AgentId, message: str, *, conversation_id: str | None = None,
             temperature: float | None = None, idempotency_key: str | None = None) -> ChatResponse:
        """One turn, answered whole. Omit `conversation_id` to start a conversation."""
        return await self._client._run(ep.chat(agent_id, message, conversation_id, temperature, idempotency_key, False))

    def send_streaming(self, agent_id: AgentId, message: str, *, conversation_id: str | None = None,
                       temperature: float | None = None, idempotency_key: str | None = None) -> AsyncChatStream:
        """One turn, streamed: `ChatDelta` events, then a `ChatDone`. Each delta arrives once, even
        if the connection drops and the stream is resumed."""
        return AsyncChatStream(self._client, ep.chat(agent_id, message, conversation_id, temperature, idempotency_key, True))


class Agents(_Resource):
    def list(self, *, limit: int | None = None, cursor: str | None = None) -> AsyncPager[Agent]:
        return AsyncPager(self._client, ep.agents_list(limit, cursor))

    async def get(self, agent_id: AgentId) -> Agent:
        return await self._client._run(ep.agents_get(agent_id))

    async def create(self, name: str, *, idempotency_key: str | None = None, **fields: Any) -> Agent:
        """`fields`: the contract's agent fields in snake_case (`bot_personality`, `model`, …)."""
        return await self._client._run(ep.agents_create(name, idempotency_key, fields))

    async def update(self, agent_id: AgentId, **fields: Any) -> Agent:
        return await self._client._run(ep.agents_update(agent_id, fields))

    async def delete(self, agent_id: AgentId) -> None:
        await self._client._run(ep.agents_delete(agent_id))


class Conversations(_Resource):
    def list(self, agent_id: AgentId, *, limit: int | None = None, cursor: str | None = None) -> AsyncPager[ConversationSummary]:
        return AsyncPager(self._client, ep.conversations_list(agent_id, limit, cursor))

    async def get(self, agent_id: AgentId, conversation_id: str) -> Conversation:
        return await self._client._run(ep.conversations_get(agent_id, conversation_id))

    def get_messages(self, agent_id: AgentId, conversation_id: str, *, limit: int | None = None,
                     cursor: str | None = None) -> AsyncPager[Message]:
        return AsyncPager(self._client, ep.conversations_messages(agent_id, conversation_id, limit, cursor))

    async def delete(self, agent_id: AgentId, conversation_id: str) -> None:
        await self._client._run(ep.conversations_delete(agent_id, conversation_id))


class FeedbackResource(_Resource):
    """`client.feedback(...)` or `client.feedback.send(...)`: rate an assistant message."""

    async def send(self, agent_id: AgentId, conversation_id: str, message_id: str, rating: str | None) -> Feedback:
        return await self._client._run(ep.feedback(agent_id, conversation_id, message_id, rating))

    __call__ = send


class Leads(_Resource):
    def list(self, agent_id: AgentId, *, limit: int | None = None, cursor: str | None = None) -> AsyncPager[Lead]:
        return AsyncPager(self._client, ep.leads_list(agent_id, limit, cursor))

    async def create(self, agent_id: AgentId, *, idempotency_key: str | None = None, **fields: Any) -> Lead:
        return await self._client._run(ep.leads_create(agent_id, idempotency_key, fields))

    async def delete(self, agent_id: AgentId, lead_id: str) -> None:
        await self._client._run(ep.leads_delete(agent_id, lead_id))


class AnalyticsResource(_Resource):
    async def get(self, agent_id: AgentId, *, start: str | dt.date | None = None, end: str | dt.date | None = None) -> Analytics:
        return await self._client._run(ep.analytics_get(agent_id, start, end))


class Training(_Resource):
    def list(self, agent_id: AgentId, *, limit: int | None = None, cursor: str | None = None) -> AsyncPager[TrainingSource]:
        return AsyncPager(self._client, ep.training_list(agent_id, limit, cursor))

    async def get(self, agent_id: AgentId, training_id: int) -> TrainingSource:
        return await self._client._run(ep.training_get(agent_id, training_id))

    async def add(self, agent_id: AgentId, source: str, *, type: str = "text", data: str | None = None,
            url: str | None = None, idempotency_key: str | None = None) -> TrainingSource:
        return await self._client._run(ep.training_add(agent_id, source, type, data, url, idempotency_key))

    async def delete(self, agent_id: AgentId, training_id: int) -> None:
        await self._client._run(ep.training_delete(agent_id, training_id))


class Webhooks(_Resource):
    def list(self, *, limit: int | None = None, cursor: str | None = None) -> AsyncPager[Webhook]:
        return AsyncPager(self._client, ep.webhooks_list(limit, cursor))

    async def get(self, webhook_id: int) -> Webhook:
        return await self._client._run(ep.webhooks_get(webhook_id))

    async def create(self, name: str, url: str, events: Sequence[str], *, agent_ids: Sequence[int] | None = None,
               idempotency_key: str | None = None) -> Webhook:
        """The answer's `secret` is shown only here: keep it to check deliveries' signatures."""
        return await self._client._run(ep.webhooks_create(name, url, events, agent_ids, idempotency_key))

    async def update(self, webhook_id: int, **fields: Any) -> Webhook:
        return await self._client._run(ep.webhooks_update(webhook_id, fields))

    async def delete(self, webhook_id: int) -> None:
        await self._client._run(ep.webhooks_delete(webhook_id))
