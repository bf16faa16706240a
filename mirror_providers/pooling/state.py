"""Per-member state of a pool behind one small interface, with an in-process default.

Everything a strategy or a pool needs to know about a member (requests in flight, successes,
failures, cooldown, latency estimate) goes through ``MemberState``. ``InMemoryState`` keeps it
in this process; a shared store (Redis, for many workers or hosts) can implement the same five
methods without touching the strategies or the pools.

Health follows a circuit breaker: ``failure_threshold`` consecutive failures put a member in
cooldown for ``cooldown_s`` (a rate limit's ``retry_after`` puts it there at once, for as long as
the vendor asked). When the cooldown ends the member is tried again; one success closes the
circuit, one more failure opens it again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from .._forksafe import lock_for
from ..errors import ProviderError, RateLimitError

__all__ = ["InMemoryState", "MemberSnapshot", "MemberState"]

LATENCY_WINDOW = 200
EWMA_ALPHA = 0.3


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
    """Where a pool keeps its members' state (thread-safe; ``now`` is the pool's clock)."""

    def begin(self, key: str) -> None:
        """A request starts on ``key``."""

    def success(self, key: str, latency_s: float, now: float) -> None:
        """A request on ``key`` succeeded in ``latency_s``."""

    def failure(self, key: str, error: ProviderError, now: float) -> None:
        """A request on ``key`` failed on the provider's side; may start a cooldown."""

    def release(self, key: str) -> None:
        """A request on ``key`` ended with no verdict (the caller stopped, or its input was bad)."""

    def snapshot(self, key: str) -> MemberSnapshot:
        """The member's current state."""


@dataclass
class _Record:
    in_flight: int = 0
    successes: int = 0
    failures: int = 0
    consecutive: int = 0
    cooldown_until: float = 0.0
    ewma: float | None = None
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    last_failure_at: float | None = None


class InMemoryState:
    """The default ``MemberState``: a dict and a lock.

    Args:
        failure_threshold: consecutive failures that start a cooldown.
        cooldown_s: how long a cooldown lasts (a longer ``retry_after`` wins).
    """

    def __init__(self, failure_threshold: int = 3, cooldown_s: float = 30.0) -> None:
        if failure_threshold < 1 or cooldown_s < 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_s >= 0")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._lock = lock_for(self)
        self._records: dict[str, _Record] = {}

    def _get(self, key: str) -> _Record:
        rec = self._records.get(key)
        if rec is None:
            rec = self._records[key] = _Record()
        return rec

    def begin(self, key: str) -> None:
        with self._lock:
            self._get(key).in_flight += 1

    def success(self, key: str, latency_s: float, now: float) -> None:
        with self._lock:
            rec = self._get(key)
            rec.in_flight -= 1
            rec.successes += 1
            rec.consecutive = 0
            rec.cooldown_until = 0.0
            rec.latencies.append(latency_s)
            rec.ewma = latency_s if rec.ewma is None else EWMA_ALPHA * latency_s + (1 - EWMA_ALPHA) * rec.ewma

    def failure(self, key: str, error: ProviderError, now: float) -> None:
        with self._lock:
            rec = self._get(key)
            rec.in_flight -= 1
            rec.failures += 1
            rec.consecutive += 1
            rec.last_failure_at = now
            wait = 0.0
            if rec.consecutive >= self.failure_threshold:
                wait = self.cooldown_s
            if isinstance(error, RateLimitError) and error.retry_after:
                wait = max(wait, error.retry_after)  # the vendor said when to come back
            if wait:
                rec.cooldown_until = max(rec.cooldown_until, now + wait)

    def release(self, key: str) -> None:
        with self._lock:
            self._get(key).in_flight -= 1

    def snapshot(self, key: str) -> MemberSnapshot:
        with self._lock:
            rec = self._get(key)
            return MemberSnapshot(rec.in_flight, rec.successes, rec.failures, rec.consecutive, rec.cooldown_until,
                                  rec.ewma, tuple(rec.latencies), rec.last_failure_at)
