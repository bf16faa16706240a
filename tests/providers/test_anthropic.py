"""AnthropicProvider: translation, cassettes, every error path, gzip SSE, and the provider contract."""

from __future__ import annotations

import gzip
import json
import warnings
from typing import Any

import pytest
import responses

from mirror_providers import models
from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ModelNotFoundError,
    ModelRetiredError,
    OverloadedError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    RequestTooLargeError,
    ServerError,
    StreamError,
    TruncatedStreamError,
    ValidationError,
)
from mirror_providers.models import ModelDeprecatedWarning
from mirror_providers.providers.anthropic import (
    build_messages,
    build_payload,
    parse_result,
)
from mirror_providers.request import build_request
from mirror_providers.retry import RetryPolicy
from mirror_providers.types import ContentPart, Message, Tier, ToolCall, join_chunks

from ..conftest import FAKE_KEY
from ..contract import ProviderContract
from ..server import FakeServer, Received, Reply, anthropic_message
from .replay import answer, sse, stream

URL = "https://api.anthropic.com/v1/messages"


def provider(**kwargs: Any) -> AnthropicProvider:
    kwargs.setdefault("api_key", FAKE_KEY)
    kwargs.setdefault("max_retries", 0)
    return AnthropicProvider(**kwargs)


def ev(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def text_stream(words: list[str], model: str = "claude-sonnet-4-20250514", stop: str = "end_turn",
                terminate: bool = True) -> str:
    out = [ev("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ev("ping", {"type": "ping"})]
    out += [ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": w}}) for w in words]
    out.append(ev("content_block_stop", {"type": "content_block_stop", "index": 0}))
    if terminate:
        out.append(ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop},
                                        "usage": {"output_tokens": len(words)}}))
        out.append(ev("message_stop", {"type": "message_stop"}))
    return "".join(out)


def message(text: str, **kw: Any) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": kw.get("model", "claude-sonnet-4-20250514"),
            "content": kw.get("content", [{"type": "text", "text": text}]), "stop_reason": kw.get("stop", "end_turn"),
            "stop_sequence": None, "usage": kw.get("usage", {"input_tokens": 12, "output_tokens": len(text.split())})}


# -- translation ---------------------------------------------------------------------------------

def test_payload_system_top_level_and_max_tokens_always_sent() -> None:
    req = build_request([Message.system("Be brief."), Message.user("Capital of France?")],
                        {"system": "You are a geographer.", "temperature": 0.2, "stop": ["\n\nHuman:"], "top_p": 0.9})
    body = build_payload(req, "claude-sonnet-4-20250514", 8192, stream=False)
    assert body == {"model": "claude-sonnet-4-20250514", "max_tokens": 8192,
                    "messages": [{"role": "user", "content": "Capital of France?"}],
                    "system": "You are a geographer.\n\nBe brief.", "temperature": 0.2, "top_p": 0.9,
                    "stop_sequences": ["\n\nHuman:"]}
    assert build_payload(build_request("x", {"max_tokens": 5}), "m", 8192, True)["max_tokens"] == 5


def test_tools_and_tool_choice_mapping() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "d",
                                               "parameters": {"type": "object", "properties": {}}}}]
    body = build_payload(build_request("x", {"tools": tools, "tool_choice": "required", "parallel_tool_calls": False}),
                         "m", 100, False)
    assert body["tools"] == [{"name": "get_weather", "description": "d", "input_schema": {"type": "object", "properties": {}}}]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    for choice, expected in [("auto", {"type": "auto"}), ("none", {"type": "none"}),
                             ("get_weather", {"type": "tool", "name": "get_weather"})]:
        assert build_payload(build_request("x", {"tools": tools, "tool_choice": choice}), "m", 1, False)["tool_choice"] == expected


