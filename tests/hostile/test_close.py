"""``close()`` and leaving ``with provider:`` release the connections that provider opened.

Providers share one process-wide transport by default, so the connections are counted per host:
closing a provider closes its host's pooled connections once no other open provider calls that
host. The server here watches its sockets: a released connection is one the server sees closed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.providers.http import default_transport

from ..server import FakeServer, Received, Reply, add_ollama_routes, add_openai_routes, openai_completion


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as s:
        add_openai_routes(s, "hello")
        yield s


def openai(server: FakeServer) -> OpenAIProvider:
    return OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0)


def test_close_releases_the_providers_connections(server: FakeServer) -> None:
    llm = openai(server)
    assert llm.generate_sync("hi").content == "hello"
    assert server.wait_open_connections(1)  # kept alive in the pool
    llm.close()
    assert server.wait_open_connections(0)


def test_leaving_with_releases_them_too() -> None:
    with FakeServer() as ollama:
        add_ollama_routes(ollama, "local")
        with OllamaProvider(model="llama3.2", host=ollama.url, max_retries=0) as llm:
            assert "".join(c.content for c in llm.stream_sync("hi")) == "local"
            assert llm.generate_sync("hi").content == "local"
            assert ollama.wait_open_connections(1)
        assert ollama.wait_open_connections(0)


def test_another_open_provider_keeps_the_hosts_connections(server: FakeServer) -> None:
    first, second = openai(server), openai(server)
    first.generate_sync("hi")
    first.close()
    first.close()  # twice is once
    assert second.generate_sync("hi").content == "hello"
    assert server.wait_open_connections(1) and server.connections == 1  # still the same connection
    second.close()
    assert server.wait_open_connections(0)


def test_a_closed_provider_still_works_and_releases_again(server: FakeServer) -> None:
    llm = openai(server)
    llm.generate_sync("hi")
    llm.close()
    assert server.wait_open_connections(0)
    assert llm.generate_sync("again").content == "hello"  # a new connection, as requests does
    assert server.wait_open_connections(1) and server.connections == 2
    llm.close()
    assert server.wait_open_connections(0)


def test_a_call_in_flight_across_close_finishes_and_its_connection_is_then_closed() -> None:
    release = threading.Event()

    def chat(req: Received, reply: Reply) -> None:
        assert release.wait(10)
        reply.json(200, openai_completion("slow answer"))

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", chat)
        llm = openai(server)
        answers: list[str] = []
        caller = threading.Thread(target=lambda: answers.append(llm.generate_sync("hi").content))
        caller.start()
        assert server.wait_open_connections(1)
        llm.close()  # the call's connection is in use: it must not be cut
        release.set()
        caller.join(10)
        assert answers == ["slow answer"]
        assert server.wait_open_connections(0)  # given back to a closed pool: closed
        assert server.connections == 1


def test_other_hosts_keep_their_connections(server: FakeServer) -> None:
    with FakeServer() as other:
        add_openai_routes(other, "other")
        a, b = openai(server), openai(other)
        a.generate_sync("hi")
        b.generate_sync("hi")
        a.close()
        assert server.wait_open_connections(0)
        assert other.open_connections == 1
        b.close()
        assert other.wait_open_connections(0)
    assert default_transport()._users.get(("http", "127.0.0.1", server.port)) is None
