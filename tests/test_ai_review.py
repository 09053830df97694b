"""Review findings on the metered AI routes: holds that must bound every call, and SDK inputs that
must be accepted. Each test failed before its fix."""

from __future__ import annotations

import math

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from tests.test_ai_routes import GEMINI, GPT, MESSAGES, PRICE_MICRO, Stack, start

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

MEDIA_TOKENS = 100_000


def hold_for(input_tokens: int, output_tokens: int) -> int:
    p_in, p_out, _ = PRICE_MICRO
    return max(1, math.ceil((input_tokens * p_in + output_tokens * p_out) / 1_000_000))


async def post(stack: Stack, path: str, data: bytes) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.post(stack.base + path, data=data, headers={
                "Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"}) as response:
            return response.status, await response.json(content_type=None)


async def last_hold(stack: Stack) -> int:
    return await stack.database.fetchval(
        "SELECT amount_micro FROM transfers WHERE phase = 'pending' AND user_id = $1 ORDER BY id DESC LIMIT 1",
        stack.user["id"])


async def ceiling(stack: Stack, model: str) -> int:
    return await stack.database.fetchval("SELECT max_output_tokens FROM model_prices WHERE model = $1", model)


@pytest.fixture
async def rich(gateway_factory, mock_target, database) -> Stack:
    return await start(gateway_factory, mock_target, database, credits=1_000_000)


async def test_n_choices_multiply_the_model_ceiling_when_no_max_tokens_is_given(rich):
    body = b'{"model":"gpt-4o-mini","n":3,"messages":[{"role":"user","content":"hi"}]}'
    status, _ = await post(rich, "/openai/v1/chat/completions", body)
    assert status == 200
    assert await last_hold(rich) == hold_for(len(body), 3 * await ceiling(rich, GPT))


async def test_candidate_count_multiplies_the_model_ceiling_and_is_always_checked(rich):
    body = b'{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"candidateCount":2}}'
    status, _ = await post(rich, f"/gemini/v1beta/models/{GEMINI}:generateContent", body)
    assert status == 200
    assert await last_hold(rich) == hold_for(len(body), 2 * await ceiling(rich, GEMINI))
    bad = b'{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"candidateCount":100000}}'
    status, answer = await post(rich, f"/gemini/v1beta/models/{GEMINI}:generateContent", bad)
    assert status == 400 and answer["error"]["status"] == "INVALID_ARGUMENT"


async def test_legacy_completions_hold_every_prompt_of_a_batch(rich):
    body = b'{"model":"gpt-4o-mini","prompt":["a","b","c","d","e"],"max_tokens":10}'
    await post(rich, "/openai/v1/completions", body)
    assert await last_hold(rich) == hold_for(len(body), 5 * 10)
    # A single prompt given as token ids is one prompt; a batch of token-id lists is one per list.
    body = b'{"model":"gpt-4o-mini","prompt":[1,2,3],"max_tokens":10}'
    await post(rich, "/openai/v1/completions", body)
    assert await last_hold(rich) == hold_for(len(body), 10)
    body = b'{"model":"gpt-4o-mini","prompt":[[1,2],[3]],"n":2,"max_tokens":10}'
    await post(rich, "/openai/v1/completions", body)
    assert await last_hold(rich) == hold_for(len(body), 2 * 2 * 10)


async def test_gemini_dynamic_thinking_budget_is_accepted(rich):
    body = (b'{"contents":[{"parts":[{"text":"hi"}]}],'
            b'"generationConfig":{"maxOutputTokens":40,"thinkingConfig":{"thinkingBudget":-1}}}')
    status, answer = await post(rich, "/gemini/v1beta/models/gemini-2.5-flash:generateContent", body)
    assert status == 200, answer
    # maxOutputTokens caps the thoughts too; a dynamic budget adds nothing to the bound.
    assert await last_hold(rich) == hold_for(len(body), 40)


@pytest.mark.parametrize("path, body", [
    ("/openai/v1/chat/completions",
     b'{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":'
     b'[{"type":"\\u0069mage_url","\\u0069mage_url":{"url":"https://example.com/a.png"}}]}]}'),
    ("/anthropic/v1/messages",
     b'{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":'
     b'[{"type" : "image","source":{"type":"url","url":"https://example.com/a.png"}}]}]}'),
])
async def test_a_referenced_image_is_held_however_its_json_is_spelled(rich, path, body):
    await post(rich, path, body)
    assert await last_hold(rich) == hold_for(len(body) + MEDIA_TOKENS, 5)  # one part, one reference


async def test_a_stream_request_answered_without_an_event_stream_is_a_502_and_charges_nothing(
        gateway_factory, mock_target, database, aiohttp_server):
    async def whole_json(request: web.Request) -> web.Response:  # an upstream that ignored "stream": true
        return web.json_response({"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", whole_json)
    upstream = await aiohttp_server(app)
    stack = await start(gateway_factory, mock_target, database, openai_base_url=str(upstream.make_url("/v1")))
    before = await stack.balance()
    client = stack.openai()
    with pytest.raises(openai.InternalServerError) as raised:
        stream = await client.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=5, stream=True)
        [chunk async for chunk in stream]
    await client.close()
    assert raised.value.status_code == 502
    assert await stack.balance() == before and await stack.open_holds() == 0


async def test_a_stream_with_an_event_over_a_mebibyte_is_relayed_and_charged(
        gateway_factory, mock_target, database, aiohttp_server):
    # The Responses API repeats the request's `instructions` in response.created and
    # response.completed (and inline images can be larger still), so one event can be as large as a
    # request the gateway accepts (20 MiB): such an event must not break the stream.
    response = {"id": "resp_1", "object": "response", "status": "completed", "model": GPT, "output": [],
                "instructions": "x" * 1_200_000}
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 2,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 12}
    events = [{"type": "response.created", "response": {**response, "status": "in_progress"}},
              {"type": "response.output_text.delta", "item_id": "m", "output_index": 0, "content_index": 0,
               "delta": "hello", "logprobs": []},
              {"type": "response.completed", "response": {**response, "usage": usage}}]

    async def responses(request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await answer.prepare(request)
        for number, event in enumerate(events):
            await answer.write(f"event: {event['type']}\ndata: ".encode()
                               + orjson.dumps({**event, "sequence_number": number}) + b"\n\n")
        await answer.write_eof()
        return answer

    app = web.Application()
    app.router.add_post("/v1/responses", responses)
    upstream = await aiohttp_server(app)
    stack = await start(gateway_factory, mock_target, database, credits=10_000,
                        openai_base_url=str(upstream.make_url("/v1")))
    before = await stack.balance()
    client = stack.openai()
    stream = await client.responses.create(model=GPT, input="hi", max_output_tokens=16, stream=True)
    received = [event async for event in stream]
    await client.close()
    assert received[-1].type == "response.completed"
    p_in, p_out, _ = PRICE_MICRO
    assert before - await stack.balance() == math.ceil((10 * p_in + 2 * p_out) / 1_000_000)
    assert await stack.open_holds() == 0
