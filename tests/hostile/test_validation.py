"""Bad input is a ValidationError (per call) or a ConfigurationError (constructor), naming the
option, and nothing is sent (issue 13, part A).

Every case runs against a loopback server for each vendor, and checks that the server received
no request at all: a value that passes validation and fails inside requests, or after the
request went out (``timeout=inf``), fails here.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirror_providers import _timers, create_provider
from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.base import ConfigurationError, ValidationError
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import FallbackChain, ProviderPool, TieredRouter
from mirror_providers.providers import anthropic as anthropic_wire
from mirror_providers.providers import ollama as ollama_wire
from mirror_providers.providers import openai as openai_wire
from mirror_providers.providers.http import HttpProvider
from mirror_providers.request import MAX_TIMEOUT_S, GenerateRequest, build_request
from mirror_providers.retry import RetryPolicy
from mirror_providers.transport import Limits, Timeout
from mirror_providers.types import ContentPart, Message, Tool, ToolCall

from ..server import FakeServer, add_anthropic_routes, add_ollama_routes, add_openai_routes

NAN, INF = float("nan"), float("inf")
VENDORS = ["openai", "anthropic", "ollama"]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer() as s:
        add_openai_routes(s)
        add_anthropic_routes(s)
        add_ollama_routes(s)
        yield s


def make(vendor: str, url: str, **kwargs: Any) -> HttpProvider:
    kwargs.setdefault("max_retries", 0)
    if vendor == "openai":
        return OpenAIProvider(**{"api_key": "sk-test", "base_url": url + "/v1", **kwargs})
    if vendor == "anthropic":
        return AnthropicProvider(**{"api_key": "sk-ant-test", "base_url": url, **kwargs})
    return OllamaProvider(**{"host": url, **kwargs})


class Sent:
    """Counts what the server received during a block."""

    def __init__(self, server: FakeServer) -> None:
        self.server, self.before = server, len(server.received)

    @property
    def count(self) -> int:
        return len(self.server.received) - self.before


# -- per call --------------------------------------------------------------------------------------

class Odd:
    """Not JSON, not anything."""


# (option, value): each must be refused naming the option.
BAD_OPTIONS: list[tuple[str, Any]] = [
    ("system", 5), ("system", b"be brief"), ("system", ["a"]),
    ("max_tokens", 0), ("max_tokens", -1), ("max_tokens", 1.5), ("max_tokens", True), ("max_tokens", "5"),
    ("max_tokens", NAN),
    ("temperature", -0.1), ("temperature", 2.5), ("temperature", NAN), ("temperature", INF), ("temperature", "0.5"),
    ("temperature", True), ("temperature", [0.5]),
    ("top_p", 1.5), ("top_p", NAN), ("top_p", -INF), ("top_p", {"p": 1}),
    ("stop", 123), ("stop", [1]), ("stop", [""]), ("stop", ["ok", None]), ("stop", b"\n"), ("stop", {"\n": 1}),
    ("stop", {"\n"}), ("stop", 1.5), ("stop", Odd()),
    ("tools", 5), ("tools", "get_weather"), ("tools", [5]), ("tools", {"name": "f"}), ("tools", Tool("f")),
    ("tools", [{"function": "get_weather"}]), ("tools", [{"type": "function", "function": None}]),
    ("tools", [{"name": 5}]), ("tools", [{"name": None}]), ("tools", [{"name": "f", "parameters": 5}]),
    ("tools", [{"name": "f", "parameters": ["type", "object"]}]), ("tools", [{"name": "f", "description": 5}]),
    ("tools", [{"name": "f", "parameters": {"type": "object", "properties": {"x": {"default": NAN}}}}]),
    ("tools", [{"name": "f", "parameters": {"type": "object", "default": Odd()}}]),
    ("tools", [{"name": "f", "parameters": {"type": "object", 1: "x"}}]),
    ("tools", [Tool("f", parameters=[])]), ("tools", [Tool(5)]), ("tools", [Tool("f", 7)]),  # type: ignore[arg-type]
    ("tools", [Tool("f"), {"name": "f"}]), ("tools", [Tool("bad name")]),
    ("tool_choice", 5), ("tool_choice", ""), ("tool_choice", []), ("tool_choice", {"function": "f"}),
    ("tool_choice", {"type": "function", "function": {"name": 5}}), ("tool_choice", {"type": "sometimes"}),
    ("tool_choice", "no_such_tool"), ("tool_choice", {"type": "function", "function": {"name": "no_such_tool"}}),
    ("parallel_tool_calls", "yes"), ("parallel_tool_calls", 1), ("parallel_tool_calls", 0),
    ("timeout", -1), ("timeout", 0), ("timeout", INF), ("timeout", NAN), ("timeout", "5"), ("timeout", True),
    ("timeout", MAX_TIMEOUT_S * 2), ("timeout", 1e300), ("timeout", Timeout(5, 5)),
    ("max_retries", -1), ("max_retries", 1.5), ("max_retries", "2"), ("max_retries", True), ("max_retries", INF),
    ("deadline_s", -1), ("deadline_s", 0), ("deadline_s", INF), ("deadline_s", NAN), ("deadline_s", "5"),
    ("deadline_s", True), ("deadline_s", 1e300), ("deadline_s", MAX_TIMEOUT_S * 2), ("deadline_s", [5]),
    ("extra", [1]), ("extra", "seed=1"), ("extra", {"seed": NAN}), ("extra", {"seed": INF}), ("extra", {"x": Odd()}),
    ("extra", {1: "a"}), ("extra", {"": 1}), ("extra", {"x": {"y": [NAN]}}), ("extra", {"x": {2: "y"}}),
    ("extra", {"x": b"bytes"}), ("extra", {"x": {1, 2}}),
    ("max_token", 5), ("temprature", 0.1),  # unknown names
]


def _options(option: str, value: Any) -> dict[str, Any]:
    options = {option: value}
    if option == "tool_choice":
        options["tools"] = [Tool("get_weather")]
    return options


CALLS: dict[str, Callable[[HttpProvider, dict[str, Any]], Any]] = {
    "generate_sync": lambda llm, o: llm.generate_sync("hi", **o),
    "stream_sync": lambda llm, o: llm.stream_sync("hi", **o),  # refused at the call, before iterating
    "generate": lambda llm, o: asyncio.run(llm.generate("hi", **o)),
    "stream": lambda llm, o: asyncio.run(_drain(llm, o)),
    "map_sync": lambda llm, o: llm.map_sync(["hi", "ho"], **o),
    "submit": lambda llm, o: llm.submit("hi", **o).result(),
}


async def _drain(llm: HttpProvider, options: dict[str, Any]) -> None:
    async for _ in llm.stream("hi", **options):
        pass


def _refused(call: Callable[[], Any], error: type[Exception], *names: str) -> Exception:
    with pytest.raises(error) as caught:
        call()
    message = str(caught.value)
    for name in names:
        assert name in message, f"{message!r} does not name {name!r}"
    return caught.value


@pytest.mark.parametrize("option, value", BAD_OPTIONS, ids=[f"{o}={v!r}"[:40] for o, v in BAD_OPTIONS])
@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("how", list(CALLS))
def test_a_bad_option_is_refused_by_name_and_nothing_is_sent(
        server: FakeServer, vendor: str, how: str, option: str, value: Any) -> None:
    llm = make(vendor, server.url)
    sent = Sent(server)
    err = _refused(lambda: CALLS[how](llm, _options(option, value)), ValidationError, option)
    assert isinstance(err, ValueError) and isinstance(err, TypeError)  # what bare Python would raise
    assert sent.count == 0


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("how", ["stream", "submit"])
def test_the_async_entry_points_refuse_at_the_call(server: FakeServer, vendor: str, how: str) -> None:
    """``stream()`` and ``submit()`` refuse when called, not when iterated or awaited."""
    llm = make(vendor, server.url)
    sent = Sent(server)
    _refused(lambda: getattr(llm, how)("hi", extra={"stream": True}), ValidationError, "extra['stream']")
    _refused(lambda: getattr(llm, how)("hi", deadline_s=INF), ValidationError, "deadline_s")
    assert sent.count == 0


_BAD_PROMPTS: list[tuple[Any, str]] = [
    (5, "prompt"), (b"hi", "prompt"), ([], "empty"), ([5], "messages[0]"),
    ([{"role": "user", "content": [{"type": "text", "text": 5}]}], "messages[0].content[0]"),
    ([{"role": "user", "content": [{"type": "text"}]}], "messages[0].content[0]"),
    ([Message("user", (ContentPart("text", text=5),))], "messages[0].content[0].text"),  # type: ignore[arg-type]
    ([{"role": "user", "content": "x", "name": 5}], "messages[0].name"),
    ([Message.user("q"), {"role": "assistant", "content": "", "tool_calls": 5}], "messages[1].tool_calls"),
    ([Message.user("q"), {"role": "assistant", "content": "", "tool_calls": [5]}], "messages[1].tool_calls[0]"),
    ([Message.user("q"), {"role": "assistant", "content": "", "tool_calls": [{"function": 5}]}],
     "messages[1].tool_calls[0].function"),
    ([Message.user("q"), {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": 5}}]}],
     "messages[1].tool_calls[0] arguments"),
    ([Message.user("q"), {"role": "assistant", "content": "",
                          "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": {"x": NAN}}}]}],
     "messages[1].tool_calls[0] arguments"),
    ([Message.user("q"), {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": 5}}]}],
     "messages[1].tool_calls[0]"),
    ([Message.user("q"), Message("assistant", "", tool_calls=5)], "messages[1].tool_calls"),  # type: ignore[arg-type]
    ([Message.user("q"), Message("assistant", "", tool_calls=(ToolCall("c1", "f", {"x": INF}, "{}"),))],
     "messages[1].tool_calls[0].arguments"),
    ([Message.user("q"), {"role": "tool", "content": "4", "tool_call_id": ["c1"]}], "messages[1].tool_call_id"),
]


@pytest.mark.parametrize("prompt, names", _BAD_PROMPTS, ids=[repr(p)[:50] for p, _ in _BAD_PROMPTS])
@pytest.mark.parametrize("vendor", VENDORS)
def test_a_malformed_prompt_is_refused_by_place_and_nothing_is_sent(server: FakeServer, vendor: str, prompt: Any,
                                                                    names: str) -> None:
    llm = make(vendor, server.url)
    sent = Sent(server)
    _refused(lambda: llm.generate_sync(prompt), ValidationError, names)
    _refused(lambda: llm.stream_sync(prompt), ValidationError, names)
    assert sent.count == 0


def test_tool_calls_given_as_a_list_are_accepted(server: FakeServer) -> None:
    history = [Message.user("weather?"),
               Message("assistant", "", tool_calls=[ToolCall("c1", "get_weather", {}, "{}")]),  # type: ignore[arg-type]
               Message.tool_result("c1", "sunny")]
    sent = Sent(server)
    make("openai", server.url).generate_sync(history, tools=[Tool("get_weather")])
    assert sent.count == 1


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("how", list(CALLS))
def test_the_good_call_is_sent(server: FakeServer, vendor: str, how: str) -> None:
    """The control: the same calls with good options do reach the server (to a model that takes
    each of them: claude-sonnet-5-5, the default, refuses temperature)."""
    llm = make(vendor, server.url, **({"model": "claude-opus-5"} if vendor == "anthropic" else {}))
    sent = Sent(server)
    result = CALLS[how](llm, {"max_tokens": 5, "temperature": 0.5, "stop": ["\n"], "timeout": 30,
                              "deadline_s": 60, "max_retries": 1, "extra": {"seed": 1}, "tools": [Tool("get_weather")],
                              "tool_choice": "auto"})
    if how == "stream_sync":
        list(result)
    assert sent.count == (2 if how == "map_sync" else 1)


def _owned_cases() -> list[tuple[str, str]]:
    vendors: list[tuple[str, Any]] = [("openai", OpenAIProvider), ("anthropic", AnthropicProvider),
                                      ("ollama", OllamaProvider)]
    return [(v, key) for v, cls in vendors for key in cls.OWNED_FIELDS]


@pytest.mark.parametrize("vendor, key", _owned_cases())
@pytest.mark.parametrize("how", ["generate_sync", "stream_sync", "stream", "map_sync"])
def test_extra_cannot_override_a_field_the_library_builds(server: FakeServer, vendor: str, key: str,
                                                           how: str) -> None:
    llm = make(vendor, server.url)
    sent = Sent(server)
    value: Any = True if key == "stream" else [] if key in ("tools", "messages", "stop") else 1
    err = _refused(lambda: CALLS[how](llm, {"extra": {key: value}}), ValidationError, f"extra[{key!r}]")
    assert type(llm).OWNED_FIELDS[key] in str(err)  # and it says what to use instead
    assert sent.count == 0


@pytest.mark.parametrize("extra, names", [
    ({"options": 5}, ["extra['options']"]),
    ({"options": [("seed", 1)]}, ["extra['options']"]),
    ({"options": {"bogus": 1}}, ["bogus"]),
    ({"options": {"temperature": 0.1}}, ["temperature", "temperature=... instead"]),
    ({"options": {"num_predict": 9}}, ["num_predict", "max_tokens=... instead"]),
    ({"options": {"stop": ["x"]}}, ["stop", "stop=... instead"]),
    ({"options": {"seed": "42"}}, ["seed", "integer"]),
    ({"seed": 4.5}, ["seed", "integer"]),
    ({"seed": True}, ["seed"]),
    ({"num_ctx": "big"}, ["num_ctx"]),
    ({"top_k": NAN}, ["extra"]),  # not JSON: caught first
    ({"min_p": "0.1"}, ["min_p"]),
    ({"use_mmap": 1}, ["use_mmap", "True or False"]),
    ({"keep_alive": "forever"}, ["keep_alive"]),
    ({"keep_alive": "10"}, ["keep_alive"]),  # Ollama's Go duration needs a unit
    ({"keep_alive": []}, ["keep_alive"]),
    ({"keep_alive": True}, ["keep_alive"]),
    ({"tool_choice": "auto"}, ["tool_choice"]),  # a field Ollama does not know
])
@pytest.mark.parametrize("how", ["generate_sync", "stream_sync", "raw"])
def test_ollama_extra_is_checked_before_sending(server: FakeServer, extra: dict[str, Any], names: list[str],
                                                 how: str) -> None:
    llm = make("ollama", server.url)
    assert isinstance(llm, OllamaProvider)
    sent = Sent(server)
    call: Callable[[], Any] = (lambda: llm.generate_raw_sync("hi", extra=extra)) if how == "raw" else (
        lambda: CALLS[how](llm, {"extra": extra}))
    _refused(call, ValidationError, *names)
    assert sent.count == 0


@pytest.mark.parametrize("raw", ["yes", 1, None, [True]])
@pytest.mark.parametrize("how", ["generate_raw_sync", "stream_raw_sync"])
def test_ollama_raw_must_be_a_bool(server: FakeServer, raw: Any, how: str) -> None:
    llm = make("ollama", server.url)
    sent = Sent(server)
    _refused(lambda: getattr(llm, how)("hi", raw=raw), ValidationError, "raw")
    assert sent.count == 0


@pytest.mark.parametrize("key", ["raw", "system", "prompt", "model", "stream"])
def test_ollama_raw_generate_refuses_what_it_builds(server: FakeServer, key: str) -> None:
    llm = make("ollama", server.url)
    assert isinstance(llm, OllamaProvider)
    sent = Sent(server)
    _refused(lambda: llm.generate_raw_sync("hi", extra={key: "x"}), ValidationError, f"extra[{key!r}]")
    assert sent.count == 0


@pytest.mark.parametrize("extra", [{"seed": 1, "options": {"top_k": 5, "num_ctx": 2048}}, {"keep_alive": "1h30m"},
                                   {"keep_alive": -1}, {"keep_alive": "0"}, {"format": {"type": "object"}}])
def test_good_ollama_extra_is_sent(server: FakeServer, extra: dict[str, Any]) -> None:
    sent = Sent(server)
    make("ollama", server.url).generate_sync("hi", extra=extra)
    assert sent.count == 1


def _maximal(vendor: str, stream: bool) -> dict[str, Any]:
    request = build_request([Message.system("s"), Message.user("hi")], {
        "system": "s", "max_tokens": 5, "temperature": 0.5, "top_p": 0.5, "stop": ["x"], "tools": [Tool("f")],
        "tool_choice": "f", "parallel_tool_calls": False})
    if vendor == "openai":
        return openai_wire.build_payload(request, "gpt-4o-mini", stream) | openai_wire.build_payload(
            request, "o3-mini", stream)
    if vendor == "anthropic":
        return anthropic_wire.build_payload(request, "claude-x", 100, stream)
    llm = OllamaProvider()
    chat = ollama_wire.build_payload(request, "llama3.1", stream, {"num_ctx": 1, "keep_alive": "1m"})
    raw = llm._generate_payload(request, True, stream)
    return {**chat, **raw, "options": {**chat["options"], **raw["options"]}}


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("stream", [False, True])
def test_every_field_a_payload_builder_sets_is_owned(vendor: str, stream: bool) -> None:
    """The tables cannot fall behind the builders: with every option set, each field of the body
    (and each Ollama option) is one ``extra`` may not override."""
    cls: Any = {"openai": OpenAIProvider, "anthropic": AnthropicProvider, "ollama": OllamaProvider}[vendor]
    payload = _maximal(vendor, stream)
    constructor_defaults = {"keep_alive", "options"} if vendor == "ollama" else set()
    assert set(payload) - constructor_defaults <= set(cls.OWNED_FIELDS)
    if vendor == "ollama":
        assert set(payload["options"]) - {"num_ctx"} <= set(cls.OWNED_FIELDS)


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_hand_made_request_is_checked_too(server: FakeServer, vendor: str) -> None:
    llm = make(vendor, server.url)
    sent = Sent(server)
    _refused(lambda: llm.generate_sync(GenerateRequest(messages=(Message.user("hi"),), timeout=-1.0)),
             ValidationError, "timeout")
    _refused(lambda: llm.generate_sync(GenerateRequest(messages=(Message.user("hi"),), deadline_s=math.inf)),
             ValidationError, "deadline_s")
    _refused(lambda: llm.stream_sync(GenerateRequest(messages=(Message.user("hi"),), extra={"x": NAN})),
             ValidationError, "extra")
    assert sent.count == 0


# -- constructors --------------------------------------------------------------------------------

# (vendors, keyword, value): a ConfigurationError naming the keyword.
BAD_SETTINGS: list[tuple[str, str, Any]] = [
    ("*", "timeout", -1), ("*", "timeout", 0), ("*", "timeout", INF), ("*", "timeout", NAN), ("*", "timeout", "5"),
    ("*", "timeout", True), ("*", "timeout", 1e300), ("*", "timeout", [5]),
    ("*", "timeout", Timeout(connect=-1, read=5)), ("*", "timeout", Timeout(connect=5, read=INF)),
    ("*", "timeout", Timeout(connect=NAN, read=5)), ("*", "timeout", Timeout(connect="5", read=5)),  # type: ignore[arg-type]
    ("*", "max_retries", -1), ("*", "max_retries", 1.5), ("*", "max_retries", "2"), ("*", "max_retries", True),
    ("*", "max_retries", None),
    ("*", "deadline_s", -1), ("*", "deadline_s", 0), ("*", "deadline_s", INF), ("*", "deadline_s", NAN),
    ("*", "deadline_s", 1e300), ("*", "deadline_s", "60"), ("*", "deadline_s", True),
    ("*", "limits", "64MB"), ("*", "limits", 5), ("*", "limits", {"max_body_bytes": 1}),
    ("*", "retry", "twice"), ("*", "retry", 3), ("*", "retry", {"max_retries": 3}),
    ("*", "headers", 5), ("*", "headers", ["X-A: 1"]), ("*", "headers", {"X-A": 5}), ("*", "headers", {"X-A": None}),
    ("*", "headers", {"X-A": "a\r\nX-Injected: 1"}), ("*", "headers", {"X-A": "a\nb"}), ("*", "headers", {"X-A": "\0"}),
    ("*", "headers", {"bad name": "x"}), ("*", "headers", {"X-A\n": "x"}), ("*", "headers", {5: "x"}),
    ("*", "headers", {"": "x"}), ("*", "headers", {"X-A": "caf\u00e9\u2603"}),
    ("*", "model", 5), ("*", "model", ["gpt-4o"]), ("*", "model", "   "), ("*", "model", False),
    ("*", "api_key", 5), ("*", "api_key", "sk-abc\n"), ("*", "api_key", "sk abc"), ("*", "api_key", b"sk-abc"),
    ("*", "transport", "requests"), ("*", "transport", object()),
    ("*", "verify", "/no/such/ca.pem"), ("*", "verify", 0),
    ("openai", "base_url", 5), ("openai", "base_url", "ftp://x"), ("openai", "base_url", "http://"),
    ("openai", "base_url", "http://host name/v1"), ("openai", "base_url", "http://h:99999/v1"),
    ("openai", "organization", 5), ("openai", "organization", "org\r\nX: 1"), ("openai", "project", ["p"]),
    ("anthropic", "base_url", "http://h:port"),
    ("anthropic", "auth_token", 5), ("anthropic", "auth_token", "tok\n"),
    ("anthropic", "betas", "prompt-caching-2024-07-31"), ("anthropic", "betas", [5]), ("anthropic", "betas", [""]),
    ("anthropic", "betas", ["a\nb"]),
    ("anthropic", "max_tokens", 0), ("anthropic", "max_tokens", True), ("anthropic", "max_tokens", 1.5),
    ("anthropic", "max_tokens", "100"), ("anthropic", "max_tokens", 10**9),
    ("ollama", "host", 5), ("ollama", "host", "gpu-box:port"), ("ollama", "host", "http://h:99999"),
    ("ollama", "num_ctx", 0), ("ollama", "num_ctx", "big"), ("ollama", "num_ctx", True), ("ollama", "num_ctx", 2.5),
    ("ollama", "keep_alive", "forever"), ("ollama", "keep_alive", NAN), ("ollama", "keep_alive", INF),
    ("ollama", "keep_alive", []), ("ollama", "keep_alive", "5"),
]
SETTING_CASES = [(v, k, x) for vs, k, x in BAD_SETTINGS for v in (VENDORS if vs == "*" else [vs])]


@pytest.mark.parametrize("vendor, keyword, value", SETTING_CASES,
                         ids=[f"{v}-{k}={x!r}"[:50] for v, k, x in SETTING_CASES])
@pytest.mark.parametrize("how", ["class", "create_provider"])
def test_a_bad_constructor_argument_is_refused_by_name(server: FakeServer, vendor: str, keyword: str, value: Any,
                                                       how: str) -> None:
    sent = Sent(server)
    if how == "class":
        err = _refused(lambda: make(vendor, server.url, **{keyword: value}), ConfigurationError, keyword)
        assert isinstance(err, ValueError) and isinstance(err, TypeError)  # what bare Python would raise
    else:
        url = {"openai": server.url + "/v1", "anthropic": server.url, "ollama": server.url}[vendor]
        where = "host" if vendor == "ollama" else "base_url"
        kwargs: dict[str, Any] = {where: url, "api_key": "sk-test", keyword: value}
        if keyword == "base_url" and vendor == "ollama":
            kwargs.pop("host")
        _refused(lambda: create_provider(vendor, **kwargs), ConfigurationError, keyword)
    assert sent.count == 0


def test_an_api_key_from_the_environment_is_checked_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abc\n")
    _refused(lambda: OpenAIProvider(), ConfigurationError, "OPENAI_API_KEY")


@pytest.mark.parametrize("spec, kwargs, names", [
    (5, {}, ["spec"]),
    (None, {}, ["spec"]),
    ("nope:model", {}, ["nope"]),
    ("openai", {"max_token": 5, "api_key": "k"}, ["max_token", "timeout"]),  # names it, lists what it takes
    ("ollama", {"organization": "o"}, ["organization"]),
    ("anthropic", {"host": "h", "api_key": "k"}, ["host"]),
    ("openai:gpt-4o", {"model": "gpt-4o-mini", "api_key": "k"}, ["model"]),
])
def test_create_provider_refuses_by_name(spec: Any, kwargs: dict[str, Any], names: list[str]) -> None:
    _refused(lambda: create_provider(spec, **kwargs), ConfigurationError, *names)


def test_create_provider_takes_every_constructor_argument() -> None:
    llm = create_provider("ollama:qwen2.5", host="gpu-box", num_ctx=4096, keep_alive="5m", timeout=30,
                          max_retries=1, headers={"X-A": "1"}, retry=RetryPolicy(max_retries=1), verify=True)
    assert llm.base_url == "http://gpu-box:11434"
    assert create_provider("anthropic:haiku", api_key="k", betas=["b"], max_tokens=100).model_name
    assert create_provider("openai", api_key="k", organization="o", project="p").model_name == "gpt-6-luna"


@pytest.mark.parametrize("field, value", [
    ("max_retries", -1), ("max_retries", 1.5), ("max_retries", True), ("initial_backoff_s", -1),
    ("max_backoff_s", INF), ("max_backoff_s", 1e300), ("initial_backoff_s", "1"), ("max_retry_after_s", NAN),
    ("max_retry_after_s", 1e12), ("jitter", 1.5), ("jitter", -0.1), ("sleep", None), ("random", 0.5),
])
def test_a_bad_retry_policy_is_refused_when_made(field: str, value: Any) -> None:
    err = _refused(lambda: RetryPolicy(**{field: value}), ConfigurationError, f"RetryPolicy.{field}")
    assert isinstance(err, ValueError)  # what it raised before, so `except ValueError` still catches it


@pytest.mark.parametrize("field, value", [("max_body_bytes", 0), ("max_event_bytes", -1), ("max_decoded_bytes", 1.5),
                                          ("max_error_body_bytes", None), ("max_stream_bytes", True)])
def test_bad_limits_are_refused_when_made(field: str, value: Any) -> None:
    err = _refused(lambda: Limits(**{field: value}), ConfigurationError, f"Limits.{field}")
    assert isinstance(err, ValueError)


def test_a_bad_retry_policy_setting_never_reaches_a_sleep(server: FakeServer) -> None:
    """A back-off of 1e300 s used to be accepted and to raise OverflowError from the sleep, after
    the first try was sent: now the policy cannot be made, so no provider sends with it."""
    sent = Sent(server)
    _refused(lambda: make("openai", server.url, retry=RetryPolicy(initial_backoff_s=1e300, max_backoff_s=1e300)),
             ConfigurationError, "initial_backoff_s")
    assert sent.count == 0


# -- random option values ------------------------------------------------------------------------

_leaves = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=4)
           | st.binary(max_size=2) | st.builds(Odd))
_values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner)
                       | st.dictionaries(st.text(max_size=3) | st.integers(0, 3), inner, max_size=3), max_leaves=6)
_tool = st.fixed_dictionaries({"name": st.sampled_from(["f", "g", "", "bad name"]) | _values},
                              optional={"parameters": st.just({"type": "object"}) | _values,
                                        "description": _values, "function": _values})
_extra_keys = st.sampled_from(sorted({*OpenAIProvider.OWNED_FIELDS, *AnthropicProvider.OWNED_FIELDS,
                                      *OllamaProvider.OWNED_FIELDS, *ollama_wire.OPTION_NAMES,
                                      *ollama_wire.GENERATE_FIELDS, "seed", "n", "user"})) | st.text(max_size=4)
_option_values = {
    "tools": st.lists(_tool | _values, max_size=3) | _values,
    "extra": st.dictionaries(_extra_keys, _values, max_size=3) | _values,
    "tool_choice": st.sampled_from(["auto", "none", "required", "f", "g"]) | _values,
}
_options_strategy = st.dictionaries(
    st.sampled_from(["system", "max_tokens", "temperature", "top_p", "stop", "tools", "tool_choice",
                     "parallel_tool_calls", "timeout", "deadline_s", "max_retries", "extra", "no_such_option"]),
    _values, max_size=4,
).flatmap(lambda d: st.fixed_dictionaries({k: _option_values.get(k, _values) | st.just(v) for k, v in d.items()}))

_PROVIDERS = [OpenAIProvider(api_key="k", base_url="http://127.0.0.1:9/v1"),
              AnthropicProvider(api_key="k", base_url="http://127.0.0.1:9"), OllamaProvider(host="127.0.0.1:9")]


def _bodies(request: GenerateRequest) -> Iterator[dict[str, Any]]:
    for stream in (False, True):
        yield openai_wire.build_payload(request, "gpt-4o-mini", stream)
        yield anthropic_wire.build_payload(request, "claude-x", 100, stream)
        yield ollama_wire.build_payload(request, "llama3.1", stream)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_options_strategy)
def test_random_options_are_either_sendable_json_or_a_validation_error(options: dict[str, Any]) -> None:
    """Whatever the caller passes, the library either builds bodies that are valid JSON (finite
    numbers, text keys) or raises ValidationError: never a bare TypeError, ValueError or
    AttributeError from deeper down."""
    try:
        request = build_request("hi", options)
    except ValidationError:
        return
    for llm in _PROVIDERS:
        try:
            llm._check(request)
        except ValidationError:
            continue
        if isinstance(llm, OllamaProvider):
            try:  # a field /api/chat does not know (/api/generate may) is refused building the body
                body = ollama_wire.build_payload(request, llm.model_name, True)
            except ValidationError:
                continue
        else:
            body = (openai_wire.build_payload(request, llm.model_name, True) if isinstance(llm, OpenAIProvider)
                    else anthropic_wire.build_payload(request, llm.model_name, 100, True))
        json.loads(json.dumps(body, allow_nan=False))
        assert body["model"] == llm.model_name and body.get("stream") is True
        for seconds in (request.timeout, request.deadline_s):
            if seconds is not None:
                assert math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT_S


_settings = st.fixed_dictionaries({}, optional={
    "timeout": _values | st.builds(Timeout, _leaves.filter(lambda x: not isinstance(x, Odd)),
                                   _leaves.filter(lambda x: not isinstance(x, Odd))),
    "max_retries": _values, "deadline_s": _values,
    "headers": st.dictionaries(st.text(max_size=4) | st.integers() | st.none(), st.text(max_size=4) | _values,
                               max_size=2) | _values,
    "model": _values | st.text(max_size=6), "api_key": st.text(max_size=6) | _values,
    "retry": _values | st.just(RetryPolicy()),
})


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(VENDORS), _settings)
def test_random_constructor_arguments_are_either_accepted_or_a_configuration_error(
        vendor: str, kwargs: dict[str, Any]) -> None:
    try:
        llm = make(vendor, "http://127.0.0.1:9", **kwargs)
    except ConfigurationError:
        return
    t = llm.timeout
    assert all(isinstance(x, float | int) and 0 < x <= MAX_TIMEOUT_S for x in (t.connect, t.read))
    assert isinstance(llm._headers(), dict)
    assert llm.deadline_s is None or 0 < llm.deadline_s <= MAX_TIMEOUT_S


class _SeenWait(threading.Condition):
    """The watchdog's condition, telling the test when the thread waits with a long timeout."""

    def __init__(self) -> None:
        super().__init__(threading.Lock())
        self.long_wait = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None and timeout > 1e6:
            self.long_wait.set()
        return super().wait(timeout)


