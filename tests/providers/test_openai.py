"""OpenAIProvider: translation, cassettes, every error path, and the provider contract."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import requests
import responses
from responses.registries import OrderedRegistry

from mirror_providers import models
from mirror_providers.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    ConnectError,
    ContextLengthExceededError,
    EndpointNotFoundError,
    InvalidResponseError,
    ModelNotFoundError,
    ModelRetiredError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    StreamError,
    TruncatedStreamError,
    ValidationError,
)
from mirror_providers.models import ModelDeprecatedWarning
from mirror_providers.openai import OpenAIProvider
from mirror_providers.providers.openai import build_payload, parse_result
from mirror_providers.request import build_request
from mirror_providers.retry import RetryPolicy
from mirror_providers.types import ContentPart, Message, StreamChunk, Tier, ToolCall, join_chunks

from ..conftest import FAKE_KEY
from ..contract import ProviderContract
from ..server import FakeServer, Received, Reply, openai_completion, openai_sse
from .replay import answer, stream
from .replay import sse as encode_sse

URL = "https://api.openai.com/v1/chat/completions"


def provider(**kwargs: Any) -> OpenAIProvider:
    """A Chat Completions provider (the default model would take the Responses wire on api.openai.com)."""
    kwargs.setdefault("api_key", FAKE_KEY)
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("api", "chat")
    return OpenAIProvider(**kwargs)


# -- translation (pure) ------------------------------------------------------------------------

def test_payload_basic_options() -> None:
    req = build_request("Capital of France?", {"system": "One word.", "max_tokens": 16, "temperature": 0.2,
                                               "top_p": 1.0, "stop": "\n\n"})
    assert build_payload(req, "gpt-4o-mini", stream=False) == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "One word."},
                     {"role": "user", "content": "Capital of France?"}],
        "max_tokens": 16, "temperature": 0.2, "top_p": 1.0, "stop": ["\n\n"],
    }


def test_payload_stream_asks_for_usage() -> None:
    body = build_payload(build_request("hi", {}), "gpt-4o", stream=True)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_payload_reasoning_models_use_max_completion_tokens() -> None:
    body = build_payload(build_request("hi", {"max_tokens": 50}), "o3-mini", stream=False)
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body


def test_payload_tools_choice_and_extra() -> None:
    req = build_request("weather?", {
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                                                    "parameters": {"type": "object", "properties": {}}}}],
        "tool_choice": "get_weather", "parallel_tool_calls": False, "extra": {"seed": 7},
    })
    body = build_payload(req, "gpt-4o", stream=False)
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "d", "parameters": {"type": "object", "properties": {}}}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False and body["seed"] == 7


def test_payload_vision_parts_and_tool_round_trip() -> None:
    call = ToolCall("call_1", "get_weather", {"city": "Paris"}, '{"city":"Paris"}')
    req = build_request([
        Message.user((ContentPart.from_text("What is this?"),
                      ContentPart.image_url("https://example.com/cat.png", detail="low"),
                      ContentPart.image_bytes(b"\x89PNG", "image/png"))),
        Message.assistant(tool_calls=(call,)),
        Message.tool_result("call_1", "22C"),
    ], {})
    msgs = build_payload(req, "gpt-4o", stream=False)["messages"]
    assert msgs[0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}},
    ]
    assert msgs[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    assert msgs[2] == {"role": "tool", "content": "22C", "tool_call_id": "call_1"}


def test_parse_result_protocols_example() -> None:
    data = {
        "id": "chatcmpl-9Xtj47S36iWNBARmBocBaifGBbjtw", "object": "chat.completion", "created": 1717866062,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris", "refusal": None,
                                             "annotations": []}, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 21, "completion_tokens": 2, "total_tokens": 23,
                  "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0}},
        "service_tier": "default", "system_fingerprint": "fp_d0469e1700",
    }
    r = answer(OpenAIProvider, data, {"x-request-id": "req_1"}, api_key="sk-x", api="chat")
    assert (r.content, r.model, r.finish_reason, r.request_id) == ("Paris", "gpt-4o-mini-2024-07-18", "stop", "req_1")
    assert r.provider == "openai" and r.latency_s > 0
    assert r.usage is not None
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (21, 2, 23)
    assert r.usage.cached_input_tokens == 3 and r.usage.prompt_tokens == 21
    assert r.raw == data


def test_parse_result_tool_calls_with_invalid_json_kept_raw() -> None:
    data = {"model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
            {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{broken"}}]}}]}
    r = parse_result(data, "m")
    assert r.content == "" and r.finish_reason == "tool_calls"
    assert r.tool_calls[0].arguments == {"x": 1}
    assert r.tool_calls[1].arguments is None and r.tool_calls[1].arguments_json == "{broken"


# A real recording's fragments, keyed by index (docs/protocols.md §2.6).
TOOL_FRAGMENTS: list[dict[str, Any]] = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_ZR5U", "type": "function", "function": {"name": "get_capital", "arguments": ""}}],
        "refusal": None}, "finish_reason": None}]},
    *[{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]},
                    "finish_reason": None}]} for piece in ['{"', "country", '":"', "UK", '"}']],
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
]


def openai_stream(frames: list[dict[str, Any]]) -> list[StreamChunk]:
    return stream(OpenAIProvider, encode_sse(*frames) + b"data: [DONE]\n\n", api_key="sk-x", model="m")


def test_stream_tool_fragments_reassembled() -> None:
    result = join_chunks(openai_stream(TOOL_FRAGMENTS))
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [("call_ZR5U", "get_capital", {"country": "UK"})]
    assert result.finish_reason == "tool_calls"


def test_stream_whole_call_in_one_fragment_with_repeated_ids() -> None:
    # OpenRouter/Kimi style (docs/protocols.md §2.6): whole call at once, id repeated, usage with choices.
    frames: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
            {"index": 0, "id": "0", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]}}]},
        {"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
            {"index": 1, "id": "1", "function": {"name": "g", "arguments": "{}"}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
         "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
    ]
    result = join_chunks(openai_stream(frames))
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [("0", "f", {"a": 1}), ("1", "g", {})]
    assert result.usage is not None and result.usage.total_tokens == 3


def test_stream_tool_fragments_without_index() -> None:
    frames = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{"}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"function": {"arguments": "}"}}]}}]},
    ]
    result = join_chunks(openai_stream(frames))
    assert [(c.id, c.arguments) for c in result.tool_calls] == [("c1", {})]


# -- construction ------------------------------------------------------------------------------

def test_key_required_for_openai_only(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        OpenAIProvider()
    assert OpenAIProvider(base_url="http://127.0.0.1:8000/v1/").base_url == "http://127.0.0.1:8000/v1"
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:1234/v1")
    p = OpenAIProvider(model="my-local-model")
    assert p.base_url == "http://localhost:1234/v1" and p.model_name == "my-local-model"
    assert p.capabilities.tier is Tier.LOCAL and not p.capabilities.supports_vision


def test_catalog_limits() -> None:
    caps = provider(model="gpt-6.2-astra").capabilities
    assert (caps.max_context_window, caps.max_tokens, caps.supports_vision, caps.tier) == (
        1_050_000, 128_000, True, Tier.FLAGSHIP)
    assert not caps.supports_function_calling  # its tools need the Responses API
    assert provider().capabilities.supports_function_calling and provider().model_name == "gpt-6-luna"
    assert provider(model="gpt-5.6").model_name == "gpt-5.6-sol"  # OpenAI's short name
    with pytest.warns(ModelDeprecatedWarning):
        p = provider(model="gpt-4o-mini-2024-07-18")
    assert p.model_name == "gpt-4o-mini-2024-07-18"  # a dated snapshot is sent as given
    assert p.capabilities.max_context_window == 128_000


def test_known_model_limits_checked_before_sending() -> None:
    with pytest.raises(ValidationError, match="output limit"):
        provider(model="gpt-6-sol").generate_sync("hi", max_tokens=200_000)
    with pytest.raises(ValidationError, match="images"):
        provider(model="gpt-3.5-turbo", base_url="http://127.0.0.1:9/v1").generate_sync(
            [Message.user((ContentPart.image_url("https://x/a.png"),))])
    with pytest.raises(ValidationError, match="context window"):
        provider(model="gpt-4", base_url="http://127.0.0.1:9/v1").generate_sync("word " * 20_000)


@pytest.mark.parametrize("model, retired_on, replacement", [
    ("gpt-3.5-turbo", "2026-10-23", "gpt-5.6-terra"), ("gpt-4-0613", "2026-10-23", "gpt-5.6-sol"),
    ("gpt-4-turbo", "2026-10-23", "gpt-5.6-sol"), ("o1-mini", "2025-10-27", None),
])
def test_retired_models_refused_before_sending(model: str, retired_on: str, replacement: str | None) -> None:
    p = provider(model=model)
    with pytest.raises(ModelRetiredError) as info:
        p.generate_sync("hi")
    assert (info.value.retired_on, info.value.replacement) == (retired_on, replacement)
    assert (replacement or "named no replacement") in str(info.value)


def test_models_shut_down_after_this_release_are_refused_from_that_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "today", lambda: "2027-01-14")
    with pytest.raises(ModelRetiredError, match="gpt-6-luna"):
        provider(model="gpt-4o-mini").generate_sync("hi")


def test_repr_shows_id_model_url_not_key() -> None:
    p = provider(model="gpt-4o")
    assert repr(p) == "OpenAIProvider(provider='openai', model='gpt-4o', base_url='https://api.openai.com/v1')"
    assert FAKE_KEY not in repr(p) and FAKE_KEY[:8] not in repr(vars(p))


# -- cassettes (replay-only) -------------------------------------------------------------------

def test_cassette_generate(cassette: Any) -> None:
    with cassette("openai/test_generate.yaml"):
        r = provider(model="gpt-4o-mini").generate_sync(
            [Message.system("Answer in one word."), Message.user("Capital of France?")], max_tokens=16)
    assert r.content == "Paris" and r.finish_reason == "stop"
    assert r.model == "gpt-4o-mini-2024-07-18" and r.request_id and r.request_id.startswith("req_")
    assert r.response_id == "chatcmpl-9Xtj47S36iWNBARmBocBaifGBbjtw"
    assert r.usage is not None and (r.usage.input_tokens, r.usage.output_tokens) == (21, 2)


def test_cassette_stream(cassette: Any) -> None:
    with cassette("openai/test_stream.yaml"):
        chunks = list(provider(model="gpt-4o-mini").stream_sync("Capital of France?", max_tokens=16))
    assert [c.content for c in chunks] == ["Par", "is", ""]
    assert chunks[-1].usage is not None
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage.total_tokens == 23
    assert chunks[-1].response_id == join_chunks(chunks).response_id == "chatcmpl-1"


def test_cassette_stream_tool_call(cassette: Any) -> None:
    tools = [{"type": "function", "function": {"name": "get_capital", "description": "Capital of a country",
                                               "parameters": {"type": "object", "properties": {"country": {"type": "string"}}}}}]
    with cassette("openai/test_stream_tool_call.yaml"):
        result = join_chunks(provider(model="gpt-4o-mini").stream_sync("Capital of the UK?", tools=tools))
    assert result.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("get_capital", {"country": "UK"})]


def test_cassette_auth_error_masks_key(cassette: Any) -> None:
    with cassette("openai/test_auth_error.yaml"), pytest.raises(AuthenticationError) as info:
        provider(model="gpt-4o-mini").generate_sync("hi")
    err = info.value
    assert err.status == 401 and err.error_code == "invalid_api_key" and err.request_id
    assert "****" not in str(err) and "[redacted]" in str(err)


def test_cassette_health(cassette: Any) -> None:
    with cassette("openai/test_health.yaml"):
        assert provider(model="gpt-4o-mini").health_check_sync().healthy


# -- error paths with `responses` --------------------------------------------------------------

def err_body(message: str, type_: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


@pytest.mark.parametrize("status, body, cls", [
    (400, err_body("bad"), BadRequestError),
    (400, err_body("too long", code="context_length_exceeded"), ContextLengthExceededError),
    (401, err_body("nope", code="invalid_api_key"), AuthenticationError),
    (403, err_body("region", "permission_error"), PermissionDeniedError),
    (404, err_body("The model `x` does not exist", code="model_not_found"), ModelNotFoundError),
    (408, err_body("timeout", "server_error"), ServerError),
    (409, err_body("conflict"), ConflictError),
    (422, err_body("unprocessable"), BadRequestError),
    (429, err_body("slow down", "requests", "rate_limit_exceeded"), RateLimitError),
    (429, err_body("quota", "insufficient_quota", "insufficient_quota"), QuotaExceededError),
    (500, err_body("oops", "server_error"), ServerError),
    (503, err_body("overloaded", "server_error"), ServerError),
])
@responses.activate
def test_status_mapping(status: int, body: dict[str, Any], cls: type[APIError]) -> None:
    responses.post(URL, json=body, status=status, headers={"x-request-id": "req_abc"})
    with pytest.raises(cls) as info:
        provider().generate_sync("hi")
    err = info.value
    assert type(err) is cls
    assert (err.status, err.request_id, err.provider, err.model) == (status, "req_abc", "openai", "gpt-6-luna")
    assert err.message == body["error"]["message"]
    assert err.body and json.loads(err.body) == body


@responses.activate
def test_quota_is_not_retryable_but_rate_limit_is() -> None:
    assert RateLimitError.retryable and not QuotaExceededError.retryable and QuotaExceededError.failover_ok


@pytest.mark.parametrize("headers, expected", [
    ({"retry-after-ms": "1500"}, 1.5),
    ({"retry-after": "7"}, 7.0),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past: no wait
    ({}, None),
])
@responses.activate
def test_rate_limit_retry_after_forms(headers: dict[str, str], expected: float | None) -> None:
    responses.post(URL, json=err_body("slow", "requests", "rate_limit_exceeded"), status=429, headers=headers)
    with pytest.raises(RateLimitError) as info:
        provider().generate_sync("hi")
    assert info.value.retry_after == expected


@responses.activate
def test_rate_limit_retry_after_future_http_date() -> None:
    import time
    from email.utils import formatdate

    responses.post(URL, json=err_body("slow"), status=429, headers={"retry-after": formatdate(time.time() + 120, usegmt=True)})
    with pytest.raises(RateLimitError) as info:
        provider().generate_sync("hi")
    assert info.value.retry_after is not None and 100 < info.value.retry_after <= 120


@responses.activate
def test_502_html_page() -> None:
    responses.post(URL, body="<html><body><h1>502 Bad Gateway</h1></body></html>", status=502,
                   content_type="text/html")
    with pytest.raises(ServerError) as info:
        provider().generate_sync("hi")
    assert info.value.status == 502 and "502 Bad Gateway" in str(info.value)


@responses.activate
@pytest.mark.parametrize("body, content_type", [
    ("<html>Not Found</html>", "text/html"),  # a web server, not the API
    ('{"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}', "application/json"),  # llama.cpp
    ('{"error": {"message": "Invalid URL (POST /v2/chat/completions)", "type": "invalid_request_error", "code": null}}',
     "application/json"),  # OpenAI itself, for a path it does not serve
])
def test_a_404_that_does_not_name_the_model_is_the_endpoints(body: str, content_type: str) -> None:
    responses.post(URL, body=body, status=404, content_type=content_type)
    with pytest.raises(NotFoundError) as info:
        provider().generate_sync("hi")
    assert type(info.value) is EndpointNotFoundError and not isinstance(info.value, ModelNotFoundError)
    assert f"{URL} answered 404" in str(info.value) and "base URL ends in /v1" in str(info.value)


@responses.activate
def test_a_404_that_names_the_model_is_the_models() -> None:
    responses.post(URL, status=404, json={"error": {"message": "The model `gpt-x` does not exist or you do not have "
                                                               "access to it.", "type": "invalid_request_error",
                                                    "code": "model_not_found"}})
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        provider().generate_sync("hi")


@responses.activate
def test_malformed_json_success_body() -> None:
    responses.post(URL, body='{"choices": [', status=200, content_type="application/json")
    with pytest.raises(InvalidResponseError, match="not valid JSON"):
        provider().generate_sync("hi")


@responses.activate
def test_success_body_without_choices() -> None:
    responses.post(URL, json={"object": "chat.completion"}, status=200)
    with pytest.raises(InvalidResponseError, match="expected fields"):
        provider().generate_sync("hi")


@responses.activate
def test_empty_body() -> None:
    responses.post(URL, body="", status=200)
    with pytest.raises(InvalidResponseError):
        provider().generate_sync("hi")
    responses.post(URL, body="", status=500)
    with pytest.raises(ServerError, match="empty body"):
        provider().generate_sync("hi")


@responses.activate
def test_connection_error() -> None:
    responses.post(URL, body=requests.exceptions.ConnectionError("refused"))
    with pytest.raises(ConnectError) as info:
        provider().generate_sync("hi")
    assert info.value.provider == "openai" and info.value.model == "gpt-6-luna"


def sse(*frames: Any) -> str:
    return "".join(f"data: {f if isinstance(f, str) else json.dumps(f)}\n\n" for f in frames)


def delta(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


@responses.activate
def test_stream_cut_before_done() -> None:
    responses.post(URL, body=sse(delta("Hel"), delta("lo")), status=200, content_type="text/event-stream")
    got: list[str] = []
    with pytest.raises(TruncatedStreamError, match="without \\[DONE\\]") as info:
        for c in provider().stream_sync("hi"):
            got.append(c.content)
    assert got == ["Hel", "lo"] and info.value.chunks_delivered == 2


@responses.activate
def test_error_object_mid_stream() -> None:
    error = {"error": {"message": "The server experienced an error while processing your request.",
                       "type": "server_error", "param": None, "code": None}}
    responses.post(URL, body=sse(delta("Hel"), error, "[DONE]"), status=200, content_type="text/event-stream")
    with pytest.raises(ServerError) as info:
        list(provider().stream_sync("hi"))
    err = info.value
    assert isinstance(err, StreamError) and err.status == 200 and err.error_type == "server_error"
    assert err.chunks_delivered == 1


@responses.activate
def test_malformed_frame_mid_stream() -> None:
    responses.post(URL, body="data: {oops\n\n", status=200, content_type="text/event-stream")
    with pytest.raises(StreamError, match="malformed JSON") as info:
        list(provider().stream_sync("hi"))
    assert info.value.provider == "openai"


@responses.activate
def test_stream_error_status_before_body() -> None:
    responses.post(URL, json=err_body("slow", "requests", "rate_limit_exceeded"), status=429,
                   headers={"retry-after": "2"})
    with pytest.raises(RateLimitError) as info:
        list(provider().stream_sync("hi"))
    assert info.value.retry_after == 2.0


@responses.activate(registry=OrderedRegistry)
def test_retries_then_succeeds_without_sleeping() -> None:
    responses.post(URL, json=err_body("busy", "server_error"), status=503)
    responses.post(URL, json=err_body("slow"), status=429, headers={"retry-after-ms": "250"})
    responses.post(URL, json=openai_completion("ok"), status=200)
    slept: list[float] = []
    p = provider(retry=RetryPolicy(max_retries=2, sleep=slept.append, random=lambda: 0.0))
    assert p.generate_sync("hi").content == "ok"
    assert slept == [0.5, 0.25]  # backoff, then the server's retry-after-ms


@responses.activate(registry=OrderedRegistry)
def test_retry_after_above_cap_raises_at_once() -> None:
    responses.post(URL, json=err_body("slow"), status=429, headers={"retry-after": "3600"})
    slept: list[float] = []
    p = provider(retry=RetryPolicy(max_retries=2, sleep=slept.append))
    with pytest.raises(RateLimitError) as info:
        p.generate_sync("hi")
    assert info.value.retry_after == 3600 and slept == []


@responses.activate
def test_x_should_retry_false_is_obeyed() -> None:
    responses.post(URL, json=err_body("no"), status=500, headers={"x-should-retry": "false"})
    slept: list[float] = []
    with pytest.raises(ServerError) as info:
        provider(retry=RetryPolicy(max_retries=2, sleep=slept.append)).generate_sync("hi")
    assert slept == [] and info.value.retryable is False
    assert len(responses.calls) == 1


@responses.activate
def test_headers_sent() -> None:
    responses.post(URL, json=openai_completion("ok"))
    provider(organization="org-1", project="proj-1").generate_sync("hi")
    headers = responses.calls[0].request.headers
    assert headers["Authorization"] == f"Bearer {FAKE_KEY}"
    assert headers["OpenAI-Organization"] == "org-1" and headers["OpenAI-Project"] == "proj-1"
    assert headers["Content-Type"] == "application/json"


def test_n_above_one_rejected() -> None:
    with pytest.raises(ValidationError, match="n=2"):
        provider().generate_sync("hi", extra={"n": 2})


def test_no_key_in_logs_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with responses.RequestsMock() as rsps:
        rsps.post(URL, json=err_body(f"Incorrect API key provided: {FAKE_KEY[:6]}****wxyz.", code="invalid_api_key"),
                  status=401)
        with pytest.raises(AuthenticationError) as info:
            provider().generate_sync("hi")
    assert FAKE_KEY[:10] not in caplog.text and FAKE_KEY[:6] not in str(info.value)


# -- the contract, over real loopback sockets --------------------------------------------------

def _error_route(status: int, message: str):  # type: ignore[no-untyped-def]
    type_ = {401: "invalid_request_error", 429: "requests"}.get(status, "server_error")
    code = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}.get(status)

    def route(req: Received, reply: Reply) -> None:
        reply.json(status, err_body(message, type_, code), {"x-request-id": "req_err"})

    return route


class TestOpenAIContract(ProviderContract):
    provider_id = "openai"

    def make(self, server: FakeServer, **kwargs: Any) -> OpenAIProvider:
        from ..contract import SECRET

        kwargs.setdefault("api_key", SECRET)
        return OpenAIProvider(model="gpt-4o-mini", base_url=server.url + "/v1", **kwargs)

    def _chat(self, server: FakeServer, plain: dict[str, Any], frames: list[bytes]) -> None:
        def route(req: Received, reply: Reply) -> None:
            if req.json().get("stream"):
                reply.stream(200, frames, {"Content-Type": "text/event-stream"})
            else:
                reply.json(200, plain, {"x-request-id": "req_1"})

        server.route("POST", "/v1/chat/completions", route)
        server.route("GET", "/v1/models", lambda r, w: w.json(200, {"data": [{"id": "gpt-4o-mini"}]}))

    def serve_text(self, server: FakeServer, text: str) -> None:
        self._chat(server, openai_completion(text), openai_sse(text))

    def serve_tool_call(self, server: FakeServer, name: str, arguments: dict[str, Any]) -> None:
        args = json.dumps(arguments)
        plain = {"model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}]}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}
        frames = [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}]}}]},
            *[{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": args[i:i + 4]}}]}}]}
              for i in range(0, len(args), 4)],
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}},
        ]
        self._chat(server, plain, [sse(f).encode() for f in frames] + [b"data: [DONE]\n\n"])

    def serve_error(self, server: FakeServer, status: int, message: str) -> None:
        server.route("POST", "/v1/chat/completions", _error_route(status, message))
        server.route("GET", "/v1/models", _error_route(status, message))

    def serve_truncated_stream(self, server: FakeServer, text: str) -> None:
        words = text.split(" ")
        frames = [sse(delta(w if i == 0 else " " + w)).encode() for i, w in enumerate(words)]
        self._chat(server, openai_completion(text), frames)

    def serve_stream_error(self, server: FakeServer, text: str) -> None:
        frames = [sse(delta(text)).encode(), sse(err_body("boom", "server_error")).encode(), b"data: [DONE]\n\n"]
        self._chat(server, openai_completion(text), frames)


@responses.activate
def test_per_call_retry_override() -> None:
    responses.post(URL, json=err_body("busy", "server_error"), status=503)
    slept: list[float] = []
    p = provider(retry=RetryPolicy(max_retries=2, sleep=slept.append))
    with pytest.raises(ServerError):
        p.generate_sync("hi", max_retries=0)
    assert len(responses.calls) == 1
    with pytest.raises(ServerError):  # a provider without retries, asked for one on this call
        provider(retry=RetryPolicy(max_retries=0, sleep=slept.append)).generate_sync("hi", max_retries=1)
    assert len(responses.calls) == 3 and len(slept) == 1
    with pytest.raises(ServerError):
        list(p.stream_sync("hi", max_retries=1))
    assert len(responses.calls) == 5 and len(slept) == 2
    with pytest.raises(ValidationError, match="max_retries"):
        p.generate_sync("hi", max_retries=-1)
