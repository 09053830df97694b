"""A user's budget over the JSON API: staff set and remove it (managers for their clients only), the
user reads it."""

from __future__ import annotations

from tests.support.api import error_of
from tests.support.staff import managed


async def test_a_manager_sets_their_clients_budget_and_the_client_reads_it(gateway, database):
    staff = await managed(gateway, database)
    path = f"/api/v1/admin/users/{staff.client['id']}/budget"
    response = await gateway.put(path, headers=staff.manager["headers"],
                                 json={"limit": "12.5", "period": "week", "alert_percent": 50})
    assert response.status == 200, await response.text()
    mine = await (await gateway.get("/api/v1/users/me/budget", headers=staff.client["headers"])).json()
    assert mine["budget"]["limit"] == "12.5" and mine["budget"]["spent"] == "0" and mine["budget"]["resets_at"]
    assert (await gateway.delete(path, headers=staff.manager["headers"])).status == 200
    mine = await (await gateway.get("/api/v1/users/me/budget", headers=staff.client["headers"])).json()
    assert mine["budget"] is None
    assert await database.fetchval("SELECT count(*) FROM audit_log WHERE action LIKE 'budget.%'") == 2


async def test_a_budget_outside_the_managers_clients_is_404_and_bad_ones_400(gateway, database):
    staff = await managed(gateway, database)
    assert await error_of(await gateway.put(f"/api/v1/admin/users/{staff.stranger['id']}/budget",
                                            headers=staff.manager["headers"],
                                            json={"limit": "1", "period": "day"}), 404) == "user_not_found"
    for body in ({"limit": "1"}, {"limit": "-1", "period": "day"}, {"limit": "1", "period": "day", "x": 0}):
        assert (await gateway.put(f"/api/v1/admin/users/{staff.client['id']}/budget",
                                  headers=staff.manager["headers"], json=body)).status == 400
    assert await error_of(await gateway.put(f"/api/v1/admin/users/{staff.client['id']}/budget",
                                            headers=staff.client["headers"],
                                            json={"limit": "1", "period": "day"}), 403) == "role_required"
    assert await database.fetchval("SELECT count(*) FROM budgets") == 0