def test_a_far_timer_does_not_stop_the_watchdog() -> None:
    """A timer too far away for a lock to wait on (OverflowError) used to end the watchdog thread,
    and with it every deadline in the process; it now waits in steps."""
    watchdog = _timers._Watchdog()
    watchdog._cond = cond = _SeenWait()
    far = watchdog.call_at(time.monotonic() + 1e300, lambda: None)
    assert cond.long_wait.wait(30)  # the thread is waiting for the far timer (or died trying)
    fired = threading.Event()
    watchdog.call_at(time.monotonic(), fired.set)
    assert fired.wait(30)
    far.cancel()


# -- pools ---------------------------------------------------------------------------------------

def _pool(kind: str, url: str) -> Any:
    members = [make(v, url) for v in VENDORS]
    if kind == "chain":
        return FallbackChain(members)
    if kind == "pool":
        return ProviderPool(members, strategy="round_robin")
    return TieredRouter(flagship=members[0], balanced=members[1], fast=members[2])


@pytest.mark.parametrize("option, value", BAD_OPTIONS, ids=[f"{o}={v!r}"[:40] for o, v in BAD_OPTIONS])
@pytest.mark.parametrize("kind", ["chain", "pool", "tiered"])
def test_a_pool_refuses_a_bad_option_and_sends_nothing(server: FakeServer, kind: str, option: str,
                                                       value: Any) -> None:
    pool = _pool(kind, server.url)
    sent = Sent(server)
    _refused(lambda: pool.generate_sync("hi", **_options(option, value)), ValidationError, option)
    _refused(lambda: list(pool.stream_sync("hi", **_options(option, value))), ValidationError, option)
    assert sent.count == 0


