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


def user_ai_minute_key(user_id: int | str, minute: int) -> str:
    """The AI routes' per-user request counter of one minute (the plan's requests per minute)."""
    return f"tg:{{u:{user_id}}}:airpm:{minute}"