def test_tool_round_trip_and_vision_blocks() -> None:
    calls = (ToolCall("toolu_1", "name_a", {}, "{}"), ToolCall("toolu_2", "name_b", {"x": 1}, '{"x": 1}'))
    turns = build_messages((
        Message.user((ContentPart.image_bytes(b"\x89PNG", "image/png"), ContentPart.image_url("https://x/cat.jpg"),
                      ContentPart.from_text("Describe these."))),
        Message.assistant("Checking.", tool_calls=calls),
        Message.tool_result("toolu_1", "Charles"),
        Message.tool_result("toolu_2", "Sammy"),
        Message.user("And then?"),
    ))
    assert turns[0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="}},
        {"type": "image", "source": {"type": "url", "url": "https://x/cat.jpg"}},
        {"type": "text", "text": "Describe these."}]
    assert turns[1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "name_a", "input": {}},
        {"type": "tool_use", "id": "toolu_2", "name": "name_b", "input": {"x": 1}}]}
    # one user turn: every tool_result first, then the text
    assert turns[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Charles"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "Sammy"},
        {"type": "text", "text": "And then?"}]}
    assert len(turns) == 3


def test_consecutive_same_role_turns_merged() -> None:
    turns = build_messages((Message.user("a"), Message.user("b"), Message.assistant("c")))
    assert turns == [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                     {"role": "assistant", "content": "c"}]


def test_parse_result_usage_with_cache_and_tools() -> None:
    data = message("", content=[{"type": "thinking", "thinking": "hmm", "signature": "s"},
                                {"type": "text", "text": "Let me check."},
                                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}],
                   stop="tool_use", usage={"input_tokens": 10, "output_tokens": 20, "cache_creation_input_tokens": 5,
                                           "cache_read_input_tokens": 100})
    r = answer(AnthropicProvider, data, {"request-id": "req_1"}, api_key="sk-x")
    assert r.provider == "anthropic" and r.request_id == "req_1"
    assert r.content == "Let me check." and r.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in r.tool_calls] == [("toolu_01", "get_weather", {"city": "Paris"})]
    assert r.usage is not None
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (115, 20, 135)
    assert (r.usage.cached_input_tokens, r.usage.cache_creation_input_tokens) == (100, 5)


@pytest.mark.parametrize("stop, common", [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
                                          ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"),
                                          ("refusal", "content_filter"), ("pause_turn", "other"), ("new_thing", "other")])
def test_finish_reasons(stop: str, common: str) -> None:
    assert parse_result(message("x", stop=stop), "m").finish_reason == common


