"""``RedisState`` against a real Redis server this test session starts (Debian's redis-server;
.ci/run installs it). Without one these tests fail, saying why: nothing is skipped silently."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mirror_providers.errors import AllProvidersFailedError, ConfigurationError, RateLimitError
from mirror_providers.pooling import FallbackChain, InMemoryState, ProviderPool, RedisState

from ..fakes import Clock, Fake, err
from ..redis_server import Server, start_redis
from ..waiting import eventually


@pytest.fixture(scope="module")
def redis_server() -> Iterator[Server]:
    server = start_redis()
    yield server
    server.stop()


class WallClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


# A loaded CI machine (three suites at once on two cores) can take longer than the default 0.25 s
# for a round trip, and a process then keeps its state to itself, as it should in an outage: the
# tests that are not about outages give Redis this long.
PATIENT_S = 5.0


def state(server: Server, namespace: str, **kw: object) -> RedisState:
    kw.setdefault("timeout_s", PATIENT_S)
    return RedisState(server.url, namespace=namespace, **kw)  # type: ignore[arg-type]


def test_the_same_operations_give_the_same_snapshot_as_in_memory(redis_server: Server) -> None:
    shared, local = state(redis_server, "parity"), InMemoryState()
    for store in (shared, local):
        store.begin("k")
        store.begin("k")
        store.success("k", 0.5, time.monotonic())
        assert store.failure("k", time.monotonic()) == 1
        store.cool_down("k", time.monotonic() + 30)
        store.cool_down("k", time.monotonic() + 10)  # a later cooldown already set stays
        store.begin("k")
    a, b = shared.snapshot(["k", "never"]), local.snapshot(["k", "never"])
    for snap in (a, b):
        assert (snap["k"].in_flight, snap["k"].successes, snap["k"].failures, snap["k"].consecutive_failures) == (
            1, 1, 1, 1)
        assert 29 < snap["k"].cooldown_until - time.monotonic() <= 30
        assert snap["k"].latency_ewma_s == 0.5 and snap["k"].latencies_s == (0.5,)
    assert a["never"] == b["never"]
    assert "redis://" not in repr(shared)


def _cool_a_member_down(url: str, namespace: str) -> int:
    """In another process: a chain whose first member answers 429 with retry-after 60."""
    chain = FallbackChain([Fake("a", fail=err(RateLimitError, retry_after=60)), Fake("b")], name="site",
                          state=RedisState(url, namespace=namespace, timeout_s=PATIENT_S))
    chain.generate_sync("hi")
    return os.getpid()


def test_a_member_cooled_down_by_one_process_is_skipped_by_the_others(redis_server: Server) -> None:
    with multiprocessing.get_context("spawn").Pool(1) as workers:
        child = workers.apply(_cool_a_member_down, (redis_server.url, "share"))
    assert child != os.getpid()
    a, b = Fake("a"), Fake("b")
    chain = FallbackChain([a, b], name="site", state=state(redis_server, "share"))
    assert chain.generate_sync("hi").content == "b: hi"
    assert a.calls == []  # out of rotation here too: this process never saw it fail
    assert chain.get_stats().members[0].status == "cooldown"
    elsewhere = FallbackChain([Fake("a"), Fake("b")], name="site", state=state(redis_server, "other-namespace"))
    assert elsewhere.generate_sync("hi").content == "a: hi"


def _hold_a_call(url: str, namespace: str) -> None:
    import threading

    pool = ProviderPool([Fake("slow", gate=threading.Event())], name="site",
                        state=RedisState(url, namespace=namespace, lease_s=60, timeout_s=PATIENT_S))
    pool.generate_sync("hi")  # blocks on the gate: the test kills this process first


def test_a_process_killed_mid_call_leaves_no_request_in_flight(redis_server: Server) -> None:
    proc = multiprocessing.get_context("spawn").Process(target=_hold_a_call, args=(redis_server.url, "leases"))
    proc.start()
    clock = WallClock()
    watcher = ProviderPool([Fake("slow")], name="site", state=state(redis_server, "leases", wall_clock=clock))
    try:
        deadline = time.monotonic() + 30
        while watcher.get_stats().members[0].in_flight != 1:  # the child's call has begun
            assert time.monotonic() < deadline and proc.is_alive()
            time.sleep(0.01)
    finally:
        os.kill(proc.pid or 0, signal.SIGKILL)
        proc.join(10)
    assert watcher.get_stats().members[0].in_flight == 1  # its lease is still running
    clock.offset = 61  # the lease ran out
    assert watcher.get_stats().members[0].in_flight == 0


def test_redis_failing_never_fails_a_request(caplog: pytest.LogCaptureFixture) -> None:
    server = start_redis()
    clock = WallClock()
    shared = state(server, "outage", timeout_s=0.2, retry_s=30, wall_clock=clock)
    a, b = Fake("a"), Fake("b")
    chain = FallbackChain([a, b], name="site", state=shared)
    assert chain.generate_sync("before").content == "a: before"
    server.stop()
    caplog.set_level(logging.WARNING, logger="mirror_providers.pooling")
    a.fail = err(RateLimitError, retry_after=60)
    answers = [chain.generate_sync(f"during {i}").content for i in range(5)]
    assert answers == [f"b: during {i}" for i in range(5)]  # every request answered
    assert len(a.calls) == 2  # ... and the cooldown kept in this process meanwhile
    warnings = [r for r in caplog.records if "RedisState" in r.getMessage()]
    assert len(warnings) == 1 and "tries Redis again every 30s" in warnings[0].getMessage()
    stats = chain.get_stats()
    assert all(m.in_flight == 0 for m in stats.members)
    again = start_redis(server.port)
    try:
        clock.offset = 31  # time to try Redis again
        a.fail = None
        b.fail = err(RateLimitError)
        assert chain.generate_sync("after").content in ("a: after", "b: after")
        said = [r.getMessage() for r in caplog.records if "RedisState" in r.getMessage()]
        assert len(said) == 2 and "Redis answers again" in said[1]  # one warning per outage, one when it ends
        fresh = state(again, "outage").snapshot([m.key for m in chain.members])
        assert sum(s.successes + s.failures for s in fresh.values()) >= 1  # written to Redis again
    finally:
        again.stop()


@pytest.mark.parametrize("kwargs, match", [({"lease_s": 0}, "lease_s"), ({"timeout_s": -1}, "timeout_s"),
                                           ({"namespace": "has space"}, "namespace"), ({"url": "http://x"}, "url")])
def test_arguments_are_checked(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RedisState(**kwargs)  # type: ignore[arg-type]


class Flaky:
    """A redis client that fails while ``down`` (a network partition, without losing the data)."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("partitioned")

    def pipeline(self, **kw: object) -> object:
        self._check()
        return self.real.pipeline(**kw)  # type: ignore[attr-defined]

    def zrem(self, *args: object) -> object:
        self._check()
        return self.real.zrem(*args)  # type: ignore[attr-defined]

    def register_script(self, source: str) -> object:
        script = self.real.register_script(source)  # type: ignore[attr-defined]

        def run(**kw: object) -> object:
            self._check()
            return script(**kw)

        return run


