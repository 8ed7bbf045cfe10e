"""Per-key limits that hold across replicas: the request rate limit and the monthly cap of turns."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from chatspark.apikeys import Principal, hash_key
from chatspark.config import LimitsConfig, StoreConfig
from chatspark.credits import Credits
from chatspark.store.errors import StoreUnavailable
from chatspark.store.layout import Layout
from chatspark.store import Store
from chatspark.store.connection import connect
from tests.fake_openai import error, slow

AGENTS = "/api/v1/agents"


def month() -> str:
    return f"{datetime.now(UTC):%Y-%m}"


def test_two_processes_let_exactly_the_limit_through(live_server, fake_openai, spawn_server):  # type: ignore[no-untyped-def]
    server = live_server  # on a socket: the answers' ports tell which process gave each
    other = spawn_server(fake_openai.base_url)
    key = server.key(rate_limit=60)
    targets = [server, other] * 50

    def call(target):  # type: ignore[no-untyped-def]
        with target.client(key) as http:
            return http.get(AGENTS)

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(call, targets))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 60 and statuses.count(429) == 40
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert refused.json()["error"]["retryable"] is True
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["x-ratelimit-limit"] == "60"
    # Both processes took part.
    assert {a.url.port for a in answers if a.status_code == 200} == {server.port, other.port}


def test_rate_headers_count_down_on_every_authenticated_response(server):  # type: ignore[no-untyped-def]
    key = server.key(rate_limit=10)
    with server.client(key) as http:
        seen = [http.get(AGENTS) for _ in range(3)]
        stream = http.post(f"{AGENTS}/1/chat", json={"message": "When are you open?", "stream": True})
        denied = http.get(f"{AGENTS}/999999")
    assert [r.headers["x-ratelimit-remaining"] for r in seen] == ["9", "8", "7"]
    assert stream.headers["x-ratelimit-remaining"] == "6"
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert denied.status_code == 404 and denied.headers["x-ratelimit-remaining"] == "5"
    for response in [*seen, stream, denied]:
        assert response.headers["x-ratelimit-limit"] == "10"
        assert 0 < int(response.headers["x-ratelimit-reset"]) <= 60
        assert response.headers["chatspark-mode"] == "live"
    with server.client(server.key("test")) as http:
        assert http.get(AGENTS).headers["chatspark-mode"] == "test"
    with server.client("cs_live_" + "x" * 40) as http:
        assert "x-ratelimit-limit" not in http.get(AGENTS).headers


def test_the_rate_log_expires_with_its_window(server, raw_redis):  # type: ignore[no-untyped-def]
    plain = server.key(rate_limit=5)
    with server.client(plain) as http:
        http.get(AGENTS)
    ttl = raw_redis.pttl(Layout(server.config.store.prefix).rate_log(hash_key(plain)))
    assert 0 < ttl <= 60_000


def test_a_cap_of_five_with_twenty_concurrent_turns_stores_and_charges_exactly_five(server, raw_redis, fake_openai):  # type: ignore[no-untyped-def]
    plain = server.key("test", monthly_cap=5)
    fake_openai.enqueue(*[slow(0.3) for _ in range(20)])

    def turn(n: int):  # type: ignore[no-untyped-def]
        with server.client(plain) as http:
            return http.post(f"{AGENTS}/2/chat", json={"message": f"turn {n}"})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(turn, range(20)))
    ok = [a for a in answers if a.status_code == 200]
    assert len(ok) == 5
    refused = [a for a in answers if a.status_code != 200]
    assert {a.status_code for a in refused} == {402}
    assert {a.json()["error"]["code"] for a in refused} == {"CREDITS_EXHAUSTED"}
    assert len(fake_openai.requests) == 5
    used, held = Layout(server.config.store.prefix).credits(hash_key(plain), month())
    assert int(raw_redis.get(used)) == 5
    assert raw_redis.zcard(held) == 0
    for answer in ok:  # each one really stored
        _, turns, _ = Layout(server.config.store.prefix).conversation(answer.json()["conversationId"])
        assert raw_redis.llen(turns) == 1
    assert 0 < raw_redis.ttl(used) <= 93 * 86400


def test_failed_turns_and_replays_are_not_charged(server, raw_redis, fake_openai):  # type: ignore[no-untyped-def]
    plain = server.key("test", monthly_cap=2)
    used, _ = Layout(server.config.store.prefix).credits(hash_key(plain), month())
    with server.client(plain) as http:
        fake_openai.enqueue(error(500))
        assert http.post(f"{AGENTS}/2/chat", json={"message": "fails"}).status_code == 502
        assert raw_redis.get(used) is None
        key = {"Idempotency-Key": secrets.token_hex(8)}
        assert http.post(f"{AGENTS}/2/chat", json={"message": "once"}, headers=key).status_code == 200
        replay = http.post(f"{AGENTS}/2/chat", json={"message": "once"}, headers=key)
        assert replay.headers["idempotent-replayed"] == "true"
        assert int(raw_redis.get(used)) == 1
        assert http.post(f"{AGENTS}/1/chat", json={"message": "two"}).status_code == 200
        over = http.post(f"{AGENTS}/1/chat", json={"message": "three"})
        assert over.status_code == 402 and over.json()["error"]["code"] == "CREDITS_EXHAUSTED"
        assert over.json()["error"]["retryable"] is False
        assert http.post(f"{AGENTS}/2/chat", json={"message": "once"}, headers=key).status_code == 200  # replays still work
    assert int(raw_redis.get(used)) == 2


def test_test_keys_take_the_test_default_cap_and_live_keys_none(server, raw_redis):  # type: ignore[no-untyped-def]
    plain = server.key("test", monthly_cap=None)
    with server.client(plain) as http:
        assert http.post(f"{AGENTS}/1/chat", json={"message": "hi"}).status_code == 200
    used, _ = Layout(server.config.store.prefix).credits(hash_key(plain), month())
    assert int(raw_redis.get(used)) == 1  # counted against the default test cap (100)
    live = server.key("live", monthly_cap=None)
    with server.client(live) as http:
        assert http.post(f"{AGENTS}/1/chat", json={"message": "hi"}).status_code == 200
    assert raw_redis.get(Layout(server.config.store.prefix).credits(hash_key(live), month())[0]) is None


@pytest.mark.anyio
@pytest.mark.parametrize(("setting", "outcome"), [("closed", "503"), ("open", "runs uncounted")])
async def test_when_the_store_cannot_count_the_setting_decides(unreachable_redis_url, setting, outcome):  # type: ignore[no-untyped-def]
    config = StoreConfig(url=unreachable_redis_url, connect_timeout_seconds=0.2)
    store = Store(connect(config), config)
    credits = Credits(store, LimitsConfig(on_store_error=setting))
    caller = Principal(key_id="key_x", mode="test", scopes=frozenset(), agents=None, key_hash="h", monthly_cap=5)
    try:
        if setting == "closed":
            with pytest.raises(StoreUnavailable):
                await credits.hold(caller)
        else:
            assert await credits.hold(caller) is None
        assert credits.store_errors == 1
    finally:
        await store.aclose()



@pytest.mark.anyio
async def test_a_charge_sent_with_a_write_that_is_fenced_off_is_taken_back_and_a_resent_one_counts_once(redis_url, key_prefix) -> None:  # type: ignore[no-untyped-def]
    """The charge rides the turn's write: if the write is refused (its lease taken by another turn)
    the credit is not spent; resent with an accepted write (a retry), it is spent once."""
    from chatspark.store.credits import Charge, CreditAccount
    from chatspark.store.errors import LeaseTaken
    from chatspark.store.leases import Lease

    config = StoreConfig(url=redis_url, prefix=f"{key_prefix}-charge")
    store = Store(connect(config), config)
    layout = Layout(config.prefix)
    account, period = CreditAccount("key", secrets.token_hex(8)), month()
    used, held = layout.credits(account.owner, period)
    try:
        async def turn(cid: str, lease: Lease) -> None:
            token = secrets.token_hex(6)
            assert await store.credits.hold(account, period, 10, token, 60_000)
            stored = _stored_turn()
            charge = Charge(account, period, token, 3600)
            await store.conversations.append(cid, 9, stored, ttl_seconds=60, new=True, lease=lease, charge=charge)
            again = await store.conversations.append(cid, 9, stored, ttl_seconds=60, new=True, lease=lease, charge=charge)
            assert not again.stored  # the write retried: stored and charged once

        fenced = secrets.token_urlsafe(24)
        await store.redis.run(lambda r: r.set(layout.lease(fenced), "another-turn"))
        with pytest.raises(LeaseTaken):
            await turn(fenced, Lease("conversation", fenced))
        assert int(await store.redis.run(lambda r: r.get(used)) or 0) == 0
        cid = secrets.token_urlsafe(24)
        lease = Lease("conversation", cid)
        await store.redis.run(lambda r: r.set(layout.lease(cid), lease.token))
        await turn(cid, lease)
        assert int(await store.redis.run(lambda r: r.get(used))) == 1
        assert await store.redis.run(lambda r: r.zcard(held)) == 0  # both holds became charges; the fenced one taken back
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_a_charge_that_fails_does_not_fail_the_stored_turn(redis_url, key_prefix) -> None:  # type: ignore[no-untyped-def]
    """The charge rides the write, but a turn Redis stored is stored: a charge the store refuses (here
    its counter holds the wrong type) is logged, and the turn's write succeeds."""
    from chatspark.store.credits import Charge, CreditAccount

    config = StoreConfig(url=redis_url, prefix=f"{key_prefix}-charge-fails")
    store = Store(connect(config), config)
    layout = Layout(config.prefix)
    account, period = CreditAccount("key", secrets.token_hex(8)), month()
    used, _ = layout.credits(account.owner, period)
    try:
        token = secrets.token_hex(6)
        assert await store.credits.hold(account, period, 10, token, 60_000)
        await store.redis.run(lambda r: r.hset(used, "not", "a counter"))
        result = await store.conversations.append(secrets.token_urlsafe(24), 9, _stored_turn(), ttl_seconds=60, new=True,
                                                  charge=Charge(account, period, token, 3600))
        assert result.stored
    finally:
        await store.aclose()


def _stored_turn():  # type: ignore[no-untyped-def]
    """A minimal turn for the store's charge tests (one id each)."""
    from chatspark.store.conversations import StoredTurn  # noqa: PLC0415

    now = int(datetime.now(UTC).timestamp() * 1000)
    return StoredTurn(id="msg_" + secrets.token_hex(8), user_id="msg_u", query="q", response="r", model="m",
                      created=now)
