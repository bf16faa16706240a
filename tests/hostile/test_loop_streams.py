"""Async streams read on the event loop (``_wait``, ``_aio._LoopReader``), attacked on real sockets.

What the review of 8226f4a found: a hook's own ``stream_sync`` inside an async stream was handed
the loop's ``WouldBlock`` markers as chunks (the flag leaked into it), and a blocking hook at a
loop-read stream's end blocks the event loop (xfail: a design choice, reported). What it tried and
found holding is kept as tests too: silent servers, hostile heads and bodies, cancellation in
every form, the socket's timeout after reuse, idle CPU, wire splits, TLS, many streams with calls
inside, pools and a fork.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import random
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from mirror_providers.errors import ProviderError, RequestTimeout
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import FallbackChain, ProviderPool

from ..server import FakeServer, Received, Reply, openai_completion, openai_sse
from ..waiting import Heartbeat

SSE = {"Content-Type": "text/event-stream"}
JSON = {"Content-Type": "application/json"}
WAIT = 10.0  # a bound on what must happen; reaching it is the failure


def _provider(server: FakeServer, timeout: float = 5.0, **kw: Any) -> OpenAIProvider:
    return OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, timeout=timeout, **kw)


def _wire(frames: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(f), f) for f in frames) + b"0\r\n\r\n"


async def _collect(llm: OpenAIProvider, **kw: Any) -> tuple[list[Any], BaseException | None]:
    out: list[Any] = []
    try:
        async for chunk in llm.stream("hi", **kw):
            out.append(chunk)
    except Exception as exc:  # noqa: BLE001 - returned for the test to check
        return out, exc
    return out, None


def _readers(loop: asyncio.AbstractEventLoop) -> int:
    """Descriptors the loop watches besides its self-pipe."""
    return len(loop._selector.get_map()) - 1  # type: ignore[attr-defined]


# -- found: the flag leaked into a hook's stream --------------------------------------------------

@pytest.mark.parametrize("where", ["on_request", "on_error", "on_stream_end_of_a_body_with_a_length"])
def test_a_hooks_sync_stream_inside_an_async_stream_gets_chunks_not_loop_markers(where: str) -> None:
    frames = openai_sse("one two")

    def chat(req: Received, reply: Reply) -> None:
        if b"outer" not in req.body:  # the hook's stream: chunked, so it could read without blocking
            reply.head(200, SSE, chunked=True)
            reply.raw(_wire(frames[:2])[:-5])
            time.sleep(0.05)  # a wait: where a leaked flag makes the sync stream yield a marker
            reply.raw(_wire(frames[2:]))
        elif where == "on_error":
            reply.json(500, {"error": {"message": "down"}})
        else:
            reply.head(200, SSE, chunked=where == "on_request")
            if where == "on_request":
                reply.raw(_wire(frames))
            else:  # a body that cannot be read on the loop: its stream stays on its thread
                reply.raw(b"".join(frames))

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        llm = _provider(server)
        inner: list[list[str]] = []
        entered: list[bool] = []
        method = "on_stream_end" if where.startswith("on_stream_end") else where

        class Hook:
            pass

        def streams_inside(event: Any) -> None:
            if not entered:  # once: the hook's own stream has hooks too
                entered.append(True)
                inner.append([type(c).__name__ for c in llm.stream_sync("inner")])

        setattr(Hook, method, lambda self, event: streams_inside(event))
        llm.add_hook(Hook())

        async def main() -> None:
            async for _ in llm.stream("outer"):
                pass

        if where == "on_error":
            with pytest.raises(ProviderError):
                asyncio.run(main())
        else:
            asyncio.run(main())
        assert inner == [["StreamChunk"] * 3]  # 'one', ' two', the final chunk: no WouldBlock among them
        llm.close()


# -- found, then fixed: a stream with hooks keeps its thread (a hook may block) ------------------

def test_a_blocking_hook_at_a_loop_read_streams_end_does_not_block_the_loop() -> None:
    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions",
                     lambda r, w: w.stream(200, openai_sse("one two"), SSE, delay_s=0.01))
        llm = _provider(server)

        class Hook:
            def on_stream_end(self, event: Any) -> None:
                time.sleep(0.3)  # a hook that posts the usage somewhere, say

        llm.add_hook(Hook())

        async def main() -> float:
            beat = Heartbeat()
            beat.start()
            out, err = await _collect(llm)
            assert err is None and "".join(c.content for c in out) == "one two"
            return await beat.stop()

        assert asyncio.run(main()) < 0.2
        llm.close()


# -- held: timeouts, hostile servers, a loop that keeps running ----------------------------------

def test_a_silent_server_mid_stream_is_a_read_timeout_and_deadline_s_holds() -> None:
    frames = openai_sse("one two three")
    with FakeServer() as server:
        def chat(req: Received, reply: Reply) -> None:
            reply.head(200, SSE, chunked=True)
            reply.chunk(frames[0] + frames[1])
            for _ in range(40):  # keep-alives only, then silence inside a chunk
                reply.chunk(b": ping\n\n")
                time.sleep(0.01)
            reply.raw(b"40\r\ndata: {")
            time.sleep(2)

        server.route("POST", "/v1/chat/completions", chat)
        llm = _provider(server, timeout=0.6)

        async def main() -> None:
            beat = Heartbeat()
            beat.start()
            t0 = time.monotonic()
            out, err = await _collect(llm)
            assert isinstance(err, RequestTimeout) and [c.content for c in out] == ["one"]
            assert 0.5 < time.monotonic() - t0 < 1.5
            t0 = time.monotonic()
            out, err = await _collect(llm, deadline_s=0.3)
            assert isinstance(err, ProviderError) and "deadline" in str(err)
            assert time.monotonic() - t0 < 0.6
            assert await beat.stop() < 0.1

        asyncio.run(main())
        llm.close()


def _hostile_routes() -> dict[str, Callable[[Received, Reply], None]]:
    frames = openai_sse("one two three")
    body = b"".join(frames)

    def json_instead(req: Received, reply: Reply) -> None:
        doc = json.dumps({"error": {"message": "quota", "type": "insufficient_quota"}}).encode()
        reply.head(200, JSON, length=len(doc))
        reply.raw(doc[:5])
        time.sleep(0.3)
        reply.raw(doc[5:])

    def error_status(req: Received, reply: Reply) -> None:
        reply.head(503, JSON, chunked=True)
        reply.chunk(b'{"error": ')
        time.sleep(0.3)
        reply.chunk(b'{"message": "busy"}}')
        reply.end_chunks()

    def gzipped(req: Received, reply: Reply) -> None:
        packed = gzip.compress(body)
        reply.head(200, {**SSE, "Content-Encoding": "gzip"}, chunked=True)
        reply.chunk(packed[:10])
        time.sleep(0.3)
        reply.chunk(packed[10:])
        reply.end_chunks()

    def with_length(req: Received, reply: Reply) -> None:
        reply.head(200, SSE, length=len(body))
        reply.raw(body[:40])
        time.sleep(0.3)
        reply.raw(body[40:])

    def until_close(req: Received, reply: Reply) -> None:
        reply.head(200, SSE)
        reply.raw(body[:40])
        time.sleep(0.3)
        reply.raw(body[40:])

    def done_without_last_chunk(req: Received, reply: Reply) -> None:
        reply.head(200, SSE, chunked=True)
        reply.raw(_wire(frames)[:-5])
        time.sleep(1)

    def stall_inside_a_chunk(req: Received, reply: Reply) -> None:
        wire = _wire(frames)
        reply.head(200, SSE, chunked=True)
        reply.raw(wire[:150])
        time.sleep(0.3)
        reply.raw(wire[150:])

    return {"json_instead": json_instead, "error_status": error_status, "gzip": gzipped, "length": with_length,
            "close": until_close, "done_without_last_chunk": done_without_last_chunk,
            "stall_inside_a_chunk": stall_inside_a_chunk}


@pytest.mark.parametrize("case", sorted(_hostile_routes()))
def test_hostile_heads_and_bodies_never_block_the_loop(case: str) -> None:
    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", _hostile_routes()[case])
        llm = _provider(server, timeout=2)

        async def main() -> list[tuple[list[Any], BaseException | None]]:
            beat = Heartbeat()
            beat.start()
            t0 = time.monotonic()
            results = await asyncio.gather(*[_collect(llm) for _ in range(4)])
            assert time.monotonic() - t0 < 1.5
            assert await beat.stop() < 0.1
            return results

        for out, err in asyncio.run(main()):
            if case in ("json_instead", "error_status"):
                assert isinstance(err, ProviderError) and out == []
            else:
                assert err is None
                assert "".join(c.content for c in out) == "one two three" and out[-1].finish_reason == "stop"
                assert out[-1].usage is not None
        llm.close()


# -- held: stopping early --------------------------------------------------------------------------

@pytest.mark.parametrize("server_does", ["silent", "flood"])
@pytest.mark.parametrize("how", ["break", "cancel", "wait_for", "aclose"])
def test_stopping_early_returns_at_once_leaves_nothing_watched_and_the_provider_works(how: str,
                                                                                     server_does: str) -> None:
    frames = openai_sse("one two three")
    blob = b"data: " + json.dumps({"id": "x", "model": "m", "choices": [
        {"index": 0, "delta": {"content": "z" * 500}, "finish_reason": None}]}).encode() + b"\n\n"

    def chat(req: Received, reply: Reply) -> None:
        if not req.json().get("stream"):
            reply.json(200, openai_completion("plain"))
            return
        reply.head(200, SSE, chunked=True)
        reply.chunk(frames[0] + frames[1])
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2:
            if server_does == "flood":
                reply.chunk(blob * 10)
            else:
                time.sleep(0.05)

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        llm = _provider(server)

        async def consume() -> None:
            async for chunk in llm.stream("hi"):
                if how == "break" and chunk.content == "one":
                    break

        async def main() -> None:
            loop = asyncio.get_running_loop()
            t0 = time.monotonic()
            if how == "cancel":
                task = asyncio.ensure_future(consume())
                await asyncio.sleep(0.1)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            elif how == "wait_for":
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(consume(), 0.1)
            elif how == "aclose":
                stream = llm.stream("hi")
                assert (await stream.__anext__()).content == "one"
                await stream.aclose()  # type: ignore[attr-defined]
            else:
                await consume()
            assert time.monotonic() - t0 < 0.5
            await asyncio.sleep(0.02)
            assert _readers(loop) == 0
            assert (await llm.generate("x")).content == "plain"
            assert llm.generate_sync("y").content == "plain"

        asyncio.run(main())
        llm.close()


# -- held: the connection back in the pool, its timeout with it -------------------------------------

@pytest.mark.parametrize("tail", ["together", "late_last_chunk"])
def test_after_loop_read_streams_the_reused_socket_times_out_as_before(tail: str) -> None:
    frames = openai_sse("one two three")
    slow = threading.Event()

    def chat(req: Received, reply: Reply) -> None:
        if req.json().get("stream"):
            reply.head(200, SSE, chunked=True)
            reply.raw(_wire(frames)[:-5])
            if tail == "late_last_chunk":
                time.sleep(0.03)  # [DONE] read, the body's end still to come: drained on the loop
            reply.end_chunks()
        else:
            if slow.is_set():
                time.sleep(1.5)
            reply.json(200, openai_completion("plain"))

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        llm = _provider(server, timeout=0.5)

        async def rounds() -> None:
            for _ in range(3):
                out, err = await _collect(llm)
                assert err is None and out[-1].finish_reason == "stop"
                assert (await llm.generate("x")).content == "plain"
                assert llm.generate_sync("y").content == "plain"
                assert "".join(c.content for c in llm.stream_sync("z")) == "one two three"
            out, err = await _collect(llm)
            assert err is None

        asyncio.run(rounds())
        assert server.connections == 1
        slow.set()
        t0 = time.monotonic()
        with pytest.raises(RequestTimeout):
            llm.generate_sync("slow")  # on the socket the last loop-read stream gave back
        assert 0.4 < time.monotonic() - t0 < 1.2
        llm.close()


# -- held: idle streams cost nothing; the chunks, however the wire is cut ----------------------------

def test_a_hundred_idle_loop_read_streams_cost_no_cpu_and_no_thread() -> None:
    frames = openai_sse("one two three")
    gate = threading.Event()

    def chat(req: Received, reply: Reply) -> None:
        reply.head(200, SSE, chunked=True)
        reply.chunk(frames[0] + frames[1])
        gate.wait(WAIT)
        reply.raw(_wire(frames[2:]))

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        llm = _provider(server, timeout=WAIT)

        async def main() -> None:
            started: list[int] = []

            async def one() -> str:
                out = []
                async for chunk in llm.stream("hi"):
                    out.append(chunk.content)
                    if chunk.content == "one":
                        started.append(1)
                return "".join(out)

            tasks = [asyncio.ensure_future(one()) for _ in range(100)]
            while len(started) < 100:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            assert not [t for t in threading.enumerate() if t.name == "mirror-stream"]
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu = usage.ru_utime + usage.ru_stime
            await asyncio.sleep(1.0)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            assert usage.ru_utime + usage.ru_stime - cpu < 0.25
            gate.set()
            assert set(await asyncio.gather(*tasks)) == {"one two three"}

        asyncio.run(main())
        llm.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_split_of_the_wire_gives_the_sync_streams_chunks(seed: int) -> None:
    rnd = random.Random(seed)
    text = " ".join(f"w{i}" for i in range(300))
    body = b"".join(openai_sse(text))

    def chat(req: Received, reply: Reply) -> None:
        cuts = sorted(rnd.sample(range(1, len(body)), 40))
        wire = _wire([body[i:j] for i, j in zip([0, *cuts], [*cuts, len(body)], strict=True)])
        splits = sorted(rnd.sample(range(1, len(wire)), 80))
        pieces = [wire[i:j] for i, j in zip([0, *splits], [*splits, len(wire)], strict=True)]
        reply.head(200, SSE, chunked=True)
        for piece in pieces:
            reply.raw(piece)
            if rnd.random() < 0.2:
                time.sleep(0.001)

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        llm = _provider(server)

        def key(c: Any) -> tuple[Any, ...]:
            return c.content, c.index, c.finish_reason, c.usage

        for _ in range(3):
            sync = [key(c) for c in llm.stream_sync("hi")]

            async def main() -> list[tuple[Any, ...]]:
                return [key(c) async for c in llm.stream("hi")]

            assert asyncio.run(main()) == sync
            assert "".join(c[0] for c in sync) == text and sync[-1][2] == "stop"
        llm.close()


# -- held: many streams with calls inside, pools, a fork ------------------------------------------------

def test_many_streams_with_calls_inside_then_pools_then_a_fork() -> None:
    frames = openai_sse("one two three four")

    def chat(req: Received, reply: Reply) -> None:
        if req.json().get("stream"):
            reply.stream(200, frames, SSE, delay_s=0.01)
        else:
            reply.json(200, openai_completion("plain"))

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        llm = _provider(server, timeout=WAIT)

        async def main() -> set[str]:
            async def one() -> str:
                out = []
                async for chunk in llm.stream("hi"):
                    out.append(chunk.content)
                    if chunk.content.strip() in ("one", "three"):
                        assert (await llm.generate("x")).content == "plain"
                return "".join(out)

            return set(await asyncio.gather(*[one() for _ in range(200)]))

        assert asyncio.run(main()) == {"one two three four"}
        pool, chain = ProviderPool([llm, _provider(server)]), FallbackChain([llm])

        async def pooled() -> tuple[str, str]:
            return ("".join([c.content async for c in pool.stream("hi")]),
                    "".join([c.content async for c in chain.stream("hi")]))

        assert asyncio.run(pooled()) == ("one two three four",) * 2
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                async def child() -> tuple[str, str]:
                    text = "".join([c.content async for c in llm.stream("hi")])
                    return text, (await llm.generate("x")).content

                code = 0 if asyncio.run(asyncio.wait_for(child(), 5)) == ("one two three four", "plain") else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert asyncio.run(pooled()) == ("one two three four",) * 2
        llm.close()


# -- found: aclose() returned with the stream still open, its socket still watched -------------------

@pytest.mark.parametrize("how", ["aclose", "aclosing"])
def test_aclose_after_a_break_closes_the_loop_read_stream_before_it_returns(how: str) -> None:
    frames = openai_sse("one two three")
    gate = threading.Event()

    def chat(req: Received, reply: Reply) -> None:
        reply.head(200, SSE, chunked=True)
        reply.chunk(frames[0])  # the role: no chunk; the worker hands the stream to the loop here
        time.sleep(0.05)
        reply.chunk(frames[1])  # "one", read on the loop
        gate.wait(WAIT)

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        llm = _provider(server)

        async def main() -> None:
            import contextlib

            loop = asyncio.get_running_loop()
            stream: Any = llm.stream("hi")
            if how == "aclosing":
                async with contextlib.aclosing(stream):
                    async for chunk in stream:
                        assert chunk.content == "one"
                        break
            else:
                async for chunk in stream:
                    assert chunk.content == "one"
                    break
                await stream.aclose()
            assert _readers(loop) == 0  # at once: not in a task the loop's finalizer starts later
            assert llm.get_stats().in_flight == 0  # the stream was closed, counted as abandoned

        try:
            asyncio.run(main())
        finally:
            gate.set()
        llm.close()
