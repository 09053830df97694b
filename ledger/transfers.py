"""Transfers: append-only double-entry moves, holds and their resolution, each idempotent by key."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from ledger.money import AMOUNT_MAX_MICRO

log = logging.getLogger(__name__)

KEY_LENGTH_MAX = 200  # as the CHECK on transfers.idempotency_key

# chargeback: credits taken back after a provider refund, or a debt repaid (ledger.debts).
KINDS = ("deposit", "purchase", "refund", "referral_bonus", "usage", "adjustment", "chargeback")

# One round trip each (migrations/0005_ledger_functions.sql, decision 0012): the function locks the
# accounts in id order, checks, writes and returns a status; outside a transaction the locks last
# only as long as the call.
MOVE = """
SELECT m.status, m.detail, (m.transfer).*
FROM ledger_move($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) AS m"""
RESOLVE = """
SELECT r.status, r.detail, (r.transfer).*
FROM ledger_resolve($1, $2, $3, $4, $5, $6, $7, $8) AS r"""
# The open holds past their expiry, oldest expiry first, from the table of open holds (migration
# 0020): the read costs what is due, not what the ledger ever held.
# Paged by (expiry, hold id) after the last one read, so a sweep never reads a row twice.
OPEN_EXPIRED_HOLDS = """
SELECT o.hold_id AS id, o.expires_at FROM open_holds o
WHERE o.expires_at <= $1 AND (o.expires_at, o.hold_id) > ($3, $4)
ORDER BY o.expires_at, o.hold_id LIMIT $2"""
# Before every hold's (expiry, id): where a sweep starts.
FIRST_DUE = (dt.datetime.min.replace(tzinfo=dt.timezone.utc), 0)


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


class LimitExceeded(LedgerError):
    """A limit of the caller's, checked in the statement that would have moved the money (a wrapper of
    ledger_move given as `statement`), refused it; `detail` says which."""
    code = "limit_exceeded"

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class ItemFailed(LedgerError):
    """An item of a batch (ledger.batches) that failed in the database where no check foresaw it (a
    deadlock, a constraint): rolled back alone, nothing written; a retry may pass."""
    code = "ledger_unavailable"


class AmountOutOfRange(LedgerError):
    """The transfer would take an amount, an account's running sum or a user's balance past its bound."""
    code = "amount_out_of_range"


OUT_OF_RANGE = {
    "amount": "the amount is above the most one transfer may move",
    "account_total": "the transfer would take an account's running total past its bound",
    "user_balance": "the transfer would take the user's balance past the most an account may hold",
}


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


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not 0 < len(key) <= KEY_LENGTH_MAX:
        raise LedgerError(f"an idempotency key is a string of 1..{KEY_LENGTH_MAX} characters")


def _check_amount(amount_micro: int) -> None:
    if isinstance(amount_micro, bool) or not isinstance(amount_micro, int):
        raise InvalidAmount("amount must be an integer number of micro-credits")
    if not 0 < amount_micro <= AMOUNT_MAX_MICRO:
        raise InvalidAmount("amount must be positive and within range")


def _outcome(row: asyncpg.Record, *, key: str, hold_id: int | None = None) -> Transfer:
    """The transfer a ledger function returned, or the exception its status stands for."""
    status = row["status"]
    if status == "ok":
        return _transfer(row)
    if status == "replayed":
        return _transfer(row, replayed=True)
    if status == "conflict":
        raise IdempotencyConflict(f"idempotency key {key!r} was used for a different request")
    if status == "insufficient_balance":
        raise InsufficientBalance("insufficient balance")
    if status == "unknown_account":
        raise LedgerError(f"unknown account(s) {sorted(int(i) for i in row['detail'].split(','))}")
    if status == "hold_not_found":
        raise HoldNotFound(f"no hold {hold_id}")
    if status == "hold_resolved":
        raise HoldResolved(f"hold {hold_id} is already resolved")
    if status == "invalid_amount":
        held = row["detail"]
        raise InvalidAmount(f"a hold of {held} can be posted at 0..{held}")
    if status == "hold_expired":
        raise HoldExpired(f"hold {hold_id} expired")
    if status == "amount_out_of_range":
        raise AmountOutOfRange(OUT_OF_RANGE.get(row["detail"], "amount out of range"))
    if status == "limit_exceeded":
        raise LimitExceeded("a spending limit refused the transfer", row["detail"] or "")
    if status == "error":  # an item of a batch that failed alone (ledger.batches); nothing written
        raise ItemFailed(f"the ledger could not write this transfer: {row['detail']}")
    raise LedgerError(f"unexpected ledger status {status!r}")


def move_item(*, key: str, debit: int, credit: int, amount_micro: int, kind: str, now: dt.datetime,
              user_id: int | None = None, description: str = "", metadata: dict[str, Any] | None = None,
              hold_until: dt.datetime | None = None) -> dict[str, Any]:
    """A move checked and hashed: the fields ledger_move takes, as a ledger_batch item (migration 0015)."""
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
    return {"op": "move", "key": key, "hash": request_hash, "debit": debit, "credit": credit,
            "amount": amount_micro, "phase": phase, "kind": kind, "expires_at": hold_until, "user_id": user_id,
            "description": description, "metadata": metadata, "now": now}


async def move(connection: asyncpg.Connection, *, key: str, debit: int, credit: int,
               amount_micro: int, kind: str, now: dt.datetime, user_id: int | None = None,
               description: str = "", metadata: dict[str, Any] | None = None,
               hold_until: dt.datetime | None = None, statement: str = MOVE, extra: tuple = ()) -> Transfer:
    """Move money now, or hold it (`hold_until` set) until posted, voided or expired.

    Same key and same content returns the original transfer (`replayed=True`); same key and other
    content raises IdempotencyConflict. A user account never goes below its overdraft limit.
    `statement` may wrap MOVE's function call with a check of the caller's in the same statement
    (one round trip, one transaction): it takes MOVE's twelve parameters, then `extra`, returns
    MOVE's columns, and may refuse with status 'limit_exceeded' (LimitExceeded).
    """
    item = move_item(key=key, debit=debit, credit=credit, amount_micro=amount_micro, kind=kind, now=now,
                     user_id=user_id, description=description, metadata=metadata, hold_until=hold_until)
    row = await connection.fetchrow(statement, key, item["hash"], debit, credit, amount_micro, item["phase"], kind,
                                    hold_until, user_id, description, orjson.dumps(item["metadata"]).decode(), now,
                                    *extra)
    return _outcome(row, key=key)


def resolve_item(*, key: str, hold_id: int, now: dt.datetime, post_micro: int | None = None,
                 expiring: bool = False, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """A resolution checked and hashed: the fields ledger_resolve takes, as a ledger_batch item."""
    _check_key(key)
    metadata = metadata or {}
    phase = "void_pending" if post_micro is None else "post_pending"
    request_hash = _request_hash(op=phase, hold=hold_id, amount=post_micro, metadata=metadata)
    # An amount that is no integer in range goes as NULL: the function refuses it as InvalidAmount
    # once the hold is found and unresolved, where the check always came. No hold exceeds the maximum.
    valid = (not isinstance(post_micro, bool) and isinstance(post_micro, int)
             and 0 <= post_micro <= AMOUNT_MAX_MICRO)
    return {"op": "resolve", "key": key, "hash": request_hash, "hold_id": hold_id, "phase": phase,
            "post": post_micro if valid else None, "expiring": expiring, "metadata": metadata, "now": now}


async def resolve(connection: asyncpg.Connection, *, key: str, hold_id: int, now: dt.datetime,
                  post_micro: int | None = None, expiring: bool = False,
                  metadata: dict[str, Any] | None = None, statement: str = RESOLVE,
                  extra: tuple = ()) -> Transfer:
    """Post a hold (at most the held amount; the rest is released) or void it (post_micro=None).

    A hold is resolved exactly once: a second resolution with another key raises HoldResolved.
    `statement` may wrap RESOLVE's function call to write a row of the caller's in the same
    statement (one round trip, one transaction); it takes RESOLVE's eight parameters, then `extra`,
    and returns RESOLVE's columns.
    """
    item = resolve_item(key=key, hold_id=hold_id, now=now, post_micro=post_micro, expiring=expiring,
                        metadata=metadata)
    row = await connection.fetchrow(statement, key, item["hash"], hold_id, item["phase"], item["post"], expiring,
                                    orjson.dumps(item["metadata"]).decode(), now, *extra)
    return _outcome(row, key=key, hold_id=hold_id)


async def expire_holds(connection: asyncpg.Connection, *, now: dt.datetime, batch_max: int = 500) -> int:
    """Void the holds whose expiry has passed, at most `batch_max` per call; returns how many it voided.

    Safe to run from many processes at once: each hold is voided once, and counted by one caller.
    """
    expired, _ = await expire_due_holds(connection, now=now, batch_max=batch_max)
    return expired


async def expire_due_holds(connection: asyncpg.Connection, *, now: dt.datetime, batch_max: int = 500,
                           after: tuple[dt.datetime, int] = FIRST_DUE) -> tuple[int, tuple[dt.datetime, int] | None]:
    """expire_holds for the holds due after `after` (expiry, hold id); returns how many it voided
    and where the next call goes on (None: it read every hold due)."""
    expired = 0
    rows = await connection.fetch(OPEN_EXPIRED_HOLDS, now, batch_max, *after)
    for row in rows:
        try:
            void = await resolve(connection, key=f"expire:{row['id']}", hold_id=row["id"], now=now,
                                 expiring=True, metadata={"reason": "expired"})
        except (HoldResolved, HoldNotFound):
            # A post or void resolved it first; or the row names no hold (open_holds edited by hand:
            # reconcile names it).
            continue
        except LedgerError as refusal:  # one hold the ledger refuses to void holds up no other
            log.warning("hold %d not voided: %s", row["id"], refusal)
            continue
        except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as broken:
            # Nor one whose void PostgreSQL refuses (a hold written around the ledger, its pending
            # sum never booked): the statement rolled back alone. Outages still end the sweep.
            log.warning("hold %d not voided: %s", row["id"], type(broken).__name__)
            continue
        if not void.replayed:  # else another expirer voided it first
            expired += 1
    if len(rows) < batch_max:
        return expired, None
    return expired, (rows[-1]["expires_at"], rows[-1]["id"])
