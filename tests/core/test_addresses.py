"""address_group: how the per-address brakes (connection caps, the login throttle) count a client."""

from __future__ import annotations

import pytest

from gateway.core.addresses import address_group


@pytest.mark.parametrize("ip, group", [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # the same /64: one client
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),  # an IPv4 client on a dual-stack listener is itself
    ("::1", "::/64"),
    ("not an address", "not an address"),
    ("", ""),
])
def test_an_ipv6_client_is_its_slash_64_and_an_ipv4_client_its_address(ip, group):
    assert address_group(ip) == group
