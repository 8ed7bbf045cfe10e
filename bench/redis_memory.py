"""Redis memory per conversation, per stored turn and per knowledge chunk, measured on a private
redis-server started here (nothing else in it): `used_memory` before and after.

    .venv/bin/python -m bench.redis_memory

Turns go through the app in this process (tests/in_process.py) with the offline `local` model, so
each stores the message, a short answer and the turn's metadata (ids, model, tokens, times); a
provider's longer answers take their text's length more. Chunks come from text sources of
paragraphs of ~120 words, each with its 256-d vector (float32), as the shipped embedder stores them.
"""

from __future__ import annotations

import logging
import secrets
import time

import msgspec
import redis

from bench.widget_cost import _agent, _client, _key
from chatspark.config import load_config
from chatspark.web import create_app
from tests.faults.harness import PrivateRedis
from tests.in_process import InProcessApp

CONVERSATIONS, TURNS = 200, 10
SOURCES, PARAGRAPHS = 5, 40

WORDS = ("lamp bridge colour scene routine dimmer sensor firmware update account warranty invoice refund "
         "delivery order return exchange sizing boot jacket tent stove battery charge pairing reset").split()


def main() -> None:
    logging.disable(logging.CRITICAL)
    private = PrivateRedis().start()
    try:
        raw = redis.Redis.from_url(private.url)
        config = load_config(environ={})
        config = msgspec.structs.replace(
            config, store=msgspec.structs.replace(config.store, url=private.url, prefix="csmem"),
            knowledge=msgspec.structs.replace(config.knowledge, seed=[]),
        )
        app = InProcessApp(create_app(config)).start()
        try:
            key = _key(config, None)
            with _client(app, key) as http:
                agent = _agent(http)
                time.sleep(1)
                base = used(raw)
                cids = []
                for _ in range(CONVERSATIONS):
                    answer = http.post(f"/api/v1/agents/{agent}/chat", json={"message": "When are you open on Sundays?"})
                    cids.append(answer.json()["conversationId"])
                first = used(raw)
                for cid in cids:
                    for _ in range(TURNS - 1):
                        http.post(f"/api/v1/agents/{agent}/chat",
                                  json={"message": "And what about public holidays?", "conversationId": cid})
                more = used(raw)
                chance = secrets.SystemRandom()
                for n in range(SOURCES):
                    text = "\n\n".join(f"## Topic {n}-{p}\n\n" + " ".join(chance.choice(WORDS) for _ in range(120))
                                       for p in range(PARAGRAPHS))
                    added = http.post(f"/api/v1/agents/{agent}/training",
                                      json={"source": f"doc-{n}", "type": "text", "data": text})
                    assert added.status_code == 201, added.text
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    listed = http.get(f"/api/v1/agents/{agent}/training").json()["sources"]
                    if all(s["status"] in ("completed", "failed") for s in listed) and len(listed) == SOURCES:
                        break
                    time.sleep(0.5)
                chunks = sum(s["dataCount"] or 0 for s in listed)
                trained = used(raw)
        finally:
            app.stop()
        per_conversation = (first - base) / CONVERSATIONS
        per_turn = (more - first) / (CONVERSATIONS * (TURNS - 1))
        print(f"Redis memory (used_memory deltas, redis-server {raw.info('server')['redis_version']}):")
        print(f"  a new conversation with its first turn: {per_conversation / 1024:.2f} KB "
              f"(the conversation's keys, its index entries, analytics, webhook events relayed)")
        print(f"  each further stored turn: {per_turn / 1024:.2f} KB")
        print(f"  a knowledge chunk (text, metadata, 256-d vector): {(trained - more) / max(chunks, 1) / 1024:.2f} KB "
              f"({chunks} chunks)")
    finally:
        private.stop()


def used(raw: redis.Redis) -> int:
    time.sleep(0.3)  # the relay drains the events of the last writes
    return int(raw.info("memory")["used_memory"])


if __name__ == "__main__":
    main()
