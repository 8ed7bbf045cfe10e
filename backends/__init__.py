"""Pluggable model backends, one module each, imported only when a configured model uses it.

Every module here exposes `create() -> Backend` (see `backends.base`).
"""

from __future__ import annotations

import importlib

from backends.base import Backend

KNOWN = ("local", "litellm", "openai")


def load_backend(name: str) -> Backend:
    if name not in KNOWN:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(KNOWN)}")
    module = importlib.import_module(f"backends.{name}")
    return module.create()