def test_a_request_that_ends_while_redis_is_away_leaves_no_lease(redis_server: Server) -> None:
    import redis

    flaky, clock = Flaky(redis.Redis(port=redis_server.port)), WallClock()
    store = RedisState(client=flaky, namespace="orphans", retry_s=30, wall_clock=clock)
    other = state(redis_server, "orphans")  # another process's view
    store.begin("k")
    store.begin("k")
    assert store.flush()
    assert other.snapshot(["k"])["k"].in_flight == 2
    flaky.down = True
    store.success("k", 0.1, time.monotonic())  # ends here, its lease still in Redis
    store.release("k")
    assert store.snapshot(["k"])["k"].in_flight == 0  # this process's view while partitioned
    flaky.down = False
    clock.offset = 31  # Redis is tried again
    store.begin("k")  # ... and the leases left behind are ended with it (writes go within ms)
    assert store.flush()
    assert other.snapshot(["k"])["k"].in_flight == 1
    store.release("k")
    assert store.flush()
    assert other.snapshot(["k"])["k"].in_flight == 0 and store.snapshot(["k"])["k"].in_flight == 0


class Garbled:
    """A client whose server answers every command with the wrong kind of reply."""

    class _Pipe:
        def __init__(self) -> None:
            self.n = 0

        def __getattr__(self, name: str) -> object:
            def queue(*args: object, **kw: object) -> None:
                self.n += 1
            return queue

        def __len__(self) -> int:
            return self.n

        def execute(self) -> list[object]:
            return [b"not what was asked"] * self.n

    def pipeline(self, **kw: object) -> object:
        return self._Pipe()

    def zrem(self, *args: object) -> object:
        return b"?"

    def register_script(self, source: str) -> object:
        return lambda **kw: b"OK"


