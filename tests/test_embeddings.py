"""embed_sync / embed: OpenAI /v1/embeddings and Ollama /api/embed over real loopback servers;
batching, errors, retries, deadlines, stats, Anthropic's refusal, pools."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from mirror_providers import (
    AnthropicProvider,
    AuthenticationError,
    Capabilities,
    DeadlineExceededError,
    EmbeddingResult,
    EndpointNotFoundError,
    InvalidResponseError,
    ModelNotFoundError,
    OllamaProvider,
    OpenAIProvider,
    RateLimitError,
    RetryPolicy,
    ServerError,
    ValidationError,
)
from mirror_providers.embeddings import build_embed_request
from mirror_providers.pooling import FallbackChain, ProviderPool, TieredRouter
from mirror_providers.providers.ollama import parse_embeddings as ollama_parse
from mirror_providers.providers.openai import parse_embeddings as openai_parse

from .server import FakeServer, Received, Reply


def vector(text: str) -> list[float]:
    """A vector that says which text it is for: [len, first char code, 0.5]."""
    return [float(len(text)), float(ord(text[0])), 0.5]


def openai_embeddings(server: FakeServer, *, shuffle: bool = False) -> None:
    def route(req: Received, reply: Reply) -> None:
        body = req.json()
        items = [{"object": "embedding", "index": i, "embedding": vector(t)} for i, t in enumerate(body["input"])]
        if shuffle:
            items.reverse()  # the API places items by "index"; the order of the list is not promised
        n = len(body["input"])
        reply.json(200, {"object": "list", "data": items, "model": body["model"],
                         "usage": {"prompt_tokens": 2 * n, "total_tokens": 2 * n}},
                   {"x-request-id": f"req_{len(server.received)}"})

    server.route("POST", "/v1/embeddings", route)


def openai(server: FakeServer, **kwargs: Any) -> OpenAIProvider:
    kwargs.setdefault("retry", RetryPolicy(max_retries=2, sleep=lambda s: None, random=lambda: 0.0))
    kwargs.setdefault("api_key", "sk-test")
    return OpenAIProvider(model="gpt-4o-mini", base_url=server.url + "/v1", **kwargs)


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as s:
        yield s


# -- OpenAI -------------------------------------------------------------------------------------

def test_openai_wire_body_and_result(server: FakeServer) -> None:
    openai_embeddings(server)
    result = openai(server).embed_sync(["hello", "world!"], dimensions=3, extra={"user": "u1"})
    [req] = server.received
    assert req.path == "/v1/embeddings" and req.headers["authorization"] == "Bearer sk-test"
    assert req.json() == {"model": "text-embedding-3-small", "input": ["hello", "world!"],
                          "encoding_format": "float", "dimensions": 3, "user": "u1"}
    assert isinstance(result, EmbeddingResult)
    assert result.vectors == (tuple(vector("hello")), tuple(vector("world!")))
    assert (result.provider, result.model, result.dimensions, len(result)) == ("openai", "text-embedding-3-small", 3, 2)
    assert result.usage is not None and (result.usage.input_tokens, result.usage.total_tokens) == (4, 4)
    assert result.request_id == "req_1" and result.latency_s > 0 and result.attempts == 1
    assert EmbeddingResult.from_dict(result.to_dict()) == result


def test_one_text_is_a_list_of_one(server: FakeServer) -> None:
    openai_embeddings(server)
    result = openai(server, embedding_model="text-embedding-3-large").embed_sync("just one")
    assert server.received[0].json()["input"] == ["just one"]
    assert server.received[0].json()["model"] == "text-embedding-3-large"
    assert result.vectors == (tuple(vector("just one")),)


def test_batches_keep_input_order_and_sum_usage(server: FakeServer) -> None:
    openai_embeddings(server, shuffle=True)
    texts = [f"{chr(97 + i % 26)}{'x' * i}" for i in range(10)]
    result = openai(server).embed_sync(texts, batch_size=4)
    assert [len(r.json()["input"]) for r in server.received] == [4, 4, 2]
    assert [r.json()["input"] for r in server.received] == [texts[0:4], texts[4:8], texts[8:10]]
    assert result.vectors == tuple(tuple(vector(t)) for t in texts)
    assert result.usage is not None and result.usage.input_tokens == 20 and result.usage.total_tokens == 20
    assert result.request_id == "req_3"  # the last request's


def test_default_batch_size_is_256(server: FakeServer) -> None:
    openai_embeddings(server)
    openai(server).embed_sync([f"t{i}" for i in range(300)])
    assert [len(r.json()["input"]) for r in server.received] == [256, 44]


def test_a_failed_batch_says_which(server: FakeServer) -> None:
    calls = itertools.count()

    def route(req: Received, reply: Reply) -> None:
        if next(calls) == 1:
            reply.json(401, {"error": {"message": "Incorrect API key", "type": "invalid_request_error",
                                       "code": "invalid_api_key"}})
            return
        texts = req.json()["input"]
        reply.json(200, {"data": [{"index": i, "embedding": vector(t)} for i, t in enumerate(texts)]})

    server.route("POST", "/v1/embeddings", route)
    with pytest.raises(AuthenticationError) as info:
        openai(server).embed_sync(["a", "b", "c", "d", "e"], batch_size=2)
    assert "batch 2 of 3: texts 2 to 3" in str(info.value)
    assert info.value.model == "text-embedding-3-small" and info.value.status == 401
    assert len(server.received) == 2  # the third batch was never sent


def test_retries_429_and_5xx_honouring_retry_after(server: FakeServer) -> None:
    answers = iter([(429, {"retry-after": "3"}), (503, {}), (200, {})])

    def route(req: Received, reply: Reply) -> None:
        status, headers = next(answers)
        if status != 200:
            reply.json(status, {"error": {"message": "slow down", "type": "rate_limit"}}, headers)
            return
        reply.json(200, {"data": [{"index": 0, "embedding": [1.0, 2.0]}], "usage": {"prompt_tokens": 1}})

    server.route("POST", "/v1/embeddings", route)
    slept: list[float] = []
    p = openai(server, retry=RetryPolicy(max_retries=2, sleep=slept.append, random=lambda: 0.0))
    result = p.embed_sync("hi")
    assert result.vectors == ((1.0, 2.0),) and len(server.received) == 3
    assert slept[0] == 3.0 and len(slept) == 2
    assert result.usage is not None and result.usage.total_tokens == 1  # absent total: the prompt tokens


def test_rate_limit_after_the_retries_is_typed(server: FakeServer) -> None:
    server.route("POST", "/v1/embeddings", lambda req, reply: reply.json(
        429, {"error": {"message": "Rate limit reached", "type": "requests"}}, {"retry-after": "1"}))
    with pytest.raises(RateLimitError) as info:
        openai(server).embed_sync("hi", max_retries=1)
    assert info.value.retry_after == 1.0 and len(server.received) == 2


def test_unknown_model_is_model_not_found(server: FakeServer) -> None:
    server.route("POST", "/v1/embeddings", lambda req, reply: reply.json(404, {"error": {
        "message": "The model `text-embedding-9` does not exist", "type": "invalid_request_error",
        "code": "model_not_found"}}))
    with pytest.raises(ModelNotFoundError) as info:
        openai(server).embed_sync("hi", model="text-embedding-9")
    assert info.value.model == "text-embedding-9" and len(server.received) == 1


def test_a_501_is_not_retried_and_says_not_implemented(server: FakeServer) -> None:
    server.route("POST", "/v1/embeddings", lambda req, reply: reply.json(501, {"error": {
        "code": 501, "message": "This server does not support embeddings. Start it with `--embeddings`",
        "type": "not_supported_error"}}))
    with pytest.raises(EndpointNotFoundError) as info:
        openai(server).embed_sync("hi")
    assert "--embeddings" in str(info.value) and "501" in str(info.value)
    assert len(server.received) == 1 and info.value.failover_ok


def test_deadline_covers_every_batch(server: FakeServer) -> None:
    def route(req: Received, reply: Reply) -> None:
        reply.json(503, {"error": {"message": "busy", "type": "server_error"}}, {"retry-after": "30"})

    server.route("POST", "/v1/embeddings", route)
    with pytest.raises((DeadlineExceededError, ServerError)):
        openai(server, retry=RetryPolicy(max_retries=5, sleep=lambda s: None)).embed_sync("hi", deadline_s=0.5)
    assert len(server.received) == 1  # a 30 s Retry-After does not fit a 0.5 s deadline: no retry


def test_answers_of_the_wrong_shape_are_invalid_responses(server: FakeServer) -> None:
    answers = iter([{"data": [{"index": 0, "embedding": [1.0]}]},  # one vector for two texts
                    {"data": [{"index": 0, "embedding": ["x"]}, {"index": 1, "embedding": [1.0]}]},
                    {"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]}])
    server.route("POST", "/v1/embeddings", lambda req, reply: reply.json(200, next(answers)))
    p = openai(server)
    for expected in ("asked for 2 embeddings, got 1", "finite numbers", "index"):
        with pytest.raises(InvalidResponseError, match=expected):
            p.embed_sync(["a", "b"])


def test_stats_count_embeddings_calls(server: FakeServer) -> None:
    openai_embeddings(server)
    p = openai(server)
    p.embed_sync(["a", "b", "c"], batch_size=1)  # one call, three requests
    server.route("POST", "/v1/embeddings", lambda req, reply: reply.json(500, {"error": {"message": "boom"}}))
    with pytest.raises(ServerError):
        p.embed_sync("a", max_retries=0)
    stats = p.get_stats()
    assert (stats.requests, stats.successes, stats.errors) == (2, 1, 1)
    assert stats.last_error is not None and "boom" in stats.last_error


def test_async_embed(server: FakeServer) -> None:
    openai_embeddings(server)
    p = openai(server)
    result = asyncio.run(p.embed(["one", "two"], batch_size=1))
    assert result.vectors == (tuple(vector("one")), tuple(vector("two")))
    with pytest.raises(ValidationError):
        asyncio.run(p.embed([]))


# -- validation, before sending -----------------------------------------------------------------

@pytest.mark.parametrize(("texts", "options", "says"), [
    ([], {}, "texts is empty"),
    (["a", 3], {}, "texts[1] is int"),
    (["a", ""], {}, "texts[1] is empty"),
    (b"bytes", {}, "texts must be text or a list"),
    (None, {}, "texts must be text or a list"),
    (["a"], {"batch_size": 0}, "batch_size must be"),
    (["a"], {"batch_size": 10_000}, "batch_size must be"),
    (["a"], {"dimensions": -1}, "dimensions must be"),
    (["a"], {"dimensions": True}, "dimensions must be"),
    (["a"], {"dimensions": 4096}, "exceeds text-embedding-3-small's 1536"),
    (["a"], {"model": "text-embedding-ada-002", "dimensions": 256}, "takes no dimensions"),
    (["a"], {"model": ""}, "model must be"),
    (["a"], {"timeout": -1}, "timeout must be"),
    (["a"], {"max_retries": -1}, "max_retries must be"),
    (["a"], {"extra": {"input": ["x"]}}, "extra['input'] would override"),
    (["a"], {"extra": {"encoding_format": "base64"}}, "encoding_format"),
])
def test_bad_input_is_refused_before_sending(server: FakeServer, texts: Any, options: dict[str, Any],
                                             says: str) -> None:
    openai_embeddings(server)
    with pytest.raises(ValidationError) as info:
        openai(server).embed_sync(texts, **options)
    assert says in str(info.value)
    assert server.received == []


def test_request_validation_is_pure() -> None:
    request = build_embed_request(["a", "bb"], batch_size=1)
    assert request.texts == ("a", "bb") and request.text_length() == 3
    assert request.batches(256) == [(0, ("a",)), (1, ("bb",))]
    assert build_embed_request(request) is request


# -- Anthropic ----------------------------------------------------------------------------------

def test_anthropic_says_it_has_no_embeddings(server: FakeServer) -> None:
    p = AnthropicProvider(api_key="sk-ant-test", base_url=server.url)
    with pytest.raises(ValidationError) as info:
        p.embed_sync(["hello"])
    assert "Anthropic has no embeddings API" in str(info.value) and "Voyage AI" in str(info.value)
    assert "OpenAIProvider" in str(info.value) and "OllamaProvider" in str(info.value)
    assert server.received == []
    with pytest.raises(ValidationError):
        asyncio.run(p.embed("hello"))
    assert not p.capabilities.supports_embeddings
    assert p.get_stats().requests == 0


def test_capabilities_say_who_embeds(server: FakeServer) -> None:
    assert openai(server).capabilities.supports_embeddings
    assert OllamaProvider(host=server.url).capabilities.supports_embeddings
    assert Capabilities().supports_embeddings is False


# -- Ollama -------------------------------------------------------------------------------------

def test_ollama_wire_body_and_result(server: FakeServer) -> None:
    def route(req: Received, reply: Reply) -> None:
        body = req.json()
        reply.json(200, {"model": body["model"], "embeddings": [vector(t) for t in body["input"]],
                         "total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": 8})

    server.route("POST", "/api/embed", route)
    p = OllamaProvider(host=server.url, keep_alive="10m")
    result = p.embed_sync(["why", "sky"], dimensions=2, extra={"truncate": False}, batch_size=1)
    assert [r.json() for r in server.received] == [
        {"model": "nomic-embed-text", "input": [t], "dimensions": 2, "keep_alive": "10m", "truncate": False}
        for t in ("why", "sky")]
    assert result.vectors == (tuple(vector("why")), tuple(vector("sky")))
    assert result.usage is not None and result.usage.input_tokens == 16 and result.model == "nomic-embed-text"
    with pytest.raises(ValidationError, match="truncate"):
        p.embed_sync("x", extra={"truncate": "yes"})


def test_ollama_missing_model_is_model_not_found(server: FakeServer) -> None:
    server.route("POST", "/api/embed", lambda req, reply: reply.json(
        404, {"error": 'model "mxbai-embed-large" not found, try pulling it first'}))
    with pytest.raises(ModelNotFoundError) as info:
        OllamaProvider(host=server.url).embed_sync("x", model="mxbai-embed-large")
    assert info.value.model == "mxbai-embed-large"


def test_translation_functions() -> None:
    vectors, usage, model = openai_parse({"data": [{"index": 1, "embedding": [2]}, {"index": 0, "embedding": [1]}],
                                          "model": "m", "usage": {"prompt_tokens": 3, "total_tokens": 3}})
    assert vectors == [(1.0,), (2.0,)] and usage is not None and usage.input_tokens == 3 and model == "m"
    vectors, usage, model = ollama_parse({"embeddings": [[0.5, 1]], "model": "nomic-embed-text"})
    assert vectors == [(0.5, 1.0)] and usage is None and model == "nomic-embed-text"
    with pytest.raises(ValueError):
        openai_parse({"data": [{"index": 0, "embedding": [True]}]})


# -- pools --------------------------------------------------------------------------------------

def failing(server: FakeServer, status: int) -> None:
    server.route("POST", "/v1/embeddings", lambda req, reply: reply.json(
        status, {"error": {"message": "busy", "type": "server_error"}}))


def test_chain_skips_anthropic_and_fails_over(server: FakeServer) -> None:
    with FakeServer() as good:
        failing(server, 503)
        openai_embeddings(good)
        claude = AnthropicProvider(api_key="sk-ant-test", base_url=server.url)
        chain = FallbackChain([claude, openai(server), openai(good)])
        assert chain.capabilities.supports_embeddings
        result = chain.embed_sync(["a", "b"], batch_size=1)
        assert result.vectors == (tuple(vector("a")), tuple(vector("b")))
        assert [(a.provider, a.outcome) for a in result.attempts] == [
            ("anthropic", "skipped"), ("openai", "failed"), ("openai", "ok")]
        assert "no embeddings API" in result.attempts[0].reason
        assert len(server.received) == 1  # no retries of its own while another member was left
        assert [r.json()["input"] for r in good.received] == [["a"], ["b"]]  # the whole call on one member


def test_a_bad_request_is_not_failed_over(server: FakeServer) -> None:
    with FakeServer() as other:
        server.route("POST", "/v1/embeddings", lambda req, reply: reply.json(
            400, {"error": {"message": "bad input", "type": "invalid_request_error"}}))
        openai_embeddings(other)
        with pytest.raises(Exception, match="bad input"):
            FallbackChain([openai(server), openai(other)]).embed_sync("x")
        assert other.received == []


def test_a_pool_of_members_without_embeddings_refuses_before_sending(server: FakeServer) -> None:
    claude = AnthropicProvider(api_key="sk-ant-test", base_url=server.url)
    with pytest.raises(ValidationError, match="no member of this ProviderPool can take the request"):
        ProviderPool([claude, AnthropicProvider(api_key="sk-ant-test", base_url=server.url, model="haiku")]
                     ).embed_sync("x")
    assert server.received == []


def test_pool_and_router_route_embeddings(server: FakeServer) -> None:
    openai_embeddings(server)
    pool = ProviderPool([openai(server), AnthropicProvider(api_key="sk-ant-test", base_url=server.url)],
                        strategy="round_robin")
    for _ in range(3):
        assert pool.embed_sync("abc").provider == "openai"
    router = TieredRouter(flagship=AnthropicProvider(api_key="sk-ant-test", base_url=server.url),
                          fast=openai(server))
    result = asyncio.run(router.embed(["Analyze this philosophical question in depth"]))
    assert result.provider == "openai" and result.attempts.tries == 1
    assert pool.get_stats().successes == 3


def test_the_key_never_shows_in_an_embeddings_error(server: FakeServer) -> None:
    server.route("POST", "/v1/embeddings", lambda req, reply: reply.json(
        401, {"error": {"message": f"bad key {req.headers['authorization'][7:]}", "type": "auth"}}))
    with pytest.raises(AuthenticationError) as info:
        openai(server, api_key="sk-secret-123456").embed_sync(["a", "b"], batch_size=1)
    assert "sk-secret-123456" not in str(info.value) and "sk-secret-123456" not in repr(info.value)
    assert "sk-secret-123456" not in (info.value.body or "")
