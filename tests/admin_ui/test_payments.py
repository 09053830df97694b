"""The admin UI's payments pages: staff see their scope's payments (managers their clients', admins
everyone's, guests' included) with each payment's append-only history; anything else is a 404."""

from __future__ import annotations

import datetime as dt

from gateway.payments import store


async def a_payment(database, user_id: int | None, *, status: str = "pending", email: str | None = None) -> int:
    """A payment row with one history event, made straight in PostgreSQL (checkout is tested in tests/payments)."""
    payment_id = await database.fetchval(
        "INSERT INTO payments (provider, currency, amount, credits_micro, status, user_id, guest_email, created_at, "
        "updated_at) VALUES ('stripe', 'USD', 12.5, 12500000, $1, $2, $3, now(), now()) RETURNING id",
        status, user_id, email)
    async with database.acquire() as connection:
        await store.add_history(connection, payment_id, status=status, event="created",
                                now=dt.datetime.now(dt.timezone.utc), detail={"source": "checkout"})
    return payment_id


async def test_an_admin_sees_every_payment_and_its_history(as_admin, database, people):
    mine = await a_payment(database, people.client)
    guest = await a_payment(database, None, email="guest-payer@example.com")
    listing = await as_admin.get("/admin/payments")
    text = await listing.text()
    assert listing.status == 200 and f'/admin/payments/{mine}"' in text and f'/admin/payments/{guest}"' in text
    detail = await as_admin.get(f"/admin/payments/{mine}")
    page = await detail.text()
    assert detail.status == 200 and "12.50 USD" in page and "created" in page and "alice@example.com" in page
    user_page = await (await as_admin.get(f"/admin/users/{people.client}")).text()
    assert f'/admin/payments/{mine}"' in user_page


async def test_a_manager_sees_only_their_clients_payments(as_manager, database, people):
    theirs = await a_payment(database, people.client, status="failed")
    others = await a_payment(database, people.other_client)
    guest = await a_payment(database, None, email="guest-payer@example.com")
    text = await (await as_manager.get("/admin/payments")).text()
    assert f'/admin/payments/{theirs}"' in text
    assert f'/admin/payments/{others}"' not in text and f'/admin/payments/{guest}"' not in text
    for payment_id in (others, guest):
        assert (await as_manager.get(f"/admin/payments/{payment_id}")).status == 404
    assert (await as_manager.get(f"/admin/payments?user={people.other_client}")).status == 404


async def test_the_filters_narrow_the_list_and_bad_values_are_refused(as_admin, database, people):
    failed = await a_payment(database, people.client, status="failed")
    pending = await a_payment(database, people.client)
    text = await (await as_admin.get("/admin/payments?status=failed&provider=stripe&status=")).text()
    assert f'/admin/payments/{failed}"' in text and f'/admin/payments/{pending}"' not in text
    for query in ("status=won", "provider=paypal", "user=abc", "before=-1"):
        assert (await as_admin.get(f"/admin/payments?{query}")).status == 400, query
    for path in ("/admin/payments/0", "/admin/payments/abc", "/admin/payments/99999999999999999999"):
        assert (await as_admin.get(path)).status == 404, path
