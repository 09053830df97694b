"""Rate limits: plan, user and address windows, their headers, and the per-process fallback."""

from __future__ import annotations

from devkit.embedded import free_port
from tests.support.accounts import make_token, proxy_headers
from tests.support.proxy import error_of

ECHO = "/api/v1/proxy/echo/x"


async def test_redis_down_limits_rates_per_process(gateway_factory, database):
    gateway = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0",
                                    plan_limits_per_min={"free": 2, "premium": 5, "enterprise": 0})
    issued = await make_token(database)
    statuses = [(await gateway.get(ECHO, headers=proxy_headers(issued.token))).status for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_the_plan_limit_answers_429_with_headers(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 3, "premium": 5, "enterprise": 0})
    issued = await make_token(database)
    for remaining in (2, 1, 0):
        response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
        assert response.status == 200
        assert response.headers["RateLimit-Limit"] == "3"
        assert response.headers["RateLimit-Remaining"] == str(remaining)
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 429
    assert (await error_of(response))["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["RateLimit-Remaining"] == "0"


async def test_the_window_slides(gateway_factory, database, clock):
    gateway = await gateway_factory(plan_limits_per_min={"free": 2, "premium": 5, "enterprise": 0})
    issued = await make_token(database)
    for _ in range(2):
        assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 429
    clock.advance(61)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200


async def test_the_user_limit_spans_the_users_tokens(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 2, "premium": 5, "enterprise": 0})
    first = await make_token(database)
    second = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(first.token))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(second.token))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(second.token))).status == 429


async def test_premium_plans_get_the_premium_limit(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 1, "premium": 3, "enterprise": 0})
    issued = await make_token(database, plan="premium")
    statuses = [(await gateway.get(ECHO, headers=proxy_headers(issued.token))).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


async def test_enterprise_is_unlimited(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 1, "premium": 1, "enterprise": 0},
                                    ip_limit_per_min=0)
    issued = await make_token(database, plan="enterprise")
    for _ in range(5):
        response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
        assert response.status == 200
        assert "RateLimit-Limit" not in response.headers


async def test_the_ip_limit_spans_users(gateway_factory, database):
    gateway = await gateway_factory(ip_limit_per_min=2)
    first = await make_token(database, email="a@example.com")
    second = await make_token(database, email="b@example.com")
    assert (await gateway.get(ECHO, headers=proxy_headers(first.token))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(second.token))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(second.token))).status == 429


async def test_a_device_conflict_does_not_spend_the_rate_allowance(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 2, "premium": 5, "enterprise": 0})
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "a"))).status == 200
    for _ in range(3):
        assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "b"))).status == 409
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "a"))).status == 200


async def test_a_repeated_request_id_does_not_stop_the_count(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 3})
    issued = await make_token(database)
    headers = proxy_headers(issued.token, **{"X-Request-Id": "fixedfixed"})
    statuses = [(await gateway.get(ECHO, headers=headers)).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


async def test_unknown_tokens_count_against_the_ip_limit(gateway_factory, database):
    gateway = await gateway_factory(ip_limit_per_min=3)
    statuses = [(await gateway.get(ECHO, headers=proxy_headers(f"{i}" * 64))).status for i in range(4)]
    assert statuses == [401, 401, 401, 429]


async def test_rate_limit_headers_survive_a_scope_denial(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 5})
    issued = await make_token(database, scope="certificates_only")
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 403
    assert response.headers["RateLimit-Remaining"] == "4"


async def test_a_use_the_user_window_refuses_spends_nothing_in_the_tokens_slot(gateway_factory, database, clock):
    """The user's window is admitted after the token's slot (decision 0023): a use it refuses takes
    back its entry in the token's window and leaves the token's device binding as it was."""
    gateway = await gateway_factory(plan_limits_per_min={"free": 2, "premium": 5, "enterprise": 0},
                                    device_idle_s=600)
    first = await make_token(database)
    second = await make_token(database)
    for _ in range(2):
        assert (await gateway.get(ECHO, headers=proxy_headers(first.token, "a"))).status == 200
    clock.advance(30)
    refused = await gateway.get(ECHO, headers=proxy_headers(second.token, "b"))
    assert refused.status == 429
    assert (await error_of(refused))["message"].endswith("(user)")
    clock.advance(31)  # the first token's uses have left the user's window; the refused one was never in
    # Another device takes the second token (the refused device never held it) and spends its whole
    # window: the refused use left no entry behind.
    for _ in range(2):
        assert (await gateway.get(ECHO, headers=proxy_headers(second.token, "c"))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(second.token, "b"))).status == 409
