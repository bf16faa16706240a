"""Pool state ready for a shared store: the pool applies a frozen cooldown policy whatever the
store, reads all members in one round trip per decision, and keys members the same way in every
process (no positions, no object ids, no secrets)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence

import pytest

from mirror_providers._stats import LATENCY_WINDOW
from mirror_providers.errors import AllProvidersFailedError, ConfigurationError, RateLimitError, ServerError
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import (
    CooldownPolicy,
    FallbackChain,
    InMemoryState,
    MemberSnapshot,
    MemberState,
    ProviderPool,
    TieredRouter,
)

from ..fakes import Clock, Fake, err


class DictStore:
    """A store written from the protocol alone (no InMemoryState code), counting round trips."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, float]] = {}
        self.trips: list[str] = []
        self.lock = threading.Lock()

    def _rec(self, key: str) -> dict[str, float]:
        return self.records.setdefault(key, {"in_flight": 0, "ok": 0, "bad": 0, "run": 0, "until": 0.0})

    def begin(self, key: str) -> None:
        with self.lock:
            self.trips.append("begin")
            self._rec(key)["in_flight"] += 1

    def success(self, key: str, latency_s: float, now: float) -> None:
        with self.lock:
            self.trips.append("success")
            r = self._rec(key)
            r.update(in_flight=r["in_flight"] - 1, ok=r["ok"] + 1, run=0, until=0.0)

    def failure(self, key: str, now: float) -> int:
        with self.lock:
            self.trips.append("failure")
            r = self._rec(key)
            r.update(in_flight=r["in_flight"] - 1, bad=r["bad"] + 1, run=r["run"] + 1)
            return int(r["run"])

    def cool_down(self, key: str, until: float) -> None:
        with self.lock:
            self.trips.append("cool_down")
            r = self._rec(key)
            r["until"] = max(r["until"], until)

    def release(self, key: str) -> None:
        with self.lock:
            self.trips.append("release")
            self._rec(key)["in_flight"] -= 1

    def snapshot(self, keys: Sequence[str]) -> Mapping[str, MemberSnapshot]:
        with self.lock:
            self.trips.append("snapshot")
            out = {}
            for k in keys:
                r = self._rec(k)
                out[k] = MemberSnapshot(in_flight=int(r["in_flight"]), successes=int(r["ok"]), failures=int(r["bad"]),
                                        consecutive_failures=int(r["run"]), cooldown_until=r["until"])
            return out


def test_a_custom_store_honours_failure_threshold_and_cooldown() -> None:
    # Before, the threshold lived inside InMemoryState.failure: any other store ignored it silently.
    store: MemberState = DictStore()
    clock = Clock()
    dead = Fake("dead", fail=err(ServerError))
    chain = FallbackChain([dead, Fake("live")], state=store, failure_threshold=2, cooldown_s=10, clock=clock)
    for _ in range(4):
        assert chain.generate_sync("x").model == "live"
    assert len(dead.calls) == 2  # two failures, then out of rotation
    assert chain.get_stats().members[0].status == "cooldown"
    assert chain.get_stats().members[0].cooldown_remaining_s == 10
    clock.advance(10)
    chain.generate_sync("x")
    assert len(dead.calls) == 3  # back for one try after the cooldown


def test_rate_limit_retry_after_cools_down_at_once_in_any_store() -> None:
    store = DictStore()
    clock = Clock()
    limited = Fake("limited", fail=err(RateLimitError, retry_after=45.0))
    chain = FallbackChain([limited, Fake("b")], state=store, failure_threshold=5, clock=clock)
    chain.generate_sync("x")
    assert chain.get_stats().members[0].cooldown_remaining_s == 45
    assert store.trips.count("cool_down") == 1


