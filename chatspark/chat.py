"""One conversation turn: load history → build the prompt → call the model → store the turn → answer.

The turn is stored only once the answer is complete, and the answer (JSON body or `done` event)
is released only after the store acknowledged the write.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator

import anyio
import msgspec

from backends import base as backend
from chatspark import errors
from chatspark.apikeys import Principal
from chatspark.clock import iso, now_ms
from chatspark.agent_registry import AgentRegistry
from chatspark.agents import Agent
from chatspark.config import Config
from chatspark.conversations import CONVERSATION_ID, not_found
from chatspark.credits import Credits, Hold
from chatspark.models import ModelRouter
from chatspark.prompt import PromptWindow, build_prompt
from chatspark.schemas import ChatRequest, ChatResponse, ContextReport, StreamDelta, StreamDone, Usage
from chatspark.leases import LeaseKeeper
from chatspark.store import ConversationGone, LeaseTaken, Store, StoredTurn

log = logging.getLogger("chatspark.chat")


def new_conversation_id() -> str:
    return secrets.token_urlsafe(24)


def new_message_id() -> str:
    return "msg_" + secrets.token_urlsafe(16)


class Lease:
    """This turn's hold on its conversation: taken in `prepare`, given up by the turn's write (the
    store deletes it) or by `Chat.settle` when the turn ends any other way."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.token = secrets.token_hex(12)
        self.held = True


class PreparedTurn(msgspec.Struct, frozen=True, kw_only=True):
    agent: Agent
    conversation_id: str
    is_new: bool
    message: str
    asked: int  # ms since the epoch
    temperature: float
    window: PromptWindow
    lease: Lease
    credit: Hold | None


