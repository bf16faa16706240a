"""``RedisState``: pool member state shared by every process (and host) that uses one Redis.

A Django or Flask site runs many workers; with ``InMemoryState`` each discovers a dead or
rate-limited member on its own. With ``RedisState`` the workers of one pool (same ``name=`` and
members, so the same member keys) share health, cooldowns, in-flight counts, latency and rate
budgets. It needs
the ``redis`` extra (``pip install 'mirror-providers[redis]'``); the core install does not.

Per member there are up to four keys under ``namespace``: a hash (successes, failures, the
current run of failures, cooldown end, latency estimate, last failure), a list of recent latencies
(the last ``LATENCY_KEPT``, read by each process at most once a second), a sorted set of in-flight
leases, and for a member with ``rpm=``/``tpm=`` its rate budget (see ``budget``: taken and
corrected atomically by every process, so the limit holds across all of them). Each write is one
round trip (a Lua script or a pipeline) and ``snapshot`` reads every member in one pipelined round
trip. Keys expire ``KEY_TTL_S`` after their last write (a budget's a minute after it is full).

* **In flight with leases.** Each request in flight is a lease that expires after ``lease_s``
  (the longest a call is expected to run), so a process killed mid-call leaves nothing behind for
  longer than that.
* **Times are wall-clock seconds** (``time.time()``; hosts are expected to keep their clocks in
  sync, as for any shared deadline). The pool hands the store its own clock's times
  (``time.monotonic()`` by default): they are converted with this process's offset between the
  two, so a pool that shares a RedisState must keep the default clock.
* **Redis failing never fails a request.** An error or a timeout (``timeout_s``, 0.25 s by
  default) switches this process to in-process state, with one warning; Redis is tried again
  ``retry_s`` later. What happened meanwhile stays in the process.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._forksafe import lock_for
from .._redact import redact
from ..errors import ConfigurationError
from .budget import ACQUIRE_LUA, SETTLE_LUA, RateBudget
from .state import EWMA_ALPHA, InMemoryState, MemberSnapshot

__all__ = ["KEY_TTL_S", "LATENCY_KEPT", "RedisState"]

log = logging.getLogger("mirror_providers.pooling")

LATENCY_KEPT = 200  # latencies kept per member in Redis (percentiles, "p95" hedging)
LATENCIES_MAX_AGE_S = 1.0  # a process reads a member's latency list at most this often
MAX_ORPHANS = 10_000  # leases kept to end once Redis is back; older ones run out on their own
KEY_TTL_S = 7 * 24 * 3600  # a member nobody wrote to for a week is forgotten
MAX_WAIT_S = 7 * 24 * 3600  # "no limit" for a budget wait, as a number a Lua script reads

# KEYS: hash, latencies, leases. ARGV: lease token, latency, alpha, kept, ttl.
_SUCCESS = """
redis.call('ZREM', KEYS[3], ARGV[1])
local ewma = tonumber(redis.call('HGET', KEYS[1], 'ewma'))
local latency = tonumber(ARGV[2])
if ewma == nil then ewma = latency else ewma = tonumber(ARGV[3]) * latency + (1 - tonumber(ARGV[3])) * ewma end
redis.call('HINCRBY', KEYS[1], 'successes', 1)
redis.call('HSET', KEYS[1], 'consecutive', 0, 'cooldown_until', 0, 'ewma', tostring(ewma))
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
return 1
"""

# KEYS: hash, leases. ARGV: lease token, now, ttl.
_FAILURE = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSET', KEYS[1], 'last_failure_at', ARGV[2])
local run = redis.call('HINCRBY', KEYS[1], 'consecutive', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return run
"""

