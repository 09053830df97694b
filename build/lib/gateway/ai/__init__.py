"""Metered AI routes: OpenAI, Anthropic and Gemini through the gateway, billed per token."""
