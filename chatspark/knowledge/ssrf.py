"""The guard: a URL whose address is loopback, private, link-local or a cloud metadata service is refused.

Two checks, both needed. `check_url` refuses what a URL says before any request (scheme,
credentials, hosts in odd numeric forms). `GuardedResolver` refuses what a name resolves to, from
inside aiohttp's connector: the answer it checks is the answer the connector connects to, so there
is no second lookup for DNS rebinding to slip between. aiohttp connects to an IP-literal host
without asking any resolver, so `GuardedResolver.check_host` is called for those before each request.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable

import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_CHARS = 4096
_SCHEMES = frozenset({"http", "https"})
# A DNS name after IDNA encoding: letters, digits, hyphens, underscores (some real hosts have them).
_NAME = re.compile(r"[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*\.?")
# A label a URL parser reads as a number (decimal, 0x-hex, octal). When the last label is one, the
# WHATWG URL standard and inet_aton read the whole host as an IPv4 address, e.g. 127.1 or 0x7f.1.
_NUMBER = re.compile(r"(0x[0-9a-f]*|[0-9]+)")


class UrlRefused(Exception):
    """A URL we will not fetch; `reason` is a sentence a user can read."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ParsedTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Where a checked URL leads. `url` is the form to request: it is what the checks looked at."""

    url: str
    scheme: str
    host: str  # lowercase, IDNA-encoded, IPv6 without brackets
    port: int
    path: str  # with the query string, "/" at least

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def check_url(url: str) -> ParsedTarget:
    """The URL's parts, or `UrlRefused` if it is not an http(s) URL we may request as written.

    Parsed with yarl, as aiohttp parses it: checking one parse and requesting another is how
    guards are bypassed."""
    if len(url) > MAX_URL_CHARS:
        raise UrlRefused(f"the URL is longer than {MAX_URL_CHARS} characters")
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        raise UrlRefused("this is not a valid URL") from None
    if parsed.scheme not in _SCHEMES:
        raise UrlRefused("only http and https URLs can be fetched")
    host = parsed.raw_host
    if not host:
        raise UrlRefused("the URL has no host")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise UrlRefused("the URL contains a user name or password; remove them")
    port = parsed.port
    if port is None or not 1 <= port <= 65535:
        raise UrlRefused("the URL's port is out of range")
    _check_host_syntax(host)
    return ParsedTarget(
        url=str(parsed.with_fragment(None)),
        scheme=parsed.scheme,
        host=host,
        port=port,
        path=parsed.raw_path_qs or "/",
    )


def _check_host_syntax(host: str) -> None:
    if ":" in host:  # aiohttp treats any host with a colon as an IPv6 literal
        try:
            ipaddress.IPv6Address(host.replace("%25", "%"))
        except ValueError:
            raise UrlRefused("the URL's host is not a valid address") from None
        return
    if len(host) > 254 or not _NAME.fullmatch(host):
        raise UrlRefused("the URL's host is not a valid name or address")
    if _NUMBER.fullmatch(host.rstrip(".").rsplit(".", 1)[-1]):
        try:
            ipaddress.IPv4Address(host)  # only the canonical four decimal numbers parse
        except ValueError:
            raise UrlRefused(
                "the URL's host is a number in an unusual form; write an address as four numbers with dots"
            ) from None


