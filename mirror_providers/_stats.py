"""A provider's counters behind ``get_stats()``: requests, errors, in flight, latency percentiles."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from ._forksafe import lock_for
from .types import Cost, ProviderStats

__all__ = ["LATENCY_WINDOW", "UNHEALTHY_AFTER", "Stats", "health_status", "percentiles"]

LATENCY_WINDOW = 1000  # the latencies kept for percentiles, per provider and per pool member
UNHEALTHY_AFTER = 3  # consecutive failures


def health_status(finished: int, consecutive_failures: int, *, cooling: bool = False,
                  unhealthy_after: int = UNHEALTHY_AFTER) -> str:
    """The one vocabulary of ``ProviderStats.status``, for providers and pool members alike:
    ``unknown`` (nothing finished yet), ``cooldown`` (a pool keeps it out of rotation),
    ``unhealthy`` (``unhealthy_after`` failures in a row), ``degraded`` (its last request failed)
    or ``healthy``."""
    if cooling:
        return "cooldown"
    if not finished:
        return "unknown"
    if consecutive_failures >= unhealthy_after:
        return "unhealthy"
    return "degraded" if consecutive_failures else "healthy"


def percentiles(values: Iterable[float], *qs: float) -> tuple[float | None, ...]:
    """The ``qs`` quantiles of ``values`` (0.5 for the median), each interpolated linearly between
    the two nearest ranks (numpy's default); all None when there are no values."""
    ordered = sorted(values)
    if not ordered:
        return tuple(None for _ in qs)
    out: list[float | None] = []
    for q in qs:
        k = (len(ordered) - 1) * q
        lo = int(k)
        hi = min(lo + 1, len(ordered) - 1)
        out.append(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo))
    return tuple(out)


class Stats:
    """Thread-safe counters behind ``get_stats``."""

    def __init__(self) -> None:
        self._lock = lock_for(self)
        self.requests = self.successes = self.errors = self.in_flight = self.consecutive = 0
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.cost_usd = 0.0
        self.unpriced = 0

    def start(self) -> None:
        with self._lock:
            self.requests += 1
            self.in_flight += 1

    def success(self, latency_s: float) -> None:
        with self._lock:
            self.in_flight -= 1
            self.successes += 1
            self.consecutive = 0
            self.latencies.append(latency_s)

    def cost(self, cost: Cost | None) -> None:
        """Count what a successful call cost (unknown: counted as unpriced, never as 0)."""
        with self._lock:
            if cost is None or cost.total_usd is None:
                self.unpriced += 1
            else:
                self.cost_usd += cost.total_usd

    def failure(self, error: BaseException) -> None:
        with self._lock:
            self.in_flight -= 1
            self.errors += 1
            self.consecutive += 1
            self.last_error = f"{type(error).__name__}: {error}"
            self.last_error_at = time.time()

    def abandoned(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def snapshot(self, provider: str, model: str) -> ProviderStats:
        with self._lock:
            p50, p95, p99 = percentiles(self.latencies, 0.5, 0.95, 0.99)
            return ProviderStats(
                provider=provider, model=model, status=health_status(self.successes + self.errors, self.consecutive),
                requests=self.requests,
                successes=self.successes, errors=self.errors, in_flight=self.in_flight,
                consecutive_errors=self.consecutive,
                latency_p50_s=p50, latency_p95_s=p95, latency_p99_s=p99,
                last_error=self.last_error, last_error_at=self.last_error_at,
                cost_usd=self.cost_usd, unpriced=self.unpriced,
            )
