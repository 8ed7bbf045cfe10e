"""A document's text → chunks within a token budget, split along headings, paragraphs, sentences,
lines and words (in that order of preference), each carrying a little of the one before.

Every chunk is a slice of the document's text (the overlap too), so the same text always gives the
same chunks: a retried ingestion job indexes exactly what the first attempt would have. Sizes are
counted as the prompt counts them (`token_bound`: UTF-8 bytes + 4), so a chunk never exceeds it.
"""

from __future__ import annotations

import re

from chatspark.knowledge.documents import Chunk, Document
from chatspark.prompt import token_bound

# Where a piece may be split, coarsest first. Each pattern matches only the whitespace between two
# pieces (so no character is lost at a chunk's edge); after CJK sentence marks that may be none.
# Bytes, so that a length is a size in the budget.
_GAPS = (
    re.compile(rb"\n(?:[ \t]*\n)+"),  # paragraphs
    # sentences: after . ! ? (and a closing quote or bracket), or after 。！？
    re.compile(rb"(?<=[.!?])\s+|(?<=[.!?][\"')\]])\s+|" + "(?<=。|！|？)".encode() + rb"\s*"),
    # Lines after sentences: a hard-wrapped paragraph is better cut at a full stop than at a wrap;
    # list items and table rows without full stops are still cut whole.
    re.compile(rb"\n"),
    re.compile(rb"\s+"),  # words
)
# Where an overlap may start: after a sentence or a line break, else after any space.
_SENTENCE_STARTS = re.compile(_GAPS[1].pattern + rb"|\n\s*")
_WORD_STARTS = re.compile(rb"\s+")

Span = tuple[int, int]  # [start, end) in the document's UTF-8 bytes


def chunk(document: Document, *, max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    """`overlap_tokens` of the previous chunk's end (whole sentences if they fit, else words) start
    the next chunk of the same section; at most half the budget, so every chunk is mostly new."""
    budget = max_tokens - token_bound("")
    if budget < 4:  # the widest UTF-8 character must fit
        raise ValueError(f"max_tokens must be at least {token_bound('') + 4}, not {max_tokens}")
    if overlap_tokens < 0:
        raise ValueError("overlap_tokens must not be negative")
    overlap = min(overlap_tokens, budget // 2)
    data = document.text.encode(errors="replace")  # lone surrogates cannot be sent anyway
    chunks = []
    for heading, section in _sections(data):
        pieces = _keep_headings_with_text(data, _pieces(data, section, 0, budget), budget)
        for start, end in _pack(data, pieces, budget, overlap):
            # Pieces were cut at ASCII whitespace; other spaces (NBSP, U+3000…) are trimmed here.
            if text := data[start:end].decode().strip():
                chunks.append(Chunk(text=text, title=document.title, url=document.url, heading=heading))
    return chunks


def _sections(data: bytes) -> list[tuple[str | None, Span]]:
    """Spans from each heading line to the next; a heading with nothing under it (a title right
    above a subheading) joins the next section, whose heading is then the nearest one."""
    bounds: list[tuple[str | None, int]] = [(None, 0)]  # the text before the first heading
    fence, offset = None, 0
    for line in data.split(b"\n"):
        marker = line.strip()[:3]
        if marker in (b"```", b"~~~"):
            fence = None if fence == marker else fence or marker
        elif fence is None and (heading := _heading(line)) is not None:
            bounds.append((heading, offset))
        offset += len(line) + 1
    sections: list[tuple[str | None, Span]] = []
    pending: int | None = None  # where a heading-only section began
    for n, (heading, start) in enumerate(bounds):
        end = bounds[n + 1][1] if n + 1 < len(bounds) else len(data)
        heading_end = data.find(b"\n", start, end) if heading is not None else start
        if heading is not None and n + 1 < len(bounds) and (heading_end < 0 or not data[heading_end:end].strip()):
            pending = start if pending is None else pending
            continue
        start = start if pending is None else pending
        pending = None
        if data[start:end].strip():
            sections.append((heading, (start, end)))
    return sections


def _heading(line: bytes) -> str | None:
    """The text of an ATX heading line (`## Refunds ##` → "Refunds"), else None."""
    text = line.rstrip()
    indent = len(text) - len(text.lstrip(b" "))
    level = len(text) - indent - len(text[indent:].lstrip(b"#"))
    if indent > 3 or not 1 <= level <= 6:
        return None
    rest = text[indent + level:]
    if rest and rest[:1] not in (b" ", b"\t"):
        return None  # "#hashtag" is not a heading
    return rest.strip().rstrip(b"#").strip().decode(errors="replace") or None


def _pieces(data: bytes, span: Span, level: int, budget: int) -> list[Span]:
    """`span` without its outer whitespace, cut at the coarsest gaps that leave every piece within
    the budget; a single word longer than the budget is cut between characters."""
    start, end = _strip(data, span)
    if end - start <= budget:
        return [(start, end)] if end > start else []
    if level == len(_GAPS):
        return _cut(data, start, end, budget)
    pieces: list[Span] = []
    cursor = start
    for gap in _GAPS[level].finditer(data, start, end):
        pieces.extend(_pieces(data, (cursor, gap.start()), level + 1, budget))
        cursor = gap.end()
    pieces.extend(_pieces(data, (cursor, end), level + 1, budget))
    return pieces


def _keep_headings_with_text(data: bytes, pieces: list[Span], budget: int) -> list[Span]:
    """The heading lines opening a section joined to the piece after them, if that fits: a chunk
    of nothing but headings would answer no question."""
    while len(pieces) > 1 and pieces[1][1] - pieces[0][0] <= budget and all(
        not line.strip() or _heading(line) is not None for line in data[slice(*pieces[0])].split(b"\n")
    ):
        pieces = [(pieces[0][0], pieces[1][1]), *pieces[2:]]
    return pieces


def _strip(data: bytes, span: Span) -> Span:
    start, end = span
    while start < end and data[start] in b" \t\n\r\x0b\x0c":
        start += 1
    while end > start and data[end - 1] in b" \t\n\r\x0b\x0c":
        end -= 1
    return start, end


def _cut(data: bytes, start: int, end: int, budget: int) -> list[Span]:
    pieces = []
    while end - start > budget:
        cut = start + budget
        while data[cut] & 0xC0 == 0x80:  # never inside a UTF-8 character
            cut -= 1
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def _pack(data: bytes, pieces: list[Span], budget: int, overlap: int) -> list[Span]:
    """Consecutive pieces joined greedily (with the text between them) up to the budget."""
    spans: list[Span] = []
    carried: int | None = None  # where the overlap from the previous chunk starts
    i = 0
    while i < len(pieces):
        start = pieces[i][0]
        if carried is not None and pieces[i][1] - carried <= budget:
            start = carried  # else the overlap and the next piece do not fit together: drop it
        end = pieces[i][1]
        i += 1
        while i < len(pieces) and pieces[i][1] - start <= budget:
            end = pieces[i][1]
            i += 1
        spans.append((start, end))
        carried = _overlap_start(data, start, end, overlap) if i < len(pieces) else None
    return spans


def _overlap_start(data: bytes, start: int, end: int, overlap: int) -> int | None:
    """The earliest sentence start (else word start) inside the chunk's last `overlap` bytes."""
    window = max(start + 1, end - overlap)
    if window >= end:
        return None
    for starts in (_SENTENCE_STARTS, _WORD_STARTS):
        # Begin a little early: the gap ending at `window` may start before it.
        for match in starts.finditer(data, max(start, window - 8), end):
            if window <= match.end() < end:
                return match.end()
    return None
