"""What a widget turn costs next to a native one: Redis round trips and CPU.

    .venv/bin/python -m bench.widget_cost            # Redis at $REDIS_URL, else 127.0.0.1:6379

The app runs in this process (tests/in_process.py: no socket, so the CPU measured is the app's and
the client's, nothing else), on a random key prefix deleted at the end. Round trips are counted at
the store's one seam (`Connection._call`: every command, pipeline and script goes through it). CPU is
`time.process_time` over alternating blocks of turns (the first block of each is a warm-up). The
agent answers with the offline `local` model, so the turn itself is cheap and differences show.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import msgspec
import redis

from chatspark.agents import Agent
from chatspark.apikeys import mint_key
from chatspark.config import load_config
from chatspark.store import Store
from chatspark.store.connection import Connection, connect
from chatspark.visitors import Visitors
from chatspark.web import create_app
from tests.in_process import BASE_URL, InProcessApp

ORIGIN = "https://shop.example"
BLOCKS, TURNS = 6, 300


def main() -> None:
    logging.disable(logging.CRITICAL)
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"csbench-widget-{secrets.token_hex(4)}"
    config = load_config(environ={})
    unlimited = msgspec.structs.replace(config.widget, visitor_rate_per_minute=10**6, address_rate_per_minute=10**6)
    config = msgspec.structs.replace(config, widget=unlimited,
                                     store=msgspec.structs.replace(config.store, url=url, prefix=prefix))
    round_trips = _count_round_trips()
    app = InProcessApp(create_app(config)).start()
    try:
        key, capped_key = _key(config, None), _key(config, 10**6)
        with _client(app, key) as admin:
            free = _agent(admin, widgetMonthlyCap=0)
            capped = _agent(admin, widgetMonthlyCap=10**6)
        with _client(app) as browser, _client(app, key) as native, _client(app, capped_key) as native_capped:
            print("Redis round trips per request (widget | native):")
            for agent, label, server_api in ((free, "no cap  ", native), (capped, "with cap", native_capped)):
                visitor = _visitor(browser, agent)
                widget_turn = lambda cid=None: browser.post(  # noqa: E731
                    f"/api/v1/widget/{agent}/chat", json={"message": "hi", **({"conversationId": cid} if cid else {})},
                    headers=visitor)
                native_turn = lambda cid=None: server_api.post(  # noqa: E731
                    f"/api/v1/agents/{agent}/chat", json={"message": "hi", **({"conversationId": cid} if cid else {})})
                cid, native_cid = widget_turn().json()["conversationId"], native_turn().json()["conversationId"]
                counts = [round_trips(call) for call in (widget_turn, lambda: widget_turn(cid), native_turn,
                                                         lambda: native_turn(native_cid))]
                print(f"  {label}: new turn {counts[0]} | {counts[2]}; continued {counts[1]} | {counts[3]}")
            session = round_trips(lambda: browser.post(f"/api/v1/widget/{free}/session", json={},
                                                       headers={"origin": ORIGIN}))
            # (the last agent's visitor and conversation)
            listed = round_trips(lambda: browser.get(f"/api/v1/widget/{agent}/conversations/{cid}/messages",
                                                     headers=visitor))
            print(f"  session {session}; messages {listed}")
            visitor = _visitor(browser, free)
            calls = {
                "widget": lambda: browser.post(f"/api/v1/widget/{free}/chat", json={"message": "When are you open?"},
                                               headers=visitor),
                "native": lambda: native.post(f"/api/v1/agents/{free}/chat", json={"message": "When are you open?"}),
            }
            print(f"CPU per JSON turn, client and app in one process, median of {BLOCKS - 1} blocks of {TURNS}:")
            for name, ms in cpu_per_call(calls).items():
                print(f"  {name}: {ms:.3f} ms")
        print(f"the widget's own checks (token, conversation id mint and ownership): {_checks_us():.1f} µs per turn")
    finally:
        app.stop()
        client = redis.Redis.from_url(url)
        for stored in client.scan_iter(match=f"*{prefix}*", count=1000):
            client.delete(stored)
        client.close()


def cpu_per_call(calls: dict[str, Callable[[], httpx.Response]], blocks: int = BLOCKS, turns: int = TURNS) -> dict[str, float]:
    """ms of process CPU per call of each, the median of `blocks` blocks of `turns` calls after a
    warm-up block; the calls alternate block by block (forward, then backward) so drift hits all."""
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    for block in range(blocks):
        for name in calls if block % 2 == 0 else reversed(calls):
            started = time.process_time()
            for _ in range(turns):
                answer = calls[name]()
                assert answer.status_code == 200, answer.text
            cpu[name].append((time.process_time() - started) / turns * 1000)
    return {name: statistics.median(values[1:]) for name, values in cpu.items()}


def _count_round_trips() -> Callable[[Callable[[], httpx.Response]], int]:
    calls = 0
    original = Connection._call  # the one place every command, pipeline and script goes through

    async def counted(self: Connection, command: Callable[[Any], Awaitable[Any]], **options: Any) -> Any:
        nonlocal calls
        calls += 1
        return await original(self, command, **options)

    Connection._call = counted  # type: ignore[method-assign]

    def measure(call: Callable[[], httpx.Response]) -> int:
        nonlocal calls
        calls = 0
        answer = call()
        assert answer.status_code < 300, answer.text
        return calls

    return measure


def _key(config: Any, cap: int | None) -> str:
    plain, record = mint_key("live", rate_limit=10**6, monthly_cap=cap or 0)

    async def put() -> None:
        store = Store(connect(config.store), config.store)
        try:
            await store.keys.put(record)
        finally:
            await store.aclose()

    asyncio.run(put())
    return plain


def _client(app: InProcessApp, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=BASE_URL, transport=app.transport(), timeout=30,
                        headers={"authorization": f"Bearer {key}"} if key else {})


def _agent(admin: httpx.Client, **fields: Any) -> int:
    body = {"name": "bench", "model": "local", "allowedOrigins": [ORIGIN], **fields}
    return admin.post("/api/v1/agents", json=body).json()["agent"]["id"]


def _visitor(browser: httpx.Client, agent: int) -> dict[str, str]:
    token = browser.post(f"/api/v1/widget/{agent}/session", json={}, headers={"origin": ORIGIN}).json()["visitorToken"]
    return {"origin": ORIGIN, "chatspark-visitor": token}


def _checks_us(rounds: int = 20_000) -> float:
    async def secret() -> bytes:
        return secrets.token_bytes(32)

    async def run() -> float:
        visitors = Visitors(secret, 365)
        agent = Agent(id=1, name="bench", allowed_origins=[ORIGIN])
        _, token = await visitors.start(agent, None, None, None)
        started = time.perf_counter()
        for _ in range(rounds):
            conversations = await visitors.conversations(await visitors.check(agent, token))
            conversations.owns(conversations.new_id())
        return (time.perf_counter() - started) / rounds * 1e6

    return asyncio.run(run())


if __name__ == "__main__":
    main()
