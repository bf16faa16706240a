"""Retries: an immutable ``RetryPolicy``, Retry-After parsing, and ``RetryingTransport``.

The rules follow both official SDKs (docs/protocols.md §5.1): retry connection failures and
timeouts, and statuses 408, 409, 429 and >= 500 (so Anthropic's 529), unless the response says
``x-should-retry: false``; ``x-should-retry: true`` forces a retry. Which errors those are is said
once, by each error class's ``retryable`` (a 429 ``insufficient_quota`` is a ``QuotaExceededError``,
which waiting does not fix). Waits grow exponentially
(0.5 s doubling, capped at 8 s, minus up to 25 % jitter) unless the server asked for a wait with
``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date). A requested wait longer than
``max_retry_after_s`` is not slept: the provider raises the classified error at once, with its
``retry_after`` (a ``RateLimitError`` for a 429, the status's own class for a 503 or 529), so a
pool can fail over instead of sleeping. (``RetryingTransport``, used on its own, returns that
response instead.)

Retries happen before any body is handed out; a stream is never retried once it was returned.
``sleep``, ``clock`` and ``random`` are injectable so tests never sleep.
"""

from __future__ import annotations

import logging
import math
import random as _random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from ._call import call_aborted, wait_in_call
from .errors import CallAbortedError, ConfigurationError, ProviderError, TransportError, error_class_for_status
from .transport.base import HttpRequest, HttpResponse, StreamResponse, Transport, _origin

__all__ = ["RetryPolicy", "RetryingTransport", "parse_retry_after", "should_retry_header"]

logger = logging.getLogger("mirror_providers.retry")

R = TypeVar("R", HttpResponse, StreamResponse)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, from ``retry-after-ms`` or ``retry-after``.

    ``retry-after`` may be seconds (floats allowed) or an HTTP date. Returns None when absent
    or not a finite wait (``nan``, ``-5``, ``1e400``, a date in year 99999, words); a date in the
    past gives 0. Never raises: a header is the server's to get wrong.
    """
    value = headers.get("retry-after-ms")
    if value:
        ms = _finite(value)
        if ms is not None:
            return ms / 1000.0
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return seconds
    import email.utils  # here, not at the top: it imports socket, calendar, locale... (see bench/ import row)

    try:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        when = email.utils.mktime_tz(parsed)
    except (ValueError, OverflowError, TypeError, IndexError):  # year 99999, a day of 40...
        return None
    wait = when - (time.time() if now is None else now)
    return max(0.0, wait) if math.isfinite(wait) else None


def _finite(value: str) -> float | None:
    """A number of at most 64 characters that is finite and >= 0, else None."""
    if len(value) > 64:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


# The longest back-off a policy may set (a week, as ``request.MAX_TIMEOUT_S``): a sleep of 1e300
# seconds raises OverflowError only once a try has failed, after a request was sent.
MAX_WAIT_S = 7 * 24 * 3600.0


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """The vendor's ``x-should-retry`` verdict (True, False), or None when it gave none."""
    return _VERDICTS.get((headers.get("x-should-retry") or "").lower())


_VERDICTS = {"true": True, "false": False}


