"""The model price table: rows in PostgreSQL, held in memory per worker and refreshed on a timer."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

import asyncpg

from gateway.accounts import audit
from gateway.ai.pricing import Price
from gateway.ai.providers import PROVIDERS, provider_for_model
from gateway.core.config import Settings
from gateway.core.errors import BadRequest
from gateway.core.failures import POSTGRES_FAILURES
from gateway.core.json_body import field
from ledger.money import MoneyError, parse_credits

log = logging.getLogger(__name__)

MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
FIELDS = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "provider", "max_output_tokens")
OUTPUT_TOKENS_MAX = 10_000_000

SELECT_ALL = """
SELECT model, provider, input_per_mtok_micro, output_per_mtok_micro, cached_input_per_mtok_micro,
       max_output_tokens, updated_at
FROM model_prices ORDER BY provider, model"""
UPSERT = """
INSERT INTO model_prices (model, provider, input_per_mtok_micro, output_per_mtok_micro,
                          cached_input_per_mtok_micro, max_output_tokens, updated_at, updated_by)
VALUES ($1, $2, $3, $4, $5, $6, now(), $7)
ON CONFLICT (model) DO UPDATE SET
    provider = EXCLUDED.provider, input_per_mtok_micro = EXCLUDED.input_per_mtok_micro,
    output_per_mtok_micro = EXCLUDED.output_per_mtok_micro,
    cached_input_per_mtok_micro = EXCLUDED.cached_input_per_mtok_micro,
    max_output_tokens = EXCLUDED.max_output_tokens, updated_at = now(), updated_by = EXCLUDED.updated_by
RETURNING model, provider, input_per_mtok_micro, output_per_mtok_micro, cached_input_per_mtok_micro,
          max_output_tokens, updated_at"""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    model: str
    provider: str
    price: Price
    max_output_tokens: int


def model_price(row: asyncpg.Record) -> ModelPrice:
    return ModelPrice(row["model"], row["provider"],
                      Price(row["input_per_mtok_micro"], row["output_per_mtok_micro"],
                            row["cached_input_per_mtok_micro"]), row["max_output_tokens"])


class PriceTable:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.prices: dict[str, ModelPrice] = {}
        default = settings.default_ai_price_micro()
        self.default = Price(*default) if default is not None else None
        self.default_max_output = settings.ai_default_max_output_tokens

    async def load(self) -> None:
        rows = await self.pool.fetch(SELECT_ALL)
        self.prices = {row["model"]: model_price(row) for row in rows}

    def get(self, model: str, provider: str) -> ModelPrice | None:
        """The model's price; the configured default for an unlisted model; None = refuse it."""
        found = self.prices.get(model)
        if found is not None:
            return found if found.provider == provider else None
        if self.default is None:
            return None
        return ModelPrice(model, provider, self.default, self.default_max_output)

    def put(self, price: ModelPrice) -> None:
        self.prices[price.model] = price

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.load()
            except POSTGRES_FAILURES as error:
                log.warning("price refresh failed, keeping the last table: %s", type(error).__name__)


@dataclass(frozen=True, slots=True)
class Change:
    """A model's new price, checked: micro-credits per million input, output, cached input tokens."""

    model: str
    provider: str
    per_mtok_micro: tuple[int, int, int]
    max_output_tokens: int


def _credits(body: dict, name: str) -> int:
    try:
        return parse_credits(field(body, name, str))
    except MoneyError as error:
        raise BadRequest(f"{name}: {error}", code="invalid_amount") from error


def parse_change(model: str, body: dict, table: PriceTable) -> Change:
    """{input_per_mtok, output_per_mtok, cached_input_per_mtok, provider?, max_output_tokens?} for `model`."""
    if not MODEL.match(model):
        raise BadRequest("model: letters, digits, '.', '_', ':', '-' (up to 200)", code="invalid_model")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}", code="unknown_field")
    prices = (_credits(body, FIELDS[0]), _credits(body, FIELDS[1]), _credits(body, FIELDS[2]))
    provider = field(body, "provider", str, required=False) or provider_for_model(model)
    if provider not in PROVIDERS:
        raise BadRequest(f"provider: one of {', '.join(PROVIDERS)} (not implied by the model name)",
                         code="invalid_provider")
    current = table.prices.get(model)
    max_output = field(body, "max_output_tokens", int, required=False,
                       default=current.max_output_tokens if current else table.default_max_output)
    if not 1 <= max_output <= OUTPUT_TOKENS_MAX:
        raise BadRequest(f"max_output_tokens: 1 to {OUTPUT_TOKENS_MAX}", code="invalid_field")
    return Change(model, provider, prices, max_output)


async def save(pool: asyncpg.Pool, table: PriceTable, change: Change, *, actor_id: int, ip: str) -> ModelPrice:
    """Store the price (audited) and use it in this worker at once; the others at their next refresh."""
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(UPSERT, change.model, change.provider, *change.per_mtok_micro,
                                        change.max_output_tokens, actor_id)
        await audit.record(connection, actor_id=actor_id, action="price.update", target_type="model",
                           target_id=change.model, ip=ip,
                           details={"per_mtok_micro": list(change.per_mtok_micro), "provider": change.provider})
    saved = model_price(row)
    table.put(saved)
    return saved
