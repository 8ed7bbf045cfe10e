"""Reading back, paging through, deleting and rating an agent's conversations."""

from __future__ import annotations

import re

from chatspark import errors
from chatspark.clock import iso
from chatspark.pagination import Cursors, PageQuery, Position
from chatspark.schemas import (
    ConversationDetail,
    ConversationEnvelope,
    ConversationRow,
    ConversationsPage,
    Exchange,
    FeedbackResponse,
    MessageRow,
    MessagesPage,
)
from chatspark.store import Store
from chatspark.store.conversations import RateOutcome, TurnPage

# Conversation ids we mint are 32 url-safe characters (192 random bits); anything else is unknown.
CONVERSATION_ID = re.compile(r"^[A-Za-z0-9_-]{32}$")
_MESSAGE_ID = re.compile(r"^msg_[A-Za-z0-9_-]{1,64}$")


def not_found() -> errors.ResourceNotFound:
    # Another agent's conversation is as unknown as a missing one: ids leak nothing.
    return errors.ResourceNotFound("No such conversation for this agent (unknown or expired).")


class Conversations:
    def __init__(self, store: Store, cursors: Cursors) -> None:
        self.store = store
        self.cursors = cursors

    async def list(self, agent_id: int, page: PageQuery) -> ConversationsPage:
        rows, next_cursor = await self.cursors.page(
            f"conversations:{agent_id}", page,
            lambda after, n: self.store.conversation_index.list(agent_id, after, n), lambda row: (row.created, row.id),
        )
        return ConversationsPage(
            conversations=[
                ConversationRow(
                    id=row.id,
                    message_count=2 * row.stored_turns,
                    last_message_at=iso(row.updated),
                    created_at=iso(row.created),
                    expires_at=iso(row.updated + row.ttl_seconds * 1000),
                )
                for row in rows
            ],
            next_cursor=next_cursor,
        )

    async def get(self, agent_id: int, cid: str) -> ConversationEnvelope:
        turns = await self._read(agent_id, cid)
        return ConversationEnvelope(
            conversation=ConversationDetail(
                id=cid,
                created_at=iso(turns.created),
                expires_at=_expires(turns),
                messages=[
                    Exchange(
                        query=t.query,
                        response=t.response,
                        created_at=iso(t.asked or t.created),
                        message_id=t.id,
                        model=t.model,
                        rating=turns.ratings.get(t.id),  # type: ignore[arg-type]
                        sources=t.sources,
                    )
                    for t in turns.turns
                ],
            )
        )

    async def messages(self, agent_id: int, cid: str, page: PageQuery) -> MessagesPage:
        """Oldest first, two rows per turn; a position is a message's number within the conversation
        (2 × turn number, +1 for the answer), so new turns only ever add pages at the end."""
        name = f"messages:{cid}"
        start = 0
        if page.cursor is not None:
            start = (await self.cursors.decode(page.cursor, name)).score + 1
        turns = await self._read(agent_id, cid, first=start // 2, count=page.limit // 2 + 2)
        first_turn = max(start // 2, turns.first_stored)
        rows: list[tuple[int, MessageRow]] = []
        for offset, t in enumerate(turns.turns):
            number = 2 * (first_turn + offset)
            rating = turns.ratings.get(t.id)
            rows.append((number, MessageRow(
                id=t.user_id, role="user", content=t.query, created_at=iso(t.asked or t.created), model=None, rating=None
            )))
            rows.append((number + 1, MessageRow(
                id=t.id, role="assistant", content=t.response, created_at=iso(t.created), model=t.model,
                rating=rating,  # type: ignore[arg-type]
                sources=t.sources,
            )))
        rows = [r for r in rows if r[0] >= start]
        page_rows = rows[: page.limit]
        more = len(rows) > page.limit or first_turn + len(turns.turns) < turns.total
        next_cursor = None
        if more and page_rows:
            next_cursor = await self.cursors.encode(Position(name, page_rows[-1][0], ""))
        return MessagesPage(messages=[row for _, row in page_rows], next_cursor=next_cursor)

    async def delete(self, agent_id: int, cid: str) -> None:
        if not CONVERSATION_ID.match(cid) or not await self.store.conversations.delete(cid, agent_id):
            raise not_found()

    async def rate(self, agent_id: int, cid: str, message_id: str, rating: str | None) -> FeedbackResponse:
        if not CONVERSATION_ID.match(cid):
            raise not_found()
        if not _MESSAGE_ID.match(message_id):
            raise errors.ResourceNotFound("No such message in this conversation.")
        outcome = await self.store.conversations.rate(cid, agent_id, message_id, rating)
        if outcome == RateOutcome.NO_CONVERSATION:
            raise not_found()
        if outcome == RateOutcome.NO_MESSAGE:
            raise errors.ResourceNotFound("No such message in this conversation.")
        if outcome == RateOutcome.NOT_RATABLE:
            raise errors.ValidationFailed.field("messageId", "is a user message; only assistant messages can be rated")
        return FeedbackResponse(message_id=message_id, rating=rating)  # type: ignore[arg-type]

    async def _read(self, agent_id: int, cid: str, first: int = 0, count: int = -1) -> TurnPage:
        turns = None
        if CONVERSATION_ID.match(cid):
            turns = await self.store.conversations.read_turns(cid, agent_id, first, count)
        if turns is None:
            raise not_found()
        return turns


def _expires(turns: TurnPage) -> str:
    return iso(turns.updated + turns.ttl_seconds * 1000)
