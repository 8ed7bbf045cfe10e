"""From fetched bytes to prompt-sized chunks: extraction (HTML, Markdown, text, PDF) and chunking."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatspark.knowledge.chunking import chunk
from chatspark.knowledge.documents import Document
from chatspark.knowledge.extract import ExtractionError, extract
from chatspark.prompt import token_bound

RETURNS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Returns policy | Acme Shop</title></head>
<body>
<header><nav><ul><li><a href="/">Home</a></li><li><a href="/shop">Shop all products</a></li>
<li><a href="/about">About us</a></li></ul></nav></header>
<div id="cookie-banner" class="cookie-consent">We use cookies to improve your experience.
<button>Accept all cookies</button></div>
<main><article>
<h1>Returns policy</h1>
<p>You can return any item within 30 days of delivery for a full refund, provided it is unused and in
its original packaging. We pay the return shipping for faulty goods.</p>
<h2>How to start a return</h2>
<p>Sign in to your account, open the order, and choose Return an item. Print the label we email you and
attach it to the parcel. Drop it off at any post office.</p>
<table><tr><th>Item</th><th>Window</th></tr><tr><td>Clothing</td><td>30 days</td></tr>
<tr><td>Electronics</td><td>14 days</td></tr></table>
<h2>Refunds</h2>
<p>Refunds go back to the original payment method within five working days after the parcel reaches
our warehouse. Café gift cards are refunded as store credit.</p>
</article></main>
<footer><p>© 2024 Acme Shop Ltd. All rights reserved.</p><a href="/privacy">Privacy</a></footer>
</body></html>"""


