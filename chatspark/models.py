"""Configured models: which backend serves each, and the fallback chain tried when one fails."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from backends import load_backend
from backends.base import Backend, BackendError, Completion, Delta, ModelCall, ModelSettings

log = logging.getLogger("chatspark.models")


class ModelRouter:
    def __init__(self, models: dict[str, ModelSettings], backends: dict[str, Backend]) -> None:
        self.models = models
        self.backends = backends

    @classmethod
    def load(cls, models: dict[str, ModelSettings]) -> ModelRouter:
        """Imports only the backends that configured models use (litellm costs ~3 s and ~190 MB)."""
        backends = {name: load_backend(name) for name in sorted({m.backend for m in models.values()})}
        return cls(models, backends)

    async def warmup(self) -> None:
        for model in self.models.values():
            warm = getattr(self.backends[model.backend], "warmup", None)
            if warm is not None:
                await warm(model)

    async def aclose(self) -> None:
        for backend in self.backends.values():
            await backend.aclose()

    def chain(self, name: str) -> list[ModelSettings]:
        """The model and its fallbacks, in the order they are tried."""
        names = [name, *self.models[name].fallbacks]
        return [self.models[n] for n in dict.fromkeys(names)]

    async def complete(self, name: str, **call: Any) -> tuple[Completion, ModelSettings]:
        chain = self.chain(name)
        for position, model in enumerate(chain):
            try:
                completion = await self.backends[model.backend].complete(ModelCall(model=model, **call))
                return completion, model
            except BackendError as exc:
                if not exc.retryable or position == len(chain) - 1:
                    raise
                log.warning("model %s failed (%s); falling back to %s", model.name, exc, chain[position + 1].name)
        raise AssertionError("unreachable: the chain is never empty")

    def stream(self, name: str, **call: Any) -> FallbackStream:
        return FallbackStream(self, self.chain(name), call)


class FallbackStream:
    """Deltas from the first model of the chain that starts answering.

    A model that fails retryably before its first delta hands over to the next one; once text has
    gone out, a failure is final (the client has seen part of one model's answer). `model` is the
    model that answered. Close it (`aclose`) to close the upstream connection early.
    """

    def __init__(self, router: ModelRouter, chain: list[ModelSettings], call: dict[str, Any]) -> None:
        self.model: ModelSettings = chain[0]
        self._deltas = self._run(router, chain, call)

    def __aiter__(self) -> AsyncIterator[Delta]:
        return self._deltas

    async def aclose(self) -> None:
        await self._deltas.aclose()

    async def _run(
        self, router: ModelRouter, chain: list[ModelSettings], call: dict[str, Any]
    ) -> AsyncGenerator[Delta, None]:
        for position, model in enumerate(chain):
            self.model = model
            started = False
            deltas = router.backends[model.backend].stream(ModelCall(model=model, **call))
            try:
                async for delta in deltas:
                    started = True
                    yield delta
                return
            except BackendError as exc:
                if started or not exc.retryable or position == len(chain) - 1:
                    raise
                log.warning("model %s failed (%s); falling back to %s", model.name, exc, chain[position + 1].name)
            finally:
                await deltas.aclose()  # type: ignore[attr-defined]
