"""The bases of every body the API sends or takes (msgspec Structs: the types are the schema)."""

from __future__ import annotations

import msgspec


class Wire(msgspec.Struct, kw_only=True, rename="camel"):
    """Sent or taken: keyword-only fields, camelCase on the wire."""


class Request(Wire, forbid_unknown_fields=True):
    """A body a client sends: an unknown field is an error, not silently dropped."""
