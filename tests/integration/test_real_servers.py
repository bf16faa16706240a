"""Against real servers: llama.cpp's own server with Gemma 3 270M (through the OpenAI and the
Anthropic clients), two model processes behind a pool with one killed mid-run, and Ollama's
wire format served by an independent implementation (aimock)."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import sys
from typing import Any

import pytest

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.embedded import LocalModelServer
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import FallbackChain, ProviderPool
from mirror_providers.provider import Provider
from mirror_providers.request import Options
from mirror_providers.types import join_chunks

from ..server import free_port
from .conftest import start_model_process

pytestmark = pytest.mark.integration

# llama.cpp reuses cached prompt prefixes, which changes the numerics: off, so greedy decoding repeats.
GREEDY: Options = {"temperature": 0.0, "max_tokens": 16, "extra": {"cache_prompt": False}}


def clients(server: LocalModelServer) -> list[Provider]:
    return [server.openai(), server.anthropic()]


@pytest.mark.parametrize("which", ["openai", "anthropic"])
def test_generate_and_stream_agree(local_model: LocalModelServer, which: str) -> None:
    provider = local_model.openai() if which == "openai" else local_model.anthropic()
    result = provider.generate_sync("The capital of France is", **GREEDY)
    assert result.content.strip() and result.finish_reason in ("stop", "length")
    assert result.usage is not None and result.usage.input_tokens > 0 and 0 < result.usage.output_tokens <= 16
    chunks = list(provider.stream_sync("The capital of France is", **GREEDY))
    assert len([c for c in chunks if c.content]) > 1  # really streamed
    joined = join_chunks(chunks)
    assert joined.content == result.content  # greedy decoding: the same text both ways
    assert joined.finish_reason == result.finish_reason
    assert joined.usage is not None and joined.usage.output_tokens == result.usage.output_tokens


@pytest.mark.parametrize("which", ["openai", "anthropic"])
def test_async_matches_sync(local_model: LocalModelServer, which: str) -> None:
    provider = local_model.openai() if which == "openai" else local_model.anthropic()

    async def run() -> tuple[str, str]:
        r = await provider.generate("Once upon a time", **GREEDY)
        streamed = [c.content async for c in provider.stream("Once upon a time", **GREEDY)]
        return r.content, "".join(streamed)

    plain, streamed = asyncio.run(run())
    assert plain == streamed == provider.generate_sync("Once upon a time", **GREEDY).content


def test_length_and_stop_finish_reasons(local_model: LocalModelServer) -> None:
    p = local_model.openai()
    assert p.generate_sync("Count: one, two, three,", temperature=0.0, max_tokens=3).finish_reason == "length"
    assert p.health_check_sync().healthy and local_model.anthropic().health_check_sync().healthy


def test_chain_dead_port_then_real_server(local_model: LocalModelServer) -> None:
    dead = OpenAIProvider(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    chain = FallbackChain([dead, local_model.openai()])
    result = chain.generate_sync("Hello", **GREEDY)
    assert result.attempts == 2 and result.content.strip()
    assert join_chunks(chain.stream_sync("Hello", **GREEDY)).content == result.content


def test_pool_over_two_model_processes_with_one_killed() -> None:
    (a, url_a), (b, url_b) = start_model_process(), start_model_process()
    try:
        pool = ProviderPool([OpenAIProvider(base_url=url_a + "/v1", model="gemma-3-270m", max_retries=0),
                             OpenAIProvider(base_url=url_b + "/v1", model="gemma-3-270m", max_retries=0)],
                            strategy="round_robin", failure_threshold=1)
        before = [pool.generate_sync("Hi", max_tokens=4) for _ in range(4)]
        assert all(r.attempts == 1 for r in before)
        a.send_signal(signal.SIGKILL)  # one server dies mid-run
        a.wait(10)
        after = [pool.generate_sync("Hi", max_tokens=4) for _ in range(6)]
        assert all(r.content is not None for r in after)
        assert sum(r.attempts for r in after) == 7  # one failed try on the dead member, then it sits out
        first, second = pool.get_stats().members
        assert first.status == "cooldown" and first.errors == 1 and second.successes >= 8
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def test_cli_generate_with_the_local_model() -> None:
    proc = subprocess.run([sys.executable, "-m", "mirror_providers", "generate", "--provider", "local",
                           "The sky is", "--max-tokens", "8"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() and "8 out" in proc.stderr


# -- Ollama's wire format from an independent implementation ---------------------------------------

def test_ollama_against_aimock(aimock: str) -> None:
    p = OllamaProvider("llama3.1", aimock, max_retries=0)
    result = p.generate_sync("hello")
    assert (result.content, result.finish_reason) == ("Hello from an independent Ollama implementation!", "stop")
    chunks = list(p.stream_sync("hello"))
    assert len([c for c in chunks if c.content]) > 1
    assert join_chunks(chunks).content == result.content and chunks[-1].finish_reason == "stop"
    raw = p.generate_raw_sync("hello")  # /api/generate
    assert raw.content == result.content
    tools = [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    called = p.generate_sync("weather?", tools=tools)
    assert called.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in called.tool_calls] == [("get_weather", {"city": "Tokyo"})]
    assert join_chunks(p.stream_sync("weather?", tools=tools)).tool_calls[0].arguments == {"city": "Tokyo"}
    assert isinstance(p.list_models_sync(), list)  # /api/tags


def test_ollama_async_against_aimock(aimock: str) -> None:
    p = OllamaProvider("llama3.1", aimock)

    async def run() -> str:
        return "".join([c.content async for c in p.stream("hello")])

    assert asyncio.run(run()) == "Hello from an independent Ollama implementation!"


def test_anthropic_provider_type_is_real(local_model: LocalModelServer) -> None:
    assert isinstance(local_model.anthropic(), AnthropicProvider)


def test_local_path_makes_no_external_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Data sovereignty: starting the embedded model and using it connects to 127.0.0.1 only."""
    import socket

    seen: list[object] = []
    real = socket.socket.connect

    def record(self: socket.socket, address: Any) -> object:
        seen.append(address)
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", record)
    with LocalModelServer() as server:
        server.openai().generate_sync("Hello", max_tokens=4)
        list(server.anthropic().stream_sync("Hello", max_tokens=4))
    assert seen and all(isinstance(a, tuple) and a[0] == "127.0.0.1" for a in seen), seen


