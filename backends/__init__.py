"""Pluggable model backends, one module each, imported only when a configured model uses it.

Every module here exposes `create() -> Backend` (see `backends.base`).
"""

from __future__ import annotations

import importlib

from backends.base import Backend

KNOWN = ("local", "litellm", "openai")


def import_backend(name: str) -> None:
    """Imports a backend's module (the slow part for litellm; safe in a worker thread)."""
    if name not in KNOWN:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(KNOWN)}")
    importlib.import_module(f"backends.{name}")


def load_backend(name: str) -> Backend:
    import_backend(name)
    return importlib.import_module(f"backends.{name}").create()
