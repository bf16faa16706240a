"""Per-member state of a pool behind one small interface, with an in-process default.

Everything a strategy or a pool needs to know about a member (requests in flight, successes,
failures, cooldown, latency estimate, rate budget) goes through ``MemberState``. ``InMemoryState``
keeps it in this process; a shared store (Redis, for many workers or hosts) implements the same
methods without touching the strategies or the pools. A store only records: when a member goes
out of rotation is decided by the pool's ``CooldownPolicy``, so every store honours it alike.

Health follows a circuit breaker: ``failure_threshold`` consecutive failures put a member in
cooldown for ``cooldown_s`` (a rate limit's ``retry_after`` puts it there at once, for as long as
the vendor asked). When the cooldown ends the member is tried again; one success closes the
circuit, one more failure opens it again.
"""

from __future__ import annotations

import math
import os
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .._forksafe import lock_for
from .._stats import LATENCY_WINDOW
from ..errors import ConfigurationError, ProviderError, RateLimitError
from ..request import MAX_TIMEOUT_S
from .budget import EPSILON_S, RateBudget, acquire, settle

__all__ = ["BudgetState", "CooldownPolicy", "InMemoryState", "MemberSnapshot", "MemberState"]

EWMA_ALPHA = 0.3
EMPTY_BUDGET = (-math.inf, -math.inf)  # both buckets full since ever


@dataclass(frozen=True)
class CooldownPolicy:
    """When a failing member leaves rotation, and for how long.

    Attributes:
        failure_threshold: consecutive failures that start a cooldown.
        cooldown_s: how long a cooldown lasts (a longer ``retry_after`` from the vendor wins).
    """

    failure_threshold: int = 3
    cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        t, c = self.failure_threshold, self.cooldown_s
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise ConfigurationError(f"failure_threshold must be an integer >= 1, got {t!r}")
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 <= c <= MAX_TIMEOUT_S:
            raise ConfigurationError(f"cooldown_s must be a number of seconds from 0 to {MAX_TIMEOUT_S:.0f}, "
                                     f"got {c!r}")

    def cooldown_after(self, consecutive_failures: int, error: ProviderError) -> float:
        """Seconds out of rotation after a failure that made ``consecutive_failures`` in a row
        (0: stays in rotation)."""
        wait = self.cooldown_s if consecutive_failures >= self.failure_threshold else 0.0
        retry_after = error.retry_after if isinstance(error, RateLimitError) else None
        if retry_after and math.isfinite(retry_after):
            wait = max(wait, min(retry_after, MAX_TIMEOUT_S))  # the vendor said when to come back
        return wait


@dataclass(frozen=True)
class MemberSnapshot:
    """One member, as the store sees it now.

    Attributes:
        in_flight: requests running on it.
        successes, failures: finished requests (failures count only provider-side errors).
        consecutive_failures: failures since its last success.
        cooldown_until: clock time before which it is out of rotation (0: in rotation).
        latency_ewma_s: exponentially weighted recent latency, None before the first success.
        latencies_s: the last successful latencies, oldest first.
        last_failure_at: clock time of its last failure, or None.
    """

    in_flight: int = 0
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    cooldown_until: float = 0.0
    latency_ewma_s: float | None = None
    latencies_s: tuple[float, ...] = ()
    last_failure_at: float | None = None

    def available(self, now: float) -> bool:
        return now >= self.cooldown_until


class MemberState(Protocol):
    """Where a pool keeps its members' state (thread-safe; ``now`` is the pool's clock).

    Keys are stable across processes (``Member.key``), so a store shared by many processes sees
    one record per upstream member. Each method is one round trip to the store.
    """

    def begin(self, key: str) -> None:
        """A request starts on ``key``."""

    def success(self, key: str, latency_s: float, now: float) -> None:
        """A request on ``key`` succeeded in ``latency_s``; ends any cooldown."""

    def failure(self, key: str, now: float) -> int:
        """A request on ``key`` failed on the provider's side; returns its consecutive failures."""

    def cool_down(self, key: str, until: float) -> None:
        """Keep ``key`` out of rotation until ``until`` (a later cooldown already set stays)."""

    def release(self, key: str) -> None:
        """A request on ``key`` ended with no verdict (the caller stopped, or its input was bad)."""

    def snapshot(self, keys: Sequence[str]) -> Mapping[str, MemberSnapshot]:
        """The current state of each of ``keys`` (unknown keys: a fresh ``MemberSnapshot``)."""


class BudgetState(MemberState, Protocol):
    """A ``MemberState`` that also keeps members' rate budgets (``rpm=``/``tpm=``): needed by a
    pool with budgets, as ``InMemoryState`` and ``RedisState`` are."""

    def acquire(self, key: str, budget: RateBudget, tokens: int, now: float,
                max_wait: float = 0.0) -> tuple[bool, float]:
        """Take one request and ``tokens`` from ``key``'s rate budget for a request sent when it
        has room: (True, the seconds to wait before sending) when that is at most ``max_wait``
        (the room is then reserved), else (False, the seconds until it has room)."""

    def settle(self, key: str, budget: RateBudget, tokens: int, now: float, requests: int = 0) -> None:
        """Correct ``key``'s budget by ``tokens`` (the usage reported minus the estimate taken)
        and ``requests`` (-1: a reserved turn not used); negative gives back."""


