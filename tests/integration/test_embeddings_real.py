"""Embeddings for real: llama.cpp's server with Gemma 3 270M started with embeddings on (and the
shared server, started without them, answering 501)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import pytest

from mirror_providers import EndpointNotFoundError
from mirror_providers.embedded import LocalModelServer, LocalProvider
from mirror_providers.pooling import FallbackChain

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedding_server() -> Iterator[LocalModelServer]:
    with LocalModelServer(parallel=1, embeddings=True) as server:
        yield server


def cosine(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_local_embeddings_batched_in_order(embedding_server: LocalModelServer) -> None:
    llm = embedding_server.openai()
    assert isinstance(llm, LocalProvider) and llm.capabilities.supports_embeddings
    texts = ["The cat sat on the mat.", "A stock market report.", "The cat sat on the mat."]
    whole = llm.embed_sync(texts)
    batched = llm.embed_sync(texts, batch_size=1)
    assert whole.provider == "local" and whole.model == "gemma-3-270m" and len(whole) == 3
    assert whole.dimensions == 640 == batched.dimensions  # Gemma 3 270M's hidden size
    assert whole.usage is not None and whole.usage.input_tokens > 0
    assert batched.usage is not None and batched.usage.input_tokens == whole.usage.input_tokens
    for a, b in zip(whole.vectors, batched.vectors, strict=True):
        assert cosine(a, b) > 0.999  # the same text, alone or in a batch: the same vector
    assert cosine(whole.vectors[0], whole.vectors[2]) > 0.999
    assert cosine(whole.vectors[0], whole.vectors[1]) < 0.999


def test_chat_still_works_with_embeddings_on(embedding_server: LocalModelServer) -> None:
    llm = embedding_server.openai()
    result = llm.generate_sync("Hello", max_tokens=4)
    assert result.finish_reason in ("length", "stop") and result.usage is not None
    assert asyncio.run(llm.embed("Hello")).dimensions == 640


def test_a_server_without_embeddings_says_how_to_start_one(local_model: LocalModelServer,
                                                           embedding_server: LocalModelServer) -> None:
    plain = local_model.openai()
    with pytest.raises(EndpointNotFoundError) as info:
        plain.embed_sync("hello")
    assert "501" in str(info.value) and "LocalModelServer(embeddings=True)" in str(info.value)
    # a chain fails over from it to the server that embeds
    result = FallbackChain([plain, embedding_server.openai()]).embed_sync(["hello", "world"])
    assert [a.outcome for a in result.attempts] == ["failed", "ok"] and len(result) == 2
