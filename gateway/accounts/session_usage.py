"""Desktop-path usage for reports: proxy sessions summed per access token and UTC day (a session
counts on the day it started) — requests, bytes in and out, sessions and distinct devices — for one
user, within the actor's scope (a manager's clients), or everyone's. Read-only over the proxy's
session rows (written by gateway/proxy/sessions.py)."""

from __future__ import annotations

import datetime as dt

from gateway.accounts.directory import SCOPED_USER_IDS

PER_TOKEN_AND_DAY = """
SELECT (s.started_at AT TIME ZONE 'UTC')::date AS day, s.token_id, t.user_id, count(*) AS sessions,
       count(DISTINCT s.device_id) AS devices, sum(s.requests)::bigint AS requests,
       sum(s.bytes_in)::bigint AS bytes_in, sum(s.bytes_out)::bigint AS bytes_out
FROM proxy_sessions s JOIN access_tokens t ON t.id = s.token_id
WHERE {where}
GROUP BY 1, s.token_id, t.user_id ORDER BY 1, s.token_id"""


def statement(scope: int | None, start: dt.datetime, end: dt.datetime,
              user_id: int | None) -> tuple[str, list[object]]:
    """Sessions started in [start, end), per token and day; for `user_id` and/or within `scope`."""
    conditions = ["s.started_at >= $1", "s.started_at < $2"]
    arguments: list[object] = [start, end]
    if user_id is not None:
        arguments.append(user_id)
        conditions.append(f"t.user_id = ${len(arguments)}")
    if scope is not None:
        arguments.append(scope)
        conditions.append("t.user_id IN " + SCOPED_USER_IDS.replace("$1", f"${len(arguments)}"))
    return PER_TOKEN_AND_DAY.format(where=" AND ".join(conditions)), arguments