def pdf(pages: list[str], title: str | None = None) -> bytes:
    """A minimal valid PDF: one line of Helvetica text per page, the title in the Info dictionary."""
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % p for p in page_ids), len(pages)),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    for page_id, text in zip(page_ids, pages, strict=True):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")
        stream = b"BT /F1 12 Tf 72 720 Td (%s) Tj ET" % escaped
        objects[page_id] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1))
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    info_id = max(objects) + 1
    objects[info_id] = b"<< /Title (%s) >>" % title.encode("latin-1") if title else b"<< >>"
    out, offsets = bytearray(b"%PDF-1.4\n"), {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (info_id + 1)
    out += b"".join(b"%010d 00000 n \n" % offsets[n] for n in range(1, info_id + 1))
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (info_id + 1, info_id, xref)
    return bytes(out)


# --- extraction: HTML ---------------------------------------------------------------------------


def test_html_keeps_the_main_text_with_headings_and_drops_navigation_footer_and_cookie_banner() -> None:
    document = extract(RETURNS_PAGE.encode(), "text/html; charset=utf-8", "https://shop.example/returns")
    assert document.url == "https://shop.example/returns"
    assert document.title == "Returns policy"
    lines = document.text.splitlines()
    assert "## How to start a return" in lines and "## Refunds" in lines
    assert "within 30 days of delivery for a full refund" in document.text
    assert "Electronics" in document.text  # tables are content
    for boilerplate in ("Shop all products", "cookies", "All rights reserved", "Privacy"):
        assert boilerplate not in document.text


def test_html_title_falls_back_to_the_title_element() -> None:
    page = "<html><head><title>Opening hours</title></head><body><div><p>" + "We open at nine. " * 20
    document = extract((page + "</p></div></body></html>").encode(), "text/html", None)
    assert document.title == "Opening hours"
    assert document.text.startswith("We open at nine.")


def test_xhtml_with_an_xml_declaration_is_read() -> None:
    page = (b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html><html xmlns="http://www.w3.org/1999/xhtml">'
            b"<head><title>Strict page</title></head><body><p>Hello from XHTML.</p></body></html>")
    document = extract(page, "application/xhtml+xml", None)
    assert (document.title, document.text) == ("Strict page", "Hello from XHTML.")


def test_html_without_a_main_text_keeps_all_visible_text_as_paragraphs_and_headings() -> None:
    page = (b"<html><head><style>p{color:red}</style><script>var secret = 1;</script></head><body>"
            b"<nav><a href='/'>Home</a></nav></body></html>")
    document = extract(page, "text/html", None)
    assert document.text == "Home"
    assert "secret" not in document.text


def test_a_page_too_large_for_the_main_text_extractor_is_stripped_to_its_visible_text_quickly() -> None:
    page = b"<html><body><h2>Log</h2>" + b"<p>one line of the log</p>" * 120_000 + b"</body></html>"
    started = time.monotonic()
    document = extract(page, "text/html", None)
    assert time.monotonic() - started < 10
    assert document.text.startswith("## Log\n\none line of the log\n\none line")
    assert document.text.count("one line of the log") == 120_000


def test_the_declared_charset_decodes_the_page() -> None:
    page = "<html><body><article><p>Crème brûlée à la carte, très bien servie.</p></article></body></html>"
    document = extract(page.encode("iso-8859-1"), "text/html; charset=ISO-8859-1", None)
    assert "Crème brûlée à la carte" in document.text


def test_a_meta_charset_is_used_when_the_header_names_none() -> None:
    page = "<html><head><meta charset='windows-1251'></head><body><p>Привет, как дела сегодня?</p></body></html>"
    assert "Привет, как дела" in extract(page.encode("cp1251"), "text/html", None).text


def test_an_undeclared_legacy_encoding_is_detected() -> None:
    page = "<html><head><title>日本語</title></head><body><p>これは日本語のテキストです。東京は日本の首都です。</p></body></html>"
    document = extract(page.encode("shift_jis"), "text/html", None)
    assert document.title == "日本語"
    assert "東京は日本の首都です。" in document.text


def test_an_unknown_declared_charset_is_detected_instead() -> None:
    document = extract("<html><body><p>Grüße aus Köln</p></body></html>".encode(), "text/html; charset=x-nonsense", None)
    assert document.text == "Grüße aus Köln"


def test_invalid_utf8_bytes_do_not_stop_extraction() -> None:
    page = b"<html><body><p>valid text \xff\xfe\xc3 and more valid text after the bad bytes</p></body></html>"
    assert "more valid text after the bad bytes" in extract(page, "text/html; charset=utf-8", None).text


def test_deeply_nested_html_is_handled_quickly() -> None:
    for opener, closer in ((b"<div>", b"</div>"), (b"<b>", b""), (b"<table><tr><td>", b"</td></tr></table>")):
        page = b"<html><body><p>Shallow text first.</p>" + opener * 100_000 + b"deep" + closer * 100_000
        started = time.monotonic()
        try:
            extract(page + b"</body></html>", "text/html", None)
        except ExtractionError:
            pass  # no text is an answer too; a crash or a hang is not
        assert time.monotonic() - started < 5


# --- extraction: Markdown, text, PDF, refusals ---------------------------------------------------


def test_markdown_passes_through_and_its_first_top_heading_is_the_title() -> None:
    text = "```\n# not a heading: code\n```\n\n## Setup\n\n# Installing the widget\r\n\r\n\r\n\r\nRun it.\n"
    document = extract(text.encode(), "text/markdown; charset=utf-8", "https://docs.example/widget.md")
    assert document.title == "Installing the widget"
    assert document.text == "```\n# not a heading: code\n```\n\n## Setup\n\n# Installing the widget\n\nRun it."


def test_plain_text_without_a_heading_has_no_title() -> None:
    document = extract(b"Our office is closed on public holidays.\n", "text/plain", None)
    assert document == extract(b"Our office is closed on public holidays.", "text/plain", None)
    assert (document.title, document.text) == (None, "Our office is closed on public holidays.")


def test_pdf_pages_become_paragraphs_and_the_metadata_gives_the_title() -> None:
    body = pdf(["Warranty lasts two years.", "Repairs are free (parts and labour)."], title="Warranty terms")
    document = extract(body, "application/pdf", "https://shop.example/warranty.pdf")
    assert document.title == "Warranty terms"
    assert document.text == "Warranty lasts two years.\n\nRepairs are free (parts and labour)."


def test_a_pdf_without_a_title_has_none() -> None:
    assert extract(pdf(["Just one page of text."]), "application/pdf", None).title is None


def test_content_without_a_known_type_is_recognised_by_its_bytes_or_url() -> None:
    assert extract(pdf(["From an octet stream."]), "application/octet-stream", None).text == "From an octet stream."
    assert extract(b"<!DOCTYPE html><html><body><p>Sniffed page.</p></body></html>", "", None).text == "Sniffed page."
    assert extract(b"# Notes\n\nText.", "application/octet-stream", "https://x.example/notes.md").title == "Notes"


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"\x89PNG\r\n\x1a\n", "image/png", "unsupported content type 'image/png'"),
        (b"PK\x03\x04zipzip", "application/octet-stream", "unsupported content type 'application/octet-stream'"),
        (b"", "text/plain", "the content is empty"),
        (b"  \n\t ", "text/html", "the content is empty"),
        (b"<html><body><script>only()</script></body></html>", "text/html", "no text found in the content"),
        (b"text\x00with\x00nul bytes", "text/plain", "the content looks binary, not text"),
        (b"%PDF-1.4\nnot really a pdf", "application/pdf", "the PDF could not be read"),
        (pdf([""]), "application/pdf", "no text found in the content"),
    ],
)
def test_content_that_cannot_become_text_is_refused_with_a_clear_message(
    body: bytes, content_type: str, message: str
) -> None:
    with pytest.raises(ExtractionError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        extract(body, content_type, None)


# --- chunking -----------------------------------------------------------------------------------

GUIDE = """# Widget guide

## Installing

Unpack the widget and place it on a flat surface. Connect the power cable to the back. Press the
green button for three seconds until the light blinks. The widget then looks for a network.

If the light stays red, the cable is loose. Check both ends and try again.

## Cleaning

Wipe the case with a dry cloth. Never use water or solvents: they damage the coating.

```
# this line is code, not a heading
make clean
```
"""


def words(text: str) -> str:
    return "".join(text.split())


def test_chunks_follow_headings_and_know_the_nearest_one() -> None:
    document = Document(title="Widget guide", text=GUIDE, url="https://docs.example/widget")
    chunks = chunk(document, max_tokens=800, overlap_tokens=80)
    # the title heading has nothing under it of its own: it travels with the first section
    assert [c.heading for c in chunks] == ["Installing", "Cleaning"]
    assert chunks[0].text.startswith("# Widget guide\n\n## Installing\n\nUnpack the widget")
    assert chunks[0].text.endswith("Check both ends and try again.")
    assert chunks[1].text.startswith("## Cleaning") and chunks[1].text.endswith("make clean\n```")
    assert {(c.title, c.url) for c in chunks} == {("Widget guide", "https://docs.example/widget")}


def test_a_long_section_is_split_at_paragraphs_then_sentences_with_overlap_within_the_budget() -> None:
    chunks = chunk(Document(title=None, text=GUIDE), max_tokens=130, overlap_tokens=40)
    assert all(token_bound(c.text) <= 130 for c in chunks)
    installing = [c.text for c in chunks if c.heading == "Installing"]
    assert len(installing) > 2
    assert installing[0].startswith("# Widget guide\n\n## Installing\n\nUnpack")  # headings stay with text
    # the second paragraph fits, so it is never cut; the first one is cut between sentences
    assert any(t.endswith("If the light stays red, the cable is loose. Check both ends and try again.")
               for t in installing)
    assert all(t.endswith(".") for t in installing)
    for previous, current in zip(installing, installing[1:]):
        shared = next(n for n in range(len(current), 0, -1) if previous.endswith(current[:n]))
        assert 0 < len(current[:shared].encode()) <= 40  # a tail of the previous chunk starts this one
    cleaning = [c.text for c in chunks if c.heading == "Cleaning"]
    assert cleaning[0].startswith("## Cleaning")  # no overlap carried across a heading


def test_without_overlap_the_chunks_hold_every_word_of_the_document_once() -> None:
    chunks = chunk(Document(title=None, text=GUIDE), max_tokens=60, overlap_tokens=0)
    assert "".join(words(c.text) for c in chunks) == words(GUIDE)


def test_a_word_longer_than_the_budget_is_cut_between_characters() -> None:
    text = "short start " + "ü€😀" * 200 + " short end"
    chunks = chunk(Document(title=None, text=text), max_tokens=50, overlap_tokens=10)
    assert all(token_bound(c.text) <= 50 for c in chunks)
    assert "".join(words(c.text) for c in chunk(Document(title=None, text=text), max_tokens=50,
                                                  overlap_tokens=0)) == words(text)


def test_the_same_document_always_gives_the_same_chunks() -> None:
    document = Document(title="t", text=GUIDE * 5)
    assert chunk(document, max_tokens=100, overlap_tokens=30) == chunk(document, max_tokens=100, overlap_tokens=30)


def test_blank_documents_give_no_chunks_and_no_chunk_is_ever_empty() -> None:
    assert chunk(Document(title=None, text=""), max_tokens=800, overlap_tokens=80) == []
    assert chunk(Document(title=None, text=" \n\n\t"), max_tokens=800, overlap_tokens=80) == []
    assert [c.text for c in chunk(Document(title=None, text="# Only a title"), max_tokens=800, overlap_tokens=80)] \
        == ["# Only a title"]


def test_a_budget_too_small_for_one_character_is_refused() -> None:
    with pytest.raises(ValueError, match="max_tokens must be at least 8"):
        chunk(Document(title=None, text="hello"), max_tokens=7, overlap_tokens=0)
    with pytest.raises(ValueError, match="overlap_tokens must not be negative"):
        chunk(Document(title=None, text="hello"), max_tokens=100, overlap_tokens=-1)


def test_a_large_document_is_chunked_quickly() -> None:
    text = ("## Part\n\n" + "A sentence of ordinary length about the product. " * 40 + "\n\n") * 1000
    started = time.monotonic()
    chunks = chunk(Document(title=None, text=text), max_tokens=800, overlap_tokens=80)
    assert time.monotonic() - started < 5
    assert len(chunks) >= 2000


texts = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8"), max_size=300),
        st.sampled_from(["\n\n", "\n", ". ", "。", "# Heading\n", "\n## Sub\n\n", "```\n", " ", "-" * 120]),
    ),
    max_size=30,
).map("".join)


@given(text=texts, max_tokens=st.integers(8, 300), overlap_tokens=st.integers(0, 300))
@settings(max_examples=300, deadline=None)
def test_chunks_are_non_empty_slices_of_the_text_within_the_budget(text: str, max_tokens: int, overlap_tokens: int) -> None:
    chunks = chunk(Document(title=None, text=text), max_tokens=max_tokens, overlap_tokens=overlap_tokens)
    for c in chunks:
        assert c.text.strip() and c.text == c.text.strip()
        assert token_bound(c.text) <= max_tokens
        assert c.text in text
    if overlap_tokens == 0:
        assert "".join(words(c.text) for c in chunks) == words(text)
