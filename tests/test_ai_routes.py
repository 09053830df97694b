"""The metered AI routes end to end: official SDKs → tollgate → the mock AI upstream, money checked.

Prices are set to odd values before the gateway starts, so every charge exercises the rounding.
"""

from __future__ import annotations

import asyncio
import math

import aiohttp
import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

import ledger
from tests.conftest import deposit, register

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

# Credits per million tokens: input, output, cached input (odd, so costs round).
PRICE = ("1000.5", "2000.25", "100.125")
PRICE_MICRO = tuple(ledger.parse_credits(p) for p in PRICE)
MODELS = ("gpt-4o-mini", "text-embedding-3-small", "claude-haiku-4-5", "gemini-2.0-flash", "gemini-2.5-flash")
CLAUDE, GPT, GEMINI = "claude-haiku-4-5", "gpt-4o-mini", "gemini-2.0-flash"
MESSAGES = [{"role": "user", "content": "Say something, please."}]
SDK_TIMEOUT_S = 10.0


def expected_cost(input_tokens: int, cached: int, output: int) -> int:
    p_in, p_out, p_cached = PRICE_MICRO
    return math.ceil((input_tokens * p_in + cached * p_cached + output * p_out) / 1_000_000)


class Stack:
    def __init__(self, gateway, mock: str, database, user: dict, key: str) -> None:
        self.gateway, self.mock, self.database, self.user, self.key = gateway, mock, database, user, key
        self.base = str(gateway.make_url("")).rstrip("/")

    def openai(self, key: str | None = None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.base}/openai/v1", api_key=key or self.key, max_retries=0,
                                  timeout=SDK_TIMEOUT_S)

    def anthropic(self, key: str | None = None) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=f"{self.base}/anthropic", api_key=key or self.key,
                                        max_retries=0, timeout=SDK_TIMEOUT_S)

    def gemini(self, key: str | None = None):
        options = genai_types.HttpOptions(base_url=f"{self.base}/gemini", timeout=int(SDK_TIMEOUT_S * 1000),
                                          retry_options=genai_types.HttpRetryOptions(attempts=1))
        return genai.Client(api_key=key or self.key, http_options=options).aio

    async def balance(self) -> int:
        return (await ledger.balance(self.database, self.user["id"])).available_micro

    async def charges(self) -> list[int]:
        rows = await self.database.fetch(
            "SELECT amount_micro FROM transfers WHERE phase = 'post_pending' AND user_id = $1 ORDER BY id",
            self.user["id"])
        return [row["amount_micro"] for row in rows]

    async def open_holds(self) -> int:
        return await self.database.fetchval(
            "SELECT count(*) FROM transfers p WHERE p.phase = 'pending' "
            "AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)")

    async def control(self, path: str, body: dict | None = None, method: str = "POST"):
        async with aiohttp.ClientSession() as session:
            async with session.request(method, f"{self.mock}/_mock/ai/{path}", json=body) as response:
                assert response.status < 300, await response.text()
                return await response.json() if response.content_type == "application/json" else None

    async def new_key(self, **fields) -> str:
        response = await self.gateway.post("/api/v1/keys", headers=self.user["headers"], json=fields)
        assert response.status == 201, await response.text()
        return (await response.json())["key"]


async def start(gateway_factory, mock_target, database, credits: int = 100, **settings) -> Stack:
    for model in MODELS:
        await database.execute(
            "UPDATE model_prices SET input_per_mtok_micro = $2, output_per_mtok_micro = $3, "
            "cached_input_per_mtok_micro = $4 WHERE model = $1", model, *PRICE_MICRO)
    gateway = await gateway_factory(**{
        "openai_base_url": f"{mock_target}/openai/v1", "openai_api_keys": "sk-mock-a, sk-mock-b",
        "anthropic_base_url": f"{mock_target}/anthropic", "anthropic_api_keys": "sk-mock-claude",
        "gemini_base_url": f"{mock_target}/gemini", "gemini_api_keys": "mock-gemini",
        "ai_read_timeout_s": 2.0, "usage_flush_interval_s": 0.05, **settings})
    user = await register(gateway, "sdk@example.com")
    if credits:
        await deposit(database, user["id"], credits)
    stack = Stack(gateway, mock_target, database, user, "")
    stack.key = await stack.new_key(name="tests")
    await stack.control("reset")
    await stack.control("latency", {"ms": 0, "chunk_ms": 1})
    return stack


