"""Users: rows, argon2id password hashes, and the first admin (the ledger issue extends this)."""

from __future__ import annotations

import asyncio
import secrets
import string
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES = ("client", "manager", "admin")
PLANS = ("free", "premium", "enterprise")
# argon2id at OWASP's minimum (19 MiB, 2 passes, 1 lane): ~0.1 s on one core here, where the library
# default (64 MiB, 3 passes, 4 lanes) takes ~0.5 s and lets a burst of logins starve a 2-core box.
# Stored hashes carry their own parameters, so raising these later needs no migration.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

COLUMNS = "id, email, username, full_name, role, plan, is_active, password_hash, referral_code, manager_id"
SELECT_BY_EMAIL = f"SELECT {COLUMNS} FROM users WHERE lower(email) = lower($1)"
SELECT_BY_ID = f"SELECT {COLUMNS} FROM users WHERE id = $1"
SELECT_BY_REFERRAL_CODE = f"SELECT {COLUMNS} FROM users WHERE referral_code = $1"
INSERT = """
INSERT INTO users (email, username, full_name, password_hash, role, plan, referral_code, referred_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT ((lower(email))) DO NOTHING
RETURNING id"""
REFERRAL_ALPHABET = string.ascii_uppercase + string.digits
REFERRAL_CODE_LENGTH = 12
SET_PASSWORD = "UPDATE users SET password_hash = $2 WHERE id = $1"
SET_ADMIN = "UPDATE users SET role = 'admin', password_hash = $2, is_active = true WHERE id = $1"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str
    role: str
    plan: str
    is_active: bool
    password_hash: str | None
    username: str | None = None
    full_name: str = ""
    referral_code: str | None = None
    manager_id: int | None = None


def _user(row: asyncpg.Record | None) -> User | None:
    return None if row is None else User(**dict(row))


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify_password(user: User | None, password: str) -> bool:
    """Constant work whether or not the user exists, so timing does not reveal accounts."""
    stored = user.password_hash if user and user.password_hash else DUMMY_HASH
    try:
        ok = HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return ok and user is not None and user.password_hash is not None


DUMMY_HASH = hash_password("tollgate-dummy-password-for-timing")
# argon2 is deliberately slow (~50 ms); run it off the event loop on two threads, so a burst of
# logins queues there instead of stalling the proxy path.
_HASHING_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


async def hash_password_off_loop(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_HASHING_THREADS, hash_password, password)


async def verify_password_off_loop(user: User | None, password: str) -> bool:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_HASHING_THREADS, verify_password, user, password)


async def by_email(db: asyncpg.Pool | asyncpg.Connection, email: str) -> User | None:
    return _user(await db.fetchrow(SELECT_BY_EMAIL, email))


async def by_id(db: asyncpg.Pool | asyncpg.Connection, user_id: int) -> User | None:
    return _user(await db.fetchrow(SELECT_BY_ID, user_id))


async def by_referral_code(db: asyncpg.Pool | asyncpg.Connection, code: str) -> User | None:
    return _user(await db.fetchrow(SELECT_BY_REFERRAL_CODE, code))


def new_referral_code() -> str:
    return "".join(secrets.choice(REFERRAL_ALPHABET) for _ in range(REFERRAL_CODE_LENGTH))


async def create(db: asyncpg.Pool | asyncpg.Connection, *, email: str, password: str | None,
                 role: str = "client", plan: str = "free", username: str | None = None,
                 full_name: str = "", referred_by: int | None = None,
                 password_hash: str | None = None) -> int | None:
    """Insert a user with a fresh referral code; None when the email is taken.

    A taken username raises asyncpg.UniqueViolationError (constraint users_username_key).
    """
    assert role in ROLES and plan in PLANS
    if password_hash is None and password:
        password_hash = hash_password(password)
    for _attempt in range(8):
        try:
            # A savepoint when inside a transaction, so a code collision can be retried.
            if isinstance(db, asyncpg.Connection) and db.is_in_transaction():
                async with db.transaction():
                    return await db.fetchval(INSERT, email, username, full_name, password_hash, role,
                                             plan, new_referral_code(), referred_by)
            return await db.fetchval(INSERT, email, username, full_name, password_hash, role, plan,
                                     new_referral_code(), referred_by)
        except asyncpg.UniqueViolationError as error:
            if error.constraint_name != "users_referral_code_key":
                raise
    raise RuntimeError("could not draw a unique referral code")  # 36^12 codes: not in practice


async def ensure_admin(db: asyncpg.Pool | asyncpg.Connection, *, email: str, password: str) -> int:
    """Create the admin, or make the existing account an admin with this password (idempotent)."""
    user_id = await create(db, email=email, password=password, role="admin")
    if user_id is None:
        existing = await by_email(db, email)
        assert existing is not None
        user_id = existing.id
        await db.execute(SET_ADMIN, user_id, hash_password(password))
    return user_id


async def ensure_client(db: asyncpg.Pool | asyncpg.Connection, *, email: str,
                        plan: str = "free") -> int:
    """The user with this email, created as a passwordless client if missing."""
    user_id = await create(db, email=email, password=None, plan=plan)
    if user_id is None:
        existing = await by_email(db, email)
        assert existing is not None
        return existing.id
    return user_id
