"""The offline embedder for the bench: wordllama's 256-d model from its wheel (no download).
The product's own wrapper (backends/embedders/wordllama.py) is written elsewhere; this is the same
model loaded the same way, so the vectors are the ones agents will get."""

from __future__ import annotations

import os
from functools import cache

import numpy as np

from chatspark.knowledge.documents import Passage


@cache
def model():  # type: ignore[no-untyped-def]
    import wordllama
    from wordllama import WordLlama

    return WordLlama.load(cache_dir=os.path.dirname(wordllama.__file__), disable_download=True)


def embed(texts: list[str]) -> np.ndarray:
    return np.asarray(model().embed(texts, norm=True), dtype=np.float32)


def passage_text(passage: Passage) -> str:
    """What is embedded for a passage: its page title and heading carry much of its meaning."""
    return "\n".join(part for part in (passage.title, passage.heading, passage.text) if part)