def test_garbled_replies_are_a_redis_failure_not_the_requests(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mirror_providers.pooling")
    chain = FallbackChain([Fake("a", fail=err(RateLimitError, retry_after=60)), Fake("b")], name="site",
                          state=RedisState(client=Garbled(), namespace="garbled"))
    assert [chain.generate_sync(str(i)).content for i in range(3)] == ["b: 0", "b: 1", "b: 2"]
    assert len([r for r in caplog.records if "RedisState" in r.getMessage()]) == 1
    assert all(m.in_flight == 0 for m in chain.get_stats().members)


def test_one_warning_per_outage_and_no_password_in_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mirror_providers.pooling")
    # A server that does not know AUTH echoes its arguments in the error: the password.
    echoing = start_redis(None, "--rename-command", "AUTH", "", "--rename-command", "HELLO", "")
    try:
        clock = WallClock()
        store = RedisState(echoing.url.replace("redis://", "redis://:hunter2SECRET@"), namespace="pw", retry_s=1,
                           wall_clock=clock)
        chain = FallbackChain([Fake("a")], name="site", state=store)
        for _ in range(5):  # the retries of one long outage
            assert chain.generate_sync("hi").content == "a: hi"
            clock.offset += 2
    finally:
        echoing.stop()
    said = [r.getMessage() for r in caplog.records if "RedisState" in r.getMessage()]
    assert len(said) == 1 and "hunter2SECRET" not in said[0], said
    assert "hunter2SECRET" not in repr(store)


def test_a_client_that_decodes_replies_is_refused(redis_server: Server) -> None:
    import redis

    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisState(client=redis.Redis(port=redis_server.port, decode_responses=True))


def test_budgets_in_redis_give_the_same_answers_as_in_memory(redis_server: Server) -> None:
    import random

    from mirror_providers.pooling.budget import RateBudget

    rng = random.Random(7)
    wall = Clock(time.time())  # the same times for both, moved by hand
    shared = state(redis_server, "budget-same", wall_clock=wall)
    local = InMemoryState()
    seen: set[bool] = set()
    for step in range(300):
        wall.advance(rng.uniform(0, 0.3))
        budget = rng.choice([RateBudget(rpm=120), RateBudget(tpm=6000), RateBudget(rpm=600, tpm=3000)])
        if budget.tpm is not None and rng.random() < 0.3:
            used = rng.randint(-400, 400)
            back = -1 if budget.rpm is not None and rng.random() < 0.5 else 0
            shared.settle("m", budget, used, 0.0, requests=back)
            local.settle("m", budget, used, wall(), requests=back)
            continue
        tokens, max_wait = rng.randint(0, 400), rng.choice([0.0, 0.0, 0.5, 5.0])
        taken, wait = shared.acquire("m", budget, tokens, 0.0, max_wait)
        taken_here, wait_here = local.acquire("m", budget, tokens, wall(), max_wait)
        assert taken == taken_here and wait == pytest.approx(wait_here, abs=1e-3), step
        assert wait >= 0.0 and taken == (wait <= max_wait + 1e-6)
        seen.add(taken)
    assert seen == {True, False}


def _hammer(url: str, namespace: str, start_at: float, run_s: float) -> dict[str, list[float]]:
    """In another process: call a pool with budgets as fast as it lets, from ``start_at`` for
    ``run_s`` (wall-clock), and return when each member got each request."""
    got: dict[str, list[float]] = {"a": [], "b": []}
    a = Fake("a", on_call=lambda: got["a"].append(time.time()))
    b = Fake("b", on_call=lambda: got["b"].append(time.time()))
    pool = ProviderPool([(a, {"rpm": 120}), (b, {"rpm": 60})], name="site", strategy="round_robin",
                        state=RedisState(url, namespace=namespace, timeout_s=PATIENT_S))
    time.sleep(max(0.0, start_at - time.time()))  # all four start together
    while time.time() < start_at + run_s:
        pool.generate_sync("hi", deadline_s=5)
    return got


def test_an_rpm_budget_shared_by_four_processes_holds_within_five_percent(redis_server: Server) -> None:
    run_s = 30.0
    start_at = time.time() + 8  # spawned interpreters need a few seconds to start
    with multiprocessing.get_context("spawn").Pool(4) as workers:
        runs = workers.starmap(_hammer, [(redis_server.url, "rpm", start_at, run_s)] * 4)
    for name, rpm in (("a", 120), ("b", 60)):
        times = sorted(t for run in runs for t in run[name])
        assert times and times[0] >= start_at - 0.01
        within = [t for t in times if t < start_at + run_s]
        expected = rpm / 60 * run_s
        assert abs(len(within) - expected) <= 0.05 * expected, (name, len(within), expected)
        assert all(len(run[name]) >= 3 for run in runs)  # every process got its share, none starved


@pytest.mark.parametrize("junk", [b"nan", b"inf", b"-inf", b"1e300", b"0x7fffffff", b"lots", b""])
def test_junk_in_a_budget_is_no_budget_not_a_lockout_or_an_open_door(redis_server: Server, junk: bytes) -> None:
    import redis

    clock = Clock(1000.0)
    pool = ProviderPool([(Fake("a"), {"rpm": 60})], name="site", clock=clock, sleep=clock.advance,
                        state=state(redis_server, f"junk-{junk.decode() or 'empty'}"))
    where = f"junk-{junk.decode() or 'empty'}:{pool.members[0].key}:budget"
    redis.Redis(port=redis_server.port).hset(where, mapping={"requests": junk, "tokens": junk})
    assert pool.generate_sync("one").content == "a: one"  # read as a full bucket
    with pytest.raises(AllProvidersFailedError, match=r"over its budget \(rpm=60\) for (0\.\d\d|1\.00)s more"):
        # Redis refills by its own clock, so real time may have passed (a loaded machine: 0.33 s)
        pool.generate_sync("two", deadline_s=1)  # ... and the limit holds again
    assert redis.Redis(port=redis_server.port).ttl(where) > 0


def test_writes_reach_redis_without_a_flush(redis_server: Server) -> None:
    pool = FallbackChain([Fake("a")], name="site", state=state(redis_server, "behind"))
    other = state(redis_server, "behind")  # another process's view
    pool.generate_sync("hi")  # its success is written behind the answer, by the flusher
    key = pool.members[0].key
    assert eventually(lambda: other.snapshot([key])[key].successes == 1)
    assert other.snapshot([key])[key].in_flight == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_worker_sends_its_own_writes_not_its_parents(redis_server: Server) -> None:
    shared = state(redis_server, "fork")
    pool = FallbackChain([Fake("a")], name="site", state=shared)
    key = pool.members[0].key
    shared.begin(key)  # the parent's call in flight, its write maybe not sent yet (a pre-fork server)
    pid = os.fork()
    if pid == 0:  # the worker: its calls are counted once, and it never sends the parent's write
        code = 0
        try:
            for _ in range(3):
                pool.generate_sync("hi")
            code = 0 if shared.flush() else 3
        except BaseException:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert shared.flush()
    snap = state(redis_server, "fork").snapshot([key])[key]
    assert (snap.successes, snap.in_flight) == (3, 1)  # the worker's three; the parent's one call in flight
    shared.release(key)
    assert shared.flush() and state(redis_server, "fork").snapshot([key])[key].in_flight == 0


class Slow:
    """A redis client whose round trips run in Redis but answer late while ``delay_s`` is set
    (a stalled server or network: the commands ran, the reply came after the timeout), or not
    at all while ``lost`` is (the socket timed out after Redis ran the commands)."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.delay_s = 0.0
        self.lost = False

    def pipeline(self, **kw: object) -> object:
        pipe = self.real.pipeline(**kw)  # type: ignore[attr-defined]
        execute, owner = pipe.execute, self

        def late(**options: object) -> object:
            import redis

            replies = execute(**options)
            if owner.delay_s:
                time.sleep(owner.delay_s)  # the reply's delay on the wire, not a test sleeping
            if owner.lost:
                raise redis.exceptions.TimeoutError("Timeout reading from socket")
            return replies

        pipe.execute = late
        return pipe


def test_a_round_trip_that_ran_but_answered_late_leaves_no_lease(redis_server: Server) -> None:
    import redis

    slow, clock = Slow(redis.Redis(port=redis_server.port)), WallClock()
    store = RedisState(client=slow, namespace="late", timeout_s=0.1, retry_s=30, wall_clock=clock)
    other = state(redis_server, "late")
    store.snapshot(["k"])
    store.begin("k")
    slow.lost = True
    assert not store.flush()  # the begin ran in Redis, its reply was lost: state is kept here now
    slow.lost = False
    store.success("k", 0.1, time.monotonic())  # ... so the request ends here
    assert store.snapshot(["k"])["k"].in_flight == 0
    clock.offset = 31  # Redis is tried again: the lease that may have reached it is ended
    assert store.flush()
    assert other.snapshot(["k"])["k"].in_flight == 0 and store.snapshot(["k"])["k"].in_flight == 0


def test_a_stalled_round_trip_holds_no_other_caller_past_the_timeout(redis_server: Server) -> None:
    import redis

    slow = Slow(redis.Redis(port=redis_server.port))
    store = RedisState(client=slow, namespace="stall", timeout_s=0.2, retry_s=30)
    store.snapshot(["k"])
    slow.delay_s = 3.0
    stalled = threading.Thread(target=store.snapshot, args=(["k"],))
    stalled.start()
    try:
        assert eventually(lambda: store._send_lock.locked())  # the stalled round trip holds the line
        start = time.monotonic()
        pool = FallbackChain([Fake("a")], name="site", state=store)
        assert pool.generate_sync("hi").content == "a: hi"
        assert time.monotonic() - start < 2.0  # waited at most timeout_s for it, then kept state here
    finally:
        slow.delay_s = 0.0
        stalled.join(10)


def test_a_request_ended_while_redis_is_away_keeps_its_start_and_end_in_order(redis_server: Server) -> None:
    import redis

    flaky, clock = Flaky(redis.Redis(port=redis_server.port)), WallClock()
    store = RedisState(client=flaky, namespace="order", retry_s=30, wall_clock=clock)
    store.snapshot(["k"])
    store.begin("k")  # waiting to be sent when another round trip of the process fails:
    store._down(ConnectionError("another round trip failed"))
    flaky.down = True
    store.begin("k")
    store.success("k", 0.1, time.monotonic())
    store.success("k", 0.1, time.monotonic())
    for _ in range(2):  # (a round trip tried meanwhile keeps what waited here too)
        snap = store.snapshot(["k"])["k"]
        assert (snap.in_flight, snap.successes) == (0, 2)


@pytest.mark.parametrize("junk", [
    {"state": "string"}, {"in-flight": "string"}, {"latencies": "string"},
    {"fields": {"successes": "abc", "consecutive": "-7", "ewma": "nan", "cooldown_until": "1e300"}},
])
def test_junk_in_one_members_keys_is_repaired_and_never_stops_sharing(redis_server: Server, junk: dict[str, Any],
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    import redis

    caplog.set_level(logging.WARNING, logger="mirror_providers.pooling")
    namespace = f"repair-{len(junk)}-{sorted(junk)[0]}-{id(junk)}"
    r = redis.Redis(port=redis_server.port)
    pool = ProviderPool([Fake("a"), Fake("b")], name="site", strategy="round_robin", deadline_s=5,
                        state=state(redis_server, namespace))
    b = f"{namespace}:{pool.members[1].key}"
    for part, value in junk.items():
        if part == "fields":
            r.hset(f"{b}:state", mapping=value)
        else:
            r.set(f"{b}:{part}", value)
    assert [pool.generate_sync(f"q{i}").model for i in range(20)] == ["a", "b"] * 10
    assert isinstance(pool.state, RedisState) and pool.state.flush()
    seen = state(redis_server, namespace).snapshot([m.key for m in pool.members])
    assert [seen[m.key].successes for m in pool.members] == [10, 10]  # all shared, none kept here
    assert all(seen[m.key].in_flight == 0 for m in pool.members)
    assert r.type(f"{b}:state") == b"hash" and not [rec for rec in caplog.records if "RedisState" in rec.getMessage()]


def _forked_calls(url: str, n: int) -> None:
    pool = FallbackChain([Fake("a")], name="site", state=RedisState(url, namespace="fork-exit", timeout_s=PATIENT_S))
    for _ in range(n):
        pool.generate_sync("hi")  # no flush: the process ends with its last writes waiting


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork start method")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_multiprocessing_children_send_their_last_writes(redis_server: Server) -> None:
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_forked_calls, args=(redis_server.url, 5)) for _ in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    key = FallbackChain([Fake("a")], name="site").members[0].key
    snap = state(redis_server, "fork-exit").snapshot([key])[key]
    assert (snap.successes, snap.in_flight) == (20, 0)


def test_scripts_lost_by_redis_leave_nothing_in_flight(redis_server: Server) -> None:
    import redis

    store = state(redis_server, "noscript")
    store.snapshot(["k"])  # the scripts are loaded
    redis.Redis(port=redis_server.port).script_flush()  # a restart or SCRIPT FLUSH loses them
    store.begin("k")  # its script is not there: kept here ...
    store.release("k")  # ... and so is its end (a plain ZREM, which works)
    store.begin("k")
    store.success("k", 0.1, time.monotonic())
    assert store.flush() and store.flush()  # (the scripts are loaded again)
    for _ in range(2):
        assert store.snapshot(["k"])["k"].in_flight == 0
    assert state(redis_server, "noscript").snapshot(["k"])["k"].in_flight == 0
