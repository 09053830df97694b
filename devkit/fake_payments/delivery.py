"""Sending a fake provider's callback to the gateway, as the provider would: one POST, its answer kept."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

TIMEOUT_S = 10


@dataclass(frozen=True, slots=True)
class Delivered:
    status: int
    body: str


async def post(url: str, *, data: bytes, headers: dict[str, str]) -> Delivered:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:
        async with session.post(url, data=data, headers=headers) as response:
            return Delivered(response.status, await response.text())