@pytest.fixture
async def stack(gateway_factory, mock_target, database) -> Stack:
    return await start(gateway_factory, mock_target, database)


async def assert_charged_exactly(stack: Stack, before: int, *usages: tuple[int, int, int]) -> None:
    expected = [expected_cost(*u) for u in usages]
    assert (await stack.charges())[-len(expected):] == expected
    assert await stack.balance() == before - sum(expected)
    assert await stack.open_holds() == 0


# -- each SDK, streaming and not ---------------------------------------------------------------


async def test_openai_chat_is_charged_exactly_streamed_or_not(stack):
    before = await stack.balance()
    client = stack.openai()
    completion = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=12)
    usage = completion.usage
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    whole = (usage.prompt_tokens - cached, cached, usage.completion_tokens)
    assert completion.choices[0].message.content
    # The client did not ask for usage: tollgate asks for it upstream and hides that chunk.
    stream = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=12, stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks and all(chunk.choices for chunk in chunks) and all(chunk.usage is None for chunk in chunks)
    await client.close()
    await assert_charged_exactly(stack, before, whole, whole)
    sent = await stack.control("requests", method="GET")
    assert sent[-1]["body"]["stream_options"] == {"include_usage": True}


async def test_an_openai_stream_that_asks_for_usage_gets_it(stack):
    client = stack.openai()
    stream = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=5, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    await client.close()
    final = chunks[-1]
    assert final.choices == [] and final.usage.completion_tokens == 5
    assert (await stack.charges())[-1] == expected_cost(final.usage.prompt_tokens, 0, 5)


async def test_openai_responses_and_embeddings_are_charged(stack):
    before = await stack.balance()
    client = stack.openai()
    response = await client.responses.create(model=GPT, input="Hello there", max_output_tokens=30)
    streamed = await client.responses.create(model=GPT, input="Hello there", max_output_tokens=30, stream=True)
    events = [event async for event in streamed]
    embedding = await client.embeddings.create(model="text-embedding-3-small", input="embed me")
    await client.close()
    u = response.usage
    assert events[-1].type == "response.completed" and events[-1].response.usage.output_tokens == u.output_tokens
    await assert_charged_exactly(stack, before, (u.input_tokens, 0, u.output_tokens),
                                 (u.input_tokens, 0, u.output_tokens), (embedding.usage.prompt_tokens, 0, 0))


async def test_anthropic_messages_are_charged_exactly_streamed_or_not(stack):
    before = await stack.balance()
    client = stack.anthropic()
    message = await client.messages.create(model=CLAUDE, max_tokens=9, messages=MESSAGES)
    async with client.messages.stream(model=CLAUDE, max_tokens=9, messages=MESSAGES) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    await client.close()
    assert text == message.content[0].text
    u = message.usage
    assert final.usage.output_tokens == u.output_tokens == 9
    await assert_charged_exactly(stack, before, (u.input_tokens, 0, u.output_tokens),
                                 (u.input_tokens, 0, u.output_tokens))


async def test_anthropic_cache_reads_and_writes_are_priced(stack):
    before = await stack.balance()
    client = stack.anthropic()
    system = [{"type": "text", "text": "y" * 4200, "cache_control": {"type": "ephemeral"}}]
    first = await client.messages.create(model=CLAUDE, max_tokens=4, system=system, messages=MESSAGES)
    second = await client.messages.create(model=CLAUDE, max_tokens=4, system=system, messages=MESSAGES)
    await client.close()
    assert first.usage.cache_creation_input_tokens and second.usage.cache_read_input_tokens
    # Cache writes are billed as input, cache reads at the cached price (decision 0011).
    await assert_charged_exactly(
        stack, before,
        (first.usage.input_tokens + first.usage.cache_creation_input_tokens, 0, 4),
        (second.usage.input_tokens, second.usage.cache_read_input_tokens, 4))


