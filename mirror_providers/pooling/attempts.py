"""One pool call's record, and the rules that read it: what was tried or skipped and why, which
members are still worth trying, when an answer is passed over, when a stream is given up on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._timers import Timer, call_at
from ..errors import ConfigurationError, ProviderError, RequestTimeout, ValidationError
from ..types import Attempt, GenerationResult

if TYPE_CHECKING:
    from ..provider import ChunkStream
    from ..request import GenerateRequest
    from .provider import Member

__all__ = ["FALLBACK_ON", "CallRecord", "FirstChunkWatch", "check_fallback_on", "passed_over", "who"]

FALLBACK_ON = ("content_filter", "refusal")


def check_fallback_on(value: Sequence[str]) -> tuple[str, ...]:
    """The checked ``fallback_on=`` of a pool (a ``ConfigurationError`` names a bad entry)."""
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigurationError(f"fallback_on must be a list of {', '.join(map(repr, FALLBACK_ON))}, got {value!r}")
    for v in value:
        if v not in FALLBACK_ON:
            raise ConfigurationError(f"fallback_on takes {', '.join(map(repr, FALLBACK_ON))}, not {v!r}")
    return tuple(v for v in FALLBACK_ON if v in value)


def passed_over(result: GenerationResult, fallback_on: tuple[str, ...]) -> str | None:
    """Why ``fallback_on`` passes this answer over for the next member's, or None to keep it."""
    if "content_filter" in fallback_on and result.finish_reason == "content_filter":
        return "content_filter: the vendor's filter stopped the answer"
    if "refusal" in fallback_on and result.refusal is not None:
        return f"refusal: {result.refusal[:200]}"
    return None


def who(member: Member) -> str:
    """A member as messages name it: ``provider:model``."""
    return f"{member.provider.provider_id}:{member.provider.model_name}"


@dataclass
class CallRecord:
    """What one call of a pool has done so far.

    Attributes:
        started: the pool's clock at the call's start.
        budget: the call's deadline in seconds from ``started`` (None: none).
        session_key: the call's session (``GenerateRequest.session_key``).
        trace: an ``Attempt`` per member tried or skipped, in order.
        passed: keys of the members tried or skipped (each is considered once).
        tried: keys of the members tried.
        refusals: each member's pre-send refusal of this request, once asked (None: it takes it).
        too_long: the largest context window that answered "too long", and whose it was.
        too_long_models: each (model, window) that answered "too long".
        filtered: the last answer ``fallback_on`` passed over (returned if no member does better).
        hedges: tries hedged so far.
        cooldowns: each member's cooldown end, read once per call when it has a deadline.
        tokens: the request's token estimate, made once when a member's budget needs it.
        request: the call's request.
        hedging: a hedge is asking for its try (which never waits for a rate budget).
        stream: the call is a stream.
    """

    started: float
    budget: float | None
    session_key: str | None = None
    stream: bool = False
    trace: list[Attempt] = field(default_factory=list)
    passed: set[str] = field(default_factory=set)
    tried: set[str] = field(default_factory=set)
    refusals: dict[str, ValidationError | None] = field(default_factory=dict)
    too_long: tuple[int, str] | None = None
    too_long_models: set[tuple[str, int]] = field(default_factory=set)
    filtered: GenerationResult | None = None
    hedges: int = 0
    cooldowns: dict[str, float] | None = None
    tokens: int | None = None
    request: GenerateRequest | None = None
    hedging: bool = False

    def add(self, member: Member, error: ProviderError | None, elapsed_s: float, *, skipped: bool = False,
            outcome: str = "", reason: str = "") -> None:
        p = member.provider
        self.trace.append(Attempt(p.provider_id, p.model_name, error, elapsed_s, skipped, outcome, reason))

    def skip(self, member: Member, error: ProviderError) -> None:
        self.passed.add(member.key)
        self.add(member, error, 0.0, skipped=True)

    def note_too_long(self, member: Member) -> None:
        """The member said the prompt does not fit its window: for this call, a member with a
        smaller window, or the same model with the same window, would say so too."""
        window = member.provider.capabilities.max_context_window
        if window and (self.too_long is None or window > self.too_long[0]):
            self.too_long = (window, who(member))
        self.too_long_models.add((member.provider.model_name, window))

    def too_small(self, member: Member) -> str | None:
        """Why the member's window cannot hold this prompt, or None when it may. Another model
        with the same window may (its tokenizer may count fewer tokens, its window may be a guess)."""
        if self.too_long is None:
            return None
        window = member.provider.capabilities.max_context_window
        limit, who = self.too_long
        if window and window < limit:
            return (f"its context window ({window:,} tokens) is smaller than that of {who} ({limit:,}), "
                    f"which answered that the prompt does not fit")
        if (member.provider.model_name, window) in self.too_long_models:
            return f"the same model with the same window ({window:,} tokens) answered that the prompt does not fit"
        return None


class FirstChunkWatch:
    """Gives up on a member's stream that has not yielded its first chunk within ``seconds``:
    the stream is aborted (its connection broken), which is safe because nothing of it reached
    the caller. ``arrived()`` is called with the first chunk; ``stop()`` when the try ends."""

    def __init__(self, stream: ChunkStream, seconds: float | None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._settled = False
        self.fired = False
        self.seconds = seconds
        self._error: RequestTimeout | None = None
        self._timer: Timer | None = None if seconds is None else call_at(time.monotonic() + seconds, self._fire)

    def _fire(self) -> None:
        with self._lock:
            if self._settled:
                return
            self._settled = self.fired = True
        self._stream.abort()

    def arrived(self) -> bool:
        """The first chunk came; False when the watch gave up on the stream first."""
        with self._lock:
            self._settled = True
        self.stop()
        return not self.fired

    def error(self) -> RequestTimeout:
        """The error the try ends with once the watch gave up on it (one per try)."""
        if self._error is None:
            self._error = RequestTimeout(f"no first chunk within {self.seconds:g}s (first_chunk_timeout_s): "
                                         f"abandoned")
        return self._error

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
