"""The contract every provider must pass, run over real loopback sockets.

A vendor's test module subclasses ``ProviderContract`` (a class named ``Test...``) and supplies
how its fake server answers; the tests here are written once for all of them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import pytest

from mirror_providers.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    EndpointNotFoundError,
    ModelNotFoundError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    StreamError,
    TruncatedStreamError,
)
from mirror_providers.provider import Provider
from mirror_providers.types import GenerationResult, HealthStatus, StreamChunk, join_chunks

from .server import FakeServer

SECRET = "sk-contract-SECRETKEY-0123456789abcdef"

STATUS_CLASSES = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (403, PermissionDeniedError),
    (404, NotFoundError),  # the model's, or the endpoint's: see the two tests below
    (429, RateLimitError),
    (500, ServerError),
    (503, ServerError),
]


class ProviderContract:
    """Subclasses set ``provider_id`` and implement the four ``serve_*``/``make`` hooks."""

    provider_id: ClassVar[str]
    extra_statuses: ClassVar[list[Any]] = []

    # -- hooks ----------------------------------------------------------------------------

    def make(self, server: FakeServer, **kwargs: Any) -> Provider:
        raise NotImplementedError

    def serve_text(self, server: FakeServer, text: str) -> None:
        """Answer generate and stream calls with ``text`` (several chunks), usage included."""
        raise NotImplementedError

    def serve_tool_call(self, server: FakeServer, name: str, arguments: dict[str, Any]) -> None:
        raise NotImplementedError

    def serve_error(self, server: FakeServer, status: int, message: str) -> None:
        """Answer every call with the vendor's error body for ``status``."""
        raise NotImplementedError

    def serve_truncated_stream(self, server: FakeServer, text: str) -> None:
        raise NotImplementedError

    def serve_stream_error(self, server: FakeServer, text: str) -> None:
        """A stream that delivers ``text`` then an overloaded/server error event."""
        raise NotImplementedError

    # -- the contract ---------------------------------------------------------------------

    def test_generate(self, server: FakeServer) -> None:
        self.serve_text(server, "Paris is the capital")
        result = self.make(server).generate_sync("Capital of France?")
        assert isinstance(result, GenerationResult)
        assert result.content == "Paris is the capital"
        assert result.provider == self.provider_id
        assert result.finish_reason == "stop"
        assert result.usage is not None and result.usage.output_tokens > 0
        assert result.latency_s > 0

    def test_joined_stream_equals_generate(self, server: FakeServer) -> None:
        self.serve_text(server, "one two three four")
        provider = self.make(server)
        result = provider.generate_sync("count")
        chunks = list(provider.stream_sync("count"))
        assert all(isinstance(c, StreamChunk) for c in chunks)
        assert len([c for c in chunks if c.content]) > 1  # really streamed, not one blob
        assert [c.index for c in chunks] == list(range(len(chunks)))
        assert chunks[-1].finish_reason is not None
        joined = join_chunks(chunks)
        assert joined.content == result.content
        assert joined.finish_reason == result.finish_reason
        assert joined.usage == result.usage
        assert joined.tool_calls == result.tool_calls

    def test_tool_call_stream_equals_generate(self, server: FakeServer) -> None:
        self.serve_tool_call(server, "get_weather", {"city": "Paris"})
        provider = self.make(server)
        tools = [{"name": "get_weather", "description": "weather",
                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
        result = provider.generate_sync("weather?", tools=tools)
        assert result.finish_reason == "tool_calls"
        assert [(c.name, c.arguments) for c in result.tool_calls] == [("get_weather", {"city": "Paris"})]
        joined = join_chunks(provider.stream_sync("weather?", tools=tools))
        assert joined.finish_reason == "tool_calls"
        assert [(c.id, c.name, c.arguments) for c in joined.tool_calls] == [
            (c.id, c.name, c.arguments) for c in result.tool_calls]

    def test_sync_equals_async(self, server: FakeServer) -> None:
        self.serve_text(server, "alpha beta gamma")
        provider = self.make(server)

        async def run() -> tuple[GenerationResult, list[StreamChunk]]:
            result = await provider.generate("x")
            chunks = [c async for c in provider.stream("x")]
            return result, chunks

        result, chunks = asyncio.run(run())
        sync_result = provider.generate_sync("x")
        assert (result.content, result.usage, result.finish_reason) == (
            sync_result.content, sync_result.usage, sync_result.finish_reason)
        assert [c.content for c in chunks] == [c.content for c in provider.stream_sync("x")]

    @pytest.mark.parametrize("status, cls", STATUS_CLASSES)
    def test_status_maps_to_class(self, server: FakeServer, status: int, cls: type) -> None:
        self.serve_error(server, status, "something went wrong")
        provider = self.make(server, max_retries=0)
        with pytest.raises(cls) as info:
            provider.generate_sync("x")
        err = info.value
        assert isinstance(err, APIError)
        assert (err.status, err.provider, err.model) == (status, self.provider_id, provider.model_name)
        assert "something went wrong" in str(err)
        with pytest.raises(cls):
            list(provider.stream_sync("x"))

    def test_a_404_that_names_the_model_is_model_not_found(self, server: FakeServer) -> None:
        provider = self.make(server, max_retries=0)
        self.serve_error(server, 404, f"model {provider.model_name!r} not found")
        with pytest.raises(ModelNotFoundError, match="not found"):
            provider.generate_sync("x")

    def test_a_404_from_a_server_that_is_not_the_api_names_the_url(self, server: FakeServer) -> None:
        for method in ("GET", "POST"):
            server.route(method, "*", lambda r, w: w.body(404, b"<html><h1>Not Found</h1></html>",
                                                           {"Content-Type": "text/html"}))
        provider = self.make(server, max_retries=0)
        for call in (lambda: provider.generate_sync("x"), lambda: list(provider.stream_sync("x"))):
            with pytest.raises(EndpointNotFoundError) as info:
                call()
            assert f"{server.url}/" in str(info.value) and "answered 404" in str(info.value)
            assert "base URL" in str(info.value) and not isinstance(info.value, ModelNotFoundError)

    def test_key_never_leaks(self, server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        self.serve_error(server, 401, f"invalid key {SECRET}")
        provider = self.make(server, max_retries=0)
        assert SECRET not in repr(provider) and SECRET not in str(provider)
        with pytest.raises(AuthenticationError) as info:
            provider.generate_sync("x")
        err = info.value
        chain = []
        e: BaseException | None = err
        while e is not None:
            chain.append(e)
            e = e.__cause__ or e.__context__
        for e in chain:
            assert SECRET not in str(e) and SECRET not in repr(e)
            assert SECRET not in str(getattr(e, "body", ""))
        assert SECRET not in caplog.text
        assert SECRET not in str(provider.get_stats())
        assert server.received and any(SECRET in str(r.headers) for r in server.received)  # it was sent

    def test_truncated_stream_raises(self, server: FakeServer) -> None:
        self.serve_truncated_stream(server, "half an answer")
        provider = self.make(server)
        got: list[str] = []
        with pytest.raises(TruncatedStreamError) as info:
            for chunk in provider.stream_sync("x"):
                got.append(chunk.content)
        assert "".join(got) == "half an answer"
        assert info.value.chunks_delivered == len(got)
        assert info.value.provider == self.provider_id

    def test_error_event_mid_stream_is_typed(self, server: FakeServer) -> None:
        self.serve_stream_error(server, "partial")
        provider = self.make(server)
        got: list[str] = []
        with pytest.raises(StreamError) as info:
            for chunk in provider.stream_sync("x"):
                got.append(chunk.content)
        assert isinstance(info.value, (ServerError, OverloadedError))
        assert "".join(got) == "partial"
        assert info.value.chunks_delivered >= 1

    def test_stats_count_calls(self, server: FakeServer) -> None:
        self.serve_text(server, "a b")
        provider = self.make(server)
        provider.generate_sync("x")
        list(provider.stream_sync("x"))
        stream = provider.stream_sync("x")
        next(stream)
        stream.close()  # stopped early: neither success nor error
        stats = provider.get_stats()
        assert (stats.requests, stats.successes, stats.errors, stats.in_flight) == (3, 2, 0, 0)
        assert stats.status == "healthy" and stats.latency_p50_s is not None

    def test_failures_are_counted(self, server: FakeServer) -> None:
        self.serve_error(server, 500, "down")
        provider = self.make(server, max_retries=0)
        for _ in range(3):
            with pytest.raises(ServerError):
                provider.generate_sync("x")
        stats = provider.get_stats()
        assert (stats.errors, stats.consecutive_errors, stats.status) == (3, 3, "unhealthy")
        assert stats.last_error and "down" in stats.last_error

    def test_health_check(self, server: FakeServer) -> None:
        self.serve_text(server, "ok")
        status = self.make(server).health_check_sync()
        assert isinstance(status, HealthStatus) and status.healthy and bool(status)
        status = asyncio.run(self.make(server).health_check())
        assert status.healthy

    def test_health_check_reports_failure_without_raising(self) -> None:
        with FakeServer() as dead:
            url_server = dead
        status = self.make(url_server, max_retries=0).health_check_sync()
        assert not status.healthy and status.error

    def test_capabilities_and_name(self, server: FakeServer) -> None:
        provider = self.make(server)
        caps = provider.capabilities
        assert caps.max_context_window >= caps.max_tokens > 0
        assert provider.model_name
