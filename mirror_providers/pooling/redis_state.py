"""``RedisState``: pool member state shared by every process (and host) that uses one Redis.

A Django or Flask site runs many workers; with ``InMemoryState`` each discovers a dead or
rate-limited member on its own. With ``RedisState`` the workers of one pool (same ``name=`` and
members, so the same member keys) share health, cooldowns, in-flight counts, latency and rate
budgets. It needs the ``redis`` extra (``pip install 'mirror-providers[redis]'``); the core
install does not.

Per member there are up to four keys under ``namespace``: a hash (successes, failures, the
current run of failures, cooldown end, latency estimate, last failure), a list of recent latencies
(the last ``LATENCY_KEPT``, read by each process at most once a second), a sorted set of in-flight
leases, and for a member with ``rpm=``/``tpm=`` its rate budget (see ``budget``: taken and
corrected atomically by every process, so the limit holds across all of them). Keys expire
``KEY_TTL_S`` after their last write (a budget's a minute after it is full).

* **About one round trip a call.** ``snapshot`` (the pool's selection) reads every member in one
  pipeline. Writes whose reply nobody waits for (a request's start, its success or release, a
  budget's correction) ride on that pipeline for the next call, or a flusher thread sends them
  ``WRITE_DELAY_S`` later; a failure (whose run of failures decides a cooldown), a cooldown and
  a budget's turn are sent at once, carrying the waiting writes before them. A process's round
  trips go one at a time, so its writes arrive in order; in a forked child the parent's waiting
  writes are dropped (the parent sends them).
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

import atexit
import hashlib
import logging
import math
import os
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._forksafe import lock_for
from .._redact import redact
from ..errors import ConfigurationError
from ..request import MAX_TIMEOUT_S
from .budget import ACQUIRE_LUA, SETTLE_LUA, RateBudget
from .state import EWMA_ALPHA, InMemoryState, MemberSnapshot

__all__ = ["KEY_TTL_S", "LATENCY_KEPT", "RedisState"]

log = logging.getLogger("mirror_providers.pooling")

LATENCY_KEPT = 200  # latencies kept per member in Redis (percentiles, "p95" hedging)
LATENCIES_MAX_AGE_S = 1.0  # a process reads a member's latency list at most this often
MAX_ORPHANS = 10_000  # leases kept to end once Redis is back; older ones run out on their own
KEY_TTL_S = 7 * 24 * 3600  # a member nobody wrote to for a week is forgotten
WRITE_DELAY_S = 0.005  # a write no caller waits for reaches Redis within this (or with the next round trip)
MAX_WAIT_S = 7 * 24 * 3600  # "no limit" for a budget wait, as a number a Lua script reads

# Every script first puts right what is not what it should be (a key of another type, a field that
# is not a number): a member's state in Redis is repaired by its next write, never poisoned.
_REPAIR = """
local function kind(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= want and t ~= 'none' then redis.call('DEL', key) end
end
local function count(key, field)
  local n = tonumber(redis.call('HGET', key, field))
  if n == nil or n ~= n or n < 0 or n > 1e15 then return 0 end
  return math.floor(n)
end
"""

# KEYS: leases. ARGV: now, lease token, its expiry, ttl. Leases of processes that died mid-call go.
_BEGIN = _REPAIR + """
kind(KEYS[1], 'zset')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS: hash, latencies, leases. ARGV: lease token, latency, alpha, kept, ttl.
_SUCCESS = _REPAIR + """
kind(KEYS[1], 'hash')
kind(KEYS[2], 'list')
kind(KEYS[3], 'zset')
redis.call('ZREM', KEYS[3], ARGV[1])
local ewma = tonumber(redis.call('HGET', KEYS[1], 'ewma'))
local latency = tonumber(ARGV[2])
if ewma == nil or ewma ~= ewma or ewma < 0 or ewma > 1e9 then ewma = latency
else ewma = tonumber(ARGV[3]) * latency + (1 - tonumber(ARGV[3])) * ewma end
redis.call('HSET', KEYS[1], 'successes', count(KEYS[1], 'successes') + 1, 'consecutive', 0, 'cooldown_until', 0,
           'ewma', tostring(ewma))
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
return 1
"""

# KEYS: hash, leases. ARGV: lease token, now, ttl.
_FAILURE = _REPAIR + """
kind(KEYS[1], 'hash')
kind(KEYS[2], 'zset')
redis.call('ZREM', KEYS[2], ARGV[1])
local run = count(KEYS[1], 'consecutive') + 1
redis.call('HSET', KEYS[1], 'failures', count(KEYS[1], 'failures') + 1, 'last_failure_at', ARGV[2], 'consecutive', run)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return run
"""

# KEYS: hash. ARGV: until, ttl. A later cooldown already set stays.
_COOL_DOWN = _REPAIR + """
kind(KEYS[1], 'hash')
local current = tonumber(redis.call('HGET', KEYS[1], 'cooldown_until')) or 0
if current ~= current or current > tonumber(ARGV[1]) + 604800 then current = 0 end
if tonumber(ARGV[1]) > current then redis.call('HSET', KEYS[1], 'cooldown_until', ARGV[1]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


_SCRIPTS = {"begin": _BEGIN, "success": _SUCCESS, "failure": _FAILURE, "cool_down": _COOL_DOWN, "acquire": ACQUIRE_LUA,
            "settle": SETTLE_LUA}
_SHAS = {name: hashlib.sha1(source.encode()).hexdigest() for name, source in _SCRIPTS.items()}


_LIVE: weakref.WeakSet[RedisState] = weakref.WeakSet()  # flushed when the interpreter exits


def _flush_if_mine(state: weakref.ref[RedisState], pid: int) -> None:
    owner = state()
    if owner is not None and owner._pending and owner._pid == pid == os.getpid():
        owner.flush()


@atexit.register
def _flush_at_exit() -> None:
    for owner in list(_LIVE):
        if owner._pending and owner._pid == os.getpid():
            owner.flush()


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
        self._leases: dict[str, list[_Lease]] = {}  # key -> this process's requests in flight
        self._pid = os.getpid()
        self._send_lock = threading.Lock()  # one round trip at a time: writes arrive in order
        self._pending: list[tuple[Callable[[Any], None], Callable[[], None]]] = []  # writes not sent yet
        self._flusher: threading.Thread | None = None
        self._wake = threading.Event()
        self._ends_sent: list[tuple[_Lease, Callable[[], None]]] = []  # requests ended by this round trip
        self._loaded = False  # the scripts are loaded in Redis (SCRIPT LOAD with the first round trip)
        self._down_until = 0.0  # wall-clock time before which Redis is not tried again
        self._outage = False  # Redis failed and has not answered since
        self._latencies: dict[str, tuple[float, tuple[float, ...]]] = {}  # key -> (read at, latencies)
        self._orphans: list[tuple[str, str]] = []  # (leases key, token) ended while Redis was away
        _LIVE.add(self)

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

    # -- one round trip: the writes waiting, then what a caller reads ------------------------------

    def _check_fork(self) -> None:
        """In a forked child: fresh locks, flusher and in-process state, and none of the parent's
        waiting writes, leases or requests (the parent sends and ends those)."""
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._lock, self._send_lock = threading.Lock(), threading.Lock()
            self._pending, self._flusher, self._wake = [], None, threading.Event()
            self._leases, self._orphans, self._local = {}, [], InMemoryState()

    def _write(self, send: Callable[[Any], None], fall_back: Callable[[], None]) -> None:
        """Queue a write whose reply no caller waits for: the next round trip of this process
        carries it, or the flusher thread sends it ``WRITE_DELAY_S`` later, in order;
        ``fall_back`` keeps it in this process instead if it may not have reached Redis.
        ``send`` may keep it here itself (adding nothing to the pipeline)."""
        self._check_fork()
        if not self._up():
            with self._lock:
                earlier, self._pending = self._pending, []
            for _, before in earlier:  # kept here in the order they were made
                before()
            fall_back()
            return
        with self._lock:
            self._pending.append((send, fall_back))
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = threading.Thread(target=_flush_forever, args=(weakref.ref(self), self._wake),
                                                 name="mirror-providers-redis", daemon=True)
                self._flusher.start()
                # A process multiprocessing started ends with os._exit, skipping atexit: its
                # own exit hook sends what is still waiting.
                mp_util = sys.modules.get("multiprocessing.util")
                if mp_util is not None:
                    mp_util.Finalize(self, _flush_if_mine, args=(weakref.ref(self), self._pid), exitpriority=10)
        self._wake.set()

    def flush(self) -> bool:
        """Send the writes waiting now (they are sent within a round trip anyway); False when
        Redis failed and they were kept in this process."""
        return self._round_trip(None)[0]

    def _round_trip(self, read: Callable[[Any], Callable[[list[Any]], Any]] | None) -> tuple[bool, Any]:
        """One pipeline to Redis: the leases to end, the writes waiting (in the order they were
        made), then ``read``'s commands; returns (True, what ``read``'s parser made of its
        replies) or (False, None) when Redis failed. A write whose reply is an error, or that
        may not have reached Redis (the connection failed or timed out), is kept in this process.

        A reply that is not what was asked for is a failure too, and so is a round trip that took
        longer than ``timeout_s`` in all (a server trickling its reply keeps each read within the
        socket timeout): its result is used, and the next calls keep state here until
        ``retry_s`` has passed. Round trips of this process go one at a time, so writes arrive
        in order; a caller that waits ``timeout_s`` for another's to end keeps state here too."""
        self._check_fork()
        if not self._up():
            return False, None
        if not self._send_lock.acquire(timeout=self.timeout_s):
            self._down(TimeoutError(f"this process's last Redis round trip has taken more than "
                                    f"timeout_s={self.timeout_s:g}"))
            return False, None
        try:
            with self._lock:
                writes, self._pending = self._pending, []
                orphans, self._orphans = self._orphans, []
            if not self._up():
                self._kept_here(writes, orphans)
                return False, None
            if not writes and not orphans and read is None:
                return True, None
            start = time.monotonic()
            spans: list[tuple[int, int]] = []
            self._ends_sent = []
            try:
                pipe = self._redis.pipeline(transaction=False)
                if not self._loaded:  # after a (re)start of Redis or of this process
                    for source in _SCRIPTS.values():
                        pipe.script_load(source)
                for where, token in orphans:  # leases this process could not end while Redis was away
                    pipe.zrem(where, token)
                for send, _ in writes:
                    first = len(pipe)
                    send(pipe)
                    spans.append((first, len(pipe)))
                sent = len(pipe)
                parse = read(pipe) if read is not None else None
                replies = pipe.execute(raise_on_error=False) if len(pipe) else []
            except Exception as exc:  # redis.RedisError, OSError, a timeout: never the request's
                self._loaded = False
                self._down(exc)
                self._kept_here(writes, orphans)
                return False, None
            self._check_replies(writes, spans, replies)
            try:
                result = parse(replies[sent:]) if parse is not None else None
            except Exception as exc:  # a garbled reply
                self._down(exc)
                return False, None
        finally:
            self._send_lock.release()
        took = time.monotonic() - start
        if took > self.timeout_s:
            self._down(TimeoutError(f"a round trip took {took:.2f}s, more than timeout_s={self.timeout_s:g}"))
        elif self._outage:
            with self._lock:
                back, self._outage = self._outage, False
            if back:
                log.warning("RedisState: Redis answers again; this process shares pool state there again")
        return True, result

    def _check_replies(self, writes: list[tuple[Callable[[Any], None], Callable[[], None]]],
                       spans: list[tuple[int, int]], replies: list[Any]) -> None:
        """After a round trip: each write answered with an error is kept in this process (and so
        is the end of a request whose start was), and scripts Redis lost (a restart, SCRIPT
        FLUSH) are loaded again with the next one."""
        self._loaded = not any(type(r).__name__ == "NoScriptError" for r in replies)
        for (_, fall_back), (first, end) in zip(writes, spans, strict=True):
            if any(isinstance(r, Exception) for r in replies[first:end]):
                fall_back()
        for lease, here in self._ends_sent:
            if not lease.shared:  # its start failed in this same round trip: its end is kept here too
                here()

    def _kept_here(self, writes: list[tuple[Callable[[Any], None], Callable[[], None]]],
                   orphans: list[tuple[str, str]]) -> None:
        with self._lock:
            self._orphans = (orphans + self._orphans)[-MAX_ORPHANS:]
        for _, fall_back in writes:
            fall_back()

    def _evalsha(self, pipe: Any, name: str, keys: Sequence[str], *args: Any) -> None:
        pipe.evalsha(_SHAS[name], len(keys), *keys, *args)

    # -- leases ---------------------------------------------------------------------------------

    def _pop(self, key: str) -> _Lease:
        with self._lock:
            mine = self._leases.get(key)
            return mine.pop() if mine else _Lease("", False)

    def _localize(self, key: str, lease: _Lease) -> None:
        """A request's lease is (or may be) not in Redis: it is counted in this process (once),
        and its copy in Redis, if any, is ended on the next round trip that works."""
        with self._lock:
            if not lease.shared:
                return
            lease.shared = False
            self._orphans = [*self._orphans, (self._keys(key)[2], lease.token)][-MAX_ORPHANS:]
        self._local.begin(key)

    def _end(self, key: str, lease: _Lease, send: Callable[[Any], None], end: Callable[[], Any]) -> None:
        """End a request with a write no caller waits for (``end``: the same in this process),
        kept here when its start is (or, by the time it is sent, turns out to be)."""
        ended_here = [False]

        def here() -> None:
            if not ended_here[0]:
                ended_here[0] = True
                self._localize(key, lease)
                end()

        def send_or_keep(pipe: Any) -> None:
            if lease.shared:
                send(pipe)
                self._ends_sent.append((lease, here))
            else:  # its start was kept here meanwhile: so is its end
                here()

        if not lease.shared:
            end()
            return
        self._write(send_or_keep, here)

    # -- MemberState ------------------------------------------------------------------------------

    def begin(self, key: str) -> None:
        self._check_fork()
        lease = _Lease(uuid.uuid4().hex, True)
        with self._lock:
            self._leases.setdefault(key, []).append(lease)
        leases = self._keys(key)[2]
        now = self._wall()

        def send(pipe: Any) -> None:
            self._evalsha(pipe, "begin", [leases], repr(now), lease.token, repr(now + self.lease_s), KEY_TTL_S)

        self._write(send, lambda: self._localize(key, lease))

    def success(self, key: str, latency_s: float, now: float) -> None:
        lease = self._pop(key)
        args = [lease.token, repr(float(latency_s)), EWMA_ALPHA, LATENCY_KEPT, KEY_TTL_S]
        self._end(key, lease, lambda pipe: self._evalsha(pipe, "success", self._keys(key), *args),
                  lambda: self._local.success(key, latency_s, now))

    def release(self, key: str) -> None:
        lease = self._pop(key)
        leases = self._keys(key)[2]
        self._end(key, lease, lambda pipe: pipe.zrem(leases, lease.token), lambda: self._local.release(key))

    def failure(self, key: str, now: float) -> int:
        lease = self._pop(key)
        if lease.shared:  # its run of failures decides a cooldown: read back at once
            state, _, leases = self._keys(key)

            def read(pipe: Any) -> Callable[[list[Any]], int]:
                self._evalsha(pipe, "failure", [state, leases], lease.token, repr(now + self._offset()), KEY_TTL_S)
                return lambda replies: _run(replies[0])

            ok, run = self._round_trip(read)
            if ok:
                if not lease.shared:  # its start turned out to be kept here: its count ends here too
                    self._local.release(key)
                return int(run)
        self._localize(key, lease)
        return self._local.failure(key, now)

    def cool_down(self, key: str, until: float) -> None:
        wall = until + self._offset()

        def read(pipe: Any) -> Callable[[list[Any]], None]:
            self._evalsha(pipe, "cool_down", [self._keys(key)[0]], repr(wall), KEY_TTL_S)
            return lambda replies: None

        if not self._round_trip(read)[0]:
            self._local.cool_down(key, until)

    def acquire(self, key: str, budget: RateBudget, tokens: int, now: float,
                max_wait: float = 0.0) -> tuple[bool, float]:
        where = f"{self.namespace}:{key}:budget"
        args = [repr(self._wall()), *_rates(budget), int(tokens), repr(min(max_wait, MAX_WAIT_S))]

        def read(pipe: Any) -> Callable[[list[Any]], tuple[bool, float]]:
            self._evalsha(pipe, "acquire", [where], *args)
            return lambda replies: _taken(replies[0])

        ok, reply = self._round_trip(read)
        if ok:
            taken, wait = reply
            return bool(taken), float(wait)
        # Redis away: this process keeps a budget of its own, the whole rate (the limit is then
        # per process until Redis answers again).
        return self._local.acquire(key, budget, tokens, now, max_wait)

    def settle(self, key: str, budget: RateBudget, tokens: int, now: float, requests: int = 0) -> None:
        where = f"{self.namespace}:{key}:budget"
        args = [repr(self._wall()), *_rates(budget), int(tokens), int(requests)]
        self._write(lambda pipe: self._evalsha(pipe, "settle", [where], *args),
                    lambda: self._local.settle(key, budget, tokens, now, requests))

    def snapshot(self, keys: Sequence[str]) -> Mapping[str, MemberSnapshot]:
        now = self._wall()
        with self._lock:  # the latency lists are read at most once a second per member (they are long)
            stale = [k for k in keys if now - self._latencies.get(k, (-math.inf, ()))[0] >= LATENCIES_MAX_AGE_S]

        local = self._local.snapshot(keys)  # what this process did while Redis was away (counted still)

        def read(pipe: Any) -> Callable[[list[Any]], dict[str, MemberSnapshot]]:
            for key in keys:
                state, _, leases = self._keys(key)
                pipe.hgetall(state)
                pipe.zcount(leases, now, "+inf")
            for key in stale:
                pipe.lrange(self._keys(key)[1], 0, -1)
            return parse

        def parse(replies: list[Any]) -> dict[str, MemberSnapshot]:
            # A reply that is an error (a key of another type: the next write repairs it) reads as
            # nothing there.
            fresh = {key: tuple(v for v in map(_float, raw) if v is not None) if isinstance(raw, list) else ()
                     for key, raw in zip(stale, replies[2 * len(keys):], strict=True)}
            with self._lock:
                self._latencies.update((key, (now, kept)) for key, kept in fresh.items())
                latencies = {key: self._latencies[key][1] for key in keys}
            offset = now - time.monotonic()
            return {key: _snapshot(_hash(replies[2 * i]), latencies[key], _count(replies[2 * i + 1]), now, offset,
                                   local[key])
                    for i, key in enumerate(keys)}

        ok, snaps = self._round_trip(read)
        return snaps if ok else local


