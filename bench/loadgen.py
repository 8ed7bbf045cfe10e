"""The load generator, run as its own process: reads one JSON job on stdin, writes one JSON result
to the job's `result_path`.

Modes: `paired` (one at a time, alternating direct-to-fake and through-the-target), `closed`
(N connections back to back), `open` (a fixed arrival rate; latency counted from the scheduled
send time, so a stalled server cannot hide queueing), `streams` (N streams held open at once) and
`seed` (conversations with history). While it runs it prints `MARK <name>` lines when a measured
window opens and closes, so the runner can read CPU, RSS and Redis counters at those moments.

Each connection owns its conversation, so no two requests of one conversation are ever in flight.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

from bench.client import Connection, Endpoint, Reply

Job = dict[str, Any]


def mark(name: str) -> None:
    print(f"MARK {name}", flush=True)


def endpoint(spec: Job) -> Endpoint:
    return Endpoint(spec["host"], spec["port"], spec["path"], spec.get("headers", {}))


def requests_for(spec: Job, count: int) -> list[bytes]:
    """Request bytes for each of `count` connections: one conversation per connection when given."""
    ep, body, conversations = endpoint(spec), spec["body"], spec.get("conversations") or []
    if not conversations:
        one = ep.request(body)
        return [one] * count
    return [ep.request({**body, "conversationId": conversations[i % len(conversations)]}) for i in range(count)]


def summary(reply: Reply) -> dict[str, Any]:
    gaps = reply.gaps()
    return {"status": reply.status, "latency": reply.latency, "ttft": reply.ttft, "events": len(reply.text_times),
            "gap_mean": sum(gaps) / len(gaps) if gaps else None, "gap_max": max(gaps) if gaps else None}


async def paired(job: Job) -> Job:
    direct, through = job["direct"], job["through"]
    a = await Connection.open(direct["host"], direct["port"])
    b = await Connection.open(through["host"], through["port"])
    raw_a, raw_b = requests_for(direct, 1)[0], requests_for(through, 1)[0]
    results: dict[str, list[Job]] = {"direct": [], "through": []}
    for i in range(job["warmup"] + job["pairs"]):
        # Alternate which goes first, so drift and cache effects fall on both sides equally.
        order = ((a, raw_a, "direct"), (b, raw_b, "through"))
        for conn, raw, side in order if i % 2 == 0 else order[::-1]:
            reply = await conn.send(raw)
            if i >= job["warmup"]:
                results[side].append(summary(reply))
    a.close()
    b.close()
    return results


async def closed(job: Job) -> Job:
    spec, concurrency, seconds = job["target"], job["concurrency"], job["seconds"]
    raws = requests_for(spec, concurrency)
    conns = await asyncio.gather(*(Connection.open(spec["host"], spec["port"]) for _ in range(concurrency)))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    failures = 0
    window = {"on": False}

    async def worker(conn: Connection, raw: bytes) -> None:
        nonlocal failures
        while not stop.done():
            try:
                reply = await conn.send(raw)
            except (ConnectionError, OSError):
                failures += 1
                return
            if window["on"]:
                latencies.append(reply.latency)
                statuses[reply.status] = statuses.get(reply.status, 0) + 1

    stop = asyncio.get_running_loop().create_future()
    workers = [asyncio.ensure_future(worker(c, r)) for c, r in zip(conns, raws)]
    await asyncio.sleep(job.get("warmup_seconds", 0.5))
    window["on"] = True
    mark("start")
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    window["on"] = False
    elapsed = time.perf_counter() - started
    mark("stop")
    stop.set_result(None)
    await asyncio.wait(workers, timeout=job.get("drain_seconds", 10))
    for c in conns:
        c.close()
    return {"count": len(latencies), "elapsed": elapsed, "statuses": statuses, "failures": failures,
            "latencies": sorted(latencies)}


async def open_loop(job: Job) -> Job:
    spec, rate, seconds = job["target"], job["rate"], job["seconds"]
    max_conns = job.get("max_conns", 512)
    raw = requests_for(spec, 1)[0]
    idle: list[Connection] = []
    opened = 0
    replies: list[Reply] = []
    lags: list[float] = []
    errors = dropped = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(scheduled: float) -> None:
        nonlocal opened, errors
        conn = idle.pop() if idle else None
        if conn is None:
            opened += 1
            conn = await Connection.open(spec["host"], spec["port"])
        try:
            replies.append(await conn.send(raw, started=scheduled))
            idle.append(conn)
        except (ConnectionError, OSError):
            errors += 1

    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    mark("start")
    start = time.perf_counter() + 0.05
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(time.perf_counter() - scheduled)  # how late the generator itself was
        if opened - len(idle) >= max_conns and not idle:
            dropped += 1  # the server is this far behind: count it instead of growing without bound
            continue
        task = loop.create_task(one(scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=job.get("drain_seconds", 10))
    elapsed = time.perf_counter() - start
    mark("stop")
    for conn in idle:
        conn.close()
    statuses: dict[int, int] = {}
    for r in replies:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    lags.sort()
    return {"sent": total - dropped, "dropped": dropped, "errors": errors, "elapsed": elapsed, "statuses": statuses,
            "connections": opened, "latencies": sorted(r.latency for r in replies),
            "lag_p50": lags[len(lags) // 2] if lags else 0, "lag_p99": lags[int(len(lags) * 0.99)] if lags else 0}


async def streams(job: Job) -> Job:
    """Open `count` streams over `ramp_seconds`, mark when all are open, then wait for them to end."""
    spec, count = job["target"], job["count"]
    raw = requests_for(spec, 1)[0]
    results: list[Job] = []
    first_text = in_flight = streaming = 0
    all_open = asyncio.get_running_loop().create_future()
    failures: dict[str, int] = {}

    async def one(delay: float) -> None:
        nonlocal first_text, in_flight, streaming
        await asyncio.sleep(delay)
        sent = texting = False
        try:
            conn = await Connection.open(spec["host"], spec["port"])
            send = conn.start(raw)
            sent, in_flight = True, in_flight + 1
            # Count a stream as open at its first text event, then let it run to the end.
            assert conn.first_text is not None
            await asyncio.wait([conn.first_text, send], return_when=asyncio.FIRST_COMPLETED)
            texting, streaming = True, streaming + 1
            first_text += 1
            if first_text == count and not all_open.done():
                all_open.set_result(None)
            reply = await send
            conn.close()
            results.append(summary(reply))
        except Exception as exc:  # noqa: BLE001 — every failure is a result here, counted by kind
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            if not texting:
                first_text += 1
                if first_text == count and not all_open.done():
                    all_open.set_result(None)
        finally:
            in_flight -= sent
            streaming -= texting

    ramp = job.get("ramp_seconds", 2.0)
    tasks = [asyncio.ensure_future(one(ramp * i / count)) for i in range(count)]
    started = time.perf_counter()
    await asyncio.wait([all_open], timeout=ramp + job.get("open_timeout", 10))
    open_after = time.perf_counter() - started
    at_mark = (in_flight, streaming)
    mark("open")
    await asyncio.sleep(job.get("hold_seconds", 0.5))
    mark("sampled")
    done, pending = await asyncio.wait(tasks, timeout=job.get("timeout", 60))
    for task in pending:
        task.cancel()
    return {"results": results, "failures": failures, "unfinished": len(pending), "open_after": open_after,
            "in_flight_at_mark": at_mark[0], "streaming_at_mark": at_mark[1],
            "elapsed": time.perf_counter() - started}


async def seed(job: Job) -> Job:
    """`conversations` conversations with `turns` turns each; prints their ids."""
    spec, turns = job["target"], job["turns"]
    ep = endpoint(spec)

    async def one() -> str:
        conn = await Connection.open(spec["host"], spec["port"], keep_body=True)
        reply = await conn.send(ep.request(spec["body"]))
        if reply.status != 200:
            raise RuntimeError(f"seeding failed: HTTP {reply.status} {reply.body[:300]!r}")
        cid = json.loads(reply.body)["conversationId"]
        body = ep.request({**spec["body"], "conversationId": cid})
        for _ in range(turns - 1):
            reply = await conn.send(body)
            if reply.status != 200:
                raise RuntimeError(f"seeding failed: HTTP {reply.status} {reply.body[:300]!r}")
        conn.close()
        return cid

    return {"conversations": list(await asyncio.gather(*(one() for _ in range(job["conversations"]))))}


MODES = {"paired": paired, "closed": closed, "open": open_loop, "streams": streams, "seed": seed}


def main() -> None:
    job = json.loads(sys.stdin.read())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # thousands of streams need thousands of sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import uvloop

    result = uvloop.run(MODES[job["mode"]](job))
    # A file, not stdout: results run to hundreds of KB, and stdout carries the MARK lines.
    with open(job["result_path"], "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()
