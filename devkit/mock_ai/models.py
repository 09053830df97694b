"""The providers the mock serves and the models each one knows, with what kind of model each is."""

from __future__ import annotations

from dataclasses import dataclass

PROVIDERS = ("openai", "anthropic", "gemini")
MODEL_CREATED_S = 1_700_000_000


@dataclass(frozen=True, slots=True)
class ModelInfo:
    kind: str  # "chat" or "embedding"
    reasoning: bool = False
    dimensions: int = 0  # embedding models only


OPENAI_MODELS = {
    "gpt-4o-mini": ModelInfo("chat"),
    "gpt-4o": ModelInfo("chat"),
    "gpt-4": ModelInfo("chat"),  # the billing-CRM spec's examples (gpt-4, gpt-3.5-turbo)
    "gpt-3.5-turbo": ModelInfo("chat"),
    "gpt-3.5-turbo-instruct": ModelInfo("chat"),
    "o3-mini": ModelInfo("chat", reasoning=True),
    "o4-mini": ModelInfo("chat", reasoning=True),
    "text-embedding-3-small": ModelInfo("embedding", dimensions=1536),
    "text-embedding-3-large": ModelInfo("embedding", dimensions=3072),
}
ANTHROPIC_MODELS = {name: ModelInfo("chat") for name in (
    "claude-3-5-haiku-latest", "claude-3-5-haiku-20241022", "claude-haiku-4-5", "claude-sonnet-4-5",
    "claude-sonnet-4-6", "claude-opus-4-1", "claude-3-opus-20240229", "claude-3-sonnet-20240229")}
GEMINI_MODELS = {name: ModelInfo("chat", reasoning="thinking" in name or "2.5" in name) for name in (
    "gemini-2.0-flash", "gemini-2.0-flash-thinking-exp", "gemini-2.5-flash", "gemini-2.5-pro", "gemini-pro")}
MODELS = {"openai": OPENAI_MODELS, "anthropic": ANTHROPIC_MODELS, "gemini": GEMINI_MODELS}
