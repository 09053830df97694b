"""Staff for a test: a manager with one client of theirs and one client of another manager's."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.accounts import users
from tests.support.accounts import login, register

PASSWORD = "correct horse battery"


@dataclass
class Staff:
    manager: dict       # logged in; manages `client`
    client: dict        # logged in
    stranger: dict      # logged in; another manager's client


async def managed(gateway, database) -> Staff:
    manager_id = await users.create(database, email="manager@example.com", password=PASSWORD, role="manager")
    other_id = await users.create(database, email="other-manager@example.com", password=PASSWORD, role="manager")
    client = await register(gateway, "client@example.com")
    stranger = await register(gateway, "stranger@example.com")
    await database.execute("UPDATE users SET manager_id = $2 WHERE id = $1", client["id"], manager_id)
    await database.execute("UPDATE users SET manager_id = $2 WHERE id = $1", stranger["id"], other_id)
    return Staff({"id": manager_id, **await login(gateway, "manager@example.com")}, client, stranger)
