"""What agents know: training sources turned into passages and retrieved on every turn.

| module         | job                                                                          |
|----------------|------------------------------------------------------------------------------|
| `documents.py` | the values passed between the steps (Document, Chunk, Passage)               |
| `ssrf.py`      | the guard: a URL whose address is loopback/private/link-local/metadata is refused |
| `fetch.py`     | one page over HTTP with limits (timeout, size, content types, re-checked redirects) |
| `crawl.py`     | a website: same host, robots.txt, sitemap.xml, max pages and depth           |
| `extract.py`   | HTML/Markdown/text (PDF) → title + main text with headings                   |
| `chunking.py`  | text → chunks along headings/paragraphs to a token budget, with overlap      |
| `words.py`     | text → BM25 terms: lowercase words, English stopwords out, a light stemmer       |
| `index.py`     | one agent's in-memory hybrid index (BM25 + vectors, fused), and its LRU cache |
"""
