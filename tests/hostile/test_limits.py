"""Memory is bounded: huge bodies, gzip bombs, endless events and lines, huge error bodies.

Every server here would send gigabytes if it were read to the end. Its bytes are made lazily, so
the test process never holds them; the client must stop at its limit with a typed
``ResponseTooLargeError`` (or the error the status means, for an error body), having held about
the limit in memory (``tracemalloc`` peak), and the server must see the connection closed long
before it has sent its body.
"""

from __future__ import annotations

import json
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.base import ProviderError, ResponseTooLargeError, ServerError
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import FallbackChain
from mirror_providers.transport import DEFAULT_LIMITS, Limits

from ..server import FakeServer, Received, Reply, add_openai_routes, openai_completion

MiB = 1 << 20
GiB = 1 << 30
BLOCK = b"a" * MiB
HUGE = 2 * GiB  # what each server would send if it were let


class Sent:
    """Counts what a route wrote before the client went away."""

    def __init__(self) -> None:
        self.bytes = 0
        self.done = threading.Event()


def endless(reply: Reply, sent: Sent, first: bytes = b"", *, chunked: bool, total: int = HUGE,
            block: bytes = BLOCK) -> None:
    """Write ``first`` then ``block`` until ``total`` bytes went out or the client left."""
    try:
        for piece in _pieces(first, block, total):
            if chunked:
                reply.chunk(piece)
            else:
                reply.raw(piece)
            sent.bytes += len(piece)
        if chunked:
            reply.end_chunks()
    finally:
        sent.done.set()


def _pieces(first: bytes, block: bytes, total: int) -> Iterator[bytes]:
    if first:
        yield first
        total -= len(first)
    while total > 0:
        yield block[:total]
        total -= len(block)


def peak_of(fn: Callable[[], Any]) -> tuple[BaseException | None, int]:
    """Run ``fn``; return what it raised and the peak of memory allocated meanwhile."""
    tracemalloc.start()
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        return exc, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return None, 0


def _gzip(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


# 64 MiB of zeros is a 65 KB gzip member; 80 of them one after another (RFC 1952 allows it) are a
# 5 MB body that inflates to 5 GiB: the bomb of the issue.
_MEMBER = _gzip(bytes(64 * MiB))
BOMB_MEMBERS = 80


def openai(server: FakeServer, **kw: Any) -> OpenAIProvider:
    return OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, **kw)


@pytest.fixture
def sent() -> Sent:
    return Sent()


def test_a_body_announced_as_2gb_is_refused_before_reading(sent: Sent) -> None:
    def chat(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "application/json"}, length=HUGE)
        endless(reply, sent, b'{"id": "x", "choices": [{"message": {"content": "', chunked=False)

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        exc, peak = peak_of(lambda: openai(server).generate_sync("hi"))
        assert isinstance(exc, ResponseTooLargeError), exc
        assert "max_body_bytes" in str(exc) and str(HUGE) in str(exc)
        assert peak < 4 * MiB
        sent.done.wait(30)
    assert sent.bytes < 64 * MiB  # the connection was dropped, not drained


def test_an_unannounced_endless_body_stops_at_the_body_limit(sent: Sent) -> None:
    def chat(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "application/json"}, chunked=True)
        endless(reply, sent, b'{"choices": [{"message": {"content": "', chunked=True)

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        exc, peak = peak_of(lambda: openai(server).generate_sync("hi"))
        assert isinstance(exc, ResponseTooLargeError), exc
        assert "max_body_bytes" in str(exc)
        sent.done.wait(30)
    assert DEFAULT_LIMITS.max_body_bytes < sent.bytes < 2 * DEFAULT_LIMITS.max_body_bytes + 64 * MiB
    assert peak < DEFAULT_LIMITS.max_body_bytes + 16 * MiB  # what it held: the limit, not 2 GB


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
def test_a_gzip_bomb_stops_as_it_inflates(sent: Sent, stream: bool) -> None:
    """5 MB on the wire inflating to 5 GiB: a plain body stops at max_decoded_bytes, a stream's
    single endless line at max_event_bytes, each with memory flat."""
    def route(req: Received, reply: Reply) -> None:
        kind = "text/event-stream" if stream else "application/json"
        reply.head(200, {"Content-Type": kind, "Content-Encoding": "gzip"}, chunked=True)
        endless(reply, sent, chunked=True, total=len(_MEMBER) * BOMB_MEMBERS, block=_MEMBER)

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", route)
        llm = openai(server)
        call = (lambda: list(llm.stream_sync("hi"))) if stream else (lambda: llm.generate_sync("hi"))
        exc, peak = peak_of(call)
        assert isinstance(exc, ResponseTooLargeError), exc
        limit = DEFAULT_LIMITS.max_event_bytes if stream else DEFAULT_LIMITS.max_decoded_bytes
        assert str(limit) in str(exc)
        sent.done.wait(30)
    assert peak < 2 * limit + 8 * MiB  # (the 5 MB on the wire may all sit in socket buffers)


