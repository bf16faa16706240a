"""Hedged requests: when a member has not answered by the hedge delay, the next member is asked
too, on a thread of its own; the first answer wins and the other call is broken off at once.

The first member runs in the caller's thread, as an unhedged try does, so a call that answers in
time costs one timer and nothing more. The hedge is one more try of the pool's plan: it is counted,
traced and held against (or for) its member like any other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from .._call import CallScope, current_call
from .._forksafe import lock_for
from .._stats import percentiles
from .._timers import call_at
from ..errors import AllProvidersFailedError, ConfigurationError, ProviderError
from ..provider import call_aborted
from ..request import GenerateRequest
from ..types import GenerationResult, StreamChunk
from .attempts import CallRecord, FirstChunkWatch, passed_over, who

if TYPE_CHECKING:
    from ..provider import ChunkStream
    from .provider import Member, PoolProvider

__all__ = ["MIN_HISTORY", "Hedge", "HedgeCounts", "Opened", "check_hedge_after", "hedge_delay", "hedged_generate",
           "hedged_open"]

MIN_HISTORY = 20  # latencies a member needs before "p95" hedges it (fewer say little about its tail)

Try = tuple["Member", dict[str, Any], float]


class Opened(NamedTuple):
    """A member's stream that yielded its first chunk (None: it ended without one)."""

    member: Member
    chunks: ChunkStream
    first: StreamChunk | None
    t0: float


_LOST = object()  # what a hedge that got its first chunk too late returns (its stream closed)


def check_hedge_after(value: Any) -> float | str | None:
    """A pool's checked ``hedge_after_s``: seconds, ``"p95"``, or None (off)."""
    if value is None or value == "p95":
        return value  # type: ignore[no-any-return]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise ConfigurationError(f"hedge_after_s must be seconds (0 to 3600) or 'p95', got {value!r}")
    return float(value)


def hedge_delay(setting: float | str | None, latencies: tuple[float, ...]) -> float | None:
    """When to hedge a try of a member with these recent latencies (None: do not)."""
    if setting is None or isinstance(setting, float):
        return setting
    if len(latencies) < MIN_HISTORY:
        return None
    return percentiles(latencies, 0.95)[0]


class HedgeCounts:
    """How many hedges a pool started, and how many of them answered first (thread-safe)."""

    def __init__(self) -> None:
        self._lock = lock_for(self)  # a pool's, for its life: free again in a forked child
        self.fired = 0
        self.wins = 0

    def started(self) -> None:
        with self._lock:
            self.fired += 1

    def won(self) -> None:
        with self._lock:
            self.wins += 1


def hedge_try(call: CallRecord, tries: Iterator[Try | None]) -> Try | None:
    """The plan's next try for a hedge, or None: a hedge does not wait for a rate budget (the
    call it races may answer meanwhile)."""
    call.hedging = True
    try:
        return next(tries, None)
    finally:
        call.hedging = False


class Hedge:
    """The second runner of a hedged try: started by a timer on a thread of its own unless the
    first runner settles first. ``run`` gets the try to make and returns what it made."""

    def __init__(self, delay_s: float, next_try: Callable[[], Try | None],
                 run: Callable[[Try], Any]) -> None:
        self._lock = threading.Lock()
        self._settled = False
        self.started = False
        self.done = threading.Event()
        self.chosen = threading.Event()  # the try is known (or there is none)
        self.attempt: Try | None = None
        self.outcome: Any = None
        self.scope = CallScope(current_call.get())  # aborting the caller's call aborts the hedge too
        self._next_try = next_try
        self._run = run
        self._timer = call_at(time.monotonic() + delay_s, self._start)

    def _start(self) -> None:
        with self._lock:
            if self._settled:
                return
            self.started = True
        threading.Thread(target=self._body, name="mirror-providers-hedge", daemon=True).start()

    def _body(self) -> None:
        token = current_call.set(self.scope)
        try:
            self.attempt = self._next_try()
            self.chosen.set()
            if self.attempt is not None:
                self.outcome = self._run(self.attempt)
        except BaseException as exc:  # handed to the caller's thread, which raises or records it
            self.outcome = exc
        finally:
            current_call.reset(token)
            self.chosen.set()
            self.done.set()

    def abandon(self, pool: PoolProvider) -> None:
        """The call ends with something other than a verdict (a bug in a member, an interrupt):
        the hedge is broken off and its member's request counted as ended."""
        if self.settle():
            self.scope.abort()
            self.chosen.wait()
            if self.attempt is not None:
                pool.state.release(self.attempt[0].key)

    def settle(self) -> bool:
        """The first runner ended: a hedge not started never will; True if one started."""
        self._timer.cancel()
        with self._lock:
            self._settled = True
            return self.started


