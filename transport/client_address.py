"""Which address a request or socket comes from, for limits per client address.

The peer of the connection, unless the peer is a trusted proxy (``PLOP_FORWARDED_ALLOW_IPS``):
then the last address in ``X-Forwarded-For`` that is not itself a trusted proxy, since
each proxy appends the address it saw and anything left of that is the client's own
claim. Nobody is trusted by default: the header is anyone's to forge.

An IPv6 client counts as its network of ``PLOP_IPV6_PREFIX_LENGTH`` bits (a /64 by
default): one subscriber usually gets a whole /64, and counting each of its 2**64
addresses on its own would make every per-address limit endless.
"""

from __future__ import annotations

import ipaddress
from functools import cache

from starlette.requests import HTTPConnection

from errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN_ADDRESS = "unknown"


@cache
def trusted_networks(spec: str) -> tuple[Network, ...]:
    """The networks of a comma-separated list of addresses or CIDR networks."""
    try:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in spec.split(",")
            if part.strip()
        )
    except ValueError as exc:
        raise ConfigError(f"PLOP_FORWARDED_ALLOW_IPS is not a list of addresses: {spec!r}") from exc


def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def counted_address(address: str, ipv6_prefix_length: int) -> str:
    """The address, or for IPv6 its network of the prefix length (``2001:db8::/64``)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return address
    if ip.ipv4_mapped is not None:  # an IPv4 client seen through a dual-stack socket
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network((ip, ipv6_prefix_length), strict=False))


def client_address(
    connection: HTTPConnection, forwarded_allow_ips: str, ipv6_prefix_length: int
) -> str:
    """The client's address as Plop counts it (see the module docstring)."""
    return counted_address(_client_ip(connection, forwarded_allow_ips), ipv6_prefix_length)


def _client_ip(connection: HTTPConnection, forwarded_allow_ips: str) -> str:
    peer = connection.client.host if connection.client else UNKNOWN_ADDRESS
    networks = trusted_networks(forwarded_allow_ips)
    if not networks or not _is_trusted(peer, networks):
        return peer
    hops = [
        hop.strip()
        for header in connection.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            return hop
    return hops[0] if hops else peer
