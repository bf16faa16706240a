"""Time is bounded: ``deadline_s`` covers connecting, waiting, retries, back-off and reading.

The servers here never stop on their own: one trickles a byte every few tenths of a second (each
read succeeds, so the read timeout never fires), one sends nothing but keep-alives, one asks for
twenty seconds of back-off. Each call must end at its deadline with a typed error. The elapsed
times asserted are hang guards far above the deadline and far below what the server would take,
not measurements.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from mirror_providers import _aio
from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.base import (
    CallAbortedError,
    DeadlineExceededError,
    ProviderError,
    RequestTimeout,
    ServerError,
    TruncatedStreamError,
)
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import FallbackChain

from ..server import FakeServer, Received, Reply, add_openai_routes, openai_sse
from ..waiting import eventually_async

FOREVER_S = 60  # how long the hostile servers would go on


def trickle(reply: Reply, data: bytes, gap_s: float, *, chunked: bool) -> None:
    """Send ``data`` a byte at a time, ``gap_s`` apart (the server side of a slow link)."""
    end = time.monotonic() + FOREVER_S
    for i in range(len(data)):
        if time.monotonic() > end:
            return
        reply.chunk(data[i:i + 1]) if chunked else reply.raw(data[i:i + 1])
        time.sleep(gap_s)


def openai(server: FakeServer, **kw: Any) -> OpenAIProvider:
    kw.setdefault("max_retries", 0)
    return OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", **kw)


def elapsed(fn: Callable[[], Any]) -> tuple[BaseException | None, float]:
    t0 = time.monotonic()
    try:
        fn()
    except ProviderError as exc:
        return exc, time.monotonic() - t0
    return None, time.monotonic() - t0


@pytest.mark.parametrize("where", ["call", "provider"])
def test_a_trickling_body_ends_at_the_deadline(where: str) -> None:
    body = json.dumps({"choices": [{"message": {"content": "x" * 1000}}]}).encode()

    def chat(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "application/json"}, length=len(body))
        trickle(reply, body, 0.2, chunked=False)

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        if where == "call":
            exc, took = elapsed(lambda: openai(server, timeout=5).generate_sync("hi", deadline_s=1))
        else:
            exc, took = elapsed(lambda: openai(server, timeout=5, deadline_s=1).generate_sync("hi"))
    assert isinstance(exc, DeadlineExceededError), exc
    assert exc.provider == "openai" and not exc.retryable and exc.failover_ok
    assert took < 5  # the read timeout never fires: only the deadline ends this call


def test_a_trickling_stream_of_real_chunks_ends_at_the_deadline() -> None:
    frames = openai_sse("word " * 1000)  # a frame per word, one every 50 ms: a long, healthy answer

    def chat(req: Received, reply: Reply) -> None:
        reply.stream(200, frames, {"Content-Type": "text/event-stream"}, delay_s=0.05)

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        got: list[str] = []

        def read() -> None:
            for chunk in openai(server, timeout=5).stream_sync("hi", deadline_s=1):
                got.append(chunk.content)

        exc, took = elapsed(read)
    assert isinstance(exc, DeadlineExceededError), exc
    assert got and exc.chunks_delivered == len(got)  # real chunks came, and the deadline still held
    assert took < 5


KEEPALIVES: dict[str, tuple[str, bytes]] = {
    "openai-comments": ("/v1/chat/completions", b": keep-alive\n\n"),
    "openai-blank-lines": ("/v1/chat/completions", b"\n"),
    "anthropic-pings": ("/v1/messages", b'event: ping\ndata: {"type": "ping"}\n\n'),
    "ollama-blank-lines": ("/api/chat", b"\n"),
}


def _provider(kind: str, server: FakeServer, **kw: Any) -> Any:
    if kind.startswith("openai"):
        return openai(server, **kw)
    if kind.startswith("anthropic"):
        return AnthropicProvider(api_key="sk-ant-test", base_url=server.url, max_retries=0, **kw)
    return OllamaProvider(model="llama3.2", host=server.url, max_retries=0, **kw)


def _keepalive_route(frame: bytes) -> Callable[[Received, Reply], None]:
    def route(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
        end = time.monotonic() + FOREVER_S
        while time.monotonic() < end:
            reply.chunk(frame)
            time.sleep(0.05)
    return route


@pytest.mark.parametrize("kind", list(KEEPALIVES))
def test_a_keepalive_only_stream_ends_at_the_read_timeout(kind: str) -> None:
    """No deadline set: keep-alives do not count as data, so the read timeout still applies."""
    path, frame = KEEPALIVES[kind]
    with FakeServer() as server:
        server.route("POST", path, _keepalive_route(frame))
        exc, took = elapsed(lambda: list(_provider(kind, server, timeout=0.5).stream_sync("hi")))
    assert isinstance(exc, RequestTimeout), exc
    assert "keep-alives" in str(exc) and not isinstance(exc, DeadlineExceededError)
    assert took < 10


@pytest.mark.parametrize("kind", list(KEEPALIVES))
def test_a_keepalive_only_stream_ends_at_the_deadline(kind: str) -> None:
    path, frame = KEEPALIVES[kind]
    with FakeServer() as server:
        server.route("POST", path, _keepalive_route(frame))
        exc, took = elapsed(lambda: list(_provider(kind, server, timeout=30).stream_sync("hi", deadline_s=0.5)))
    assert isinstance(exc, RequestTimeout), exc  # the deadline or the keep-alive watch, whichever first
    assert took < 10


def _unavailable(req: Received, reply: Reply) -> None:
    reply.json(503, {"error": {"message": "overloaded", "type": "server_error"}}, {"Retry-After": "20"})


def test_a_chain_with_a_deadline_does_not_sleep_a_members_retry_after() -> None:
    """The issue's case: a member answers 503 with retry-after 20 inside FallbackChain(deadline_s=3)."""
    with FakeServer() as bad, FakeServer() as good:
        bad.route("POST", "/v1/chat/completions", _unavailable)
        add_openai_routes(good, "from the second")
        # The members retry as configured by default; the back-off they are asked for is too long.
        chain = FallbackChain([openai(bad, max_retries=2), openai(good)], deadline_s=3)
        t0 = time.monotonic()
        result = chain.generate_sync("hi")
        took = time.monotonic() - t0
        assert len(bad.received) == 1  # no retry: its back-off would outlive the deadline
    assert result.content == "from the second"
    assert took < 3

    with FakeServer() as bad:
        bad.route("POST", "/v1/chat/completions", _unavailable)
        exc, took = elapsed(lambda: FallbackChain([openai(bad, max_retries=2)], deadline_s=3).generate_sync("hi"))
    assert isinstance(exc, ProviderError) and took < 3


