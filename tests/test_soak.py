"""Soak: thousands of requests through a pool of all three vendors against loopback servers that
misbehave on a seeded share of requests. Every request must be accounted for (its own answer or a
typed error: none lost, none answered twice or with another's answer), and afterwards threads,
open file descriptors and memory must be back where they started.

Short in CI (1,200 requests); ``MIRROR_SOAK_REQUESTS=20000 pytest tests/test_soak.py`` runs longer.
"""

from __future__ import annotations

import gc
import os
import random
import threading
from typing import Any

import pytest

from mirror_providers import _aio
from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.errors import AllProvidersFailedError
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import ProviderPool
from mirror_providers.transport import RequestsTransport
from mirror_providers.types import GenerationResult

from .server import FakeServer, Received, Reply, anthropic_message, openai_completion
from .waiting import eventually

BATCH = 200
REQUESTS = max(BATCH, int(os.environ.get("MIRROR_SOAK_REQUESTS", "1200")) // BATCH * BATCH)
FAULT_SHARE = 0.15


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def faulty(vendor: str, seed: int) -> Any:
    """A route that echoes the request's id, and misbehaves on a seeded share of requests."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def route(req: Received, reply: Reply) -> None:
        body = req.json()
        text = body["messages"][-1]["content"]
        answer = f"answer to {text}"
        with lock:
            roll = rng.random()
        if roll < FAULT_SHARE / 3:
            reply.json(503, {"error": "busy"})
        elif roll < 2 * FAULT_SHARE / 3:
            reply.body(200, b'{"truncated', {"Content-Type": "application/json"})
        elif roll < FAULT_SHARE:
            reply.head(200, {"Content-Type": "application/json"}, length=100)
            reply.raw(b'{"partial')
            reply.reset()
        elif vendor == "openai":
            reply.json(200, openai_completion(answer))
        elif vendor == "anthropic":
            reply.json(200, anthropic_message(answer))
        else:
            reply.json(200, {"model": "llama3.1", "message": {"role": "assistant", "content": answer}, "done": True,
                             "done_reason": "stop", "eval_count": 3})

    return route


def check_batch(pool: ProviderPool, servers: tuple[FakeServer, ...], start: int) -> tuple[int, int]:
    """Run one batch, check every answer, forget it; return (successes, typed errors)."""
    results = pool.map_sync([f"request-{i}" for i in range(start, start + BATCH)], max_workers=16)
    assert len(results) == BATCH
    ok = errors = attempts = 0
    for i, r in enumerate(results, start):
        if isinstance(r, GenerationResult):
            assert r.content == f"answer to request-{i}", (i, r.content)  # its own answer, once
            ok += 1
            attempts += r.attempts
        else:
            assert isinstance(r, AllProvidersFailedError) and r.attempts, (i, r)  # typed, with its attempts
            errors += 1
            attempts += len(r.attempts)
    served = sum(1 for s in servers for rec in s.received if rec.method == "POST")
    assert served == attempts  # every attempt reached a server exactly once
    for s in servers:
        s.received.clear()
    return ok, errors


@pytest.mark.slow
def test_soak() -> None:
    threads_before = threading.active_count()
    fds_before = fds()
    with FakeServer() as s1, FakeServer() as s2, FakeServer() as s3:
        s1.route("POST", "/v1/chat/completions", faulty("openai", 1))
        s2.route("POST", "/v1/messages", faulty("anthropic", 2))
        s3.route("POST", "/api/chat", faulty("ollama", 3))
        transport = RequestsTransport()
        kw: dict[str, Any] = {"transport": transport, "max_retries": 0, "timeout": 2.0}
        pool = ProviderPool([OpenAIProvider(base_url=s1.url + "/v1", **kw), AnthropicProvider(base_url=s2.url, **kw),
                             OllamaProvider("llama3.1", s3.url, **kw)], strategy="least_loaded",
                            failure_threshold=1000, seed=4)
        servers = (s1, s2, s3)
        ok, errors = check_batch(pool, servers, 0)  # warm-up: caches, pools, thread pool
        gc.collect()
        rss_warm = rss_mb()
        for start in range(BATCH, REQUESTS, BATCH):
            a, b = check_batch(pool, servers, start)
            ok, errors = ok + a, errors + b
        assert ok + errors == REQUESTS and ok > REQUESTS * 0.9
        stats = pool.get_stats()
        assert (stats.successes, stats.errors, stats.in_flight) == (ok, errors, 0)
        pool.close()
        transport.close()
        gc.collect()
        growth = rss_mb() - rss_warm
    assert growth < 20, f"RSS grew {growth:.1f} MB over {REQUESTS} requests"
    eventually(lambda: not (_aio.active_workers() or fds() > fds_before), within=5)  # threads winding down
    assert _aio.active_workers() == 0
    assert fds() <= fds_before, "file descriptors left open"
    worker_threads = sum(t.name.startswith("mirror-providers") for t in threading.enumerate())
    assert threading.active_count() - worker_threads <= threads_before, "threads left behind"
