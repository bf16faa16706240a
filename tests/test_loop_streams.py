"""Async streams of HTTP providers read on the event loop (``_wait``), on real sockets.

Once open (on a worker thread), a chunked stream's body is read in the loop's thread, where the
loop says its socket is readable: no thread per open stream. What must hold: the chunks and
their order, no reader thread while streams are open, a loop that keeps running while servers
are silent, read timeouts and early stops as on a thread, the connection back in the pool with
its timeout, and the thread kept where the body cannot be read that way.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.errors import RequestTimeout
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import FallbackChain

from .server import (
    FakeServer,
    Received,
    Reply,
    add_anthropic_routes,
    add_ollama_routes,
    add_openai_routes,
    openai_sse,
)
from .waiting import Heartbeat, eventually_async

WAIT = 10.0  # bound on anything that must happen; reaching it is the failure


def _readers() -> int:
    return sum(t.name == "mirror-stream" for t in threading.enumerate())


def _provider(vendor: str, server: FakeServer, **kw: Any) -> Any:
    if vendor == "openai":
        add_openai_routes(server, "one two three four")
        return OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, **kw)
    if vendor == "anthropic":
        add_anthropic_routes(server, "one two three four")
        return AnthropicProvider(api_key="sk-ant-test", base_url=server.url, max_retries=0, **kw)
    add_ollama_routes(server, "one two three four")
    return OllamaProvider(model="llama3.2", host=server.url, max_retries=0, **kw)


def _gated_route(server: FakeServer, frames: list[bytes], gate: threading.Event, *, first: int = 2,
                 path: str = "/v1/chat/completions") -> None:
    """A stream that sends its first ``first`` frames, waits for ``gate``, then the rest."""

    def chat(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
        for frame in frames[:first]:
            reply.chunk(frame)
        gate.wait(WAIT)
        for frame in frames[first:]:
            reply.chunk(frame)
        reply.end_chunks()

    server.route("POST", path, chat)


@pytest.mark.parametrize("vendor", ["openai", "anthropic", "ollama"])
def test_chunks_in_order_and_the_connection_reused(vendor: str) -> None:
    with FakeServer() as server:
        llm = _provider(vendor, server)

        async def main() -> list[str]:
            texts = []
            for _ in range(3):
                texts.append("".join([c.content async for c in llm.stream("hi")]))
            texts.append((await llm.generate("hi")).content)
            return texts

        assert [t.split() for t in asyncio.run(main())] == [["one", "two", "three", "four"]] * 4
        assert server.connections == 1  # the loop-read streams gave their connection back
        llm.close()


def test_no_reader_thread_while_streams_are_open_and_the_loop_keeps_running() -> None:
    gate = threading.Event()
    with FakeServer() as server:
        _gated_route(server, openai_sse("alpha beta gamma"), gate)
        llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, timeout=WAIT)

        async def main() -> tuple[int, int, list[str]]:
            ticks = 0

            async def heartbeat() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.001)
                    ticks += 1

            async def consume() -> str:
                return "".join([c.content async for c in llm.stream("hi")])

            beat = asyncio.ensure_future(heartbeat())
            streams = [asyncio.ensure_future(consume()) for _ in range(20)]
            assert await eventually_async(lambda: server.open_connections >= 20, within=WAIT)  # all open
            await asyncio.sleep(0.05)  # their first frames read; the server now silent
            readers = _readers()
            start = ticks
            await asyncio.sleep(0.2)
            ticked = ticks - start  # the loop ran while 20 servers were silent
            gate.set()
            texts = await asyncio.wait_for(asyncio.gather(*streams), WAIT)
            beat.cancel()
            return readers, ticked, texts

        readers, ticked, texts = asyncio.run(main())
        assert readers == 0
        assert ticked > 20
        assert texts == ["alpha beta gamma"] * 20
        llm.close()


def test_a_silent_server_is_a_read_timeout() -> None:
    gate = threading.Event()
    with FakeServer() as server:
        _gated_route(server, openai_sse("alpha beta"), gate)
        llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, timeout=0.3)

        async def main() -> list[str]:
            got = []
            with pytest.raises(RequestTimeout):
                async for chunk in llm.stream("hi"):
                    got.append(chunk.content)
            return got

        try:
            assert "".join(asyncio.run(asyncio.wait_for(main(), WAIT))) == "alpha"
        finally:
            gate.set()
        llm.close()


@pytest.mark.parametrize("how", ["break", "cancel", "aclose"])
def test_stopping_early_on_a_silent_server_returns_at_once_and_leaves_nothing_watched(how: str) -> None:
    gate = threading.Event()
    with FakeServer() as server:
        _gated_route(server, openai_sse("alpha beta"), gate)
        llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, timeout=WAIT)

        async def main() -> tuple[int, int]:
            loop = asyncio.get_running_loop()
            watched = len(loop._selector.get_map())  # type: ignore[attr-defined]
            stream = llm.stream("hi")
            if how == "cancel":
                started = asyncio.Event()

                async def consume() -> None:
                    async for _ in stream:
                        started.set()

                task = asyncio.ensure_future(consume())
                await asyncio.wait_for(started.wait(), WAIT)
                await asyncio.sleep(0.05)  # waiting on the silent socket now
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:
                async for _ in stream:
                    break
                if how == "aclose":
                    await stream.aclose()  # type: ignore[attr-defined]
                else:
                    await stream.aclose()  # type: ignore[attr-defined]  # what the loop's finalizer does
            return watched, len(loop._selector.get_map())  # type: ignore[attr-defined]

        try:
            before, after = asyncio.run(asyncio.wait_for(main(), WAIT))
        finally:
            gate.set()
        assert after == before
        assert server.wait_open_connections(0)  # the stream's connection was closed, not leaked
        llm.close()


def test_the_socket_timeout_is_back_when_the_connection_is_reused() -> None:
    stall = threading.Event()
    calls = []

    def chat(req: Received, reply: Reply) -> None:
        calls.append(1)
        if req.json().get("stream"):
            reply.stream(200, openai_sse("one two"), {"Content-Type": "text/event-stream"})
            return
        stall.wait(WAIT)  # the call after the stream: no answer
        reply.json(200, {})

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, timeout=0.3)

        async def main() -> str:
            return "".join([c.content async for c in llm.stream("hi")])

        try:
            assert asyncio.run(main()) == "one two"
            start = time.monotonic()
            with pytest.raises(RequestTimeout):  # not BlockingIOError at once, not a hang
                llm.generate_sync("hi")
            assert time.monotonic() - start < WAIT
        finally:
            stall.set()
        assert server.connections == 1  # the timed-out call ran on the stream's connection
        llm.close()


def test_a_body_with_a_length_stays_on_its_thread_and_streams() -> None:
    gate = threading.Event()

    def chat(req: Received, reply: Reply) -> None:
        frames = openai_sse("one two")
        body = b"".join(frames)
        reply.head(200, {"Content-Type": "text/event-stream"}, length=len(body))
        reply.raw(b"".join(frames[:2]))
        gate.wait(WAIT)
        reply.raw(b"".join(frames[2:]))

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, timeout=WAIT)
        seen: list[int] = []

        async def main() -> str:
            out = []
            async for chunk in llm.stream("hi"):
                if not seen:
                    seen.append(_readers())  # the rest not sent yet: its reader waits for it
                    gate.set()
                out.append(chunk.content)
            return "".join(out)

        try:
            assert asyncio.run(asyncio.wait_for(main(), WAIT)) == "one two"
        finally:
            gate.set()
        assert seen == [1]  # read on a thread of its own, as before
        llm.close()


def test_a_chain_streams_on_its_thread_and_a_hook_may_stream_inside() -> None:
    with FakeServer() as server:
        add_openai_routes(server, "one two")
        llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0)
        inner: list[str] = []

        class Hook:
            def on_stream_end(self, event: Any) -> None:
                if not inner:  # a sync stream inside the async one's hook: read as usual, blocking
                    inner.append("")
                    inner[0] = "".join(c.content for c in llm.stream_sync("again"))

        llm.add_hook(Hook())
        chain = FallbackChain([llm])

        async def main() -> tuple[str, str]:
            direct = "".join([c.content async for c in llm.stream("hi")])
            pooled = "".join([c.content async for c in chain.stream("hi")])
            return direct, pooled

        assert asyncio.run(main()) == ("one two", "one two")
        assert inner == ["one two"]
        llm.close()


def _flood_route(server: FakeServer, n: int, pad: str) -> Callable[[], int]:
    sent = [0]

    def chat(req: Received, reply: Reply) -> None:
        frames = openai_sse(" ".join(f"w{i}{pad}" for i in range(n)))
        reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
        for frame in frames:
            reply.chunk(frame)
            sent[0] += 1
        reply.end_chunks()

    server.route("POST", "/v1/chat/completions", chat)
    return lambda: sent[0]


def test_a_slow_consumer_holds_the_reader_back_and_loses_nothing() -> None:
    with FakeServer() as server:
        sent = _flood_route(server, 20000, "x" * 1000)  # 20 MB: more than the sockets' buffers hold
        llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, timeout=WAIT)

        async def main() -> tuple[list[str], int]:
            out: list[str] = []
            stream = llm.stream("hi")
            async for chunk in stream:
                out.append(chunk.content)
                if len(out) == 10:
                    await asyncio.sleep(0.3)  # the server floods meanwhile
                    held = sent()
            return out, held

        out, held = asyncio.run(main())
        words = "".join(out).split()
        assert words == [f"w{i}{'x' * 1000}" for i in range(20000)]
        assert held < 20000  # the server was held back by TCP: the reader stopped reading
        llm.close()


def test_over_tls_records_of_any_size_arrive_whole_and_the_connection_is_reused(
        certificate: tuple[str, str]) -> None:
    # Frames from a few bytes to 40 KB: TLS records (16 KB at most) split them, and a read may
    # leave decrypted bytes in the TLS layer that the socket no longer signals.
    words = [f"w{i}" + "y" * (i * 997 % 40000) for i in range(300)]
    gate = threading.Event()
    with FakeServer(tls=certificate) as server:
        _gated_route(server, openai_sse(" ".join(words)), gate, first=3)
        url = server.url.replace("127.0.0.1", "localhost")
        llm = OpenAIProvider(api_key="sk-test", base_url=url + "/v1", max_retries=0, timeout=WAIT,
                             verify=certificate[0])

        async def main() -> tuple[list[str], int]:
            out: list[str] = []
            readers = -1
            async for chunk in llm.stream("hi"):
                out.append(chunk.content)
                if len(out) == 2:
                    await asyncio.sleep(0.05)
                    readers = _readers()  # the server silent now; read on the loop, no thread
                    gate.set()
            return out, readers

        for _ in range(2):
            gate.clear()
            out, readers = asyncio.run(asyncio.wait_for(main(), WAIT))
            assert "".join(out).split() == words
            assert readers == 0
        assert server.connections == 1
        llm.close()


def test_a_flood_of_keep_alives_never_holds_the_loop_for_more_than_a_read() -> None:
    def chat(req: Received, reply: Reply) -> None:
        frames = openai_sse("after the flood")
        reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
        reply.chunk(frames[0])
        end = time.monotonic() + 1.0
        while time.monotonic() < end:  # comments only, as fast as the socket takes them: no chunk to count
            reply.chunk(b": ping\n\n" * 8192)
        for frame in frames[1:]:
            reply.chunk(frame)
        reply.end_chunks()

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, timeout=WAIT)

        async def main() -> tuple[str, float]:
            beat = Heartbeat()
            beat.start()
            text = "".join([c.content async for c in llm.stream("hi")])
            return text, await beat.stop()

        text, gap = asyncio.run(asyncio.wait_for(main(), WAIT))
        assert text == "after the flood"
        assert gap < 0.2  # one read (64 KB) at a time, then the loop's other tasks
        llm.close()


def test_a_stream_with_hooks_keeps_its_thread() -> None:
    gate = threading.Event()
    with FakeServer() as server:
        _gated_route(server, openai_sse("alpha beta"), gate)
        llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, timeout=WAIT)

        class Hook:
            def on_stream_end(self, event: Any) -> None:
                pass

        llm.add_hook(Hook())

        async def main() -> tuple[str, int]:
            out, readers = [], -1
            async for chunk in llm.stream("hi"):
                out.append(chunk.content)
                if readers < 0:
                    await asyncio.sleep(0.05)
                    readers = _readers()
                    gate.set()
            return "".join(out), readers

        try:
            assert asyncio.run(asyncio.wait_for(main(), WAIT)) == ("alpha beta", 1)
        finally:
            gate.set()
        llm.close()
