"""A mock of the OpenAI, Anthropic and Gemini HTTP APIs: their wire formats, usage numbers and failures.

The official SDKs run against it unchanged, so the gateway can be tested and benchmarked offline.
Everything it answers is a pure function of the request, except the fault/latency controls under
/_mock/ai/ and the Anthropic prompt cache (first sight writes, later sight reads, as the real one does).

Usage numbers (documented in full in `measure_input` and `plan_output`):
- a text costs ceil(len(text) / 4) tokens; every message (system prompt and instructions included)
  adds MESSAGE_OVERHEAD_TOKENS; a prompt costs at least 1 token;
- a reply costs min(max tokens asked for, REPLY_TOKENS_DEFAULT) tokens and its text has exactly
  that many words, streamed or not; reasoning models (OpenAI `o*`, Gemini `*thinking*` / `*2.5*`)
  spend half of it (rounded down) thinking;
- OpenAI and Gemini treat every text of at least CACHE_MIN_TOKENS tokens as already cached;
  Anthropic caches the prefix up to the last block carrying `cache_control` when it is at least
  CACHE_MIN_TOKENS long.

Controls, for tests that cannot add headers through the gateway:
- POST /_mock/ai/faults {"mode", "count": 1, "provider": null, "delay_ms", "retry_after_s": 1}: the
  next `count` AI requests (of that provider) fail: "500", "429" (with Retry-After), "timeout" (no
  answer for delay_ms, default 300 s, until the client leaves), "reset" (TCP RST before any answer),
  "reset_mid_stream" (half the frames or half the JSON body, then the connection is cut),
  "slow_stream" (delay_ms, default 1000, between frames or before a JSON answer); "none" clears.
  GET answers the fault still pending.
- POST /_mock/ai/latency {"ms", "chunk_ms"}: a wait before every answer, and between stream frames.
- POST /_mock/ai/keys {"keys": [...] | null}: accept exactly these upstream keys, or (null, the default)
  any key starting with "sk-mock" or "mock-".
- GET /_mock/ai/requests: the last REQUEST_LOG_MAX AI requests (method, path, raw query, every header
  lower-cased, parsed JSON body); DELETE clears them. POST /_mock/ai/reset restores every default.

Modules: `openai`, `anthropic`, `gemini` (one per provider: its endpoints, usage fields and routes);
`usage` (token counts), `models`, `replies` (answers and error shapes), `state`, `faults`, `serving`
(the request path), `controls` (/_mock/ai) and `routes` (mounting all of it).
"""

from devkit.mock_ai.controls import FAULT_COUNT_MAX, LATENCY_MS_MAX, RETRY_AFTER_S_DEFAULT
from devkit.mock_ai.faults import FAULT_MODES, SLOW_STREAM_DELAY_MS_DEFAULT, TIMEOUT_FAULT_MS_DEFAULT
from devkit.mock_ai.models import MODELS, PROVIDERS, ModelInfo
from devkit.mock_ai.replies import MockApiError, Reply
from devkit.mock_ai.routes import add_ai_routes
from devkit.mock_ai.state import (AI_STATE_KEY, CHUNK_DELAY_MS_DEFAULT, KEY_PREFIXES_DEFAULT, REQUEST_LOG_MAX,
                                  AiState, Fault)
from devkit.mock_ai.usage import (CACHE_MIN_TOKENS, CHARS_PER_TOKEN, MESSAGE_OVERHEAD_TOKENS, REPLY_TOKENS_DEFAULT,
                                  Usage, cached_by_length, content_texts, measure_input, plan_output, reply_pieces,
                                  text_tokens)

__all__ = [
    "AI_STATE_KEY", "CACHE_MIN_TOKENS", "CHARS_PER_TOKEN", "CHUNK_DELAY_MS_DEFAULT", "FAULT_COUNT_MAX", "FAULT_MODES",
    "KEY_PREFIXES_DEFAULT", "LATENCY_MS_MAX", "MESSAGE_OVERHEAD_TOKENS", "MODELS", "PROVIDERS", "REPLY_TOKENS_DEFAULT",
    "REQUEST_LOG_MAX", "RETRY_AFTER_S_DEFAULT", "SLOW_STREAM_DELAY_MS_DEFAULT", "TIMEOUT_FAULT_MS_DEFAULT",
    "AiState", "Fault", "MockApiError", "ModelInfo", "Reply", "Usage",
    "add_ai_routes", "cached_by_length", "content_texts", "measure_input", "plan_output", "reply_pieces",
    "text_tokens",
]
