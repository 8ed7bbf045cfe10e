"""The values passed between the knowledge steps: fetched documents, chunks, indexed passages."""

from __future__ import annotations

import msgspec


class Document(msgspec.Struct, frozen=True, kw_only=True):
    """One page or text, its main content extracted: Markdown-ish text where `#` lines are headings."""

    title: str | None
    text: str
    url: str | None = None


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    """A piece of a document small enough for a prompt; keeps where it came from."""

    text: str
    title: str | None = None  # the document's title
    url: str | None = None
    heading: str | None = None  # the nearest heading above the chunk


class Passage(msgspec.Struct, frozen=True, kw_only=True):
    """A stored chunk as retrieval sees it: the chunk and its source."""

    id: str  # unique within the agent, stable across replicas ("<trainingId>:<generation>:<n>")
    training_id: int
    source: str  # the source's slug
    text: str
    title: str | None = None
    url: str | None = None
    heading: str | None = None
