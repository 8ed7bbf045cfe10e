"""What a turn's webhook events cost: Redis round trips and CPU per turn, with the events written
(and drained by the relay running in the same process) against the same turns written without them.

    .venv/bin/python -m bench.webhook_cost            # Redis at $REDIS_URL, else 127.0.0.1:6379

The app runs in this process (tests/in_process.py), on a random key prefix deleted at the end; the
agent answers with the offline `local` model, so the turn itself is cheap and differences show. The
"without" blocks write the turn with empty event slots (`turn_events` swapped for three Nones: the
script then enqueues nothing). CPU is `time.process_time` (app, relay and client) over alternating
blocks of turns, the first block of each a warm-up; the relay's share is included because it runs
here. "subscribed" adds a webhook that wants message.sent of another agent: the relay then fans
each event out through its script instead of dropping it in bulk.
"""

from __future__ import annotations

import logging
import os
import secrets
import statistics
import time
from typing import Any

import msgspec
import redis

import chatspark.store.conversations as conversations
from bench.widget_cost import _agent, _client, _count_round_trips, _key
from chatspark.config import load_config
from chatspark.store.layout import Layout
from chatspark.web import create_app
from tests.in_process import InProcessApp

BLOCKS, TURNS = 6, 300


def main() -> None:
    logging.disable(logging.CRITICAL)
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"csbench-events-{secrets.token_hex(4)}"
    config = load_config(environ={})
    config = msgspec.structs.replace(
        config, store=msgspec.structs.replace(config.store, url=url, prefix=prefix),
        webhooks=msgspec.structs.replace(config.webhooks, allow_private_urls=True),
    )
    produce = conversations.turn_events
    round_trips = _count_round_trips()
    app = InProcessApp(create_app(config)).start()
    client = redis.Redis.from_url(url)
    outbox = Layout(prefix).webhook_outbox()
    try:
        key = _key(config, None)
        with _client(app, key) as api:
            agent = _agent(api)
            other = _agent(api)
            turn = lambda: api.post(f"/api/v1/agents/{agent}/chat", json={"message": "When are you open?"})  # noqa: E731
            modes = {"without events": lambda *a: [None, None, None], "with events": produce}
            print("Redis round trips per new-conversation turn (counted in this process: the relay's wake-up read included):")
            for name, events in modes.items():
                conversations.turn_events = events  # type: ignore[assignment]
                print(f"  {name}: {round_trips(turn)}")
            cpu: dict[str, list[float]] = {name: [] for name in modes}
            cpu["with events, subscribed"] = []
            for block in range(BLOCKS):
                order = list(modes) if block % 2 == 0 else list(reversed(modes))
                for name in order:
                    conversations.turn_events = modes[name]  # type: ignore[assignment]
                    cpu[name].append(_block(turn, client, outbox))
            made = api.post("/api/v1/webhooks", json={"name": "other", "url": "https://127.0.0.1:9/x",
                                                      "events": ["message.sent"], "agentIds": [other]})
            assert made.status_code == 201, made.text
            conversations.turn_events = produce  # type: ignore[assignment]
            for _ in range(BLOCKS):
                cpu["with events, subscribed"].append(_block(turn, client, outbox))
        print(f"CPU per JSON turn (app + relay + client), median of {BLOCKS - 1} blocks of {TURNS}:")
        base = statistics.median(cpu["without events"][1:])
        for name, blocks in cpu.items():
            value = statistics.median(blocks[1:])
            print(f"  {name:<26} {value:.3f} ms  ({value / base:.2f}x)")
    finally:
        conversations.turn_events = produce  # type: ignore[assignment]
        app.stop()
        for stored in client.scan_iter(match=f"*{prefix}*", count=1000):
            client.delete(stored)
        client.close()


def _block(turn: Any, client: redis.Redis, outbox: str) -> float:
    """ms of CPU per turn for a block, counted until the relay has drained the outbox."""
    started = time.process_time()
    for _ in range(TURNS):
        answer = turn()
        assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 30
    while client.xlen(outbox) and time.monotonic() < deadline:
        time.sleep(0.005)
    return (time.process_time() - started) / TURNS * 1000


if __name__ == "__main__":
    main()
