"""Who the client is, behind trusted proxies or not."""

from __future__ import annotations

import ipaddress

import pytest
from starlette.datastructures import Headers

from shardgate.pipeline.clientip import ClientAddress, parse_ip

LOOPBACK = ipaddress.ip_network("127.0.0.1/32")
PRIVATE = ipaddress.ip_network("10.0.0.0/8")
V6_PROXY = ipaddress.ip_network("2001:db8:ffff::/48")


def forwarded(*values: str) -> Headers:
    """Headers with one X-Forwarded-For line per value."""
    return Headers(raw=[(b"x-forwarded-for", value.encode()) for value in values])


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert ClientAddress()("127.0.0.1", forwarded("203.0.113.9")) == "127.0.0.1"


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert ClientAddress([LOOPBACK])("127.0.0.2", forwarded("203.0.113.9")) == "127.0.0.2"


@pytest.mark.parametrize(
    ("values", "client"),
    [
        (["203.0.113.9"], "203.0.113.9"),
        # The client's own header is kept on the left; the proxy appends what it saw.
        (["6.6.6.6, 203.0.113.9"], "203.0.113.9"),
        # Proxies in a chain: skip every trusted hop from the right.
        (["6.6.6.6, 203.0.113.9, 10.1.2.3, 10.9.9.9"], "203.0.113.9"),
        # Several headers are one list, in order.
        (["6.6.6.6", "203.0.113.9", "10.1.2.3"], "203.0.113.9"),
        # Every hop trusted: the left-most one is as far as we can see.
        (["10.0.0.5, 10.0.0.6"], "10.0.0.5"),
        # No header: the proxy itself.
        ([], "10.0.0.1"),
        # Not an address: the trusted hop that passed it on is the client.
        (["203.0.113.9, unknown"], "10.0.0.1"),
        (["203.0.113.9, unknown, 10.0.0.7"], "10.0.0.7"),
        (["", " , "], "10.0.0.1"),
        (["203.0.113.9,"], "203.0.113.9"),
    ],
)
def test_behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client(
    values: list[str], client: str
) -> None:
    assert ClientAddress([LOOPBACK, PRIVATE])("10.0.0.1", forwarded(*values)) == client


def test_ipv6_proxies_and_clients() -> None:
    clients = ClientAddress([V6_PROXY])
    proxy, stranger = "2001:db8:ffff::1", "2001:db8:aaaa::1"
    assert clients(proxy, forwarded("[2001:db8:1::5]:443")) == "2001:db8:1::5"
    assert clients(proxy, forwarded("2001:db8:1::5, 2001:db8:ffff::2")) == "2001:db8:1::5"
    assert clients(stranger, forwarded("2001:db8:1::5")) == stranger


def test_ipv4_mapped_peer_counts_as_ipv4() -> None:
    clients = ClientAddress([LOOPBACK])
    assert clients("::ffff:127.0.0.1", forwarded("203.0.113.9")) == "203.0.113.9"
    assert clients("::ffff:127.0.0.2", forwarded()) == "127.0.0.2"


def test_unknown_peer() -> None:
    assert ClientAddress([LOOPBACK])(None, forwarded("203.0.113.9")) == "unknown"


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("203.0.113.9:4711", "203.0.113.9"),
        ("::1", "::1"),
        ("[::1]:80", "::1"),
        ("[::1]", "::1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("", None),
        ("unknown", None),
        ("[::1", None),
        ("999.1.1.1", None),
        ("_hidden", None),
    ],
)
def test_parse_ip(text: str, address: str | None) -> None:
    parsed = parse_ip(text)
    assert (str(parsed) if parsed else None) == address
