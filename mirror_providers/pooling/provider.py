"""The attempt loop every pool shares: try members in the order a plan gives, fail over on the
errors that say another provider may help, keep member health, honour deadlines.

A pool is a ``Provider``: it implements ``_generate``/``_stream`` over its members' public
``generate_sync``/``stream_sync``, so pools nest and everything ``Provider`` derives (async,
stats, batch helpers) works on them.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import random
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast

from .. import hooks
from .._call import wait_in_call
from .._forksafe import lock_for
from .._stats import health_status, percentiles
from ..embeddings import EmbedRequest
from ..errors import (
    AllProvidersFailedError,
    BadRequestError,
    CallAbortedError,
    ConfigurationError,
    ContextLengthExceededError,
    DeadlineExceededError,
    ProviderError,
    RateLimitError,
    ValidationError,
)
from ..provider import Provider, call_aborted
from ..request import GenerateRequest, check_timeout
from ..types import (
    Attempt,
    Attempts,
    Capabilities,
    EmbeddingResult,
    GenerationResult,
    HealthStatus,
    ProviderStats,
    StreamChunk,
    TokenCount,
)
from .attempts import CallRecord, FirstChunkWatch, check_fallback_on, passed_over
from .budget import RateBudget, check_rate, estimate_tokens
from .hedge import HedgeCounts, Opened, check_hedge_after, hedge_delay, hedged_generate, hedged_open
from .state import BudgetState, CooldownPolicy, InMemoryState, MemberSnapshot, MemberState

__all__ = ["Attempt", "Member", "PoolProvider"]  # Attempt: from types, where results name it

MemberSpec = Provider | tuple[Provider, float] | tuple[Provider, Mapping[str, Any]] | Mapping[str, Any]
SPEC_FIELDS = ("provider", "weight", "rpm", "tpm")
Traced = TypeVar("Traced", GenerationResult, StreamChunk, EmbeddingResult)
Got = TypeVar("Got")
MAX_BUDGET_WAIT_S = 7 * 24 * 3600.0  # the longest a call without a deadline waits for a member's budget
MAX_STEER_S = 300.0  # the longest a member is kept out of rotation on its rate-limit headers alone
MAX_SESSIONS = 10_000  # sessions a pool remembers the member of, the least recently used dropped
_unseeded: weakref.WeakSet[PoolProvider] = weakref.WeakSet()  # pools whose choices a forked child reseeds


@dataclass(frozen=True)
class Member:
    """A provider in a pool. ``key`` names it in the state store: the pool's name and the
    provider's ``identity`` (with ``#2``, ``#3``... for repeats), the same in every process that
    builds the pool alike, whatever the members' order. ``budget``: its ``rpm=``/``tpm=``."""

    provider: Provider
    weight: float
    position: int
    key: str
    budget: RateBudget = RateBudget()


