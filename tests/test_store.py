"""The conversation store against a real Redis: atomic, idempotent, capped, expiring writes."""

from __future__ import annotations

import secrets

import msgspec
import pytest
from redis.crc import key_slot

from chatspark.config import StoreConfig
from chatspark.store.layout import Layout
from chatspark.store import Store
from chatspark.store.connection import connect
from chatspark.store.conversations import StoredTurn
from chatspark.store.errors import ConversationGone, LeaseTaken, StoreUnavailable
from chatspark.store.leases import Lease

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(redis_url, key_prefix):  # type: ignore[no-untyped-def]
    s = Store(connect(StoreConfig(url=redis_url, prefix=key_prefix, max_turns=5)), StoreConfig(url=redis_url, prefix=key_prefix, max_turns=5))
    yield s
    await s.aclose()


def turn(n: int) -> StoredTurn:
    return StoredTurn(id=f"msg_{n}_{secrets.token_hex(4)}", user_id=f"msg_u{n}", query=f"q{n}", response=f"r{n}", model="local", created=1_700_000_000_000 + n)


def cid() -> str:
    return secrets.token_urlsafe(24)


async def test_a_retried_write_stores_the_turn_once(store):  # type: ignore[no-untyped-def]
    conversation, first = cid(), turn(1)
    assert (await store.conversations.append(conversation, 1, first, ttl_seconds=60, new=True)).stored
    again = await store.conversations.append(conversation, 1, first, ttl_seconds=60, new=True)
    assert not again.stored and again.turn_count == 1
    loaded = await store.conversations.load(conversation, 10)
    assert loaded is not None and [t.id for t in loaded.recent_turns] == [first.id]


async def test_turns_beyond_the_cap_drop_the_oldest_and_their_ids(store, raw_redis):  # type: ignore[no-untyped-def]
    conversation = cid()
    written = [turn(n) for n in range(8)]
    for n, t in enumerate(written):
        await store.conversations.append(conversation, 1, t, ttl_seconds=60, new=n == 0)
    loaded = await store.conversations.load(conversation, 100)
    assert [t.id for t in loaded.recent_turns] == [t.id for t in written[-5:]]
    assert loaded.turn_count == 8
    _, _, tids = Layout(store.config.prefix).conversation(conversation)
    assert {m.decode() for m in raw_redis.smembers(tids)} == {t.id for t in written[-5:]}


async def test_load_returns_only_the_recent_window_oldest_first(store):  # type: ignore[no-untyped-def]
    conversation = cid()
    written = [turn(n) for n in range(4)]
    for n, t in enumerate(written):
        await store.conversations.append(conversation, 7, t, ttl_seconds=60, new=n == 0)
    loaded = await store.conversations.load(conversation, 2)
    assert [t.query for t in loaded.recent_turns] == ["q2", "q3"]
    assert loaded.agent_id == 7 and loaded.ttl_seconds == 60


async def test_every_conversation_key_has_the_ttl_and_one_hash_tag(store, raw_redis):  # type: ignore[no-untyped-def]
    conversation = cid()
    await store.conversations.append(conversation, 1, turn(1), ttl_seconds=321, new=True)
    keys = Layout(store.config.prefix).conversation(conversation)
    for key in keys:
        assert 315 <= raw_redis.ttl(key) <= 321
        assert f"{{{conversation}}}" in key
    assert len({key_slot(k.encode()) for k in keys}) == 1


async def test_a_continued_conversation_that_vanished_is_not_recreated(store, raw_redis):  # type: ignore[no-untyped-def]
    conversation = cid()
    with pytest.raises(ConversationGone):
        await store.conversations.append(conversation, 1, turn(1), ttl_seconds=60, new=False)
    assert not any(raw_redis.exists(k) for k in Layout(store.config.prefix).conversation(conversation))


async def test_a_write_never_lands_in_another_agents_conversation(store):  # type: ignore[no-untyped-def]
    conversation = cid()
    await store.conversations.append(conversation, 1, turn(1), ttl_seconds=60, new=True)
    with pytest.raises(ConversationGone):
        await store.conversations.append(conversation, 2, turn(2), ttl_seconds=60, new=False)
    loaded = await store.conversations.load(conversation, 10)
    assert len(loaded.recent_turns) == 1


async def test_an_unreachable_redis_is_store_unavailable_quickly(key_prefix):  # type: ignore[no-untyped-def]
    from tests.conftest import free_port

    config = StoreConfig(url=f"redis://127.0.0.1:{free_port()}/0", prefix=key_prefix)
    dead = Store(connect(config), config)
    with pytest.raises(StoreUnavailable):
        await dead.conversations.load(cid(), 5)
    with pytest.raises(StoreUnavailable):
        await dead.conversations.append(cid(), 1, turn(1), ttl_seconds=60, new=True)
    await dead.aclose()


async def test_the_embedded_store_runs_the_same_scripts(key_prefix):  # type: ignore[no-untyped-def]
    config = StoreConfig(url="memory://", prefix=key_prefix, max_turns=2)
    twin = Store(connect(config), config)
    assert twin.embedded
    conversation = cid()
    for n in range(3):
        await twin.conversations.append(conversation, 1, turn(n), ttl_seconds=60, new=n == 0)
    loaded = await twin.conversations.load(conversation, 10)
    assert [t.query for t in loaded.recent_turns] == ["q1", "q2"]
    await twin.aclose()


