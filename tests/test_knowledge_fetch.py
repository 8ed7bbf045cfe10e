"""The SSRF guard: which URLs and addresses are refused, and the resolver that drops refused answers.

Names that exist only in a test are answered by `StaticDNS`, a stand-in for DNS behind aiohttp's own
resolver interface; the guard wraps it exactly as it wraps aiohttp's resolver in production.
"""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from chatspark.knowledge.ssrf import GuardedResolver, UrlRefused, check_url, refused_address

pytestmark = pytest.mark.anyio


class StaticDNS(AbstractResolver):
    """DNS for names that exist only in this test. Each lookup of a name takes its next answer (the
    last one repeats); `lookups` lists the names asked, in order. An unknown name is not found."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self._answers = {name: list(sequence) for name, sequence in answers.items()}
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        sequence = self._answers.get(host)
        if not sequence:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        addresses = sequence.pop(0) if len(sequence) > 1 else sequence[0]
        return [
            ResolveResult(
                hostname=host, host=address, port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0, flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        pass


# --- the guard: what a URL says, and where an address is ------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.100.100.200", "cloud metadata"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fd12:3456::1", "private"),
        ("fd00:ec2::254", "cloud metadata"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("::127.0.0.1", "loopback"),  # IPv4-compatible (deprecated)
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo, client 10.0.0.1
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 of 169.254.169.254
    ],
)
def test_refused_addresses_name_their_reason(address: str, reason: str) -> None:
    assert reason in (refused_address(address) or "")


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refused_address(address) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/file", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:6379/_INFO", "only http and https"),
        ("example.com/page", "only http and https"),
        ("http:///path", "no host"),
        ("http://user:secret@example.com/", "user name or password"),
        ("http://example.com:0/", "port"),
        ("http://example.com:70000/", "not a valid URL"),
        ("http://2130706433/", "unusual form"),
        ("http://0x7f.1/", "unusual form"),
        ("http://127.1/", "unusual form"),
        ("http://0177.0.0.1/", "unusual form"),
        ("http://127.0.0.1./", "unusual form"),
        ("http://%31%32%37.0.0.1/", "not a valid name"),
        ("http://example.com/" + "a" * 5000, "longer than"),
    ],
)
def test_check_url_refuses_what_cannot_be_fetched_as_written(url: str, reason: str) -> None:
    with pytest.raises(UrlRefused) as refused:
        check_url(url)
    assert reason in refused.value.reason


def test_check_url_gives_the_parts_it_checked() -> None:
    target = check_url("HTTPS://Example.COM/docs/page?x=1#intro")
    assert (target.scheme, target.host, target.port, target.path) == ("https", "example.com", 443, "/docs/page?x=1")
    assert target.url == "https://example.com/docs/page?x=1"
    assert check_url("http://[::ffff:127.0.0.1]:8080/").host == "::ffff:7f00:1"  # the form aiohttp connects to


async def test_the_guard_drops_refused_addresses_and_keeps_the_rest() -> None:
    dns = StaticDNS({"mixed.test": [["10.0.0.5", "93.184.216.34", "169.254.169.254"]]})
    guard = GuardedResolver(resolver=dns)
    answers = await guard.resolve("mixed.test", 80)
    assert [answer["host"] for answer in answers] == ["93.184.216.34"]


async def test_the_guard_refuses_a_name_with_only_refused_addresses() -> None:
    guard = GuardedResolver(resolver=StaticDNS({"metadata.test": [["169.254.169.254", "fd00:ec2::254"]]}))
    with pytest.raises(UrlRefused) as refused:
        await guard.resolve("metadata.test", 80)
    assert refused.value.reason == "metadata.test points to a cloud metadata address, which may not be fetched"


