"""The payments wing's resources: only providers with all their settings are served."""

from __future__ import annotations

from gateway.payments.resources import PAYMENTS


async def test_only_configured_providers_are_served(pay_gateway_factory, gateway):
    assert gateway.app[PAYMENTS].providers == {}
    every = await pay_gateway_factory()
    assert sorted(every.app[PAYMENTS].providers) == ["cryptocloud", "robokassa", "stripe"]
    assert not every.app[PAYMENTS].session.closed
