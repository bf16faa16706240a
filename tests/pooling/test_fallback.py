"""FallbackChain: which errors fail over, streams before/after the first chunk, deadlines, cooldown."""

from __future__ import annotations

import asyncio

import pytest

from mirror_providers.errors import (
    AllProvidersFailedError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnectError,
    ContextLengthExceededError,
    ModelNotFoundError,
    OverloadedError,
    ProviderError,
    RateLimitError,
    RequestTimeout,
    ServerError,
    ValidationError,
)
from mirror_providers.pooling import FallbackChain
from mirror_providers.types import join_chunks

from ..fakes import Clock, Fake, err


@pytest.mark.parametrize("cls", [RateLimitError, OverloadedError, ServerError, RequestTimeout, ConnectError,
                                 ModelNotFoundError, AuthenticationError, ContextLengthExceededError])
def test_fails_over_on_errors_another_provider_may_not_have(cls: type[ProviderError]) -> None:
    first, second = Fake("a", fail=err(cls)), Fake("b")
    result = FallbackChain([first, second]).generate_sync("hi")
    assert (result.content, result.model, result.attempts.tries) == ("b: hi", "b", 2)
    assert len(first.calls) == 1


def test_bad_request_is_raised_at_once() -> None:
    first, second = Fake("a", fail=err(BadRequestError)), Fake("b")
    with pytest.raises(BadRequestError):
        FallbackChain([first, second]).generate_sync("hi")
    assert second.calls == []


def test_validation_happens_before_any_member() -> None:
    first = Fake("a")
    with pytest.raises(ValidationError):
        FallbackChain([first]).generate_sync("", max_tokens=5)
    assert first.calls == []


def test_all_failed_lists_every_attempt() -> None:
    chain = FallbackChain([Fake("a", fail=err(RateLimitError, retry_after=2.0)), Fake("b", fail=err(ServerError))])
    with pytest.raises(AllProvidersFailedError) as info:
        chain.generate_sync("hi")
    e = info.value
    assert [(a.provider, a.model, type(a.error)) for a in e.attempts] == [("fake", "a", RateLimitError),
                                                                          ("fake", "b", ServerError)]
    assert all(a.elapsed_s >= 0 for a in e.attempts)
    assert "fake:a" in str(e) and "RateLimitError" in str(e) and isinstance(e, ProviderError)


def test_first_member_answers_in_one_attempt() -> None:
    r = FallbackChain([Fake("a"), Fake("b")]).generate_sync("hi")
    assert (r.model, r.attempts.tries) == ("a", 1)


def test_stream_falls_back_before_the_first_chunk() -> None:
    chain = FallbackChain([Fake("a", fail=err(OverloadedError)), Fake("b")])
    assert join_chunks(chain.stream_sync("hi there")).content == "b: hi there"


def test_stream_failure_after_first_chunk_is_not_spliced() -> None:
    second = Fake("b")
    chain = FallbackChain([Fake("a", fail=err(ServerError), fail_after=2), second])
    got = []
    with pytest.raises(ServerError) as info:
        for c in chain.stream_sync("one two three"):
            got.append(c.content)
    assert got == ["a:", " one"] and info.value.chunks_delivered == 2
    assert second.calls == []


def test_stream_bad_request_raised() -> None:
    with pytest.raises(BadRequestError):
        list(FallbackChain([Fake("a", fail=err(BadRequestError)), Fake("b")]).stream_sync("x"))


def test_async_and_nested_stream() -> None:
    inner = FallbackChain([Fake("a", fail=err(ServerError)), Fake("b")])
    outer = FallbackChain([Fake("x", fail=err(ConnectError)), inner])

    async def main() -> tuple[str, str]:
        r = await outer.generate("hi")
        chunks = [c.content async for c in outer.stream("hi")]
        return r.content, "".join(chunks)

    assert asyncio.run(main()) == ("b: hi", "b: hi")
    assert outer.generate_sync("hi").attempts == 3  # x, then inside: a, b


def test_deadline_across_the_chain() -> None:
    clock = Clock()
    slow = Fake("a", fail=err(RequestTimeout), on_call=lambda: clock.advance(6))
    never = Fake("c")
    chain = FallbackChain([slow, Fake("b", fail=err(ServerError), on_call=lambda: clock.advance(6)), never],
                          deadline_s=10, clock=clock)
    with pytest.raises(AllProvidersFailedError, match="deadline of 10") as info:
        chain.generate_sync("hi")
    assert len(info.value.attempts) == 2 and never.calls == []
    assert slow.timeouts[0] == 10  # each attempt gets what is left of the deadline


def test_attempt_timeout_passed_to_members() -> None:
    clock = Clock()
    a = Fake("a", fail=err(ServerError), on_call=lambda: clock.advance(3))
    b = Fake("b")
    FallbackChain([a, b], attempt_timeout_s=5, deadline_s=7, clock=clock).generate_sync("hi", timeout=20)
    assert a.timeouts == [5] and b.timeouts == [4]  # min(attempt 5, request 20, deadline left 4)


def test_dead_first_member_goes_into_cooldown_and_back() -> None:
    clock = Clock()
    dead = Fake("dead", fail=err(ConnectError))
    chain = FallbackChain([dead, Fake("b")], failure_threshold=2, cooldown_s=30, clock=clock)
    for _ in range(5):
        assert chain.generate_sync("hi").model == "b"
    assert len(dead.calls) == 2  # then skipped while in cooldown
    stats = chain.get_stats().members[0]
    assert stats.status == "cooldown" and stats.cooldown_remaining_s == 30
    clock.advance(31)
    dead.fail = None  # it recovered
    assert chain.generate_sync("hi").model == "dead"
    assert chain.get_stats().members[0].status == "healthy"


def test_all_members_cooling_down_are_still_tried() -> None:
    clock = Clock()
    a, b = Fake("a", fail=err(ServerError)), Fake("b", fail=err(ServerError))
    chain = FallbackChain([a, b], failure_threshold=1, cooldown_s=30, clock=clock)
    with pytest.raises(AllProvidersFailedError):
        chain.generate_sync("hi")
    b.fail = None
    assert chain.generate_sync("hi").model == "b"  # never fails without trying


def test_rate_limit_retry_after_sets_cooldown() -> None:
    clock = Clock()
    limited = Fake("a", fail=err(RateLimitError, retry_after=120.0))
    chain = FallbackChain([limited, Fake("b")], clock=clock)
    chain.generate_sync("hi")
    assert chain.get_stats().members[0].cooldown_remaining_s == 120
    chain.generate_sync("hi")
    assert len(limited.calls) == 1


def test_caller_errors_do_not_count_against_health() -> None:
    clock = Clock()
    a = Fake("a", fail=err(ContextLengthExceededError))
    chain = FallbackChain([a, Fake("b")], failure_threshold=1, clock=clock)
    chain.generate_sync("hi")
    assert chain.get_stats().members[0].status != "cooldown"


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        FallbackChain([])
    with pytest.raises(ConfigurationError, match="not a Provider"):
        FallbackChain(["openai"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="deadline_s"):
        FallbackChain([Fake("a")], deadline_s=0)


def test_identity_capabilities_health() -> None:
    chain = FallbackChain([Fake("a"), Fake("b", fail=err(ServerError))])
    assert chain.model_name == "fake:a, fake:b" and chain.provider_id == "fallback"
    assert chain.capabilities.max_tokens == 1000
    status = chain.health_check_sync()
    assert status.healthy and [m["healthy"] for m in status.detail["members"]] == [True, False]
    assert "Fake" in repr(chain)
