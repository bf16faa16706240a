"""The vendors' rate-limit response headers, read into ``types.RateLimits``.

OpenAI sends ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` with every answer, the
resets as Go durations (``12ms``, ``1s``, ``6m0s``; Azure: plain seconds). Anthropic sends
``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``,
the resets as RFC 3339 times. A value that does not read is left out (None), never guessed.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone

from .types import RateLimit, RateLimits

__all__ = ["parse_rate_limits"]

_GO_DURATION = re.compile(r"(?:(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s))")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d)",
                      re.ASCII)
_ANTHROPIC = ("requests", "tokens", "input-tokens", "output-tokens")
MAX_RESET_S = 7 * 24 * 3600.0  # a reset further off than a week is not believed


def _count(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def _duration(value: str) -> float | None:
    """``1m30.5s``, ``12ms``, ``20`` (seconds) -> seconds; None when it does not read."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = _GO_DURATION.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            return None
        seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    return seconds if math.isfinite(seconds) and 0 <= seconds <= MAX_RESET_S else None


def _instant(value: str, now: float) -> float | None:
    """An RFC 3339 time -> seconds from ``now`` (0 when past); None when it does not read."""
    m = _RFC3339.fullmatch(value.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        offset = timezone.utc if zone in ("Z", "z") else timezone(
            (1 if zone[0] == "+" else -1) * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        when = datetime(int(year), int(month), int(day), int(hour), int(minute), min(int(second), 59), tzinfo=offset)
    except ValueError:  # a day, hour or offset out of range
        return None
    seconds = max(0.0, when.timestamp() + float(fraction or 0) - now)
    return seconds if seconds <= MAX_RESET_S else None


def _limit(headers: Mapping[str, str], names: tuple[str, str, str], reset: Callable[[str], float | None]
           ) -> RateLimit | None:
    raw = [headers.get(n) for n in names]
    if all(v is None for v in raw):
        return None
    limit, remaining = _count(raw[0]), _count(raw[1])
    reset_s = reset(raw[2]) if raw[2] is not None else None
    if limit is None and remaining is None and reset_s is None:
        return None
    return RateLimit(limit, remaining, reset_s)


def parse_rate_limits(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> RateLimits | None:
    """The rate limits stated in a response's headers (a case-insensitive mapping), or None."""
    if "x-ratelimit-remaining-requests" in headers or "x-ratelimit-remaining-tokens" in headers:
        found = RateLimits(
            requests=_limit(headers, ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
                                      "x-ratelimit-reset-requests"), _duration),
            tokens=_limit(headers, ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
                                    "x-ratelimit-reset-tokens"), _duration))
    elif any(f"anthropic-ratelimit-{kind}-remaining" in headers for kind in _ANTHROPIC):
        at = now()

        def reset(value: str) -> float | None:
            return _instant(value, at)

        found = RateLimits(*(_limit(headers, tuple(f"anthropic-ratelimit-{kind}-{part}"  # type: ignore[arg-type]
                                                   for part in ("limit", "remaining", "reset")), reset)
                             for kind in _ANTHROPIC))
    else:
        return None
    return found if any((found.requests, found.tokens, found.input_tokens, found.output_tokens)) else None
