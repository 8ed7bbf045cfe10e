"""Opaque, signed list cursors: a client can hand one back but cannot forge, alter or reuse it
on another list (the list it belongs to is inside the signature)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, TypeVar

import msgspec
from msgspec import Meta

from chatspark.errors import ValidationFailed
from chatspark.schemas import decode_query

R = TypeVar("R")
After = tuple[int, str] | None  # (score, id) of the last row shown, or None: from the start
Limit = Annotated[int, Meta(ge=1, le=100)]
DEFAULT_LIMIT = 20


class Position(msgspec.Struct, array_like=True, frozen=True):
    """Where the previous page ended: the sort key (a time in ms, or a sequence) and an id for ties."""

    list: str  # which list this cursor walks, e.g. "conversations:1"
    score: int
    id: str


class Cursors:
    """Signs with the deployment's shared secret, fetched from the store on first use (every
    replica must accept the cursors of every other)."""

    def __init__(self, load_secret: Callable[[], Awaitable[bytes]]) -> None:
        self._load_secret = load_secret
        self._secret: bytes | None = None

    async def _key(self) -> bytes:
        if self._secret is None:
            self._secret = await self._load_secret()
        return self._secret

    async def encode(self, position: Position) -> str:
        payload = msgspec.msgpack.encode(position)
        tag = hmac.new(await self._key(), payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(tag + payload).decode().rstrip("=")

    async def decode(self, cursor: str, list_name: str) -> Position:
        secret = await self._key()
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            tag, payload = raw[:16], raw[16:]
            expected = hmac.new(secret, payload, hashlib.sha256).digest()[:16]
            if len(cursor) > 512 or not hmac.compare_digest(tag, expected):
                raise ValueError
            position = msgspec.msgpack.decode(payload, type=Position)
        except (ValueError, binascii.Error, msgspec.DecodeError):
            raise ValidationFailed.field("cursor", "is not a cursor this service issued") from None
        if position.list != list_name:
            raise ValidationFailed.field("cursor", "belongs to another list")
        return position

    async def page(
        self, list_name: str, query: PageQuery, fetch: Callable[[After, int], Awaitable[list[R]]],
        position: Callable[[R], tuple[int, str | int]],
    ) -> tuple[list[R], str | None]:
        """One page of a list sorted by (score, id): the rows after the cursor's position (`fetch`
        asked for one more than the page, to know whether another follows) and the next cursor."""
        after = None
        if query.cursor is not None:
            at = await self.decode(query.cursor, list_name)
            after = (at.score, at.id)
        rows = await fetch(after, query.limit + 1)
        shown, next_cursor = rows[: query.limit], None
        if len(rows) > query.limit:
            score, last = position(shown[-1])
            next_cursor = await self.encode(Position(list_name, score, str(last)))
        return shown, next_cursor


def numeric(after: After) -> tuple[int, int] | None:
    """`after` for a list whose ids are numbers (the cursor carries every id as a string)."""
    return None if after is None else (after[0], int(after[1]))


class PageQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The query string of every list endpoint; any other parameter is refused."""

    limit: Limit = DEFAULT_LIMIT
    cursor: str | None = None  # a cursor this service issued (`nextCursor`); empty means none


def page_query(params: Mapping[str, str]) -> PageQuery:
    query = decode_query(params, PageQuery)
    return msgspec.structs.replace(query, cursor=None) if query.cursor == "" else query
