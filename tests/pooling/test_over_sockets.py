"""Pools of real providers over loopback servers: dead ports, two servers, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter

import pytest

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.errors import AllProvidersFailedError, ConnectError
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import FallbackChain, ProviderPool, TieredRouter
from mirror_providers.types import join_chunks

from ..server import (
    FakeServer,
    Received,
    Reply,
    add_anthropic_routes,
    add_ollama_routes,
    add_openai_routes,
    free_port,
    openai_sse,
)


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


def test_chain_dead_port_then_real_server(server: FakeServer) -> None:
    add_openai_routes(server)
    dead = OpenAIProvider(base_url=dead_url(), max_retries=0)
    live = OpenAIProvider(base_url=server.url + "/v1")
    chain = FallbackChain([dead, live], failure_threshold=1)
    r = chain.generate_sync("hi")
    assert (r.content, r.attempts.tries) == ("Paris is the capital of France.", 2)
    assert join_chunks(chain.stream_sync("hi")).content == "Paris is the capital of France."
    assert chain.get_stats().members[0].status == "cooldown"  # the dead port is no longer dialled


def test_chain_all_dead_reports_connect_errors() -> None:
    chain = FallbackChain([OpenAIProvider(base_url=dead_url(), max_retries=0),
                           OllamaProvider("llama3.1", dead_url().removesuffix("/v1"), max_retries=0)])
    with pytest.raises(AllProvidersFailedError) as info:
        chain.generate_sync("hi")
    assert [type(a.error) for a in info.value.attempts] == [ConnectError, ConnectError]
    assert "no Ollama server answers" in str(info.value)


def test_pool_over_three_vendors_and_concurrency() -> None:
    with FakeServer() as s1, FakeServer() as s2, FakeServer() as s3:
        add_openai_routes(s1, "from openai")
        add_anthropic_routes(s2, "from anthropic")
        add_ollama_routes(s3, "from ollama")
        pool = ProviderPool([OpenAIProvider(base_url=s1.url + "/v1"), AnthropicProvider(base_url=s2.url),
                             OllamaProvider("llama3.1", s3.url)], strategy="round_robin")
        results = pool.map_sync([f"q{i}" for i in range(60)], max_workers=16)
        assert Counter(r.content for r in results) == Counter(  # type: ignore[union-attr]
            {"from openai": 20, "from anthropic": 20, "from ollama": 20})

        async def gather() -> list[str]:
            rs = await asyncio.gather(*(pool.generate(f"q{i}") for i in range(30)))
            return [r.content for r in rs]

        assert len(asyncio.run(gather())) == 30
        assert pool.get_stats().successes == 90


def test_pool_member_killed_mid_run(server: FakeServer) -> None:
    add_openai_routes(server, "alive")
    doomed = FakeServer()
    doomed.__enter__()
    add_openai_routes(doomed, "doomed")
    pool = ProviderPool([OpenAIProvider(base_url=doomed.url + "/v1", max_retries=0),
                         OpenAIProvider(base_url=server.url + "/v1")], strategy="round_robin", failure_threshold=1)
    first = [pool.generate_sync("x").content for _ in range(4)]
    assert Counter(first) == Counter({"alive": 2, "doomed": 2})
    doomed.__exit__(None, None, None)  # the server goes away
    later = [pool.generate_sync("x").content for _ in range(6)]
    assert later == ["alive"] * 6  # one failed try on the dead one fails over, then it is cooled down
    stats = pool.get_stats().members
    assert stats[0].status == "cooldown" and stats[0].errors == 1


def test_cancelled_async_stream_through_a_chain_releases_at_once(server: FakeServer) -> None:
    hold = threading.Event()

    def route(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
        reply.chunk(openai_sse("first")[1])
        hold.wait(30)

    server.route("POST", "/v1/chat/completions", route)
    member = OpenAIProvider(base_url=server.url + "/v1", timeout=30)
    router = TieredRouter(fast=FallbackChain([member]))

    async def main() -> None:
        async for _ in router.stream("hi"):
            break
        for _ in range(500):
            if member.get_stats().in_flight == 0 and router.get_stats().in_flight == 0:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the member's connection was not released")

    try:
        asyncio.run(main())
    finally:
        hold.set()


def test_120_threads_through_a_pool_no_pool_full_warning(server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    add_openai_routes(server, "ok")
    barrier = threading.Barrier(120, timeout=10)
    plain = server.routes[("POST", "/v1/chat/completions")]

    def route(req: Received, reply: Reply) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()  # all 120 requests in flight at the same time
        plain(req, reply)

    server.route("POST", "/v1/chat/completions", route)
    pool = ProviderPool([OpenAIProvider(base_url=server.url + "/v1"), OpenAIProvider(base_url=server.url + "/v1")],
                        strategy="least_loaded")
    caplog.set_level(logging.WARNING, logger="urllib3")
    with warnings.catch_warnings(), ThreadPoolExecutor(120) as ex:
        warnings.simplefilter("error")
        results = list(ex.map(lambda i: pool.generate_sync(f"q{i}").content, range(120)))
    assert results == ["ok"] * 120
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    stats = pool.get_stats()
    assert (stats.successes, stats.in_flight) == (120, 0) and sum(m.successes for m in stats.members) == 120
    assert server.connections <= 120