@dataclass(frozen=True)
class RetryPolicy:
    """How a call is retried. ``RetryPolicy(max_retries=0)`` disables retries.

    The decision is :meth:`wait_before`: what failed says whether trying again can help (each
    error class's ``retryable``, which the vendor's ``x-should-retry`` overrides), the server may
    say how long to wait (``retry_after``), and the policy says how often and how long at most.

    Attributes:
        max_retries: retries after the first attempt (the SDKs' default is 2).
        initial_backoff_s: the first wait; it doubles each retry.
        max_backoff_s: the cap of a computed wait.
        jitter: a wait is reduced by up to this fraction, at random.
        max_retry_after_s: the longest server-requested wait we sleep; longer ones end the
            retries at once.
        sleep, clock, random: injectable for tests.
    """

    max_retries: int = 2
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    jitter: float = 0.25
    max_retry_after_s: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)
    random: Callable[[], float] = field(default=_random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigurationError(f"RetryPolicy.max_retries must be an integer >= 0, got {self.max_retries!r}")
        for name in ("initial_backoff_s", "max_backoff_s", "max_retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_WAIT_S:
                raise ConfigurationError(f"RetryPolicy.{name} must be a number of seconds from 0 to {MAX_WAIT_S:.0f}, "
                                         f"got {value!r}")
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, (int, float)) or not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"RetryPolicy.jitter must be a fraction between 0 and 1, got {self.jitter!r}")
        for name in ("sleep", "clock", "random"):
            if not callable(getattr(self, name)):
                raise ConfigurationError(f"RetryPolicy.{name} must be callable, got {getattr(self, name)!r}")

    def backoff(self, retry_number: int) -> float:
        """The computed wait before retry number ``retry_number`` (from 1)."""
        base: float = min(self.initial_backoff_s * 2.0 ** (retry_number - 1), self.max_backoff_s)
        return base * (1.0 - self.jitter * self.random())

    def wait_before(self, retry_number: int, error: ProviderError, deadline: float | None = None) -> float | None:
        """Seconds to wait before retry number ``retry_number`` (from 1) after ``error``, or None
        when the call must not be tried again: the retries are used up, the error's class says
        the same call cannot succeed (``retryable``), the caller broke the call off, the server
        asked for a longer wait than ``max_retry_after_s`` (the caller gets the error and its
        ``retry_after`` at once, so a pool can fail over), or the wait would outlive
        ``deadline`` (a ``time.monotonic()`` value)."""
        if retry_number > self.max_retries or not error.retryable or call_aborted():
            return None
        asked = getattr(error, "retry_after", None)
        if asked is None:
            wait = self.backoff(retry_number)
        elif asked > self.max_retry_after_s:
            return None
        else:
            wait = asked
        if deadline is not None and time.monotonic() + wait >= deadline:
            return None
        return wait

    def pause(self, seconds: float) -> None:
        """The back-off sleep: the policy's own when one was injected, else one that the caller
        aborting the call (a cancelled ``await``) cuts short."""
        if wait_in_call(seconds, self.sleep):
            raise CallAbortedError("the call was aborted by its caller during a retry's wait")


class RetryingTransport(Transport):
    """Wraps a transport and retries per a ``RetryPolicy``, for code that uses a transport
    without a provider. Providers do not use it: their call loop classifies each error first
    (a 429 that means "out of quota" is not retried) and asks the same ``wait_before``.

    A status is classified by the status table and ``x-should-retry`` alone, before any body is
    handed out; a stream is never retried once it was returned.

    Args:
        inner: the transport that does the I/O (not closed by this wrapper).
        policy: the retry rules.
    """

    def __init__(self, inner: Transport, policy: RetryPolicy) -> None:
        self.inner = inner
        self.policy = policy

    def __repr__(self) -> str:
        return f"RetryingTransport({self.inner!r}, {self.policy!r})"

    def _run(self, request: HttpRequest, call: Callable[[HttpRequest], R],
             release: Callable[[R], None]) -> R:
        retry = 0
        while True:
            retry += 1
            try:
                resp = call(request)
            except TransportError as exc:
                wait = self.policy.wait_before(retry, exc, request.deadline)
                if wait is None:
                    raise
                reason = type(exc).__name__
            else:
                if resp.status < 400:
                    return resp
                error = error_class_for_status(resp.status)(
                    f"HTTP {resp.status}", status=resp.status, should_retry=should_retry_header(resp.headers),
                    retry_after=parse_retry_after(resp.headers, self.policy.clock()))
                wait = self.policy.wait_before(retry, error, request.deadline)
                if wait is None:
                    return resp  # the caller gets the error (and its retry_after) now
                release(resp)
                reason = f"status {resp.status}"
            logger.info("retrying %s %s in %.2fs after %s", request.method, _origin(request.url), wait, reason)
            self.policy.pause(wait)

    def send(self, request: HttpRequest) -> HttpResponse:
        return self._run(request, self.inner.send, lambda r: None)

    def open_stream(self, request: HttpRequest) -> StreamResponse:
        return self._run(request, self.inner.open_stream, StreamResponse.close)

    def close(self) -> None:
        """The inner transport is shared; closing the wrapper leaves it open."""