def test_conversation_keys_share_a_hash_tag_and_carry_the_prefix():  # type: ignore[no-untyped-def]
    layout = Layout("p")
    assert layout.conversation("abc") == ("p:conv:{abc}", "p:conv:{abc}:turns", "p:conv:{abc}:tids")


async def test_listing_pages_through_ties_on_the_creation_time_exactly_once(store):  # type: ignore[no-untyped-def]
    agent = 900_000 + secrets.randbelow(99_999)
    made = set()
    for n in range(30):  # all created in the same millisecond: only the id orders them
        conversation = cid()
        await store.conversations.append(conversation, agent, turn(0), ttl_seconds=60, new=True)
        made.add(conversation)
    seen: list[str] = []
    after = None
    while True:
        rows = await store.conversation_index.list(agent, after, 7)
        seen += [r.id for r in rows]
        if len(rows) < 7:
            break
        after = (rows[-1].created, rows[-1].id)
    assert len(seen) == 30 and set(seen) == made
    assert seen == sorted(seen, reverse=True)
    assert await store.conversation_index.delete_all(agent) == 30


async def test_expired_conversations_leave_the_index_at_the_next_write(store, raw_redis):  # type: ignore[no-untyped-def]
    from chatspark.clock import now_ms

    agent = 900_000 + secrets.randbelow(99_999)
    expired = cid()
    await store.conversations.append(expired, agent, turn(0), ttl_seconds=60, new=True)  # created in 2023
    fresh = msgspec.structs.replace(turn(1), created=now_ms())
    live = cid()
    await store.conversations.append(live, agent, fresh, ttl_seconds=60, new=True)
    index, expiry = Layout(store.config.prefix).agent_conversations(agent), Layout(store.config.prefix).agent_conversation_expiry(agent)
    assert [m.decode() for m in raw_redis.zrange(index, 0, -1)] == [live]
    assert [m.decode() for m in raw_redis.zrange(expiry, 0, -1)] == [live]
    await store.conversation_index.delete_all(agent)
    assert raw_redis.exists(index, expiry) == 0


async def test_a_continuing_turn_moves_the_expiry_but_never_revives_a_deleted_one(store, raw_redis):  # type: ignore[no-untyped-def]
    from chatspark.clock import now_ms

    agent = 900_000 + secrets.randbelow(99_999)
    conversation = cid()
    first = msgspec.structs.replace(turn(1), created=now_ms())
    await store.conversations.append(conversation, agent, first, ttl_seconds=60, new=True)
    expiry = Layout(store.config.prefix).agent_conversation_expiry(agent)
    assert raw_redis.zscore(expiry, conversation) == first.created + 60_000
    later = msgspec.structs.replace(turn(2), created=first.created + 5_000)
    await store.conversations.append(conversation, agent, later, ttl_seconds=60, new=False)
    assert raw_redis.zscore(expiry, conversation) == later.created + 60_000
    assert await store.conversations.delete(conversation, agent)
    with pytest.raises(ConversationGone):
        await store.conversations.append(conversation, agent, turn(3), ttl_seconds=60, new=False)
    assert raw_redis.zscore(expiry, conversation) is None


async def test_a_turn_whose_lease_was_taken_over_is_fenced_off(store, raw_redis):  # type: ignore[no-untyped-def]
    conversation = cid()
    await store.conversations.append(conversation, 1, turn(1), ttl_seconds=60, new=True)
    slow, next_turn = Lease("conversation", conversation, "slow-turn"), Lease("conversation", conversation, "next-turn")
    assert await store.conversations.load(conversation, 5, lease=slow) is not None
    raw_redis.set(Layout(store.config.prefix).lease(conversation), "next-turn")  # the slow turn's lease lapsed and was taken
    with pytest.raises(LeaseTaken):
        await store.conversations.append(conversation, 1, turn(2), ttl_seconds=60, new=False, lease=slow)
    loaded = await store.conversations.load(conversation, 5)
    assert [t.query for t in loaded.recent_turns] == ["q1"]
    await store.conversations.append(conversation, 1, turn(3), ttl_seconds=60, new=False, lease=next_turn)
    assert raw_redis.exists(Layout(store.config.prefix).lease(conversation)) == 0  # the write gave the lease up


async def test_renewing_keeps_only_leases_still_held(store, raw_redis):  # type: ignore[no-untyped-def]
    held, lost = Lease("conversation", cid(), "mine"), Lease("conversation", cid(), "mine")
    layout = Layout(store.config.prefix)
    raw_redis.set(layout.lease(held.name), "mine", px=1000)
    raw_redis.set(layout.lease(lost.name), "someone-else", px=1000)
    assert await store.leases.renew([held, lost]) == [True, False]
    assert raw_redis.pttl(layout.lease(held.name)) > 1000


async def test_more_concurrent_commands_than_connections_wait_instead_of_failing(redis_url, key_prefix):  # type: ignore[no-untyped-def]
    import anyio

    config = StoreConfig(url=redis_url, prefix=key_prefix, max_connections=10)
    small = Store(connect(config), config)
    failures = []

    async def read() -> None:
        try:
            await small.conversations.load(cid(), 5)
        except StoreUnavailable as exc:
            failures.append(exc)

    try:
        async with anyio.create_task_group() as tasks:
            for _ in range(200):
                tasks.start_soon(read)
    finally:
        await small.aclose()
    assert failures == []
