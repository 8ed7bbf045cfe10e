"""Embeddings from an OpenAI-compatible provider through litellm (`openai/text-embedding-3-small`, …).

Import it only when an embedder uses it: importing litellm costs ~3 s and ~190 MB. Each batch is one
request bounded by `timeout_seconds`; retrying after that is the caller's choice (an ingestion job
is retried whole), and every failure says whether trying again may help.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from typing import Any

import anyio
import httpx
import numpy as np

from backends.litellm_setup import exception_chain, litellm  # offline and quiet: set up once, there
from litellm.exceptions import APIConnectionError, Timeout

from backends.embedders.base import EmbedderSettings, EmbeddingError



class LitellmEmbedder:
    def __init__(self, settings: EmbedderSettings) -> None:
        self.dimensions = settings.dimensions
        self._settings = settings

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        request = _request(self._settings)
        size = self._settings.batch_size
        batches = [await self._embed_batch(list(texts[start:start + size]), request)
                   for start in range(0, len(texts), size)]
        return np.concatenate(batches)

    async def _embed_batch(self, texts: list[str], request: dict[str, Any]) -> np.ndarray:
        seconds = self._settings.timeout_seconds
        try:
            # The deadline covers the whole call: litellm reads max_retries=0 as "the default" for
            # embeddings, so the OpenAI SDK may retry (429, 5xx, connection) inside it.
            with anyio.fail_after(seconds):
                response = await litellm.aembedding(input=texts, **request)
        except TimeoutError as exc:
            raise EmbeddingError(f"embedder {self._settings.name}: the provider did not answer within {seconds:g} s") from exc
        except Exception as exc:
            raise _map_error(exc, self._settings) from exc
        return _vectors(response, len(texts), self._settings)

    async def aclose(self) -> None:
        # litellm owns its HTTP clients in a process-wide cache (see backends/litellm.py): not ours.
        pass


def create(settings: EmbedderSettings) -> LitellmEmbedder:
    if not settings.provider_model:
        raise ValueError(f"embedder {settings.name}: provider_model is required for kind litellm")
    if settings.dimensions < 1:
        raise ValueError(f"embedder {settings.name}: dimensions must be positive")
    return LitellmEmbedder(settings)


def _request(settings: EmbedderSettings) -> dict[str, Any]:
    """litellm.aembedding arguments but the input; raises (without calling out) when no key is set."""
    key_env = settings.api_key_env or "OPENAI_API_KEY"
    api_key = os.environ.get(key_env)
    if not api_key:
        raise EmbeddingError(f"no API key configured for embedder {settings.name}: set {key_env}", retryable=False)
    return {
        "model": settings.provider_model,
        # litellm forwards `dimensions` only for models it knows take it (text-embedding-3…) and
        # drops it for the others; what comes back is checked against the setting either way.
        "dimensions": settings.dimensions,
        "drop_params": True,
        "encoding_format": "float",
        "api_base": settings.api_base or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE"),
        "api_key": api_key,
        "timeout": settings.timeout_seconds,
    }


def _vectors(response: Any, count: int, settings: EmbedderSettings) -> np.ndarray:
    """The response's vectors in input order, checked and L2-normalised."""
    try:
        items = sorted(getattr(response, "data", None) or (), key=lambda item: _field(item, "index"))
        rows = [_field(item, "embedding") for item in items]
    except (KeyError, AttributeError, TypeError) as exc:
        raise EmbeddingError(f"embedder {settings.name}: the provider's answer is not a list of embeddings") from exc
    if len(rows) != count:
        raise EmbeddingError(f"embedder {settings.name}: the provider returned {len(rows)} vectors for {count} texts")
    try:
        vectors = np.array(rows, dtype=np.float32)
    except (TypeError, ValueError) as exc:  # ragged rows, strings (base64) or other non-numbers
        raise EmbeddingError(f"embedder {settings.name}: the provider's vectors are not numbers") from exc
    if vectors.ndim != 2 or vectors.shape[1] != settings.dimensions:
        got = vectors.shape[1] if vectors.ndim == 2 else "ragged"
        raise EmbeddingError(
            f"embedder {settings.name}: the provider returned {got} dimensions, {settings.dimensions} are "
            "configured (set `dimensions` to what the model gives)", retryable=False,
        )
    if not np.isfinite(vectors).all():
        raise EmbeddingError(f"embedder {settings.name}: the provider's vectors are not finite")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


def _field(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, dict) else getattr(item, name)


def _map_error(exc: Exception, settings: EmbedderSettings) -> EmbeddingError:
    """A litellm/openai/httpx failure as an EmbeddingError. Messages name the embedder and the kind
    of failure only: provider error texts can quote the input or a masked key."""
    name = settings.name
    chain = exception_chain(exc)
    if any(isinstance(e, Timeout | httpx.TimeoutException) for e in chain):
        return EmbeddingError(f"embedder {name}: the provider did not answer within {settings.timeout_seconds:g} s")
    if any(isinstance(e, ConnectionRefusedError | socket.gaierror | httpx.ConnectError) for e in chain):
        return EmbeddingError(f"embedder {name}: could not reach the provider (connection failed)")
    status = getattr(exc, "status_code", None)
    if isinstance(exc, APIConnectionError) or not isinstance(status, int):
        return EmbeddingError(f"embedder {name}: provider request failed ({type(exc).__name__})")
    retryable = status in (408, 409, 429) or status >= 500  # what the OpenAI SDK itself would retry
    return EmbeddingError(f"embedder {name}: the provider answered HTTP {status} ({type(exc).__name__})",
                          retryable=retryable)
