"""Client addresses as the per-address brakes count them: an IPv6 client is its whole /64."""

from __future__ import annotations

import ipaddress


def address_group(ip: str) -> str:
    """An IPv6 client is one /64 (it usually holds the whole block, and can rotate inside it
    at will); an IPv4 client, or an IPv4-mapped IPv6 one, is its address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