def hedged_generate(pool: PoolProvider, request: GenerateRequest, call: CallRecord, tries: Iterator[Try | None],
                    first: Try, delay_s: float) -> GenerationResult | None:
    """One try of ``first``, hedged after ``delay_s`` with the plan's next member. Returns the
    winning answer (traced), or None when both failed with errors another member may not have
    (each recorded); raises what ends the call."""
    member, options, t0 = first
    primary = CallScope(current_call.get())
    race = threading.Lock()
    state = {"first_done": False, "broken_off": False}

    def run(attempt: Try) -> GenerationResult | ProviderError:
        other, other_options, _ = attempt
        pool._hedges.started()
        try:
            result = other.provider.generate_sync(request, **other_options)
        except ProviderError as exc:
            return exc
        if passed_over(result, pool.fallback_on) is not None:
            return result  # an answer the pool would pass over does not win the race
        with race:
            if not state["first_done"]:  # the hedge answered first: the first runner is broken off
                state["broken_off"] = True
                primary.abort()
        return result

    hedge = Hedge(delay_s, lambda: hedge_try(call, tries), run)
    token = current_call.set(primary)
    try:
        result: GenerationResult | ProviderError = member.provider.generate_sync(request, **options)
    except ProviderError as exc:
        result = exc
    except BaseException:
        hedge.abandon(pool)
        pool.state.release(member.key)
        raise
    finally:
        current_call.reset(token)
        with race:
            state["first_done"] = True
    if not hedge.settle():
        return _single(pool, call, member, t0, result)
    hedge.chosen.wait()
    if hedge.attempt is None:  # no member was left to hedge with (or the deadline came first)
        hedge.done.wait()
        verdict = _single(pool, call, member, t0, result)
        if verdict is None and isinstance(hedge.outcome, AllProvidersFailedError):
            raise pool._all_failed(call, deadline_hit=True)  # the plan ended at its deadline, in the hedge
        return verdict
    other, _, t1 = hedge.attempt
    if isinstance(result, GenerationResult):  # the first runner won: the hedge is broken off
        hedge.scope.abort()
        pool.state.release(other.key)
        call.add(other, None, pool._clock() - t1, outcome="abandoned",
                 reason=f"hedge lost: {who(member)} answered first")
        return _single(pool, call, member, t0, result)
    hedge.done.wait()  # the first runner failed, or was broken off because the hedge answered
    won = hedge.outcome
    # Both runners' verdicts are recorded before anything is raised: neither is left in flight.
    if state["broken_off"] and not call_aborted():  # (its error is then the broken connection's)
        pool.state.release(member.key)  # slower, not failed
        call.add(member, None, pool._clock() - t0, outcome="abandoned",
                 reason=f"hedged: {who(other)} answered first")
    else:
        pool._failed(member, result, t0, call)
    if isinstance(won, GenerationResult):  # the hedge's answer stands, whatever the first runner's error
        answer = pool._answered(other, won, t1, call)
        if answer is not None:
            pool._hedges.won()
        return answer
    _after_both(pool, call, other, t1, result, won)
    return None