def _sse_line(reply: Reply, sent: Sent) -> None:
    reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
    endless(reply, sent, b'data: {"choices": [{"delta": {"content": "', chunked=True)


def _anthropic_event(reply: Reply, sent: Sent) -> None:
    reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
    endless(reply, sent, b"event: content_block_delta\ndata: ", chunked=True)


def _ndjson_line(reply: Reply, sent: Sent) -> None:
    reply.head(200, {"Content-Type": "application/x-ndjson"}, chunked=True)
    endless(reply, sent, b'{"message": {"role": "assistant", "content": "', chunked=True)


@pytest.mark.parametrize("vendor", ["openai", "anthropic", "ollama"])
def test_an_endless_stream_event_or_line_is_cut_at_max_event_bytes(sent: Sent, vendor: str) -> None:
    """A 2 GB SSE line (or JSON line) without its newline: stopped at the event limit."""
    limits = Limits(max_event_bytes=4 * MiB)
    with FakeServer() as server:
        if vendor == "openai":
            server.route("POST", "/v1/chat/completions", lambda req, reply: _sse_line(reply, sent))
            llm: Any = openai(server, limits=limits)
        elif vendor == "anthropic":
            server.route("POST", "/v1/messages", lambda req, reply: _anthropic_event(reply, sent))
            llm = AnthropicProvider(api_key="sk-ant-test", base_url=server.url, max_retries=0, limits=limits)
        else:
            server.route("POST", "/api/chat", lambda req, reply: _ndjson_line(reply, sent))
            llm = OllamaProvider(model="llama3.2", host=server.url, max_retries=0, limits=limits)
        exc, peak = peak_of(lambda: list(llm.stream_sync("hi")))
        assert isinstance(exc, ResponseTooLargeError), exc
        assert "max_event_bytes" in str(exc) and exc.provider == llm.provider_id
        sent.done.wait(30)
    assert peak < 3 * limits.max_event_bytes + 4 * MiB
    assert sent.bytes < 256 * MiB


@pytest.mark.parametrize("stream", [False, True], ids=["call", "stream"])
def test_a_2gb_error_body_is_read_only_as_far_as_the_report_needs(sent: Sent, stream: bool) -> None:
    def route(req: Received, reply: Reply) -> None:
        reply.head(500, {"Content-Type": "application/json"}, length=HUGE)
        message = json.dumps({"error": {"message": "overloaded", "type": "server_error"}}).encode()
        endless(reply, sent, message[:-2] + b' ', chunked=False, block=b" " * MiB)

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", route)
        llm = openai(server)
        call = (lambda: list(llm.stream_sync("hi"))) if stream else (lambda: llm.generate_sync("hi"))
        exc, peak = peak_of(call)
        assert isinstance(exc, ServerError) and exc.status == 500, exc
        assert peak < 4 * MiB
        sent.done.wait(30)
    assert sent.bytes < 64 * MiB


def test_a_chain_fails_over_from_a_too_large_answer(sent: Sent) -> None:
    def huge(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "application/json"}, chunked=True)
        endless(reply, sent, b'{"choices": [{"message": {"content": "', chunked=True)

    with FakeServer() as big, FakeServer() as good:
        big.route("POST", "/v1/chat/completions", huge)
        add_openai_routes(good, "small and right")
        chain = FallbackChain([openai(big, limits=Limits(max_body_bytes=MiB)), openai(good)])
        result = chain.generate_sync("hi")
        assert len(big.received) == 1  # tried once (not retried), then the next member
    assert result.content == "small and right"


def test_limits_are_configurable_and_checked() -> None:
    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions",
                     lambda req, reply: reply.json(200, openai_completion("x" * 3000)))
        assert openai(server, limits=Limits(max_body_bytes=4096)).generate_sync("hi").content == "x" * 3000
        with pytest.raises(ResponseTooLargeError):
            openai(server, limits=Limits(max_body_bytes=1024)).generate_sync("hi")
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(ProviderError, match="max_event_bytes"):
            Limits(max_event_bytes=bad)  # type: ignore[arg-type]
    with pytest.raises(ProviderError, match="limits"):
        OpenAIProvider(api_key="sk-test", limits={"max_body_bytes": 1})  # type: ignore[arg-type]
