"""One conversation turn: load history → build the prompt → call the model → store the turn → answer.

The turn is stored only once the answer is complete, and the answer (JSON body or `done` event)
is released only after the store acknowledged the write.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import msgspec

from backends import base as backend
from chatspark import errors
from chatspark.apikeys import Principal
from chatspark.clock import iso, now_ms
from chatspark.agent_registry import AgentRegistry
from chatspark.agents import Agent
from chatspark.config import Config
from chatspark.conversations import CONVERSATION_ID, not_found
from chatspark.models import ModelRouter
from chatspark.prompt import PromptWindow, build_prompt
from chatspark.schemas import ChatRequest, ChatResponse, ContextReport, StreamDelta, StreamDone, Usage
from chatspark.store import ConversationGone, Store, StoredTurn


def new_conversation_id() -> str:
    return secrets.token_urlsafe(24)


def new_message_id() -> str:
    return "msg_" + secrets.token_urlsafe(16)


class PreparedTurn(msgspec.Struct, frozen=True, kw_only=True):
    agent: Agent
    conversation_id: str
    is_new: bool
    message: str
    asked: int  # ms since the epoch
    temperature: float
    window: PromptWindow


class Chat:
    def __init__(self, config: Config, store: Store, models: ModelRouter, agents: AgentRegistry) -> None:
        self.config = config
        self.store = store
        self.models = models
        self.agents = agents

    async def prepare(self, agent_id: int, request: ChatRequest, principal: Principal) -> PreparedTurn:
        """Everything that can fail before the first byte: access, agent, message, conversation."""
        asked = now_ms()
        principal.require_agent(agent_id)
        agent = await self.agents.cached(agent_id)
        model = self.models.models.get(agent.model_name)
        if model is None:  # config.toml lost a model that a stored agent still names
            raise errors.InternalError(f"This agent's model {agent.model_name!r} is not configured on this server.")
        message = self._checked_message(request.message)

        stored_turns, history = 0, []
        if request.conversation_id is None:
            conversation_id, is_new = new_conversation_id(), True
        else:
            conversation_id, is_new = request.conversation_id, False
            conversation = None
            if CONVERSATION_ID.match(conversation_id):
                conversation = await self.store.load_conversation(conversation_id, agent.history_turns)
            if conversation is None or conversation.agent_id != agent.id:
                raise not_found()
            stored_turns = min(conversation.turn_count, self.config.store.max_turns)
            history = conversation.recent_turns

        window = build_prompt(
            instructions=agent.bot_personality,
            history=history,
            stored_turns=stored_turns,
            message=message,
            model=model,
            max_turns=agent.history_turns,
            max_history_tokens=agent.history_tokens,
        )
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
        )

    async def complete(self, turn: PreparedTurn) -> ChatResponse:
        try:
            completion, model = await self.models.complete(turn.agent.model_name, **self._call(turn))
        except backend.BackendError as exc:
            raise _api_error(exc) from exc
        usage = Usage(completion.usage.prompt_tokens, completion.usage.completion_tokens)
        message_id, expires_at = await self._store(turn, completion.text, model.name, usage)
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
                turn.conversation_id, turn.agent.id, stored, ttl_seconds=ttl, new=turn.is_new
            )
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
