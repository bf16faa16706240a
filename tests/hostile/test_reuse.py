"""A finished stream's connection goes back to the pool; a stream whose tail never ends does not
hold the caller.

After the vendor's terminator (``[DONE]``, ``message_stop``, ``done: true``) only the end of the
HTTP body is left: it is read, so the next call reuses the connection instead of opening another
(a TLS handshake saved per stream). A server that sends its terminator and then never ends the
body, or keeps sending, costs the caller a bounded wait and the connection is closed.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any

import pytest

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider

from ..server import (
    FakeServer,
    Received,
    Reply,
    add_anthropic_routes,
    add_ollama_routes,
    add_openai_routes,
    openai_sse,
)


def _provider(vendor: str, server: FakeServer) -> Any:
    if vendor == "openai":
        add_openai_routes(server, "one two three")
        return OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0)
    if vendor == "anthropic":
        add_anthropic_routes(server, "one two three")
        return AnthropicProvider(api_key="sk-ant-test", base_url=server.url, max_retries=0)
    add_ollama_routes(server, "one two three")
    return OllamaProvider(model="llama3.2", host=server.url, max_retries=0)


@pytest.mark.parametrize("vendor", ["openai", "anthropic", "ollama"])
def test_streams_one_after_another_share_one_connection(vendor: str) -> None:
    with FakeServer() as server:
        llm = _provider(vendor, server)
        for _ in range(5):
            assert "".join(c.content for c in llm.stream_sync("hi")).split() == ["one", "two", "three"]
        assert llm.generate_sync("hi").content.split() == ["one", "two", "three"]
        assert server.connections == 1


@pytest.mark.parametrize("tail", ["never-ends", "endless-junk"])
def test_a_body_that_does_not_end_after_the_terminator_costs_a_bounded_wait(tail: str) -> None:
    gone = threading.Event()

    def chat(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
        for frame in openai_sse("complete answer"):
            reply.chunk(frame)
        try:
            end = time.monotonic() + 60
            while time.monotonic() < end:
                if tail == "endless-junk":
                    reply.chunk(b": junk\n\n" * 1024)
                else:  # a body that never ends: wait until the client hangs up
                    sock = reply._h.connection
                    if select.select([sock], [], [], 0.05)[0] and sock.recv(1, socket.MSG_PEEK) == b"":
                        return
        finally:
            gone.set()

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, timeout=30)
        t0 = time.monotonic()
        chunks = list(llm.stream_sync("hi"))
        took = time.monotonic() - t0
        assert "".join(c.content for c in chunks) == "complete answer"
        assert chunks[-1].finish_reason == "stop"
        assert server.wait_open_connections(0)  # not given back to the pool: closed
        if tail == "endless-junk":
            assert gone.wait(10)
    assert took < 10  # bounded by the drain's limits, not the 30 s read timeout or the 60 s tail
