"""Where the mock's AI endpoints and controls are mounted on an aiohttp app."""

from __future__ import annotations

from aiohttp import web

from devkit.mock_ai import anthropic, gemini, openai
from devkit.mock_ai.controls import add_control_routes
from devkit.mock_ai.models import PROVIDERS
from devkit.mock_ai.serving import ai_handler, unknown_path
from devkit.mock_ai.state import AI_STATE_KEY, AiState

PROVIDER_MODULES = (("openai", openai), ("anthropic", anthropic), ("gemini", gemini))


def add_ai_routes(app: web.Application, state: AiState | None = None) -> AiState:
    """Serve the three provider APIs and their controls on `app`; returns the state they share."""
    app[AI_STATE_KEY] = state = state or AiState()
    for provider, module in PROVIDER_MODULES:
        for method, path, build in module.ROUTES:
            app.router.add_route(method, path, ai_handler(provider, build))
    for provider in PROVIDERS:  # anything else under a provider's prefix: its own 404
        app.router.add_route("*", f"/{provider}/{{tail:.*}}", ai_handler(provider, unknown_path))
    add_control_routes(app)
    return state
