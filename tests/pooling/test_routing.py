"""Pools that route around real failures (issue 17), on loopback servers: each result's trace, fail
over first and retry last, members rate-limited past the deadline skipped, a vendor's "too long"
moving the call to a larger window, answers passed over by ``fallback_on``, a stream with no first
chunk in time abandoned, and sticky sessions."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.base import (
    AllProvidersFailedError,
    BadRequestError,
    CallAbortedError,
    ConfigurationError,
    ContentPart,
    ContextLengthExceededError,
    Message,
    RateLimitError,
    ServerError,
    ValidationError,
)
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import Attempt, Attempts, FallbackChain, ProviderPool, TieredRouter
from mirror_providers.provider import current_scope
from mirror_providers.request import GenerateRequest
from mirror_providers.retry import RetryPolicy
from mirror_providers.types import GenerationResult, join_chunks

from ..fakes import Clock, Fake, err
from ..server import FakeServer, Received, Reply, add_openai_routes, openai_completion, openai_sse
from ..waiting import eventually_async

FAST_RETRY = RetryPolicy(max_retries=2, initial_backoff_s=0.001, max_backoff_s=0.001, jitter=0.0)


def member(server: FakeServer, model: str = "gpt-4o-mini", **kw: Any) -> OpenAIProvider:
    kw.setdefault("retry", FAST_RETRY)
    return OpenAIProvider(api_key="sk-test", model=model, base_url=server.url + "/v1", **kw)


def failing(server: FakeServer, status: int, body: dict[str, Any], headers: dict[str, str] | None = None,
            times: int | None = None, text: str = "recovered") -> None:
    """The server answers ``status`` (the first ``times`` calls, or always), then ``text``."""
    seen = [0]

    def route(req: Received, reply: Reply) -> None:
        seen[0] += 1
        if times is None or seen[0] <= times:
            reply.json(status, body, headers)
        elif req.json().get("stream"):
            reply.stream(200, openai_sse(text), {"Content-Type": "text/event-stream"})
        else:
            reply.json(200, openai_completion(text))

    server.route("POST", "/v1/chat/completions", route)


BUSY = {"error": {"message": "try later", "type": "server_error"}}


@pytest.fixture
def two() -> Iterator[tuple[FakeServer, FakeServer]]:
    with FakeServer() as a, FakeServer() as b:
        yield a, b


# -- the trace -------------------------------------------------------------------------------------

def test_every_result_carries_its_trace(two: tuple[FakeServer, FakeServer]) -> None:
    a, b = two
    failing(a, 503, BUSY)
    add_openai_routes(b, "from b")
    blind = member(b, "gpt-4")  # no vision: skipped for an image
    chain = FallbackChain([member(a), blind, member(b, "gpt-4o")])
    image = ContentPart.image_url("https://example.com/cat.png")
    result = chain.generate_sync([Message.user((image, ContentPart.from_text("What is it?")))])
    assert result.content == "from b"
    assert [(t.model, t.outcome) for t in result.attempts] == [
        ("gpt-4o-mini", "failed"), ("gpt-4", "skipped"), ("gpt-4o", "ok")]
    failed, skipped, ok = result.attempts
    assert "ServerError" in failed.reason and failed.error is not None and failed.elapsed_s >= 0
    assert skipped.skipped and "does not accept images" in skipped.reason and ok.reason == "" and ok.error is None
    assert result.attempts == 2 and result.attempts.tries == 2 and int(result.attempts) == 2  # skips not counted
    dumped = result.to_dict()["attempts"]
    assert [d["outcome"] for d in dumped] == ["failed", "skipped", "ok"] and "error" not in dumped[0]
    assert type(result).from_dict(result.to_dict()).attempts == result.attempts
    direct = member(b).generate_sync("hi")
    assert direct.attempts == 1 and list(direct.attempts) == []  # a provider called directly: no pool, no trace


def test_a_nested_pool_gives_its_own_trace(two: tuple[FakeServer, FakeServer]) -> None:
    a, b = two
    failing(a, 503, BUSY)
    add_openai_routes(b, "from b")
    inner = FallbackChain([member(a, "gpt-4o"), member(b, "gpt-4o")])
    outer = FallbackChain([member(a), inner])
    trace = outer.generate_sync("hi").attempts
    assert [(t.model, t.outcome) for t in trace] == [("gpt-4o-mini", "failed"), ("gpt-4o", "failed"),
                                                     ("gpt-4o", "ok")]


# -- fail over first, retry last ------------------------------------------------------------------

def test_a_retryable_failure_moves_on_at_once_and_the_last_member_retries(two: tuple[FakeServer, FakeServer]) -> None:
    a, b = two
    failing(a, 503, BUSY)
    failing(b, 503, BUSY, times=2, text="b after two tries")
    result = FallbackChain([member(a), member(b)]).generate_sync("hi")
    assert result.content == "b after two tries"
    assert len(a.received) == 1  # no retries while another member was left
    assert len(b.received) == 3  # the last one left used its own retries


def test_a_lone_member_keeps_its_retries_and_the_callers_count(two: tuple[FakeServer, FakeServer]) -> None:
    a, _ = two
    failing(a, 503, BUSY, times=3)
    with pytest.raises(AllProvidersFailedError):
        FallbackChain([member(a)]).generate_sync("hi", max_retries=1)
    assert len(a.received) == 2
    assert FallbackChain([member(a)]).generate_sync("hi").content == "recovered"


def test_a_pool_fails_over_first_too(two: tuple[FakeServer, FakeServer]) -> None:
    a, b = two
    failing(a, 500, BUSY)
    failing(b, 500, BUSY)
    with pytest.raises(AllProvidersFailedError) as info:
        ProviderPool([member(a), member(b)], strategy="round_robin").generate_sync("hi")
    assert (len(a.received), len(b.received)) == (1, 3)  # the first chosen once, the last with retries
    assert [t.outcome for t in info.value.attempts] == ["failed", "failed"]


def test_a_member_rate_limited_past_the_deadline_is_skipped_not_waited_for() -> None:
    clock = Clock()
    limited = Fake("limited", fail=err(RateLimitError, retry_after=120))
    spare = Fake("spare")
    chain = FallbackChain([limited, spare], clock=clock)
    assert chain.generate_sync("one").content == "spare: one"  # limited failed: out for 120 s
    clock.advance(1)
    assert chain.generate_sync("two", deadline_s=10).content == "spare: two"  # the member in rotation first
    spare.fail = err(RateLimitError, retry_after=120)
    with pytest.raises(AllProvidersFailedError, match="past the call's deadline") as info:  # not a ValidationError
        chain.generate_sync("three", deadline_s=10)
    assert [(t.model, t.outcome) for t in info.value.attempts] == [("spare", "failed"), ("limited", "skipped")]
    assert len(limited.calls) == 1  # not tried, and not slept on
    with pytest.raises(AllProvidersFailedError):
        chain.generate_sync("four")  # no deadline: tried last rather than not at all
    assert len(limited.calls) == 2


# -- the vendor says the prompt is too long --------------------------------------------------------

TOO_LONG_OPENAI = {"error": {"message": "This model's maximum context length is 128000 tokens. However, your "
                                        "messages resulted in 130000 tokens.", "type": "invalid_request_error",
                             "code": "context_length_exceeded", "param": "messages"}}


def test_too_long_moves_to_a_larger_window_and_skips_the_same_model(two: tuple[FakeServer, FakeServer]) -> None:
    a, b = two
    failing(a, 400, TOO_LONG_OPENAI)
    add_openai_routes(b, "from the big one")
    small_a, small_b, big = member(a, "gpt-4o"), member(b, "gpt-4o"), member(b, "gpt-6-luna")
    tiny = member(b, "gpt-4")  # 8k: smaller still
    result = FallbackChain([small_a, small_b, tiny, big]).generate_sync("a long prompt")
    assert result.content == "from the big one"
    assert [(t.model, t.outcome) for t in result.attempts] == [
        ("gpt-4o", "failed"), ("gpt-4o", "skipped"), ("gpt-4", "skipped"), ("gpt-6-luna", "ok")]
    assert isinstance(result.attempts[0].error, ContextLengthExceededError)
    assert "same model with the same window" in result.attempts[1].reason
    assert "smaller than that of openai:gpt-4o" in result.attempts[2].reason
    assert len(b.received) == 1  # only the big one was asked
    stats = FallbackChain([small_a]).get_stats()
    assert stats.errors == 0


def test_anthropics_too_long_is_a_context_length_error() -> None:
    body = {"type": "error", "error": {"type": "invalid_request_error",
                                       "message": "prompt is too long: 208656 tokens > 200000 maximum"}}
    with FakeServer() as server:
        server.route("POST", "/v1/messages", lambda r, w: w.json(400, body))
        claude = AnthropicProvider(api_key="sk-ant-test", model="claude-sonnet-4-5", base_url=server.url,
                                   max_retries=0)
        with pytest.raises(ContextLengthExceededError, match="prompt is too long") as info:
            claude.generate_sync("hi")
    assert info.value.failover_ok and not info.value.retryable


# -- answers passed over ---------------------------------------------------------------------------

def answering(server: FakeServer, text: str, finish: str = "stop", refusal: str | None = None) -> None:
    completion = openai_completion(text)
    completion["choices"][0]["finish_reason"] = finish
    completion["choices"][0]["message"]["refusal"] = refusal
    server.route("POST", "/v1/chat/completions", lambda r, w: w.json(200, completion))


def test_fallback_on_content_filter_and_refusal(two: tuple[FakeServer, FakeServer]) -> None:
    a, b = two
    answering(a, "", finish="content_filter")
    add_openai_routes(b, "from b")
    plain = FallbackChain([member(a), member(b)])
    assert plain.generate_sync("hi").finish_reason == "content_filter"  # off by default: the answer stands
    picky = FallbackChain([member(a), member(b)], fallback_on=["content_filter"])
    result = picky.generate_sync("hi")
    assert result.content == "from b"
    assert [(t.outcome, t.reason.split(":")[0]) for t in result.attempts] == [("filtered", "content_filter"),
                                                                              ("ok", "")]
    answering(a, "", refusal="I can't help with that.")
    assert picky.generate_sync("hi").refusal == "I can't help with that."  # refusals not asked for
    refusing = FallbackChain([member(a), member(b)], fallback_on=("refusal",))
    assert refusing.generate_sync("hi").content == "from b"
    assert refusing.get_stats().members[0].errors == 0  # it answered: not held against its health


def test_when_every_answer_is_passed_over_the_last_one_stands(two: tuple[FakeServer, FakeServer]) -> None:
    a, b = two
    answering(a, "", finish="content_filter")
    answering(b, "partial", finish="content_filter")
    result = FallbackChain([member(a), member(b)], fallback_on=["content_filter"]).generate_sync("hi")
    assert result.content == "partial" and result.finish_reason == "content_filter"
    assert [t.outcome for t in result.attempts] == ["filtered", "filtered"]


@pytest.mark.parametrize("bad", ["content_filter", ["length"], 3])
def test_fallback_on_is_checked(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="fallback_on"):
        FallbackChain([Fake("a")], fallback_on=bad)


# -- the first-chunk deadline ----------------------------------------------------------------------

def test_a_stream_without_its_first_chunk_in_time_is_abandoned(two: tuple[FakeServer, FakeServer]) -> None:
    a, b = two
    release = threading.Event()

    def stalls(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
        release.wait(30)  # sends nothing until the test ends

    a.route("POST", "/v1/chat/completions", stalls)
    add_openai_routes(b, "from b")
    chain = FallbackChain([member(a, timeout=30), member(b)], first_chunk_timeout_s=0.3)
    try:
        text = "".join(c.content for c in chain.stream_sync("hi"))
    finally:
        release.set()
    assert text == "from b"
    stats = chain.get_stats()
    assert stats.members[0].errors == 1 and stats.members[1].successes == 1  # a slow member is held against it
    assert len(a.received) == 1 and len(b.received) == 1


def test_a_stream_that_starts_in_time_is_not_touched(two: tuple[FakeServer, FakeServer]) -> None:
    a, _ = two
    a.route("POST", "/v1/chat/completions", lambda r, w: w.stream(200, openai_sse("one two three"),
                                                                  {"Content-Type": "text/event-stream"},
                                                                  delay_s=0.05))
    chain = FallbackChain([member(a)], first_chunk_timeout_s=5)
    assert join_chunks(chain.stream_sync("hi")).content == "one two three"


def test_first_chunk_timeout_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="first_chunk_timeout_s"):
        FallbackChain([Fake("a")], first_chunk_timeout_s=-1)


# -- sticky sessions ---------------------------------------------------------------------------------

def test_a_session_stays_on_its_member_until_it_fails() -> None:
    a, b = Fake("a"), Fake("b")
    pool = ProviderPool([a, b], strategy="round_robin")
    assert pool.generate_sync("1", session_key="s1").model == "a"
    assert pool.generate_sync("2", session_key="s1").model == "a"  # round robin would say b
    assert pool.generate_sync("3", session_key="s2").model == "b"
    a.fail = err(RateLimitError)
    assert pool.generate_sync("4", session_key="s1").model == "b"  # a failed: the session moves
    a.fail = None
    assert pool.generate_sync("5", session_key="s1").model == "b"  # and stays where it moved
    assert pool.generate_sync("6").model in ("a", "b")  # no session: the strategy decides


def test_a_chain_keeps_a_moved_session_on_its_new_member() -> None:
    a, b = Fake("a", fail=err(RateLimitError)), Fake("b")
    chain = FallbackChain([a, b])
    assert chain.generate_sync("1", session_key="conv").model == "b"
    a.fail = None
    assert chain.generate_sync("2", session_key="conv").model == "b"
    assert chain.generate_sync("3").model == "a"
    streamed = join_chunks(chain.stream_sync("4", session_key="conv"))
    assert streamed.model == "b"


def test_a_pool_streams_last_chunk_carries_the_trace() -> None:
    chain = FallbackChain([Fake("a", fail=err(RateLimitError)), Fake("b")])
    chunks = list(chain.stream_sync("hi"))
    assert all(not c.attempts for c in chunks[:-1])
    assert [(t.model, t.outcome) for t in chunks[-1].attempts] == [("a", "failed"), ("b", "ok")]
    joined = join_chunks(chunks)
    assert joined.attempts == 2 and joined.attempts == chunks[-1].attempts
    assert type(chunks[-1]).from_json(chunks[-1].to_json()).attempts == chunks[-1].attempts


def test_a_session_key_is_checked_and_never_sent() -> None:
    with pytest.raises(ValidationError, match="session_key"):
        Fake("a").generate_sync("x", session_key="")
    with FakeServer() as server:
        add_openai_routes(server)
        member(server).generate_sync("x", session_key="conv-1")
        assert "conv-1" not in json.dumps(server.received[0].json())


def test_a_router_pins_a_session_too() -> None:
    fast, flagship = Fake("fast"), Fake("flagship")
    router = TieredRouter(flagship=flagship, fast=fast)
    assert router.generate_sync("Analyze this philosophical question in depth", session_key="c").model == "flagship"
    assert router.generate_sync("ok", session_key="c").model == "flagship"  # the conversation stays
    assert router.generate_sync("ok").model == "fast"


def test_attempt_is_the_same_class_everywhere() -> None:
    from mirror_providers import types

    assert Attempt is types.Attempt


# -- hedged requests ---------------------------------------------------------------------------------

def slow(server: FakeServer, text: str, wait_s: float, status: int = 200, until: threading.Event | None = None) -> None:
    """Answers ``text`` after ``wait_s`` (or when ``until`` is set): the server side of a slow member."""
    def route(req: Received, reply: Reply) -> None:
        if until is not None:
            until.wait(wait_s)
        else:
            threading.Event().wait(wait_s)
        if status != 200:
            reply.json(status, BUSY)
        else:
            reply.json(200, openai_completion(text))

    server.route("POST", "/v1/chat/completions", route)


def test_a_hedge_answers_for_a_slow_member_and_the_slow_call_is_broken_off(two: tuple[FakeServer, FakeServer]) -> None:
    a, b = two
    release = threading.Event()
    try:
        slow(a, "from a", 30, until=release)
        add_openai_routes(b, "from b")
        chain = FallbackChain([member(a), member(b)], hedge_after_s=0.1)
        result = chain.generate_sync("hi")
    finally:
        release.set()
    assert result.content == "from b"
    assert [(t.model, t.outcome) for t in result.attempts] == [("gpt-4o-mini", "abandoned"), ("gpt-4o-mini", "ok")]
    assert "hedged: openai:gpt-4o-mini answered first" in result.attempts[0].reason
    stats = chain.get_stats()
    assert (stats.hedges, stats.hedges_won) == (1, 1)
    assert stats.members[0].errors == 0 and stats.members[0].in_flight == 0  # slower is not failed


def test_no_hedge_when_the_member_answers_in_time(two: tuple[FakeServer, FakeServer]) -> None:
    a, b = two
    add_openai_routes(a, "from a")
    add_openai_routes(b, "from b")
    chain = FallbackChain([member(a), member(b)], hedge_after_s=5)
    assert [chain.generate_sync("hi").content for _ in range(5)] == ["from a"] * 5
    assert b.received == [] and chain.get_stats().hedges == 0


def test_the_first_member_may_still_win_the_race(two: tuple[FakeServer, FakeServer]) -> None:
    a, b = two
    release = threading.Event()
    try:
        slow(a, "from a", 0.4)
        slow(b, "from b", 30, until=release)
        chain = FallbackChain([member(a), member(b)], hedge_after_s=0.1)
        result = chain.generate_sync("hi")
    finally:
        release.set()
    assert result.content == "from a"
    assert [(t.outcome, t.reason.split(":")[0]) for t in result.attempts] == [("abandoned", "hedge lost"), ("ok", "")]
    stats = chain.get_stats()
    assert (stats.hedges, stats.hedges_won) == (1, 0) and stats.members[1].in_flight == 0


def test_a_first_member_that_fails_during_the_hedge_leaves_the_answer_to_it(two: tuple[FakeServer, FakeServer]) -> None:
    a, b = two
    slow(a, "", 0.3, status=500)
    slow(b, "from b", 0.6)
    result = FallbackChain([member(a), member(b)], hedge_after_s=0.1).generate_sync("hi")
    assert result.content == "from b"
    assert [t.outcome for t in result.attempts] == ["failed", "ok"]


def test_p95_hedges_only_with_a_history_and_max_hedges_bounds_it() -> None:
    a, b = Fake("a"), Fake("b")
    chain = FallbackChain([a, b], hedge_after_s="p95")
    for _ in range(5):
        chain.generate_sync("x")
    assert b.calls == [] and chain.get_stats().hedges == 0  # five latencies say nothing of a tail yet
    off = FallbackChain([a, b], hedge_after_s=0.001, max_hedges=0)
    off.generate_sync("x")
    assert off.get_stats().hedges == 0


@pytest.mark.parametrize("bad", [0, -1, "p99", True, 1e9])
def test_hedge_after_is_checked(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="hedge_after_s"):
        FallbackChain([Fake("a")], hedge_after_s=bad)


def streaming(server: FakeServer, text: str, wait_s: float, until: threading.Event | None = None,
              status: int = 200) -> None:
    """Streams ``text`` after ``wait_s`` (or when ``until`` is set)."""
    def route(req: Received, reply: Reply) -> None:
        (until or threading.Event()).wait(wait_s)
        if status != 200:
            reply.json(status, BUSY)
        else:
            reply.stream(200, openai_sse(text), {"Content-Type": "text/event-stream"})

    server.route("POST", "/v1/chat/completions", route)


@pytest.mark.parametrize("slow_first", [True, False])
def test_a_stream_is_hedged_on_its_first_chunk(two: tuple[FakeServer, FakeServer], slow_first: bool) -> None:
    a, b = two
    release = threading.Event()
    try:
        streaming(a, "from a", 30 if slow_first else 0.4, until=release if slow_first else None)
        streaming(b, "from b", 0 if slow_first else 30, until=None if slow_first else release)
        chain = FallbackChain([member(a), member(b)], hedge_after_s=0.1)
        chunks = list(chain.stream_sync("hi"))
    finally:
        release.set()
    winner = "b" if slow_first else "a"
    assert "".join(c.content for c in chunks) == f"from {winner}"  # one stream's text, never both
    outcomes = [(t.outcome, t.reason.split(":")[0]) for t in chunks[-1].attempts]
    assert outcomes == ([("abandoned", "hedged"), ("ok", "")] if slow_first else [("abandoned", "hedge lost"),
                                                                                   ("ok", "")])
    stats = chain.get_stats()
    assert (stats.hedges, stats.hedges_won) == (1, 1 if slow_first else 0)
    assert all(m.in_flight == 0 and m.errors == 0 for m in stats.members)


def test_a_stream_that_fails_during_its_hedge_leaves_it_to_the_hedge(two: tuple[FakeServer, FakeServer]) -> None:
    a, b = two
    streaming(a, "", 0.3, status=500)
    streaming(b, "from b", 0.6)
    chunks = list(FallbackChain([member(a), member(b)], hedge_after_s=0.1).stream_sync("hi"))
    assert "".join(c.content for c in chunks) == "from b"
    assert [t.outcome for t in chunks[-1].attempts] == ["failed", "ok"]


class Slow(Fake):
    """A Fake that takes ``delay_s`` (cut short, as a socket read would be, when the call is aborted)."""

    def __init__(self, name: str, delay_s: float, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.delay_s = delay_s

    def _enter(self, request: GenerateRequest) -> None:
        scope = current_scope()
        assert scope is not None  # every call runs under one
        scope.pause(self.delay_s)
        if scope.aborted:
            raise CallAbortedError("aborted", provider="fake", model=self.name)
        super()._enter(request)


def test_an_error_that_ends_a_hedged_call_leaves_neither_member_in_flight() -> None:
    chain = FallbackChain([Slow("a", 0.3, fail=err(BadRequestError)), Slow("b", 0.0, fail=err(ServerError))],
                          hedge_after_s=0.05)
    with pytest.raises(BadRequestError):
        chain.generate_sync("hi")
    assert [(m.model, m.in_flight, m.errors) for m in chain.get_stats().members] == [("a", 0, 0), ("b", 0, 1)]


def test_a_cancelled_hedged_call_breaks_both_off() -> None:
    chain = FallbackChain([Slow("a", 30), Slow("b", 30)], hedge_after_s=0.05)

    async def main() -> None:
        task = asyncio.ensure_future(chain.generate("hi"))
        assert await eventually_async(lambda: chain.get_stats().hedges == 1, within=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await eventually_async(lambda: all(m.in_flight == 0 for m in chain.get_stats().members), within=10)

    asyncio.run(main())
    assert chain.get_stats().errors == 0  # broken off by the caller: held against no one
    assert not [t for t in threading.enumerate() if t.name == "mirror-providers-hedge"]


def test_a_bug_in_a_member_during_a_hedge_leaves_neither_in_flight() -> None:
    class Buggy(Slow):
        def _enter(self, request: GenerateRequest) -> None:
            super()._enter(request)
            raise RuntimeError("a bug in a custom provider")

    chain = FallbackChain([Buggy("a", 0.3), Slow("b", 30)], hedge_after_s=0.05)
    with pytest.raises(RuntimeError, match="a bug"):  # the caller's own kind of error, unchanged
        chain.generate_sync("hi")
    assert [m.in_flight for m in chain.get_stats().members] == [0, 0]


def test_the_last_try_a_pool_allows_retries_even_with_members_left_over() -> None:
    with FakeServer() as server:
        failing(server, 503, BUSY)
        models = ["gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-6-luna"]
        pool = ProviderPool([member(server, m) for m in models], strategy="round_robin")  # max_attempts 3
        with pytest.raises(AllProvidersFailedError) as info:
            pool.generate_sync("hi")
        sent = [r.json()["model"] for r in server.received]
    assert [sent.count(m) for m in models] == [1, 1, 3, 0]  # the third and last allowed try used its retries
    trace = info.value.attempts
    assert isinstance(trace, Attempts) and trace.tries == 3  # the same trace type as a result's


def test_a_nested_pool_that_fails_lets_its_parent_fail_over() -> None:
    inner = FallbackChain([Fake("i1", fail=err(ServerError)), Fake("i2", fail=err(ServerError))])
    outer = FallbackChain([inner, Fake("c")])
    result = outer.generate_sync("hi")
    assert result.content == "c: hi"
    assert [(t.model, t.outcome) for t in result.attempts] == [("fake:i1, fake:i2", "failed"), ("c", "ok")]
    assert AllProvidersFailedError("x").failover_ok


class Refusing(Fake):
    def _generate(self, request: GenerateRequest) -> GenerationResult:
        return dataclasses.replace(super()._generate(request), content="", refusal="I won't.")


def test_an_answer_passed_over_does_not_win_a_hedge() -> None:
    slow, refusing = Slow("a", 0.3), Refusing("b")
    chain = FallbackChain([slow, refusing], hedge_after_s=0.05, fallback_on=("refusal",))
    result = chain.generate_sync("hi")
    assert result.content == "a: hi" and result.refusal is None
    assert chain.get_stats().hedges_won == 0


def test_a_hedge_that_meets_the_deadline_says_so() -> None:
    chain = FallbackChain([Slow("a", 0.1, fail=err(ServerError)), Fake("b")], hedge_after_s=0.05)
    with pytest.raises(AllProvidersFailedError, match=r"deadline of 0.03s reached after 1 attempt"):
        chain.generate_sync("hi", deadline_s=0.03)


def test_a_router_without_fallback_keeps_a_session_within_the_tier() -> None:
    fast, flagship = Fake("fast"), Fake("flagship", fail=err(ServerError))
    router = TieredRouter(flagship=flagship, fast=fast, fallback=False)
    assert router.generate_sync("ok", session_key="s").model == "fast"
    with pytest.raises(AllProvidersFailedError):  # fallback=False: the pin does not carry it to another tier
        router.generate_sync("Analyze this philosophical question in depth", session_key="s")
