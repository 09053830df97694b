"""Holds before forwarding: file and media bounds, the TPM reservation, and holds that never overspend."""

from __future__ import annotations

import asyncio

import openai
import orjson
import pytest

import ledger
from gateway.ai.routes import MEDIA_TOKENS_MAX
from tests.support.accounts import deposit, register
from tests.support.ai import GPT, MESSAGES, PRICE_MICRO, hold_for, start
from tests.support.ai_requests import (
    CLAUDE_PATH, GEMINI_PATH, OPENAI_CHAT, RESPONSES, claude, gemini, openai_chat, post, responses,
)

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


# (path, body, references it carries): each reference must add MEDIA_TOKENS_MAX to the hold.
REFERENCES = [
    (OPENAI_CHAT, openai_chat({"type": "file", "file": {"file_id": "file-abc"}}), 1),
    (OPENAI_CHAT, openai_chat({"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=",
                                                        "filename": "a.pdf"}}), 1),
    (OPENAI_CHAT, openai_chat({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}), 1),
    (OPENAI_CHAT, openai_chat({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}), 1),
    (OPENAI_CHAT, openai_chat({"type": "file", "file": {"file_id": "file-a"}},
                              {"type": "file", "file": {"file_id": "file-b"}}), 2),
    (RESPONSES, responses({"type": "input_file", "file_id": "file-abc"}), 1),
    (RESPONSES, responses({"type": "input_file", "file_url": "https://example.com/a.pdf"}), 1),
    (RESPONSES, responses({"type": "input_image", "file_id": "file-abc"}), 1),
    (CLAUDE_PATH, claude({"type": "document", "source": {"type": "file", "file_id": "file_011"}}), 1),
    (CLAUDE_PATH, claude({"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}), 1),
    (CLAUDE_PATH, claude({"type": "image", "source": {"type": "file", "file_id": "file_011"}}), 1),
    (CLAUDE_PATH, claude({"type": "container_upload", "file_id": "file_011"}), 1),
    (CLAUDE_PATH, claude({"type": "tool_result", "tool_use_id": "t1", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}), 1),
    (GEMINI_PATH, gemini({"fileData": {"mimeType": "application/pdf", "fileUri": "https://g/files/abc"}}), 1),
    (GEMINI_PATH, gemini({"file_data": {"mime_type": "video/mp4", "file_uri": "gs://bucket/v.mp4"}}), 1),
    (GEMINI_PATH, gemini({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}), 1),
    (GEMINI_PATH, gemini({"inline_data": {"mime_type": "image/png", "data": "iVBORw0KGgo="}}), 1),
]


@pytest.mark.parametrize("path, body, references", REFERENCES,
                         ids=[f"{r[0].split('/')[1]}-{orjson.loads(r[1]).__repr__()[:0]}{n}"
                              for n, r in enumerate(REFERENCES)])
async def test_each_file_or_media_reference_is_held_at_the_media_bound(recorded, path, body, references):
    stack, _ = recorded
    await post(stack, path, body)
    held = await stack.database.fetchval(
        "SELECT amount_micro FROM transfers WHERE phase = 'pending' AND user_id = $1 ORDER BY id DESC LIMIT 1",
        stack.user["id"])
    assert held == hold_for(len(body) + references * MEDIA_TOKENS_MAX, 5)


async def test_calls_running_at_once_cannot_exceed_the_tokens_per_minute(gateway_factory, mock_target, database,
                                                                        redis_client):
    # Each call reserves its token bound (prompt bytes + max_tokens, here > 30) before it is
    # forwarded, so the first fills the window and the 19 others are refused while it runs (L8).
    stack = await start(gateway_factory, mock_target, database)
    key = await stack.new_key(tpm_limit=30)
    await stack.control("latency", {"ms": 1000, "chunk_ms": 1})
    client = stack.openai(key)

    async def one():
        try:
            await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=15)
            return 200
        except openai.RateLimitError as error:
            assert "key_tpm" in error.message
            return 429

    statuses = await asyncio.gather(*(one() for _ in range(20)))
    await client.close()
    assert sorted(statuses) == [200] + [429] * 19
    assert len(await stack.charges()) == 1 and await stack.open_holds() == 0
    # Settled, the reservation is replaced by the tokens really used.
    used = await database.fetchval("SELECT input_tokens + cached_input_tokens + output_tokens FROM ai_usage "
                                   "WHERE outcome = 'ok'")
    windows = [name for name in await redis_client.keys("tg:*:tpm:*")]
    assert sum([int(await redis_client.get(name)) for name in windows]) == used


# -- holds under concurrency -------------------------------------------------------------------


async def test_50_parallel_streams_on_a_balance_for_10_holds_never_overspend(gateway_factory, mock_target, database):
    from gateway.ai.pricing import Price, max_cost_micro
    from gateway.ai.routes import input_bound
    import orjson

    stack = await start(gateway_factory, mock_target, database, credits=0)
    body = {"model": GPT, "messages": MESSAGES, "max_tokens": 50, "stream": True}
    # What tollgate holds for one call (its body gains stream_options upstream, not in the bound).
    hold = max_cost_micro(Price(*PRICE_MICRO[:2], PRICE_MICRO[2]), input_bound(orjson.dumps(body)), 50)
    account = await ledger.user_account(database, stack.user["id"])
    clearing = await ledger.system_id(database, "payment_clearing")
    async with database.acquire() as connection:
        import datetime as dt
        await ledger.move(connection, key="fund-10-holds", debit=clearing, credit=account,
                          amount_micro=10 * hold + hold // 2, kind="deposit", now=dt.datetime.now(dt.timezone.utc),
                          user_id=stack.user["id"])
    funded = await stack.balance()
    await stack.control("latency", {"ms": 1500, "chunk_ms": 5})  # every hold is placed before any ends
    client = stack.openai()

    async def one():
        try:
            stream = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=50, stream=True)
            return "ok", "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        except openai.APIStatusError as error:
            return error.status_code, error.body

    results = await asyncio.gather(*(one() for _ in range(50)))
    await client.close()
    outcomes = [r[0] for r in results]
    assert outcomes.count("ok") == 10 and outcomes.count(402) == 40, outcomes
    refused = next(r[1] for r in results if r[0] == 402)
    assert refused["type"] == "insufficient_quota" and refused["code"] == "insufficient_balance"
    spent = funded - await stack.balance()
    assert 0 < spent <= funded and await stack.balance() >= 0
    assert await stack.open_holds() == 0
    assert (await ledger.reconcile(database)).ok


