"""A loopback provider never goes through a proxy, whatever the environment says.

The "proxy" is a loopback server that records what reaches it: with ``HTTP_PROXY``,
``HTTPS_PROXY`` and ``ALL_PROXY`` pointing at it, a local Ollama must be called directly (the
prompt never reaches the proxy), while a remote host still goes through the proxy as requests
decides from the environment.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider

from ..server import FakeServer, Received, Reply, add_ollama_routes, openai_completion


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    server = FakeServer()
    server.__enter__()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, server.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield server
    server.__exit__(None, None, None)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_loopback_ollama_never_goes_through_the_proxy(proxy: FakeServer, host: str) -> None:
    with FakeServer() as ollama:
        add_ollama_routes(ollama, "straight from the local model")
        llm = OllamaProvider(model="llama3.2", host=f"http://{host}:{ollama.port}", max_retries=0)
        assert llm.generate_sync("the secret prompt").content == "straight from the local model"
        assert "".join(c.content for c in llm.stream_sync("the secret prompt")) == "straight from the local model"
        assert len(ollama.received) == 2
    assert proxy.received == []


def test_a_remote_host_still_uses_the_proxy_from_the_environment(proxy: FakeServer) -> None:
    def forwarded(req: Received, reply: Reply) -> None:
        reply.json(200, openai_completion("via the proxy"))

    # A proxy is sent the absolute URL: that is its route here.
    proxy.route("POST", "http://api.example.invalid/v1/chat/completions", forwarded)
    llm = OpenAIProvider(api_key="sk-test", base_url="http://api.example.invalid/v1", max_retries=0)
    assert llm.generate_sync("hi").content == "via the proxy"
    assert [r.path for r in proxy.received] == ["http://api.example.invalid/v1/chat/completions"]
