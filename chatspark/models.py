"""Configured models: which backend serves each, and the fallback chain tried when one fails."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing

import anyio
import anyio.to_thread
import msgspec

from backends import import_backend, load_backend
from backends.base import Backend, BackendError, Completion, Delta, ModelCall, ModelSettings
from chatspark import metrics

log = logging.getLogger("chatspark.models")


class ModelRouter:
    """Backends are imported on first need, off the event loop: `warm()` (started in the background
    at start) imports and warms every configured one, so litellm's ~3 s import never delays
    readiness; a turn that needs a backend still loading waits for it."""

    def __init__(self, models: dict[str, ModelSettings]) -> None:
        self.models = models
        self._backends: dict[str, Backend] = {}
        self._loading: dict[str, anyio.Event] = {}

    async def backend(self, name: str) -> Backend:
        loaded = self._backends.get(name)
        if loaded is not None:
            return loaded
        loading = self._loading.get(name)
        if loading is not None:
            await loading.wait()
            if name in self._backends:
                return self._backends[name]
        done = self._loading[name] = anyio.Event()
        try:
            # The import is the slow part; creating and warming the backend needs the event loop.
            await anyio.to_thread.run_sync(import_backend, name)
            backend = load_backend(name)
            for model in self.models.values():
                warm = getattr(backend, "warmup", None)
                if model.backend == name and warm is not None:
                    await warm(model)
            self._backends[name] = backend
            return backend
        finally:
            del self._loading[name]
            done.set()

    async def warm(self) -> None:
        """Every configured model's backend, imported and warmed (the lightest first)."""
        for name in sorted({m.backend for m in self.models.values()}, key=lambda n: n != "local"):
            await self.backend(name)

    async def aclose(self) -> None:
        for backend in self._backends.values():
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
                backend = await self.backend(model.backend)
                with metrics.upstream_call(model.name):
                    completion = await backend.complete(msgspec.structs.replace(call, model=model))
                metrics.answered(model.name, completion.usage.prompt_tokens, completion.usage.completion_tokens)
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
            stream = (await self._router.backend(model.backend)).stream(msgspec.structs.replace(self._call, model=model))
            try:
                with metrics.upstream_call(model.name):
                    async with aclosing(stream) as deltas:  # type: ignore[type-var]
                        async for delta in deltas:
                            if delta.text:
                                metrics.first_token(model.name)  # only the first counts
                            if delta.usage is not None:
                                metrics.answered(model.name, delta.usage.prompt_tokens, delta.usage.completion_tokens)
                            started = True
                            yield delta
                return
            except BackendError as exc:
                if started or not exc.retryable or position == len(chain) - 1:
                    raise
                log.warning("model %s failed (%s); falling back to %s", model.name, exc, chain[position + 1].name)
