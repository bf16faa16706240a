"""ProviderPool: strategy distributions, health and cooldown, bounded retries, concurrency, batches."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from mirror_providers.errors import (
    AllProvidersFailedError,
    BadRequestError,
    ConfigurationError,
    ConnectError,
    ServerError,
    ValidationError,
)
from mirror_providers.pooling import (
    Candidate,
    InMemoryState,
    LowestLatency,
    ProviderPool,
    RoundRobin,
    Strategy,
)
from mirror_providers.pooling.state import MemberSnapshot
from mirror_providers.types import GenerationResult, join_chunks

from ..fakes import Clock, Fake, err


def served(pool: ProviderPool, n: int) -> Counter[str]:
    return Counter(pool.generate_sync(f"q{i}").model for i in range(n))


def test_round_robin_is_exact() -> None:
    pool = ProviderPool([Fake("a"), Fake("b"), Fake("c")], strategy="round_robin")
    assert [pool.generate_sync("x").model for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]


def test_round_robin_skips_members_in_cooldown() -> None:
    clock = Clock()
    b = Fake("b", fail=err(ServerError))
    pool = ProviderPool([Fake("a"), b, Fake("c")], strategy="round_robin", failure_threshold=1, clock=clock)
    models = [pool.generate_sync("x").model for _ in range(6)]
    assert models == ["a", "c", "a", "c", "a", "c"] and len(b.calls) == 1


def test_weighted_within_statistical_bounds() -> None:
    pool = ProviderPool([Fake("a"), Fake("b")], strategy="weighted", weights=[3, 1], seed=7)
    counts = served(pool, 4000)
    # expected 3000 / 1000; binomial sd ~ 27: allow 5 sd
    assert abs(counts["a"] - 3000) < 140


def test_weights_as_pairs() -> None:
    pool = ProviderPool([(Fake("a"), 0), (Fake("b"), 1)], strategy="weighted", seed=1)
    assert served(pool, 50) == Counter({"b": 50})


def test_random_within_statistical_bounds_and_reproducible() -> None:
    counts = served(ProviderPool([Fake("a"), Fake("b"), Fake("c")], strategy="random", seed=3), 3000)
    assert all(abs(counts[k] - 1000) < 130 for k in "abc")  # sd ~ 26
    again = served(ProviderPool([Fake("a"), Fake("b"), Fake("c")], strategy="random", seed=3), 3000)
    assert counts == again


def test_least_loaded_avoids_busy_member() -> None:
    gate = threading.Event()
    busy = Fake("busy", gate=gate)
    idle = Fake("idle")
    pool = ProviderPool([busy, idle], strategy="least_loaded", seed=0)
    with ThreadPoolExecutor(1) as ex:
        # Route the first call to "busy" and hold it there.
        pool.state.begin(pool.members[1].key)  # make idle look loaded for one pick
        fut = ex.submit(pool.generate_sync, "hold")
        while not busy.calls:
            threading.Event().wait(0.001)
        pool.state.release(pool.members[1].key)
        assert all(pool.generate_sync("x").model == "idle" for _ in range(5))
        gate.set()
        assert fut.result().model == "busy"


def test_latency_prefers_fast_member_and_explores() -> None:
    clock = Clock()
    slow = Fake("slow", on_call=lambda: clock.advance(2.0))
    fast = Fake("fast", on_call=lambda: clock.advance(0.1))
    pool = ProviderPool([slow, fast], strategy=LowestLatency(explore=0.1), clock=clock, seed=11)
    counts = served(pool, 400)
    assert counts["fast"] > 300 and counts["slow"] >= 10  # mostly fast, but slow still probed


def test_latency_notices_a_recovered_member() -> None:
    clock = Clock()
    delay = {"a": 2.0}
    a = Fake("a", on_call=lambda: clock.advance(delay["a"]))
    b = Fake("b", on_call=lambda: clock.advance(0.5))
    pool = ProviderPool([a, b], strategy="latency", clock=clock, seed=5)
    served(pool, 50)
    assert served(pool, 50)["a"] < 10  # slow: only exploration reaches it
    delay["a"] = 0.05  # a recovers
    served(pool, 300)  # exploration keeps sampling it, so its estimate comes down
    assert served(pool, 100)["a"] > 85  # now the preferred member


def test_unknown_strategy_lists_valid_names() -> None:
    with pytest.raises(ConfigurationError, match="latency, least_loaded, random, round_robin, weighted"):
        ProviderPool([Fake("a")], strategy="fastest")


def test_custom_strategy_object() -> None:
    class Last(Strategy):
        def select(self, candidates: list[Candidate], rng: random.Random) -> Candidate:  # type: ignore[override]
            return candidates[-1]

    assert ProviderPool([Fake("a"), Fake("b")], strategy=Last()).generate_sync("x").model == "b"


def test_retries_on_another_member_bounded() -> None:
    members = [Fake(n, fail=err(ServerError)) for n in "abcd"]
    pool = ProviderPool(members, strategy="round_robin", max_attempts=3)
    with pytest.raises(AllProvidersFailedError) as info:
        pool.generate_sync("x")
    assert len(info.value.attempts) == 3 and sum(len(m.calls) for m in members) == 3
    assert len({a.model for a in info.value.attempts}) == 3  # three different members


def test_failover_result_counts_attempts() -> None:
    pool = ProviderPool([Fake("a", fail=err(ConnectError)), Fake("b")], strategy="round_robin")
    r = pool.generate_sync("x")
    assert (r.model, r.attempts.tries) == ("b", 2)


def test_bad_request_not_retried() -> None:
    b = Fake("b")
    with pytest.raises(BadRequestError):
        ProviderPool([Fake("a", fail=err(BadRequestError)), b], strategy="round_robin").generate_sync("x")
    assert b.calls == []


def test_cooldown_recovery_with_injected_clock() -> None:
    clock = Clock()
    flaky = Fake("flaky", fail=err(ServerError))
    pool = ProviderPool([flaky, Fake("ok")], strategy="round_robin", failure_threshold=2, cooldown_s=10, clock=clock)
    for _ in range(6):
        pool.generate_sync("x")
    assert len(flaky.calls) == 2  # two failures, then out of rotation
    assert pool.get_stats().members[0].status == "cooldown"
    clock.advance(10)
    flaky.fail = None
    models = [pool.generate_sync("x").model for _ in range(4)]
    assert models.count("flaky") == 2  # back in rotation after one probe succeeded
    assert pool.get_stats().members[0].status == "healthy"


def test_probe_failure_reopens_cooldown() -> None:
    clock = Clock()
    flaky = Fake("flaky", fail=err(ServerError))
    pool = ProviderPool([flaky, Fake("ok")], strategy="round_robin", failure_threshold=2, cooldown_s=10, clock=clock)
    for _ in range(4):
        pool.generate_sync("x")
    clock.advance(10)
    for _ in range(4):
        pool.generate_sync("x")
    assert len(flaky.calls) == 3  # one probe, failed, straight back into cooldown


def test_none_healthy_tries_the_one_back_soonest() -> None:
    clock = Clock()
    a, b = Fake("a", fail=err(ServerError)), Fake("b", fail=err(ServerError))
    pool = ProviderPool([a, b], strategy="round_robin", failure_threshold=1, cooldown_s=10, clock=clock)
    with pytest.raises(AllProvidersFailedError):
        pool.generate_sync("x")  # a fails at t, b at t (+0)
    clock.advance(1)
    b.fail = None
    a.fail = None
    r = pool.generate_sync("x")
    assert r.model == "a"  # both cooling; a's cooldown ends first, so it is tried, not refused


def test_stream_through_pool_with_failover() -> None:
    pool = ProviderPool([Fake("a", fail=err(ServerError)), Fake("b")], strategy="round_robin")
    assert join_chunks(pool.stream_sync("hello")).content == "b: hello"
    stats = pool.get_stats()
    assert stats.members[0].errors == 1 and stats.members[1].successes == 1


def test_thread_safety_under_concurrent_load() -> None:
    members = [Fake("a"), Fake("b"), Fake("c", fail=err(ServerError))]
    pool = ProviderPool(members, strategy="least_loaded", failure_threshold=1000, seed=1)
    with ThreadPoolExecutor(32) as ex:
        results = list(ex.map(lambda i: pool.generate_sync(f"q{i}"), range(300)))
    assert len(results) == 300 and all(r.content.endswith(f"q{i}") for i, r in enumerate(results))
    stats = pool.get_stats()
    assert stats.requests == stats.successes == 300 and stats.in_flight == 0
    member = {m.model: m for m in stats.members}
    assert member["a"].successes + member["b"].successes == 300
    assert member["c"].errors == len(members[2].calls)
    assert all(m.in_flight == 0 for m in stats.members)


def test_asyncio_gather_of_100() -> None:
    pool = ProviderPool([Fake("a"), Fake("b")], strategy="round_robin")

    async def main() -> list[GenerationResult]:
        return await asyncio.gather(*(pool.generate(f"q{i}") for i in range(100)))

    results = asyncio.run(main())
    assert [r.content.split(": ")[1] for r in results] == [f"q{i}" for i in range(100)]
    assert Counter(r.model for r in results) == Counter({"a": 50, "b": 50})
    assert pool.get_stats().successes == 100


def test_map_sync_in_order_with_errors_and_progress() -> None:
    bad = Fake("only", fail=err(ServerError))
    good = ProviderPool([Fake("a")])
    progress: list[tuple[int, int]] = []
    results = good.map_sync([f"p{i}" for i in range(20)], max_workers=4, on_progress=lambda d, t: progress.append((d, t)))
    assert [r.content for r in results] == [f"a: p{i}" for i in range(20)]  # type: ignore[union-attr]
    assert progress[-1] == (20, 20) and len(progress) == 20
    mixed = ProviderPool([bad]).map_sync(["x", "y"])
    assert all(isinstance(r, AllProvidersFailedError) for r in mixed)


def test_map_sync_validates_everything_first() -> None:
    f = Fake("a")
    with pytest.raises(ValidationError):
        ProviderPool([f]).map_sync(["ok", ""])
    assert f.calls == []


def test_submit_returns_a_future() -> None:
    fut = ProviderPool([Fake("a")]).submit("hi")
    assert isinstance(fut, Future) and fut.result(5).content == "a: hi"


def test_stats_per_member() -> None:
    clock = Clock()
    pool = ProviderPool([Fake("a", on_call=lambda: clock.advance(0.2)), Fake("b", fail=err(ServerError))],
                        strategy="round_robin", failure_threshold=1, cooldown_s=5, clock=clock)
    pool.generate_sync("x")
    pool.generate_sync("x")
    a, b = pool.get_stats().members
    assert (a.successes, a.errors, a.in_flight, a.status) == (2, 0, 0, "healthy")
    assert a.latency_p50_s == pytest.approx(0.2)
    assert (b.errors, b.status) == (1, "cooldown") and b.cooldown_remaining_s == pytest.approx(4.8)
    assert b.last_error and "boom" in b.last_error


def test_custom_state_store_is_used() -> None:
    class Recording(InMemoryState):
        def __init__(self) -> None:
            super().__init__()
            self.begun: list[str] = []

        def begin(self, key: str) -> None:
            self.begun.append(key)
            super().begin(key)

    store = Recording()
    pool = ProviderPool([Fake("a"), Fake("b")], strategy="round_robin", state=store)
    pool.generate_sync("x")
    pool.generate_sync("x")
    assert store.begun == ["pool:fake:a", "pool:fake:b"]


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="2 weights for 1"):
        ProviderPool([Fake("a")], strategy="weighted", weights=[1, 2])
    with pytest.raises(ConfigurationError, match="positive weight"):
        ProviderPool([(Fake("a"), 0)], strategy="weighted")
    with pytest.raises(ConfigurationError, match="max_attempts"):
        ProviderPool([Fake("a")], max_attempts=0)
    with pytest.raises(ConfigurationError, match="weight"):
        ProviderPool([(Fake("a"), -1)])


@pytest.mark.parametrize("strategy", ["round_robin", "random", "weighted", "least_loaded", "latency"])
def test_selection_under_threads_never_picks_a_member_in_cooldown(strategy: str) -> None:
    steady, flipping, down = [Fake("a"), Fake("b")], [Fake("c"), Fake("d")], Fake("e")
    pool = ProviderPool([*steady, *flipping, down], strategy=strategy, seed=3)
    state, keys = pool.state, [m.key for m in pool.members]
    state.cool_down(keys[4], 1e12)  # out of rotation for the whole test
    running = threading.Event()
    running.set()

    def flip() -> None:  # c and d in and out of cooldown as fast as the store takes it
        while running.is_set():
            for key in keys[2:4]:
                state.cool_down(key, 1e12)
            for key in keys[2:4]:
                state.begin(key)
                state.success(key, 0.001, 0.0)  # a success ends a cooldown

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        with ThreadPoolExecutor(32) as ex:
            answers = list(ex.map(lambda i: pool.generate_sync(f"q{i}").model, range(32 * 40)))
    finally:
        running.clear()
        flipper.join()
    assert down.calls == [] and "e" not in answers
    assert len(answers) == 32 * 40 and set(answers) <= {"a", "b", "c", "d"}
    stats = pool.get_stats()
    assert [m.in_flight for m in stats.members] == [0] * 5
    assert sum(len(m.calls) for m in (*steady, *flipping)) == 32 * 40


def test_round_robin_is_exact_under_threads() -> None:
    members = [Fake(n) for n in "abcd"]
    pool = ProviderPool(members, strategy="round_robin")
    with ThreadPoolExecutor(32) as ex:
        list(ex.map(lambda i: pool.generate_sync(f"q{i}"), range(32 * 40)))
    assert [len(m.calls) for m in members] == [32 * 10] * 4


def test_a_members_candidate_is_kept_while_its_state_is_unchanged() -> None:
    seen: list[list[Candidate]] = []

    class First(Strategy):
        def select(self, candidates: list[Candidate], rng: random.Random) -> Candidate:  # type: ignore[override]
            seen.append(list(candidates))
            return candidates[0]

    pool = ProviderPool([Fake("a"), Fake("b"), Fake("c")], strategy=First())
    pool.generate_sync("x")
    pool.generate_sync("y")
    first, second = seen
    assert first[0] is not second[0] and first[0].state.successes + 1 == second[0].state.successes  # a was used
    assert first[1] is second[1] and first[2] is second[2]  # b and c untouched: the same views


@pytest.mark.parametrize("strategy", ["round_robin", "random", "weighted"])
def test_a_strategy_reading_no_state_sees_cooldowns_begin_and_end(strategy: str) -> None:
    clock = Clock()
    pool = ProviderPool([Fake("a"), Fake("b")], strategy=strategy, clock=clock, seed=1)
    served(pool, 4)
    pool.state.cool_down(pool.members[1].key, clock() + 10)  # as another pool sharing the store would
    assert served(pool, 20) == Counter({"a": 20})
    clock.advance(10)  # the cooldown ends with no write to the store
    assert served(pool, 40)["b"] >= 10



@pytest.mark.parametrize("strategy", ["round_robin", "random", "weighted"])
def test_a_strategy_reading_no_state_sees_a_cooldown_again_when_the_clock_goes_back(strategy: str) -> None:
    # The members in rotation were kept from a read at a later clock (an injected clock set back,
    # or a thread whose clock read came before another's): b's cooldown, over then, is not at now.
    clock = Clock()
    b = Fake("b", fail=err(ServerError))  # fails with no new cooldown: its old one stays recorded
    pool = ProviderPool([Fake("a"), b], strategy=strategy, clock=clock, seed=1, failure_threshold=1000)
    pool.state.cool_down(pool.members[1].key, clock() + 10)
    clock.advance(20)
    assert served(pool, 20) == Counter({"a": 20}) and b.calls  # b back in rotation: tried, failed over
    tried = len(b.calls)
    clock.advance(-15)  # before the end of b's cooldown
    assert served(pool, 20) == Counter({"a": 20}) and len(b.calls) == tried



@pytest.mark.parametrize("strategy", ["round_robin", "random", "weighted"])
def test_a_strategy_reading_no_state_sees_what_a_subclassed_stores_snapshot_adds(strategy: str) -> None:
    # A store made from InMemoryState whose snapshot() adds what it learns elsewhere (another
    # process's cooldowns, say) has InMemoryState's health_version, which never sees those.
    elsewhere: dict[str, float] = {}

    class Overlaid(InMemoryState):
        def snapshot(self, keys: Sequence[str]) -> dict[str, MemberSnapshot]:
            snaps = super().snapshot(keys)
            return {k: dataclasses.replace(s, cooldown_until=max(s.cooldown_until, elsewhere.get(k, 0.0)))
                    for k, s in snaps.items()}

    clock = Clock()
    pool = ProviderPool([Fake("a"), Fake("b")], strategy=strategy, clock=clock, seed=1, state=Overlaid())
    assert served(pool, 20)["b"] >= 5
    elsewhere[pool.members[1].key] = clock() + 10
    assert served(pool, 20) == Counter({"a": 20})

def test_a_strategy_that_reads_state_gets_it_current() -> None:
    class Idlest(RoundRobin):  # a built-in's subclass that reads state says so
        uses_state = True

        def select(self, candidates: list[Candidate], rng: random.Random) -> Candidate:  # type: ignore[override]
            return min(candidates, key=lambda c: (c.state.successes, c.position))

    pool = ProviderPool([Fake("a"), Fake("b"), Fake("c")], strategy=Idlest())
    assert [pool.generate_sync("x").model for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_does_not_keep_members_in_rotation_from_before_a_cooldown_it_inherited() -> None:
    # A fork while another thread cools a member down: the child has the new cooldown but not
    # the health_version grown after it, and must not go on with the rotation kept before.
    published, resume = threading.Event(), threading.Event()

    class Paused(InMemoryState):  # the writer stopped between its publish and the version's growth
        def _publish(self, key: str, *args: float | tuple[float, ...] | None) -> None:
            super()._publish(key, *args)  # type: ignore[arg-type]
            if key == pool.members[1].key and self._snaps[key].cooldown_until and not published.is_set():
                published.set()
                resume.wait(10)

    b = Fake("b")
    pool = ProviderPool([Fake("a"), b], strategy="round_robin", state=Paused())
    served(pool, 2)  # the rotation kept: a and b
    writer = threading.Thread(target=pool.state.cool_down, args=(pool.members[1].key, 1e12))
    writer.start()
    assert published.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: b is in cooldown here
        code = 1
        try:
            before = len(b.calls)
            code = 0 if served(pool, 6) == Counter({"a": 6}) and len(b.calls) == before else 2
        finally:
            os._exit(code)
    resume.set()
    writer.join()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_counts_its_hedges_though_a_thread_counted_one_at_the_fork() -> None:
    released = threading.Event()

    def after_b() -> None:  # a answers once the hedge has asked b
        released.wait(10)

    a, b = Fake("a", on_call=after_b), Fake("b", on_call=released.set)
    pool = ProviderPool([a, b], strategy="round_robin", hedge_after_s=0.001)
    counting, done = threading.Event(), threading.Event()

    def count() -> None:  # a hedge being counted in another thread when the process forks
        with pool._hedges._lock:
            counting.set()
            done.wait(10)

    counter = threading.Thread(target=count)
    counter.start()
    assert counting.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: its hedged call must not wait forever for the count's lock
        code = 1
        try:
            signal.alarm(10)
            pool.generate_sync("x")
            code = 0 if pool.get_stats().hedges == 1 else 2
        finally:
            os._exit(code)
    done.set()
    counter.join()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("seed", [None, 7])
def test_a_forked_childs_random_choices_are_its_own_unless_the_pool_is_seeded(seed: int | None) -> None:
    # Workers forked from one process (a pre-fork server) must not all pick the same members in turn.
    pool = ProviderPool([Fake(n) for n in "abcdefgh"], strategy="random", seed=seed)
    read, write = os.pipe()
    pid = os.fork()
    picks = "".join(pool.generate_sync("x").model for _ in range(16))
    if pid == 0:
        try:
            os.write(write, picks.encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read) as got:
        childs = got.read()
    assert os.WIFEXITED(status) and len(childs) == 16
    assert (childs == picks) is (seed is not None)  # 16 picks of 8 alike by chance: 8**-16
