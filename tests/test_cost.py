"""What calls cost: ``result.cost`` from the catalog's prices (input, cached input, cache writes,
output, reasoning), on streams' last chunk too, summed in ``get_stats()`` for providers and pools;
an unknown price is unknown, never 0."""

from __future__ import annotations

from typing import Any

import pytest

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import FallbackChain
from mirror_providers.pricing import cost_of
from mirror_providers.types import Cost, ModelInfo, Usage

from .server import FakeServer, Received, Reply, anthropic_sse


def priced(**prices: float | None) -> ModelInfo:
    return ModelInfo(id="m", context_window=1000, max_output=100, **prices)  # type: ignore[arg-type]


def test_each_part_at_its_price() -> None:
    info = priced(price_input=2.0, price_output=10.0, price_cached_input=0.1, price_cache_write=2.5)
    usage = Usage(input_tokens=1_000_000, output_tokens=200_000, cached_input_tokens=400_000,
                  cache_creation_input_tokens=100_000, reasoning_tokens=50_000)
    cost = cost_of(info, usage)
    assert cost is not None and isinstance(cost, Cost)
    parts = (cost.input_usd, cost.cached_input_usd, cost.cache_write_usd, cost.output_usd, cost.reasoning_usd,
             cost.total_usd)
    assert parts == pytest.approx((1.0, 0.04, 0.25, 2.0, 0.5, 3.29))


def test_unknown_is_unknown_never_zero() -> None:
    usage = Usage(input_tokens=100, output_tokens=10, cached_input_tokens=50)
    assert cost_of(priced(), usage) is None  # a model without prices
    assert cost_of(priced(price_input=1.0, price_output=1.0), None) is None  # no usage
    partial = cost_of(priced(price_input=1.0, price_output=2.0), usage)  # cached tokens, no cached price
    assert partial is not None and partial.cached_input_usd is None and partial.total_usd is None
    assert partial.input_usd == pytest.approx(50e-6) and partial.output_usd == pytest.approx(20e-6)
    plain = cost_of(priced(price_input=1.0, price_output=2.0), Usage(input_tokens=100, output_tokens=10))
    assert plain is not None and plain.total_usd == pytest.approx(120e-6)  # no cached tokens: no price needed
    assert plain.reasoning_usd is None  # the vendor did not say


def openai_answer(model: str, prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                      "prompt_tokens_details": {"cached_tokens": cached},
                      "completion_tokens_details": {"reasoning_tokens": reasoning}}}


