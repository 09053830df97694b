"""The AI path's authorization: what a key may do — the client's address, the model — and the
price of what it asks for (a model not offered is refused here, before any credit is held)."""

from __future__ import annotations

from gateway.ai.authentication import KeyPrincipal
from gateway.ai.price_table import ModelPrice, PriceTable
from gateway.ai.routes import CallSpec
from gateway.core.errors import Forbidden, NotFound


def authorize(prices: PriceTable, principal: KeyPrincipal, spec: CallSpec, client_ip: str) -> ModelPrice | None:
    """The model's price for a billed call (None for free routes), or the refusal."""
    if not principal.allows_ip(client_ip):
        raise Forbidden("this API key may not be used from this address", code="ip_not_allowed")
    if not spec.billed:
        return None
    if not principal.allows_model(spec.model):
        raise Forbidden(f"this API key may not use the model {spec.model}", code="model_not_allowed")
    price = prices.get(spec.model, spec.provider)
    if price is None:
        raise NotFound(f"The model `{spec.model}` does not exist or is not offered", code="model_not_found")
    return price
