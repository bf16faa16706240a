"""Frozen dataclasses that round-trip through JSON; stream joining."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mirror_providers.types import (
    Attempt,
    Attempts,
    Capabilities,
    ContentPart,
    GenerationResult,
    HealthStatus,
    Message,
    ModelInfo,
    ProviderStats,
    StreamChunk,
    Tier,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
    fast_stream_chunk,
    join_chunks,
    parse_tool_arguments,
)

CALL = ToolCall("call_1", "f", {"a": [1, 2]}, '{"a": [1, 2]}')
SAMPLES: list[Any] = [
    Message("user", (ContentPart.from_text("hi"), ContentPart.image_url("data:image/png;base64,AAAA"),
                     ContentPart.image_url("https://x/cat.jpg", detail="low"))),
    Message("assistant", "", tool_calls=(CALL,)),
    Message.tool_result("call_1", "22C", name="f"),
    GenerationResult("Paris", "gpt-4o", "openai", "stop", Usage(1, 2, 3, cached_input_tokens=1), (CALL,),
                     0.25, "req_1", Attempts((Attempt("fake", "a", None, 0.1, outcome="failed", reason="boom"),
                                              Attempt("openai", "gpt-4o", None, 0.2))), {"raw": True}),
    StreamChunk("Par", 3, None, None, (ToolCallDelta(0, "c", "f", "{"),), "m", "openai"),
    StreamChunk("", 4, "length", Usage(5, 6, 11)),
    Capabilities(True, True, True, 16384, 128000, Tier.FLAGSHIP),
    ModelInfo("m", 100, 10, True, False, Tier.LOCAL, ("alias",), "deprecated", "2026-06-15"),
    HealthStatus(False, "openai", "m", 0.1, "down", {"version": "1"}),
    ProviderStats("p", "m", members=(ProviderStats("a", "b", latency_p50_s=0.1),)),
    Tool("f", "does f", {"type": "object", "properties": {"x": {"type": "string"}}}),
]


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_json_round_trip(obj: object) -> None:
    cls = type(obj)
    assert cls.from_json(obj.to_json()) == obj  # type: ignore[attr-defined]
    assert cls.from_dict(obj.to_dict()) == obj  # type: ignore[attr-defined]


@pytest.mark.parametrize("obj", SAMPLES, ids=lambda o: type(o).__name__)
def test_frozen(obj: object) -> None:
    field = dataclasses.fields(obj)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, field, None)


def test_enum_serialises_as_value() -> None:
    assert '"tier": "flagship"' in Capabilities(tier=Tier.FLAGSHIP).to_json()


def test_message_helpers() -> None:
    m = SAMPLES[0]
    assert m.text == "hi" and len(m.images) == 2
    assert m.images[0].data == "AAAA" and m.images[0].media_type == "image/png"
    assert m.images[0].data_url == "data:image/png;base64,AAAA"


def test_image_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "a.png"
    path.write_bytes(b"\x89PNG")
    part = ContentPart.image_file(path)
    assert (part.media_type, part.data) == ("image/png", "iVBORw==")


def test_health_status_is_truthy_when_healthy() -> None:
    assert HealthStatus(True, "p", "m") and not HealthStatus(False, "p", "m")


def test_usage_openai_names() -> None:
    u = Usage(3, 4, 7)
    assert (u.prompt_tokens, u.completion_tokens) == (3, 4)


def test_parse_tool_arguments() -> None:
    assert parse_tool_arguments("") == {}
    assert parse_tool_arguments('{"a":1}') == {"a": 1}
    assert parse_tool_arguments("[1]") is None
    assert parse_tool_arguments("{bad") is None


def test_join_chunks_interleaved_tool_calls() -> None:
    chunks = [
        StreamChunk("Let me ", 0, provider="x", model="m"),
        StreamChunk("check.", 1),
        StreamChunk(index=2, tool_calls=(ToolCallDelta(0, "a", "f", '{"x"'), ToolCallDelta(1, "b", "g", ""))),
        StreamChunk(index=3, tool_calls=(ToolCallDelta(0, arguments_delta=": 1}"),)),
        StreamChunk(index=4, finish_reason="tool_calls", usage=Usage(1, 2, 3)),
    ]
    r = join_chunks(chunks)
    assert (r.content, r.finish_reason, r.usage, r.provider, r.model) == ("Let me check.", "tool_calls", Usage(1, 2, 3), "x", "m")
    assert [(c.id, c.name, c.arguments) for c in r.tool_calls] == [("a", "f", {"x": 1}), ("b", "g", {})]


def test_fast_stream_chunk_equals_the_constructor() -> None:
    deltas = (ToolCallDelta(index=0, id="c1", name="f", arguments_delta="{"),)
    fast = fast_stream_chunk("hi", 3, deltas, "m", "openai")
    slow = StreamChunk(content="hi", index=3, tool_calls=deltas, model="m", provider="openai")
    assert fast == slow and repr(fast) == repr(slow) and fast.to_dict() == slow.to_dict()
    assert list(vars(fast)) == [f.name for f in dataclasses.fields(StreamChunk)]  # a new field is not forgotten
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.content = "x"  # type: ignore[misc]
