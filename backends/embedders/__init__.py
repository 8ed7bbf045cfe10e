"""Pluggable text embedders, one module each, imported only when configured (like model backends).

Every module here exposes `create(settings: EmbedderSettings) -> Embedder` (see `base.py`).
"""

from __future__ import annotations

import importlib

from backends.embedders.base import Embedder, EmbedderSettings

KNOWN = ("wordllama", "litellm")


def import_embedder(name: str) -> None:
    """Imports an embedder's module (the slow part; safe in a worker thread)."""
    if name not in KNOWN:
        raise ValueError(f"unknown embedder {name!r}; known: {', '.join(KNOWN)}")
    importlib.import_module(f"backends.embedders.{name}")


def load_embedder(settings: EmbedderSettings) -> Embedder:
    import_embedder(settings.kind)
    return importlib.import_module(f"backends.embedders.{settings.kind}").create(settings)
