"""Routing strategies: which healthy member takes the next request.

A strategy sees only ``Candidate`` views (position, weight, a state snapshot), never providers
or the store, so any ``MemberState`` backend works with any strategy. Write your own by
subclassing ``Strategy``; pass an instance, or a built-in's name, to ``ProviderPool``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from .._forksafe import lock_for
from ..errors import ConfigurationError
from .state import MemberSnapshot

__all__ = ["STRATEGIES", "Candidate", "LeastLoaded", "LowestLatency", "Random", "RoundRobin", "Strategy", "Weighted",
           "strategy_from_name"]


@dataclass(frozen=True)
class Candidate:
    """A member a strategy may pick.

    Attributes:
        position: the member's index in the pool (stable).
        weight: its configured weight.
        state: its state snapshot.
    """

    position: int
    weight: float
    state: MemberSnapshot


class Strategy:
    """Picks one of the candidates (never an empty list).

    A strategy that picks by position and weight alone sets ``uses_state = False``: a pool may
    then hand it candidates whose ``state`` is not current (the members in rotation are), and
    skip reading every member's state on each call. A subclass of one of those that reads
    ``state`` sets ``uses_state = True`` again.
    """

    name = "custom"
    uses_state = True

    def check(self, weights: Sequence[float]) -> None:
        """Refuse (``ConfigurationError``) a pool whose member weights this strategy cannot use;
        called once, when the pool is built."""

    def select(self, candidates: Sequence[Candidate], rng: random.Random) -> Candidate:
        raise NotImplementedError


class RoundRobin(Strategy):
    """Members in turn, in pool order, skipping those out of rotation.

    While every member is in rotation, a call's turn is a ticket from an ``itertools.count``
    (taking one is atomic under the GIL): no lock, and threads get the members exactly in turn.
    With members out, the turn goes to the first in rotation after the last one chosen, found
    under a lock.
    """

    name = "round_robin"
    uses_state = False

    def __init__(self) -> None:
        self._tickets = itertools.count()
        self._size = 0  # the pool's members, told by check()
        self._next = 0  # the position after the last one chosen
        self._lock = lock_for(self)

    def check(self, weights: Sequence[float]) -> None:
        self._size = len(weights)

    def select(self, candidates: Sequence[Candidate], rng: random.Random) -> Candidate:
        if len(candidates) == self._size:
            turn = next(self._tickets) % self._size
            chosen = candidates[turn]
            if chosen.position == turn:  # candidates in pool order, as a pool gives them
                self._next = turn + 1  # one store: where the turn goes on once members drop out
                return chosen
        with self._lock:
            # The first candidate at or after the cursor, cyclically by pool position.
            after = [c for c in candidates if c.position >= self._next]
            chosen = min(after or candidates, key=lambda c: c.position)
            self._next = chosen.position + 1
            return chosen


class Random(Strategy):
    """Uniformly at random."""

    name = "random"
    uses_state = False

    def select(self, candidates: Sequence[Candidate], rng: random.Random) -> Candidate:
        return rng.choice(list(candidates))


class Weighted(Strategy):
    """At random, in proportion to each member's weight; uniformly when every member left in
    rotation weighs 0 (a zero weight means "only when the others are out")."""

    name = "weighted"
    uses_state = False

    def check(self, weights: Sequence[float]) -> None:
        if not any(weights):
            raise ConfigurationError("weighted strategy needs at least one positive weight")

    def select(self, candidates: Sequence[Candidate], rng: random.Random) -> Candidate:
        weights = [c.weight for c in candidates]
        if not any(weights):
            return rng.choice(list(candidates))
        return rng.choices(list(candidates), weights=weights)[0]


class LeastLoaded(Strategy):
    """The member with the fewest requests in flight; ties broken at random."""

    name = "least_loaded"

    def select(self, candidates: Sequence[Candidate], rng: random.Random) -> Candidate:
        loads = [c.state.in_flight for c in candidates]
        low = min(loads)
        return rng.choice([c for c, load in zip(candidates, loads, strict=True) if load == low])


class LowestLatency(Strategy):
    """The member with the lowest recent latency (an EWMA).

    Members never measured are tried first; with probability ``explore`` another member is
    picked at random, so a slow member that recovered gets noticed.
    """

    name = "latency"

    def __init__(self, explore: float = 0.1) -> None:
        if not 0 <= explore <= 1:
            raise ConfigurationError(f"explore must be between 0 and 1, got {explore}")
        self.explore = explore

    def select(self, candidates: Sequence[Candidate], rng: random.Random) -> Candidate:
        unmeasured = [c for c in candidates if c.state.latency_ewma_s is None]
        if unmeasured:
            return unmeasured[0]
        if len(candidates) > 1 and rng.random() < self.explore:
            return rng.choice(list(candidates))
        return min(candidates, key=lambda c: c.state.latency_ewma_s or 0.0)


STRATEGIES: dict[str, type[Strategy]] = {
    s.name: s for s in (RoundRobin, Random, Weighted, LeastLoaded, LowestLatency)
}


def strategy_from_name(name: str | Strategy) -> Strategy:
    """A built-in strategy by name, or the given instance."""
    if isinstance(name, Strategy):
        return name
    cls = STRATEGIES.get(name)
    if cls is None:
        raise ConfigurationError(f"unknown strategy {name!r}; choose one of {', '.join(sorted(STRATEGIES))} "
                                 "or pass a Strategy instance")
    return cls()
