"""The bench's corpus: three fictional help centres as Markdown, cut into passages of ~200 words.

A passage's id is "<company>/<page>#<section>#<n>"; a question is labelled with "<company>/<page>#<section>"
(or a whole page, "<company>/<page>"), so a section cut in two is found by either half. The product's
own chunker (chatspark/knowledge/chunking.py) is written elsewhere; this one only has to cut these
pages the same way every run: by heading, then by paragraph and sentence when a section is long."""

from __future__ import annotations

import re
from pathlib import Path

from chatspark.knowledge.documents import Passage

CORPUS = Path(__file__).parent / "corpus"
CHUNK_WORDS = 200


def slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def companies() -> list[str]:
    return sorted(path.name for path in CORPUS.iterdir() if path.is_dir())


def passages(company: str) -> list[Passage]:
    found: list[Passage] = []
    for page in sorted((CORPUS / company).glob("*.md")):
        title, sections = _sections(page.read_text())
        for heading, text in sections:
            for n, piece in enumerate(_pieces(text)):
                found.append(
                    Passage(
                        id=f"{company}/{page.stem}#{slug(heading)}#{n}",
                        training_id=1,
                        source=company,
                        text=piece,
                        title=title,
                        url=f"https://help.{company}.example/{page.stem}#{slug(heading)}",
                        heading=heading,
                    )
                )
    return found


def answers(passage_id: str, expected: str) -> bool:
    """Whether a passage is the labelled one: its section, or any section of a labelled page."""
    section = passage_id.rsplit("#", 1)[0]
    return section == expected or section.split("#", 1)[0] == expected


def _sections(markdown: str) -> tuple[str, list[tuple[str, str]]]:
    title = ""
    sections: list[tuple[str, list[str]]] = []
    for line in markdown.splitlines():
        if line.startswith("# "):
            title = line[2:].strip()
        elif line.startswith("## "):
            sections.append((line[3:].strip(), []))
        elif sections:
            sections[-1][1].append(line)
    return title, [(heading, "\n".join(lines).strip()) for heading, lines in sections]


def _pieces(text: str) -> list[str]:
    """Sentences packed into pieces of at most CHUNK_WORDS words (a longer sentence stays whole)."""
    sentences = re.split(r"(?<=[.!?])\s+", text)
    pieces: list[list[str]] = [[]]
    words = 0
    for sentence in sentences:
        count = len(sentence.split())
        if pieces[-1] and words + count > CHUNK_WORDS:
            pieces.append([])
            words = 0
        pieces[-1].append(sentence)
        words += count
    return [" ".join(piece) for piece in pieces if piece]
