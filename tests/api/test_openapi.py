"""The OpenAPI description: every route described and every described route there, /docs offline,
and schemathesis against the running gateway — no 5xx, no answer outside the description."""

from __future__ import annotations

import asyncio
import re

import pytest
import schemathesis
from aiohttp.test_utils import make_mocked_request

from tests.support.accounts import admin_headers
from tests.support.ai import start
from tests.support.openapi import ADMIN_UI, SAMPLE_VALUES, UNDESCRIBED, run_schemathesis

METHODS = ("get", "post", "put", "patch", "delete", "options")


async def _spec(gateway) -> dict:
    response = await gateway.get("/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    return await response.json()


def _template(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


async def test_every_route_is_described(gateway, database):
    spec = await _spec(gateway)
    described = {(method.upper(), _template(path)) for path, operations in spec["paths"].items()
                 for method in operations}
    missing = []
    for route in gateway.server.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method == "HEAD" or path.startswith(ADMIN_UI) or path in UNDESCRIBED:
            continue
        if route.method == "*":  # a provider's whole prefix: some of its operations are described
            prefix = path.split("{")[0]
            if not any(p.startswith(prefix) for p in spec["paths"]):
                missing.append(path)
        elif (route.method, _template(path)) not in described:
            missing.append(f"{route.method} {path}")
    assert missing == []


async def test_every_described_route_exists(gateway, database):
    spec = await _spec(gateway)
    router, absent = gateway.server.app.router, []
    for path, operations in spec["paths"].items():
        concrete = re.sub(r"\{([^}]+)\}", lambda found: SAMPLE_VALUES.get(found.group(1), "1"), path)
        for method in operations:
            assert method in METHODS
            match = await router.resolve(make_mocked_request(method.upper(), concrete))
            if match.http_exception is not None:
                absent.append(f"{method.upper()} {path}")
    assert absent == []


async def test_the_description_is_openapi_3_1_with_unique_operation_ids(gateway, database):
    spec = await _spec(gateway)
    assert spec["openapi"] == "3.1.0" and spec["servers"][0]["url"] == gateway.settings.public_url
    ids = [operation["operationId"] for operations in spec["paths"].values() for operation in operations.values()]
    assert len(ids) == len(set(ids)) and len(ids) > 60
    schemathesis.openapi.from_dict(spec).validate()  # the meta-schema of OpenAPI 3.1


async def test_docs_render_offline_from_the_description(gateway, database):
    page = await gateway.get("/docs")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    spec = await _spec(gateway)
    for operations in spec["paths"].values():
        for operation in operations.values():
            assert f'id="{operation["operationId"]}"' in html
    links = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert links and all(link.startswith(("/", "#")) for link in links), links  # nothing from elsewhere
    for link in {link for link in links if link.startswith("/")}:
        assert (await gateway.get(link)).status == 200, link
    assert "<script" not in html.lower()
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")


# ~40 s on a quiet 2-core machine; the suite's 120 s limit is too tight when the cores are shared.
@pytest.mark.timeout(600)
async def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_description(gateway_factory, mock_target,
                                                                                       database):
    stack = await start(gateway_factory, mock_target, database, credits=1000)
    # Unlimited requests a minute, so the metered routes are not all refused by the plan's limit.
    await database.execute("UPDATE users SET plan = 'enterprise' WHERE id = $1", stack.user["id"])
    spec = await _spec(stack.gateway)
    auth = {"bearer": await admin_headers(stack.gateway, database),
            "apiKey": {"Authorization": f"Bearer {stack.key}"}}
    failures = await asyncio.to_thread(run_schemathesis, spec, stack.base, auth)
    assert failures == [], "\n\n".join(failures)


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
async def test_the_description_needs_no_login(gateway, database, path):
    assert (await gateway.get(path)).status == 200
