"""The attempt loop every pool shares: try members in the order a plan gives, fail over on the
errors that say another provider may help, keep member health, honour deadlines.

A pool is a ``Provider``: it implements ``_generate``/``_stream`` over its members' public
``generate_sync``/``stream_sync``, so pools nest and everything ``Provider`` derives (async,
stats, batch helpers) works on them.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .._stats import health_status, percentiles
from ..errors import AllProvidersFailedError, BadRequestError, ConfigurationError, ProviderError, ValidationError
from ..provider import Provider, call_aborted
from ..request import GenerateRequest, check_timeout
from ..types import Capabilities, GenerationResult, HealthStatus, ProviderStats, StreamChunk
from .state import CooldownPolicy, InMemoryState, MemberSnapshot, MemberState

__all__ = ["Attempt", "Member", "PoolProvider"]

MemberSpec = Provider | tuple[Provider, float]


@dataclass(frozen=True)
class Attempt:
    """One failed try, as ``AllProvidersFailedError.attempts`` lists it.

    Attributes:
        provider, model: the member tried.
        error: what it raised (for a skipped member, the ValidationError it would have raised).
        elapsed_s: how long the try took.
        skipped: the member was not tried: it would have refused the request before sending
            (it lacks a capability the request needs, or a limit is exceeded).
    """

    provider: str
    model: str
    error: ProviderError
    elapsed_s: float
    skipped: bool = False  # not tried: the member would have refused the request before sending

    def __str__(self) -> str:
        return f"{self.provider}:{self.model} after {self.elapsed_s:.2f}s: {type(self.error).__name__}: {self.error}"


@dataclass(frozen=True)
class Member:
    """A provider in a pool. ``key`` names it in the state store: the pool's name and the
    provider's ``identity`` (with ``#2``, ``#3``... for repeats), the same in every process that
    builds the pool alike, whatever the members' order."""

    provider: Provider
    weight: float
    position: int
    key: str


def _checked_bound(value: float | None, what: str) -> float | None:
    if value is not None:
        try:
            check_timeout(value, what)
        except ValidationError as exc:
            raise ConfigurationError(exc.message) from None
    return value


def _member_fault(exc: ProviderError) -> bool:
    """Does this error say something about the member's health (not the caller's input)?"""
    return exc.failover_ok and not isinstance(exc, BadRequestError)


