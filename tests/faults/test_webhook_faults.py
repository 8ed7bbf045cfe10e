"""Webhooks under faults: two replicas on one append-only Redis take chat turns while one replica is
SIGKILLed (and started again) and Redis is SIGKILLed (and restarted), delivering to a receiver that
fails intermittently (500s, and answers that never come). Every event of every acknowledged turn
must be delivered at least once; the row says how many were produced, delivered, and seen twice.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.faults import report
from tests.faults.harness import PrivateRedis, ServiceProcess, write_config
from tests.test_webhooks import Receiver

RETRIES = [0.3, 0.5, 1, 1, 2, 2]  # six retries: a 500/timeout rate of 30 % loses 0.3^7 of deliveries
DELIVERY_WAIT = 120.0  # seconds for the last event to arrive after the load


@dataclass
class Acknowledged:
    turns: list[tuple[str, str, str]] = field(default_factory=list)  # (conversation, user text, message id)
    failed: dict[str, int] = field(default_factory=dict)  # what the other requests got

    def fail(self, what: str) -> None:
        self.failed[what] = self.failed.get(what, 0) + 1


def webhook_config(workdir: Path) -> Path:
    path = write_config(workdir / "config.toml", "http://127.0.0.1:9")
    text = path.read_text()
    text = text.replace("[webhooks]\n", "[webhooks]\nallow_private_urls = true\n", 1)
    text, retries = re.subn(r"(?m)^retry_seconds = .*$", f"retry_seconds = {RETRIES}", text)
    text, claims = re.subn(r"(?m)^claim_idle_seconds = .*$", "claim_idle_seconds = 2", text)
    assert retries == claims == 1, "config.toml's [webhooks] changed: update this test"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("seconds", "workers"),
    [pytest.param(6, 6, id="fast"), pytest.param(20, 12, id="full", marks=pytest.mark.faults)],
)
def test_webhook_events_survive_a_killed_replica_a_killed_redis_and_a_failing_receiver(tmp_path, seconds, workers):  # type: ignore[no-untyped-def]
    redis = PrivateRedis().start()
    receiver = Receiver().start()
    chance = random.Random(11)
    answers = [500 if r < 0.25 else "hang" if r < 0.3 else 200 for r in (chance.random() for _ in range(20000))]
    url = receiver.plan("/hook", *answers)
    config = webhook_config(tmp_path)
    replicas = [ServiceProcess(config, redis.url, "http://127.0.0.1:9", tmp_path / f"r{n}.log") for n in range(2)]
    started = [r.wait_ready() for r in replicas]
    key = started[0].mint_key("test")  # plain-http receivers are for test keys
    headers = {"authorization": f"Bearer {key}"}
    acked = Acknowledged()
    faults: dict[str, int] = {}
    try:
        with httpx.Client(base_url=replicas[0].base_url, headers=headers, timeout=30) as admin:
            agent = admin.post("/api/v1/agents", json={"name": "hooked", "model": "local"}).json()["agent"]["id"]
            made = admin.post("/api/v1/webhooks", json={"name": "faults", "url": url, "agentIds": [agent],
                                                        "events": ["message.sent", "conversation.started"]})
            assert made.status_code == 201, made.text

        async def load() -> None:
            stop_at = time.monotonic() + seconds

            async def worker(n: int) -> None:
                cid: str | None = None
                turn = 0
                async with httpx.AsyncClient(headers=headers, timeout=10) as http:
                    while time.monotonic() < stop_at:
                        turn += 1
                        text = f"w{n} t{turn}"
                        base = replicas[turn % len(replicas)].base_url
                        body = {"message": text, **({"conversationId": cid} if cid and turn % 5 else {})}
                        try:
                            answer = await http.post(f"{base}/api/v1/agents/{agent}/chat", json=body)
                        except httpx.HTTPError as exc:
                            acked.fail(type(exc).__name__)
                            await asyncio.sleep(0.05)
                            continue
                        if answer.status_code != 200:
                            acked.fail(str(answer.status_code))
                            await asyncio.sleep(0.05)
                            continue
                        reply = answer.json()
                        cid = reply["conversationId"]
                        acked.turns.append((cid, text, reply["messageId"]))

            async def faults_script() -> None:
                await asyncio.sleep(seconds * 0.25)
                doomed = replicas[1]
                doomed.process.kill()  # SIGKILL: its deliveries in flight are taken over
                doomed.process.wait(10)
                doomed.stop()  # (closes its log)
                faults["replica SIGKILL"] = 1
                await asyncio.sleep(0.5)
                replicas[1] = await asyncio.to_thread(
                    lambda: ServiceProcess(config, redis.url, "http://127.0.0.1:9", tmp_path / "r1b.log").wait_ready())
                await asyncio.sleep(seconds * 0.25)
                await asyncio.to_thread(redis.kill)
                faults["redis SIGKILL"] = 1
                await asyncio.sleep(1.0)
                await asyncio.to_thread(redis.restart)

            await asyncio.gather(faults_script(), *(worker(n) for n in range(workers)))

        asyncio.run(load())
        assert acked.turns, f"no turn was acknowledged: {acked.failed}"
        users = {(cid, text) for cid, text, _ in acked.turns}
        answers_ = {message_id for _, _, message_id in acked.turns}
        firsts = {cid for cid, _, _ in acked.turns}
        produced = 2 * len(acked.turns)

        def delivered() -> tuple[set[tuple[str, str]], set[str], set[str]]:
            seen_users, seen_answers, seen_started = set(), set(), set()
            for r in receiver.received("/hook"):
                data = r.json["data"]
                if r.event == "conversation.started":
                    seen_started.add(data["conversationId"])
                elif data["role"] == "user":
                    seen_users.add((data["conversationId"], data["content"]))
                else:
                    seen_answers.add(data["messageId"])
            return seen_users, seen_answers, seen_started

        deadline = time.monotonic() + DELIVERY_WAIT
        while True:
            seen_users, seen_answers, seen_started = delivered()
            missing = (users - seen_users, answers_ - seen_answers)
            if not any(missing) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        time.sleep(2)  # a duplicate in flight arrives within this
        received = [r for r in receiver.received("/hook") if r.headers.get("X-ChatSpark-Event")]
        successes = [r for r, answer in zip(received, answers) if answer == 200]
        ok_ids = [r.delivery for r in successes]
        lost = len(missing[0]) + len(missing[1])
        duplicates = len(ok_ids) - len(set(ok_ids))
        by_event: dict[tuple[str, str], set[str]] = {}
        for r in received:
            data = r.json["data"]
            by_event.setdefault((r.event, data.get("messageId") or data["conversationId"]), set()).add(r.delivery)
        split = sum(1 for ids in by_event.values() if len(ids) > 1)
        report.record(
            f"webhooks: replica + Redis SIGKILL, receiver failing 30 % ({seconds} s, {workers} clients)",
            faults={**faults, "receiver 500/hang": sum(1 for a in answers[: len(received)] if a != 200)},
            requests=len(acked.turns) + sum(acked.failed.values()), acknowledged=len(acked.turns), lost=lost,
            errors_5xx={k: v for k, v in acked.failed.items() if k.startswith("5")}, rss_drift_kb=None, fd_drift=None,
            notes=(f"events of acknowledged turns: produced {produced} message.sent (+{len(firsts)} conversations "
                   f"started), delivered {produced - lost}, lost {lost}; deliveries received {len(received)} "
                   f"({len(received) - len(successes)} answered 500 or never), a delivery id accepted twice: "
                   f"{duplicates}; an event under two delivery ids: {split}"),
        )
        assert lost == 0, f"events of acknowledged turns never delivered: {missing[0] and list(missing[0])[:3]} {list(missing[1])[:3]}"
        assert firsts <= seen_started, "a conversation's start was not delivered"
        assert split == 0, "an event was fanned out twice"
        assert faults == {"replica SIGKILL": 1, "redis SIGKILL": 1}
    finally:
        for replica in replicas:
            replica.stop()
        receiver.stop()
        redis.stop()
