"""The one interface every embedder implements: texts in, L2-normalised float32 vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec
import numpy as np


class EmbedderSettings(msgspec.Struct, frozen=True, kw_only=True):
    """One configured embedder, as `config.toml` names it under `[embedders.<name>]`."""

    name: str
    kind: str = "wordllama"  # the module in backends/embedders
    # wordllama: the model config shipped in its wheel ("l2_supercat") and the dimensions kept
    # (its vectors are Matryoshka-trained: a prefix is a coarser embedding).
    model: str = "l2_supercat"
    dimensions: int = 256
    # litellm: the provider's model ("text-embedding-3-small"), endpoint and key variable.
    provider_model: str = ""
    api_base: str | None = None
    api_key_env: str | None = None
    timeout_seconds: float = 30.0
    batch_size: int = 64


class Embedder(Protocol):
    dimensions: int

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A (len(texts), dimensions) float32 array, each row L2-normalised (cosine = dot)."""
        ...

    async def aclose(self) -> None: ...


class EmbeddingError(Exception):
    """The embedder failed (a provider error, a missing key). `retryable`: may succeed later."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
