"""Configured models: which backend serves each, and the fallback chain tried when one fails."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing

import msgspec

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

    async def complete(self, call: ModelCall) -> tuple[Completion, ModelSettings]:
        """The first answer along `call.model`'s chain, and the model that gave it."""
        chain = self.chain(call.model.name)
        for position, model in enumerate(chain):
            try:
                completion = await self.backends[model.backend].complete(msgspec.structs.replace(call, model=model))
                return completion, model
            except BackendError as exc:
                if not exc.retryable or position == len(chain) - 1:
                    raise
                log.warning("model %s failed (%s); falling back to %s", model.name, exc, chain[position + 1].name)
        raise AssertionError("unreachable: the chain is never empty")

    def stream(self, call: ModelCall) -> FallbackStream:
        return FallbackStream(self, self.chain(call.model.name), call)


class FallbackStream:
    """Deltas from the first model of the chain that starts answering.

    A model that fails retryably before its first delta hands over to the next one; once text has
    gone out, a failure is final (the client has seen part of one model's answer). `model` is the
    model that answered. Close `deltas()` (`aclosing`) to close the upstream connection early.
    """

    def __init__(self, router: ModelRouter, chain: list[ModelSettings], call: ModelCall) -> None:
        self.model: ModelSettings = chain[0]
        self._router = router
        self._chain = chain
        self._call = call

    async def deltas(self) -> AsyncGenerator[Delta, None]:
        chain = self._chain
        for position, model in enumerate(chain):
            self.model = model
            started = False
            stream = self._router.backends[model.backend].stream(msgspec.structs.replace(self._call, model=model))
            try:
                async with aclosing(stream) as deltas:  # type: ignore[type-var]
                    async for delta in deltas:
                        started = True
                        yield delta
                return
            except BackendError as exc:
                if started or not exc.retryable or position == len(chain) - 1:
                    raise
                log.warning("model %s failed (%s); falling back to %s", model.name, exc, chain[position + 1].name)