# KEYS: hash. ARGV: until, ttl. A later cooldown already set stays.
_COOL_DOWN = """
local current = tonumber(redis.call('HGET', KEYS[1], 'cooldown_until')) or 0
if tonumber(ARGV[1]) > current then redis.call('HSET', KEYS[1], 'cooldown_until', ARGV[1]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class RedisState:
    """A ``MemberState`` in Redis, shared by every process that uses the same ``url`` and
    ``namespace`` (see the module docstring).

    Args:
        url: ``redis://host:port/db`` (``rediss://`` for TLS; a password in the URL is never
            logged or shown).
        namespace: the prefix of every key (pools are told apart by their ``name=`` inside it).
        lease_s: how long an in-flight request counts if its process never ends it.
        timeout_s: the most one Redis round trip may take before this process falls back to
            in-process state.
        retry_s: how long it stays on in-process state before trying Redis again.
        client: a ``redis.Redis`` to use instead of one made from ``url``.
        wall_clock: seconds since the epoch (inject for tests).
    """

    def __init__(self, url: str = "redis://localhost:6379/0", *, namespace: str = "mirror-providers",
                 lease_s: float = 900.0, timeout_s: float = 0.25, retry_s: float = 5.0, client: Any = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        for name, value in (("lease_s", lease_s), ("timeout_s", timeout_s), ("retry_s", retry_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 7 * 24 * 3600:
                raise ConfigurationError(f"{name} must be a number of seconds above 0, got {value!r}")
        if not isinstance(namespace, str) or not namespace or any(c.isspace() for c in namespace):
            raise ConfigurationError(f"namespace must be non-empty text without spaces, got {namespace!r}")
        if client is None:
            try:
                import redis
            except ImportError:
                raise ConfigurationError("RedisState needs the redis package: pip install "
                                         "'mirror-providers[redis]'") from None
            if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigurationError("url must be a redis://, rediss:// or unix:// URL")
            client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                          retry_on_timeout=False)
        kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None) or {}
        if kwargs.get("decode_responses"):
            raise ConfigurationError("RedisState needs a client that returns bytes (decode_responses=False)")
        self._secrets = [s for s in (kwargs.get("password"), kwargs.get("username")) if isinstance(s, str) and s]
        self._redis = client
        self.namespace = namespace
        self.lease_s = float(lease_s)
        self.retry_s = float(retry_s)
        self.timeout_s = float(timeout_s)
        self._wall = wall_clock
        self._local = InMemoryState()
        self._lock = lock_for(self)
        self._leases: dict[str, list[tuple[str, bool]]] = {}  # key -> this process's (token, in Redis?)
        self._down_until = 0.0  # wall-clock time before which Redis is not tried again
        self._outage = False  # Redis failed and has not answered since
        self._latencies: dict[str, tuple[float, tuple[float, ...]]] = {}  # key -> (read at, latencies)
        self._orphans: list[tuple[str, str]] = []  # (leases key, token) ended while Redis was away
        self._scripts = {name: client.register_script(src)
                         for name, src in (("success", _SUCCESS), ("failure", _FAILURE), ("cool_down", _COOL_DOWN),
                                           ("acquire", ACQUIRE_LUA), ("settle", SETTLE_LUA))}

    def __repr__(self) -> str:  # never the URL: it may hold a password
        return f"RedisState(namespace={self.namespace!r}, lease_s={self.lease_s:g})"

    # -- keys and times -------------------------------------------------------------------------

    def _keys(self, key: str) -> tuple[str, str, str]:
        base = f"{self.namespace}:{key}"
        return f"{base}:state", f"{base}:latencies", f"{base}:in-flight"

    def _offset(self) -> float:
        """Wall-clock seconds minus the pool's clock (``time.monotonic``) in this process."""
        return self._wall() - time.monotonic()

    # -- Redis, or this process when Redis fails -----------------------------------------------

    def _up(self) -> bool:
        return self._wall() >= self._down_until

    def _down(self, exc: BaseException) -> None:
        with self._lock:
            first, self._outage = not self._outage, True
            self._down_until = self._wall() + self.retry_s
        if first:  # one warning per outage, however many retries fail in it
            log.warning("RedisState: Redis failed (%s: %s); this process keeps pool state in memory and "
                        "tries Redis again every %gs", type(exc).__name__,
                        redact(str(exc), self._secrets)[:200],  # a server may echo a command's arguments
                        self.retry_s)

    def _push(self, key: str, token: str, shared: bool) -> None:
        with self._lock:
            self._leases.setdefault(key, []).append((token, shared))

    def _pop(self, key: str) -> tuple[str, bool]:
        with self._lock:
            mine = self._leases.get(key)
            return mine.pop() if mine else ("", False)

    def _try(self, op: Callable[[], Any]) -> tuple[bool, Any]:
        """Run one Redis round trip and read its reply: (True, what ``op`` made of it), or
        (False, None) once it failed. A reply that is not what was asked for is a failure too,
        and so is a round trip that took longer than ``timeout_s`` in all (a server trickling its
        reply keeps each read within the socket timeout): its result is used, and the next calls
        keep state here until ``retry_s`` has passed."""
        if not self._up():
            return False, None
        start = time.monotonic()
        try:
            result = op()
        except Exception as exc:  # redis.RedisError, OSError, a timeout, a garbled reply: never the request's
            self._down(exc)
            return False, None
        took = time.monotonic() - start
        if took > self.timeout_s:
            self._down(TimeoutError(f"a round trip took {took:.2f}s, more than timeout_s={self.timeout_s:g}"))
        elif self._outage:
            with self._lock:
                back, self._outage = self._outage, False
            if back:
                log.warning("RedisState: Redis answers again; this process shares pool state there again")
        return True, result

    # -- MemberState ------------------------------------------------------------------------------

    def begin(self, key: str) -> None:
        token = uuid.uuid4().hex
        state, _, leases = self._keys(key)
        now = self._wall()
        with self._lock:
            orphans, self._orphans = self._orphans, []

        def op() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            for where, lease in orphans:  # leases this process could not end while Redis was away
                pipe.zrem(where, lease)
            pipe.zremrangebyscore(leases, "-inf", now)  # leases of processes that died mid-call
            pipe.zadd(leases, {token: now + self.lease_s})
            pipe.expire(leases, KEY_TTL_S)
            return pipe.execute()

        shared, _ = self._try(op)
        if not shared:
            self._local.begin(key)
            with self._lock:
                self._orphans = (orphans + self._orphans)[-MAX_ORPHANS:]
        self._push(key, token, shared)

    def _ended_here(self, key: str, token: str, shared: bool) -> None:
        """A request's end could not reach Redis: its lease is ended on the next round trip that
        works, and its verdict is kept in this process (counted as begun here too)."""
        if shared:
            with self._lock:
                self._orphans = [*self._orphans, (self._keys(key)[2], token)][-MAX_ORPHANS:]
            self._local.begin(key)

    def success(self, key: str, latency_s: float, now: float) -> None:
        token, shared = self._pop(key)
        if shared:
            ok, _ = self._try(lambda: self._scripts["success"](
                keys=self._keys(key), args=[token, repr(float(latency_s)), EWMA_ALPHA, LATENCY_KEPT, KEY_TTL_S]))
            if ok:
                return
        self._ended_here(key, token, shared)
        self._local.success(key, latency_s, now)

    def failure(self, key: str, now: float) -> int:
        token, shared = self._pop(key)
        if shared:
            state, _, leases = self._keys(key)
            ok, run = self._try(lambda: int(self._scripts["failure"](
                keys=[state, leases], args=[token, repr(now + self._offset()), KEY_TTL_S])))
            if ok:
                return int(run)
        self._ended_here(key, token, shared)
        return self._local.failure(key, now)

    def cool_down(self, key: str, until: float) -> None:
        wall = until + self._offset()
        ok, _ = self._try(lambda: self._scripts["cool_down"](keys=[self._keys(key)[0]], args=[repr(wall), KEY_TTL_S]))
        if not ok:
            self._local.cool_down(key, until)

    def release(self, key: str) -> None:
        token, shared = self._pop(key)
        if shared and self._try(lambda: self._redis.zrem(self._keys(key)[2], token))[0]:
            return
        self._ended_here(key, token, shared)
        self._local.release(key)

    def acquire(self, key: str, budget: RateBudget, tokens: int, now: float,
                max_wait: float = 0.0) -> tuple[bool, float]:
        where = f"{self.namespace}:{key}:budget"
        args = [repr(self._wall()), "" if budget.rpm is None else repr(budget.rpm),
                "" if budget.tpm is None else repr(budget.tpm), int(tokens), repr(min(max_wait, MAX_WAIT_S))]
        ok, reply = self._try(lambda: _taken(self._scripts["acquire"](keys=[where], args=args)))
        if ok:
            taken, wait = reply
            return bool(taken), float(wait)
        return self._local.acquire(key, budget, tokens, now, max_wait)  # Redis away: this process's share

    def settle(self, key: str, tpm: float, tokens: int, now: float) -> None:
        where = f"{self.namespace}:{key}:budget"
        ok, _ = self._try(lambda: self._scripts["settle"](keys=[where], args=[repr(self._wall()), repr(tpm),
                                                                              int(tokens)]))
        if not ok:
            self._local.settle(key, tpm, tokens, now)

    def snapshot(self, keys: Sequence[str]) -> Mapping[str, MemberSnapshot]:
        now = self._wall()
        with self._lock:  # the latency lists are read at most once a second per member (they are long)
            stale = [k for k in keys if now - self._latencies.get(k, (-math.inf, ()))[0] >= LATENCIES_MAX_AGE_S]

        local = self._local.snapshot(keys)  # what this process did while Redis was away (counted still)

        def op() -> dict[str, MemberSnapshot]:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                state, _, leases = self._keys(key)
                pipe.hgetall(state)
                pipe.zcount(leases, now, "+inf")
            for key in stale:
                pipe.lrange(self._keys(key)[1], 0, -1)
            replies = pipe.execute()
            fresh = {key: tuple(v for v in map(_float, raw) if v is not None)
                     for key, raw in zip(stale, replies[2 * len(keys):], strict=True)}
            with self._lock:
                self._latencies.update((key, (now, kept)) for key, kept in fresh.items())
                latencies = {key: self._latencies[key][1] for key in keys}
            offset = now - time.monotonic()
            return {key: _snapshot(replies[2 * i], latencies[key], int(replies[2 * i + 1]), offset, local[key])
                    for i, key in enumerate(keys)}

        ok, snaps = self._try(op)
        return snaps if ok else local


