"""One conversation turn: load history → build the prompt → call the model → store the turn → answer.

The turn is stored only once the answer is complete, and the answer (JSON body or `done` event)
is released only after the store acknowledged the write. What a turn holds while it runs (its
conversation's lease, a monthly credit) has one owner, `TurnResources`, released exactly once
however the turn ends.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, aclosing

import anyio
import msgspec

from backends.base import BackendError, Message, ModelCall, TokenUsage
from chatspark import errors
from chatspark.agent_registry import AgentRegistry
from chatspark.agents import Agent
from chatspark.apikeys import Principal
from chatspark.clock import iso, now_ms
from chatspark.config import Config
from chatspark.conversations import CONVERSATION_ID, not_found
from chatspark.credits import Credits, Hold
from chatspark.knowledge.retrieval import Grounding, Retriever
from chatspark.leases import LeaseKeeper
from chatspark.models import ModelRouter
from chatspark.prompt import PromptWindow, build_prompt
from chatspark.schemas import NON_SPACE, ChatRequest, ChatResponse, ContextReport, StreamDelta, StreamDone
from chatspark.store import Store
from chatspark.store.conversations import StoredTurn
from chatspark.store.credits import Charge
from chatspark.store.errors import ConversationGone, LeaseTaken, StoreUnavailable
from chatspark.store.leases import Lease

log = logging.getLogger("chatspark.turn")


def new_conversation_id() -> str:
    return secrets.token_urlsafe(24)


def new_message_id() -> str:
    return "msg_" + secrets.token_urlsafe(16)


class TurnResources:
    """A running turn's conversation lease and credit. `release()` gives back whatever is still
    held, shielded from cancellation; every later call is a no-op (the exit stack is empty)."""

    def __init__(self, store: Store, keeper: LeaseKeeper, credits: Credits) -> None:
        self._store = store
        self._keeper = keeper
        self._credits = credits
        self._stack = AsyncExitStack()
        self._lease: Lease | None = None  # while held
        self._credit: Hold | None = None  # while held, not yet charged
        self._charged_with_write = False  # the turn's write carried the charge

    async def hold_credit(self, caller: Principal) -> None:
        """Holds a credit on its own round trip (a turn takes it with its lease: `took_credit`)."""
        self.took_credit(await self._credits.hold(caller))

    def took_credit(self, hold: Hold | None) -> None:
        self._credit = hold
        if hold is not None:
            self._stack.push_async_callback(self._release_credit)

    def charge(self) -> Charge | None:
        """The credit's charge, for the turn's write to carry (then `stored` has nothing to charge)."""
        if self._credit is None:
            return None
        self._charged_with_write = True
        return self._credits.charge_with_write(self._credit)

    def hold_lease(self, lease: Lease) -> None:
        self._lease = lease
        self._keeper.hold(lease)
        self._stack.push_async_callback(self._release_lease)

    @property
    def lease(self) -> Lease | None:
        return self._lease

    async def stored(self) -> None:
        """The turn's write gave its lease up (the store deleted it): the credit is spent."""
        if self._lease is not None:
            self._keeper.drop(self._lease)
            self._lease = None
        credit, self._credit = self._credit, None
        if credit is not None and not self._charged_with_write:
            await self._credits.charge(credit)

    async def release(self) -> None:
        if self._lease is None and self._credit is None:
            # Nothing left to give back (a stored turn): the callbacks would all be no-ops, and a
            # shielded scope costs anyio's backend lookup on every turn.
            self._stack.pop_all()
            return
        with anyio.CancelScope(shield=True):
            await self._stack.aclose()

    async def _release_credit(self) -> None:
        credit, self._credit = self._credit, None
        if credit is not None:
            await self._credits.release(credit)

    async def _release_lease(self) -> None:
        lease, self._lease = self._lease, None
        if lease is None:
            return
        self._keeper.drop(lease)
        try:
            await self._store.leases.release(lease)
        except StoreUnavailable:
            log.warning("could not release a conversation lease; it lapses by itself")


class ClientContext(msgspec.Struct, frozen=True, kw_only=True):
    """What a caller adds to one turn beyond its message (the OpenAI-compatible endpoint): its own
    system text, after the agent's instructions; earlier messages of its own, used as context when
    the turn starts a conversation (ignored when it continues one: the store holds that history);
    a cap on the answer's tokens. None of it is stored."""

    system: str = ""
    earlier: tuple[Message, ...] = ()
    max_tokens: int | None = None


