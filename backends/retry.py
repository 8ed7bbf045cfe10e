"""Retries of one call on one model, shared by the HTTP backends: which failures earn another attempt,
and the small backoff between attempts. Fallback to other models is `chatspark.models`' job."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

import anyio

from backends.base import BackendError, Delta, ModelSettings, ProviderTimeout

log = logging.getLogger("chatspark.backends.retry")

BACKOFF_SECONDS = (0.2, 0.4, 0.8)  # between attempts; the last value repeats
MAX_BACKOFF_TOTAL = 2.0

T = TypeVar("T")


def pause_before_retry(model: ModelSettings, attempt: int, slept: float, error: BackendError) -> float | None:
    """The pause before attempt `attempt + 1` (counted from 0) after `error`, or None when `error` is
    final: not retryable, a timeout, the configured retries used up, or the backoff budget spent."""
    # A timeout already cost the model's whole timeout: hand over to a fallback model instead.
    if not error.retryable or isinstance(error, ProviderTimeout) or attempt >= model.retries:
        return None
    pause = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]
    return pause if slept + pause <= MAX_BACKOFF_TOTAL else None


async def complete_with_retries(model: ModelSettings, attempt: Callable[[], Awaitable[T]]) -> T:
    """`attempt()` until it returns or raises a final `BackendError`."""
    slept = 0.0
    tried = 0
    while True:
        try:
            return await attempt()
        except BackendError as error:
            pause = pause_before_retry(model, tried, slept, error)
            if pause is None:
                raise
            log.info("model %s attempt %d failed (%s); retrying", model.name, tried + 1, error)
        await anyio.sleep(pause)
        slept += pause
        tried += 1


async def stream_with_retries(
    model: ModelSettings, attempt: Callable[[], AsyncGenerator[Delta, None]]
) -> AsyncGenerator[Delta, None]:
    """The deltas of `attempt()`, opened again on a retryable failure before its first delta. After
    the first delta a failure is final: the consumer has already seen part of this answer. Nothing is
    called before the first `__anext__`.

    Closing this generator closes the running attempt, so the provider connection closes with it."""
    slept = 0.0
    tried = 0
    while True:
        started = False
        deltas: AsyncGenerator[Delta, None] | None = None
        try:
            deltas = attempt()
            async for delta in deltas:
                started = True
                yield delta
            return
        except BackendError as error:
            pause = None if started else pause_before_retry(model, tried, slept, error)
            if pause is None:
                raise
            log.info("model %s attempt %d failed (%s); retrying", model.name, tried + 1, error)
        finally:
            if deltas is not None:
                await deltas.aclose()
        await anyio.sleep(pause)
        slept += pause
        tried += 1