def _float(raw: bytes | None) -> float | None:
    """A number Redis holds, or None (absent, or not a finite number: never trusted blindly)."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _taken(raw: Any) -> tuple[bool, float]:
    """The budget script's reply, (taken, wait); anything else is Redis failing (the caller
    falls back)."""
    if isinstance(raw, list) and len(raw) == 2 and raw[0] in (0, 1) and isinstance(raw[1], bytes):
        wait = _float(raw[1])
        if wait is not None and wait >= 0:
            return bool(raw[0]), wait
    raise ValueError(f"the budget script answered {raw!r:.80}, not (taken, wait)")


def _number(fields: Mapping[bytes, bytes], name: str) -> float | None:
    return _float(fields.get(name.encode()))


def _snapshot(fields: Mapping[bytes, bytes], latencies: tuple[float, ...], in_flight: int, offset: float,
              local: MemberSnapshot) -> MemberSnapshot:
    """A member's Redis record as the pool's snapshot (its times on the pool's clock)."""
    until = _number(fields, "cooldown_until") or 0.0
    failed_at = _number(fields, "last_failure_at")
    return MemberSnapshot(
        in_flight=in_flight + local.in_flight,
        successes=int(_number(fields, "successes") or 0) + local.successes,
        failures=int(_number(fields, "failures") or 0) + local.failures,
        consecutive_failures=int(_number(fields, "consecutive") or 0),
        cooldown_until=max(until - offset if until else 0.0, local.cooldown_until),
        latency_ewma_s=_number(fields, "ewma"),
        latencies_s=latencies,
        last_failure_at=None if failed_at is None else failed_at - offset,
    )

