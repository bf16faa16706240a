"""Parameters that follow the model: what each catalog row accepts, ``reasoning=`` per vendor,
and ``drop_params``. Each case checks the body that reaches the transport (or that none does)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.errors import ValidationError
from mirror_providers.local import OllamaProvider
from mirror_providers.model_rules import ParameterDroppedWarning
from mirror_providers.openai import OpenAIProvider
from mirror_providers.providers.http import HttpProvider
from mirror_providers.request import build_request
from mirror_providers.transport import HttpRequest, HttpResponse, MockTransport
from mirror_providers.types import Message, Tool

from .server import anthropic_message, openai_completion

OLLAMA_ANSWER = {"model": "m", "message": {"role": "assistant", "content": "ok"}, "done": True,
                 "done_reason": "stop", "prompt_eval_count": 1, "eval_count": 1}


class Wire:
    """A provider whose transport keeps every body it is given and answers a fixed one."""

    def __init__(self, vendor: str, model: str | None = None, **kwargs: Any) -> None:
        self.bodies: list[dict[str, Any]] = []
        answer = {"openai": openai_completion("ok"), "anthropic": anthropic_message("ok"), "ollama": OLLAMA_ANSWER}[vendor]

        def handler(request: HttpRequest) -> HttpResponse:
            self.bodies.append(json.loads(request.body or b"{}"))
            return HttpResponse(200, {"content-type": "application/json"}, json.dumps(answer).encode())

        cls: type[HttpProvider] = {"openai": OpenAIProvider, "anthropic": AnthropicProvider,
                                   "ollama": OllamaProvider}[vendor]
        if vendor != "ollama":
            kwargs.setdefault("api_key", "sk-test")
        if vendor == "openai":
            kwargs.setdefault("api", "chat")  # these are Chat Completions' rules
        self.llm = cls(model, transport=MockTransport(handler), max_retries=0, **kwargs)

    def send(self, prompt: Any = "hi", **options: Any) -> dict[str, Any]:
        self.llm.generate_sync(prompt, **options)
        return self.bodies[-1]

    def refused(self, match: str, prompt: Any = "hi", **options: Any) -> ValidationError:
        with pytest.raises(ValidationError, match=match) as info:
            self.llm.generate_sync(prompt, **options)
        assert not self.bodies, "a refused request must not be sent"
        with pytest.raises(ValidationError, match=match):  # the stream refuses it too, before sending
            self.llm.stream_sync(prompt, **options)
        return info.value


TOOL = Tool("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}})


# -- the option itself -------------------------------------------------------------------------------

@pytest.mark.parametrize("given, stored", [
    (True, "on"), (False, "off"), ("none", "off"), ("NONE", "off"), (" High ", "high"), ("max", "max"),
    ("minimal", "minimal"), ("off", "off"),
])
def test_reasoning_option_is_normalised(given: Any, stored: str) -> None:
    assert build_request("hi", {"reasoning": given}).reasoning == stored


@pytest.mark.parametrize("bad", [2, "deep", "", ["high"], 0.5])
def test_reasoning_option_refuses_other_values(bad: Any) -> None:
    with pytest.raises(ValidationError, match="reasoning must be True, False or one of"):
        build_request("hi", {"reasoning": bad})


# -- OpenAI Chat Completions --------------------------------------------------------------------------

def test_output_cap_is_max_completion_tokens_for_reasoning_families() -> None:
    for model in ("gpt-6-luna", "gpt-6.2-sol", "gpt-5.6-terra", "gpt-5.2", "o3"):
        body = Wire("openai", model).send(max_tokens=50)
        assert body["max_completion_tokens"] == 50 and "max_tokens" not in body, model
    assert Wire("openai", "gpt-4o").send(max_tokens=50)["max_tokens"] == 50


@pytest.mark.parametrize("model, base_url, field", [
    ("gpt-7-preview", "http://127.0.0.1:9/v1", "max_completion_tokens"),  # a future family, by its name
    ("openai/gpt-6-nova", "http://127.0.0.1:9/v1", "max_completion_tokens"),  # behind a router
    ("o5-mini", "http://127.0.0.1:9/v1", "max_completion_tokens"),
    ("llama-3.1-8b", "http://127.0.0.1:9/v1", "max_tokens"),  # a compatible server's own model
    ("gpt-oss-20b", "http://127.0.0.1:9/v1", "max_tokens"),
    ("some-new-model", "https://api.openai.com/v1", "max_completion_tokens"),  # OpenAI documents it for all
])
def test_output_cap_of_an_unknown_model(model: str, base_url: str, field: str) -> None:
    body = Wire("openai", model, base_url=base_url).send(max_tokens=7)
    assert body[field] == 7 and len({"max_tokens", "max_completion_tokens"} & set(body)) == 1


def test_reasoning_levels_reach_openai_as_reasoning_effort() -> None:
    w = Wire("openai", "gpt-6-sol")
    assert w.send(reasoning="high")["reasoning_effort"] == "high"
    assert w.send(reasoning=False)["reasoning_effort"] == "none"
    assert "reasoning_effort" not in w.send(reasoning=True)  # on, at the model's own depth
    assert "reasoning_effort" not in w.send()


def test_options_that_need_reasoning_off_turn_it_off_when_reasoning_is_unset() -> None:
    w = Wire("openai", "gpt-6-luna")
    body = w.send(temperature=0.3, tools=[TOOL])
    assert body["reasoning_effort"] == "none" and body["temperature"] == 0.3 and body["tools"]
    assert "reasoning_effort" not in w.send()  # nothing that needs it: the model's default


def test_options_refused_with_reasoning_on_say_how_to_send_them() -> None:
    w = Wire("openai", "gpt-6-sol")
    w.refused(r"gpt-6-sol accepts tools on Chat Completions .* only with reasoning off \(pass reasoning='off'",
              tools=[TOOL], reasoning="high")
    w.refused("gpt-6-sol accepts temperature only with reasoning off", temperature=0.2, reasoning="low")


def test_models_that_always_reason_refuse_sampling_and_off() -> None:
    w = Wire("openai", "gpt-6.2-sol")
    err = w.refused("gpt-6.2-sol does not accept temperature", temperature=0.2)
    assert "drop_params=True" in err.message
    w.refused("gpt-6.2-sol always reasons: reasoning cannot be turned off", reasoning="off")
    w.refused(r"does not accept tools on Chat Completions \(its tools need the Responses API\)", tools=[TOOL])


def test_unknown_levels_name_the_model_s_levels() -> None:
    Wire("openai", "gpt-6.2-astra").refused(
        "gpt-6.2-astra takes reasoning 'low', 'medium', 'high', 'xhigh', 'max', not 'minimal'", reasoning="minimal")


def test_reasoning_on_a_model_that_does_not_reason() -> None:
    w = Wire("openai", "gpt-4o")
    w.refused("gpt-4o does not reason", reasoning="high")
    assert "reasoning_effort" not in w.send(reasoning="off")  # off is what it does anyway: nothing to send


def test_reasoning_and_the_vendor_field_in_extra_are_one_question() -> None:
    w = Wire("openai", "gpt-6-sol")
    w.refused(r"reasoning='high' and extra\['reasoning_effort'\] both ask for reasoning", reasoning="high",
              extra={"reasoning_effort": "low"})
    assert w.send(extra={"reasoning_effort": "low"})["reasoning_effort"] == "low"  # the vendor's way still works


def test_drop_params_drops_with_a_warning() -> None:
    w = Wire("openai", "gpt-6.2-sol", drop_params=True)
    with pytest.warns(ParameterDroppedWarning, match="dropped temperature for gpt-6.2-sol"):
        body = w.send(temperature=0.2, top_p=0.5, max_tokens=9)
    assert "temperature" not in body and "top_p" not in body and body["max_completion_tokens"] == 9
    with pytest.warns(ParameterDroppedWarning, match="dropped tools"):
        body = w.send(tools=[TOOL], tool_choice="auto")
    assert "tools" not in body and "tool_choice" not in body


def test_unknown_models_are_sent_as_asked() -> None:
    w = Wire("openai", "my-finetune", base_url="http://127.0.0.1:9/v1")
    body = w.send(temperature=0.2, reasoning="low", tools=[TOOL])
    assert (body["temperature"], body["reasoning_effort"]) == (0.2, "low") and body["tools"]


# -- Anthropic Messages --------------------------------------------------------------------------------

def test_adaptive_thinking_with_effort() -> None:
    w = Wire("anthropic", "sonnet")
    body = w.send(reasoning="high")
    assert body["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert body["output_config"] == {"effort": "high"}
    assert "output_config" not in w.send(reasoning=True) and "thinking" not in w.send()
    w.bodies.clear()
    w.refused("claude-sonnet-5-5 always reasons", reasoning="off")
    assert Wire("anthropic", "claude-opus-5").send(reasoning="off")["thinking"] == {"type": "disabled"}


def test_budget_thinking_leaves_room_to_answer() -> None:
    w = Wire("anthropic", "claude-haiku-4-5")
    body = w.send(reasoning="high")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    assert body["max_tokens"] == 16384 + 8192 and "output_config" not in body
    assert w.send(reasoning="low", max_tokens=4000)["max_tokens"] == 4000
    w.bodies.clear()
    w.refused("max_tokens=1000 leaves no room to answer after thinking", reasoning="medium", max_tokens=1000)
    w.refused("takes reasoning 'off', 'low', 'medium', 'high', not 'xhigh'", reasoning="xhigh")
    w.refused("accepts temperature only with reasoning off", reasoning="low", temperature=0.5)
    w.refused("claude-haiku-4-5-20251001 accepts temperature or top_p, not both", temperature=0.5, top_p=0.9)
    assert w.send(temperature=0.5)["temperature"] == 0.5  # thinking is off by default on this model


def test_newest_claude_models_refuse_sampling_prefill_and_forced_tools() -> None:
    w = Wire("anthropic", "claude-sonnet-5-5")
    w.refused("claude-sonnet-5-5 does not accept temperature", temperature=0.5)
    w.refused("top_k", extra={"top_k": 5})
    w.refused(r"does not accept an assistant message last \(prefill\)$",
              [Message.user("Write JSON"), Message.assistant("{")])
    w.refused("does not accept a forced tool_choice", tools=[TOOL], tool_choice="get_weather")
    assert w.send(tools=[TOOL], tool_choice="auto")["tool_choice"]["type"] == "auto"


def test_drop_params_never_drops_a_prefill() -> None:
    w = Wire("anthropic", "claude-sonnet-5-5", drop_params=True)
    with pytest.warns(ParameterDroppedWarning, match="dropped forced_tool_choice"):
        body = w.send(tools=[TOOL], tool_choice="required", temperature=0.3)
    assert "tool_choice" not in body and "temperature" not in body and body["tools"]
    w.bodies.clear()
    w.refused("prefill", [Message.user("Write JSON"), Message.assistant("{")])  # it would change the answer


def test_anthropic_extra_thinking_conflicts_with_reasoning() -> None:
    w = Wire("anthropic", "claude-opus-5")
    w.refused(r"extra\['thinking'\]", reasoning="low", extra={"thinking": {"type": "disabled"}})


# -- Ollama ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, reasoning, think", [
    ("qwen3", "high", True), ("qwen3", "off", False), ("qwen3", True, True), ("deepseek-r1", "low", True),
    ("gpt-oss", "high", "high"), ("gpt-oss", "low", "low"), ("some-new-model", "medium", "medium"),
    ("some-new-model", False, False),
])
def test_reasoning_reaches_ollama_as_think(model: str, reasoning: Any, think: Any) -> None:
    assert Wire("ollama", model).send(reasoning=reasoning)["think"] == think


def test_ollama_models_without_thinking() -> None:
    w = Wire("ollama", "llama3.1")
    w.refused("llama3.1 does not reason", reasoning="high")
    assert "think" not in w.send(reasoning="off") and "think" not in w.send()
    Wire("ollama", "gpt-oss").refused("gpt-oss always reasons", reasoning="off")
