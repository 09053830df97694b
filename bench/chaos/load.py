"""Steady mixed load on the gateway, and what the clients were told: every acknowledged purchase,
refund, payment and AI charge, and every answer's status, per lane.

Lanes: the desktop proxy, AI whole and streamed, token purchases with idempotency keys (each
acknowledged one retried once, which must replay), refunds (revoking a bought token), and credit
purchases paid through the fake Stripe whose webhook is redelivered until the gateway takes it,
as Stripe does. A money operation without an answer is retried with the same key until it gets
one, so at the end every operation the load started is acknowledged or reported as unanswered.
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
import orjson

from bench.chaos.people import People, login
from devkit.fake_payments.stripe import FakeStripe

REQUEST_TIMEOUT_S = 10.0
RETRY_DELAY_S = 0.5
LANE_PAUSE_S = {"desktop": 0.02, "ai_whole": 0.05, "ai_stream": 0.1, "purchase": 0.3, "payment": 0.8}
CHAT = {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "chaos"}]}
STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


@dataclass
class Observed:
    """What the clients saw; the checks compare it with the ledger."""

    statuses: collections.Counter = field(default_factory=collections.Counter)  # (lane, status or "error")
    purchases: dict[str, int] = field(default_factory=dict)  # idempotency key -> transfer id acknowledged
    replays: list[tuple[str, bool]] = field(default_factory=list)  # (key, replayed the same transfer)
    refunds: dict[int, int] = field(default_factory=dict)  # token id -> refund transfer id acknowledged
    refunds_unknown: set[int] = field(default_factory=set)  # revoked, but the answer was lost
    payments: dict[int, str] = field(default_factory=dict)  # payment id -> Stripe session, webhook taken
    charges: list[str] = field(default_factory=list)  # request ids of AI calls answered in full
    retries: collections.Counter = field(default_factory=collections.Counter)  # lane -> retried sends
    unanswered: list[str] = field(default_factory=list)  # money operations still without an answer


class Load:
    def __init__(self, base: str, people: People, stripe: FakeStripe) -> None:
        self.base, self.people, self.stripe = base, people, stripe
        self.observed = Observed()
        self.stopping = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
        lanes = {"desktop": self._desktop, "ai_whole": self._ai_whole, "ai_stream": self._ai_stream,
                 "purchase": self._purchase, "payment": self._payment}
        self._tasks = [asyncio.create_task(self._lane(name, step), name=f"chaos-{name}")
                       for name, step in lanes.items()]

    async def stop(self, drain_s: float) -> None:
        """Stop starting new operations; give the unanswered ones `drain_s` to get their answer."""
        self.stopping.set()
        done, pending = await asyncio.wait(self._tasks, timeout=drain_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        assert self.session is not None
        await self.session.close()
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _lane(self, name: str, step) -> None:
        while not self.stopping.is_set():
            await step()
            await asyncio.sleep(LANE_PAUSE_S[name])

    async def _send(self, lane: str, method: str, path: str, **kwargs) -> tuple[int, Mapping[str, str], bytes]:
        """(status, headers, body); status 0 when the connection failed or timed out."""
        assert self.session is not None
        try:
            async with self.session.request(method, self.base + path, **kwargs) as response:
                body = await response.read()
                self.observed.statuses[(lane, response.status)] += 1
                return response.status, response.headers, body
        except TRANSPORT_ERRORS:
            self.observed.statuses[(lane, "error")] += 1
            return 0, {}, b""

    async def _until_answered(self, lane: str, what: str, attempt) -> object | None:
        """Run `attempt` (None = no answer yet) until it answers; after stop, until the drain ends."""
        while True:
            answer = await attempt()
            if answer is not None:
                return answer
            self.observed.retries[lane] += 1
            try:
                await asyncio.sleep(RETRY_DELAY_S)
            except asyncio.CancelledError:
                self.observed.unanswered.append(what)
                raise

    # -- lanes ---------------------------------------------------------------------------------

    async def _desktop(self) -> None:
        await self._send("desktop", "GET", "/api/v1/proxy/api/data", headers=self.people.proxy_headers())

    def _ai_headers(self, request_id: str) -> dict[str, str]:
        # The client names the call (X-Request-Id, 32 hex digits): its usage row carries that id.
        return {"Authorization": f"Bearer {self.people.api_key}", "X-Request-Id": request_id}

    async def _ai_whole(self) -> None:
        request_id = uuid.uuid4().hex
        status, _, _ = await self._send("ai_whole", "POST", "/openai/v1/chat/completions", json=CHAT,
                                        headers=self._ai_headers(request_id))
        if status == 200:
            self.observed.charges.append(request_id)

    async def _ai_stream(self) -> None:
        request_id = uuid.uuid4().hex
        status, _, body = await self._send("ai_stream", "POST", "/openai/v1/chat/completions", json=STREAM,
                                           headers=self._ai_headers(request_id))
        # Answered in full: the usage chunk and the end marker arrived.
        if status == 200 and b'"usage"' in body and body.rstrip().endswith(b"data: [DONE]"):
            self.observed.charges.append(request_id)

    async def _purchase(self) -> None:
        key = "chaos-" + uuid.uuid4().hex
        bought = await self._until_answered("purchase", f"purchase {key}", lambda: self._buy(key))
        assert isinstance(bought, dict)
        self.observed.purchases[key] = bought["transfer_id"]
        again = await self._until_answered("purchase", f"replay {key}", lambda: self._buy(key))
        assert isinstance(again, dict)
        self.observed.replays.append((key, again["replayed"] and again["transfer_id"] == bought["transfer_id"]))
        if len(self.observed.purchases) % 3 == 0:
            token_id = bought["tokens"][0]["id"] if bought["tokens"] else None
            if token_id is not None:
                await self._until_answered("refund", f"refund {token_id}", lambda: self._refund(token_id))

    async def _buy(self, key: str) -> dict | None:
        status, _, body = await self._send("purchase", "POST", "/api/v1/tokens/purchase",
                                           json={"duration_hours": 1},
                                           headers={**self.people.jwt_headers, "Idempotency-Key": key})
        if status == 401:
            await self._relogin()
        return orjson.loads(body) if status in (200, 201) else None

    async def _refund(self, token_id: int) -> bool | None:
        status, _, body = await self._send("refund", "DELETE", f"/api/v1/tokens/{token_id}",
                                           headers=self.people.jwt_headers)
        if status == 200:
            self.observed.refunds[token_id] = orjson.loads(body)["refund_transfer_id"]
            return True
        if status == 409:  # revoked by an earlier attempt whose answer was lost
            self.observed.refunds_unknown.add(token_id)
            return True
        if status == 401:
            await self._relogin()
        return None

    async def _payment(self) -> None:
        created = await self._until_answered("payment", "payment create", self._create_payment)
        assert isinstance(created, dict)
        session_id = created["payment_url"].rsplit("/", 1)[1]
        session = self.stripe.sessions[session_id]
        first = True
        while True:
            delivered = await self._deliver(session, first)
            first = False
            if delivered:
                break
            self.observed.retries["payment"] += 1
            try:
                await asyncio.sleep(RETRY_DELAY_S)
            except asyncio.CancelledError:
                self.observed.unanswered.append(f"payment {created['payment_id']} webhook")
                raise
        self.observed.payments[created["payment_id"]] = session_id
        await self._deliver(session, False)  # Stripe delivers at least once: a duplicate must change nothing

    async def _create_payment(self) -> dict | None:
        status, _, body = await self._send("payment", "POST", "/api/v1/currency/purchase",
                                           json={"credits": "2", "provider": "stripe"}, headers=self.people.jwt_headers)
        if status == 401:
            await self._relogin()
        return orjson.loads(body) if status == 201 else None

    async def _deliver(self, session: dict, first: bool) -> bool:
        """The checkout's completion webhook, as the fake Stripe sends it; True once the gateway took it."""
        try:
            if first:
                sent = await self.stripe.pay(session, asynchronous=False, deliver=True)
                status = sent[0].status
            else:
                status = (await self.stripe.send("checkout.session.completed", dict(session))).status
        except TRANSPORT_ERRORS:
            status = 0
        self.observed.statuses[("webhook", status or "error")] += 1
        return 200 <= status < 300

    async def _relogin(self) -> None:
        assert self.session is not None
        try:
            self.people.jwt_headers = await login(self.session, self.base)
        except (RuntimeError, *TRANSPORT_ERRORS):
            pass


def lane_totals(statuses: collections.Counter) -> dict[str, dict[str, int]]:
    """{lane: {status: count}} for the report."""
    totals: dict[str, dict[str, int]] = {}
    for (lane, status), count in sorted(statuses.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        totals.setdefault(lane, {})[str(status)] = count
    return totals
