"""Redis scripts composed from others at start-up: a whole script becomes a local Lua function of
(KEYS, ARGV), so a script that runs several of them in one call shares their source instead of
copying it (decision 0023: on a single Redis the desktop path and the AI routes are one call each;
on a Redis Cluster the same scripts run as calls of their own, one hash slot each)."""

from __future__ import annotations

# Lua has no slices: the arguments a part takes from the composed script's own.
_TAIL = """local function tail(list, from)
  local rest = {}
  for i = from, #list do rest[#rest + 1] = list[i] end
  return rest
end
"""


def as_function(name: str, source: str) -> str:
    """A script's source as `local function name(KEYS, ARGV)`: its KEYS and ARGV are the caller's
    tables, its top-level `return` the function's."""
    return f"local function {name}(KEYS, ARGV)\n{source}\nend\n"


def composed(glue: str, parts: dict[str, str]) -> str:
    """The glue script, preceded by each part as a function of its name and by `tail(list, from)`."""
    return _TAIL + "".join(as_function(name, source) for name, source in parts.items()) + glue
