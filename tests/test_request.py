"""Input validation: every bad input is a ValidationError naming the problem, before any I/O."""

from __future__ import annotations

from typing import Any

import pytest

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.errors import ValidationError
from mirror_providers.openai import OpenAIProvider
from mirror_providers.request import GenerateRequest, build_request
from mirror_providers.transport import HttpRequest, HttpResponse, MockTransport
from mirror_providers.types import ContentPart, Message, Tool


def test_text_prompt() -> None:
    r = build_request("hello", {})
    assert r.messages == (Message("user", "hello"),)


def test_openai_style_dicts() -> None:
    r = build_request([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ], {})
    assert r.system_text() == "be brief"
    assert r.messages[1].images[0].media_type == "image/jpeg"
    assert r.messages[2].tool_calls[0].arguments == {"a": 1}


def test_options_applied_and_request_reusable() -> None:
    r = build_request("x", {"max_tokens": 5, "temperature": 0, "stop": "END", "system": "sys"})
    assert (r.max_tokens, r.temperature, r.stop, r.system) == (5, 0.0, ("END",), "sys")
    again = build_request(r, {"max_tokens": 9})
    assert isinstance(again, GenerateRequest) and again.max_tokens == 9 and again.stop == ("END",)


@pytest.mark.parametrize("prompt, match", [
    ("", "prompt is empty"),
    ("   \n", "prompt is empty"),
    ([], "messages list is empty"),
    ([Message.system("only")], "only system"),
    ([{"role": "wizard", "content": "x"}], "role 'wizard'"),
    ([{"content": "x"}], "no 'role'"),
    ([Message("user", "")], "every message is empty"),
    (42, "not int"),
    ([Message.user((ContentPart(type="image", data="AAAA", media_type="image/bmp"),))], "image/bmp"),
    ([Message.user((ContentPart(type="image"),))], "neither url nor data"),
    ([Message.user((ContentPart(type="image", url="file:///etc/passwd"),))], "http\\(s\\)"),
    ([Message("assistant", (ContentPart.image_url("https://x/a.png"),))], "only allowed in user"),
    ([{"role": "user", "content": [{"type": "audio"}]}], "unsupported part type 'audio'"),
])
def test_bad_prompts(prompt: Any, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        build_request(prompt, {})


@pytest.mark.parametrize("options, match", [
    ({"max_tokens": 0}, "at least 1"),
    ({"max_tokens": -5}, "at least 1"),
    ({"max_tokens": 2.5}, "integer"),
    ({"max_tokens": True}, "integer"),
    ({"temperature": 3}, "between 0.0 and 2.0"),
    ({"temperature": float("nan")}, "number"),
    ({"top_p": 1.5}, "between"),
    ({"stop": ["ok", ""]}, "stop"),
    ({"tools": [{"name": "bad name!", "parameters": {"type": "object"}}]}, "name 'bad name!'"),
    ({"tools": [{"name": "f", "parameters": {"type": "array"}}]}, "type 'object'"),
    ({"tools": ["f"]}, "Tool or a dict"),
    ({"tool_choice": "g", "tools": [Tool("f")]}, "names no tool"),
    ({"timeout": 0}, "positive"),
    ({"system": 5}, "system must be text"),
    ({"extra": [1]}, "extra must be a dict"),
])
def test_bad_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        build_request("hi", options)


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="max_token"):
        build_request("hi", {"max_token": 5})


def test_tool_shapes_accepted() -> None:
    r = build_request("hi", {"tools": [
        Tool("a"),
        {"type": "function", "function": {"name": "b", "parameters": {"type": "object"}}},
        {"name": "c", "input_schema": {"type": "object", "properties": {}}},
    ], "tool_choice": {"type": "function", "function": {"name": "b"}}})
    assert [t.name for t in r.tools] == ["a", "b", "c"] and r.tool_choice == "b"


@pytest.mark.parametrize("make", [
    lambda t: OpenAIProvider(model="gpt-4o-mini", api_key="k", transport=t),
    lambda t: AnthropicProvider(model="claude-haiku-4-5", api_key="k", transport=t),
], ids=["openai", "anthropic"])
def test_tool_result_without_id_refused_where_the_vendor_pairs_by_id(make: Any) -> None:
    # A neutral request may hold it (Ollama pairs results by order); these vendors would answer
    # 400, so the provider refuses it before sending, naming the message.
    sent: list[Any] = []

    def record(req: HttpRequest) -> HttpResponse:
        sent.append(req)
        return HttpResponse(500, {}, b"")

    provider = make(MockTransport(record))
    history: list[Any] = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
               {"role": "tool", "content": "42"}]
    assert build_request(history, {}).messages[2].tool_call_id is None
    with pytest.raises(ValidationError, match=r"messages\[2\] has role 'tool' but no tool_call_id"):
        provider.generate_sync(history)
    assert sent == []


def test_plain_turns_are_made_once_and_the_cache_of_them_stays_bounded() -> None:
    from mirror_providers import request as request_module

    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    first = build_request([*history, {"role": "user", "content": "more"}], {}).messages
    again = build_request([*history, {"role": "user", "content": "more"}], {}).messages
    assert first == (Message("user", "hi"), Message("assistant", "hello"), Message("user", "more"))
    assert all(a is b for a, b in zip(first, again, strict=True))  # immutable, so shared
    for i in range(request_module._PLAIN_CACHE_ENTRIES + 10):
        build_request([{"role": "user", "content": f"turn {i}"}], {})
    assert len(request_module._plain) <= request_module._PLAIN_CACHE_ENTRIES
    long_text = "x" * (request_module._PLAIN_CACHE_CHARS + 1)
    assert build_request([{"role": "user", "content": long_text}], {}).messages[0].content == long_text
    assert ("user", long_text) not in request_module._plain
    # a dict with more than role and content still goes through every check
    with pytest.raises(ValidationError, match="tool_calls"):
        build_request([{"role": "assistant", "content": "x", "tool_calls": "nope"}], {})
    with pytest.raises(ValidationError, match="role"):
        build_request([{"role": "robot", "content": "x"}], {})
