"""The AI stack under test: priced models, the official SDK clients on the gateway, money read back.

Prices are set to odd values before the gateway starts, so every charge exercises the rounding.
"""

from __future__ import annotations

import math

import aiohttp
import anthropic
import openai
from google import genai
from google.genai import types as genai_types

import ledger
from tests.support.accounts import deposit, register

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


async def assert_charged_exactly(stack: Stack, before: int, *usages: tuple[int, int, int]) -> None:
    expected = [expected_cost(*u) for u in usages]
    assert (await stack.charges())[-len(expected):] == expected
    assert await stack.balance() == before - sum(expected)
    assert await stack.open_holds() == 0


def hold_for(input_tokens: int, output_tokens: int) -> int:
    p_in, p_out, _ = PRICE_MICRO
    return max(1, math.ceil((input_tokens * p_in + output_tokens * p_out) / 1_000_000))
