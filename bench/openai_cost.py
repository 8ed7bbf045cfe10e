"""What a turn through the OpenAI-compatible endpoint costs next to a native one: Redis round trips and CPU.

    .venv/bin/python -m bench.openai_cost            # Redis at $REDIS_URL, else 127.0.0.1:6379

Measured as bench/widget_cost.py measures the widget: the app in this process (no socket: the CPU
is the app's and the client's), a random key prefix deleted at the end, round trips counted at the
store's one seam, CPU as `time.process_time` over alternating blocks (the first of each a warm-up),
the offline `local` model so the turn itself is cheap and differences show.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable

import httpx
import msgspec
import redis

from bench.widget_cost import _client, _count_round_trips, _key, cpu_per_call
from chatspark.config import load_config
from chatspark.web import create_app
from tests.in_process import InProcessApp

BLOCKS, TURNS = 6, 300
ASK = "When are you open?"


def main() -> None:
    logging.disable(logging.CRITICAL)
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"csbench-openai-{secrets.token_hex(4)}"
    config = load_config(environ={})
    config = msgspec.structs.replace(config, store=msgspec.structs.replace(config.store, url=url, prefix=prefix))
    counted = _count_round_trips()

    def round_trips(call: Callable[[], httpx.Response]) -> int:
        # The fewest of several: background workers (lease renewal, queue readers) share the seam,
        # and their commands only ever add to a count.
        return min(counted(call) for _ in range(7))

    app = InProcessApp(create_app(config)).start()
    try:
        key = _key(config, None)
        with _client(app, key) as http:
            agent = http.post("/api/v1/agents", json={"name": f"bench-{prefix}", "model": "local"}).json()["agent"]["id"]

            def native(cid: str | None = None, stream: bool = False) -> httpx.Response:
                body = {"message": ASK, "stream": stream, **({"conversationId": cid} if cid else {})}
                return http.post(f"/api/v1/agents/{agent}/chat", json=body)

            def compat(cid: str | None = None, stream: bool = False, model: str = f"agent:{agent}") -> httpx.Response:
                headers = {"chatspark-conversation-id": cid} if cid else {}
                body = {"model": model, "messages": [{"role": "user", "content": ASK}], "stream": stream}
                return http.post("/v1/chat/completions", json=body, headers=headers)

            native_cid = native().json()["conversationId"]
            compat_cid = compat().headers["chatspark-conversation-id"]
            print("Redis round trips per request (OpenAI-compatible | native):")
            print(f"  new turn {round_trips(compat)} | {round_trips(native)}; "
                  f"continued {round_trips(lambda: compat(compat_cid))} | {round_trips(lambda: native(native_cid))}; "
                  f"streamed {round_trips(lambda: compat(stream=True))} | {round_trips(lambda: native(stream=True))}")
            print(f"  model by name: {round_trips(lambda: compat(model=f'bench-{prefix}'))}; "
                  f"GET /v1/models {round_trips(lambda: http.get('/v1/models'))}")
            calls: dict[str, Callable[[], httpx.Response]] = {
                "native JSON": native, "openai JSON": compat,
                "native stream": lambda: native(stream=True), "openai stream": lambda: compat(stream=True),
            }
            print(f"CPU per turn, client and app in one process, median of {BLOCKS - 1} blocks of {TURNS}:")
            for name, ms in cpu_per_call(calls, BLOCKS, TURNS).items():
                print(f"  {name}: {ms:.3f} ms")
        print(f"the translation alone: request decode + checks + JSON answer {_translation_us()[0]:.1f} µs; "
              f"a stream of 8 deltas as chunks {_translation_us()[1]:.1f} µs")
    finally:
        app.stop()
        client = redis.Redis.from_url(url)
        for stored in client.scan_iter(match=f"*{prefix}*", count=1000):
            client.delete(stored)
        client.close()


def _translation_us(rounds: int = 5_000) -> tuple[float, float]:
    """What the OpenAI layer adds per turn without the turn: the request's decode and checks, the
    answer's shape; and the native frames of a stream of 8 deltas turned into chunks."""
    import asyncio

    from backends.base import TokenUsage
    from chatspark.api.openai_compat import _chunks
    from chatspark.openai_wire import ChatCompletionRequest, completion, split_messages, unsupported
    from chatspark.schemas import ChatResponse, ContextReport, StreamDelta, StreamDone, decode_body
    from chatspark.turn_events import frame

    body = msgspec.json.encode({"model": "agent:1", "messages": [{"role": "system", "content": "Be brief."},
                                                                 {"role": "user", "content": ASK}]})
    usage, context = TokenUsage(20, 12), ContextReport(turns_included=0, turns_dropped=0, history_tokens=0)
    answer = ChatResponse(text="We are open.", reply="We are open.", conversation_id="c" * 32, model="local",
                          message_id="msg_" + "m" * 22, usage=usage, expires_at="2026-01-01T00:00:00.000Z",
                          context=context)
    encode = msgspec.json.Encoder().encode
    started = time.perf_counter()
    for _ in range(rounds):
        request = decode_body(body, ChatCompletionRequest)
        unsupported(request)
        split_messages(request.messages)
        encode(completion(answer, "agent:1", 0))
    json_us = (time.perf_counter() - started) / rounds * 1e6
    frames = [frame(i + 1, encode(StreamDelta(delta="word ", conversation_id="c" * 32))) for i in range(8)]
    frames += [frame(9, encode(StreamDone(delta="", conversation_id="c" * 32, done=True, message_id="msg_x",
                                          model="local", usage=usage, expires_at="x", context=context))),
               frame(10, b"[DONE]")]

    async def source():  # type: ignore[no-untyped-def]
        for f in frames:
            yield f

    async def run() -> float:
        started = time.perf_counter()
        for _ in range(rounds // 5):
            async for _ in _chunks(source(), "chatcmpl-x", "agent:1", 0, True):
                pass
        return (time.perf_counter() - started) / (rounds // 5) * 1e6

    return json_us, asyncio.run(run())


if __name__ == "__main__":
    main()