async def test_gemini_generate_and_stream_are_charged_exactly(stack):
    before = await stack.balance()
    client = stack.gemini()
    config = genai_types.GenerateContentConfig(max_output_tokens=7)
    whole = await client.models.generate_content(model=GEMINI, contents="Hello Gemini", config=config)
    pieces = [piece async for piece in await client.models.generate_content_stream(
        model=GEMINI, contents="Hello Gemini", config=config)]
    await client.aclose()
    u = whole.usage_metadata
    assert pieces[-1].usage_metadata.candidates_token_count == u.candidates_token_count == 7
    await assert_charged_exactly(stack, before, (u.prompt_token_count, 0, 7), (u.prompt_token_count, 0, 7))


async def test_gemini_thinking_tokens_are_charged_once(stack):
    client = stack.gemini()
    result = await client.models.generate_content(
        model="gemini-2.5-flash", contents="Think about it",
        config=genai_types.GenerateContentConfig(max_output_tokens=10))
    await client.aclose()
    u = result.usage_metadata
    assert u.thoughts_token_count
    assert (await stack.charges())[-1] == expected_cost(u.prompt_token_count, 0,
                                                        u.candidates_token_count + u.thoughts_token_count)


async def test_gemini_v1beta_route_and_query_key_work(stack):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{stack.base}/gemini/v1beta/models/{GEMINI}:generateContent?key={stack.key}",
                                json={"contents": [{"parts": [{"text": "hi"}]}]}) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
    assert (await stack.charges())[-1] == expected_cost(body["usageMetadata"]["promptTokenCount"], 0,
                                                        body["usageMetadata"]["candidatesTokenCount"])


async def test_listing_models_and_counting_tokens_cost_nothing(stack):
    before = await stack.balance()
    openai_client, claude = stack.openai(), stack.anthropic()
    models = await openai_client.models.list()
    counted = await claude.messages.count_tokens(model=CLAUDE, messages=MESSAGES)
    gemini_client = stack.gemini()
    gemini_count = await gemini_client.models.count_tokens(model=GEMINI, contents="count me")
    await openai_client.close()
    await claude.close()
    await gemini_client.aclose()
    assert any(m.id == GPT for m in models.data) and counted.input_tokens and gemini_count.total_tokens
    assert await stack.balance() == before
    assert await stack.database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'usage'") == 0


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


# -- upstream failures -------------------------------------------------------------------------


async def test_an_upstream_500_is_relayed_and_charges_nothing(stack):
    before = await stack.balance()
    await stack.control("faults", {"mode": "500", "count": 1})
    client = stack.openai()
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=5)
    await client.close()
    assert await stack.balance() == before and await stack.charges() == [] and await stack.open_holds() == 0


async def test_an_upstream_timeout_is_a_504_in_the_provider_shape_and_charges_nothing(stack):
    before = await stack.balance()
    await stack.control("faults", {"mode": "timeout", "count": 1, "delay_ms": 10_000})
    client = stack.anthropic()
    with pytest.raises(anthropic.APIStatusError) as raised:
        await client.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    await client.close()
    assert raised.value.status_code == 504 and raised.value.body["type"] == "error"
    assert await stack.balance() == before and await stack.open_holds() == 0


async def test_an_upstream_that_is_down_is_a_502(gateway_factory, mock_target, database):
    from devkit.embedded import free_port

    stack = await start(gateway_factory, mock_target, database,
                        gemini_base_url=f"http://127.0.0.1:{free_port()}/gemini")
    before = await stack.balance()
    client = stack.gemini()
    with pytest.raises(genai_errors.ServerError) as raised:
        await client.models.generate_content(model=GEMINI, contents="hi")
    await client.aclose()
    assert raised.value.code == 502
    assert await stack.balance() == before and await stack.open_holds() == 0


