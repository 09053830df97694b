"""The gateway's PostgreSQL connections: asyncpg's pool, whose reset on release a user that left the
session as it found it may skip (decision 0031).

asyncpg resets a connection each time it goes back to the pool: one more statement and round trip
(`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`) after the caller's own. For the
ledger's batches — one statement whose settings are its transaction's own, no lock or cursor or
listener outliving it — that reset is pure cost, and a lone AI call pays it twice (hold, then
settlement). Such a user says so (`session_untouched()`, ledger.batches); every other release is
reset exactly as asyncpg does it.
"""

from __future__ import annotations

from typing import Any

import asyncpg


class Connection(asyncpg.Connection):
    """A pooled connection whose next release may skip the reset query, once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session_untouched = False

    def session_untouched(self) -> None:
        """Its current user changed nothing that outlives its transaction: no reset on this release."""
        self._session_untouched = True


async def reset(connection: Connection) -> None:
    """The pool's reset, after asyncpg's own part (listeners dropped, an open transaction rolled back):
    asyncpg's reset query, unless the connection's user left the session untouched."""
    untouched, connection._session_untouched = connection._session_untouched, False
    query = connection.get_reset_query()
    if query and not untouched:  # empty where the server has none of what it resets (asyncpg's check)
        await connection.execute(query)


async def create(url: str, *, min_size: int, max_size: int, **options: Any) -> asyncpg.Pool:
    """A pool of such connections (asyncpg.create_pool's other options as given)."""
    return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, connection_class=Connection,
                                     reset=reset, **options)
