"""Hooks: every call seen as it happens (requests, retries, failovers, answers, stream ends,
errors) with plain data and never the key; a hook that raises never breaks the call; per provider,
per pool, or global."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

import mirror_providers
from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.errors import ConfigurationError, OverloadedError, ProviderError, RateLimitError
from mirror_providers.hooks import HookEvent
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import FallbackChain
from mirror_providers.retry import RetryPolicy

from .server import FakeServer, Received, Reply, add_openai_routes, openai_completion

KEY = "sk-test-HOOK-SECRET-991"


class Recorder:
    def __init__(self) -> None:
        self.events: list[HookEvent] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return self.events.append
        raise AttributeError(name)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    yield Recorder()


def flaky(server: FakeServer, failures: int) -> None:
    left = [failures]

    def chat(req: Received, reply: Reply) -> None:
        if left[0] > 0:
            left[0] -= 1
            reply.json(429, {"error": {"message": f"slow down, {KEY}", "type": "rate_limit"}},
                       {"retry-after": "0.25", "x-request-id": "req-429"})
        elif req.json().get("stream"):
            add_openai_routes(server)
            server.routes[("POST", "/v1/chat/completions")](req, reply)
        else:
            reply.json(200, openai_completion("fine", model="gpt-4o-mini-2024-07-18"), {"x-request-id": "req-ok"})

    server.route("POST", "/v1/chat/completions", chat)


def provider(server: FakeServer, **kwargs: Any) -> OpenAIProvider:
    return OpenAIProvider(api_key=KEY, model="gpt-4o-mini", base_url=f"{server.url}/v1",
                          retry=RetryPolicy(max_retries=2, sleep=lambda s: None), **kwargs)


def test_a_retried_call_step_by_step(server: FakeServer, recorder: Recorder) -> None:
    flaky(server, failures=1)
    llm = provider(server)
    llm.add_hook(recorder)
    result = llm.generate_sync("hi")
    assert recorder.kinds() == ["request", "retry", "request", "response"]
    first, retry, second, answer = recorder.events
    assert (first.attempt, second.attempt) == (1, 2) and first.url == f"{server.url}/v1/chat/completions"
    assert retry.error == "RateLimitError" and retry.status == 429 and retry.retry_in_s == pytest.approx(0.25)
    assert retry.request_id == "req-429"
    assert answer.usage == result.usage and answer.cost == result.cost and answer.cost is not None
    assert answer.finish_reason == "stop" and answer.request_id == "req-ok" and answer.elapsed_s > 0
    assert (answer.provider, answer.model, answer.level, answer.stream) == (
        "openai", "gpt-4o-mini-2024-07-18", "provider", False)
    assert all(KEY not in repr(e) and "HOOK-SECRET" not in repr(e) for e in recorder.events)


def test_a_stream_ends_and_an_error_is_told(server: FakeServer, recorder: Recorder) -> None:
    flaky(server, failures=0)
    llm = provider(server)
    llm.add_hook(recorder)
    chunks = list(llm.stream_sync("hi"))
    end = recorder.events[-1]
    assert recorder.kinds() == ["request", "stream_end"]
    assert end.stream and end.chunks == len(chunks) and end.usage == chunks[-1].usage and end.finish_reason == "stop"
    recorder.events.clear()
    flaky(server, failures=5)
    with pytest.raises(RateLimitError):
        llm.generate_sync("hi", max_retries=0)
    assert recorder.kinds() == ["request", "error"]
    assert recorder.events[-1].error == "RateLimitError" and recorder.events[-1].status == 429
    assert "HOOK-SECRET" not in (recorder.events[-1].message or "") and "slow down" in (recorder.events[-1].message or "")


def test_a_stream_left_early_is_not_an_end(server: FakeServer, recorder: Recorder) -> None:
    flaky(server, failures=0)
    llm = provider(server)
    llm.add_hook(recorder)
    stream = llm.stream_sync("hi")
    next(stream)
    stream.close()
    assert recorder.kinds() == ["request"] and llm.get_stats().in_flight == 0


def test_failover_in_a_pool_and_the_pools_own_events(server: FakeServer, recorder: Recorder) -> None:
    flaky(server, failures=1)
    claude = AnthropicProvider(api_key="sk-ant-x", model="sonnet", base_url="http://127.0.0.1:9", max_retries=0)
    chain = FallbackChain([claude, provider(server)], name="answers")
    chain.add_hook(recorder)
    result = chain.generate_sync("hi")
    assert result.provider == "openai"
    assert recorder.kinds() == ["request", "failover", "request", "response"]
    tried, failover, again, answer = recorder.events
    assert (tried.provider, tried.level, tried.pool, tried.attempt) == ("anthropic", "pool", "answers", 1)
    assert failover.error == "ConnectError" and failover.provider == "anthropic"
    assert (again.provider, again.attempt) == ("openai", 2)
    assert answer.level == "pool" and answer.provider == "openai" and answer.attempt == 2


def test_global_hooks_see_every_provider(server: FakeServer, recorder: Recorder) -> None:
    flaky(server, failures=0)
    mirror_providers.add_hook(recorder)
    try:
        provider(server).generate_sync("hi")
        provider(server).generate_sync("hi")
    finally:
        mirror_providers.remove_hook(recorder)
    assert recorder.kinds() == ["request", "response"] * 2
    provider(server).generate_sync("hi")
    assert len(recorder.events) == 4  # removed: told nothing more


def test_a_hook_that_raises_is_logged_and_the_call_goes_on(server: FakeServer, caplog: pytest.LogCaptureFixture,
                                                          recorder: Recorder) -> None:
    flaky(server, failures=1)

    class Broken:
        def on_request(self, event: HookEvent) -> None:
            raise RuntimeError("hook bug")

        def on_response(self, event: HookEvent) -> None:
            raise KeyError("worse")

    llm = provider(server)
    llm.add_hook(Broken())
    llm.add_hook(recorder)  # later hooks still run
    with caplog.at_level(logging.WARNING, logger="mirror_providers.hooks"):
        assert llm.generate_sync("hi").content == "fine"
    assert "Broken.on_request raised RuntimeError: hook bug" in caplog.text and "KeyError" in caplog.text
    assert recorder.kinds() == ["request", "retry", "request", "response"]


def test_a_hook_needs_a_hook_method() -> None:
    with pytest.raises(ConfigurationError, match="a hook needs one of the methods on_request"):
        OpenAIProvider(api_key=KEY).add_hook(object())
    with pytest.raises(ConfigurationError):
        mirror_providers.add_hook(42)


def test_hook_urls_carry_no_credentials() -> None:
    from mirror_providers.providers.http import _hook_url

    shown = _hook_url(f"https://user:{KEY}@example.com/v1/chat?key={KEY}#frag")
    assert "HOOK-SECRET" not in shown and shown.endswith("example.com/v1/chat")


def test_a_key_echoed_as_an_id_is_scrubbed_everywhere(server: FakeServer, recorder: Recorder) -> None:
    from .server import anthropic_message

    state = {"fail": True}

    def messages(req: Received, reply: Reply) -> None:
        key = req.headers.get("x-api-key") or req.headers.get("X-Api-Key")
        if state["fail"]:
            reply.json(529, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"},
                             "request_id": key})
        else:
            reply.json(200, {**anthropic_message("hello"), "id": key})

    server.route("POST", "/v1/messages", messages)
    claude = AnthropicProvider(api_key=KEY, base_url=server.url, model="sonnet",
                               retry=RetryPolicy(max_retries=1, sleep=lambda s: None))
    claude.add_hook(recorder)
    with pytest.raises(OverloadedError) as caught:
        claude.generate_sync("hi")
    assert "HOOK-SECRET" not in repr(caught.value) and "HOOK-SECRET" not in str(caught.value.request_id)
    state["fail"] = False
    result = claude.generate_sync("hi")
    assert "HOOK-SECRET" not in (result.response_id or "") and result.response_id
    assert recorder.events and all("HOOK-SECRET" not in repr(e) for e in recorder.events)


def test_a_stream_that_broke_after_its_first_chunk_is_no_failover(server: FakeServer, recorder: Recorder) -> None:
    from .server import openai_sse

    def cut(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
        reply.chunk(openai_sse("Hello there")[1])
        reply.reset()

    server.route("POST", "/v1/chat/completions", cut)
    chain = FallbackChain([provider(server, max_retries=0), provider(server, max_retries=0)])
    chain.add_hook(recorder)
    with pytest.raises(ProviderError):
        list(chain.stream_sync("hi"))
    assert recorder.kinds() == ["request", "error"]  # no failover: the answer had begun


def test_a_hook_raising_generator_exit_is_logged_but_ctrl_c_goes_through(server: FakeServer,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    flaky(server, failures=0)

    class Odd:
        def on_response(self, event: HookEvent) -> None:
            raise GeneratorExit

    class Stop:
        def on_response(self, event: HookEvent) -> None:
            raise KeyboardInterrupt

    llm = provider(server)
    llm.add_hook(Odd())
    with caplog.at_level(logging.WARNING, logger="mirror_providers.hooks"):
        assert llm.generate_sync("hi").content == "fine"
    assert "Odd.on_response raised GeneratorExit" in caplog.text
    llm.add_hook(Stop())
    with pytest.raises(KeyboardInterrupt):
        llm.generate_sync("hi")