class PoolProvider(Provider):
    """Base of FallbackChain, ProviderPool and TieredRouter.

    Args:
        providers: the members, each a ``Provider`` or a ``(provider, weight)`` pair.
        state: where member state lives (default: a new ``InMemoryState``, this pool's alone).
        failure_threshold: consecutive failures that take a member out of rotation.
        cooldown_s: how long it stays out (a rate limit's ``retry_after`` may extend it).
        name: the namespace of its members' keys in ``state`` (default: ``provider_id``); pools
            sharing a store and a name share their members' health.
        deadline_s: the most one call may take across all its attempts.
        attempt_timeout_s: the read timeout given to each attempt.
        clock: monotonic seconds (inject for tests).
        seed: seeds the random choices of strategies (inject for reproducible runs).
    """

    provider_id: ClassVar[str] = "pool"

    def __init__(
        self,
        providers: Sequence[MemberSpec],
        *,
        state: MemberState | None = None,
        failure_threshold: int = 3,
        cooldown_s: float = 30.0,
        deadline_s: float | None = None,
        attempt_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigurationError(f"name must be non-empty text, got {name!r}")
        self.name = name or self.provider_id
        self.members: tuple[Member, ...] = self._members(providers)
        # Passed on to members as their deadline_s and timeout, which take at most MAX_TIMEOUT_S:
        # a larger value would be accepted here and refused by every call.
        self.deadline_s = _checked_bound(deadline_s, "deadline_s")
        self.attempt_timeout_s = _checked_bound(attempt_timeout_s, "attempt_timeout_s")
        self.cooldown = CooldownPolicy(failure_threshold, cooldown_s)
        if not callable(clock):
            raise ConfigurationError(f"clock must be callable, got {clock!r}")
        self.state: MemberState = state if state is not None else InMemoryState()
        self._clock = clock
        self._rng = random.Random(seed)

    def _members(self, providers: Sequence[MemberSpec]) -> tuple[Member, ...]:
        """The checked members, each keyed by the pool's name and its provider's identity."""
        if not isinstance(providers, (list, tuple)):
            raise ConfigurationError(f"{type(self).__name__} takes a list of providers, got {type(providers).__name__}")
        if not providers:
            raise ConfigurationError(f"{type(self).__name__} needs at least one provider")
        members = []
        seen: dict[str, int] = {}
        for i, spec in enumerate(providers):
            provider, weight = spec if isinstance(spec, tuple) else (spec, 1.0)
            if not isinstance(provider, Provider):
                raise ConfigurationError(f"member {i} is a {type(provider).__name__}, not a Provider")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
                raise ConfigurationError(f"member {i} weight must be a finite number >= 0, got {weight!r}")
            ident = f"{self.name}:{provider.identity}"
            seen[ident] = seen.get(ident, 0) + 1
            members.append(Member(provider, float(weight), i, ident + (f"#{seen[ident]}" if seen[ident] > 1 else "")))
        return tuple(members)

    # -- what subclasses decide -----------------------------------------------------------------

    def _plan(self, request: GenerateRequest) -> Iterator[Member]:
        """The members to try for this request, in order (lazily: state may change between tries)."""
        raise NotImplementedError

    def _available_first(self, members: Sequence[Member]) -> list[Member]:
        """Members in rotation in the given order, then those in cooldown, soonest back first:
        a pool never fails without trying when every member is cooling down."""
        now = self._clock()
        snaps = self.state.snapshot([m.key for m in members])
        ready = [m for m in members if snaps[m.key].available(now)]
        cooling = sorted((m for m in members if not snaps[m.key].available(now)),
                         key=lambda m: snaps[m.key].cooldown_until)
        return ready + cooling

    # -- identity -------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return ", ".join(f"{m.provider.provider_id}:{m.provider.model_name}" for m in self.members)

    @property
    def capabilities(self) -> Capabilities:
        """What the pool can do: a feature one member has (a request that needs it skips the
        members without it), the limits every member has (a request may land on any of them)."""
        caps = [m.provider.capabilities for m in self.members]
        return Capabilities(
            supports_streaming=all(c.supports_streaming for c in caps),
            supports_vision=any(c.supports_vision for c in caps),
            supports_function_calling=any(c.supports_function_calling for c in caps),
            max_tokens=min(c.max_tokens for c in caps),
            max_context_window=min(c.max_context_window for c in caps),
            tier=caps[0].tier,
            supports_structured_output=any(c.supports_structured_output for c in caps),
            supports_reasoning=any(c.supports_reasoning for c in caps),
            supports_documents=any(c.supports_documents for c in caps),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}([{', '.join(repr(m.provider) for m in self.members)}])"

    def close(self) -> None:
        for m in self.members:
            m.provider.close()

    # -- the attempt loop -----------------------------------------------------------------------

    def _budget(self, request: GenerateRequest) -> float | None:
        """The call's total bound: the pool's ``deadline_s`` or the call's own, the smaller."""
        bounds = [d for d in (self.deadline_s, request.deadline_s) if d is not None]
        return min(bounds) if bounds else None

    def _timeout(self, request: GenerateRequest, started: float) -> tuple[float | None, float | None]:
        """The read timeout and the time left for the next attempt; the time left is <= 0 when
        the deadline has passed. A member is given the time left as its own ``deadline_s``, so
        none of its retries or back-off sleeps outlives the pool's deadline."""
        limits = [t for t in (request.timeout, self.attempt_timeout_s) if t is not None]
        budget = self._budget(request)
        left = None if budget is None else budget - (self._clock() - started)
        if left is not None:
            limits.append(left)
        return (min(limits) if limits else None), left

    def _all_failed(self, attempts: list[Attempt], started: float, deadline_hit: bool,
                    budget: float | None = None) -> AllProvidersFailedError:
        elapsed = self._clock() - started
        head = (f"deadline of {budget}s reached after {len(attempts)} attempt(s)" if deadline_hit
                else f"all {len(attempts)} attempt(s) failed")
        err = AllProvidersFailedError(f"{head} in {elapsed:.2f}s: " + "; ".join(str(a) for a in attempts), attempts)
        err.provider, err.model = self.provider_id, self.model_name
        return err

    def _failed(self, member: Member, exc: ProviderError, t0: float, attempts: list[Attempt]) -> None:
        now = self._clock()
        if _member_fault(exc) and not call_aborted():  # a call the caller broke off says nothing
            wait = self.cooldown.cooldown_after(self.state.failure(member.key, now), exc)
            if wait:
                self.state.cool_down(member.key, now + wait)
        else:
            self.state.release(member.key)
        attempts.append(Attempt(member.provider.provider_id, member.provider.model_name, exc, now - t0))

    def _tries(self, request: GenerateRequest,
               attempts: list[Attempt]) -> Iterator[tuple[Member, float | None, float | None, float]]:
        """Each member to try, with its read timeout, time left and start time, counted as begun in
        the state store. Raises ``AllProvidersFailedError`` when the deadline passes or the plan
        runs out."""
        started = self._clock()
        budget = self._budget(request)
        tried = 0
        for member in self._plan(request):
            refused = member.provider.unsupported(request)
            if refused is not None:  # it would refuse before sending: skipped, its health untouched
                attempts.append(Attempt(member.provider.provider_id, member.provider.model_name,
                                        ValidationError(f"skipped: {refused.message}", provider=refused.provider,
                                                        model=refused.model), 0.0, skipped=True))
                continue
            timeout, left = self._timeout(request, started)
            if left is not None and left <= 0:
                raise self._all_failed(attempts, started, deadline_hit=True, budget=budget)
            self.state.begin(member.key)
            tried += 1
            yield member, timeout, left, self._clock()
        if not tried and attempts:
            raise self._none_can(attempts)
        raise self._all_failed(attempts, started, deadline_hit=False)

    def _none_can(self, skipped: list[Attempt]) -> ValidationError:
        """Every member would refuse the request: the caller's to fix, so a ValidationError."""
        err = ValidationError(f"no member of this {type(self).__name__} can take the request: "
                              + "; ".join(f"{a.provider}:{a.model}: {a.error.message.removeprefix('skipped: ')}"
                                          for a in skipped))
        err.provider, err.model = self.provider_id, self.model_name
        return err

    def _candidates(self, request: GenerateRequest) -> Sequence[Member]:
        """The members a call could land on (all of them, unless the plan never goes past some)."""
        return self.members

    def unsupported(self, request: GenerateRequest) -> ValidationError | None:
        """A pool refuses only what every member it could use would refuse."""
        refused: list[Attempt] = []
        for m in self._candidates(request):
            r = m.provider.unsupported(request)
            if r is None:
                return None
            refused.append(Attempt(m.provider.provider_id, m.provider.model_name, r, 0.0, skipped=True))
        return self._none_can(refused)

    def _check(self, request: GenerateRequest) -> None:
        """Refused at the call, before any member is tried, when no member could take it (a
        caller's error: the pool's health and stats are not touched)."""
        refused = self.unsupported(request)
        if refused is not None:
            raise refused

    def _generate(self, request: GenerateRequest) -> GenerationResult:
        attempts: list[Attempt] = []
        for member, timeout, left, t0 in self._tries(request, attempts):
            try:
                result = member.provider.generate_sync(request, timeout=timeout, deadline_s=left)
            except ProviderError as exc:
                self._failed(member, exc, t0, attempts)
                if not exc.failover_ok or call_aborted():
                    raise
                continue
            except BaseException:
                self.state.release(member.key)
                raise
            self.state.success(member.key, self._clock() - t0, self._clock())
            failed = sum(not a.skipped for a in attempts)
            return dataclasses.replace(result, attempts=failed + result.attempts)
        raise AssertionError("unreachable: _tries raises when it runs out")

    def _stream(self, request: GenerateRequest) -> Iterator[StreamChunk]:
        attempts: list[Attempt] = []
        for member, timeout, left, t0 in self._tries(request, attempts):
            delivered = 0
            outcome = "released"
            try:
                for chunk in member.provider.stream_sync(request, timeout=timeout, deadline_s=left):
                    delivered += 1
                    yield chunk
                outcome = "ok"
            except ProviderError as exc:
                outcome = "failed"
                self._failed(member, exc, t0, attempts)
                if delivered or not exc.failover_ok or call_aborted():
                    # Never splice two models' answers: the caller learns how much it already has.
                    exc.chunks_delivered = delivered
                    raise
                continue
            finally:
                if outcome == "ok":
                    self.state.success(member.key, self._clock() - t0, self._clock())
                elif outcome == "released":  # the consumer stopped early
                    self.state.release(member.key)
            return

    # -- health and stats -----------------------------------------------------------------------

    def health_check_sync(self) -> HealthStatus:
        """Check every member; healthy when at least one is."""
        start = self._clock()
        checks = [m.provider.health_check_sync() for m in self.members]
        detail: dict[str, Any] = {"members": [
            {"provider": c.provider, "model": c.model, "healthy": c.healthy, "error": c.error} for c in checks]}
        healthy = any(c.healthy for c in checks)
        error = None if healthy else "no member is healthy: " + "; ".join(
            f"{c.provider}:{c.model}: {c.error}" for c in checks)
        return HealthStatus(healthy, self.provider_id, self.model_name, self._clock() - start, error, detail)

    def _member_stats(self, member: Member, snap: MemberSnapshot, now: float) -> ProviderStats:
        status = health_status(snap.successes + snap.failures, snap.consecutive_failures,
                               cooling=not snap.available(now), unhealthy_after=self.cooldown.failure_threshold)
        own = member.provider.get_stats()
        p50, p95, p99 = percentiles(snap.latencies_s, 0.5, 0.95, 0.99)
        return ProviderStats(
            provider=member.provider.provider_id, model=member.provider.model_name, status=status,
            requests=snap.successes + snap.failures + snap.in_flight, successes=snap.successes, errors=snap.failures,
            in_flight=snap.in_flight, consecutive_errors=snap.consecutive_failures,
            latency_p50_s=p50, latency_p95_s=p95, latency_p99_s=p99, last_error=own.last_error,
            last_error_at=own.last_error_at,
            cooldown_remaining_s=None if snap.available(now) else snap.cooldown_until - now,
            members=own.members,
        )

    def get_stats(self) -> ProviderStats:
        """The pool's own counts, and per member: in flight, successes, failures, latency
        percentiles, health (``ProviderStats.status``), cooldown left."""
        now = self._clock()
        snaps = self.state.snapshot([m.key for m in self.members])
        members = tuple(self._member_stats(m, snaps[m.key], now) for m in self.members)
        return dataclasses.replace(super().get_stats(), members=members)