async def test_a_stream_reset_midway_charges_the_prompt_bound_and_what_was_streamed(stack):
    # The provider bills the prompt of a call it broke off; it never said how much: the bound is
    # charged (decision 0011), with the text produced.
    before = await stack.balance()
    await stack.control("faults", {"mode": "reset_mid_stream", "count": 1})
    client = stack.openai()
    received = []
    with pytest.raises(openai.APIError):
        stream = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=20, stream=True)
        async for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    await client.close()
    row = None
    for _ in range(100):
        if (row := await stack.database.fetchrow("SELECT * FROM ai_usage")) is not None:
            break
        await asyncio.sleep(0.05)
    assert (row["outcome"], row["usage_source"]) == ("upstream_broken", "estimated")
    assert row["output_tokens"] == math.ceil(len("".join(received)) / 4) > 0
    assert row["input_tokens"] > len(MESSAGES[0]["content"])  # the request's bytes
    assert before - await stack.balance() == expected_cost(row["input_tokens"], 0, row["output_tokens"])
    assert await stack.open_holds() == 0


async def test_a_client_leaving_mid_stream_pays_for_what_was_produced(stack):
    before = await stack.balance()
    await stack.control("latency", {"ms": 0, "chunk_ms": 100})
    client = stack.anthropic()
    async with client.messages.stream(model=CLAUDE, max_tokens=20, messages=MESSAGES) as stream:
        async for _ in stream.text_stream:
            break  # leave after the first text
    await client.close()
    for _ in range(100):
        if await stack.open_holds() == 0:
            break
        await asyncio.sleep(0.05)
    assert await stack.open_holds() == 0
    charged = before - await stack.balance()
    # The input Anthropic reported at message_start is owed, plus the little output produced.
    assert 0 < charged < expected_cost(20, 0, 20) + expected_cost(50, 0, 0)


# -- bad input ---------------------------------------------------------------------------------


async def post_raw(stack: Stack, path: str, data: bytes, headers: dict | None = None):
    async with aiohttp.ClientSession() as session:
        async with session.post(stack.base + path, data=data, headers={
                "Authorization": f"Bearer {stack.key}", "Content-Type": "application/json", **(headers or {})}) as r:
            return r.status, await r.json()


async def test_malformed_json_is_a_provider_shaped_400_and_charges_nothing(stack):
    status, body = await post_raw(stack, "/openai/v1/chat/completions", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, body = await post_raw(stack, "/anthropic/v1/messages", b"[1, 2]")
    assert status == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    status, body = await post_raw(stack, f"/gemini/v1/models/{GEMINI}:generateContent", b"nope")
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
    assert await stack.database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'usage'") == 0


async def test_bad_keys_models_and_addresses_are_refused_in_the_providers_shapes(gateway_factory, mock_target,
                                                                                 database):
    stack = await start(gateway_factory, mock_target, database, ai_body_max_bytes=2000)
    before = await stack.balance()
    only_claude = await stack.new_key(allowed_models=[CLAUDE])
    elsewhere = await stack.new_key(ip_allowlist=["10.0.0.0/8"])
    revoked = await stack.new_key()
    revoked_id = (await stack.database.fetchval("SELECT id FROM api_keys WHERE prefix = $1", revoked[:11]))
    assert (await stack.gateway.delete(f"/api/v1/keys/{revoked_id}", headers=stack.user["headers"])).status == 200
    cases = [
        ("tg_" + "x" * 43, openai.AuthenticationError),
        (revoked, openai.AuthenticationError),
        (only_claude, openai.PermissionDeniedError),
        (elsewhere, openai.PermissionDeniedError),
    ]
    for key, exception in cases:
        client = stack.openai(key)
        with pytest.raises(exception):
            await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=5)
        await client.close()
    client = stack.openai()
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="gpt-unknown-9", messages=MESSAGES, max_tokens=5)
    with pytest.raises(openai.APIStatusError) as raised:
        await client.chat.completions.create(model=GPT, messages=[{"role": "user", "content": "x" * 5000}],
                                             max_tokens=5)
    assert raised.value.status_code == 413
    await client.close()
    async with aiohttp.ClientSession() as session:  # no key at all
        async with session.post(f"{stack.base}/anthropic/v1/messages", json={
                "model": CLAUDE, "max_tokens": 5, "messages": MESSAGES}) as response:
            body = await response.json()
    assert response.status == 401 and body["error"]["type"] == "authentication_error"
    assert await stack.balance() == before
    assert await stack.database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'usage'") == 0


