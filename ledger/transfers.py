"""Transfers: append-only double-entry moves, holds and their resolution, each idempotent by key."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from ledger.money import AMOUNT_MAX_MICRO

KEY_LENGTH_MAX = 200  # as the CHECK on transfers.idempotency_key

KINDS = ("deposit", "purchase", "refund", "referral_bonus", "usage", "adjustment")

SELECT_BY_KEY = "SELECT * FROM transfers WHERE idempotency_key = $1"
SELECT_BY_ID = "SELECT * FROM transfers WHERE id = $1"
SELECT_RESOLUTION = "SELECT * FROM transfers WHERE pending_id = $1"
# Locking in id order everywhere means two transfers can never wait on each other in a cycle.
LOCK_ACCOUNTS = """
SELECT id, kind, debits_posted, credits_posted, debits_pending, credits_pending, overdraft_micro
FROM accounts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"""
INSERT = """
INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id,
                       amount_micro, phase, kind, pending_id, expires_at, user_id, description,
                       metadata, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING *"""
MOVE = """
UPDATE accounts SET
    debits_posted = debits_posted + CASE WHEN id = $1 THEN $3::bigint ELSE 0 END,
    credits_posted = credits_posted + CASE WHEN id = $2 THEN $3::bigint ELSE 0 END,
    debits_pending = debits_pending + CASE WHEN id = $1 THEN $4::bigint ELSE 0 END,
    credits_pending = credits_pending + CASE WHEN id = $2 THEN $4::bigint ELSE 0 END
WHERE id IN ($1, $2)"""
OPEN_EXPIRED_HOLDS = """
SELECT p.id FROM transfers p
WHERE p.phase = 'pending' AND p.expires_at <= $1
  AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)