@pytest.mark.parametrize("kind", ["chain", "pool", "tiered"])
def test_a_pool_member_refuses_an_owned_extra_and_sends_nothing(server: FakeServer, kind: str) -> None:
    pool = _pool(kind, server.url)
    sent = Sent(server)
    for _ in VENDORS:  # round robin: each member in turn
        _refused(lambda: pool.generate_sync("hi", extra={"stream": True}), ValidationError, "extra['stream']")
    assert sent.count == 0


_ONE = [OpenAIProvider(api_key="k", base_url="http://127.0.0.1:9/v1")]


@pytest.mark.parametrize("make_pool, name", [
    (lambda: FallbackChain(5), "list of providers"), (lambda: FallbackChain("ab"), "list of providers"),  # type: ignore[arg-type]
    (lambda: FallbackChain(_ONE, deadline_s=INF), "deadline_s"), (lambda: FallbackChain(_ONE, deadline_s=1e300), "deadline_s"),
    (lambda: FallbackChain(_ONE, deadline_s="5"), "deadline_s"), (lambda: FallbackChain(_ONE, deadline_s=-1), "deadline_s"),  # type: ignore[arg-type]
    (lambda: FallbackChain(_ONE, attempt_timeout_s=NAN), "attempt_timeout_s"),
    (lambda: FallbackChain(_ONE, attempt_timeout_s=True), "attempt_timeout_s"),
    (lambda: FallbackChain(_ONE, failure_threshold="3"), "failure_threshold"),  # type: ignore[arg-type]
    (lambda: FallbackChain(_ONE, failure_threshold=0), "failure_threshold"),
    (lambda: FallbackChain(_ONE, cooldown_s=NAN), "cooldown_s"), (lambda: FallbackChain(_ONE, cooldown_s=-1), "cooldown_s"),
    (lambda: FallbackChain(_ONE, clock=5), "clock"),  # type: ignore[arg-type]
    (lambda: FallbackChain([(_ONE[0], "1")]), "weight"), (lambda: FallbackChain([(_ONE[0], NAN)]), "weight"),  # type: ignore[list-item]
    (lambda: FallbackChain([(_ONE[0], INF)]), "weight"),
    (lambda: ProviderPool(_ONE, weights=5), "weights"), (lambda: ProviderPool(_ONE, max_attempts="2"), "max_attempts"),  # type: ignore[arg-type]
    (lambda: ProviderPool(_ONE, max_attempts=1.5), "max_attempts"), (lambda: ProviderPool(_ONE, max_attempts=0), "max_attempts"),  # type: ignore[arg-type]
    (lambda: ProviderPool(_ONE, strategy=5), "strategy"),  # type: ignore[arg-type]
    (lambda: TieredRouter(_ONE[0], thresholds=5), "thresholds"),  # type: ignore[arg-type]
    (lambda: TieredRouter(_ONE[0], thresholds=("a", "b")), "thresholds"),  # type: ignore[arg-type]
    (lambda: TieredRouter(_ONE[0], thresholds=(0.9, 0.1)), "thresholds"),
])
def test_a_bad_pool_argument_is_refused_by_name(make_pool: Callable[[], Any], name: str) -> None:
    err = _refused(make_pool, ConfigurationError, name)
    assert isinstance(err, ValueError) and isinstance(err, TypeError)