class Chat:
    def __init__(
        self,
        config: Config,
        store: Store,
        models: ModelRouter,
        agents: AgentRegistry,
        leases: LeaseKeeper,
        credits: Credits,
    ) -> None:
        self.config = config
        self.store = store
        self.models = models
        self.agents = agents
        self.leases = leases
        self.credits = credits

    async def prepare(self, agent_id: int, request: ChatRequest, principal: Principal) -> PreparedTurn:
        """Everything that can fail before the first byte: access, agent, message, conversation."""
        asked = now_ms()
        principal.require_agent(agent_id)
        agent = await self.agents.cached(agent_id)
        model = self.models.models.get(agent.model_name)
        if model is None:  # config.toml lost a model that a stored agent still names
            raise errors.InternalError(f"This agent's model {agent.model_name!r} is not configured on this server.")
        message = self._checked_message(request.message)

        credit = await self.credits.hold(principal)
        try:
            conversation_id, is_new, lease, history, stored_turns = await self._claim(request.conversation_id, agent)
        except BaseException:
            await self.credits.release(credit)
            raise
        try:
            window = build_prompt(
                instructions=agent.bot_personality,
                history=history,
                stored_turns=stored_turns,
                message=message,
                model=model,
                max_turns=agent.history_turns,
                max_history_tokens=agent.history_tokens,
            )
        except BaseException:
            await self._release(conversation_id, lease)
            await self.credits.release(credit)
            raise
        temperature = next(
            t for t in (request.temperature, agent.temperature, self.config.default_temperature) if t is not None
        )
        return PreparedTurn(
            agent=agent,
            conversation_id=conversation_id,
            is_new=is_new,
            message=message,
            asked=asked,
            temperature=temperature,
            window=window,
            lease=lease,
            credit=credit,
        )

    async def _claim(
        self, requested: str | None, agent: Agent
    ) -> tuple[str, bool, Lease, list[StoredTurn], int]:
        """The conversation this turn continues (or a new one), held by a lease so no other turn of
        it runs meanwhile: (id, is new, lease, recent turns, stored turn count)."""
        if requested is None:
            conversation_id = new_conversation_id()
            lease = Lease(self.store.layout.lease(conversation_id))
            await self.store.take_lease(conversation_id, lease.token)
            self.leases.hold(lease.key, lease.token)
            return conversation_id, True, lease, [], 0
        if not CONVERSATION_ID.match(requested):
            raise not_found()
        lease = Lease(self.store.layout.lease(requested))
        try:
            conversation = await self.store.load_conversation(requested, agent.history_turns, lease.token)
        except LeaseTaken as busy:
            if busy.agent_id not in (None, agent.id):
                raise not_found() from None
            raise errors.ConversationBusy(headers={"retry-after": "1"}) from None
        if conversation is None:
            raise not_found()
        if conversation.agent_id != agent.id:
            await self._release(requested, lease)
            raise not_found()
        self.leases.hold(lease.key, lease.token)
        stored_turns = min(conversation.turn_count, self.config.store.max_turns)
        return requested, False, lease, conversation.recent_turns, stored_turns

    async def settle(self, turn: PreparedTurn) -> None:
        """Gives up the turn's lease unless its write already did. Safe to call more than once, and
        under cancellation (a disconnected client). A turn that was not stored is not charged."""
        await self._release(turn.conversation_id, turn.lease)
        await self.credits.release(turn.credit)

    async def _release(self, conversation_id: str, lease: Lease) -> None:
        if not lease.held:
            return
        lease.held = False
        self.leases.drop(lease.key, lease.token)
        with anyio.CancelScope(shield=True):
            try:
                await self.store.release_lease(conversation_id, lease.token)
            except errors.ServiceUnavailable:
                log.warning("could not release a conversation lease; it lapses by itself")

    async def complete(self, turn: PreparedTurn) -> ChatResponse:
        try:
            try:
                completion, model = await self.models.complete(turn.agent.model_name, **self._call(turn))
            except backend.BackendError as exc:
                raise _api_error(exc) from exc
            usage = Usage(completion.usage.prompt_tokens, completion.usage.completion_tokens)
            message_id, expires_at = await self._store(turn, completion.text, model.name, usage)
        finally:
            await self.settle(turn)
        return ChatResponse(
            text=completion.text,
            reply=completion.text,
            conversation_id=turn.conversation_id,
            model=model.name,
            message_id=message_id,
            usage=usage,
            expires_at=expires_at,
            context=_context(turn.window),
        )

    async def stream(self, turn: PreparedTurn) -> AsyncIterator[StreamDelta | StreamDone]:
        """Deltas as the model sends them, then `done` once the turn is stored. Raises ApiError."""
        parts: list[str] = []
        usage: backend.Usage | None = None
        deltas = self.models.stream(turn.agent.model_name, **self._call(turn))
        try:
            try:
                async for delta in deltas:
                    if delta.usage is not None:
                        usage = delta.usage
                    if delta.text:
                        parts.append(delta.text)
                        yield StreamDelta(delta=delta.text, conversation_id=turn.conversation_id)
            except backend.BackendError as exc:
                raise _api_error(exc) from exc
            finally:
                await deltas.aclose()
            text = "".join(parts)
            if usage is None:
                usage = backend.Usage(turn.window.history_tokens, len(text.encode()))
            wire_usage = Usage(usage.prompt_tokens, usage.completion_tokens)
            message_id, expires_at = await self._store(turn, text, deltas.model.name, wire_usage)
        finally:
            await self.settle(turn)
        yield StreamDone(
            delta="",
            conversation_id=turn.conversation_id,
            done=True,
            message_id=message_id,
            model=deltas.model.name,
            usage=wire_usage,
            expires_at=expires_at,
            context=_context(turn.window),
        )

    def _checked_message(self, message: str) -> str:
        if not message.strip():
            raise errors.ValidationFailed.field("message", "must be a non-empty string")
        limit = self.config.server.max_message_chars
        if len(message) > limit:
            raise errors.ValidationFailed.field("message", f"must be at most {limit} characters")
        return message

    def _call(self, turn: PreparedTurn) -> dict[str, object]:
        return {
            "messages": turn.window.messages,
            "temperature": turn.temperature,
            "faq": tuple(turn.agent.faq),
            "no_answer": turn.agent.bot_no_answer,
        }

    async def _store(self, turn: PreparedTurn, text: str, model: str, usage: Usage) -> tuple[str, str]:
        """Writes the complete turn; returns its message id and the conversation's new expiry."""
        stored = StoredTurn(
            id=new_message_id(),
            user_id=new_message_id(),
            query=turn.message,
            response=text,
            model=model,
            created=now_ms(),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            asked=turn.asked,
        )
        ttl = turn.agent.conversation_ttl_seconds
        try:
            await self.store.append_turn(
                turn.conversation_id, turn.agent.id, stored, ttl_seconds=ttl, new=turn.is_new, lease=turn.lease.token
            )
            turn.lease.held = False  # the write deleted it
            self.leases.drop(turn.lease.key, turn.lease.token)
            await self.credits.charge(turn.credit)
        except LeaseTaken:
            raise errors.ConversationBusy(
                "This turn ran past its conversation lease and another turn took over; its answer was not stored.",
                headers={"retry-after": "1"},
            ) from None
        except ConversationGone:
            raise errors.ResourceNotFound("The conversation expired or was deleted while the answer was generated.") from None
        return stored.id, iso(stored.created + ttl * 1000)


def _context(window: PromptWindow) -> ContextReport:
    return ContextReport(
        turns_included=window.turns_included,
        turns_dropped=window.turns_dropped,
        history_tokens=window.history_tokens,
    )


def _api_error(exc: backend.BackendError) -> errors.ApiError:
    """A backend failure (after its retries and the fallbacks) as the contract's error."""
    if isinstance(exc, backend.UpstreamTimeout):
        return errors.UpstreamTimeout(str(exc) or None)
    if exc.retryable:
        return errors.UpstreamError(str(exc) or None)
    return errors.UpstreamFailedPermanently(str(exc) or None)