def test_retries_stop_sleeping_at_the_deadline() -> None:
    """Short back-offs are slept until the next one would pass the deadline, then the last error
    is raised: never a sleep past it."""
    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions",
                     lambda req, reply: reply.json(503, {"error": {"message": "busy"}}, {"Retry-After": "0.3"}))
        llm = openai(server, max_retries=50)
        exc, took = elapsed(lambda: llm.generate_sync("hi", deadline_s=1))
        tries = len(server.received)
    assert isinstance(exc, ServerError) and exc.status == 503, exc
    assert 2 <= tries <= 5  # about deadline / back-off, not 51
    assert took < 1.5


def test_cancelling_an_awaited_call_during_back_off_frees_its_worker_at_once() -> None:
    tried = threading.Event()

    def busy(req: Received, reply: Reply) -> None:
        reply.json(503, {"error": {"message": "busy"}}, {"Retry-After": "30"})
        tried.set()

    async def main(llm: OpenAIProvider) -> float:
        task = asyncio.ensure_future(llm.generate("hi"))
        await asyncio.get_running_loop().run_in_executor(None, tried.wait, 10)
        await asyncio.sleep(0.1)  # let the worker reach its back-off
        assert _aio.active_workers() == 1
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises((asyncio.CancelledError, CallAbortedError)):
            await task
        assert await eventually_async(lambda: not _aio.active_workers(), within=10)
        return time.monotonic() - t0

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", busy)
        freed_after = asyncio.run(main(openai(server, max_retries=3)))
        assert len(server.received) == 1
    assert _aio.active_workers() == 0
    assert freed_after < 5  # not the 30 s back-off


def test_deadline_s_is_validated() -> None:
    bads: list[Any] = [0, -1, float("inf"), float("nan"), "1"]
    for bad in bads:
        with pytest.raises(ProviderError, match="deadline_s"):
            OpenAIProvider(api_key="sk-test", deadline_s=bad)
        with pytest.raises(ProviderError, match="deadline_s"):
            OpenAIProvider(api_key="sk-test").generate_sync("hi", deadline_s=bad)


def test_a_cancelled_stream_raises_cancelled_error_every_time() -> None:
    """Cancelling ``async for`` over a stream blocked on its socket: the abort's hooks (the socket
    shutdown, the response's own) race the reading thread closing the response; the caller must
    get CancelledError each time, never the loser's ValueError from urllib3."""
    def stalls(req: Received, reply: Reply) -> None:
        reply.stream(200, openai_sse("one")[:2] + [b": keep-alive\n\n"] * 20, {"Content-Type": "text/event-stream"},
                     delay_s=0.25)

    async def once(llm: OpenAIProvider) -> None:
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in llm.stream("hi"):
                first.set()

        task = asyncio.ensure_future(consume())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await eventually_async(lambda: not _aio.active_workers(), within=10)  # its worker is freed too

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", stalls)
        llm = openai(server, max_retries=0)
        for _ in range(12):
            asyncio.run(once(llm))


def test_a_stall_on_a_body_without_length_is_a_timeout_not_a_truncation() -> None:
    """``Connection: close`` and no length: breaking the stalled connection off looks like the
    body's end, which must not be reported as the vendor cutting the answer short."""
    release = threading.Event()

    def stalls(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "text/event-stream"})
        reply.raw(b"".join(openai_sse("one two")[:2]))
        release.wait(FOREVER_S)

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", stalls)
        got: list[str] = []
        try:
            # The idle watch and the socket's read timeout both end the stall at 0.5 s; whichever
            # comes first, it is a timeout.
            with pytest.raises(RequestTimeout, match=r"no answer data for 0.5s|read timeout from POST") as info:
                for chunk in openai(server, timeout=0.5).stream_sync("hi"):
                    got.append(chunk.content)
        finally:
            release.set()
    assert not isinstance(info.value, TruncatedStreamError) and got == ["one"]
