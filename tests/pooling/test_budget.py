"""Members' rate budgets (``rpm=``/``tpm=``) in one process, on an injected clock and sleep:
spread evenly, another member first, waits within the deadline, tokens corrected by usage."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any

import pytest

from mirror_providers.errors import AllProvidersFailedError, ConfigurationError, RateLimitError, ValidationError
from mirror_providers.pooling import FallbackChain, InMemoryState, ProviderPool
from mirror_providers.pooling.budget import RateBudget, acquire, estimate_tokens, settle
from mirror_providers.request import GenerateRequest
from mirror_providers.types import Message, join_chunks

from ..fakes import Clock, Fake
from ..waiting import eventually


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
    assert "rpm=6" in str(caught.value) and "too close to the call's deadline" in str(caught.value)
    assert "no member could be tried" in str(caught.value)
    clock.advance(8.5)  # room in 1.5 s: it would leave the call less than half its 2 s
    with pytest.raises(AllProvidersFailedError):
        pool.generate_sync("third")
    clock.advance(0.6)  # room in 0.9 s: waited for
    assert pool.generate_sync("fourth").content == "a: fourth"
    assert sleep.waits == [pytest.approx(0.9)]


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
    # 45 characters at four a token, two turns' role markers (the system prompt's, the user's) and
    # the reply's priming (GenerateRequest.estimated_input_tokens), then max_tokens
    assert estimate_tokens(request) == 12 + 2 * 5 + 3 + 500
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
    with pytest.raises(ValidationError, match=r"needs about 2008 tokens .*tpm=1000"):  # 2000 + a turn + the reply
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
    # At most 10 at once plus 10 a second: 14 calls span at least 0.4 s, however the threads ran.
    assert times[-1] - times[0] >= 0.4 * 0.99


def test_budget_arithmetic_by_hand() -> None:
    budget = RateBudget(rpm=120, tpm=None)
    tats, wait = acquire((0.0, 0.0), 10.0, budget, 0)
    assert wait == 0.0 and tats[0] == pytest.approx(10.5)
    tats, wait = acquire(tats, 10.0, budget, 0)  # the second of a one-second burst of 2
    assert wait == 0.0 and tats[0] == pytest.approx(11.0)
    same, wait = acquire(tats, 10.0, budget, 0)
    assert same == tats and wait == pytest.approx(0.5)
    tokens = RateBudget(tpm=60.0)
    assert settle((0.0, 20.0), 10.0, tokens, -100) == (0.0, 10.0)  # never more than a full bucket back
    assert settle((0.0, 20.0), 10.0, tokens, 10**15) == (0.0, 70.0)  # nor more than a minute owed
    assert settle((12.0, 0.0), 10.0, budget, 0, requests=-1) == (11.5, 0.0)  # a turn given back


@pytest.mark.parametrize("spec, match", [
    ((Fake("a"), {"rpm": 0}), "member 0 rpm must be a number of requests a minute from 0.001 to 1e"),
    ((Fake("a"), {"rpm": 5e-324}), "member 0 rpm"),
    ((Fake("a"), {"provider": Fake("b")}), "member 0 names its provider twice"),
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


def test_a_hedge_never_waits_for_a_budget_and_never_holds_the_answer_back() -> None:
    a = Fake("a", on_call=lambda: time.sleep(0.1))  # the server side of a slow answer, not a test sleeping
    b = Fake("b")
    pool = FallbackChain([a, (b, {"rpm": 1})], hedge_after_s=0.01)
    clock_start = time.monotonic()
    pool.generate_sync("warm the budget up")  # b's single turn a minute is taken by the hedge, or a answers
    used_b = len(b.calls)
    start = time.monotonic()
    assert pool.generate_sync("hi").content == "a: hi"
    assert time.monotonic() - start < 5  # not the ~60 s b's budget would take
    assert len(b.calls) <= max(used_b, 1) and time.monotonic() - clock_start < 10


def test_members_over_budget_are_not_counted_as_tries() -> None:
    clock = Clock()
    members = [(Fake(f"m{i}"), {"rpm": 6}) for i in range(5)]
    pool = ProviderPool(members, strategy="round_robin", clock=clock, sleep=Sleeper(clock), deadline_s=1)
    served = [pool.generate_sync(f"q{i}").model for i in range(5)]  # one turn each
    assert sorted(served) == ["m0", "m1", "m2", "m3", "m4"]  # max_attempts=3 did not hide m3, m4
    alone = ProviderPool([(Fake("x"), {"rpm": 60}), Fake("y")], strategy="round_robin", max_attempts=1, clock=clock,
                         sleep=Sleeper(clock))
    assert [alone.generate_sync("q").model for _ in range(3)] == ["x", "y", "y"]  # no wait while y has room


def test_a_turn_not_used_is_given_back() -> None:
    pool = ProviderPool([(Fake("a"), {"rpm": 6})])  # one turn every 10 s
    pool.generate_sync("first")

    async def give_up() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pool.generate("second"), 0.2)  # reserves the turn in 10 s, then gives up

    asyncio.run(give_up())
    state = pool.state
    assert isinstance(state, InMemoryState)
    member = pool.members[0]

    def next_turn_in() -> float:
        taken, wait = state.acquire(member.key, member.budget, 0, time.monotonic(), max_wait=0.0)
        assert not taken
        return wait

    # The turn it reserved is returned (by its worker thread, once woken): the next is ~10 s off, not ~20 s.
    assert eventually(lambda: next_turn_in() < 10.0)


def test_absurd_usage_cannot_lock_a_member_out() -> None:
    class Liar(Fake):
        def _generate(self, request: GenerateRequest) -> Any:
            from mirror_providers.types import Usage

            return dataclasses.replace(super()._generate(request), usage=Usage(10**15, 0, 10**15))

    clock = Clock()
    sleep = Sleeper(clock)
    pool = ProviderPool([(Liar("a"), {"tpm": 6000})], clock=clock, sleep=sleep)
    pool.generate_sync("hi")
    assert pool.generate_sync("again").content == "a: again"
    assert len(sleep.waits) == 1 and 58 < sleep.waits[0] <= 60  # a minute owed at most, not millennia
