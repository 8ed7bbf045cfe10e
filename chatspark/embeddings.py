"""Configured embedders, loaded on first need off the event loop (like models: `models.py`)."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.to_thread
import numpy as np

from backends.embedders import import_embedder, load_embedder
from backends.embedders.base import Embedder, EmbedderSettings


class EmbedderRouter:
    def __init__(self, settings: dict[str, EmbedderSettings], default: str) -> None:
        self.settings = settings
        self.default = default
        self._loaded: dict[str, Embedder] = {}
        self._lock = anyio.Lock()

    async def embedder(self, name: str | None = None) -> Embedder:
        chosen = name or self.default
        loaded = self._loaded.get(chosen)
        if loaded is not None:
            return loaded
        async with self._lock:  # one load at a time; the second waiter finds it loaded
            if chosen not in self._loaded:
                settings = self.settings[chosen]
                await anyio.to_thread.run_sync(import_embedder, settings.kind)
                self._loaded[chosen] = load_embedder(settings)
        return self._loaded[chosen]

    async def embed(self, texts: Sequence[str], name: str | None = None) -> np.ndarray:
        return await (await self.embedder(name)).embed(texts)

    async def aclose(self) -> None:
        for embedder in self._loaded.values():
            await embedder.aclose()
