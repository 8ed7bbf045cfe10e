"""One turn as server-sent event frames: numbered deltas, exactly one terminal event (`done` or
`error`), then `[DONE]`. The same frames go to a client directly or through the turn journal."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import msgspec

from chatspark.chat import Chat, PreparedTurn
from chatspark.errors import ApiError, StreamingError
from chatspark.schemas import StreamFailure

log = logging.getLogger("chatspark.chat")
_encoder = msgspec.json.Encoder()


class Frame(msgspec.Struct, frozen=True):
    id: int
    data: bytes  # the whole frame, `id:` and `data:` lines included
    # On the last frame (`[DONE]`) only: 200 if the turn was stored, else the HTTP status its error
    # would have had as JSON.
    status: int | None = None


def frame(event_id: int, payload: bytes) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (event_id, payload)


async def turn_frames(chat: Chat, turn: PreparedTurn) -> AsyncIterator[Frame]:
    event_id = 0
    status = 200
    try:
        async for event in chat.stream(turn):
            event_id += 1
            yield Frame(event_id, frame(event_id, _encoder.encode(event)))
    except ApiError as exc:
        event_id += 1
        status = exc.status
        yield Frame(event_id, frame(event_id, failure(turn.conversation_id, exc)))
    except Exception:
        log.exception("stream failed")
        event_id += 1
        status = StreamingError.status
        yield Frame(event_id, frame(event_id, failure(turn.conversation_id, StreamingError())))
    finally:
        await chat.settle(turn)
    yield Frame(event_id + 1, frame(event_id + 1, b"[DONE]"), status)


def failure(conversation_id: str, cause: ApiError) -> bytes:
    """The in-stream error event: always STREAMING_ERROR (the status line said 200 already), with
    the underlying contract code in `details.cause` so a client can tell a timeout from a 502."""
    error = StreamingError(cause.message, details={"cause": cause.code} if cause.code != StreamingError.code else None)
    body = error.envelope()["error"]
    if cause.retryable:
        body["retryable"] = True
    return _encoder.encode(StreamFailure(delta="", conversation_id=conversation_id, error=body))