def _spec(spec: Any, i: int) -> tuple[Any, Any, RateBudget]:
    """A member spec's provider, weight and budget: ``provider``, ``(provider, weight)``,
    ``(provider, {"weight": ..., "rpm": ..., "tpm": ...})`` or ``{"provider": ..., ...}``."""
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise ConfigurationError(f"member {i} must be a provider, (provider, weight) or (provider, {{options}}), "
                                     f"got a tuple of {len(spec)}")
        provider, rest = spec
        fields: Mapping[str, Any] = dict(rest) if isinstance(rest, Mapping) else {"weight": rest}
        if "provider" in fields:
            raise ConfigurationError(f"member {i} names its provider twice: (provider, {{options}}) takes no "
                                     f"\"provider\" option")
        fields = {"provider": provider, **fields}
    elif isinstance(spec, Mapping):
        fields = spec
    else:
        fields = {"provider": spec}
    unknown = [k for k in fields if k not in SPEC_FIELDS]
    if unknown:
        raise ConfigurationError(f"member {i} has unknown option(s) {', '.join(map(repr, unknown))}; "
                                 f"a member takes {', '.join(SPEC_FIELDS)}")
    budget = RateBudget(check_rate(fields.get("rpm"), f"member {i} rpm"),
                        check_rate(fields.get("tpm"), f"member {i} tpm"))
    return fields.get("provider"), fields.get("weight", 1.0), budget


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
        providers: the members, each a ``Provider``, a ``(provider, weight)`` pair, or with a
            rate budget ``(provider, {"weight": 1, "rpm": 120, "tpm": 90_000})`` (or that dict
            with a ``"provider"`` entry). ``rpm``/``tpm`` are requests and tokens a minute the
            pool sends that member at most, spread evenly (see ``budget``), across every process
            sharing its ``state``; a call that would exceed them goes to another member, or
            waits for room within its deadline.
        state: where member state lives (default: a new ``InMemoryState``, this pool's alone).
        failure_threshold: consecutive failures that take a member out of rotation.
        cooldown_s: how long it stays out (a rate limit's ``retry_after`` may extend it).
        name: the namespace of its members' keys in ``state`` (default: ``provider_id``); pools
            sharing a store and a name share their members' health.
        deadline_s: the most one call may take across all its attempts.
        attempt_timeout_s: the read timeout given to each attempt.
        fallback_on: answers that count as a reason to try the next member: ``"content_filter"``
            (the vendor's filter stopped the answer) and ``"refusal"`` (the model refused). When
            every member's answer is passed over, the last one is returned. Streams are not
            passed over (their text has reached the caller by the time the filter says so).
        first_chunk_timeout_s: a streamed member that has not yielded its first chunk by then is
            abandoned (its connection broken) and the next member tried; safe, as nothing of it
            was delivered.
        hedge_after_s: when a member has not answered by then (seconds, or ``"p95"``: its own 95th
            percentile latency, once it has 20 of them), the same request is started on the next
            member too; the first answer wins and the other call is broken off at once. Off by
            default; ``get_stats()`` counts how often hedges fired and won. A stream is hedged on
            its first chunk: the stream whose first chunk comes first goes on.
        max_hedges: hedges per call (default 1).
        clock: monotonic seconds (inject for tests).
        sleep: how a call waits for a member's rate budget (inject for tests; by default the
            wait ends at once when the caller breaks the call off).
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
        fallback_on: Sequence[str] = (),
        first_chunk_timeout_s: float | None = None,
        hedge_after_s: float | str | None = None,
        max_hedges: int = 1,
        sleep: Callable[[float], None] = time.sleep,
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
        for what, fn in (("clock", clock), ("sleep", sleep)):
            if not callable(fn):
                raise ConfigurationError(f"{what} must be callable, got {fn!r}")
        self._sleep = sleep
        self.state: MemberState = state if state is not None else InMemoryState()
        budgeted = [m for m in self.members if m.budget]
        if budgeted and not all(callable(getattr(self.state, n, None)) for n in ("acquire", "settle")):
            raise ConfigurationError(f"member {budgeted[0].position} has a rate budget, which its state store "
                                     f"({type(self.state).__name__}) cannot keep: it needs acquire() and settle() "
                                     f"(see BudgetState)")
        self._clock = clock
        self._rng = random.Random(seed)
        if seed is None:  # a forked child's choices are its own, not its parent's over again
            _unseeded.add(self)
        self.fallback_on = check_fallback_on(fallback_on)
        self.first_chunk_timeout_s = _checked_bound(first_chunk_timeout_s, "first_chunk_timeout_s")
        self.hedge_after_s = check_hedge_after(hedge_after_s)
        if isinstance(max_hedges, bool) or not isinstance(max_hedges, int) or max_hedges < 0:
            raise ConfigurationError(f"max_hedges must be an integer >= 0, got {max_hedges!r}")
        self.max_hedges = max_hedges
        self._hedges = HedgeCounts()
        self._max_tries: int | None = None  # tries per call, when the pool bounds them (ProviderPool)
        self._sessions: OrderedDict[str, str] = OrderedDict()  # session_key -> the key of its member
        self._sessions_lock = lock_for(self)

    def _members(self, providers: Sequence[MemberSpec]) -> tuple[Member, ...]:
        """The checked members, each keyed by the pool's name and its provider's identity."""
        if not isinstance(providers, (list, tuple)):
            raise ConfigurationError(f"{type(self).__name__} takes a list of providers, got {type(providers).__name__}")
        if not providers:
            raise ConfigurationError(f"{type(self).__name__} needs at least one provider")
        members = []
        seen: dict[str, int] = {}
        for i, spec in enumerate(providers):
            provider, weight, budget = _spec(spec, i)
            if not isinstance(provider, Provider):
                raise ConfigurationError(f"member {i} is a {type(provider).__name__}, not a Provider")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
                raise ConfigurationError(f"member {i} weight must be a finite number >= 0, got {weight!r}")
            ident = f"{self.name}:{provider.identity}"
            seen[ident] = seen.get(ident, 0) + 1
            members.append(Member(provider, float(weight), i, ident + (f"#{seen[ident]}" if seen[ident] > 1 else ""),
                                  budget))
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
            supports_embeddings=any(c.supports_embeddings for c in caps),
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

    def _all_failed(self, call: CallRecord, deadline_hit: bool) -> AllProvidersFailedError:
        elapsed = self._clock() - call.started
        tried = sum(not a.skipped for a in call.trace)
        head = (f"deadline of {call.budget}s reached after {tried} attempt(s)" if deadline_hit
                else f"all {tried} attempt(s) failed" if tried else "no member could be tried")
        err = AllProvidersFailedError(f"{head} in {elapsed:.2f}s: " + "; ".join(str(a) for a in call.trace))
        err.attempts = Attempts(call.trace)  # the same trace a result carries (a list, and a count)
        err.provider, err.model = self.provider_id, self.model_name
        return err

    def _failed(self, member: Member, exc: ProviderError, t0: float, call: CallRecord,
                outcome: str = "failed") -> None:
        now = self._clock()
        if _member_fault(exc) and not call_aborted():  # a call the caller broke off says nothing
            wait = self.cooldown.cooldown_after(self.state.failure(member.key, now), exc)
            if wait:
                self.state.cool_down(member.key, now + wait)
        else:
            self.state.release(member.key)
        if isinstance(exc, ContextLengthExceededError):
            call.note_too_long(member)
        call.add(member, exc, now - t0, outcome=outcome)
        if exc.failover_ok and not call_aborted() and not exc.chunks_delivered:
            hooks.emit(self._hooks, "on_failover", lambda: self._event(
                "failover", provider=member.provider.provider_id, model=member.provider.model_name,
                attempt=len(call.tried), elapsed_s=now - t0, status=getattr(exc, "status", None),
                request_id=getattr(exc, "request_id", None), error=type(exc).__name__,
                message=getattr(exc, "message", str(exc)), stream=call.stream))

    def _skip_reason(self, member: Member, request: GenerateRequest, call: CallRecord) -> ProviderError | None:
        """Why this member is not worth trying for this call, or None: it would refuse the
        request before sending, its window is known to be too small, or it is out of rotation
        until after the deadline (a rate limit's ``retry-after``: not slept on)."""
        if member.key not in call.refusals:
            call.refusals[member.key] = member.provider.unsupported(request)
        refused = call.refusals[member.key]
        where = {"provider": member.provider.provider_id, "model": member.provider.model_name}
        if refused is not None:
            return ValidationError(f"skipped: {refused.message}", **where)
        small = call.too_small(member)
        if small is not None:
            return ValidationError(f"skipped: {small}", **where)
        tpm = member.budget.tpm
        if tpm is not None and self._tokens(call) > tpm:
            return ValidationError(f"skipped: the request needs about {call.tokens} tokens (its text and "
                                   f"max_tokens), more than the member's tpm={tpm:g}", **where)
        if call.budget is not None:
            if call.cooldowns is None:  # one read of every member per call, not one per member
                snaps = self.state.snapshot([m.key for m in self.members])
                call.cooldowns = {key: snap.cooldown_until for key, snap in snaps.items()}
            back = call.cooldowns.get(member.key, 0.0)
            if back > call.started + call.budget:
                return DeadlineExceededError(f"skipped: out of rotation for {back - self._clock():.1f}s more, "
                                             f"past the call's deadline", **where)
        return None

    def _others_left(self, request: GenerateRequest, call: CallRecord) -> bool:
        """Would the plan have another member to try after this one?"""
        if self._max_tries is not None and len(call.tried) >= self._max_tries:
            return False
        return any(m.key not in call.passed and self._skip_reason(m, request, call) is None
                   for m in self._candidates(request))

    def _ordered(self, request: GenerateRequest) -> Iterator[Member]:
        """The plan, after the member this call's session is pinned to (while it is in rotation)."""
        key = request.session_key
        if key is not None:
            with self._sessions_lock:
                pinned = self._sessions.get(key)
            member = next((m for m in self._candidates(request) if m.key == pinned), None)  # (router: fallback=)
            if member is not None and self.state.snapshot([member.key])[member.key].available(self._clock()):
                yield member
        yield from self._plan(request)

    def _pin(self, key: str, member: Member) -> None:
        with self._sessions_lock:
            self._sessions[key] = member.key
            self._sessions.move_to_end(key)
            if len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)

    def _tries(self, request: GenerateRequest,
               call: CallRecord) -> Iterator[tuple[Member, dict[str, Any], float] | None]:
        """Each member to try, with its call options (read timeout, time left as its deadline,
        and no retries of its own while another member is left: fail over first) and its start
        time, counted as begun in the state store. Ends when the plan does; raises
        ``AllProvidersFailedError`` when the deadline passes.

        Members over their rate budget come last: the call waits for the one with room first
        (its turn reserved, so waiting callers are served in order) when that leaves at least
        half the time left for the call itself. A hedge never waits: asked for a try while
        ``call.hedging``, this yields None instead and keeps the waiting for the call."""
        deferred: dict[str, tuple[Member, float]] = {}  # over budget: key -> (member, when it has room)
        for member in self._ordered(request):
            if self._max_tries is not None and len(call.tried) >= self._max_tries:
                return
            if member.key in call.passed or member.key in deferred:
                continue
            why = self._skip_reason(member, request, call)
            if why is not None:  # passed over: its health untouched
                call.skip(member, why)
                continue
            taken, wait = self._take_budget(member, request, call, 0.0)
            if not taken:  # another member first; this one is waited for if none takes the call
                deferred[member.key] = (member, self._clock() + wait)
                continue
            yield self._begun(member, request, call)
        while deferred:  # every member with room was tried: wait for the one with room first
            if self._max_tries is not None and len(call.tried) >= self._max_tries:
                return
            if call.hedging:
                yield None
                continue
            member, _ = deferred.pop(min(deferred, key=lambda k: deferred[k][1]))
            _, left = self._timeout(request, call.started)
            limit = MAX_BUDGET_WAIT_S if left is None else max(left, 0.0) / 2
            taken, wait = self._take_budget(member, request, call, limit)
            if not taken:
                reason = ("too close to the call's deadline to leave it time" if left is not None
                          else f"longer than a call waits ({MAX_BUDGET_WAIT_S:.0f}s)")
                call.skip(member, RateLimitError(f"skipped: over its budget ({member.budget}) for {wait:.2f}s more, "
                                                 f"{reason}", provider=member.provider.provider_id,
                                                 model=member.provider.model_name, retry_after=wait))
                continue
            if wait and wait_in_call(wait, self._sleep):
                self._give_back(member, call)
                raise CallAbortedError("the call was aborted by its caller while it waited for a member's rate budget")
            yield self._begun(member, request, call)

    def _event(self, kind: str, **fields: Any) -> hooks.HookEvent:
        fields.setdefault("level", "pool")
        fields.setdefault("pool", self.name)
        return super()._event(kind, **fields)

    def _begun(self, member: Member, request: GenerateRequest,
               call: CallRecord) -> tuple[Member, dict[str, Any], float]:
        """A try of ``member`` starts: its call options and start time, counted as begun in the
        state store; raises ``AllProvidersFailedError`` when the deadline has passed."""
        timeout, left = self._timeout(request, call.started)
        if left is not None and left <= 0:
            raise self._all_failed(call, deadline_hit=True)
        call.passed.add(member.key)
        call.tried.add(member.key)  # before asking what is left: this try counts towards max_attempts
        options: dict[str, Any] = {"timeout": timeout, "deadline_s": left}
        if self._others_left(request, call):
            options["max_retries"] = 0
        self.state.begin(member.key)
        hooks.emit(self._hooks, "on_request", lambda: self._event(
            "request", provider=member.provider.provider_id, model=member.provider.model_name,
            attempt=len(call.tried), stream=call.stream))
        return member, options, self._clock()

    def _tokens(self, call: CallRecord) -> int:
        """The call's token estimate, made once."""
        if call.tokens is None:
            call.tokens = estimate_tokens(call.request) if call.request is not None else 0
        return call.tokens

    def _take_budget(self, member: Member, request: GenerateRequest, call: CallRecord,
                     max_wait: float) -> tuple[bool, float]:
        """Room for this call in ``member``'s budget within ``max_wait`` seconds: (True, the wait
        before sending), room reserved; else (False, the seconds until there is room). A member
        without a budget always has room."""
        if not member.budget:
            return True, 0.0
        tokens = self._tokens(call) if member.budget.tpm is not None else 0
        return cast(BudgetState, self.state).acquire(member.key, member.budget, tokens, self._clock(), max_wait)

    def _give_back(self, member: Member, call: CallRecord) -> None:
        """A turn reserved in ``member``'s budget will not be used: its request and tokens back."""
        tokens = call.tokens if member.budget.tpm is not None and call.tokens is not None else 0
        cast(BudgetState, self.state).settle(member.key, member.budget, -tokens, self._clock(), requests=-1)

    def _settle(self, member: Member, answer: GenerationResult | StreamChunk | EmbeddingResult,
                call: CallRecord) -> None:
        """A member answered: with ``tpm=``, its budget corrected by the tokens the answer used;
        when the vendor's rate-limit headers say a call like this one would not fit now, out of
        rotation until it would (steered away from before a 429, without counting a failure)."""
        usage, limits = answer.usage, answer.rate_limits
        if member.budget.tpm is not None and usage is not None and call.tokens is not None:
            used = usage.total_tokens or usage.input_tokens + usage.output_tokens
            if used != call.tokens:
                cast(BudgetState, self.state).settle(member.key, member.budget, used - call.tokens, self._clock())
        if limits is not None:
            tokens = self._tokens(call)
            wait = limits.room_in(tokens, tokens - (call.request.max_tokens or 0) if call.request else None)
            if wait > 0:
                self.state.cool_down(member.key, self._clock() + min(wait, MAX_STEER_S))

    def _exhausted(self, call: CallRecord) -> ProviderError:
        """The plan ran out: every member failed, or none could take the request."""
        if not call.tried and call.trace and all(isinstance(a.error, ValidationError) for a in call.trace):
            return self._none_can(call.trace)
        return self._all_failed(call, deadline_hit=False)

    def _none_can(self, skipped: Sequence[Attempt]) -> ValidationError:
        """Every member would refuse the request: the caller's to fix, so a ValidationError."""
        err = ValidationError(f"no member of this {type(self).__name__} can take the request: "
                              + "; ".join(f"{a.provider}:{a.model}: "
                                          f"{getattr(a.error, 'message', a.reason).removeprefix('skipped: ')}"
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

    def _check_embed(self, request: EmbedRequest) -> None:
        """Refused at the call when no member could take it (one without embeddings, Anthropic,
        is skipped with its reason in the trace)."""
        self._check(request)

    def _call(self, request: GenerateRequest) -> CallRecord:
        return CallRecord(self._clock(), self._budget(request), session_key=request.session_key, request=request)

    def _traced(self, result: Traced, member: Member, elapsed_s: float, call: CallRecord) -> Traced:
        """The answer (or a stream's last chunk) with this call's trace: the members passed
        before, then the answer's own (a nested pool's trace, or this member's success)."""
        inner: Any = result.attempts
        own: tuple[Attempt, ...] = tuple(inner) if isinstance(inner, Attempts) and inner else (
            Attempt(member.provider.provider_id, member.provider.model_name, None, elapsed_s),)
        return dataclasses.replace(result, attempts=Attempts((*call.trace, *own)))

    def _answered(self, member: Member, result: GenerationResult, t0: float,
                  call: CallRecord) -> GenerationResult | None:
        """A member answered: its success recorded, and its answer traced, or None when
        ``fallback_on`` passes it over (kept as ``call.filtered``)."""
        now = self._clock()
        self.state.success(member.key, now - t0, now)
        self._settle(member, result, call)
        if call.session_key is not None:
            self._pin(call.session_key, member)
        why = passed_over(result, self.fallback_on)
        if why is None:
            return self._traced(result, member, now - t0, call)
        call.add(member, None, now - t0, outcome="filtered", reason=why)
        call.filtered = result
        return None

    def _hedge_for(self, member: Member, request: GenerateRequest, call: CallRecord) -> float | None:
        """When to hedge this try, counted as a hedged try of the call (None: not hedged)."""
        if self.hedge_after_s is None or call.hedges >= self.max_hedges or not self._others_left(request, call):
            return None
        delay = hedge_delay(self.hedge_after_s, self.state.snapshot([member.key])[member.key].latencies_s)
        if delay is not None:
            call.hedges += 1
        return delay

    def _first(self, request: GenerateRequest, call: CallRecord, once: Callable[..., Got | None],
               hedged: Callable[..., Got | None]) -> Got | None:
        """Try the plan's members in turn, each ``once`` or, when it is to be hedged, ``hedged``,
        until one gives something (an answer, an opened stream); None when the plan ran out."""
        tries = self._tries(request, call)
        for got_try in tries:
            if got_try is None:  # (only a hedge asks while call.hedging)
                continue
            member, options, t0 = got_try
            delay = self._hedge_for(member, request, call)
            got = (hedged(self, request, call, tries, (member, options, t0), delay) if delay is not None
                   else once(member, request, options, t0, call))
            if got is not None:
                return got
        return None

    def _generate(self, request: GenerateRequest) -> GenerationResult:
        call = self._call(request)
        answer = self._first(request, call, self._try_once, hedged_generate)
        if answer is not None:
            return answer
        if call.filtered is not None:  # every member filtered or refused: the last answer stands
            return dataclasses.replace(call.filtered, attempts=Attempts(call.trace))
        raise self._exhausted(call)

    def _try_once(self, member: Member, request: GenerateRequest, options: dict[str, Any], t0: float,
                  call: CallRecord) -> GenerationResult | None:
        """One unhedged try: the answer (traced), or None when it failed with an error another
        member may not have, or was passed over (each recorded)."""
        result = self._attempt(member, t0, call, lambda: member.provider.generate_sync(request, **options))
        return None if result is None else self._answered(member, result, t0, call)

    def _attempt(self, member: Member, t0: float, call: CallRecord, send: Callable[[], Got]) -> Got | None:
        """Run one try's ``send``: its answer, or None when it failed with an error another
        member may not have (recorded; any other error is raised)."""
        try:
            return send()
        except ProviderError as exc:
            self._failed(member, exc, t0, call)
            if not exc.failover_ok or call_aborted():
                raise
            return None
        except BaseException:
            self.state.release(member.key)
            raise

    def _embed(self, request: EmbedRequest) -> EmbeddingResult:
        """The whole call goes to one member at a time (its vectors all from one model: a call
        is never split over members), failing over as a generation does. Not hedged."""
        call = self._call(request)
        answer = self._first(request, call, self._embed_once,
                             lambda pool, request, call, tries, got_try, delay: self._embed_once(
                                 got_try[0], request, got_try[1], got_try[2], call))
        if answer is None:
            raise self._exhausted(call)
        return answer

    def _embed_once(self, member: Member, request: GenerateRequest, options: dict[str, Any], t0: float,
                    call: CallRecord) -> EmbeddingResult | None:
        assert isinstance(request, EmbedRequest)
        settings = {"max_retries": request.max_retries, **options}  # the pool's options win, as in generate
        result = self._attempt(member, t0, call, lambda: member.provider.embed_sync(
            request.texts, model=request.model, dimensions=request.dimensions, batch_size=request.batch_size,
            extra=request.extra or None, **settings))
        if result is None:
            return None
        now = self._clock()
        self.state.success(member.key, now - t0, now)
        self._settle(member, result, call)
        return self._traced(result, member, now - t0, call)

    def _stream(self, request: GenerateRequest) -> Iterator[StreamChunk]:
        call = self._call(request)
        call.stream = True
        opened = self._first(request, call, self._open, hedged_open)
        if opened is None:
            raise self._exhausted(call)
        yield from self._rest(request, call, opened)

    def _open(self, member: Member, request: GenerateRequest, options: dict[str, Any], t0: float,
              call: CallRecord) -> Opened | None:
        """A member's stream up to its first chunk (the part a pool may still fail over from,
        given up on after ``first_chunk_timeout_s``); None when it failed before it (recorded)."""
        chunks = member.provider.stream_sync(request, **options)
        watch = FirstChunkWatch(chunks, self.first_chunk_timeout_s)
        try:
            first = next(chunks, None)
            if first is not None and not watch.arrived():
                raise watch.error()  # it came as the watch gave up: the try is abandoned
        except ProviderError as exc:
            chunks.close()
            self._not_opened(member, exc, t0, call, watch)
            return None
        except BaseException:
            chunks.close()
            self.state.release(member.key)
            raise
        finally:
            watch.stop()
        return Opened(member, chunks, first, t0)

    def _record_not_opened(self, member: Member, exc: ProviderError, t0: float, call: CallRecord,
                           watch: FirstChunkWatch | None = None) -> ProviderError:
        """A stream failed before its first chunk: recorded; returns its error (a watch that gave
        up on it names its own, not the abort's)."""
        error, outcome = exc, "failed"
        if watch is not None and watch.fired:
            error, outcome = watch.error(), "abandoned"
            error.__cause__ = exc
        self._failed(member, error, t0, call, outcome)
        return error

    def _not_opened(self, member: Member, exc: ProviderError, t0: float, call: CallRecord,
                    watch: FirstChunkWatch | None = None) -> None:
        """A stream failed before its first chunk: recorded, and raised unless another member may
        do better."""
        error = self._record_not_opened(member, exc, t0, call, watch)
        if not error.failover_ok or call_aborted():
            error.chunks_delivered = 0
            if error is exc:
                raise exc
            raise error from exc

    def _rest(self, request: GenerateRequest, call: CallRecord, opened: Opened) -> Iterator[StreamChunk]:
        """The opened stream to its end, its last chunk traced. A failure now is raised with
        ``chunks_delivered``: two models' answers are never spliced."""
        member, chunks, first, t0 = opened
        delivered = 0
        outcome = "released"
        last: StreamChunk | None = None
        try:
            if first is not None:
                for chunk in itertools.chain((first,), chunks):
                    delivered += 1
                    if chunk.finish_reason is not None:  # the last chunk: it carries the trace
                        last = chunk
                        chunk = self._traced(chunk, member, self._clock() - t0, call)
                    yield chunk
            outcome = "ok"
        except ProviderError as exc:
            outcome = "failed"
            exc.chunks_delivered = delivered  # before _failed: a stream that began does not fail over
            self._failed(member, exc, t0, call)
            raise
        finally:
            if outcome == "ok":
                self.state.success(member.key, self._clock() - t0, self._clock())
                if last is not None:
                    self._settle(member, last, call)
                    self._stats.cost(last.cost)
                if request.session_key is not None:
                    self._pin(request.session_key, member)
            elif outcome == "released":  # the consumer stopped early
                chunks.close()
                self.state.release(member.key)

    # -- health and stats -----------------------------------------------------------------------

    def _count_tokens(self, request: GenerateRequest) -> TokenCount:
        """The count of one member: the first, in the order the members were given, that is in
        rotation (else the one back soonest) and would take the request. It is not the plan's
        pick (a rotating strategy's would move on for a call that sends nothing), and a failed
        count is not retried elsewhere: a count is one member's answer, ``provider`` says whose."""
        takers = [m for m in self._candidates(request) if m.provider.unsupported(request) is None]
        member = self._available_first(takers)[0]  # some member takes it: _check refused otherwise
        return member.provider.count_tokens_sync(request)

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
        percentiles, health (``ProviderStats.status``), cooldown left; hedges fired and won."""
        now = self._clock()
        snaps = self.state.snapshot([m.key for m in self.members])
        members = tuple(self._member_stats(m, snaps[m.key], now) for m in self.members)
        return dataclasses.replace(super().get_stats(), members=members, hedges=self._hedges.fired,
                                   hedges_won=self._hedges.wins)


def _reseed_in_child() -> None:
    for pool in list(_unseeded):
        pool._rng.seed()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reseed_in_child)