def test_answers_are_capped_without_max_tokens(local_model: LocalModelServer) -> None:
    """A request with no max_tokens stops at the server's default (256), not at a full context."""
    result = local_model.openai().generate_sync("Write a very long story about the sea.")
    assert result.usage is not None and 0 < result.usage.output_tokens <= local_model.max_tokens


@dataclasses.dataclass
class City:
    name: str
    population: int
    coastal: bool


def test_structured_output_for_real(local_model: LocalModelServer) -> None:
    """llama.cpp constrains decoding to the schema sent as OpenAI's response_format json_schema:
    the answer parses and checks, plain and streamed, as a dict schema and as a dataclass. (Its
    Messages endpoint ignores output_config.format: not tested here.)"""
    provider = local_model.openai()
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["name", "population"]}
    result = provider.generate_sync("A city and its population, as JSON:", schema=schema, max_tokens=60,
                                    temperature=0.0)
    assert result.refusal is None and isinstance(result.parsed, dict)
    assert set(result.parsed) == {"name", "population"} and isinstance(result.parsed["population"], int)
    streamed = join_chunks(provider.stream_sync("A city and its population, as JSON:", schema=schema,
                                                max_tokens=60, temperature=0.0))
    assert streamed.parsed == result.parsed
    city = provider.generate_sync("Describe a city as JSON:", schema=City, max_tokens=80, temperature=0.0).parsed
    assert isinstance(city, City) and isinstance(city.population, int) and isinstance(city.coastal, bool)