FRESH = MemberSnapshot()
_states: weakref.WeakSet[InMemoryState] = weakref.WeakSet()


def _new_versions_in_child() -> None:
    for state in list(_states):
        state.health_version += 1


class InMemoryState:
    """The default ``MemberState``, for the pools of one process.

    Each member's state is one immutable ``MemberSnapshot``, replaced whole by a writer (copy on
    write, under the lock writers share) and read with no lock at all: a pool choosing a member
    on every call, from many threads, never waits for one, and never copies more than a
    reference per member. Each member read is as of one write; a read of many members is not
    one instant across them (it need not be: the state moves on before a strategy's pick lands).

    ``health_version`` grows each time a member's cooldown changes (after the change is
    published), so a reader may keep what it worked out from the cooldowns it read, having read
    the version first, while the version is the same and no cooldown it saw has ended. A forked
    child's version grows at the fork: one between another thread's publish and its growth of the
    version would leave the child with the cooldown, and the version its reader kept.
    """

    def __init__(self) -> None:
        _states.add(self)
        self._lock = lock_for(self)
        self._snaps: dict[str, MemberSnapshot] = {}  # replaced per member, never mutated
        self._latencies: dict[str, deque[float]] = {}  # the window each snapshot's tuple is made from
        self._budgets: dict[str, tuple[float, float]] = {}  # when its request and token buckets are full
        self.health_version = 0

    def _publish(self, key: str, in_flight: int, successes: int, failures: int, consecutive: int,
                 cooldown_until: float, ewma: float | None, latencies: tuple[float, ...],
                 last_failure_at: float | None) -> None:
        self._snaps[key] = MemberSnapshot(in_flight, successes, failures, consecutive, cooldown_until, ewma,
                                          latencies, last_failure_at)

    def _in_flight(self, key: str, delta: int) -> None:
        s = self._snaps.get(key, FRESH)
        self._publish(key, s.in_flight + delta, s.successes, s.failures, s.consecutive_failures,
                      s.cooldown_until, s.latency_ewma_s, s.latencies_s, s.last_failure_at)

    def begin(self, key: str) -> None:
        with self._lock:
            self._in_flight(key, 1)

    def success(self, key: str, latency_s: float, now: float) -> None:
        with self._lock:
            s = self._snaps.get(key, FRESH)
            window = self._latencies.get(key)
            if window is None:
                window = self._latencies[key] = deque(maxlen=LATENCY_WINDOW)
            window.append(latency_s)
            old = s.latency_ewma_s
            ewma = latency_s if old is None else EWMA_ALPHA * latency_s + (1 - EWMA_ALPHA) * old
            self._publish(key, s.in_flight - 1, s.successes + 1, s.failures, 0, 0.0, ewma, tuple(window),
                          s.last_failure_at)
            if s.cooldown_until:
                self.health_version += 1

    def failure(self, key: str, now: float) -> int:
        with self._lock:
            s = self._snaps.get(key, FRESH)
            self._publish(key, s.in_flight - 1, s.successes, s.failures + 1, s.consecutive_failures + 1,
                          s.cooldown_until, s.latency_ewma_s, s.latencies_s, now)
            return s.consecutive_failures + 1

    def cool_down(self, key: str, until: float) -> None:
        with self._lock:
            s = self._snaps.get(key, FRESH)
            if until > s.cooldown_until:  # a later cooldown already set stays
                self._publish(key, s.in_flight, s.successes, s.failures, s.consecutive_failures, until,
                              s.latency_ewma_s, s.latencies_s, s.last_failure_at)
                self.health_version += 1

    def release(self, key: str) -> None:
        with self._lock:
            self._in_flight(key, -1)

    def acquire(self, key: str, budget: RateBudget, tokens: int, now: float,
                max_wait: float = 0.0) -> tuple[bool, float]:
        with self._lock:
            self._budgets[key], wait = acquire(self._budgets.get(key, EMPTY_BUDGET), now, budget, tokens, max_wait)
            return wait <= max_wait + EPSILON_S, wait

    def settle(self, key: str, budget: RateBudget, tokens: int, now: float, requests: int = 0) -> None:
        with self._lock:
            self._budgets[key] = settle(self._budgets.get(key, EMPTY_BUDGET), now, budget, tokens, requests)

    def snapshot(self, keys: Sequence[str]) -> dict[str, MemberSnapshot]:
        snaps = self._snaps  # no lock: each value is immutable, and a dict read is atomic
        return {key: snaps.get(key, FRESH) for key in keys}


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_new_versions_in_child)
