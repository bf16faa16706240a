"""Members' rate budgets (``rpm=``/``tpm=``) in one process, on an injected clock and sleep:
spread evenly, another member first, waits within the deadline, tokens corrected by usage."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mirror_providers.errors import AllProvidersFailedError, ConfigurationError, RateLimitError, ValidationError
from mirror_providers.pooling import FallbackChain, InMemoryState, ProviderPool
from mirror_providers.pooling.budget import RateBudget, acquire, estimate_tokens, settle
from mirror_providers.request import GenerateRequest
from mirror_providers.types import Message, join_chunks

from ..fakes import Clock, Fake


class Sleeper:
    """A ``sleep`` that moves the clock instead, and remembers each wait."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)


def timed(clock: Clock) -> tuple[list[float], Fake]:
    starts: list[float] = []
    return starts, Fake("a", on_call=lambda: starts.append(clock()))


def test_rpm_spreads_requests_evenly_and_waits_for_room() -> None:
    clock = Clock()
    sleep = Sleeper(clock)
    starts, a = timed(clock)
    pool = ProviderPool([(a, {"rpm": 60})], clock=clock, sleep=sleep)
    for i in range(5):
        assert pool.generate_sync(f"q{i}").content == f"a: q{i}"
    assert [round(t - starts[0], 6) for t in starts] == [0.0, 1.0, 2.0, 3.0, 4.0]  # one a second
    assert sleep.waits == pytest.approx([1.0] * 4)


def test_a_burst_of_one_second_after_a_pause() -> None:
    clock = Clock()
    starts, a = timed(clock)
    pool = FallbackChain([{"provider": a, "rpm": 180}], clock=clock, sleep=Sleeper(clock))
    clock.advance(100)  # idle: the bucket is full, and holds one second's worth (3 requests)
    for i in range(6):
        pool.generate_sync(f"q{i}")
    gaps = [round(b - a_, 6) for a_, b in zip(starts, starts[1:], strict=False)]
    assert gaps == [0.0, 0.0, pytest.approx(1 / 3), pytest.approx(1 / 3), pytest.approx(1 / 3)]


def test_a_member_out_of_budget_sends_the_call_to_another() -> None:
    clock = Clock()
    sleep = Sleeper(clock)
    a, b = Fake("a"), Fake("b")
    pool = ProviderPool([(a, {"rpm": 60}), b], strategy="round_robin", clock=clock, sleep=sleep)
    served = [pool.generate_sync(f"q{i}").model for i in range(6)]
    assert served == ["a", "b", "b", "b", "b", "b"]  # a had room for one; nobody waited for it
    assert sleep.waits == []
    clock.advance(1.0)
    assert pool.generate_sync("later").model == "a"  # room again


def test_a_wait_past_the_deadline_is_not_slept_and_names_the_budget() -> None:
    clock = Clock()
    sleep = Sleeper(clock)
    a = Fake("a")
    pool = ProviderPool([(a, {"rpm": 6})], clock=clock, sleep=sleep, deadline_s=2)
    pool.generate_sync("first")
    with pytest.raises(AllProvidersFailedError) as caught:
        pool.generate_sync("second")
    assert sleep.waits == [] and len(a.calls) == 1
    (attempt,) = caught.value.attempts
    assert attempt.skipped and isinstance(attempt.error, RateLimitError)
    assert attempt.error.retry_after == pytest.approx(10.0)
    assert "rpm=6" in str(caught.value) and "past the call's deadline" in str(caught.value)
    assert "no member could be tried" in str(caught.value)
    clock.advance(8.5)  # now the room comes within the deadline: waited for
    assert pool.generate_sync("third", deadline_s=2).content == "a: third"
    assert sleep.waits == [pytest.approx(1.5)]


def test_tokens_are_estimated_then_corrected_by_the_usage_reported() -> None:
    clock = Clock()
    sleep = Sleeper(clock)
    a = Fake("a")  # every answer reports 3 tokens in all
    pool = ProviderPool([(a, {"tpm": 6000})], clock=clock, sleep=sleep)  # 100 tokens a second
    prompt = "x" * 400  # about 100 tokens
    pool.generate_sync(prompt)
    pool.generate_sync(prompt)  # 97 of the first call's 100 were given back: a short wait
    assert sleep.waits == [pytest.approx(0.03)]
    chunks = list(pool.stream_sync(prompt))  # a stream is corrected by its last chunk's usage
    assert join_chunks(chunks).content.startswith("a: x")
    pool.generate_sync(prompt)
    assert sleep.waits[1:] == [pytest.approx(0.03)] * 2


def test_max_tokens_counts_until_the_usage_says_otherwise() -> None:
    request = GenerateRequest(messages=(Message("user", "y" * 41),), max_tokens=500, system="sys.")
    assert estimate_tokens(request) == 12 + 500
    clock = Clock()
    sleep = Sleeper(clock)
    pool = ProviderPool([(Fake("a"), {"tpm": 60_000})], clock=clock, sleep=sleep)  # 1,000 tokens a second
    for _ in range(3):
        pool.generate_sync("hi", max_tokens=900)
    assert sleep.waits == []  # each reserved ~901 tokens and gave back ~898


