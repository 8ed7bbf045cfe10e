"""One turn as server-sent event frames: numbered deltas, exactly one terminal event (`done` or
`error`), then `[DONE]`. The same frames go to a client directly or through the turn journal."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing

import msgspec

from chatspark.errors import ApiError, ErrorDetails, InternalError, StreamingError, contract_error
from chatspark.schemas import StreamFailure
from chatspark.turn import PreparedTurn, Turns

log = logging.getLogger("chatspark.turn")
_encoder = msgspec.json.Encoder()


class Frame(msgspec.Struct, frozen=True):
    id: int
    data: bytes  # the whole frame, `id:` and `data:` lines included
    # On the last frame (`[DONE]`) only: 200 if the turn was stored, else the HTTP status its error
    # would have had as JSON.
    status: int | None = None


def frame(event_id: int, payload: bytes) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (event_id, payload)


class Outcome:
    """What `turn_events` reports beside its frames: the status of the turn (see `Frame.status`),
    set before the last frame is yielded."""

    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status: int | None = None


async def turn_events(turns: Turns, turn: PreparedTurn, outcome: Outcome | None = None) -> AsyncIterator[bytes]:
    """The turn's frames, numbered from 1, as bytes: what a direct stream sends (one generator
    between the model's deltas and the socket, not two)."""
    event_id = 0
    status = 200
    encode = _encoder.encode
    try:
        async with aclosing(turns.stream(turn)) as events:  # type: ignore[type-var]
            async for event in events:
                event_id += 1
                yield frame(event_id, encode(event))
    except Exception as exc:
        error = contract_error(exc)
        if isinstance(error, InternalError) and error is not exc:  # not one we know: a bug
            log.exception("stream failed")
            error = StreamingError()
        event_id += 1
        status = error.status
        # A new conversation exists only once its first turn is stored: a failed first turn names
        # no conversation (its id would answer 404).
        conversation_id = "" if turn.is_new else turn.conversation_id
        yield frame(event_id, failure(conversation_id, error))
    finally:
        await turn.resources.release()
    if outcome is not None:
        outcome.status = status
    yield frame(event_id + 1, b"[DONE]")


async def turn_frames(turns: Turns, turn: PreparedTurn) -> AsyncIterator[Frame]:
    """The same frames with their ids, the last one with the turn's status (for the turn journal)."""
    outcome = Outcome()
    event_id = 0
    async with aclosing(turn_events(turns, turn, outcome)) as events:  # type: ignore[type-var]
        async for data in events:
            event_id += 1
            yield Frame(event_id, data, outcome.status)


def failure(conversation_id: str, cause: ApiError) -> bytes:
    """The in-stream error event: always STREAMING_ERROR (the status line said 200 already), with
    the underlying contract code in `details.cause` so a client can tell a timeout from a 502."""
    details = ErrorDetails(cause=cause.code) if cause.code != StreamingError.code else None
    error = StreamingError(cause.message, details=details)
    body = msgspec.structs.replace(error.body(), retryable=cause.retryable)
    return _encoder.encode(StreamFailure(delta="", conversation_id=conversation_id, error=body))
