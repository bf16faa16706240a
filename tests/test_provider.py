"""The Provider base: validation first, stats, async derived from sync, cancellation over sockets."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator

import pytest

from mirror_providers.errors import ServerError, ValidationError
from mirror_providers.openai import OpenAIProvider
from mirror_providers.provider import current_scope, percentiles
from mirror_providers.request import GenerateRequest
from mirror_providers.types import StreamChunk

from .fakes import Fake
from .server import FakeServer, Received, Reply, openai_sse
from .waiting import eventually_async


def test_validation_happens_before_the_provider_is_called() -> None:
    p = Fake("e")
    with pytest.raises(ValidationError):
        p.generate_sync("")
    with pytest.raises(ValidationError):
        p.stream_sync("hi", max_tokens=-1)  # at call time, not at first iteration
    assert p.calls == [] and p.get_stats().requests == 0


def test_async_generate_and_stream_inside_running_loop() -> None:
    p = Fake("e")

    async def main() -> tuple[str, list[str]]:
        r = await p.generate("hello world")
        words = [c.content async for c in p.stream("a b c")]
        results = await asyncio.gather(*(p.generate(f"n{i}") for i in range(50)))
        assert [r.content for r in results] == [f"e: n{i}" for i in range(50)]
        return r.content, words

    assert asyncio.run(main()) == ("e: hello world", ["e:", " a", " b", " c", ""])
    assert p.get_stats().successes == 52


def test_async_validation_error_raised_at_call() -> None:
    with pytest.raises(ValidationError):
        Fake("e").stream("")


def test_stats_after_failures() -> None:
    p = Fake("e", fail=lambda: ServerError("down", provider="fake"))
    for _ in range(2):
        with pytest.raises(ServerError):
            p.generate_sync("x")
    s = p.get_stats()
    assert (s.status, s.errors, s.consecutive_errors, s.in_flight) == ("degraded", 2, 2, 0)
    assert s.last_error == "ServerError: [fake] down"
    p.fail = None
    p.generate_sync("x")
    assert p.get_stats().status == "healthy"


def test_a_stream_runs_and_cleans_up_in_its_own_context() -> None:
    probe: contextvars.ContextVar[str] = contextvars.ContextVar("probe", default="caller")
    seen: list[tuple[str, object, str]] = []

    class Scoped(Fake):
        def _stream(self, request: GenerateRequest) -> Iterator[StreamChunk]:
            probe.set("stream")  # stays in the stream's context, never leaks into the caller's
            try:
                for i, word in enumerate(request.messages[-1].text.split()):
                    seen.append(("chunk", current_scope(), probe.get()))
                    yield StreamChunk(word, i)
            finally:
                seen.append(("cleanup", current_scope(), probe.get()))

    stream = Scoped("s").stream_sync("a b c")
    assert next(stream).content == "a" and probe.get() == "caller" and current_scope() is None
    assert next(stream).content == "b"
    stream.close()
    scopes = {scope for _, scope, _ in seen}
    assert len(scopes) == 1 and None not in scopes  # the same abort scope, during cleanup too
    assert [(kind, value) for kind, _, value in seen] == [("chunk", "stream"), ("chunk", "stream"), ("cleanup", "stream")]


def test_context_manager_closes() -> None:
    closed = []

    class C(Fake):
        def close(self) -> None:
            closed.append(True)

    with C("c") as p:
        p.generate_sync("x")
    assert closed == [True]


def test_cancelled_async_stream_releases_the_connection_at_once(server: FakeServer) -> None:
    """The server sends one chunk and then nothing: breaking out must not wait for the read timeout."""
    hold = threading.Event()
    closed = threading.Event()

    def route(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
        reply.chunk(openai_sse("first")[1])
        hold.wait(30)  # a silent server
        try:
            reply.chunk(b"data: [DONE]\n\n")
        except OSError:
            closed.set()
        closed.set()

    server.route("POST", "/v1/chat/completions", route)
    p = OpenAIProvider(base_url=server.url + "/v1", timeout=30)

    async def main() -> None:
        async for chunk in p.stream("hi"):
            assert chunk.content == "first"
            break
        # The worker was blocked reading a silent socket; the abort wakes it well before 30 s.
        assert await eventually_async(lambda: p.get_stats().in_flight == 0)

    try:
        asyncio.run(main())
    finally:
        hold.set()
    assert p.get_stats().in_flight == 0


@pytest.mark.parametrize("wrapped", [False, True])
def test_cancelled_generate_releases_the_connection_at_once(server: FakeServer, wrapped: bool) -> None:
    """The server takes the request and never answers: cancelling the await must not leave a
    worker thread waiting for the read timeout (30 s here), nor fail over, nor blame the member."""
    from mirror_providers import _aio
    from mirror_providers.pooling import FallbackChain

    hold = threading.Event()
    server.route("POST", "/v1/chat/completions", lambda r, w: hold.wait(30))
    second = OpenAIProvider(base_url=server.url + "/v1", timeout=30)
    member = OpenAIProvider(base_url=server.url + "/v1", timeout=30)
    target = FallbackChain([member, second], failure_threshold=1) if wrapped else member

    async def main() -> None:
        task = asyncio.create_task(target.generate("hi"))
        assert await eventually_async(lambda: len(server.received) == 1)  # the request is on the wire
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await eventually_async(lambda: _aio.active_workers() == 0)

    try:
        asyncio.run(main())
    finally:
        hold.set()
    assert len(server.received) == 1  # no failover after the caller gave up
    stats = member.get_stats()
    assert (stats.in_flight, stats.errors) == (0, 0)
    if wrapped:
        assert target.get_stats().members[0].status != "cooldown"


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentiles([4.0, 1.0, 3.0, 2.0], 0.0, 0.5, 0.95, 1.0) == pytest.approx((1.0, 2.5, 3.85, 4.0))
    assert percentiles([], 0.5, 0.99) == (None, None)
