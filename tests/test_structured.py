"""schema=: the wire each vendor gets, parsing and checking the answer, refusals, the Anthropic
tool-forcing fallback, streams, and bad schemas refused before sending. Answers are the shapes of
docs/protocols-2026.md §2.6, §3.4, §4.7, §4.11."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any, Literal

import pytest

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.base import StructuredOutputError, ValidationError
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.structured import check_instance, dataclass_schema, output_schema
from mirror_providers.transport import MockTransport
from mirror_providers.types import join_chunks

from .test_reasoning_out import Recorder

PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Point:
    x: float
    y: float


@dataclasses.dataclass
class Shape:
    """A shape on a plane."""

    kind: Literal["circle", "square"]
    color: Color
    corners: list[Point]
    label: str | None = None


def openai_answer(content: str | None, refusal: str | None = None) -> dict[str, Any]:
    return {"id": "c1", "model": "gpt-6-luna", "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": content, "refusal": refusal}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}


def openai(answer: Any, stream: bytes | None = None) -> tuple[OpenAIProvider, Recorder]:
    rec = Recorder(answer, stream)
    return OpenAIProvider(api_key="sk-test", transport=MockTransport(rec), max_retries=0, api="chat"), rec


def test_openai_sends_strict_json_schema_and_parses() -> None:
    p, rec = openai(openai_answer('{"name": "John", "age": 30}'))
    result = p.generate_sync("Extract: John is 30.", schema=PERSON)
    fmt = rec.bodies[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["name"] == "response"
    assert fmt["json_schema"]["schema"]["additionalProperties"] is False  # closed, as strict mode needs
    assert result.parsed == {"name": "John", "age": 30} and result.refusal is None


def test_openai_refusal_is_reported_not_a_parse_error() -> None:
    p, _ = openai(openai_answer(None, "I can't help with that."))
    result = p.generate_sync("x", schema=PERSON)
    assert result.refusal == "I can't help with that." and result.parsed is None


def test_openai_stream_refusal_and_parsed_on_the_final_chunk() -> None:
    def sse(*deltas: dict[str, Any]) -> bytes:
        frames = [json.dumps({"model": "gpt-6-luna", "choices": [{"index": 0, "delta": d}]}) for d in deltas]
        return ("".join(f"data: {f}\n\n" for f in frames) + "data: [DONE]\n\n").encode()

    p, _ = openai({}, sse({"content": '{"name": '}, {"content": '"Al", "age": 4}'}))
    chunks = list(p.stream_sync("x", schema=PERSON))
    assert chunks[-1].parsed == {"name": "Al", "age": 4} and join_chunks(chunks).parsed == {"name": "Al", "age": 4}
    p, _ = openai({}, sse({"refusal": "No"}, {"refusal": " thanks."}))
    joined = join_chunks(p.stream_sync("x", schema=PERSON))
    assert joined.refusal == "No thanks." and joined.parsed is None


def test_an_answer_that_does_not_match_is_a_typed_error() -> None:
    p, _ = openai(openai_answer('{"name": "John", "age": "thirty"}'))
    with pytest.raises(StructuredOutputError) as info:
        p.generate_sync("x", schema=PERSON)
    assert "$.age is a string, not integer" in str(info.value) and info.value.provider == "openai"
    assert info.value.failover_ok  # another member may do better
    p, _ = openai(openai_answer('{"name": "Jo'))
    with pytest.raises(StructuredOutputError, match="not JSON"):
        p.generate_sync("x", schema=PERSON)


def test_dataclass_schema_is_strict_and_builds_the_instance() -> None:
    schema = dataclass_schema(Shape)
    assert schema["required"] == ["kind", "color", "corners", "label"] and schema["additionalProperties"] is False
    assert schema["properties"]["label"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    answer = {"kind": "square", "color": "red", "corners": [{"x": 0, "y": 1.5}], "label": None}
    p, rec = openai(openai_answer(json.dumps(answer)))
    shape = p.generate_sync("x", schema=Shape).parsed
    assert shape == Shape("square", Color.RED, [Point(0.0, 1.5)], None) and isinstance(shape.corners[0].x, float)
    spec = rec.bodies[0]["response_format"]["json_schema"]
    assert spec["name"] == "Shape" and spec["description"] == "A shape on a plane."


@pytest.mark.parametrize("bad, match", [
    ({"type": "array", "items": {}}, "root must be"),
    ("not a schema", "JSON Schema dict or a dataclass"),
    ({"type": "object", "properties": {"a": {"type": "strin"}}}, "not a JSON Schema type"),
    ({"type": "object", "required": "a"}, "required must be a list"),
    ({"type": "object", "properties": {"a": {"type": "number", "default": float("nan")}}}, "schema"),
    (set, "JSON Schema dict or a dataclass"),
])
def test_bad_schemas_are_refused_before_sending(bad: Any, match: str) -> None:
    p, rec = openai(openai_answer("{}"))
    with pytest.raises(ValidationError, match=match):
        p.generate_sync("x", schema=bad)
    assert rec.bodies == []


def test_openai_refuses_a_schema_strict_mode_cannot_take() -> None:
    p, rec = openai(openai_answer("{}"))
    loose = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a"]}
    with pytest.raises(ValidationError, match=r"does not require \['b'\]"):
        p.generate_sync("x", schema=loose)
    compatible = OpenAIProvider(base_url="http://127.0.0.1:9/v1", transport=MockTransport(rec), max_retries=0)
    rec.answer = openai_answer('{"a": "1"}')
    assert compatible.generate_sync("x", schema=loose).parsed == {"a": "1"}  # other servers decide themselves
    with pytest.raises(ValidationError, match="both ask for structured output"):
        p.generate_sync("x", schema=PERSON, extra={"response_format": {"type": "json_object"}})


def anthropic(model: str, answer: Any, stream: bytes | None = None) -> tuple[AnthropicProvider, Recorder]:
    rec = Recorder(answer, stream)
    return AnthropicProvider(api_key="k", model=model, transport=MockTransport(rec), max_retries=0), rec


def message(content: list[dict[str, Any]], stop: str = "end_turn", details: Any = None) -> dict[str, Any]:
    return {"id": "m", "type": "message", "role": "assistant", "model": "claude-sonnet-5-5", "content": content,
            "stop_reason": stop, "stop_details": details, "usage": {"input_tokens": 3, "output_tokens": 4}}


def test_anthropic_output_config_format_merges_with_effort() -> None:
    p, rec = anthropic("sonnet", message([{"type": "text", "text": '{"name":"A","age":1}'}]))
    assert p.generate_sync("x", schema=PERSON, reasoning="low").parsed == {"name": "A", "age": 1}
    body = rec.bodies[0]
    assert body["output_config"]["effort"] == "low"
    assert body["output_config"]["format"] == {"type": "json_schema", "schema": {**PERSON,
                                                                                "additionalProperties": False}}
    assert "tools" not in body


def test_anthropic_refusal_stop_reason() -> None:
    details = {"type": "refusal", "category": "cyber", "explanation": None}
    p, _ = anthropic("sonnet", message([{"type": "text", "text": ""}], "refusal", details))
    result = p.generate_sync("x", schema=PERSON)
    assert result.refusal == "refused (cyber)" and result.parsed is None and result.finish_reason == "content_filter"


def test_anthropic_older_model_forces_a_tool_and_reads_its_input() -> None:
    answer = message([{"type": "tool_use", "id": "t1", "name": "mirror_output", "input": {"name": "B", "age": 2}}],
                     "tool_use")
    stream = (
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-20250514",'
        b'"usage":{"input_tokens":5}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":'
        b'"tool_use","id":"t1","name":"mirror_output","input":{}}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":'
        b'"input_json_delta","partial_json":"{\\"name\\": \\"B\\","}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":'
        b'"input_json_delta","partial_json":" \\"age\\": 2}"}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use"},'
        b'"usage":{"output_tokens":9}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    rec = Recorder(answer, stream)
    p = AnthropicProvider(api_key="k", model="claude-sonnet-4-20250514", base_url="http://127.0.0.1:9",
                          transport=MockTransport(rec), max_retries=0)
    result = p.generate_sync("x", schema=PERSON)
    assert result.parsed == {"name": "B", "age": 2} and result.tool_calls == () and result.finish_reason == "stop"
    body = rec.bodies[0]
    assert body["tool_choice"] == {"type": "tool", "name": "mirror_output"} and "output_config" not in body
    assert body["tools"][-1]["input_schema"] == PERSON
    joined = join_chunks(p.stream_sync("x", schema=PERSON))
    assert joined.parsed == {"name": "B", "age": 2} and joined.finish_reason == "stop" and joined.tool_calls == ()
    with pytest.raises(ValidationError, match="tool_choice='auto' cannot be kept"):
        p.generate_sync("x", schema=PERSON, tool_choice="auto")
    with pytest.raises(ValidationError, match="reserved"):
        p.generate_sync("x", tools=[{"name": "mirror_output", "parameters": {"type": "object"}}])


def test_ollama_sends_format() -> None:
    rec = Recorder({"model": "llama3.1", "message": {"role": "assistant", "content": '{"name":"C","age":3}'},
                    "done": True, "done_reason": "stop"})
    p = OllamaProvider(model="llama3.1", transport=MockTransport(rec), max_retries=0)
    assert p.generate_sync("x", schema=PERSON).parsed == {"name": "C", "age": 3}
    assert rec.bodies[0]["format"] == PERSON


def test_models_without_structured_output_refuse_it() -> None:
    p = OpenAIProvider(api_key="k", model="gpt-4o-2024-05-13", base_url="http://127.0.0.1:9/v1",
                       transport=MockTransport(Recorder({})), max_retries=0)
    assert not p.capabilities.supports_structured_output
    with pytest.raises(ValidationError, match="does not support structured output"):
        p.generate_sync("x", schema=PERSON)
    assert AnthropicProvider(api_key="k", model="claude-sonnet-4-20250514").capabilities.supports_structured_output


@pytest.mark.parametrize("value, schema, problem", [
    (1.5, {"type": "integer"}, "not integer"),
    (True, {"type": "number"}, "not number"),
    ({"a": 1}, {"type": "object", "additionalProperties": False}, "does not allow"),
    ([1, 2, 3], {"type": "array", "maxItems": 2}, "3 items"),
    ("b", {"enum": ["a"]}, "not one of"),
    (5, {"anyOf": [{"type": "string"}, {"type": "null"}]}, "matches none"),
    (1, {"oneOf": [{"type": "integer"}, {"type": "number"}]}, "matches 2"),
    ({"p": {"x": "no"}}, {"type": "object", "properties": {"p": {"$ref": "#/$defs/P"}},
                          "$defs": {"P": {"type": "object", "properties": {"x": {"type": "number"}}}}}, "$.p.x"),
    (0, {"type": "number", "exclusiveMinimum": 0}, "exclusiveMinimum"),
])
def test_the_checker_finds_each_kind_of_mismatch(value: Any, schema: dict[str, Any], problem: str) -> None:
    problems = check_instance(value, schema)
    assert problems and problem in problems[0]
    assert check_instance(value, {}) == []


def test_openai_wrapper_form_is_accepted() -> None:
    s = output_schema({"name": "person!", "schema": PERSON, "strict": True})
    assert s.name == "person_" and s.schema == PERSON


def test_openai_usage_reports_cache_writes_and_reads() -> None:
    """The real GPT-5.6 usage of docs/protocols-2026.md §3.5: writes and reads are inside prompt_tokens."""
    from mirror_providers.providers.openai import parse_usage

    u = parse_usage({"prompt_tokens": 1220, "completion_tokens": 100, "total_tokens": 1320,
                     "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 1217, "audio_tokens": 0},
                     "completion_tokens_details": {"reasoning_tokens": 100, "audio_tokens": 0}})
    assert u is not None
    assert (u.input_tokens, u.cached_input_tokens, u.cache_creation_input_tokens, u.reasoning_tokens) == (
        1220, 0, 1217, 100)
    older = parse_usage({"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 8}})
    assert older is not None and older.cache_creation_input_tokens is None and older.cached_input_tokens == 8
