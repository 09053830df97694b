"""The desktop path's windows of other owners than the token: the client IP's and the user's, each
a sliding-window log in a Redis hash slot of its own, admitted by calls of their own beside the
token's script (decision 0023: a Redis Cluster runs a script only on keys of one slot).

The order keeps what one script call used to promise: the IP's window first (a full one refuses
before the token is looked at, so a flood of random tokens never reaches PostgreSQL; every other
outcome counts in it, as before), then the token's slot (record, device, the token's window), then
the user's window; a request the user's window refuses takes back what the token's slot gave it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

WINDOW_SCRIPT = resources.files("gateway.proxy").joinpath("lua/window.lua").read_text()
UNDO_SCRIPT = resources.files("gateway.proxy").joinpath("lua/authenticate_undo.lua").read_text()


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

def undo_args(member: str, now_ms: int, reply: list, device_idle_ms: int) -> list:
    """authenticate_undo.lua's arguments for a use the token's script admitted (its reply)."""
    return [member, now_ms, reply[8], reply[9], reply[10], reply[11], device_idle_ms]
