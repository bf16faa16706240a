"""A loopback provider never goes through a proxy, whatever the environment says.

The "proxy" is a loopback server that records what reaches it: with ``HTTP_PROXY``,
``HTTPS_PROXY`` and ``ALL_PROXY`` pointing at it, a local Ollama must be called directly (the
prompt never reaches the proxy), while a remote host still goes through the proxy as requests
decides from the environment.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mirror_providers.errors import ConnectError
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.transport import RequestsTransport

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


def _via_proxy(proxy: FakeServer, answer: str = "via the proxy") -> None:
    def forwarded(req: Received, reply: Reply) -> None:
        reply.json(200, openai_completion(answer))

    proxy.route("POST", "http://api.example.invalid/v1/chat/completions", forwarded)


def test_the_environment_is_read_once_per_url_not_on_every_call(proxy: FakeServer,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import requests.utils

    scans: list[str] = []
    real = requests.utils.get_environ_proxies

    def counted(url: str, no_proxy: str | None = None) -> dict[str, str]:
        scans.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.utils, "get_environ_proxies", counted)
    _via_proxy(proxy)
    llm = OpenAIProvider(api_key="sk-test", base_url="http://api.example.invalid/v1", max_retries=0,
                         transport=RequestsTransport())
    for _ in range(5):
        assert llm.generate_sync("hi").content == "via the proxy"
    assert len(proxy.received) == 5
    assert scans == ["http://api.example.invalid/v1/chat/completions"]


def test_a_proxy_changed_after_the_first_call_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with FakeServer() as first, FakeServer() as second:
        _via_proxy(first, "first")
        _via_proxy(second, "second")
        llm = OpenAIProvider(api_key="sk-test", base_url="http://api.example.invalid/v1", max_retries=0,
                             transport=RequestsTransport())
        monkeypatch.setenv("http_proxy", first.url)
        assert llm.generate_sync("hi").content == "first"
        monkeypatch.setenv("http_proxy", second.url)
        assert llm.generate_sync("hi").content == "second"
        monkeypatch.setenv("NO_PROXY", "api.example.invalid")  # now bypassed: the host does not resolve
        with pytest.raises(ConnectError):
            llm.generate_sync("hi")
        assert (len(first.received), len(second.received)) == (1, 1)


def test_explicit_proxies_win_over_the_environment(proxy: FakeServer) -> None:
    with FakeServer() as mine:
        _via_proxy(mine, "mine")
        _via_proxy(proxy, "the environment's")
        llm = OpenAIProvider(api_key="sk-test", base_url="http://api.example.invalid/v1", max_retries=0,
                             transport=RequestsTransport(proxies={"http": mine.url}))
        assert llm.generate_sync("hi").content == "mine"
    assert proxy.received == []


def test_cookies_a_server_sets_are_sent_back_on_that_thread() -> None:
    with FakeServer() as server:
        seen: list[str | None] = []

        def answer(req: Received, reply: Reply) -> None:
            seen.append(req.headers.get("cookie"))
            reply.json(200, openai_completion("ok"), headers={"Set-Cookie": "__cf_bm=abc; Path=/"})

        server.route("POST", "/v1/chat/completions", answer)
        llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0,
                             transport=RequestsTransport())
        llm.generate_sync("one")
        llm.generate_sync("two")
    assert seen == [None, "__cf_bm=abc"]


def test_the_ca_bundle_variables_apply_as_requests_applies_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from mirror_providers.transport.environ import Settings

    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corp-ca.pem")
    remote, local = "https://api.example.invalid/v1/x", "https://localhost:8443/v1/x"
    assert Settings(True, None).for_url(remote).verify == "/etc/corp-ca.pem"
    assert Settings(True, None).for_url(local).verify is True  # loopback ignores the environment
    assert Settings("/mine.pem", None).for_url(remote).verify == "/mine.pem"  # an explicit bundle wins
    assert Settings(False, None).for_url(remote).verify is False
    settings = Settings(True, None)
    settings.for_url(remote)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/curl-ca.pem")
    assert settings.for_url(remote).verify == "/etc/curl-ca.pem"  # a change is seen on the next call