def test_a_request_bigger_than_the_tpm_is_refused_by_that_member() -> None:
    a, b = Fake("a"), Fake("b")
    pool = FallbackChain([(a, {"tpm": 1000}), b])
    assert pool.generate_sync("z" * 8000).model == "b"
    assert a.calls == []
    alone = FallbackChain([(Fake("a"), {"tpm": 1000})])
    with pytest.raises(ValidationError, match=r"needs about 2000 tokens .*tpm=1000"):
        alone.generate_sync("z" * 8000)


def test_a_large_request_goes_when_the_bucket_is_full_and_leaves_it_in_debt() -> None:
    clock = Clock()
    sleep = Sleeper(clock)
    pool = ProviderPool([(Fake("a"), {"tpm": 600})], clock=clock, sleep=sleep)  # 10 tokens a second
    big = "w" * 400  # 100 tokens: ten seconds' worth
    pool.generate_sync(big)
    pool.generate_sync(big)
    assert sleep.waits == [pytest.approx(0.3)]  # after 97 tokens back, 3 tokens of debt took 0.3 s


def test_waiting_callers_each_get_their_own_slot() -> None:
    times: list[float] = []
    lock = threading.Lock()

    def record() -> None:
        with lock:
            times.append(time.monotonic())

    a = Fake("a", on_call=record)
    pool = ProviderPool([(a, {"rpm": 600})])  # 10 at once, then one every 100 ms (real time, short)
    threads = [threading.Thread(target=pool.generate_sync, args=("hi",)) for _ in range(14)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(times) == 14
    times.sort()
    assert times[-1] - times[9] >= 4 * 0.1 * 0.95  # the four past the burst each waited for a slot


def test_budget_arithmetic_by_hand() -> None:
    budget = RateBudget(rpm=120, tpm=None)
    tats, wait = acquire((0.0, 0.0), 10.0, budget, 0)
    assert wait == 0.0 and tats[0] == pytest.approx(10.5)
    tats, wait = acquire(tats, 10.0, budget, 0)  # the second of a one-second burst of 2
    assert wait == 0.0 and tats[0] == pytest.approx(11.0)
    same, wait = acquire(tats, 10.0, budget, 0)
    assert same == tats and wait == pytest.approx(0.5)
    assert settle(20.0, 10.0, 60.0, -100) == 10.0  # never more than a full bucket back


@pytest.mark.parametrize("spec, match", [
    ((Fake("a"), {"rpm": 0}), "member 0 rpm must be a number of requests a minute above 0"),
    ((Fake("a"), {"tpm": "lots"}), "member 0 tpm must be a number of tokens"),
    ((Fake("a"), {"rpm": True}), "rpm"),
    ((Fake("a"), {"rpm": float("inf")}), "rpm"),
    ((Fake("a"), {"rpn": 5}), "unknown option.*'rpn'"),
    ((Fake("a"), 1.0, {"rpm": 5}), "tuple of 3"),
    ({"weight": 1}, "member 0 is a NoneType, not a Provider"),
])
def test_bad_member_specs_are_refused(spec: object, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        ProviderPool([spec])  # type: ignore[list-item]


def test_weights_keep_each_members_budget() -> None:
    a, b = Fake("a"), Fake("b")
    pool = ProviderPool([(a, {"rpm": 60}), {"provider": b, "tpm": 6000}], strategy="weighted", weights=[3, 1])
    assert [(m.weight, str(m.budget)) for m in pool.members] == [(3.0, "rpm=60"), (1.0, "tpm=6000")]


def test_a_call_broken_off_while_waiting_for_room_ends_at_once() -> None:
    pool = ProviderPool([(Fake("a"), {"rpm": 1})])  # after the first call: a minute's wait
    pool.generate_sync("first")

    async def main() -> float:
        task = asyncio.ensure_future(pool.generate("second"))
        await asyncio.sleep(0.1)
        start = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - start

    assert asyncio.run(main()) < 5
    state = pool.state
    assert isinstance(state, InMemoryState)
    assert state.snapshot([pool.members[0].key])[pool.members[0].key].in_flight == 0


def test_a_store_that_cannot_keep_budgets_is_refused_for_a_pool_with_them() -> None:
    from .test_state import DictStore

    with pytest.raises(ConfigurationError, match=r"member 1 has a rate budget.*DictStore.*acquire\(\) and settle\(\)"):
        FallbackChain([Fake("a"), (Fake("b"), {"rpm": 10})], state=DictStore())
    assert FallbackChain([Fake("a")], state=DictStore()).generate_sync("hi").content == "a: hi"  # none: fine
