"""One page over HTTP with limits: a total timeout, a size cap, known content types, re-checked redirects.

Every failure is a `FetchError` whose message is shown to users as the source's error: plain
words, never the page's own content.
"""

from __future__ import annotations

import asyncio
import http
import re
from types import TracebackType

import aiohttp
import msgspec
from yarl import URL

from chatspark.config import KnowledgeConfig
from chatspark.knowledge.ssrf import GuardedResolver, ParsedTarget, UrlRefused, check_url

# In order of preference: the Accept header lists them so.
PAGE_TYPES = ("text/html", "application/xhtml+xml", "text/markdown", "text/plain", "application/pdf")
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_READ_CHUNK = 64 * 1024
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")


class FetchError(Exception):
    """A page that could not be fetched. `status` is the HTTP status when the site answered one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Fetched(msgspec.Struct, frozen=True, kw_only=True):
    """A page as it arrived: decompressed, at most the size cap."""

    url: str  # the final URL, after redirects
    status: int
    content_type: str  # the media type alone, lowercase ("text/html")
    body: bytes
    charset: str | None = None  # as the Content-Type header named it, lowercase


class Fetcher:
    """Fetches pages for one ingestion job or worker over one connection pool; `aclose` it when done.

    Make it inside the running event loop; it owns (and closes) the resolver it is given. No cookies
    are kept (a job's pages never carry another site's, or another tenant's, cookies) and no proxy is
    taken from the environment (a proxy would connect on our behalf, past the guard)."""

    def __init__(self, config: KnowledgeConfig, *, resolver: GuardedResolver | None = None) -> None:
        self._timeout = config.fetch_timeout_seconds
        self._max_bytes = config.max_page_bytes
        self._guard = resolver if resolver is not None else GuardedResolver(allow_private=config.allow_private_urls)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=self._guard),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": config.user_agent, "Accept-Encoding": "gzip, deflate"},
            trust_env=False,
            # fetch() bounds the whole of it, redirects and body included; this is only a backstop.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout, sock_read=self._timeout),
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._session.close()
        await self._guard.close()  # the connector closes only a resolver it made itself

    def check(self, url: str) -> ParsedTarget:
        """What can be refused before any lookup: the URL itself, an IP-literal host, a local name."""
        try:
            target = check_url(url)
            self._guard.check_host(target.host)
        except UrlRefused as exc:
            raise FetchError(exc.reason) from None
        return target

    async def fetch(
        self, url: str, *, accept: tuple[str, ...] | None = PAGE_TYPES, max_bytes: int | None = None
    ) -> Fetched:
        """The page at `url` after at most `MAX_REDIRECTS` redirects, each hop checked like the first.

        `accept`: the media types taken (None: any); `max_bytes`: the cap, the configured one by default."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._follow(url, accept, max_bytes or self._max_bytes)
        except TimeoutError:
            raise FetchError(f"the page did not load within {self._timeout:g} seconds") from None
        except UrlRefused as exc:  # from the resolver, inside the connector
            raise FetchError(exc.reason) from None
        except aiohttp.ClientError as exc:
            raise FetchError(_client_error_message(exc)) from None

    async def _follow(self, url: str, accept: tuple[str, ...] | None, max_bytes: int) -> Fetched:
        headers = {"Accept": ", ".join(accept) if accept else "*/*"}
        for _ in range(MAX_REDIRECTS + 1):
            target = self.check(url)
            request_url = URL(target.url, encoded=True)  # exactly what was checked, not re-encoded
            async with self._session.get(request_url, headers=headers, allow_redirects=False) as response:
                if response.status in _REDIRECT_STATUSES:
                    url = _redirect_target(request_url, response)
                    continue
                return await _read(target.url, response, accept, max_bytes)
        raise FetchError(f"the page redirected more than {MAX_REDIRECTS} times")


def _redirect_target(current: URL, response: aiohttp.ClientResponse) -> str:
    location = response.headers.get("Location")
    if not location:
        raise FetchError("the page redirected without saying where to")
    try:
        return str(current.join(URL(location.strip())))
    except ValueError:
        raise FetchError("the page redirected to an address that is not a valid URL") from None


async def _read(url: str, response: aiohttp.ClientResponse, accept: tuple[str, ...] | None, max_bytes: int) -> Fetched:
    status = response.status
    if not 200 <= status < 300:
        raise FetchError(f"the page answered {_status_words(status)}", status=status)
    content_type = response.content_type  # aiohttp: lowercase, "application/octet-stream" when absent
    if accept is not None and content_type not in accept:
        raise FetchError(f"the page's type{_media_type_words(content_type)} is not one we read", status=status)
    # Content-Length may lie, and a compressed page grows as it is read: the cap is on what arrives.
    if response.content_length is not None and response.content_length > max_bytes:
        raise FetchError(f"the page is larger than {_size_words(max_bytes)}", status=status)
    body = bytearray()
    async for piece in response.content.iter_chunked(_READ_CHUNK):
        body += piece
        if len(body) > max_bytes:
            response.close()  # the rest is never read: the connection is dropped, not pooled
            raise FetchError(f"the page is larger than {_size_words(max_bytes)}", status=status)
    charset = response.charset.lower() if response.charset else None
    return Fetched(url=url, status=status, content_type=content_type, body=bytes(body), charset=charset)


def _client_error_message(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "the site's name could not be found"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "the site's certificate could not be verified"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "could not connect to the site"
    if isinstance(exc, aiohttp.InvalidURL):
        return "the address is not a valid URL"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return "the site's connection broke off"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "the site's answer was not valid HTTP"
    return f"the request failed ({type(exc).__name__})"


def _status_words(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"  # not the site's own reason phrase
    except ValueError:
        return f"HTTP {status}"


def _media_type_words(content_type: str) -> str:
    return f" ({content_type})" if _MIME.fullmatch(content_type) else ""  # never echo a long or odd header


def _size_words(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1_000_000:g} MB"
    if size >= 1_000:
        return f"{size / 1_000:g} kB"
    return f"{size} bytes"
