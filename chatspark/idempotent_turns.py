"""Chat turns with an Idempotency-Key: run once, followed or replayed by every retry, on any replica.

The request that claims the key prepares the turn (so errors before the first byte stay plain
JSON) and hands it to a runner in the app's task group, which records the answer in the turn
journal. Every request with that key — the first one included — then follows the journal: live
while the turn runs, as a replay once it is done. A client that disconnects stops following only;
the turn still completes and is stored, so its retry gets the same answer without a second model
call.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Literal

import anyio
import msgspec
from anyio.abc import TaskGroup

from chatspark import errors
from chatspark.apikeys import Principal
from chatspark.leases import LeaseKeeper
from chatspark.schemas import ChatRequest
from chatspark.store.errors import StoreUnavailable
from chatspark.store.journal import JournalEntry, TurnJournal
from chatspark.store.leases import Lease
from chatspark.turn import PreparedTurn, Turns
from chatspark.turn_events import failure, frame, turn_frames

log = logging.getLogger("chatspark.idempotency")
_encoder = msgspec.json.Encoder()

# How long one blocking read of the journal waits; between reads a follower checks that the
# runner is still alive (its lease), so a crashed replica's turn ends in an error, not a hang.
FOLLOW_BLOCK_MS = 1000


class Claim(msgspec.Struct, frozen=True):
    digest: str
    lease: Lease  # held when `state` is 'new': this request runs the turn
    state: Literal["new", "running", "done"]
    run: str = ""  # names this use of the key (the same for its retries; another once it expired)


class IdempotentTurns:
    def __init__(self, turns: Turns, journal: TurnJournal, leases: LeaseKeeper, tasks: TaskGroup) -> None:
        self.turns = turns
        self.journal = journal
        self.leases = leases
        self.tasks = tasks
        self._running = 0
        self._idle = anyio.Event()
        self._idle.set()

    async def idle(self) -> None:
        """Returns once no turn of this process is running."""
        await self._idle.wait()

    async def claim(self, caller: Principal, key: str, agent_id: int, request: ChatRequest | msgspec.Struct) -> Claim:
        """Raises IdempotencyConflict when the key was used with another body (`request`: the
        endpoint's whole request, as a Struct, so another endpoint's body under the same key conflicts)."""
        # Scoped per API key: two clients choosing the same key never collide.
        digest = hashlib.sha256(f"{caller.key_id}\0{key}".encode()).hexdigest()
        body = hashlib.sha256(_encoder.encode([agent_id, request])).hexdigest()
        state, lease, run = await self.journal.claim(digest, body)
        if state == "conflict":
            raise errors.IdempotencyConflict()
        if state == "new":
            self.leases.hold(lease)
        return Claim(digest, lease, state, run)

    async def abandon(self, claim: Claim) -> None:
        """The claimed turn failed before it started (its error is answered as plain JSON)."""
        self.leases.drop(claim.lease)
        with anyio.CancelScope(shield=True):
            await self.journal.forget(claim.lease)

    def run(self, claim: Claim, turn: PreparedTurn, *, stream: bool) -> None:
        self._running += 1
        self._idle = anyio.Event()
        self.tasks.start_soon(self._run, claim, turn, stream)

    async def _run(self, claim: Claim, turn: PreparedTurn, stream: bool) -> None:
        try:
            if stream:
                async with aclosing(turn_frames(self.turns, turn)) as frames:  # type: ignore[type-var]
                    async for f in frames:
                        if not await self.journal.publish(claim.lease, f.id, f.data, f.status):
                            log.warning("an idempotent turn was taken over by another runner")
                            return
            else:
                status, body = await self._complete(turn)
                await self.journal.publish(claim.lease, 1, body, status)
        except StoreUnavailable:
            log.error("could not record an idempotent turn: the store is unreachable")
        except Exception:
            log.exception("an idempotent turn failed")
        finally:
            await turn.resources.release()
            self.leases.drop(claim.lease)
            self._running -= 1
            if self._running == 0:
                self._idle.set()

    async def _complete(self, turn: PreparedTurn) -> tuple[int, bytes]:
        try:
            return 200, _encoder.encode(await self.turns.complete(turn))
        except Exception as exc:  # answered as its error, like a direct request
            error = errors.contract_error(exc)
            if error is not exc and isinstance(error, errors.InternalError):
                raise
            return error.status, error.to_json()

    async def frames(self, claim: Claim, after_event: int = 0) -> AsyncIterator[bytes]:
        """The turn's SSE frames from the journal, live or replayed; `after_event` resumes after a
        `Last-Event-ID`. If the journal ends early (its runner stopped, or the store became
        unreachable), the stream still ends with one terminal event and `[DONE]`."""
        last = after_event
        terminal = False
        try:
            async for entry in self._follow(claim):
                terminal = terminal or _is_terminal(entry.frame)
                if entry.event_id > after_event:
                    last = entry.event_id
                    yield entry.frame
        except (RunnerLost, StoreUnavailable) as exc:
            if not terminal:
                last += 1
                yield frame(last, failure("", exc.error if isinstance(exc, RunnerLost) else errors.contract_error(exc)))
            yield frame(last + 1, b"[DONE]")

    async def result(self, claim: Claim) -> tuple[int, bytes]:
        """The JSON answer (status, body) once the turn is done."""
        try:
            async for entry in self._follow(claim):
                if entry.status is not None:
                    return entry.status, entry.frame
        except RunnerLost as lost:
            return lost.error.status, lost.error.to_json()
        raise AssertionError("a journal ends with a status")

    async def _follow(self, claim: Claim) -> AsyncIterator[JournalEntry]:
        position = "0-0"
        while True:
            entries = await self.journal.read(claim.digest, position, FOLLOW_BLOCK_MS)
            if not entries and not await self.journal.runner_alive(claim.digest):
                # Read once more: the runner may have finished between the read and the check.
                entries = await self.journal.read(claim.digest, position, None)
                if not entries:
                    raise RunnerLost()
            for entry in entries:
                yield entry
                if entry.status is not None:
                    return
            if entries:
                position = entries[-1].position


def _is_terminal(data: bytes) -> bool:
    """Whether a journaled frame is the turn's `done` or error event. Text inside a JSON string has
    its quotes escaped, so these bytes match only the event's own fields."""
    return b',"done":true' in data or b',"error":{' in data


class RunnerLost(Exception):
    """The replica running the turn stopped before it finished (its lease lapsed)."""

    def __init__(self) -> None:
        super().__init__()
        self.error = errors.ServiceUnavailable(
            "The replica running this turn stopped before it finished; retry with the same Idempotency-Key."
        )
