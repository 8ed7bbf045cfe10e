"""A website: the pages of one site, breadth first from the start page, as its robots.txt allows.

The order is deterministic (the start page; its links in document order, then the sitemap's pages;
then their links, depth by depth), so a retried job sees the same pages in the same order when the
site has not changed.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from urllib.robotparser import RobotFileParser
from xml.etree import ElementTree

import msgspec
from yarl import URL

from chatspark.knowledge.fetch import Fetched, Fetcher, FetchError
from chatspark.knowledge.ssrf import ParsedTarget

# A site of broken links costs at most this many requests per page wanted: only that many URLs are
# ever queued (the start page included).
QUEUE_PER_PAGE = 2
MAX_SITEMAP_FILES = 10  # per crawl, an index's children included
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_SITEMAP_TYPES = ("application/xml", "text/xml", "text/plain")
# Links to these are never pages we read; skipping them saves a request each.
_ASSET_SUFFIXES = frozenset(
    ".png .jpg .jpeg .gif .svg .webp .avif .ico .bmp .tif .tiff .css .js .mjs .json .xml .rss .atom "
    ".woff .woff2 .ttf .otf .eot .zip .gz .tgz .tar .bz2 .xz .7z .rar .exe .msi .dmg .pkg .deb .rpm .apk "
    ".iso .bin .mp3 .mp4 .m4a .m4v .wav .ogg .oga .webm .mov .avi .mkv .flac .doc .docx .xls .xlsx .ppt "
    ".pptx .odt .ods .odp .csv".split()
)
# Sitemaps never declare a DTD; documents that do are entity-expansion tricks or not sitemaps.
_DTD = re.compile(rb"<!\s*(doctype|entity)", re.IGNORECASE)

Origin = tuple[str, str, int]


class PageFailure(msgspec.Struct, frozen=True, kw_only=True):
    """A page of the site that was skipped because it could not be read."""

    url: str
    error: str


def crawl(start_url: str, fetcher: Fetcher, *, max_pages: int, max_depth: int, user_agent: str) -> Crawl:
    """The pages of the site at `start_url`: `async for page in crawl(...)`, then read its `failures`.

    The site is the scheme, host and port of the start page once its redirects are followed
    (http→https and example.com→www.example.com move the whole site); other hosts, `www.` variants
    included, are other sites. `max_depth` counts links followed from the start page (0: only it)."""
    return Crawl(start_url, fetcher, max_pages=max_pages, max_depth=max_depth, user_agent=user_agent)


class Crawl:
    """One crawl, iterated once. Pages that fail are skipped and listed in `failures`; the start
    page failing, or robots.txt refusing it, raises `FetchError`: there is then no site to read."""

    def __init__(self, start_url: str, fetcher: Fetcher, *, max_pages: int, max_depth: int, user_agent: str) -> None:
        self._start_url = start_url
        self._fetcher = fetcher
        self._max_pages = max_pages
        self._max_depth = max_depth
        self._user_agent = user_agent
        self._started = False
        self.failures: list[PageFailure] = []

    def __aiter__(self) -> AsyncIterator[Fetched]:
        if self._started:
            raise RuntimeError("a crawl is iterated once")
        self._started = True
        return self._pages()

    async def _pages(self) -> AsyncIterator[Fetched]:
        first, site, rules = await self._start()
        yield first
        taken = {canonical_url(first.url)}
        if self._max_pages == 1 or self._max_depth == 0:
            return
        frontier = _Frontier(site.origin, rules, self._user_agent, limit=QUEUE_PER_PAGE * self._max_pages)
        frontier.mark_seen(canonical_url(self._start_url))
        frontier.mark_seen(canonical_url(first.url))
        frontier.extend(await _links(first), depth=1)
        frontier.extend(await self._sitemap_pages(site, rules), depth=1)
        while frontier and len(taken) < self._max_pages:
            url, depth = frontier.pop()
            try:
                page = await self._fetcher.fetch(url)
            except FetchError as exc:
                self.failures.append(PageFailure(url=url, error=exc.message))
                continue
            final = canonical_url(page.url)
            if final is None or _origin(final) != site.origin:
                self.failures.append(PageFailure(url=url, error="the page redirected to another site"))
                continue
            if final in taken:  # a redirect to a page already read
                continue
            taken.add(final)
            frontier.mark_seen(final)  # a redirect's target: not fetched again when linked
            yield page
            if depth < self._max_depth:
                frontier.extend(await _links(page), depth=depth + 1)

    async def _start(self) -> tuple[Fetched, ParsedTarget, RobotFileParser]:
        start = self._fetcher.check(self._start_url)
        rules = await self._robots(start)
        if not rules.can_fetch(self._user_agent, start.url):
            raise FetchError("the site's robots.txt does not allow reading this page")
        first = await self._fetcher.fetch(start.url)
        site = self._fetcher.check(first.url)
        if site.origin != start.origin:  # the site lives where the start page ended up
            rules = await self._robots(site)
            if not rules.can_fetch(self._user_agent, site.url):
                raise FetchError("the site's robots.txt does not allow reading this page")
        return first, site, rules

    async def _robots(self, site: ParsedTarget) -> RobotFileParser:
        rules = RobotFileParser()
        try:
            robots = await self._fetcher.fetch(_on_site(site, "/robots.txt"), accept=None)
        except FetchError as exc:
            if exc.status is not None and 400 <= exc.status < 500:
                rules.allow_all = True  # RFC 9309: a site without robots.txt has no rules
                return rules
            # RFC 9309: a 5xx robots.txt, or none at all, leaves the site's wishes unknown: read nothing.
            raise FetchError(f"could not read the site's robots.txt ({exc.message})") from None
        rules.parse(_text(robots).splitlines())
        return rules

    async def _sitemap_pages(self, site: ParsedTarget, rules: RobotFileParser) -> list[str]:
        """Page URLs from the site's sitemaps: those robots.txt names, else /sitemap.xml; an index's
        children are read, one level deep. Any sitemap that cannot be read is passed over."""
        wanted = QUEUE_PER_PAGE * self._max_pages
        pending = collections.deque((url, True) for url in rules.site_maps() or [_on_site(site, "/sitemap.xml")])
        pages: list[str] = []
        files_read = 0
        while pending and files_read < MAX_SITEMAP_FILES and len(pages) < wanted:
            url, may_be_index = pending.popleft()
            canonical = canonical_url(url)
            if canonical is None or _origin(canonical) != site.origin:
                continue
            if not rules.can_fetch(self._user_agent, canonical):
                continue
            files_read += 1
            try:
                sitemap = await self._fetcher.fetch(canonical, accept=_SITEMAP_TYPES)
            except FetchError:
                continue  # most sites have no sitemap
            is_index, locations = await asyncio.to_thread(_parse_sitemap, sitemap)
            if is_index:
                if may_be_index:
                    pending.extend((location, False) for location in locations)
            else:
                pages.extend(locations)
        return pages


class _Frontier:
    """The URLs waiting, each once, in the order found: only the site's pages robots.txt allows."""

    def __init__(self, origin: Origin, rules: RobotFileParser, user_agent: str, *, limit: int) -> None:
        self._origin = origin
        self._rules = rules
        self._user_agent = user_agent
        self._limit = limit
        self._seen: set[str] = set()
        self._waiting: collections.deque[tuple[str, int]] = collections.deque()

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def mark_seen(self, url: str | None) -> None:
        if url is not None:
            self._seen.add(url)

    def extend(self, urls: list[str], *, depth: int) -> None:
        for url in urls:
            if len(self._seen) >= self._limit:
                return
            canonical = canonical_url(url)
            if canonical is None or canonical in self._seen or _origin(canonical) != self._origin:
                continue
            if _looks_like_asset(canonical) or not self._rules.can_fetch(self._user_agent, canonical):
                continue
            self._seen.add(canonical)
            self._waiting.append((canonical, depth))

    def pop(self) -> tuple[str, int]:
        return self._waiting.popleft()


