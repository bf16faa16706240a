"""ProviderPool: spread requests over equivalent providers with a routing strategy."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from ..errors import ConfigurationError
from ..request import GenerateRequest
from .provider import Member, MemberSpec, PoolProvider
from .state import InMemoryState, MemberSnapshot
from .strategies import Candidate, Strategy, strategy_from_name

__all__ = ["ProviderPool"]


class ProviderPool(PoolProvider):
    """Route each request to one healthy member chosen by a strategy; on a failure that another
    member may not have, retry on another (at most ``max_attempts`` tries in all).

    Members in cooldown get no requests while a healthy member exists; when none is healthy, the
    one whose cooldown ends first is tried rather than failing without trying.

    Args:
        providers: the members, each a ``Provider``, ``(provider, weight)`` or with a rate budget
            (``(provider, {"weight": 2, "rpm": 120, "tpm": 90_000})``, see ``PoolProvider``).
        strategy: ``"round_robin"``, ``"random"``, ``"weighted"``, ``"least_loaded"`` (default),
            ``"latency"``, or a ``Strategy`` instance.
        weights: one weight per member for ``"weighted"`` (instead of pairs).
        max_attempts: tries per call across members (default: up to 3).
        **kwargs: state, failure_threshold, cooldown_s, deadline_s, attempt_timeout_s, clock,
            sleep, seed, name, fallback_on, first_chunk_timeout_s, hedge_after_s, max_hedges (see
            ``PoolProvider``).

    Example::

        pool = ProviderPool(providers=[OpenAIProvider(model="gpt-4o-mini"), OllamaProvider("llama3.1")],
                            strategy="least_loaded")
        results = pool.map_sync(["one", "two", "three"], max_workers=8)
    """

    provider_id: ClassVar[str] = "pool"

    def __init__(self, providers: Sequence[MemberSpec], strategy: str | Strategy = "least_loaded", *,
                 weights: Sequence[float] | None = None, max_attempts: int | None = None, **kwargs: Any) -> None:
        if weights is not None:
            if not isinstance(weights, (list, tuple)) or not isinstance(providers, (list, tuple)):
                raise ConfigurationError(f"weights must be a list of numbers, one per provider, got {weights!r}")
            if len(weights) != len(providers):
                raise ConfigurationError(f"{len(weights)} weights for {len(providers)} providers")
            providers = [_weighted(p, w) for p, w in zip(providers, weights, strict=True)]
        super().__init__(providers, **kwargs)
        self.strategy = strategy_from_name(strategy)
        self.strategy.check([m.weight for m in self.members])
        if max_attempts is not None and (isinstance(max_attempts, bool) or not isinstance(max_attempts, int)
                                         or max_attempts < 1):
            raise ConfigurationError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        self.max_attempts = max_attempts or min(3, len(self.members))
        self._max_tries = self.max_attempts
        self._keys = [m.key for m in self.members]
        self._cache = [Candidate(m.position, m.weight, MemberSnapshot()) for m in self.members]
        self._kept: tuple[Any, float, float, tuple[Candidate, ...]] | None = None  # see _rotation
        self._trusted: tuple[object, bool] = (None, False)  # the store _rotation last saw; its version trusted?

    def _plan(self, request: GenerateRequest) -> Iterator[Member]:
        left = self.members
        for _ in range(len(self.members)):  # all of them: one over its budget is not a try
            now = self._clock()
            views = self._rotation(now) if left is self.members and not self.strategy.uses_state else None
            if not views:
                snaps = self.state.snapshot(self._keys if left is self.members else [m.key for m in left])
                views = self._views(left, snaps, now)
            if views:
                member = self.members[self.strategy.select(views, self._rng).position]
            else:
                member = min(left, key=lambda m: snaps[m.key].cooldown_until)
            yield member
            left = tuple(m for m in left if m is not member)
            if not left:
                return

    def _rotation(self, now: float) -> Sequence[Candidate] | None:
        """The members in rotation, for a strategy that does not read their state, without
        reading it on every call: kept while the store's ``health_version`` (``InMemoryState``
        has one) is unchanged and the clock is where the same cooldowns are over and the same
        still running (none seen has ended, and none seen over has begun again: a clock read
        before another thread's, or an injected clock set back). None when the store has none,
        or is made from ``InMemoryState`` with a ``snapshot`` of its own (what that adds, the
        version does not see)."""
        state, trusted = self.state, self._trusted
        if trusted[0] is not state:  # worked out once per store (and again for one put in its place)
            trusted = self._trusted = (state, _versioned(state))
            self._kept = None
        if not trusted[1]:
            return None
        version = state.health_version  # type: ignore[attr-defined]
        kept = self._kept
        if kept is not None and kept[0] == version and kept[1] <= now < kept[2]:
            return kept[3]
        snaps = state.snapshot(self._keys)  # read after the version: a change after it changes it
        views = tuple(self._views(self.members, snaps, now))
        ends = [s.cooldown_until for s in snaps.values()]
        over = max((t for t in ends if t <= now), default=-math.inf)
        back = min((t for t in ends if t > now), default=math.inf)
        self._kept = (version, over, back, views)
        return views

    def _views(self, members: Sequence[Member], snaps: Mapping[str, MemberSnapshot], now: float) -> list[Candidate]:
        """The candidates: ``members`` in rotation, in pool order. A member's view is kept while
        its snapshot is the same object (a store publishing immutable snapshots, as
        ``InMemoryState`` does, changes only the members a call touched), so a selection makes
        new views for those alone, not for every member."""
        cache = self._cache
        views = []
        for m in members:
            snap = snaps[m.key]
            if now >= snap.cooldown_until:
                view = cache[m.position]
                if view.state is not snap:
                    view = cache[m.position] = Candidate(m.position, m.weight, snap)  # a race builds it twice
                views.append(view)
        return views


def _versioned(state: object) -> bool:
    """Does ``state``'s ``health_version`` grow with every change of what its ``snapshot`` says
    of cooldowns? A store's own, yes; one made from ``InMemoryState`` with a ``snapshot`` of its
    own inherits a version that does not see what that adds."""
    if getattr(state, "health_version", None) is None:
        return False
    return not isinstance(state, InMemoryState) or type(state).snapshot is InMemoryState.snapshot


def _weighted(spec: MemberSpec, weight: float) -> MemberSpec:
    """A member spec with ``weights=``'s weight instead of its own (its budget kept)."""
    if isinstance(spec, Mapping):
        return {**spec, "weight": weight}
    if isinstance(spec, tuple) and len(spec) == 2:
        provider, rest = spec
        return (provider, {**rest, "weight": weight}) if isinstance(rest, Mapping) else (provider, weight)
    return spec if isinstance(spec, tuple) else (spec, weight)
