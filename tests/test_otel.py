"""OpenTelemetry (the ``otel`` extra): spans and metrics after the GenAI semantic conventions,
checked with the SDK's in-memory exporter and reader against a loopback server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from mirror_providers import otel  # noqa: E402
from mirror_providers.anthropic import AnthropicProvider  # noqa: E402
from mirror_providers.errors import AuthenticationError  # noqa: E402
from mirror_providers.openai import OpenAIProvider  # noqa: E402
from mirror_providers.pooling import FallbackChain  # noqa: E402

from .server import FakeServer, Received, Reply, add_openai_routes  # noqa: E402

KEY = "sk-test-OTEL-SECRET-55"


@pytest.fixture
def traced() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.instrument(tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader]))
    try:
        yield exporter, reader
    finally:
        otel.uninstrument()


def metrics(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {m.name: list(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics}


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def llm(server: FakeServer) -> OpenAIProvider:
    return OpenAIProvider(api_key=KEY, model="gpt-4o-mini", base_url=server.url + "/v1")


def test_a_call_is_a_client_span_with_the_conventions(server: FakeServer, traced: Any) -> None:
    exporter, reader = traced
    add_openai_routes(server)
    result = llm(server).generate_sync("hi", max_tokens=20, temperature=0.5)
    (span,) = exporter.get_finished_spans()
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.CLIENT
    a = attrs(span)
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"], a["gen_ai.request.model"]) == (
        "chat", "openai", "gpt-4o-mini")
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18" and a["gen_ai.response.id"] == result.response_id
    assert a["gen_ai.request.max_tokens"] == 20 and a["gen_ai.request.temperature"] == 0.5
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("stop",)
    assert result.usage is not None
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (
        result.usage.input_tokens, result.usage.output_tokens)
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == int(server.url.rsplit(":", 1)[1])
    assert "gen_ai.input.messages" not in a  # content only when asked for
    points = metrics(reader)
    assert len(points["gen_ai.client.operation.duration"]) == 1
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in points["gen_ai.client.token.usage"]}
    assert tokens == {"input": result.usage.input_tokens, "output": result.usage.output_tokens}


def test_an_error_is_an_error_span_without_the_key(server: FakeServer, traced: Any) -> None:
    exporter, _ = traced
    server.route("POST", "/v1/chat/completions", lambda r, w: w.json(401, {"error": {
        "message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error", "code": "invalid_api_key"}}))
    with pytest.raises(AuthenticationError):
        llm(server).generate_sync("hi")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR and attrs(span)["error.type"] == "AuthenticationError"
    assert "OTEL-SECRET" not in (span.status.description or "") and "OTEL-SECRET" not in str(attrs(span))


def test_a_stream_span_ends_with_the_stream(server: FakeServer, traced: Any) -> None:
    exporter, _ = traced
    add_openai_routes(server)
    chunks = list(llm(server).stream_sync("hi"))
    (span,) = exporter.get_finished_spans()
    usage = chunks[-1].usage
    assert usage is not None and attrs(span)["gen_ai.usage.output_tokens"] == usage.output_tokens
    assert span.end_time is not None and tuple(attrs(span)["gen_ai.response.finish_reasons"]) == ("stop",)
    stream = llm(server).stream_sync("hi")
    next(stream)
    stream.close()  # left early: the span ends, not as an error
    left = exporter.get_finished_spans()[-1]
    assert attrs(left)["mirror_providers.stream.abandoned"] is True and left.status.status_code is not StatusCode.ERROR


def test_a_pools_members_are_its_children(server: FakeServer, traced: Any) -> None:
    exporter, _ = traced
    add_openai_routes(server)
    dead = AnthropicProvider(api_key="sk-ant-x", model="sonnet", base_url="http://127.0.0.1:9", max_retries=0)
    FallbackChain([dead, llm(server)]).generate_sync("hi")
    spans = exporter.get_finished_spans()
    pool = next(s for s in spans if s.parent is None)
    children = [s for s in spans if s.parent is not None]
    assert {s.parent.span_id for s in children if s.parent} == {pool.context.span_id if pool.context else None}
    assert [attrs(s)["gen_ai.provider.name"] for s in children] == ["anthropic", "openai"]
    assert attrs(children[0])["error.type"] == "ConnectError"


def test_content_only_when_asked_for(server: FakeServer) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.instrument(tracer_provider=provider, meter_provider=MeterProvider(), capture_content=True)
    try:
        add_openai_routes(server)
        llm(server).generate_sync("What is the capital?", system="Be brief.")
    finally:
        otel.uninstrument()
    a = attrs(exporter.get_finished_spans()[0])
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "What is the capital?"}]}]
    assert json.loads(a["gen_ai.system_instructions"])[0]["content"] == "Be brief."
    assert "Paris" in a["gen_ai.output.messages"]


def test_embeddings_are_spans_too(server: FakeServer, traced: Any) -> None:
    exporter, _ = traced

    def embed(req: Received, reply: Reply) -> None:
        texts = req.json()["input"]
        reply.json(200, {"data": [{"index": i, "embedding": [0.1, 0.2]} for i in range(len(texts))],
                         "model": "text-embedding-3-small", "usage": {"prompt_tokens": 4, "total_tokens": 4}})

    server.route("POST", "/v1/embeddings", embed)
    llm(server).embed_sync(["a", "b"])
    (span,) = exporter.get_finished_spans()
    assert span.name == "embeddings text-embedding-3-small" and attrs(span)["gen_ai.usage.input_tokens"] == 4


def test_off_again_and_a_bad_setting(server: FakeServer) -> None:
    from mirror_providers.errors import ConfigurationError

    assert not otel.instrumented()
    with pytest.raises(ConfigurationError, match="capture_content must be True or False"):
        otel.instrument(capture_content="yes")  # type: ignore[arg-type]
