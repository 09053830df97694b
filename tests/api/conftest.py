"""Fixtures of the JSON API tests: a logged-in buyer with credits."""

from __future__ import annotations

import pytest

from tests.support.accounts import deposit, register


@pytest.fixture
async def buyer(gateway, database):
    user = await register(gateway, "buyer@example.com")
    await deposit(database, user["id"], 50)
    return user
