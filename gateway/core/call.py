"""Call: the one state object a request carries through the hot-path stages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Principal:
    """Who is calling, as established by authentication."""

    token_id: int
    user_id: int
    scope: str
    expires_ms: int
    rate_limit: int = 0
    rate_remaining: int = -1
    rate_reset_ms: int = 0


@dataclass(slots=True)
class Call:
    request_id: str
    started_s: float
    route: str = "unknown"
    client_ip: str = ""
    device_id: str = ""
    principal: Principal | None = None
    status: int = 0
    outcome: str = "ok"
    bytes_in: int = 0
    bytes_out: int = 0
    upstream_s: float = 0.0
    extra_headers: dict[str, str] = field(default_factory=dict)
