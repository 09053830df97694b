"""Usage reports: sums equal to what the ledger charged for every grouping, exports streamed row by
row (100,000 rows in constant memory), proxy sessions per token and day, staff scopes."""

from __future__ import annotations

import csv
import datetime as dt
import io

import orjson
import pytest

from gateway.accounts import users
from tests.support.accounts import admin_headers, make_token, register
from tests.support.ai import MESSAGES, start
from tests.support.api import error_of
from tests.support.staff import managed

USAGE = "/api/v1/usage"
CALLS = [("/openai/v1/chat/completions", {"model": "gpt-4o-mini", "max_tokens": 7, "messages": MESSAGES}, "b"),
         ("/openai/v1/chat/completions", {"model": "gpt-4o-mini", "max_tokens": 3, "stream": True,
                                          "messages": MESSAGES}, "b"),
         ("/anthropic/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 9, "messages": MESSAGES}, "x"),
         ("/gemini/v1beta/models/gemini-2.0-flash:generateContent", {"contents": [{"parts": [{"text": "hi"}]}]},
          "g")]
# What the ledger charged, from the transfers alone: each post of a hold, grouped as the report groups
# (the hold names the key and model it was placed for, and its description starts with the provider).
LEDGER_GROUPS = {
    "day": "(p.created_at AT TIME ZONE 'UTC')::date::text",
    "model": "h.metadata->>'model'",
    "provider": "split_part(h.description, ' ', 1)",
    "key": "h.metadata->>'key_id'",
}
REPORT_GROUPS = {"day": lambda r: r["day"], "model": lambda r: r["model"], "provider": lambda r: r["provider"],
                 "key": lambda r: str(r["key_id"])}


async def _spend(stack) -> None:
    """Two keys, three providers, whole and streamed calls."""
    second = await stack.new_key(name="second")
    for key in (stack.key, second):
        for path, body, scheme in CALLS:
            header = {"b": ("Authorization", f"Bearer {key}"), "x": ("x-api-key", key),
                      "g": ("x-goog-api-key", key)}[scheme]
            response = await stack.gateway.post(path, json=body, headers=dict([header]))
            assert response.status == 200, await response.text()
            await response.read()


async def _ledger(database, grouping: str) -> dict[str, int]:
    rows = await database.fetch(
        f"SELECT {LEDGER_GROUPS[grouping]} AS name, sum(p.amount_micro)::bigint AS charged FROM transfers p "
        "JOIN transfers h ON h.id = p.pending_id WHERE p.phase = 'post_pending' AND p.kind = 'usage' GROUP BY 1")
    return {row["name"]: row["charged"] for row in rows if row["charged"]}


@pytest.mark.parametrize("grouping", ["day", "model", "key", "provider"])
async def test_every_grouping_sums_to_what_the_ledger_charged(gateway_factory, mock_target, database, grouping):
    stack = await start(gateway_factory, mock_target, database)
    await _spend(stack)
    response = await stack.gateway.get(f"{USAGE}?group_by={grouping}", headers=stack.user["headers"])
    assert response.status == 200, await response.text()
    report = await response.json()
    by_group = {REPORT_GROUPS[grouping](row): row["credits_micro"] for row in report["items"] if row["credits_micro"]}
    assert by_group == await _ledger(database, grouping)
    assert report["totals"]["credits_micro"] == sum(by_group.values()) > 0
    assert report["totals"]["calls"] == 8 and report["group_by"] == grouping
    exported = await stack.gateway.get(f"{USAGE}?group_by={grouping}&format=csv", headers=stack.user["headers"])
    table = list(csv.DictReader(io.StringIO(await exported.text())))
    assert sum(int(row["credits_micro"]) for row in table) == report["totals"]["credits_micro"]
    lines = await (await stack.gateway.get(f"{USAGE}?group_by={grouping}&format=jsonl",
                                           headers=stack.user["headers"])).read()
    assert [orjson.loads(line) for line in lines.splitlines()] == report["items"]


async def test_single_calls_export_with_their_charges(gateway_factory, mock_target, database):
    stack = await start(gateway_factory, mock_target, database)
    await _spend(stack)
    lines = (await (await stack.gateway.get(f"{USAGE}/calls?format=jsonl", headers=stack.user["headers"]))
             .read()).splitlines()
    calls = [orjson.loads(line) for line in lines]
    assert len(calls) == 8 and {call["provider"] for call in calls} == {"openai", "anthropic", "gemini"}
    charged = await database.fetchval("SELECT sum(amount_micro)::bigint FROM transfers WHERE phase = 'post_pending'")
    assert sum(call["credits_micro"] for call in calls) == charged


async def test_an_export_of_100000_rows_streams_in_constant_memory(gateway, database):
    """Seeded in SQL; read in chunks as they come, the process grows far less than the export's size."""
    user = await _seed_calls(gateway, database, 100_000)
    response = await gateway.get(f"{USAGE}/calls?format=csv&from=2026-01-01&to=2026-01-02", headers=user["headers"])
    assert response.status == 200 and response.headers["Transfer-Encoding"] == "chunked"
    start_rss, peak_rss, size, lines = _rss_bytes(), 0, 0, 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        lines += chunk.count(b"\n")
        peak_rss = max(peak_rss, _rss_bytes())
    assert lines == 100_001 and size > 10_000_000
    assert peak_rss - start_rss < size // 2, (start_rss, peak_rss, size)


async def _seed_calls(gateway, database, count: int) -> dict:
    user = await register(gateway, "heavy@example.com")
    await database.execute(
        "INSERT INTO ai_usage (request_id, user_id, provider, model, input_tokens, output_tokens, cost_micro, "
        "charged_micro, outcome, created_at) SELECT 'seed-' || n, $1, 'openai', 'gpt-4o-mini', n % 1000, n % 300, "
        "n % 5000, n % 5000, 'ok', timestamptz '2026-01-01 00:00:00+00' + n * interval '1 second' "
        "FROM generate_series(1, $2) AS n", user["id"], count)
    return user


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


async def test_proxy_sessions_are_summed_per_token_and_day(gateway, database):
    issued = await make_token(database, email="desk@example.com")
    user = await users.by_email(database, "desk@example.com")
    day = dt.datetime(2026, 3, 4, 10, tzinfo=dt.timezone.utc)
    for device, requests, hours in (("laptop", 5, 0), ("laptop", 2, 3), ("tablet", 1, 4), ("laptop", 7, 24)):
        await database.execute(
            "INSERT INTO proxy_sessions (token_id, device_id, requests, bytes_in, bytes_out, started_at, last_seen_at,"
            " ended_at) VALUES ($1, $2, $3::bigint, $3::bigint * 10, $3::bigint * 100, $4, $4, $4)", issued.id,
            device, requests, day + dt.timedelta(hours=hours))
    headers = await admin_headers(gateway, database)
    report = await (await gateway.get(f"/api/v1/admin/usage/sessions?user={user.id}&from=2026-03-04&to=2026-03-05",
                                      headers=headers)).json()
    assert [(r["day"], r["token_id"], r["sessions"], r["devices"], r["requests"], r["bytes_out"])
            for r in report["items"]] == [("2026-03-04", issued.id, 3, 2, 8, 800),
                                          ("2026-03-05", issued.id, 1, 1, 7, 700)]


async def test_staff_reports_keep_to_their_scope_and_unknown_parameters_are_400(gateway, database):
    staff = await managed(gateway, database)
    manager = staff.manager["headers"]
    assert (await gateway.get(f"/api/v1/admin/usage?user={staff.client['id']}", headers=manager)).status == 200
    assert await error_of(await gateway.get(f"/api/v1/admin/usage?user={staff.stranger['id']}", headers=manager),
                          404) == "user_not_found"
    assert await error_of(await gateway.get(f"{USAGE}?user={staff.stranger['id']}", headers=staff.client["headers"]),
                          400) == "unknown_query_parameter"
    for query in ("group_by=week", "format=xml", "from=2026-13-01", "from=2026-01-02&to=2026-01-01",
                  "from=2020-01-01&to=2026-01-01"):
        assert (await gateway.get(f"{USAGE}?{query}", headers=staff.client["headers"])).status == 400, query
    assert (await gateway.get(USAGE)).status == 401


@pytest.mark.parametrize("query", ["to=9999-12-31", "from=9999-12-31&to=9999-12-31", "to=0001-01-01"])
async def test_dates_at_the_ends_of_the_calendar_are_a_400_not_a_500(gateway, database, query):
    """The span's edges are computed as datetimes: a day past 9999-12-31 or before 0001-01-01 was a 500."""
    staff = await managed(gateway, database)
    for path in (USAGE, f"{USAGE}/calls", f"{USAGE}/sessions"):
        response = await gateway.get(f"{path}?{query}", headers=staff.client["headers"])
        assert await error_of(response, 400) == "invalid_query", (path, query)
