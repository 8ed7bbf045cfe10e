"""Fetched bytes → a Document: the title and the main text, headings kept as Markdown `#` lines.

HTML goes through trafilatura (navigation, footers and cookie banners dropped), Markdown and plain
text pass through, PDF pages through pypdf. CPU-bound and synchronous: run it in a worker thread.
Callers bound the body (`max_page_bytes`, `max_text_bytes`); within that, a hostile page costs a few
seconds at most here (~1 s a megabyte in the worst shapes measured), never unbounded work.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import time
import unicodedata
from urllib.parse import urlsplit

import lxml.etree
import lxml.html
import pypdf
import pypdf.errors
import trafilatura
from trafilatura.utils import detect_encoding

from chatspark.knowledge.documents import Document

# Beyond this many elements trafilatura's cost (~80 µs an element here) would pass a few seconds, so
# such a page gets the plain-text strip, which is linear and cheap. Real articles stay well below.
MAX_HTML_ELEMENTS = 50_000
MAX_PDF_PAGES = 2_000
PDF_SECONDS = 60.0  # checked between pages: one hostile page can still take longer, never many

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_MARKDOWN_TYPES = frozenset({"text/markdown", "text/x-markdown"})
_TEXT_TYPES = frozenset({"text/plain"})
_PDF_TYPES = frozenset({"application/pdf", "application/x-pdf"})
# Servers send these when they do not know: the bytes (or the URL's suffix) tell.
_UNKNOWN_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]{0,200}\?>")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_BLANK_RUNS = re.compile(r"\n{3,}")

# Elements whose text is never page content, and those that start a new paragraph.
_INVISIBLE = ("script", "style", "noscript", "template", "svg", "head", "iframe", "object", "canvas")
_BLOCKS = frozenset({
    "p", "div", "section", "article", "main", "aside", "header", "footer", "nav", "li", "ul", "ol",
    "table", "tr", "td", "th", "blockquote", "pre", "br", "hr", "dd", "dt", "dl", "figure",
    "figcaption", "form", "address", "details", "summary",
})
_HEADINGS = {f"h{n}": n for n in range(1, 7)}

# trafilatura logs every page it cannot use at WARNING/ERROR; for us that is an ordinary outcome.
logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
logging.getLogger("pypdf").setLevel(logging.ERROR)


class ExtractionError(Exception):
    """The content cannot become text: an unsupported type, a broken file, or no text at all."""


def extract(body: bytes, content_type: str, url: str | None) -> Document:
    """`content_type` as the Content-Type header gives it (parameters such as charset allowed)."""
    if not body.strip():
        raise ExtractionError("the content is empty")
    media_type, charset = _parse_content_type(content_type)
    kind = _kind(media_type, body, url)
    if kind == "pdf":
        title, text = _pdf(body)
    elif kind == "html":
        title, text = _html(_decode(body, charset, html=True), url)
    else:  # Markdown and plain text are already what a Document holds
        text = _clean(_decode(body, charset, html=False))
        title = _first_title(text)
    if not text:
        raise ExtractionError("no text found in the content")
    return Document(title=title, text=text, url=url)


def _parse_content_type(content_type: str) -> tuple[str, str | None]:
    media_type, *params = content_type.split(";")
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip("\"'"):
            charset = value.strip().strip("\"'")
    return media_type.strip().lower(), charset


def _kind(media_type: str, body: bytes, url: str | None) -> str:
    if media_type in _HTML_TYPES:
        return "html"
    if media_type in _MARKDOWN_TYPES or media_type in _TEXT_TYPES:
        return "text"
    if media_type in _PDF_TYPES:
        return "pdf"
    if media_type in _UNKNOWN_TYPES:
        head = body[:1024].lstrip().lower()
        suffix = urlsplit(url).path.lower().rpartition(".")[2] if url else ""
        if head.startswith(b"%pdf-"):
            return "pdf"
        if head.startswith((b"<!doctype html", b"<html")):
            return "html"
        if suffix in ("md", "markdown", "txt"):
            return "text"
    raise ExtractionError(f"unsupported content type {media_type or '(none)'!r}")


# --- decoding -------------------------------------------------------------------------------------


def _decode(body: bytes, declared: str | None, *, html: bool) -> str:
    """The declared charset if Python knows it, else a BOM, a `<meta charset>`, UTF-8, a guess."""
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):
        if body.startswith(bom):
            return body.decode(encoding, errors="replace")
    if b"\x00" in body[:8192]:  # as git and file(1) tell: text (without a UTF-16 BOM) has no NUL
        raise ExtractionError("the content looks binary, not text")
    candidates = [declared] if declared else []
    if html and (meta := _META_CHARSET.search(body[:4096])):
        candidates.append(meta.group(1).decode("ascii"))
    for name in candidates:
        try:
            return body.decode(_known_codec(name), errors="replace")
        except LookupError:
            continue  # a charset Python does not know: detect instead
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Detection reads a bounded sample: on megabytes of noise it would otherwise take seconds.
    for guess in detect_encoding(body[:5000] + body[-5000:]):
        try:
            return body.decode(guess, errors="replace")
        except LookupError:
            continue
    return body.decode("utf-8", errors="replace")


def _known_codec(name: str) -> str:
    codec = codecs.lookup(name).name
    # Browsers read "latin-1"/"ascii" labels as windows-1252, and so do pages written for them.
    return "cp1252" if codec in ("latin-1", "iso8859-1", "ascii") else codec


def _clean(text: str) -> str:
    """NFC, \\n line ends, no control characters, at most one blank line in a row."""
    # Line by line, not with a regex: `[ \t]+$` backtracks quadratically over a long run of spaces.
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "\n".join(line.rstrip() for line in _CONTROL.sub("", text).split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip()


def _first_title(text: str) -> str | None:
    """The first level-1 `#` heading outside code fences."""
    fence = None
    for line in text.split("\n"):
        marker = line.lstrip()[:3]
        if marker in ("```", "~~~"):
            fence = None if fence == marker else fence or marker
        elif fence is None and line.startswith("# "):
            title = line[2:].strip().rstrip("#").strip()
            if title:
                return title
    return None


# --- HTML -----------------------------------------------------------------------------------------


def _html(markup: str, url: str | None) -> tuple[str | None, str]:
    tree = _parse_html(markup)
    if tree is None:
        raise ExtractionError("the HTML could not be parsed")
    title = _html_title(tree)
    text = ""
    if sum(1 for _ in tree.iter()) <= MAX_HTML_ELEMENTS:
        found = trafilatura.bare_extraction(
            tree, url=url, with_metadata=True, include_comments=False, include_tables=True,
            include_links=False, include_images=False, include_formatting=True,
            date_extraction_params={"extensive_search": False},
        )
        if found is not None:
            title = found.title or title
            text = _clean(found.text or "")
    if not text:  # trafilatura found no main text (or the page was too large for it): keep it all
        text = _clean(_plain_text(tree))
    return (_clean(title) or None) if title else None, text


def _parse_html(markup: str) -> lxml.html.HtmlElement | None:
    # huge_tree stays off: libxml2 then stops nesting at 256 levels instead of recursing on.
    parser = lxml.html.HTMLParser(remove_comments=True, remove_pis=True, collect_ids=False)
    try:
        # lxml refuses a str that declares an encoding (XHTML's `<?xml … encoding=…?>`): it is decoded.
        return lxml.html.document_fromstring(_XML_DECLARATION.sub("", _CONTROL.sub("", markup)), parser=parser)
    except (lxml.etree.ParserError, ValueError):
        return None


def _html_title(tree: lxml.html.HtmlElement) -> str | None:
    for element in tree.iter("title"):
        text = " ".join(element.text_content().split())
        if text:
            return text
    return None


def _plain_text(tree: lxml.html.HtmlElement) -> str:
    """All visible text; blocks become paragraphs and h1–h6 `#` lines. Iterative, so depth is harmless."""
    body = tree.find("body")
    root = body if body is not None else tree
    lxml.etree.strip_elements(root, *_INVISIBLE, with_tail=False)
    parts: list[str] = []
    for event, element in lxml.etree.iterwalk(root, events=("start", "end")):
        tag = element.tag if isinstance(element.tag, str) else ""
        if event == "start":
            if tag in _HEADINGS:
                parts.append("\n\n" + "#" * _HEADINGS[tag] + " ")
            elif tag in _BLOCKS:
                parts.append("\n\n")
            if element.text:
                parts.append(element.text)
        else:
            if tag in _HEADINGS or tag in _BLOCKS:
                parts.append("\n\n")
            if element.tail and element is not root:
                parts.append(element.tail)
    return "\n\n".join(" ".join(p.split()) for p in "".join(parts).split("\n\n") if p.strip())


# --- PDF ------------------------------------------------------------------------------------------


def _pdf(body: bytes) -> tuple[str | None, str]:
    started = time.monotonic()
    try:
        reader = pypdf.PdfReader(io.BytesIO(body))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionError("the PDF is encrypted")
        pages = reader.pages
        if len(pages) > MAX_PDF_PAGES:
            raise ExtractionError(f"the PDF has {len(pages)} pages; at most {MAX_PDF_PAGES} are read")
        texts = []
        for number, page in enumerate(pages, start=1):
            if time.monotonic() - started > PDF_SECONDS:
                raise ExtractionError(f"reading the PDF took over {PDF_SECONDS:g} s (stopped at page {number})")
            texts.append(_clean(page.extract_text() or ""))
        title = _pdf_title(reader)
    except ExtractionError:
        raise
    except (pypdf.errors.PyPdfError, ValueError, KeyError, TypeError, AttributeError,
            IndexError, RecursionError, NotImplementedError, OSError) as exc:
        # pypdf signals a broken file with many exception types, not only its own.
        raise ExtractionError(f"the PDF could not be read ({type(exc).__name__})") from exc
    return title, "\n\n".join(t for t in texts if t)


def _pdf_title(reader: pypdf.PdfReader) -> str | None:
    metadata = reader.metadata
    title = metadata.title if metadata is not None else None
    return (_clean(str(title)) or None) if title else None
