"""Call: the one state object a request carries through the hot-path stages, and who is calling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ledger
from gateway.core.outcomes import Outcome


@dataclass(slots=True)
class Principal:
    """Who is calling on the desktop path, as established by access-token authentication."""

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
    # How errors are answered on this route: "api" (the gateway's JSON), or a provider's shape.
    error_shape: str = "api"
    client_ip: str = ""
    device_id: str = ""
    principal: Any = None  # core.call.Principal on the desktop path, accounts.api_keys.KeyPrincipal on AI
    status: int = 0
    outcome: Outcome = Outcome.OK
    bytes_in: int = 0
    bytes_out: int = 0
    upstream_s: float = 0.0
    extra_headers: dict[str, str] = field(default_factory=dict)
    # -- the metered AI path (gateway/ai); untouched elsewhere ----------------------------------
    # The ledger keys' own id: never the client's X-Request-Id, which a client could repeat.
    call_id: str = ""
    spec: Any = None  # ai.routes.CallSpec: provider, model, upstream path, stream, output bound
    price: Any = None  # ai.price_table.ModelPrice, for billed calls
    hold: ledger.Transfer | None = None
    input_tokens_bound: int = 0  # the prompt's bound, held (and an estimate's input, decision 0011)
    output_tokens_bound: int = 0  # the output bound, held
    tpm_window: str | None = None  # the tokens-per-minute counter holding this call's reservation
    tpm_reserved: int = 0
    usage: Any = None  # ai.usage.Usage, once known
    usage_source: str = "none"  # upstream | estimated | none
    charge: bool = False  # true once the upstream produced something billable
    charged_micro: int = 0  # what settlement posted
    settled: bool = False

    def fail(self, outcome: Outcome) -> None:
        """Record a failure; the first one recorded is the call's outcome."""
        if self.outcome is Outcome.OK:
            self.outcome = outcome