def hedged_open(pool: PoolProvider, request: GenerateRequest, call: CallRecord, tries: Iterator[Try | None],
                first: Try, delay_s: float) -> Opened | None:
    """A stream's first chunk from ``first``, hedged after ``delay_s`` with the plan's next
    member: the stream whose first chunk comes first goes on, the other is broken off. None when
    both failed before a chunk (each recorded); raises what ends the call."""
    member, options, t0 = first
    race = threading.Lock()
    state = {"first_won": False, "first_failed": False, "broken_off": False}
    chunks = member.provider.stream_sync(request, **options)

    def run(attempt: Try) -> Opened | ProviderError | object:
        other, other_options, t1 = attempt
        pool._hedges.started()
        theirs = other.provider.stream_sync(request, **other_options)
        try:
            chunk = next(theirs, None)
        except ProviderError as exc:
            return exc
        with race:
            if state["first_won"]:
                lost = True
            else:
                lost, state["broken_off"] = False, not state["first_failed"]
        if lost:
            theirs.close()
            return _LOST
        if state["broken_off"]:
            chunks.abort()  # its first chunk came first: the first runner is broken off
        return Opened(other, theirs, chunk, t1)

    hedge = Hedge(delay_s, lambda: hedge_try(call, tries), run)
    watch = FirstChunkWatch(chunks, pool.first_chunk_timeout_s)
    error: ProviderError | None = None
    mine: StreamChunk | None = None
    try:
        mine = next(chunks, None)
        if mine is not None and not watch.arrived():
            raise watch.error()
    except ProviderError as exc:
        error = exc
    except BaseException:
        hedge.abandon(pool)
        chunks.close()
        pool.state.release(member.key)
        raise
    finally:
        watch.stop()
        with race:
            state["first_won"] = not state["broken_off"] and error is None
            state["first_failed"] = error is not None
    return _after_race(pool, call, hedge, Opened(member, chunks, mine, t0), error, state, watch)


def _after_race(pool: PoolProvider, call: CallRecord, hedge: Hedge, mine: Opened, error: ProviderError | None,
                state: dict[str, bool], watch: FirstChunkWatch) -> Opened | None:
    """Which stream goes on once the first runner has its first chunk, or failed."""
    member, chunks, _, t0 = mine
    started = hedge.settle()
    if started:
        hedge.chosen.wait()
    if not started or hedge.attempt is None:  # no race after all
        if started:
            hedge.done.wait()
        if error is None:
            return mine
        chunks.close()
        pool._not_opened(member, error, t0, call, watch)
        if started and isinstance(hedge.outcome, AllProvidersFailedError):
            raise pool._all_failed(call, deadline_hit=True)  # the plan ended at its deadline, in the hedge
        return None
    other, _, t1 = hedge.attempt
    if state["first_won"]:  # the first runner's chunk came first: the hedge is broken off
        hedge.scope.abort()
        pool.state.release(other.key)
        call.add(other, None, pool._clock() - t1, outcome="abandoned",
                 reason=f"hedge lost: {who(member)} sent its first chunk first")
        return mine
    hedge.done.wait()
    won = hedge.outcome
    chunks.close()
    # Both runners' verdicts are recorded before anything is raised: neither is left in flight.
    if state["broken_off"] and not call_aborted():
        pool.state.release(member.key)  # slower, not failed
        call.add(member, None, pool._clock() - t0, outcome="abandoned",
                 reason=f"hedged: {who(other)} sent its first chunk first")
        error = None
    elif error is not None:
        error = pool._record_not_opened(member, error, t0, call, watch)
    if isinstance(won, Opened):  # the hedge's stream goes on, whatever the first runner's error
        pool._hedges.won()
        return won
    _after_both(pool, call, other, t1, error, won)
    return None


def _after_both(pool: PoolProvider, call: CallRecord, other: Member, t1: float, first_error: Any,
                won: Any) -> None:
    """Neither runner answered: the hedge's failure recorded (the first runner's already is),
    then what ends the call raised (a caller's bug, an error no member can help with, an abort),
    else None to go on with the plan."""
    if isinstance(won, ProviderError):
        pool._failed(other, won, t1, call)
    else:
        pool.state.release(other.key)
        if isinstance(won, BaseException):
            raise won
    for error in (first_error, won):
        if isinstance(error, ProviderError) and (not error.failover_ok or call_aborted()):
            error.chunks_delivered = 0
            raise error


def _single(pool: PoolProvider, call: CallRecord, member: Member, t0: float,
            outcome: GenerationResult | ProviderError | Any) -> GenerationResult | None:
    """One runner's verdict, recorded: its answer (traced), None to go on, or its error raised."""
    if isinstance(outcome, GenerationResult):
        return pool._answered(member, outcome, t0, call)
    pool._failed(member, outcome, t0, call)
    if not outcome.failover_ok or call_aborted():
        raise outcome
    return None