@dataclass
class _Lease:
    """A request of this process in flight: its token, and whether its lease is (or is on its
    way to being) in Redis."""

    token: str
    shared: bool


def _flush_forever(state: weakref.ref[RedisState], wake: threading.Event) -> None:
    """The flusher thread: sends a state's waiting writes ``WRITE_DELAY_S`` after the first of
    them, unless a round trip of the process carried them first; ends with the state (or in a
    forked child, where the state makes a new one)."""
    while True:
        wake.wait(1.0)
        wake.clear()
        owner = state()
        if owner is None or owner._wake is not wake:
            return
        if owner._pending:
            del owner
            time.sleep(WRITE_DELAY_S)  # the flusher's own pace: no caller waits on it
            owner = state()
            if owner is None:
                return
            owner._round_trip(None)
        del owner


def _rates(budget: RateBudget) -> tuple[str, str]:
    return tuple("" if rate is None else repr(rate) for rate in (budget.rpm, budget.tpm))  # type: ignore[return-value]


def _run(raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    raise ValueError(f"the failure script answered {raw!r:.80}, not a count")


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


def _hash(raw: Any) -> Mapping[bytes, bytes]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, Exception):
        return {}
    raise ValueError(f"HGETALL answered {raw!r:.80}")


def _count(raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return max(raw, 0)
    if isinstance(raw, Exception):
        return 0
    raise ValueError(f"ZCOUNT answered {raw!r:.80}")


def _number(fields: Mapping[bytes, bytes], name: str) -> float | None:
    return _float(fields.get(name.encode()))


def _snapshot(fields: Mapping[bytes, bytes], latencies: tuple[float, ...], in_flight: int, now: float, offset: float,
              local: MemberSnapshot) -> MemberSnapshot:
    """A member's Redis record as the pool's snapshot (its times on the pool's clock); a
    cooldown longer than any the pool sets is garbage, not a cooldown."""
    until = _number(fields, "cooldown_until") or 0.0
    if until > now + MAX_TIMEOUT_S:
        until = 0.0
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

