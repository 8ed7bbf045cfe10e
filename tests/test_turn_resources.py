"""A turn's lease and credit have one owner: given back exactly once however the turn ends."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import anyio
import pytest

from chatspark.apikeys import Principal
from chatspark.config import LimitsConfig, StoreConfig
from chatspark.credits import Credits
from chatspark.leases import LeaseKeeper
from chatspark.store import Store
from chatspark.store.connection import connect
from chatspark.store.layout import Layout
from chatspark.store.leases import Lease
from chatspark.turn import TurnResources

pytestmark = pytest.mark.anyio


@pytest.fixture
async def parts(redis_url, key_prefix):  # type: ignore[no-untyped-def]
    config = StoreConfig(url=redis_url, prefix=key_prefix)
    store = Store(connect(config), config)
    keeper = LeaseKeeper(store.leases, config.lease_seconds)
    yield store, keeper, Credits(store, LimitsConfig())
    await store.aclose()


def caller() -> Principal:
    return Principal(key_id="key_t", mode="test", scopes=frozenset(), agents=None, key_hash=secrets.token_hex(8), monthly_cap=3)


def counters(store: Store, raw_redis, principal: Principal) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    used, held = Layout(store.config.prefix).credits(principal.key_hash, f"{datetime.now(UTC):%Y-%m}")
    return int(raw_redis.get(used) or 0), raw_redis.zcard(held)


async def held_turn(store, keeper, credits, principal):  # type: ignore[no-untyped-def]
    resources = TurnResources(store, keeper, credits)
    await resources.hold_credit(principal)
    lease = Lease("conversation", secrets.token_urlsafe(24))
    await store.leases.take(lease)
    resources.hold_lease(lease)
    return resources, lease


async def test_a_turn_that_ends_without_storing_gives_both_back_once(parts, raw_redis):  # type: ignore[no-untyped-def]
    store, keeper, credits = parts
    principal = caller()
    resources, lease = await held_turn(store, keeper, credits, principal)
    assert counters(store, raw_redis, principal) == (0, 1)
    await resources.release()
    assert counters(store, raw_redis, principal) == (0, 0)
    assert raw_redis.exists(store.leases.key(lease)) == 0 and keeper._held == {}
    # Another turn takes the conversation; a second release must not touch its lease.
    successor = Lease("conversation", lease.name)
    await store.leases.take(successor)
    await resources.release()
    assert raw_redis.get(store.leases.key(lease)).decode() == successor.token


async def test_a_stored_turn_is_charged_and_its_lease_not_released_again(parts, raw_redis):  # type: ignore[no-untyped-def]
    store, keeper, credits = parts
    principal = caller()
    resources, lease = await held_turn(store, keeper, credits, principal)
    await store.leases.release(lease)  # what the turn's write does inside its script
    successor = Lease("conversation", lease.name)
    await store.leases.take(successor)
    await resources.stored()
    await resources.release()
    assert counters(store, raw_redis, principal) == (1, 0)
    assert raw_redis.get(store.leases.key(lease)).decode() == successor.token


async def test_a_cancelled_turn_still_gives_both_back(parts, raw_redis):  # type: ignore[no-untyped-def]
    store, keeper, credits = parts
    principal = caller()
    resources, lease = await held_turn(store, keeper, credits, principal)
    with anyio.CancelScope() as scope:
        scope.cancel()  # the client went away: release runs under a cancelled scope
        await resources.release()
    assert counters(store, raw_redis, principal) == (0, 0)
    assert raw_redis.exists(store.leases.key(lease)) == 0