ORDER BY p.id LIMIT $2"""


class LedgerError(Exception):
    code = "ledger_error"


class InsufficientBalance(LedgerError):
    code = "insufficient_balance"


class IdempotencyConflict(LedgerError):
    code = "idempotency_conflict"


class HoldNotFound(LedgerError):
    code = "hold_not_found"


class HoldResolved(LedgerError):
    code = "hold_already_resolved"


class HoldExpired(LedgerError):
    code = "hold_expired"


class InvalidAmount(LedgerError):
    code = "invalid_amount"


@dataclass(frozen=True, slots=True)
class Transfer:
    id: int
    idempotency_key: str
    debit_account_id: int
    credit_account_id: int
    amount_micro: int
    phase: str
    kind: str
    pending_id: int | None
    expires_at: dt.datetime | None
    user_id: int | None
    description: str
    metadata: dict[str, Any]
    created_at: dt.datetime
    replayed: bool = False


def _transfer(row: asyncpg.Record, replayed: bool = False) -> Transfer:
    metadata = row["metadata"]
    return Transfer(
        id=row["id"], idempotency_key=row["idempotency_key"],
        debit_account_id=row["debit_account_id"], credit_account_id=row["credit_account_id"],
        amount_micro=row["amount_micro"], phase=row["phase"], kind=row["kind"],
        pending_id=row["pending_id"], expires_at=row["expires_at"], user_id=row["user_id"],
        description=row["description"],
        metadata=orjson.loads(metadata) if isinstance(metadata, str) else dict(metadata),
        created_at=row["created_at"], replayed=replayed,
    )


def _request_hash(**content: Any) -> bytes:
    # One instant is one request whatever its time zone: hash aware datetimes in UTC.
    content = {name: value.astimezone(dt.timezone.utc)
               if isinstance(value, dt.datetime) and value.tzinfo is not None else value
               for name, value in content.items()}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS, default=str)).digest()


async def _replay(connection: asyncpg.Connection, key: str, request_hash: bytes) -> Transfer | None:
    row = await connection.fetchrow(SELECT_BY_KEY, key)
    if row is None:
        return None
    if bytes(row["request_hash"]) != request_hash:
        raise IdempotencyConflict(f"idempotency key {key!r} was used for a different request")
    return _transfer(row, replayed=True)


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not 0 < len(key) <= KEY_LENGTH_MAX:
        raise LedgerError(f"an idempotency key is a string of 1..{KEY_LENGTH_MAX} characters")


def _check_amount(amount_micro: int) -> None:
    if isinstance(amount_micro, bool) or not isinstance(amount_micro, int):
        raise InvalidAmount("amount must be an integer number of micro-credits")
    if not 0 < amount_micro <= AMOUNT_MAX_MICRO:
        raise InvalidAmount("amount must be positive and within range")


def _available(account: asyncpg.Record) -> int:
    return account["credits_posted"] - account["debits_posted"] - account["debits_pending"]


async def _lock(connection: asyncpg.Connection, *account_ids: int) -> dict[int, asyncpg.Record]:
    rows = await connection.fetch(LOCK_ACCOUNTS, list(account_ids))
    locked = {row["id"]: row for row in rows}
    missing = set(account_ids) - set(locked)
    if missing:
        raise LedgerError(f"unknown account(s) {sorted(missing)}")
    return locked


def _require_funds(account: asyncpg.Record, amount_micro: int) -> None:
    if account["kind"] == "user" and _available(account) - amount_micro < -account["overdraft_micro"]:
        raise InsufficientBalance("insufficient balance")


async def _insert(connection: asyncpg.Connection, key: str, request_hash: bytes, *, debit: int,
                  credit: int, amount_micro: int, phase: str, kind: str, pending_id: int | None,
                  expires_at: dt.datetime | None, user_id: int | None, description: str,
                  metadata: dict[str, Any], now: dt.datetime) -> Transfer | None:
    """The new transfer, or None when a transfer sharing no account with this one took the key first.

    Such a transfer holds none of our locks, so only the unique key makes the two meet: the insert
    waits for it to commit and then inserts nothing (instead of raising UniqueViolationError).
    """
    row = await connection.fetchrow(
        INSERT, key, request_hash, debit, credit, amount_micro, phase, kind, pending_id, expires_at,
        user_id, description, orjson.dumps(metadata).decode(), now)
    return None if row is None else _transfer(row)


async def _key_taken(connection: asyncpg.Connection, key: str, request_hash: bytes) -> Transfer:
    """The transfer that took `key` while we held our locks: a replay, or IdempotencyConflict."""
    replay = await _replay(connection, key, request_hash)
    assert replay is not None, key
    return replay


async def move(connection: asyncpg.Connection, *, key: str, debit: int, credit: int,
               amount_micro: int, kind: str, now: dt.datetime, user_id: int | None = None,
               description: str = "", metadata: dict[str, Any] | None = None,
               hold_until: dt.datetime | None = None) -> Transfer:
    """Move money now, or hold it (`hold_until` set) until posted, voided or expired.

    Same key and same content returns the original transfer (`replayed=True`); same key and other
    content raises IdempotencyConflict. A user account never goes below its overdraft limit.
    """
    assert kind in KINDS, kind
    _check_key(key)
    _check_amount(amount_micro)
    if debit == credit:
        raise LedgerError("debit and credit accounts must differ")
    metadata = metadata or {}
    phase = "pending" if hold_until is not None else "posted"
    request_hash = _request_hash(op=phase, debit=debit, credit=credit, amount=amount_micro, kind=kind,
                                 user_id=user_id, hold_until=hold_until, description=description,
                                 metadata=metadata)
    async with connection.transaction():
        replay = await _replay(connection, key, request_hash)
        if replay is not None:
            return replay
        locked = await _lock(connection, debit, credit)
        # Re-read after locking: a concurrent twin with this key has committed by now, if any.
        replay = await _replay(connection, key, request_hash)
        if replay is not None:
            return replay
        _require_funds(locked[debit], amount_micro)
        transfer = await _insert(connection, key, request_hash, debit=debit, credit=credit,
                                 amount_micro=amount_micro, phase=phase, kind=kind, pending_id=None,
                                 expires_at=hold_until, user_id=user_id, description=description,
                                 metadata=metadata, now=now)
        if transfer is None:
            return await _key_taken(connection, key, request_hash)
        posted, pending = (0, amount_micro) if hold_until is not None else (amount_micro, 0)
        await connection.execute(MOVE, debit, credit, posted, pending)
        return transfer


async def resolve(connection: asyncpg.Connection, *, key: str, hold_id: int, now: dt.datetime,
                  post_micro: int | None = None, expiring: bool = False,
                  metadata: dict[str, Any] | None = None) -> Transfer:
    """Post a hold (at most the held amount; the rest is released) or void it (post_micro=None).

    A hold is resolved exactly once: a second resolution with another key raises HoldResolved.
    """
    _check_key(key)
    metadata = metadata or {}
    phase = "void_pending" if post_micro is None else "post_pending"
    request_hash = _request_hash(op=phase, hold=hold_id, amount=post_micro, metadata=metadata)
    async with connection.transaction():
        replay = await _replay(connection, key, request_hash)
        if replay is not None:
            return replay
        hold = await connection.fetchrow(SELECT_BY_ID, hold_id)
        if hold is None or hold["phase"] != "pending":
            raise HoldNotFound(f"no hold {hold_id}")
        debit, credit, held = hold["debit_account_id"], hold["credit_account_id"], hold["amount_micro"]
        await _lock(connection, debit, credit)
        replay = await _replay(connection, key, request_hash)
        if replay is not None:
            return replay
        if await connection.fetchrow(SELECT_RESOLUTION, hold_id) is not None:
            raise HoldResolved(f"hold {hold_id} is already resolved")
        if post_micro is not None:
            if isinstance(post_micro, bool) or not isinstance(post_micro, int) or not 0 <= post_micro <= held:
                raise InvalidAmount(f"a hold of {held} can be posted at 0..{held}")
            if hold["expires_at"] <= now and not expiring:
                raise HoldExpired(f"hold {hold_id} expired")
        posted = post_micro or 0
        transfer = await _insert(connection, key, request_hash, debit=debit, credit=credit,
                                 amount_micro=posted if post_micro is not None else held, phase=phase,
                                 kind=hold["kind"], pending_id=hold_id, expires_at=None,
                                 user_id=hold["user_id"], description=hold["description"],
                                 metadata=metadata, now=now)
        if transfer is None:
            return await _key_taken(connection, key, request_hash)
        await connection.execute(MOVE, debit, credit, posted, -held)
        return transfer


async def expire_holds(connection: asyncpg.Connection, *, now: dt.datetime, batch_max: int = 500) -> int:
    """Void the holds whose expiry has passed, at most `batch_max` per call; returns how many it voided.

    Safe to run from many processes at once: each hold is voided once, and counted by one caller.
    """
    expired = 0
    for row in await connection.fetch(OPEN_EXPIRED_HOLDS, now, batch_max):
        try:
            void = await resolve(connection, key=f"expire:{row['id']}", hold_id=row["id"], now=now,
                                 expiring=True, metadata={"reason": "expired"})
        except HoldResolved:
            continue  # a post or void resolved it first
        if not void.replayed:  # else another expirer voided it first
            expired += 1
    return expired