# The policy, most specific first: the first match names the reason.
_REFUSED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(network), reason)
    for network, reason in (
        ("169.254.169.254/32", "a cloud metadata address"),  # AWS, GCP, Azure, OpenStack, ...
        ("100.100.100.200/32", "a cloud metadata address"),  # Alibaba Cloud
        ("0.0.0.0/8", "an unspecified address"),  # 0.0.0.0 reaches this machine on Linux
        ("127.0.0.0/8", "a loopback address"),
        ("10.0.0.0/8", "a private network address"),
        ("172.16.0.0/12", "a private network address"),
        ("192.168.0.0/16", "a private network address"),
        ("169.254.0.0/16", "a link-local address"),
        ("100.64.0.0/10", "a carrier-grade NAT address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),  # with 255.255.255.255, the broadcast address
        ("192.0.0.0/24", "a reserved address"),
        ("192.0.2.0/24", "a reserved address"),
        ("192.88.99.0/24", "a reserved address"),
        ("198.18.0.0/15", "a reserved address"),
        ("198.51.100.0/24", "a reserved address"),
        ("203.0.113.0/24", "a reserved address"),
    )
)
_REFUSED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(network), reason)
    for network, reason in (
        ("fd00:ec2::254/128", "a cloud metadata address"),  # AWS over IPv6
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("fc00::/7", "a private network address"),  # unique local (RFC 4193)
        ("fec0::/10", "a private network address"),  # site-local, deprecated but still routed by some
        ("fe80::/10", "a link-local address"),
        ("ff00::/8", "a multicast address"),
        ("64:ff9b:1::/48", "a private network address"),  # NAT64 for local use (RFC 8215)
        ("100::/64", "a reserved address"),
        ("2001:db8::/32", "a reserved address"),
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def refused_address(ip: IPAddress | str) -> str | None:
    """Why connecting to `ip` is refused ("a loopback address", ...), or None if it is allowed."""
    if isinstance(ip, str):
        try:
            ip = ipaddress.ip_address(ip)
        except ValueError:
            return "not a readable address"  # fail closed
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip if ip.scope_id is None else ipaddress.IPv6Address(ip.compressed.split("%")[0])
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket
            return refused_address(ip.ipv4_mapped)
        for embedded in _embedded_v4(ip):
            reason = refused_address(embedded)
            if reason:
                return f"{reason} inside an IPv6 address"
    table = _REFUSED_V6 if isinstance(ip, ipaddress.IPv6Address) else _REFUSED_V4
    for network, reason in table:
        if ip in network:
            return reason
    if not ip.is_global or ip in _V4_COMPATIBLE:  # ::a.b.c.d is deprecated: nothing legitimate uses it
        return "a reserved address"  # whatever else Python's registry knows is not public
    return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses a transition mechanism (6to4, Teredo, NAT64) would reach for this address."""
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo  # (server, client)
    if ip in _NAT64 or (ip in _V4_COMPATIBLE and int(ip) > 1):
        return (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    return ()


def _is_local_name(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")  # RFC 6761: always this machine


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, with refused addresses dropped from every answer (refused if none remain).

    Give it to the `TCPConnector`: the connector connects only to what this returns.
    `trusted` addresses pass whatever the policy says (a test server; an intranet host an operator
    vouches for); `allow_private=True` lets everything pass (tests only)."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        trusted: Iterable[str] = (),
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._trusted = frozenset(ipaddress.ip_address(address) for address in trusted)
        # Made here, so inside the running loop (aiohttp's threaded resolver needs one).
        self._resolver = resolver if resolver is not None else DefaultResolver()

    def refusal(self, ip: IPAddress | str) -> str | None:
        """Why this guard refuses `ip`, or None."""
        if self._allow_private:
            return None
        try:
            if ipaddress.ip_address(ip) in self._trusted:
                return None
        except ValueError:
            pass
        return refused_address(ip)

    def check_host(self, host: str) -> None:
        """Refuse, without any lookup, a host that is an IP literal we refuse, or a name of this machine.

        aiohttp connects to an IP literal without asking a resolver, so this is its only check."""
        if self._allow_private:
            return
        if _is_local_name(host):
            raise UrlRefused(f"{host.rstrip('.')} is this machine, which may not be fetched")
        try:
            address = ipaddress.ip_address(host.replace("%25", "%"))
        except ValueError:
            return  # a name: resolve() checks what it resolves to
        reason = self.refusal(address)
        if reason:
            raise UrlRefused(f"{host} is {reason}, which may not be fetched")


    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.check_host(host)
        answers = await self._resolver.resolve(host, port, family)
        allowed = [answer for answer in answers if self.refusal(answer["host"]) is None]
        if not allowed:
            reason = self.refusal(answers[0]["host"]) if answers else "no address"
            raise UrlRefused(f"{host.rstrip('.')} points to {reason}, which may not be fetched")
        return allowed

    async def close(self) -> None:
        await self._resolver.close()


def refused_host(host: str) -> str | None:
    """Why a host is refused before any lookup (an IP literal we refuse, or this machine's name);
    None for a name, whose addresses the resolver checks when fetching."""
    if _is_local_name(host):
        return f"{host.rstrip('.')} is this machine, which may not be fetched"
    try:
        address = ipaddress.ip_address(host.replace("%25", "%"))
    except ValueError:
        return None
    reason = refused_address(address)
    return f"{host} is {reason}, which may not be fetched" if reason else None