async def test_a_hold_the_database_fails_answers_503_and_the_rest_of_its_batch_goes_through(
        gateway_factory, mock_target, database):
    """Group commit (decision 0021): one call's hold breaks in PostgreSQL (here a trigger refuses its
    user's holds); that call answers 503 in the provider's shape, nothing held for it, while the calls
    of another user sent at the same moment (in its batch or the next) are held, forwarded and charged."""
    stack = await start(gateway_factory, mock_target, database)
    other = await register(stack.gateway, "other@example.com")
    await deposit(database, other["id"], 100)
    response = await stack.gateway.post("/api/v1/keys", headers=other["headers"], json={"name": "other"})
    other_key = (await response.json())["key"]
    await database.execute(f"""
        CREATE FUNCTION refuse_hold() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
        CREATE TRIGGER refuse_hold BEFORE INSERT ON transfers FOR EACH ROW
            WHEN (NEW.user_id = {int(stack.user["id"])} AND NEW.phase = 'pending') EXECUTE FUNCTION refuse_hold();""")
    try:
        body = openai_chat()
        answers = await asyncio.gather(post(stack, OPENAI_CHAT, body),
                                       *(post(stack, OPENAI_CHAT, body, key=other_key) for _ in range(5)))
    finally:
        await database.execute("DROP TRIGGER refuse_hold ON transfers; DROP FUNCTION refuse_hold()")
    refused, served = answers[0], answers[1:]
    assert refused.status == 503, refused.body
    error = orjson.loads(refused.body)["error"]
    assert error["type"] and "refused by the test" not in refused.body.decode()
    assert [answer.status for answer in served] == [200] * 5
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE user_id = $1 AND kind = 'usage'",
                                   stack.user["id"]) == 0
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE user_id = $1 AND phase = 'post_pending'",
                                   other["id"]) == 5


async def test_each_users_calls_credit_the_revenue_shard_of_its_lane(gateway_factory, mock_target, database):
    """Four users, one per revenue shard: each call's hold and charge go to its user's shard (decision
    0021, "Lanes"), and the calls of all four, sent at once, settle in the two lanes."""
    first = await start(gateway_factory, mock_target, database)
    stacks = [first]
    for number in range(3):
        user = await register(first.gateway, f"shard{number}@example.com")
        await deposit(database, user["id"], 100)
        stack = type(first)(first.gateway, first.mock, database, user, "")
        stack.key = await stack.new_key(name="tests")
        stacks.append(stack)
    assert sorted(ledger.revenue_shard(stack.user["id"]) for stack in stacks) == sorted(ledger.REVENUE_SHARDS)

    async def one_call(stack) -> None:
        client = stack.openai()
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=20)
        await client.close()

    await asyncio.gather(*(one_call(stack) for stack in stacks for _ in range(3)))
    for stack in stacks:
        shard = await ledger.system_id(database, ledger.revenue_shard(stack.user["id"]))
        credited = await database.fetch(
            "SELECT DISTINCT credit_account_id FROM transfers WHERE user_id = $1 AND kind = 'usage'", stack.user["id"])
        assert [row["credit_account_id"] for row in credited] == [shard]
        assert len(await stack.charges()) == 3 and await stack.open_holds() == 0
    assert (await ledger.reconcile(database)).ok