def test_each_decision_reads_every_member_in_one_round_trip() -> None:
    store = DictStore()
    pool = ProviderPool([Fake(n) for n in "abcdef"], strategy="least_loaded", state=store, seed=1)
    pool.generate_sync("x")
    assert store.trips == ["snapshot", "begin", "success"]
    store.trips.clear()
    pool.get_stats()
    assert store.trips == ["snapshot"]
    store.trips.clear()
    failing = ProviderPool([Fake(n, fail=err(ServerError)) for n in "abc"], strategy="round_robin", state=store)
    with pytest.raises(AllProvidersFailedError):
        failing.generate_sync("x")
    # three attempts: a snapshot of those left, a begin and a failure each
    assert store.trips == ["snapshot", "begin", "failure"] * 3
    store.trips.clear()
    FallbackChain([Fake(n) for n in "abcdef"], state=store).generate_sync("x")
    assert store.trips == ["snapshot", "begin", "success"]


def test_member_keys_are_stable_namespaced_and_free_of_secrets() -> None:
    def members(order: str, name: str | None = None) -> dict[str, str]:
        provs = {"a": OpenAIProvider(api_key="sk-secret-aaaaaaaaaaaaaaaa", model="gpt-4o-mini",
                                     base_url="http://127.0.0.1:9/v1"),
                 "b": OpenAIProvider(api_key="sk-secret-bbbbbbbbbbbbbbbb", model="gpt-4o-mini",
                                     base_url="http://10.0.0.2:8000/v1"),
                 "c": Fake("c")}
        pool = ProviderPool([provs[c] for c in order], name=name)
        return {m.provider.model_name + str(m.provider.identity): m.key for m in pool.members}

    assert members("abc") == members("cba")  # order does not change a member's key
    keys = sorted(members("abc").values())
    assert keys == ["pool:fake:c", "pool:openai:gpt-4o-mini@http://10.0.0.2:8000/v1",
                    "pool:openai:gpt-4o-mini@http://127.0.0.1:9/v1"]
    assert not any("secret" in k for k in keys)
    assert sorted(members("abc", name="search").values())[0] == "search:fake:c"
    assert FallbackChain([Fake("a")]).members[0].key == "fallback:fake:a"
    assert TieredRouter(fast=Fake("a")).members[0].key == "router:fake:a"


def test_repeated_members_get_distinct_keys() -> None:
    a = Fake("a")
    pool = ProviderPool([a, a, Fake("b"), a])
    assert [m.key for m in pool.members] == ["pool:fake:a", "pool:fake:a#2", "pool:fake:b", "pool:fake:a#3"]


def test_a_user_name_keeps_credentials_out_of_keys() -> None:
    from mirror_providers.local import OllamaProvider

    p = OllamaProvider(model="llama3.1", base_url="http://user:pw@127.0.0.1:9")
    key = ProviderPool([p]).members[0].key
    assert "pw" not in key and "user" not in key and key.startswith("pool:ollama:llama3.1@http://")


def test_pools_sharing_a_store_and_name_share_health() -> None:
    store = InMemoryState()
    clock = Clock()
    dead = Fake("dead", fail=err(ServerError))
    first = FallbackChain([dead, Fake("b")], state=store, failure_threshold=1, clock=clock, name="web")
    second = FallbackChain([dead, Fake("b")], state=store, failure_threshold=1, clock=clock, name="web")
    other = FallbackChain([dead, Fake("b")], state=store, failure_threshold=1, clock=clock, name="batch")
    first.generate_sync("x")
    assert second.get_stats().members[0].status == "cooldown"  # the other process's view
    assert other.get_stats().members[0].status == "unknown"  # another namespace
    second.generate_sync("x")
    assert len(dead.calls) == 1