def canonical_url(url: str) -> str | None:
    """One spelling per page: no fragment, no default port, "/" for an empty path, the query kept
    as written. None for what is not an absolute http(s) URL."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        return None
    return str(
        URL.build(
            scheme=parsed.scheme,
            host=parsed.raw_host,
            port=None if parsed.is_default_port() else parsed.port,
            path=parsed.raw_path or "/",
            query_string=parsed.raw_query_string,
            encoded=True,
        )
    )


def _origin(canonical: str) -> Origin:
    parsed = URL(canonical)
    return (parsed.scheme, parsed.raw_host or "", parsed.port or 0)


def _on_site(site: ParsedTarget, path: str) -> str:
    return str(URL(site.url).with_path(path))


def _looks_like_asset(canonical: str) -> bool:
    return URL(canonical).suffix.lower() in _ASSET_SUFFIXES


def _text(page: Fetched) -> str:
    charset = page.charset or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    return page.body.decode(charset, errors="replace")


async def _links(page: Fetched) -> list[str]:
    """The absolute URLs a page's <a href> point to, in document order. HTML only; parsed in a
    thread because a 5 MB page takes about a second."""
    if page.content_type not in HTML_TYPES:
        return []
    return await asyncio.to_thread(_page_links, page)


def _page_links(page: Fetched) -> list[str]:
    parser = _LinkParser()
    parser.feed(_text(page))
    parser.close()
    try:
        base = URL(page.url)
        if parser.base is not None:
            base = base.join(URL(parser.base))
    except ValueError:
        return []
    links = []
    for href in parser.hrefs:
        if href.startswith("#"):
            continue
        try:
            links.append(str(base.join(URL(href))))
        except ValueError:
            continue  # a malformed href; browsers skip those too
    return links


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("a", "base"):
            return
        href = next((value for name, value in attrs if name == "href" and value), None)
        if href is None:
            return
        href = href.strip()
        if tag == "a":
            self.hrefs.append(href)
        elif self.base is None:  # the first <base> counts, as in browsers
            self.base = href


def _parse_sitemap(sitemap: Fetched) -> tuple[bool, list[str]]:
    """(is it a sitemap index, the URLs it lists). XML (urlset or sitemapindex) or plain text (one
    URL a line); anything unreadable lists nothing."""
    if sitemap.content_type == "text/plain":
        return False, [line.strip() for line in _text(sitemap).splitlines() if line.strip()]
    if _DTD.search(sitemap.body):
        return False, []
    try:
        root = ElementTree.fromstring(sitemap.body)
    except ElementTree.ParseError:
        return False, []
    # <urlset><url><loc> or <sitemapindex><sitemap><loc>; nested <image:loc> and the like are not pages.
    locations = [
        child.text.strip()
        for entry in root
        for child in entry
        if _local_name(child.tag) == "loc" and child.text and child.text.strip()
    ]
    return _local_name(root.tag) == "sitemapindex", locations


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