class PreparedTurn(msgspec.Struct, frozen=True, kw_only=True):
    agent: Agent
    conversation_id: str
    message_id: str  # the answer's, known before the model is called
    is_new: bool
    message: str
    asked: int  # ms since the epoch
    window: PromptWindow
    call: ModelCall
    resources: TurnResources
    grounding: Grounding


class Turns:
    def __init__(
        self, config: Config, store: Store, models: ModelRouter, agents: AgentRegistry, leases: LeaseKeeper,
        credits: Credits, retriever: Retriever,
    ) -> None:
        self.retriever = retriever
        self.config = config
        self.store = store
        self.models = models
        self.agents = agents
        self.leases = leases
        self.credits = credits

    async def prepare(
        self, agent_id: int, request: ChatRequest, principal: Principal, *,
        new_id: Callable[[], str] = new_conversation_id, client: ClientContext | None = None,
        message_id: str | None = None,
    ) -> PreparedTurn:
        """Everything that can fail before the first byte: access, agent, message, credit, conversation.
        `new_id` names a new conversation (a widget visitor's ids prove whose it is); `message_id`
        names the answer (default: a new random id)."""
        client = client or ClientContext()
        asked = now_ms()
        principal.require_agent(agent_id)
        agent = await self.agents.cached(agent_id)
        model = self.models.models.get(agent.model_name)
        if model is None:  # config.toml lost a model that a stored agent still names
            raise errors.InternalError(f"This agent's model {agent.model_name!r} is not configured on this server.")
        message = self._checked_message(request.message)
        resources = TurnResources(self.store, self.leases, self.credits)
        try:
            credit = None
            if self.store.credit_rides:
                credit = self.credits.plan(principal)  # taken with the lease, in one round trip
            else:
                await resources.hold_credit(principal)  # a call of its own (failing open if configured)
            conversation_id, is_new, history, stored_turns, knowledge_version = await self._claim(
                request.conversation_id, agent, resources, new_id, credit
            )
            grounding = await self.retriever.ground(
                agent.id, knowledge_version, message, agent.bot_no_answer, self.config.knowledge.max_knowledge_tokens
            )
            window = build_prompt(
                knowledge=grounding.message,
                instructions=agent.bot_personality,
                history=history,
                stored_turns=stored_turns,
                message=message,
                model=model,
                max_turns=agent.history_turns,
                max_history_tokens=agent.history_tokens,
                client_system=client.system,
                client_history=client.earlier if is_new else (),
            )
        except BaseException:
            await resources.release()
            raise
        temperature = next(
            t for t in (request.temperature, agent.temperature, self.config.default_temperature) if t is not None
        )
        call = ModelCall(
            model=model, messages=window.messages, temperature=temperature, faq=tuple(agent.faq),
            no_answer=agent.bot_no_answer, excerpts=grounding.excerpts, max_tokens=client.max_tokens,
        )
        return PreparedTurn(
            agent=agent, conversation_id=conversation_id, message_id=message_id or new_message_id(), is_new=is_new,
            message=message, asked=asked, window=window,
            call=call, resources=resources, grounding=grounding,
        )

    async def _claim(
        self, requested: str | None, agent: Agent, resources: TurnResources, new_id: Callable[[], str],
        credit: Hold | None = None,
    ) -> tuple[str, bool, list[StoredTurn], int, int]:
        """The conversation this turn continues (or a new one), its lease held in `resources` so no
        other turn of it runs meanwhile, read in one round trip with the agent's knowledge version
        and the turn's monthly `credit` taken (raises CreditsExhausted when the cap is reached):
        (id, is new, recent turns, stored turn count, knowledge version)."""
        request = None if credit is None else self.credits.request(credit)
        if requested is None:
            lease = Lease("conversation", new_id())
            _, version, held = await self.store.open_turn(agent.id, lease, credit=request)
            resources.hold_lease(lease)
            self._took(resources, credit, held)
            return lease.name, True, [], 0, version
        if not CONVERSATION_ID.match(requested):
            raise not_found()
        lease = Lease("conversation", requested)
        try:
            conversation, version, held = await self.store.open_turn(
                agent.id, lease, requested, agent.history_turns, credit=request
            )
        except LeaseTaken as busy:
            if busy.agent_id not in (None, agent.id):
                raise not_found() from None
            raise errors.ConversationBusy(headers={"retry-after": "1"}) from None
        if conversation is None:
            if credit is not None and held:
                await self.credits.release(credit)
            raise not_found()
        resources.hold_lease(lease)
        self._took(resources, credit, held)
        if conversation.agent_id != agent.id:
            raise not_found()
        stored_turns = min(conversation.turn_count, self.config.store.max_turns)
        return requested, False, conversation.recent_turns, stored_turns, version

    def _took(self, resources: TurnResources, credit: Hold | None, held: bool) -> None:
        """The credit `open_turn` took with the lease is the turn's to charge or give back; none
        taken means the cap is reached (the lease, already in `resources`, is let go by `prepare`)."""
        if credit is None:
            return
        if not held:
            raise self.credits.refused(credit)
        resources.took_credit(credit)

    async def complete(self, turn: PreparedTurn) -> ChatResponse:
        try:
            try:
                completion, model = await self.models.complete(turn.call)
            except BackendError as exc:
                raise errors.contract_error(exc) from exc
            message_id, expires_at = await self._store(turn, completion.text, model.name, completion.usage)
        finally:
            await turn.resources.release()
        return ChatResponse(
            text=completion.text,
            reply=completion.text,
            conversation_id=turn.conversation_id,
            model=model.name,
            message_id=message_id,
            usage=completion.usage,
            expires_at=expires_at,
            context=_context(turn.window),
            sources=turn.grounding.citations,
        )

    async def stream(self, turn: PreparedTurn) -> AsyncIterator[StreamDelta | StreamDone]:
        """Deltas as the model sends them, then `done` once the turn is stored. Raises ApiError."""
        parts: list[str] = []
        usage: TokenUsage | None = None
        try:
            stream = self.models.stream(turn.call)
            try:
                async with aclosing(stream.deltas()) as deltas:
                    async for delta in deltas:
                        if delta.usage is not None:
                            usage = delta.usage
                        if delta.text:
                            parts.append(delta.text)
                            yield StreamDelta(delta=delta.text, conversation_id=turn.conversation_id)
            except BackendError as exc:
                raise errors.contract_error(exc) from exc
            assert usage is not None, "a backend's stream ends with its usage"
            message_id, expires_at = await self._store(turn, "".join(parts), stream.model.name, usage)
        finally:
            await turn.resources.release()
        yield StreamDone(
            delta="",
            conversation_id=turn.conversation_id,
            done=True,
            message_id=message_id,
            model=stream.model.name,
            usage=usage,
            expires_at=expires_at,
            context=_context(turn.window),
            sources=turn.grounding.citations,
        )

    def _checked_message(self, message: str) -> str:
        if not NON_SPACE.search(message):
            raise errors.ValidationFailed.field("message", "must be a non-empty string")
        limit = self.config.server.max_message_chars
        if len(message) > limit:
            raise errors.ValidationFailed.field("message", f"must be at most {limit} characters")
        return message

    async def _store(self, turn: PreparedTurn, text: str, model: str, usage: TokenUsage) -> tuple[str, str]:
        """Writes the complete turn; returns its message id and the conversation's new expiry."""
        stored = StoredTurn(
            id=turn.message_id,
            user_id=new_message_id(),
            query=turn.message,
            response=text,
            model=model,
            created=now_ms(),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            asked=turn.asked,
            sources=turn.grounding.citations,
        )
        ttl = turn.agent.conversation_ttl_seconds
        try:
            await self.store.conversations.append(
                turn.conversation_id, turn.agent.id, stored, ttl_seconds=ttl, new=turn.is_new,
                lease=turn.resources.lease, unanswered=text.strip() == turn.agent.bot_no_answer.strip(),
                charge=turn.resources.charge(),
            )
        except LeaseTaken:
            raise errors.ConversationBusy(
                "This turn ran past its conversation lease and another turn took over; its answer was not stored.",
                headers={"retry-after": "1"},
            ) from None
        except ConversationGone:
            raise errors.ResourceNotFound("The conversation expired or was deleted while the answer was generated.") from None
        await turn.resources.stored()
        return stored.id, iso(stored.created + ttl * 1000)


def _context(window: PromptWindow) -> ContextReport:
    return ContextReport(
        turns_included=window.turns_included,
        turns_dropped=window.turns_dropped,
        history_tokens=window.history_tokens,
    )