def test_cooldown_policy_is_frozen_and_checked() -> None:
    policy = CooldownPolicy(2, 5.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.cooldown_s = 1.0  # type: ignore[misc]
    assert policy.cooldown_after(1, ServerError("x")) == 0
    assert policy.cooldown_after(2, ServerError("x")) == 5
    assert policy.cooldown_after(1, RateLimitError("x", retry_after=60.0)) == 60
    assert policy.cooldown_after(3, RateLimitError("x", retry_after=1.0)) == 5
    for bad in [dict(failure_threshold=0), dict(failure_threshold=True), dict(cooldown_s=-1),
                dict(cooldown_s=float("nan")), dict(cooldown_s="5")]:
        with pytest.raises(ConfigurationError):
            CooldownPolicy(**bad)  # type: ignore[arg-type]
    pool = FallbackChain([Fake("a")], failure_threshold=4, cooldown_s=7)
    assert pool.cooldown == CooldownPolicy(4, 7)


def test_status_words_are_one_vocabulary() -> None:
    # A provider and a pool member with the same history say the same word.
    clock = Clock()
    flaky = Fake("flaky", fail=err(ServerError))
    chain = FallbackChain([flaky, Fake("b")], failure_threshold=3, cooldown_s=0, clock=clock)
    words = []
    for _ in range(3):
        chain.generate_sync("x")
        words.append((chain.get_stats().members[0].status, flaky.get_stats().status))
    assert words == [("degraded", "degraded"), ("degraded", "degraded"), ("unhealthy", "unhealthy")]
    assert FallbackChain([Fake("c")]).get_stats().members[0].status == Fake("d").get_stats().status == "unknown"


def test_zero_weights_left_in_rotation_are_chosen_uniformly() -> None:
    clock = Clock()
    heavy = Fake("heavy", fail=err(ServerError))
    pool = ProviderPool([(heavy, 1), (Fake("z1"), 0), (Fake("z2"), 0)], strategy="weighted", failure_threshold=1,
                        clock=clock, seed=3, max_attempts=1)
    with pytest.raises(AllProvidersFailedError):
        pool.generate_sync("x")  # heavy is picked (the only weight), fails, cools down
    served = {pool.generate_sync("x").model for _ in range(40)}
    assert served == {"z1", "z2"}


def test_in_memory_snapshots_are_published_whole_and_kept_until_a_write() -> None:
    store = InMemoryState()
    first = store.snapshot(["a", "b"])
    assert first == {"a": MemberSnapshot(), "b": MemberSnapshot()}
    store.begin("a")
    store.success("a", 0.5, 10.0)
    mid = store.snapshot(["a", "b"])
    assert mid["a"] == MemberSnapshot(successes=1, latency_ewma_s=0.5, latencies_s=(0.5,))
    assert first["a"] == MemberSnapshot()  # a snapshot taken before is not changed by the write
    again = store.snapshot(["a"])
    assert again["a"] is mid["a"]  # no write, no copy: the same object
    store.begin("b")
    assert store.snapshot(["a"])["a"] is mid["a"]  # a write to another member leaves it alone
    store.cool_down("a", 50.0)
    store.cool_down("a", 20.0)  # an earlier end does not shorten it
    assert store.snapshot(["a"])["a"].cooldown_until == 50.0


def test_in_memory_latency_window_is_bounded() -> None:
    store = InMemoryState()
    for i in range(LATENCY_WINDOW + 5):
        store.begin("a")
        store.success("a", float(i), 1.0)
    latencies = store.snapshot(["a"])["a"].latencies_s
    assert len(latencies) == LATENCY_WINDOW and latencies[-1] == LATENCY_WINDOW + 4 and latencies[0] == 5


def test_in_memory_counts_stay_exact_under_threads() -> None:
    store = InMemoryState()
    start = threading.Barrier(32)

    def work(i: int) -> None:
        start.wait()
        key = "ab"[i % 2]
        for _ in range(200):
            store.begin(key)
            store.snapshot(["a", "b"])
            if i % 4 == 3:
                store.failure(key, 1.0)
            else:
                store.success(key, 0.01, 1.0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snaps = store.snapshot(["a", "b"])
    assert [s.in_flight for s in snaps.values()] == [0, 0]
    assert snaps["a"].successes == 16 * 200 and snaps["a"].failures == 0
    assert snaps["b"].successes == 8 * 200 and snaps["b"].failures == 8 * 200
