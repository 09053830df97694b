"""The desktop path's windows of other owners than the token: the client IP's and the user's, each
a sliding-window log in a Redis hash slot of its own. On a Redis Cluster they are admitted by calls
of their own beside the token's script (decision 0023: a cluster runs a script only on keys of one
slot); on a single Redis all three run in one call, composed from the same scripts.

The order keeps what one script call used to promise: the IP's window first (a full one refuses
before the token is looked at, so a flood of random tokens never reaches PostgreSQL; every other
outcome counts in it, as before), then the token's slot (record, device, the token's window), then
the user's window; a request the user's window refuses takes back what the token's slot gave it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from gateway.core.lua_scripts import composed


def _lua(name: str) -> str:
    return resources.files("gateway.proxy").joinpath(f"lua/{name}").read_text()


TOKEN_SCRIPT = _lua("authenticate.lua")
WINDOW_SCRIPT = _lua("window.lua")
UNDO_SCRIPT = _lua("authenticate_undo.lua")
# A single Redis: the three in one call, composed from the same sources (no slot rule to keep).
ONE_CALL_SCRIPT = composed(_lua("authenticate_one_call.lua"),
                           {"window": WINDOW_SCRIPT, "authenticate": TOKEN_SCRIPT, "authenticate_undo": UNDO_SCRIPT})


@dataclass(frozen=True, slots=True)
class Window:
    """A window's answer: admitted or not, its limit (0 = none), the places left after this request
    (-1 = unlimited) and the ms until its oldest entry leaves."""

    admitted: bool
    limit: int
    remaining: int
    reset_ms: int

UNLIMITED = Window(True, 0, -1, 0)

def window_of(reply: list, limit: int) -> Window:
    """The window script's answer ({admitted, remaining, reset_ms}) as a Window."""
    return Window(bool(int(reply[0])), limit, int(reply[1]), int(reply[2]))

def tightest(windows: list[Window]) -> Window:
    """The window with the fewest places left (the first of equals): the one the rate-limit headers
    describe."""
    best = UNLIMITED
    for window in windows:
        if window.remaining >= 0 and (best.remaining < 0 or window.remaining < best.remaining):
            best = window
    return best

def with_tightest(reply: list, windows: list[Window]) -> list:
    """An admitted use's answer with the rate headers' window: the tightest of the token's and the
    others' (the IP's, the user's)."""
    token = Window(True, int(reply[5]), int(reply[6]), int(reply[7]))
    best = tightest([windows[0], token, *windows[1:]])
    return [*reply[:5], best.limit, best.remaining, best.reset_ms, reply[8]]

def one_call_reply(nested: list, ip: Window, mode: str) -> list:
    """The one-call script's answer ({token's answer, IP window's, user window's}) in the shape the
    per-slot calls give: the token's answer, an admitted use's with the tightest window in it."""
    reply, user_answer = nested[0], nested[2]
    if reply[0] != "ok" or mode == "peek":
        return reply
    user = window_of(user_answer, int(reply[5])) if user_answer else UNLIMITED
    return with_tightest(reply, [ip, user])

def undo_args(member: str, now_ms: int, reply: list, device_idle_ms: int) -> list:
    """authenticate_undo.lua's arguments for a use the token's script admitted (its reply)."""
    return [member, now_ms, reply[8], reply[9], reply[10], reply[11], device_idle_ms]
