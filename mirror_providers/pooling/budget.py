"""Rate budgets of pool members: ``rpm=`` requests and ``tpm=`` tokens a minute, spread evenly.

A budget is a token bucket kept as one number per dimension, the time at which the bucket is
full again (the "theoretical arrival time" of GCRA). A bucket holds one second's worth of its rate
(at least one unit), so ``rpm=120`` lets a request through every half second with two at once
after a pause, and over any stretch of time at most the rate's share of it gets through, plus
that one second. (Vendors enforce their per-minute limits the same way, in short slices, not as
one burst per minute.) A request that needs more tokens than a bucket holds goes when the bucket
is full and leaves it in debt, so the rate holds over time.

Tokens are counted before the call from the request (``estimate_tokens``: the library's one input
estimate, ``GenerateRequest.estimated_input_tokens``, plus its ``max_tokens``) and corrected by the
usage the answer reports.

The arithmetic is here once, for ``InMemoryState``; ``RedisState`` runs the same steps in a Lua
script (``ACQUIRE_LUA``, ``SETTLE_LUA``), and a test holds the two to the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError
from ..request import GenerateRequest

__all__ = ["ACQUIRE_LUA", "SETTLE_LUA", "RateBudget", "acquire", "check_rate", "estimate_tokens", "settle"]

MAX_RATE = 1e9  # per minute: more is no limit at all, and is refused as a likely mistake
MIN_RATE = 1e-3  # per minute (one request in about 17 hours): less is refused as a likely mistake
MAX_DEBT_S = 60.0  # the most a bucket may owe: one answer that reports absurd usage cannot lock a member out
HORIZON_S = 7 * 24 * 3600.0  # a stored full-again time further off than this is garbage, not a budget
EPSILON_S = 1e-9  # arithmetic slack when comparing times


@dataclass(frozen=True)
class RateBudget:
    """A member's budget: ``rpm`` requests and ``tpm`` tokens a minute (None: unlimited)."""

    rpm: float | None = None
    tpm: float | None = None

    def __bool__(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    def __str__(self) -> str:
        return ", ".join(f"{name}={value:g}" for name, value in (("rpm", self.rpm), ("tpm", self.tpm))
                         if value is not None)


def check_rate(value: Any, name: str) -> float | None:
    """A checked ``rpm=``/``tpm=`` (a ``ConfigurationError`` names a bad one)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not MIN_RATE <= value <= MAX_RATE:
        raise ConfigurationError(f"{name} must be a number of {'requests' if name.endswith('rpm') else 'tokens'} "
                                 f"a minute from {MIN_RATE:g} to {MAX_RATE:g}, got {value!r}")
    return float(value)


def estimate_tokens(request: GenerateRequest) -> int:
    """The tokens a request is expected to use: its input's estimate, plus the most it may generate."""
    return request.estimated_input_tokens() + (request.max_tokens or 0)


def _bucket(tat: float, now: float, per_minute: float, cost: float) -> tuple[float, float]:
    """One bucket: (its full-again time once ``cost`` is taken, seconds to wait before it can be;
    <= 0: it can be now)."""
    interval = 60.0 / per_minute
    capacity = max(1.0, per_minute / 60.0) * interval  # one second's worth, at least one unit
    base = max(tat, now)
    return base + cost * interval, base - now + min(cost * interval, capacity) - capacity


Times = tuple[float, float]  # when a budget's request and token buckets are full again


def acquire(tats: Times, now: float, budget: RateBudget, tokens: int, max_wait: float = 0.0) -> tuple[Times, float]:
    """Take one request and ``tokens`` from a budget whose buckets are full again at ``tats``
    (requests, tokens), for a request sent once both have room: (the new times, the seconds to
    wait before sending) when that is at most ``max_wait`` (the room is reserved: callers that
    wait are served in turn), else (``tats`` unchanged, the seconds until there is room)."""
    new, wait = list(tats), 0.0
    for i, (rate, cost) in enumerate(((budget.rpm, 1.0), (budget.tpm, float(tokens)))):
        if rate is not None:
            new[i], w = _bucket(tats[i], now, rate, cost)
            wait = max(wait, w)
    if wait > max_wait + EPSILON_S:
        return tats, wait
    return (new[0], new[1]), wait if wait > EPSILON_S else 0.0


def settle(tats: Times, now: float, budget: RateBudget, tokens: int, requests: int = 0) -> Times:
    """The buckets' full-again times after correcting them by ``tokens`` (used minus estimated)
    and ``requests`` (-1: a reserved turn given back); negative gives back, never more than a
    full bucket, and no bucket owes more than ``MAX_DEBT_S``."""
    new = list(tats)
    for i, (rate, change) in enumerate(((budget.rpm, requests), (budget.tpm, tokens))):
        if rate is not None and change:
            new[i] = max(min(max(tats[i], now) + change * 60.0 / rate, now + MAX_DEBT_S), now)
    return new[0], new[1]


# The same steps in Redis, on wall-clock times. KEYS: the budget hash. ARGV: now, rpm ("" for
# none), tpm ("" for none), tokens, max_wait. Returns {taken (1 or 0), the wait as text} (Lua
# numbers would be cut to integers on the way out).
_STORED_LUA = """
local now = tonumber(ARGV[1])
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'hash' and t ~= 'none' then redis.call('DEL', KEYS[1]) end
local function stored(field)  -- a full-again time that is not a sane number is no time at all
  local t = tonumber(redis.call('HGET', KEYS[1], field))
  if t == nil or t ~= t or t < now or t > now + HORIZON_S then return now end
  return t
end
""".replace("HORIZON_S", str(int(HORIZON_S)))

ACQUIRE_LUA = _STORED_LUA + """
local tokens, max_wait = tonumber(ARGV[4]), tonumber(ARGV[5])
local rates, costs, fields = {tonumber(ARGV[2]), tonumber(ARGV[3])}, {1, tokens}, {'requests', 'tokens'}
local wait, new, latest = 0, {}, now
for i = 1, 2 do
  if rates[i] then
    local interval = 60 / rates[i]
    local capacity = math.max(1, rates[i] / 60) * interval
    local base = stored(fields[i])
    new[i] = base + costs[i] * interval
    wait = math.max(wait, base - now + math.min(costs[i] * interval, capacity) - capacity)
  end
end
if wait > max_wait + 1e-9 then
  if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], 120) end
  return {0, tostring(wait)}
end
for i = 1, 2 do
  if new[i] then
    redis.call('HSET', KEYS[1], fields[i], tostring(new[i]))
    latest = math.max(latest, new[i])
  end
end
redis.call('EXPIRE', KEYS[1], math.ceil(latest - now) + 60)
if wait <= 1e-9 then wait = 0 end
return {1, tostring(wait)}
"""

# KEYS: the budget hash. ARGV: now, rpm ("" for none), tpm ("" for none), tokens, requests.
SETTLE_LUA = _STORED_LUA + """
local rates, changes, fields = {tonumber(ARGV[2]), tonumber(ARGV[3])}, {tonumber(ARGV[5]), tonumber(ARGV[4])},
  {'requests', 'tokens'}
local latest = now
for i = 1, 2 do
  local tat = stored(fields[i])
  if rates[i] and changes[i] ~= 0 then
    tat = math.max(math.min(tat + changes[i] * 60 / rates[i], now + MAX_DEBT_S), now)
    redis.call('HSET', KEYS[1], fields[i], tostring(tat))
  end
  latest = math.max(latest, tat)
end
redis.call('EXPIRE', KEYS[1], math.ceil(latest - now) + 60)
return 1
""".replace("MAX_DEBT_S", str(int(MAX_DEBT_S)))
