"""Security: TLS verified by default and never off by accident; keys absent from every artefact."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.errors import ConfigurationError, ConnectError
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.transport import HttpResponse, MockTransport

from .conftest import CASSETTES
from .server import FakeServer, add_openai_routes


def test_tls_verified_by_default(certificate: tuple[str, str]) -> None:
    with FakeServer(tls=certificate) as server:
        add_openai_routes(server)
        with pytest.raises(ConnectError, match="TLS|certificate|SSL"):
            OpenAIProvider(base_url=server.url + "/v1", api_key="sk-x", max_retries=0).generate_sync("hi")
        assert server.received == []  # nothing, the key included, was sent to an unverified server


def test_private_ca_and_explicit_off(certificate: tuple[str, str], caplog: pytest.LogCaptureFixture) -> None:
    with FakeServer(tls=certificate) as server:
        add_openai_routes(server)
        trusted = OpenAIProvider(base_url=server.url + "/v1", verify=certificate[0])
        assert trusted.generate_sync("hi").content == "Paris is the capital of France."
        trusted.close()
        caplog.set_level(logging.WARNING)
        insecure = OpenAIProvider(base_url=server.url + "/v1", verify=False)
        assert "verification is OFF" in caplog.text
        assert insecure.generate_sync("hi").content
        insecure.close()


@pytest.mark.parametrize("bad", [0, "", None, "false", "/no/such/ca.pem", 1])
def test_verify_cannot_be_switched_off_by_accident(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="verify"):
        OpenAIProvider(base_url="https://x/v1", api_key="k", verify=bad)


def test_verify_with_a_given_transport_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="transport"):
        AnthropicProvider(api_key="k", transport=MockTransport(lambda r: HttpResponse(200, {}, b"")), verify=False)


def test_cassettes_hold_no_credentials() -> None:
    paths = list(CASSETTES.rglob("*.yaml"))
    assert paths
    for path in paths:
        text = path.read_text().lower()
        for header in ("authorization:", "x-api-key:", "openai-organization:", "openai-project:", "set-cookie:",
                       "anthropic-organization-id:"):
            assert header not in text, (path, header)
        # a key starts a word ("sk-proj-..."); "...esk-iw..." inside encrypted reasoning is not one
        assert not re.search(r"(?<![a-z0-9_+/-])sk-(?!\.\.\.)", text), path


@pytest.mark.parametrize("make", [
    lambda: OpenAIProvider(api_key="sk-proj-SECRETSECRET", max_retries=0),
    lambda: AnthropicProvider(api_key="sk-ant-SECRETSECRET", max_retries=0),
    lambda: OllamaProvider("llama3.1", "https://ollama.example", api_key="SECRETSECRET", max_retries=0),
])
def test_key_absent_from_repr_vars_and_stats(make: Any) -> None:
    p = make()
    for text in (repr(p), str(p), repr(vars(p)), str(p.get_stats()), repr(p.transport)):
        assert "SECRETSECRET" not in text


@pytest.mark.parametrize("make", [
    lambda url: OpenAIProvider(base_url=url + "/v1", api_key="sk-REDIRECT-secret", max_retries=0),
    lambda url: AnthropicProvider(base_url=url, api_key="sk-ant-REDIRECT-secret", max_retries=0),
    lambda url: OllamaProvider("llama3.1", url, api_key="REDIRECT-secret", max_retries=0),
])
def test_credentials_never_follow_a_redirect(make: Any) -> None:
    from mirror_providers.errors import InvalidResponseError

    with FakeServer() as first, FakeServer() as second:
        for path in ("/v1/chat/completions", "/v1/messages", "/api/chat"):
            first.route("POST", path, lambda r, w, p=path: w.body(307, b"", {"Location": second.url + p}))  # type: ignore[misc]
            first.route("GET", "/v1/models", lambda r, w: w.body(302, b"", {"Location": second.url + "/v1/models"}))
        provider = make(first.url)
        with pytest.raises(InvalidResponseError, match="redirect"):
            provider.generate_sync("hi")
        with pytest.raises(InvalidResponseError, match="redirect"):
            list(provider.stream_sync("hi"))
        assert first.received and all("secret" in str(r.headers).lower() for r in first.received)
        assert second.received == []  # neither x-api-key nor Authorization reached the second host
