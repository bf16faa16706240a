"""Pools skip members that would refuse a request before sending it (no structured output, no
vision, no PDF input, a limit exceeded): the request goes to one that can, the skipped member's
health is untouched, and when no member can the caller gets a ValidationError naming why."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from mirror_providers.base import ContentPart, Message, ValidationError
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import FallbackChain, ProviderPool
from mirror_providers.request import build_request

from ..server import FakeServer, add_openai_routes

PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
PNG = ContentPart.image_bytes(base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="),
                              "image/png")


@pytest.fixture
def servers() -> Iterator[tuple[FakeServer, FakeServer]]:
    with FakeServer() as old, FakeServer() as new:
        add_openai_routes(old, "from the old one")
        add_openai_routes(new, '{"name": "Ada"}')
        yield old, new


def _members(servers: tuple[FakeServer, FakeServer]) -> tuple[OpenAIProvider, OpenAIProvider]:
    old, new = servers
    # gpt-4: no structured output, no vision, no PDFs (its catalog row); gpt-6-luna: all three.
    return (OpenAIProvider(api_key="sk-a", model="gpt-4", base_url=old.url + "/v1", max_retries=0),
            OpenAIProvider(api_key="sk-b", model="gpt-6-luna", base_url=new.url + "/v1", max_retries=0))


@pytest.mark.parametrize("need", ["schema", "image", "pdf"])
def test_a_member_without_the_capability_is_skipped(servers: tuple[FakeServer, FakeServer], need: str) -> None:
    old, new = servers
    weak, strong = _members(servers)
    chain = FallbackChain([weak, strong])
    if need == "schema":
        result = chain.generate_sync("Who?", schema=PERSON)
        assert result.parsed == {"name": "Ada"}
    else:
        part = PNG if need == "image" else ContentPart.document_bytes(b"%PDF-1.7\n%%EOF\n")
        result = chain.generate_sync([Message.user((part, ContentPart.from_text("What is it?")))])
    assert result.content == '{"name": "Ada"}'
    assert old.received == [] and len(new.received) == 1  # the weak member was never called
    assert result.attempts == 1  # a skip is not an attempt
    stats = chain.get_stats()
    assert stats.errors == 0 and stats.members[0].requests == 0 and stats.members[0].consecutive_errors == 0


def test_streams_skip_too(servers: tuple[FakeServer, FakeServer]) -> None:
    old, new = servers
    chain = FallbackChain(list(_members(servers)))
    chunks = list(chain.stream_sync("Who?", schema=PERSON))
    assert chunks[-1].parsed == {"name": "Ada"}
    assert old.received == []


def test_when_no_member_can_the_caller_is_told_why(servers: tuple[FakeServer, FakeServer]) -> None:
    old, _ = servers
    weak, _ = _members(servers)
    other = OpenAIProvider(api_key="sk-c", model="gpt-3.5-turbo", base_url=old.url + "/v1", max_retries=0)
    pool = ProviderPool([weak, other], strategy="round_robin")
    with pytest.raises(ValidationError, match=r"no member of this ProviderPool can take the request: "
                                              r"openai:gpt-4: gpt-4 does not support structured output.*"
                                              r"openai:gpt-3.5-turbo: gpt-3.5-turbo does not support"):
        pool.generate_sync("Who?", schema=PERSON)
    assert old.received == []
    refused = pool.unsupported(build_request("Who?", {"schema": PERSON}))
    assert refused is not None and "no member" in refused.message
    assert pool.unsupported(build_request("Who?", {})) is None


def test_nested_pools_skip_as_one_member(servers: tuple[FakeServer, FakeServer]) -> None:
    old, new = servers
    weak, strong = _members(servers)
    inner = FallbackChain([weak])
    outer = FallbackChain([inner, strong])
    assert outer.capabilities.supports_structured_output and not inner.capabilities.supports_structured_output
    assert json.loads(outer.generate_sync("Who?", schema=PERSON).content) == {"name": "Ada"}
    assert old.received == []


def test_a_limit_a_member_cannot_take_skips_it(servers: tuple[FakeServer, FakeServer]) -> None:
    old, new = servers
    weak, strong = _members(servers)
    assert weak.model_info is not None and strong.model_info is not None
    too_many = weak.model_info.max_output + 1
    assert too_many <= strong.model_info.max_output
    assert FallbackChain([weak, strong]).generate_sync("Hi", max_tokens=too_many).content == '{"name": "Ada"}'
    assert old.received == []


def test_a_request_no_member_can_take_is_refused_at_the_call(servers: tuple[FakeServer, FakeServer]) -> None:
    """As a single provider refuses bad input before anything runs: the stream, the future and
    the pool's health never see it."""
    old, _ = servers
    weak, _ = _members(servers)
    chain = FallbackChain([weak])
    for _ in range(5):
        with pytest.raises(ValidationError, match="no member"):
            chain.stream_sync("Who?", schema=PERSON)  # raised here, not at the first next()
        with pytest.raises(ValidationError, match="no member"):
            chain.submit("Who?", schema=PERSON)
    stats = chain.get_stats()
    assert (stats.requests, stats.errors, stats.consecutive_errors) == (0, 0, 0) and stats.status != "unhealthy"
    assert old.received == []


def test_a_router_that_would_refuse_lets_its_parent_fall_back(servers: tuple[FakeServer, FakeServer]) -> None:
    from mirror_providers.pooling import TieredRouter

    old, new = servers
    weak, strong = _members(servers)
    router = TieredRouter(fast=weak, flagship=strong, fallback=False)
    assert router.explain("Who?").tier.value == "fast"
    assert router.unsupported(build_request("Who?", {"schema": PERSON})) is not None  # its plan is the fast tier
    backup = OpenAIProvider(api_key="sk-d", model="gpt-6-luna", base_url=new.url + "/v1", max_retries=0)
    result = FallbackChain([router, backup]).generate_sync("Who?", schema=PERSON)
    assert result.parsed == {"name": "Ada"} and old.received == []