def test_stream_events_every_kind() -> None:
    events = [
        ("message_start", {"type": "message_start", "message": {"model": "claude-x", "usage": {"input_tokens": 7, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "abc"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "citations_delta", "citation": {}}}),
        ("brand_new_event", {"type": "brand_new_event"}),
        ("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "noargs", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}}),
        ("message_delta", {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 9, "cache_read_input_tokens": 3}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    chunks = stream(AnthropicProvider, sse(*events), api_key="sk-x")
    result = join_chunks(chunks)
    assert result.content == "Hi" and result.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [("toolu_a", "noargs", {})]  # empty = {}
    usage = result.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) == (10, 9, 3)
    assert chunks[-1].model == "claude-x" and chunks[-1].provider == "anthropic"


# -- construction --------------------------------------------------------------------------------

@pytest.mark.parametrize("alias, resolved", [
    ("opus", "claude-opus-5-5"), ("sonnet", "claude-sonnet-5-5"), ("haiku", "claude-haiku-5-5"),
    ("fable", "claude-fable-5-2"), ("claude-opus-4", "claude-opus-4-20250514"),
    ("claude-haiku-4-5", "claude-haiku-4-5-20251001"), ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet-20241022"),
    ("claude-some-future-model", "claude-some-future-model"),
])
def test_aliases(alias: str, resolved: str) -> None:
    assert provider(model=alias).model_name == resolved


def test_catalog_rows() -> None:
    p = provider(model="sonnet")
    caps = p.capabilities
    assert (caps.max_context_window, caps.max_tokens, caps.supports_vision, caps.supports_function_calling) == (
        1_000_000, 128_000, True, True)
    assert p.model_info is not None and p.model_info.status("2026-12-01") == "active"
    assert provider(model="opus").capabilities.tier is Tier.FLAGSHIP
    assert provider(model="haiku").capabilities.tier is Tier.FAST
    assert p.default_max_tokens == 8192 and provider(model="haiku").default_max_tokens == 8192


@responses.activate
def test_retired_model_refused_before_sending_naming_the_replacement() -> None:
    p = provider(model="claude-sonnet-4-20250514")  # constructing works: the error comes with a call
    for call in (lambda: p.generate_sync("hi"), lambda: list(p.stream_sync("hi"))):
        with pytest.raises(ModelRetiredError) as info:
            call()
        err = info.value
        assert isinstance(err, ModelNotFoundError) and err.failover_ok
        assert (err.retired_on, err.replacement) == ("2026-06-15", "claude-sonnet-4-6")
        assert "claude-sonnet-4-6" in str(err) and "2026-06-15" in str(err)
    assert len(responses.calls) == 0
    health = p.health_check_sync()
    assert not health and "shut down" in str(health.error) and health.detail["lifecycle"] == "retired"
    assert len(responses.calls) == 0
    # a replacement that is itself retired is followed to one still served
    with pytest.raises(ModelRetiredError) as info:
        provider(model="claude-3-5-sonnet-20241022").generate_sync("hi")
    assert info.value.replacement == "claude-sonnet-5-5"


def test_retired_model_is_sent_to_another_server(server: FakeServer) -> None:
    """A proxy or compatible server may still serve a name the vendor retired."""
    seen: list[str] = []

    def route(req: Received, reply: Reply) -> None:
        seen.append(req.json()["model"])
        reply.json(200, anthropic_message("hello"))

    server.route("POST", "/v1/messages", route)
    server.route("GET", "/v1/models", lambda r, w: w.json(200, {"data": [], "has_more": False}))
    p = AnthropicProvider(model="claude-sonnet-4-5", api_key=FAKE_KEY, base_url=server.url)
    assert p.generate_sync("hi").content == "hello"
    assert seen == ["claude-sonnet-4-5-20250929"]
    health = p.health_check_sync()
    assert health and health.detail["lifecycle"] == "retired"


def test_deprecated_model_warns_once_with_its_date(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.warns(ModelDeprecatedWarning, match=r"claude-opus-4-5-20251101 is deprecated.*2027-01-22.*claude-opus-5-5"):
        provider(model="claude-opus-4-5")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        provider(model="claude-opus-4-5-20251101")  # the same model: no second warning


def test_lifecycle_follows_the_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "today", lambda: "2027-01-22")
    p = provider(model="claude-opus-4-5")  # deprecated in the data, past its shutdown date on this day
    with pytest.raises(ModelRetiredError, match="claude-opus-5-5"):
        p.generate_sync("hi")
    monkeypatch.setattr(models, "today", lambda: "2026-06-14")  # the day before its shutdown: still served
    with pytest.warns(ModelDeprecatedWarning, match="shuts it down on 2026-06-15"):
        p = provider(model="claude-sonnet-4")
    assert p.retired_error() is None


def test_key_required_for_anthropic_only(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider()
    assert AnthropicProvider(base_url="http://127.0.0.1:8080/").base_url == "http://127.0.0.1:8080"
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://localhost:9999")
    assert AnthropicProvider().base_url == "http://localhost:9999"


def test_temperature_above_one_rejected() -> None:
    with pytest.raises(ValidationError, match="between 0 and 1"):
        provider(model="claude-opus-5").generate_sync("x", temperature=1.5)


@responses.activate
def test_headers_sent() -> None:
    responses.post(URL, json=message("ok"))
    provider(betas=["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"]).generate_sync("hi")
    h = responses.calls[0].request.headers
    assert h["x-api-key"] == FAKE_KEY and h["anthropic-version"] == "2023-06-01"
    assert h["anthropic-beta"] == "context-1m-2025-08-07,interleaved-thinking-2025-05-14"
    assert "Authorization" not in h


@responses.activate
def test_auth_token_header_and_never_leaked() -> None:
    token = "oauth-token-abcdefghijklmnop"
    responses.post(URL, json={"type": "error", "error": {"type": "authentication_error", "message": f"bad {token}"}},
                   status=401)
    p = AnthropicProvider(auth_token=token, max_retries=0)
    with pytest.raises(AuthenticationError) as info:
        p.generate_sync("hi")
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {token}"
    assert token not in str(info.value) and token not in (info.value.body or "") and token not in repr(vars(p))


# -- cassettes -----------------------------------------------------------------------------------

def test_cassette_generate(cassette: Any) -> None:
    with cassette("anthropic/test_generate.yaml"):
        r = provider(model="claude-sonnet-4-20250514").generate_sync(
            [Message.system("Answer in one word."), Message.user("Capital of France?")], max_tokens=1024, temperature=0.2)
    assert (r.content, r.finish_reason, r.request_id) == ("Paris", "stop", "req_011CVEA3SF7rnb3DuBZytqQa")
    assert r.response_id == "msg_01KozUDYHvRtgs3NLgG7jzN9"
    assert r.usage is not None
    assert (r.usage.input_tokens, r.usage.output_tokens) == (16, 4)


def test_cassette_prefill_stop_sequence_padded_stream(cassette: Any) -> None:
    with cassette("anthropic/test_stream_prefill_stop.yaml"):
        chunks = list(provider(model="claude-haiku-4-5").stream_sync(
            [Message.user("Write a python function called pelican"), Message.assistant("```python")], stop=["```"]))
    assert "".join(c.content for c in chunks) == "\ndef pelican():\n    pass\n"
    assert chunks[-1].usage is not None
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage.output_tokens == 28
    assert chunks[-1].model == "claude-haiku-4-5-20251001"


def test_cassette_text_then_tool(cassette: Any) -> None:
    tools = [{"name": "get_weather", "description": "Get the current weather in a given location",
              "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}]
    with cassette("anthropic/test_stream_text_then_tool.yaml"):
        r = join_chunks(provider(model="claude-sonnet-4-20250514").stream_sync("What is the weather in San Francisco?", tools=tools))
    assert r.content == "Let me check the weather." and r.finish_reason == "tool_calls"
    assert r.response_id is not None and r.response_id.startswith("msg_")  # from message_start
    assert [(c.id, c.arguments) for c in r.tool_calls] == [("toolu_014x5X91kx3fvdhpLvwXZWE2", {"location": "San Francisco, CA"})]
    assert r.usage is not None
    assert (r.usage.input_tokens, r.usage.output_tokens) == (400, 89)


def test_cassette_truncated_stream(cassette: Any) -> None:
    got = []
    with cassette("anthropic/test_stream_truncated.yaml"), pytest.raises(TruncatedStreamError, match="message_stop"):
        for c in provider(model="claude-sonnet-4-20250514").stream_sync("Tell me a story"):
            got.append(c.content)
    assert got == ["Once upon"]


def test_cassette_401(cassette: Any) -> None:
    with cassette("anthropic/test_auth_error.yaml"), pytest.raises(AuthenticationError) as info:
        provider(model="claude-sonnet-4-20250514", max_retries=2).generate_sync("hi")
    assert (info.value.message, info.value.error_type, info.value.request_id) == (
        "invalid x-api-key", "authentication_error", "req_011CAuth")
    assert info.value.retryable is False


def test_cassette_404_model(cassette: Any) -> None:
    with cassette("anthropic/test_model_not_found.yaml"), pytest.raises(ModelNotFoundError) as info:
        provider(model="claude-does-not-exist").generate_sync("hi")
    assert info.value.message == "model: claude-does-not-exist"


# -- error paths -----------------------------------------------------------------------------------

def anthropic_error(type_: str, message: str = "m", **extra: Any) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message, **extra}, "request_id": "req_body"}


@pytest.mark.parametrize("status, type_, cls", [
    (400, "invalid_request_error", BadRequestError), (401, "authentication_error", AuthenticationError),
    (402, "billing_error", PermissionDeniedError), (403, "permission_error", PermissionDeniedError),
    (404, "not_found_error", ModelNotFoundError), (413, "request_too_large", RequestTooLargeError),
    (429, "rate_limit_error", RateLimitError), (500, "api_error", ServerError), (504, "timeout_error", ServerError),
    (529, "overloaded_error", OverloadedError),
])
@responses.activate
def test_status_mapping(status: int, type_: str, cls: type[APIError]) -> None:
    responses.post(URL, json=anthropic_error(type_, "went wrong"), status=status, headers={"request-id": "req_h"})
    with pytest.raises(cls) as info:
        provider().generate_sync("hi")
    assert type(info.value) is cls
    assert (info.value.status, info.value.error_type, info.value.request_id) == (status, type_, "req_h")


@responses.activate
def test_413_from_cloudflare_html() -> None:
    responses.post(URL, body="<html>413 Request Entity Too Large</html>", status=413, content_type="text/html")
    with pytest.raises(RequestTooLargeError, match="Too Large"):
        provider().generate_sync("hi")


@responses.activate
def test_spend_limit_is_quota() -> None:
    responses.post(URL, json=anthropic_error("rate_limit_error", details={"error_code": "enforced_spend_limit_reached"}),
                   status=429)
    with pytest.raises(QuotaExceededError):
        provider().generate_sync("hi")


@responses.activate
def test_529_retried_with_retry_after_then_succeeds() -> None:
    from responses.registries import OrderedRegistry

    with responses.RequestsMock(registry=OrderedRegistry) as rsps:
        rsps.post(URL, json=anthropic_error("overloaded_error"), status=529, headers={"retry-after": "1"})
        rsps.post(URL, json=message("fine"))
        slept: list[float] = []
        r = provider(retry=RetryPolicy(max_retries=2, sleep=slept.append)).generate_sync("hi")
    assert r.content == "fine" and slept == [1.0]


@responses.activate
def test_x_should_retry_false_stops_retries() -> None:
    responses.post(URL, json=anthropic_error("api_error"), status=500, headers={"x-should-retry": "false"})
    with pytest.raises(ServerError):
        provider(retry=RetryPolicy(max_retries=2, sleep=lambda s: None)).generate_sync("hi")
    assert len(responses.calls) == 1


@pytest.mark.parametrize("type_, cls", [("overloaded_error", OverloadedError), ("rate_limit_error", RateLimitError),
                                        ("api_error", ServerError), ("invalid_request_error", BadRequestError)])
@responses.activate
def test_error_event_mid_stream_is_the_right_class(type_: str, cls: type[APIError]) -> None:
    body = text_stream(["Hel"], terminate=False) + (
        f'event: error\ndata: {{"type":"error","error":{{"details":null,"type":"{type_}","message":"Overloaded"}},'
        '"request_id":"req_011Ce3HwQb6vtbs9LQVmh4oe"}\n\n')
    responses.post(URL, body=body, status=200, content_type="text/event-stream")
    got = []
    with pytest.raises(cls) as info:
        for c in provider().stream_sync("hi"):
            got.append(c.content)
    err = info.value
    assert isinstance(err, StreamError) and type(err) is not cls  # both the class and a stream error
    assert (err.status, err.error_type, err.request_id, err.chunks_delivered) == (200, type_, "req_011Ce3HwQb6vtbs9LQVmh4oe", 1)
    assert got == ["Hel"]


@responses.activate
def test_unknown_events_ignored_and_stream_completes() -> None:
    body = text_stream(["a", "b"]).replace("event: ping", "event: future_event")
    responses.post(URL, body=body, status=200, content_type="text/event-stream")
    assert join_chunks(provider().stream_sync("hi")).content == "ab"


def test_gzip_sse_over_a_real_socket(server: FakeServer) -> None:
    body = gzip.compress(text_stream(["Hello", " there"]).encode())

    def route(req: Received, reply: Reply) -> None:
        reply.stream(200, [body[:40], body[40:]], {"Content-Type": "text/event-stream", "Content-Encoding": "gzip"})

    server.route("POST", "/v1/messages", route)
    r = join_chunks(AnthropicProvider(base_url=server.url).stream_sync("hi"))
    assert r.content == "Hello there" and r.finish_reason == "stop"


# -- contract --------------------------------------------------------------------------------------

class TestAnthropicContract(ProviderContract):
    provider_id = "anthropic"

    def make(self, server: FakeServer, **kwargs: Any) -> AnthropicProvider:
        from ..contract import SECRET

        kwargs.setdefault("api_key", SECRET)
        return AnthropicProvider(model="sonnet", base_url=server.url, **kwargs)

    def _serve(self, server: FakeServer, plain: dict[str, Any], sse: str) -> None:
        def route(req: Received, reply: Reply) -> None:
            if req.json().get("stream"):
                raw = sse.encode()
                reply.stream(200, [raw[i:i + 50] for i in range(0, len(raw), 50)], {"Content-Type": "text/event-stream"})
            else:
                reply.json(200, plain, {"request-id": "req_1"})

        server.route("POST", "/v1/messages", route)
        server.route("GET", "/v1/models", lambda r, w: w.json(200, {"data": [{"id": "claude-sonnet-4-20250514"}]}))

    def serve_text(self, server: FakeServer, text: str) -> None:
        words = text.split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        self._serve(server, message(text, usage={"input_tokens": 12, "output_tokens": len(words)}), text_stream(pieces))

    def serve_tool_call(self, server: FakeServer, name: str, arguments: dict[str, Any]) -> None:
        args = json.dumps(arguments)
        plain = message("", content=[{"type": "tool_use", "id": "toolu_1", "name": name, "input": arguments}],
                        stop="tool_use", usage={"input_tokens": 12, "output_tokens": 7})
        sse = "".join([
            ev("message_start", {"type": "message_start", "message": {"model": "claude-sonnet-4-20250514",
                                                                      "usage": {"input_tokens": 12, "output_tokens": 1}}}),
            ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
                "type": "tool_use", "id": "toolu_1", "name": name, "input": {}}}),
            *[ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "input_json_delta", "partial_json": args[i:i + 5]}})
              for i in range(0, len(args), 5)],
            ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}}),
            ev("message_stop", {"type": "message_stop"}),
        ])
        self._serve(server, plain, sse)

    def serve_error(self, server: FakeServer, status: int, message_: str) -> None:
        type_ = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 429: "rate_limit_error", 503: "api_error"}.get(status, "api_error")

        def route(req: Received, reply: Reply) -> None:
            reply.json(status, anthropic_error(type_, message_), {"request-id": "req_err"})

        server.route("POST", "/v1/messages", route)
        server.route("GET", "/v1/models", route)

    def serve_truncated_stream(self, server: FakeServer, text: str) -> None:
        words = text.split(" ")
        self._serve(server, message(text), text_stream([w if i == 0 else " " + w for i, w in enumerate(words)], terminate=False))

    def serve_stream_error(self, server: FakeServer, text: str) -> None:
        sse = text_stream([text], terminate=False) + ev("error", anthropic_error("overloaded_error", "Overloaded"))
        self._serve(server, message(text), sse)
