"""Users as staff see them: the manager scope, search with filters, one user, and the changes staff
may make — one set of rules for the JSON API and the admin UI.

Admins see everyone. A manager sees only the clients assigned to them (role 'client' and
manager_id = the manager); any other id is treated exactly like an id that does not exist, so a
manager cannot probe which ids are taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway.accounts import audit, users
from gateway.accounts.credential_cache import CredentialOutbox
from gateway.core.errors import BadRequest, Forbidden, NotFound
from gateway.core.json_body import database_id
from gateway.core.query_params import NUMBER, like_pattern

PATCHABLE = ("is_active", "role", "plan", "manager_id")
MANAGER_PATCHABLE = ("is_active", "plan")
# Plans a manager may give their clients; enterprise (no rate limit) needs an admin (decision 0014).
MANAGER_PLANS = ("free", "premium")

# $1 is the acting manager's id, NULL for an admin (who sees everyone). Every scoped query of the
# staff (users, tokens, keys, ledger, AI usage, proxy sessions) names its user `u` and uses this.
SCOPE = "($1::bigint IS NULL OR (u.manager_id = $1 AND u.role = 'client'))"
# The users a scope covers, for queries that filter another table by user id.
SCOPED_USER_IDS = "(SELECT u.id FROM users u WHERE u.manager_id = $1 AND u.role = 'client')"
# The same available balance as ledger.Balance.available_micro (posted minus held minus owed), in one join.
USER_COLUMNS = """
u.id, u.email, u.username, u.full_name, u.role, u.plan, u.is_active, u.manager_id, u.referral_code,
u.created_at, u.last_login_at, u.erased_at,
COALESCE(a.credits_posted - a.debits_posted - a.debits_pending - a.owed_micro, 0) AS available_micro"""
# $2 a search pattern (email, username or full name) and $7 an id it may be; $8 a keyset cursor.
USER_FILTERS = SCOPE + r"""
  AND ($2::text IS NULL OR u.email ILIKE $2 ESCAPE '\' OR u.username ILIKE $2 ESCAPE '\'
       OR u.full_name ILIKE $2 ESCAPE '\' OR u.id = $7)
  AND ($3::text IS NULL OR u.role = $3)
  AND ($4::text IS NULL OR u.plan = $4)
  AND ($5::boolean IS NULL OR u.is_active = $5)
  AND ($6::bigint IS NULL OR u.manager_id = $6)
  AND ($8::bigint IS NULL OR u.id > $8)"""
COUNT_USERS = f"SELECT count(*) FROM users u WHERE {USER_FILTERS}"
SELECT_USERS = f"""
SELECT {USER_COLUMNS} FROM users u LEFT JOIN accounts a ON a.user_id = u.id
WHERE {USER_FILTERS}
ORDER BY u.id LIMIT $9 OFFSET $10"""
SELECT_USER = f"""
SELECT {USER_COLUMNS} FROM users u LEFT JOIN accounts a ON a.user_id = u.id
WHERE u.id = $2 AND {SCOPE}"""
LOCK_USER = f"""
SELECT u.id, u.role, u.plan, u.is_active, u.manager_id, u.erased_at FROM users u
WHERE u.id = $2 AND {SCOPE} FOR UPDATE"""
# Held until commit, so the manager cannot be demoted or disabled while being assigned.
LOCK_MANAGER = "SELECT role, is_active FROM users WHERE id = $1 FOR SHARE"
UPDATE_USER = "UPDATE users SET is_active = $2, role = $3, plan = $4, manager_id = $5 WHERE id = $1"
SELECT_MANAGERS = "SELECT id, email, full_name FROM users WHERE role = 'manager' AND is_active ORDER BY email LIMIT 500"


@dataclass(frozen=True, slots=True)
class UserFilters:
    search: str | None = None
    role: str | None = None
    plan: str | None = None
    is_active: bool | None = None
    manager_id: int | None = None

    def arguments(self, scope: int | None, after_id: int | None) -> tuple:
        searched_id = database_id(self.search) if self.search and NUMBER.match(self.search) else None
        pattern = like_pattern(self.search) if self.search is not None else None
        return (scope, pattern, self.role, self.plan, self.is_active, self.manager_id, searched_id, after_id)


def scope_of(actor: users.User) -> int | None:
    """The scope an actor's reads and changes are limited to: None (everyone) for an admin."""
    return None if actor.role == "admin" else actor.id


def user_not_found() -> NotFound:
    return NotFound("no such user", code="user_not_found")


async def count_users(db: asyncpg.Pool | asyncpg.Connection, scope: int | None, filters: UserFilters) -> int:
    return await db.fetchval(COUNT_USERS, *filters.arguments(scope, None))


async def find_users(db: asyncpg.Pool | asyncpg.Connection, scope: int | None, filters: UserFilters, *,
                     limit: int, skip: int = 0, after_id: int | None = None) -> list[asyncpg.Record]:
    """Users in id order: a page by offset (`skip`, the JSON API) or after an id (keyset, the UI)."""
    return await db.fetch(SELECT_USERS, *filters.arguments(scope, after_id), limit, skip)


async def get_user(db: asyncpg.Pool | asyncpg.Connection, scope: int | None, user_id: int | None) -> asyncpg.Record:
    """The user in scope; 404 for anyone else, exactly as for an id that does not exist."""
    row = await db.fetchrow(SELECT_USER, scope, user_id) if user_id else None
    if row is None:
        raise user_not_found()
    return row


async def managers(db: asyncpg.Pool | asyncpg.Connection) -> list[asyncpg.Record]:
    """Active managers (for an admin choosing whom to assign a client to)."""
    return await db.fetch(SELECT_MANAGERS)


def parse_patch(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(str(name)[:50] for name in body if name not in PATCHABLE)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown[:5])}; allowed: {', '.join(PATCHABLE)}",
                         code="unknown_field")
    if not body:
        raise BadRequest(f"nothing to change; send one of {', '.join(PATCHABLE)}", code="empty_patch")
    if "is_active" in body and not isinstance(body["is_active"], bool):
        raise BadRequest("field 'is_active' must be true or false", code="invalid_field")
    for name, choices in (("role", users.ROLES), ("plan", users.PLANS)):
        if name in body and (not isinstance(body[name], str) or body[name] not in choices):
            raise BadRequest(f"field {name!r} must be one of {', '.join(choices)}", code="invalid_field")
    patch = dict(body)
    if "manager_id" in body and body["manager_id"] is not None:
        value = body["manager_id"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest("field 'manager_id' must be a user id or null", code="invalid_field")
        patch["manager_id"] = database_id(value)
        if patch["manager_id"] is None:
            raise BadRequest("manager_id names no user", code="invalid_manager")
    return patch


def _check_allowed(actor: users.User, user_id: int, patch: dict[str, Any]) -> None:
    if actor.role != "admin" and set(patch) - set(MANAGER_PATCHABLE):
        raise Forbidden("only an admin may change role or manager_id", code="admin_required")
    demotes = patch.get("role", "admin") != "admin"
    if actor.role == "admin" and actor.id == user_id and (patch.get("is_active") is False or demotes):
        raise BadRequest("an admin cannot deactivate or demote themselves", code="cannot_change_self")
    if patch.get("manager_id") == user_id:
        raise BadRequest("a user cannot be their own manager", code="invalid_manager")


async def _check_manager(connection: asyncpg.Connection, manager_id: int | None) -> None:
    if manager_id is None:
        return
    row = await connection.fetchrow(LOCK_MANAGER, manager_id)
    if row is None or row["role"] != "manager" or not row["is_active"]:
        raise BadRequest("manager_id must name an active manager", code="invalid_manager")


async def update_user(pool: asyncpg.Pool, outbox: CredentialOutbox, *, actor: users.User, user_id: int | None,
                      patch: dict[str, Any], ip: str) -> asyncpg.Record:
    """Apply a parsed patch {is_active?, role?, plan?, manager_id?} all or nothing, audited; the
    user's row after it. A change of activity or plan reaches the credential cache at once."""
    scope = scope_of(actor)
    if user_id is None:
        raise user_not_found()
    async with pool.acquire() as connection, connection.transaction():
        current = await connection.fetchrow(LOCK_USER, scope, user_id)
        if current is None:
            raise user_not_found()
        # Checked once the user is known to be in scope: anyone else's id stays a plain 404.
        _check_allowed(actor, user_id, patch)
        if current["erased_at"] is not None:
            raise BadRequest("this account was erased; it cannot be changed", code="user_erased")
        if actor.role != "admin" and patch.get("plan", "free") not in MANAGER_PLANS:
            raise Forbidden(f"a manager may set plan {' or '.join(MANAGER_PLANS)}; "
                            f"{patch['plan']} needs an admin", code="admin_required")
        if "manager_id" in patch:
            await _check_manager(connection, patch["manager_id"])
        changes = {name: {"old": current[name], "new": value} for name, value in patch.items()
                   if current[name] != value}
        if changes:
            final = {name: patch.get(name, current[name]) for name in PATCHABLE}
            await connection.execute(UPDATE_USER, user_id, final["is_active"], final["role"],
                                     final["plan"], final["manager_id"])
            await audit.record(connection, actor_id=actor.id, action="user.update", target_type="user",
                               target_id=user_id, ip=ip, details={"changes": changes})
        row = await connection.fetchrow(SELECT_USER, scope, user_id)
    if "is_active" in changes or "plan" in changes:
        # The database queued the credentials' cache changes with the update (migration 0008):
        # push them now so the next proxied or AI request sees them on every gateway.
        await outbox.push_from(pool)
    return row

