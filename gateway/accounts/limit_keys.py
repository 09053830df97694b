"""Redis key names of the limit windows whose owner is not one credential: a user's (all their
tokens and API keys count in it) and a client address's. Each is its own hash tag, so each window
is one Redis Cluster slot and is admitted by a call of its own (decision 0023)."""

from __future__ import annotations


def ip_window_key(client_ip: str) -> str:
    """The desktop path's per-address window (a sliding-window log)."""
    return f"tg:{{ip:{client_ip}}}:rl"


def user_window_key(user_id: int | str) -> str:
    """The desktop path's per-user window (a sliding-window log)."""
    return f"tg:{{u:{user_id}}}:rl"


def user_ai_minute_key(user_id: int | str, minute: int | str) -> str:
    """The AI routes' per-user request counter of one minute (the plan's requests per minute)."""
    return f"tg:{{u:{user_id}}}:airpm:{minute}"


# Stands for the user id where a script names a user's key from a record (single Redis only).
_USER_ID_HOLE = "\x00"


def user_window_key_around_id() -> tuple[str, str]:
    """The user's window key before and after the user id: a single Redis's one-call script names it
    from the token's record (decision 0023), the same name the per-slot call uses."""
    before, _, after = user_window_key(_USER_ID_HOLE).partition(_USER_ID_HOLE)
    return before, after


def user_ai_minute_key_around_id() -> tuple[str, str]:
    """The user's AI minute key before and after the user id, the minute's number following it."""
    before, _, after = user_ai_minute_key(_USER_ID_HOLE, "").partition(_USER_ID_HOLE)
    return before, after
