"""Chunked bodies from a hostile server, decoded by ``transport/chunked.py``, on real sockets.

What the review of that decoder tried and found holding: gzip inside chunked cut anywhere,
early breaks, a read timeout inside a chunk whose rest arrives later, error statuses with
chunked bodies, a stall inside the trailers, a deadline over an endless chunk, the async path
and a ``FallbackChain`` over a malformed member. Each case checks the next calls on the same
provider too: a pooled connection must never hand a later call what an earlier one left.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from collections.abc import Callable

import pytest

from mirror_providers.errors import DeadlineExceededError, ProtocolError, RequestTimeout
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import FallbackChain
from mirror_providers.transport import HttpRequest, RequestsTransport, Timeout

from ..server import FakeServer, Received, Reply, openai_completion, openai_sse

SSE = {"Content-Type": "text/event-stream"}
JSON = {"Content-Type": "application/json"}


def _chunked(data: bytes, size: int) -> bytes:
    parts = [data[i:i + size] for i in range(0, len(data), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def _provider(server: FakeServer, timeout: float = 5) -> OpenAIProvider:
    return OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, timeout=timeout)


def _text(llm: OpenAIProvider, stop_after: int | None = None) -> str:
    got: list[str] = []
    for chunk in llm.stream_sync("hi"):
        got.append(chunk.content)
        if stop_after is not None and len([g for g in got if g]) >= stop_after:
            break
    return "".join(got)


def _answers(route: Callable[[int, Reply], None]) -> Callable[[Received, Reply], None]:
    """A route that knows which request (1, 2, ...) it answers: streams and plain calls alike."""
    count = [0]
    lock = threading.Lock()

    def handle(req: Received, reply: Reply) -> None:
        with lock:
            count[0] += 1
            n = count[0]
        route(n, reply)

    return handle


def _plain_or_stream(reply: Reply, text: str, stream: bool) -> None:
    if stream:
        reply.head(200, SSE, chunked=True)
        reply.raw(_chunked(b"".join(openai_sse(text)), 37))
    else:
        reply.head(200, JSON, chunked=True)
        reply.raw(_chunked(json.dumps(openai_completion(text)).encode(), 11))


@pytest.mark.parametrize("cut", [1, 3, 1000])
def test_gzip_inside_chunked_cut_anywhere_streams_and_reuses_the_connection(cut: int) -> None:
    wire = _chunked(gzip.compress(b"".join(openai_sse("one two three"))), 9)

    def handle(req: Received, reply: Reply) -> None:
        reply.head(200, {**SSE, "Content-Encoding": "gzip"}, chunked=True)
        for i in range(0, len(wire), cut):
            reply.raw(wire[i:i + cut])

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", handle)
        llm = _provider(server)
        for _ in range(3):
            assert _text(llm).split() == ["one", "two", "three"]
        assert server.connections == 1
        llm.close()


def test_an_early_break_leaves_nothing_for_the_next_calls() -> None:
    def route(n: int, reply: Reply) -> None:
        _plain_or_stream(reply, f"answer{n} more words here", stream=n != 3)

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", _answers(route))
        llm = _provider(server)
        assert _text(llm, stop_after=1) == "answer1"
        assert _text(llm).split() == ["answer2", "more", "words", "here"]
        assert llm.generate_sync("hi").content == "answer3 more words here"
        assert _text(llm, stop_after=2) == "answer4 more"
        assert _text(llm).split()[0] == "answer5"
        llm.close()


def test_bytes_arriving_after_a_read_timeout_inside_a_chunk_never_reach_the_next_call() -> None:
    sent_late = threading.Event()
    frames = b"".join(openai_sse("one two"))
    stale = json.dumps(openai_completion("STALE")).encode()

    def route(n: int, reply: Reply) -> None:
        if n == 1:
            reply.head(200, SSE, chunked=True)
            reply.raw(b"%x\r\n%s" % (len(frames), frames[:50]))
            time.sleep(0.6)  # server-side pacing: past the client's read timeout
            # the rest of the body, then a whole response nobody asked for
            reply.raw(frames[50:] + b"\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(stale), stale))
            sent_late.set()
            reply._h.close_connection = True
            return
        _plain_or_stream(reply, "fresh", stream=n % 2 == 1)

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", _answers(route))
        llm = _provider(server, timeout=0.3)
        with pytest.raises(RequestTimeout):
            _text(llm)
        assert sent_late.wait(5)
        assert llm.generate_sync("hi").content == "fresh"
        assert _text(llm) == "fresh"
        assert llm.generate_sync("hi").content == "fresh"
        llm.close()


def test_error_statuses_with_chunked_bodies_then_good_calls() -> None:
    def route(n: int, reply: Reply) -> None:
        if n == 1:  # a small error body, read to its end: the connection is reused
            reply.head(400, JSON, chunked=True)
            reply.raw(_chunked(json.dumps({"error": {"message": "bad", "type": "invalid"}}).encode(), 5))
        elif n == 3:  # one too big to read: it is cut off and its connection closed
            reply.head(500, JSON, chunked=True)
            reply.raw(_chunked(b"x" * 200_000, 4096))
        else:
            _plain_or_stream(reply, f"ok{n}", stream=n == 2)

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", _answers(route))
        llm = _provider(server)
        with pytest.raises(Exception, match="bad"):
            _text(llm)
        assert _text(llm) == "ok2"
        with pytest.raises(Exception, match="500"):
            llm.generate_sync("hi")
        assert llm.generate_sync("hi").content == "ok4"
        assert server.connections == 2
        llm.close()


def test_a_stall_inside_the_trailers_after_the_answer_costs_a_bounded_wait() -> None:
    frames = b"".join(openai_sse("one two"))

    def handle(req: Received, reply: Reply) -> None:
        reply.head(200, SSE, chunked=True)
        reply.raw(b"%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n" % (len(frames), frames))
        time.sleep(1)  # server-side pacing: the blank line ending the trailers comes late
        reply.raw(b"\r\n")

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", handle)
        llm = _provider(server)
        for _ in range(3):
            t0 = time.monotonic()
            assert _text(llm) == "one two"
            assert time.monotonic() - t0 < 0.8  # the drain's bound, not the trailers' stall
        llm.close()


@pytest.mark.parametrize("how", ["stream", "send"])
def test_a_deadline_ends_an_endless_chunk_trickled_under_the_read_timeout(how: str) -> None:
    stop = threading.Event()

    def handle(req: Received, reply: Reply) -> None:
        reply.head(200, SSE, chunked=True)
        reply.raw(b"ffffffffffffffff\r\n")
        while not stop.wait(0.05):  # server-side pacing
            reply.raw(b": keep-alive\n\n")

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", handle)
        transport = RequestsTransport()
        request = HttpRequest("POST", server.url + "/v1/chat/completions", {}, b"{}",
                              timeout=Timeout(connect=2, read=2), deadline=time.monotonic() + 0.4)
        t0 = time.monotonic()
        try:
            with pytest.raises(DeadlineExceededError):
                if how == "stream":
                    with transport.open_stream(request) as stream:
                        for _ in stream.iter_bytes():
                            pass
                else:
                    transport.send(request)
            assert time.monotonic() - t0 < 1.5
        finally:
            stop.set()
            transport.close()


def test_async_break_inside_a_chunk_that_never_ends_returns_at_once() -> None:
    release = threading.Event()
    frames = b"".join(openai_sse("one two three")[:3])

    def handle(req: Received, reply: Reply) -> None:
        reply.head(200, SSE, chunked=True)
        reply.raw(b"%x\r\n%s" % (len(frames) + 100, frames))  # a chunk whose last 100 bytes never come
        release.wait(10)

    async def first(llm: OpenAIProvider) -> str:
        async for chunk in llm.stream("hi"):
            if chunk.content:
                return chunk.content
        return ""

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", handle)
        llm = _provider(server, timeout=5)
        try:
            t0 = time.monotonic()
            assert asyncio.run(first(llm)) == "one"
            assert time.monotonic() - t0 < 2  # delivered before the chunk ended, not after the read timeout
        finally:
            release.set()
            llm.close()


def test_a_fallback_chain_over_a_malformed_chunked_member() -> None:
    def broken(req: Received, reply: Reply) -> None:
        reply.head(200, SSE, chunked=True)
        reply.raw(b"10\r\nabc\r\nzz\r\n")
        reply._h.close_connection = True

    def good(req: Received, reply: Reply) -> None:
        _plain_or_stream(reply, "from good", stream=True)

    with FakeServer() as bad_server, FakeServer() as good_server:
        bad_server.route("POST", "/v1/chat/completions", broken)
        good_server.route("POST", "/v1/chat/completions", good)
        bad, fine = _provider(bad_server), _provider(good_server)
        with pytest.raises(ProtocolError):
            _text(bad)
        chain = FallbackChain([bad, fine])
        for _ in range(3):
            assert "".join(c.content for c in chain.stream_sync("hi")) == "from good"
        assert good_server.connections == 1
        bad.close()
        fine.close()
