"""count_tokens_sync (issue 20): Anthropic's count endpoint on a real socket, OpenAI's Responses
count, llama.cpp's tokenizer, the estimate everywhere else, pools, and the errors of each."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from mirror_providers import TokenCount
from mirror_providers.embedded import LocalProvider
from mirror_providers.errors import (
    AuthenticationError,
    InvalidResponseError,
    ModelNotFoundError,
    RateLimitError,
    ValidationError,
)
from mirror_providers.pooling import FallbackChain
from mirror_providers.providers.anthropic import AnthropicProvider
from mirror_providers.providers.ollama import OllamaProvider
from mirror_providers.providers.openai import OpenAIProvider
from mirror_providers.request import GenerateRequest, build_request
from mirror_providers.retry import RetryPolicy
from mirror_providers.transport import HttpRequest, HttpResponse, MockTransport
from mirror_providers.types import ContentPart, Message, Tool
from tests.fakes import Clock, Fake
from tests.server import FakeServer, Received, Reply

WEATHER = Tool("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]})
ANSWER = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-5-5",
          "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
          "usage": {"input_tokens": 12, "output_tokens": 1}}


def anthropic_server(server: FakeServer, count: Any = None, *, statuses: list[int] | None = None,
                     headers: dict[str, str] | None = None) -> None:
    """/v1/messages answers ANSWER; /v1/messages/count_tokens answers each of ``statuses`` once
    (with an Anthropic error body), then 200 ``count``."""
    pending = list(statuses or [])

    def count_route(req: Received, reply: Reply) -> None:
        if pending:
            status = pending.pop(0)
            kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error"}[status]
            reply.json(status, {"type": "error", "error": {"type": kind, "message": f"{kind} says no"},
                                "request_id": "req_count"}, headers)
            return
        reply.json(200, {"input_tokens": 671} if count is None else count)

    server.route("POST", "/v1/messages/count_tokens", count_route)
    server.route("POST", "/v1/messages", lambda req, reply: reply.json(200, ANSWER))


def refuse(seen: list[HttpRequest]) -> MockTransport:
    """A transport that fails the test for any request it is given (kept in ``seen``)."""
    def handler(request: HttpRequest) -> HttpResponse:
        seen.append(request)
        raise AssertionError(f"nothing should be sent, got {request.method} {request.url}")
    return MockTransport(handler)


def sent(server: FakeServer, path: str) -> list[dict[str, Any]]:
    return [r.json() for r in server.received if r.path == path]


# -- Anthropic -------------------------------------------------------------------------------------

def test_anthropic_counts_the_body_generate_would_send(server: FakeServer) -> None:
    anthropic_server(server)
    llm = AnthropicProvider("claude-sonnet-5-5", api_key="sk-test-key", base_url=server.url, max_retries=0)
    prompt = [Message.system("Answer in French."), Message.user("What is the weather in Paris?")]
    options: dict[str, Any] = {"tools": [WEATHER], "parallel_tool_calls": False, "stop": ["END"],
                               "max_tokens": 300}
    count = llm.count_tokens_sync(prompt, **options)
    assert count == TokenCount(671, exact=True, source="anthropic count_tokens", provider="anthropic",
                               model="claude-sonnet-5-5")
    llm.generate_sync(prompt, **options)
    (counted,), (generated,) = sent(server, "/v1/messages/count_tokens"), sent(server, "/v1/messages")
    # The same input: model, messages, system, tools, tool_choice...
    assert counted == {k: v for k, v in generated.items()
                       if k not in ("max_tokens", "stop_sequences", "stream")}
    assert counted["system"] == "Answer in French." and counted["tools"][0]["name"] == "get_weather"
    assert counted["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    # ...and none of the generation-only fields the endpoint refuses.
    assert "max_tokens" not in counted and "stop_sequences" not in counted and "stream" not in counted
    assert {"max_tokens", "stop_sequences"} <= set(generated)
    request = next(r for r in server.received if r.path == "/v1/messages/count_tokens")
    assert request.headers["x-api-key"] == "sk-test-key" and request.headers["anthropic-version"] == "2023-06-01"


def test_anthropic_counts_thinking_and_documents_too(server: FakeServer) -> None:
    anthropic_server(server)
    llm = AnthropicProvider("claude-sonnet-5-5", api_key="sk-test-key", base_url=server.url, max_retries=0)
    pdf = ContentPart.document_bytes(b"%PDF-1.7\n1 0 obj << /Type /Page >> endobj\n%%EOF\n", title="report")
    llm.count_tokens_sync([Message.user((pdf, ContentPart.from_text("Summarise.")))], reasoning="high",
                          cache="5m")
    (counted,) = sent(server, "/v1/messages/count_tokens")
    assert counted["thinking"]["type"] in ("adaptive", "enabled") and counted["cache_control"]["type"] == "ephemeral"
    assert counted["messages"][0]["content"][0]["type"] == "document"


def test_anthropic_rate_limit_is_retried_with_the_injected_sleep(server: FakeServer) -> None:
    anthropic_server(server, statuses=[429, 429], headers={"retry-after": "2"})
    slept: list[float] = []
    llm = AnthropicProvider("claude-sonnet-5-5", api_key="sk-test-key", base_url=server.url,
                            retry=RetryPolicy(max_retries=2, sleep=slept.append))
    assert llm.count_tokens_sync("hi").input_tokens == 671
    assert slept == [2.0, 2.0]  # Retry-After honoured, and no real sleep
    assert len(sent(server, "/v1/messages/count_tokens")) == 3


def test_anthropic_errors_are_typed_and_not_counted_as_generations(server: FakeServer) -> None:
    anthropic_server(server, statuses=[429])
    llm = AnthropicProvider("claude-sonnet-5-5", api_key="sk-test-key", base_url=server.url,
                            retry=RetryPolicy(max_retries=0, sleep=lambda s: None))
    with pytest.raises(RateLimitError) as caught:
        llm.count_tokens_sync("hi")
    assert caught.value.status == 429 and caught.value.request_id == "req_count"
    assert caught.value.provider == "anthropic"
    anthropic_server(server, statuses=[401])
    with pytest.raises(AuthenticationError, match="authentication_error says no"):
        llm.count_tokens_sync("hi")
    anthropic_server(server, statuses=[404])
    with pytest.raises(ModelNotFoundError):
        llm.count_tokens_sync("hi")
    assert llm.get_stats().requests == 0


def test_a_count_past_the_deadline_is_not_waited_for(server: FakeServer) -> None:
    anthropic_server(server, statuses=[429], headers={"retry-after": "30"})
    slept: list[float] = []
    llm = AnthropicProvider("claude-sonnet-5-5", api_key="sk-test-key", base_url=server.url,
                            retry=RetryPolicy(max_retries=3, sleep=slept.append))
    with pytest.raises(RateLimitError):
        llm.count_tokens_sync("hi", deadline_s=5)  # the wait would end after the deadline
    assert slept == []


@pytest.mark.parametrize("answer", [{"input_tokens": "12"}, {"input_tokens": -1}, {"tokens": 3}, [12]])
def test_a_count_answer_of_another_shape_is_an_invalid_response(server: FakeServer, answer: Any) -> None:
    anthropic_server(server, answer)
    llm = AnthropicProvider("claude-sonnet-5-5", api_key="sk-test-key", base_url=server.url, max_retries=0)
    with pytest.raises(InvalidResponseError, match="token count"):
        llm.count_tokens_sync("hi")


def test_input_is_checked_before_anything_is_sent(server: FakeServer) -> None:
    anthropic_server(server)
    llm = AnthropicProvider("claude-sonnet-5-5", api_key="sk-test-key", base_url=server.url, max_retries=0)
    with pytest.raises(ValidationError):
        llm.count_tokens_sync("hi", temperature=1.5)
    with pytest.raises(ValidationError):
        llm.count_tokens_sync("")
    with pytest.raises(ValidationError):
        llm.count_tokens_sync("hi", bogus=1)  # type: ignore[call-arg]
    assert server.received == []


def test_the_awaitable_form_gives_the_same_count(server: FakeServer) -> None:
    anthropic_server(server)
    llm = AnthropicProvider("claude-sonnet-5-5", api_key="sk-test-key", base_url=server.url, max_retries=0)
    assert asyncio.run(llm.count_tokens("hi", system="s")) == llm.count_tokens_sync("hi", system="s")


# -- OpenAI ----------------------------------------------------------------------------------------

def test_openai_chat_completions_estimates_and_sends_nothing() -> None:
    seen: list[HttpRequest] = []
    llm = OpenAIProvider("gpt-4o-mini", api_key="sk-test-key", transport=refuse(seen))
    count = llm.count_tokens_sync("Capital of France?", system="Be terse.")
    assert count.exact is False and count.source == "estimate"
    assert count.provider == "openai" and count.model == "gpt-4o-mini"
    assert count.input_tokens == build_request("Capital of France?", {"system": "Be terse."}).estimated_input_tokens()
    assert seen == []


def test_openai_responses_asks_input_tokens_with_the_create_body() -> None:
    seen: list[HttpRequest] = []

    def handler(request: HttpRequest) -> HttpResponse:
        seen.append(request)
        body = {"object": "response.input_tokens", "input_tokens": 16}
        return HttpResponse(200, {"content-type": "application/json"}, json.dumps(body).encode())

    llm = OpenAIProvider("gpt-6-luna", api_key="sk-test-key", transport=MockTransport(handler))
    assert llm.api == "responses"
    count = llm.count_tokens_sync("Capital of France?", system="Be terse.", tools=[WEATHER], max_tokens=50)
    assert count == TokenCount(16, exact=True, source="openai responses/input_tokens", provider="openai",
                               model="gpt-6-luna")
    (request,) = seen
    assert request.method == "POST" and request.url == "https://api.openai.com/v1/responses/input_tokens"
    body = json.loads(request.body or b"")
    assert body["model"] == "gpt-6-luna" and body["input"][0] == {"role": "developer", "content": "Be terse."}
    assert body["tools"][0]["name"] == "get_weather"
    assert not {"max_output_tokens", "stream", "store", "include"} & set(body)


def test_the_estimate_grows_with_the_prompt() -> None:
    llm = OpenAIProvider("gpt-4o-mini", api_key="sk-test-key")
    counts = [llm.count_tokens_sync("word " * n).input_tokens for n in (1, 10, 100, 1000)]
    assert counts == sorted(counts) and len(set(counts)) == 4
    assert counts[-1] >= 5000 / 4  # four characters a token at most
    longer_history = llm.count_tokens_sync([Message.user("hi"), Message.assistant("hello"), Message.user("hi")])
    assert longer_history.input_tokens > llm.count_tokens_sync("hi").input_tokens


def test_the_estimate_counts_tools_images_and_documents() -> None:
    llm = OpenAIProvider("gpt-4o", api_key="sk-test-key")
    text = llm.count_tokens_sync("Describe.").input_tokens
    with_tools = llm.count_tokens_sync("Describe.", tools=[WEATHER]).input_tokens
    assert with_tools - text >= len(json.dumps(WEATHER.parameters)) // 4
    image = ContentPart.image_bytes(b"\x89PNG fake", "image/png")
    with_image = llm.count_tokens_sync([Message.user((image, ContentPart.from_text("Describe.")))]).input_tokens
    low = ContentPart.image_bytes(b"\x89PNG fake", "image/png", detail="low")
    with_low = llm.count_tokens_sync([Message.user((low, ContentPart.from_text("Describe.")))]).input_tokens
    assert with_image - text == 1600 and with_low - text == 85
    pages = b"".join(b"%d 0 obj << /Type /Page /Parent 9 0 R >> endobj\n" % i for i in range(3))
    pdf = b"%PDF-1.7\n9 0 obj << /Type /Pages /Count 3 >> endobj\n" + pages + b"%%EOF\n"
    doc = ContentPart(type="document", data=base64.b64encode(pdf).decode(), media_type="application/pdf")
    request = GenerateRequest(messages=(Message.user((doc, ContentPart.from_text("Describe."))),))
    assert request.estimated_input_tokens() - build_request("Describe.", {}).estimated_input_tokens() == 3 * 3000
    plain = ContentPart.document_text("x" * 400)
    request = GenerateRequest(messages=(Message.user((plain, ContentPart.from_text("Describe."))),))
    assert request.estimated_input_tokens() - build_request("Describe.", {}).estimated_input_tokens() == 100


def test_ollama_estimates_without_loading_the_model() -> None:
    seen: list[HttpRequest] = []
    llm = OllamaProvider("llama3.2", transport=refuse(seen))
    count = llm.count_tokens_sync("Why is the sky blue?")
    assert count.exact is False and count.source == "estimate" and count.provider == "ollama"
    assert seen == []


# -- llama.cpp (LocalProvider), on a fake server --------------------------------------------------

def test_local_provider_tokenizes_the_templated_prompt(server: FakeServer) -> None:
    server.route("POST", "/apply-template", lambda req, reply: reply.json(
        200, {"prompt": "<start_of_turn>user\n" + req.json()["messages"][-1]["content"] + "<end_of_turn>\n"}))
    server.route("POST", "/tokenize", lambda req, reply: reply.json(
        200, {"tokens": [2, *range(len(req.json()["content"].split()))]}))
    llm = LocalProvider(base_url=server.url + "/v1", max_retries=0)
    count = llm.count_tokens_sync("one two three", max_tokens=5)
    assert count == TokenCount(5, exact=True, source="llama.cpp /apply-template + /tokenize", provider="local",
                               model="gemma-3-270m")
    template, tokenize = (r.json() for r in server.received)
    assert [r.path for r in server.received] == ["/apply-template", "/tokenize"]  # at the root, not /v1
    assert template["messages"] == [{"role": "user", "content": "one two three"}]
    assert tokenize == {"content": "<start_of_turn>user\none two three<end_of_turn>\n", "add_special": True}


def test_local_provider_bad_tokenize_answer_is_typed(server: FakeServer) -> None:
    server.route("POST", "/apply-template", lambda req, reply: reply.json(200, {"prompt": 7}))
    llm = LocalProvider(base_url=server.url + "/v1", max_retries=0)
    with pytest.raises(InvalidResponseError, match="prompt is int"):
        llm.count_tokens_sync("hi")


# -- pools -----------------------------------------------------------------------------------------

class NoImages(Fake):
    def _check(self, request: GenerateRequest) -> None:
        if any(m.images for m in request.messages):
            raise ValidationError("no images here", provider=self.provider_id, model=self.model_name)


def test_a_pool_asks_the_first_member_that_takes_the_request() -> None:
    a, b = NoImages("a"), Fake("b")
    chain = FallbackChain([a, b])
    assert chain.count_tokens_sync("hi").model == "a"
    image = ContentPart.image_bytes(b"\x89PNG fake", "image/png")
    assert chain.count_tokens_sync([Message.user((image, ContentPart.from_text("hi")))]).model == "b"
    assert a.calls == [] and b.calls == []  # nothing was generated
    assert chain.get_stats().requests == 0


def test_a_pool_asks_a_member_in_rotation_first() -> None:
    from mirror_providers.errors import ServerError

    clock = Clock()
    dead = Fake("a", fail=ServerError("down", provider="fake", model="a", status=500))
    chain = FallbackChain([dead, Fake("b")], failure_threshold=1, cooldown_s=30, clock=clock)
    chain.generate_sync("hi")  # a fails and cools down
    assert chain.count_tokens_sync("hi").model == "b"
    clock.t += 31
    assert chain.count_tokens_sync("hi").model == "a"


def test_a_prompt_too_long_for_the_model_is_still_counted() -> None:
    from mirror_providers.openai import OpenAIProvider as _OpenAI

    llm = _OpenAI(api_key="sk-test-count", model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1")
    huge = "word " * 2_000_000  # far past gpt-4o-mini's 128k window
    counted = llm.count_tokens_sync(huge)
    assert counted.input_tokens > 128_000 and not counted.exact
    with pytest.raises(ValidationError, match="cannot fit"):
        llm.generate_sync(huge)  # generating it is still refused before sending