async def test_a_key_over_its_rpm_gets_a_429_with_retry_after(stack):
    key = await stack.new_key(rpm_limit=2)
    client = stack.openai(key)
    for _ in range(2):
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    with pytest.raises(openai.RateLimitError) as raised:
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    await client.close()
    assert int(raised.value.response.headers["Retry-After"]) >= 1


async def test_upstream_keys_are_used_round_robin_and_the_client_key_never_leaves(stack):
    await stack.control("requests", method="DELETE")
    client = stack.openai()
    for _ in range(2):
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    await client.close()
    sent = await stack.control("requests", method="GET")
    assert sorted(r["headers"]["authorization"] for r in sent) == ["Bearer sk-mock-a", "Bearer sk-mock-b"]
    assert all(stack.key not in str(r) for r in sent)


# -- the billing-CRM API, usage rows and metrics -----------------------------------------------


async def test_generate_picks_the_provider_from_the_model(stack):
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {stack.key}"}) as session:
        for body in ({"model": GPT, "messages": MESSAGES, "max_tokens": 3},
                     {"model": CLAUDE, "messages": MESSAGES, "max_tokens": 3},
                     {"model": GEMINI, "contents": [{"parts": [{"text": "hi"}]}],
                      "generationConfig": {"maxOutputTokens": 3}}):
            async with session.post(f"{stack.base}/api/v1/generate", json=body) as response:
                answer = await response.json()
                assert response.status == 200 and answer["error"] is False, answer
                assert answer["usage"]["tokens_used"] > 3 and answer["data"]
            async with session.get(f"{stack.base}/api/v1/balance") as response:
                view = await response.json()
            assert view["balance"]["tokens_available"] == answer["usage"]["balance_remaining"]
        async with session.post(f"{stack.base}/api/v1/generate", json={"model": "llama-3", "messages": []}) as response:
            assert response.status == 400 and (await response.json())["error"] is True
    assert view["user_id"] == stack.user["id"] and view["balance"]["tokens_purchased"] == "100"


async def test_usage_rows_and_metrics_record_each_call(stack):
    client = stack.openai()
    await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=4)
    await client.close()
    row = None
    for _ in range(100):
        row = await stack.database.fetchrow("SELECT * FROM ai_usage")
        if row:
            break
        await asyncio.sleep(0.05)
    assert row is not None
    assert (row["provider"], row["model"], row["output_tokens"], row["outcome"], row["stream"]) == \
        ("openai", GPT, 4, "ok", False)
    assert row["charged_micro"] == row["cost_micro"] == (await stack.charges())[-1]
    text = await (await stack.gateway.get("/metrics")).text()
    assert f'tollgate_ai_tokens_total{{kind="output",model="{GPT}",provider="openai"}}' in text
    assert "tollgate_ai_credits_charged_micro_total" in text


async def test_a_deactivated_user_s_key_is_refused_on_the_next_call_and_works_again_after(stack):
    from gateway.accounts import users as users_module

    await users_module.ensure_admin(stack.database, email="root@example.com", password="admin password 1")
    login = await stack.gateway.post("/api/v1/auth/login",
                                     json={"email": "root@example.com", "password": "admin password 1"})
    admin = {"Authorization": f"Bearer {(await login.json())['access_token']}"}
    client = stack.openai()
    await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)  # the key is cached now
    url = f"/api/v1/admin/users/{stack.user['id']}"
    assert (await stack.gateway.patch(url, headers=admin, json={"is_active": False})).status == 200
    with pytest.raises(openai.PermissionDeniedError):
        await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    assert (await stack.gateway.patch(url, headers=admin, json={"is_active": True})).status == 200
    await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=1)
    await client.close()


async def test_an_unlisted_model_is_charged_the_default_price_when_one_is_configured(gateway_factory, mock_target,
                                                                                     database):
    stack = await start(gateway_factory, mock_target, database, ai_default_price="3,4,1")
    before = await stack.balance()
    client = stack.openai()
    completion = await client.chat.completions.create(model="o4-mini", messages=MESSAGES,
                                                      max_completion_tokens=6)
    await client.close()
    u = completion.usage
    assert (await stack.charges())[-1] == math.ceil((u.prompt_tokens * 3_000_000 + u.completion_tokens * 4_000_000)
                                                    / 1_000_000)
    assert await stack.balance() < before
