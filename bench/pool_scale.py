"""A pool's own cost as it grows: members and threads (the performance issue's pool-scaling row).

    python bench/run.py --only poolscale

Real ``OpenAIProvider`` members on a stub transport (a canned chat completion, returned at once:
no sockets, no server), in a real ``ProviderPool``. ``calls`` ``generate_sync`` calls are spread
over N threads that start together; reported is the time per call against the same pool of 2
members at 8 threads, measured right beside it (each side first in every other round): the
ratio is the median of ``reps`` such pairs, so the load of other work on the machine, which
drifts, hits both sides of a pair alike. Each pool is warmed first, so every member has a full
latency window (the steady state of a pool that has run a while; what every selection used to
copy).

What stays constant is the work per call, so any growth is the pool's: selection, health state,
stats. Each strategy is measured against its own baseline.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from mirror_providers._stats import LATENCY_WINDOW
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import ProviderPool
from mirror_providers.transport import HttpRequest, HttpResponse, Transport

__all__ = ["bench_pool_scale"]

KEY = "sk-bench-key"
SIZES = (2, 10, 50)
THREADS = (8, 32, 128)
STRATEGIES = ("least_loaded", "round_robin")  # least_loaded is ProviderPool's default
TARGET = 1.2
BODY = json.dumps({"id": "chatcmpl-b", "object": "chat.completion", "model": "gpt-4o-mini", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode()
HEADERS = {"content-type": "application/json", "x-request-id": "req_bench"}


class StubTransport(Transport):
    """Every request answered at once with the same chat completion."""

    def send(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, HEADERS, BODY)


def make_pool(size: int, strategy: str) -> ProviderPool:
    transport = StubTransport()
    with warnings.catch_warnings():  # gpt-4o-mini's deprecation notice: the bench server's model too
        warnings.simplefilter("ignore")
        members = [OpenAIProvider(model="gpt-4o-mini", base_url=f"http://member-{i}.invalid/v1", api_key=KEY,
                                  transport=transport) for i in range(size)]
    return ProviderPool(members, strategy=strategy, seed=1)


def run_threads(pool: ProviderPool, calls: int, threads: int) -> float:
    """Seconds per call: ``calls`` calls from ``threads`` threads, timed from when all are ready."""
    share = [calls // threads + (i < calls % threads) for i in range(threads)]
    ready = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        ready.wait()
        try:
            for _ in range(n):
                pool.generate_sync("hi")
        except BaseException as exc:  # reported below: a failed call is not a fast one
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(n,)) for n in share]
    for t in workers:
        t.start()
    ready.wait()
    start = time.perf_counter()
    for t in workers:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed / calls


def warm(pool: ProviderPool, calls: int) -> None:
    """Enough calls for each member's latency window to be full (``calls`` at least)."""
    run_threads(pool, max(calls, len(pool.members) * LATENCY_WINDOW), 8)


def bench_pool_scale(row: Callable[..., Any], calls: int, reps: int, quick: bool = False) -> list[Any]:
    """One row per strategy, member count and thread count; ``row`` is bench/run.py's ``Row``."""
    pools = {(s, size): make_pool(size, s) for s in STRATEGIES for size in SIZES}
    for pool in pools.values():
        if quick:
            run_threads(pool, calls, 8)
        else:
            warm(pool, calls)
    configs = [(s, size, n) for s in STRATEGIES for size in SIZES for n in THREADS]
    pairs: dict[tuple[str, int, int], list[tuple[float, float]]] = {c: [] for c in configs}
    for rep in range(reps):
        for strategy, size, n in configs:
            base_pool, pool = pools[strategy, SIZES[0]], pools[strategy, size]
            if rep % 2:  # each side first in every other round
                ours = run_threads(pool, calls, n)
                base = run_threads(base_pool, calls, THREADS[0])
            else:
                base = run_threads(base_pool, calls, THREADS[0])
                ours = run_threads(pool, calls, n)
            pairs[strategy, size, n].append((base, ours))
    rows = []
    for strategy, size, n in configs:
        got = pairs[strategy, size, n]
        base, ours = statistics.median(b for b, _ in got), statistics.median(o for _, o in got)
        ratio = statistics.median(o / b for b, o in got)
        rows.append(row(f"ProviderPool of {size}, {n} threads, {strategy}", base * 1e6, ours * 1e6,
                        "us/call", ratio, f"<= {TARGET}x", ratio <= TARGET,
                        f"{strategy}{' (the default)' if strategy == 'least_loaded' else ''}: {1 / ours:,.0f} calls/s "
                        f"vs {1 / base:,.0f} for a pool of 2 at 8 threads; {calls} calls, median of {reps} pairs"))
    for pool in pools.values():
        pool.close()
    return rows
