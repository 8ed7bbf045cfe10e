"""The offline embedder: WordLlama's token vectors, averaged over a text. Its wheel ships the weights
and the tokenizer, so it never touches the network; no PyTorch.

The vectors are Matryoshka-trained: the first `dimensions` of each are a coarser embedding of their
own, so fewer dimensions cost less memory and time for a little recall.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import anyio.to_thread
import numpy as np
from tokenizers import Tokenizer

from backends.embedders.base import EmbedderSettings, EmbeddingError

# Downloads are disabled below; should wordllama still fall back to the Hub, it fails at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Importing wordllama calls logging.basicConfig(level=INFO), which would print every library's INFO
# records on stderr from then on; the root logger is put back as it was.
_root = logging.getLogger()
_root_handlers, _root_level = list(_root.handlers), _root.level
import wordllama  # noqa: E402
from wordllama import WordLlama  # noqa: E402

_root.handlers[:] = _root_handlers
_root.setLevel(_root_level)

# The wheel's own folder: its loader looks for shipped weights there but for the tokenizer only in
# `cache_dir`, which defaults to ~/.cache/wordllama.
_PACKAGE_DIR = Path(wordllama.__file__).parent
SHIPPED_DIMENSIONS = 256  # the one weights file in the wheel
_SLICE_TOKENS = 4096  # rows gathered at once: memory stays small however long a text is


class _Model(NamedTuple):
    vectors: np.ndarray  # (vocabulary, dimensions) float32: one row per token
    tokenizer: Tokenizer  # without padding


_models: dict[tuple[str, int], _Model] = {}
_loading = threading.Lock()


# A single text up to this long is embedded on the caller's thread (see `embed`).
INLINE_CHARS = 4096


class WordLlamaEmbedder:
    def __init__(self, settings: EmbedderSettings) -> None:
        self.dimensions = settings.dimensions
        self._model_name = settings.model
        self._batch_size = settings.batch_size
        self._model: _Model | None = None

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        if self._model is None:
            self._model = await anyio.to_thread.run_sync(load_model, self._model_name, self.dimensions)
        if len(texts) == 1 and len(texts[0]) <= INLINE_CHARS:
            # A turn's question: embedding it takes ~30-40 µs, the hop to a worker thread ~120 µs of
            # CPU and 150-300 µs of latency more (measured), so it runs on the event loop.
            return embed_batch(self._model, list(texts))
        # One thread hop per batch: a long list never holds a worker thread for long, and a cancelled
        # caller stops between batches.
        batches = [
            await anyio.to_thread.run_sync(embed_batch, self._model, list(texts[start:start + self._batch_size]))
            for start in range(0, len(texts), self._batch_size)
        ]
        return np.concatenate(batches)

    async def aclose(self) -> None:
        pass  # the model stays loaded for the process: other embedders share it


def create(settings: EmbedderSettings) -> WordLlamaEmbedder:
    """Checks the settings only; the model loads (once per process) on the first `embed`."""
    if settings.model not in WordLlama.list_configs()["wordllama"]:
        raise ValueError(f"embedder {settings.name}: wordllama has no model {settings.model!r}")
    if not 1 <= settings.dimensions <= SHIPPED_DIMENSIONS:
        raise ValueError(f"embedder {settings.name}: wordllama dimensions must be 1 to {SHIPPED_DIMENSIONS}")
    return WordLlamaEmbedder(settings)


def load_model(name: str, dimensions: int) -> _Model:
    """The shipped weights cut to `dimensions`, loaded once per process (blocking: call it in a thread)."""
    with _loading:
        if (name, dimensions) not in _models:
            try:
                inference = WordLlama.load(name, cache_dir=_PACKAGE_DIR, dim=SHIPPED_DIMENSIONS, disable_download=True)
            except FileNotFoundError as exc:
                raise EmbeddingError(f"wordllama model {name!r} is not installed", retryable=False) from exc
            tokenizer = inference.tokenizer
            tokenizer.no_padding()  # texts are pooled one by one, so padding would only cost time
            vectors = np.ascontiguousarray(inference.embedding[:, :dimensions], dtype=np.float32)
            _models[name, dimensions] = _Model(vectors, tokenizer)
        return _models[name, dimensions]


def embed_batch(model: _Model, texts: list[str]) -> np.ndarray:
    """Mean of each text's token vectors, L2-normalised (blocking). A text without tokens gets zeros."""
    out = np.zeros((len(texts), model.vectors.shape[1]), dtype=np.float32)
    # A lone surrogate (valid in a Python str, not in UTF-8) would make the tokenizer raise TypeError.
    texts = [text.encode(errors="replace").decode() for text in texts]
    for row, encoding in enumerate(model.tokenizer.encode_batch(texts, add_special_tokens=False)):
        ids = np.asarray(encoding.ids, dtype=np.intp)
        total = np.zeros(model.vectors.shape[1], dtype=np.float64)
        for start in range(0, len(ids), _SLICE_TOKENS):
            total += model.vectors[ids[start:start + _SLICE_TOKENS]].sum(axis=0, dtype=np.float64)
        out[row] = total  # the sum points where the mean does, and only the direction is kept
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out
