"""Who the client is: the connection's peer, unless that peer is a proxy we trust.

Behind trusted proxies the client is the right-most X-Forwarded-For address that is not
itself a trusted proxy: each proxy appends the address it received the request from, so the
entries to the left of the last untrusted hop are whatever the client chose to send.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from starlette.datastructures import Headers

__all__ = ["ClientAddress", "IpAddress", "IpNetwork", "parse_ip"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN = "unknown"


class ClientAddress:
    def __init__(self, trusted_proxies: Sequence[IpNetwork] = ()) -> None:
        self._trusted = tuple(trusted_proxies)
        # Peers are few and parsing one costs microseconds: remember what each one is.
        self._peer = functools.lru_cache(maxsize=4096)(self._classify_peer)

    def __call__(self, peer: str | None, headers: Headers) -> str:
        """The client's address, from the peer's and the request's headers."""
        client, trusted = self._peer(peer)
        if not trusted:
            return client
        values = headers.getlist("x-forwarded-for")
        hops = [hop.strip() for value in values for hop in value.split(",") if hop.strip()]
        for hop in reversed(hops):
            address = parse_ip(hop)
            if address is None:
                break  # not an address: count the trusted hop that passed it on
            client = str(address)
            if not self._is_trusted(address):
                break
        return client

    def _classify_peer(self, peer: str | None) -> tuple[str, bool]:
        address = parse_ip(peer or "")
        if address is None:
            return peer or UNKNOWN, False
        return str(address), self._is_trusted(address)

    def _is_trusted(self, address: IpAddress) -> bool:
        return any(address in network for network in self._trusted)


def parse_ip(text: str) -> IpAddress | None:
    """An address from ``1.2.3.4``, ``1.2.3.4:80``, ``::1`` or ``[::1]:80``; IPv4-mapped
    IPv6 addresses become IPv4."""
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
