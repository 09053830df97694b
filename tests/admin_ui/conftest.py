"""Fixtures of the admin UI tests: staff and clients, and clients of the gateway logged in as them."""

from __future__ import annotations

import pytest

from tests.support.admin_ui import logged_in, staff


@pytest.fixture
async def people(database):
    return await staff(database)


@pytest.fixture
async def as_admin(gateway, people):
    """The gateway's test client, logged in as the admin; `.csrf` is the session's token."""
    gateway.csrf = await logged_in(gateway, "root@example.com")
    return gateway


@pytest.fixture
async def as_manager(gateway, people, aiohttp_client):
    """A second client of the same gateway, logged in as the manager of `people.client`."""
    client = await aiohttp_client(gateway.server)
    client.csrf = await logged_in(client, "m1@example.com")
    return client