def test_openai_result_and_stats(server: FakeServer) -> None:
    def chat(req: Received, reply: Reply) -> None:
        body = req.json()
        if body.get("stream"):
            frames = [{"id": "c", "model": "gpt-4o-mini-2024-07-18", "choices": [
                {"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]},
                {"id": "c", "model": "gpt-4o-mini-2024-07-18", "choices": [], "usage": {
                    "prompt_tokens": 2_000, "completion_tokens": 1_000, "total_tokens": 3_000}}]
            import json

            reply.stream(200, [b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames] + [b"data: [DONE]\n\n"],
                         {"Content-Type": "text/event-stream"})
        else:
            reply.json(200, openai_answer("gpt-4o-mini-2024-07-18", 10_000, 1_000, cached=4_000))

    server.route("POST", "/v1/chat/completions", chat)
    llm = OpenAIProvider(api_key="sk-test", model="gpt-4o-mini", base_url=server.url + "/v1")
    result = llm.generate_sync("hi")
    # the snapshot answered: priced by gpt-4o-mini's row (0.15 in, 0.075 cached, 0.6 out per MTok)
    assert result.cost is not None
    assert result.cost.input_usd == pytest.approx(6_000 * 0.15e-6)
    assert result.cost.cached_input_usd == pytest.approx(4_000 * 0.075e-6)
    assert result.cost.output_usd == pytest.approx(1_000 * 0.6e-6)
    first = result.cost.total_usd
    assert first is not None and first == pytest.approx(0.0009 + 0.0003 + 0.0006)
    last = list(llm.stream_sync("hi"))[-1]
    assert last.cost is not None and last.cost.total_usd is not None
    assert last.cost.total_usd == pytest.approx(2_000 * 0.15e-6 + 1_000 * 0.6e-6)
    stats = llm.get_stats()
    assert stats.cost_usd == pytest.approx(first + last.cost.total_usd) and stats.unpriced == 0
    assert '"cost": {"input_usd"' in result.to_json()


def test_a_model_the_catalog_does_not_price_is_unpriced(server: FakeServer) -> None:
    server.route("POST", "/v1/chat/completions", lambda r, w: w.json(200, openai_answer("my-finetune", 10, 5)))
    llm = OpenAIProvider(model="my-finetune", base_url=server.url + "/v1")
    assert llm.generate_sync("hi").cost is None
    stats = llm.get_stats()
    assert stats.cost_usd == 0.0 and stats.unpriced == 1


def test_anthropic_cache_writes_and_reads(server: FakeServer) -> None:
    usage = {"input_tokens": 1_000, "output_tokens": 500, "cache_creation_input_tokens": 2_000,
             "cache_read_input_tokens": 3_000}
    server.route("POST", "/v1/messages", lambda r, w: w.json(200, {
        "id": "msg", "type": "message", "role": "assistant", "model": "claude-sonnet-5-5", "stop_reason": "end_turn",
        "content": [{"type": "text", "text": "ok"}], "usage": usage}))
    claude = AnthropicProvider(api_key="sk-ant-test", model="sonnet", base_url=server.url)
    cost = claude.generate_sync("hi").cost
    assert cost is not None  # sonnet: 2.0 in, 0.1 cached, 2.5 cache write, 10.0 out per MTok
    parts = (cost.input_usd, cost.cached_input_usd, cost.cache_write_usd, cost.output_usd)
    assert parts == pytest.approx((0.002, 0.0003, 0.005, 0.005))
    assert cost.total_usd == pytest.approx(0.0123)


def test_a_pool_totals_what_its_members_cost(server: FakeServer) -> None:
    server.route("POST", "/v1/chat/completions", lambda r, w: w.json(200, openai_answer("gpt-4o-mini", 1_000, 100)))

    def messages(req: Received, reply: Reply) -> None:
        if req.json().get("stream"):
            reply.stream(200, anthropic_sse("ok", model="claude-sonnet-5-5"), {"Content-Type": "text/event-stream"})
        else:
            reply.json(503, {"type": "error", "error": {"type": "api_error", "message": "down"}})

    server.route("POST", "/v1/messages", messages)
    claude = AnthropicProvider(api_key="sk-ant-test", model="sonnet", base_url=server.url, max_retries=0)
    gpt = OpenAIProvider(api_key="sk-test", model="gpt-4o-mini", base_url=server.url + "/v1")
    chain = FallbackChain([claude, gpt])
    answered = chain.generate_sync("hi")  # Anthropic fails, OpenAI answers
    assert answered.provider == "openai" and answered.cost is not None
    streamed = list(chain.stream_sync("hi"))[-1]  # Anthropic streams
    assert streamed.provider == "anthropic" and streamed.cost is not None and streamed.cost.total_usd is not None
    stats = chain.get_stats()
    assert answered.cost.total_usd is not None
    assert stats.cost_usd == pytest.approx(answered.cost.total_usd + streamed.cost.total_usd)
    assert stats.unpriced == 0


def test_a_hostile_usage_never_makes_a_cost_bigger_than_its_whole() -> None:
    info = priced(price_input=1.0, price_output=2.0, price_cached_input=0.5)
    odd = cost_of(info, Usage(input_tokens=5, output_tokens=3, cached_input_tokens=10**6, reasoning_tokens=10**9))
    assert odd is not None and odd.total_usd is not None and odd.reasoning_usd is not None
    assert odd.cached_input_usd == pytest.approx(5 * 0.5e-6) and odd.reasoning_usd <= odd.output_usd  # type: ignore[operator]
    assert cost_of(info, Usage(input_tokens=10**400, output_tokens=1)) is None  # not an overflow, not priced
