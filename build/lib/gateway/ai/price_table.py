"""The model price table: rows in PostgreSQL, held in memory per worker and refreshed on a timer."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncpg

from gateway.ai.pricing import Price
from gateway.core.config import Settings
from gateway.core.failures import POSTGRES_FAILURES

log = logging.getLogger(__name__)

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
