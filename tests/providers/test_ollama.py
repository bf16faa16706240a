"""OllamaProvider: host parsing, translation, cassettes, error paths over real sockets, contract."""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Any

import pytest

from mirror_providers.errors import (
    BadRequestError,
    ConnectError,
    ModelNotFoundError,
    OverloadedError,
    ServerError,
    StreamError,
    TruncatedStreamError,
    ValidationError,
)
from mirror_providers.local import OllamaProvider
from mirror_providers.providers.ollama import build_payload, parse_host, parse_result
from mirror_providers.request import build_request
from mirror_providers.retry import RetryPolicy
from mirror_providers.transport import HttpResponse, MockTransport
from mirror_providers.types import ContentPart, Message, Tier, ToolCall, join_chunks

from ..contract import ProviderContract
from ..server import FakeServer, Received, Reply, free_port
from .replay import ndjson, stream

# -- host parsing --------------------------------------------------------------------------------

@pytest.mark.parametrize("given, expected", [
    (None, "http://127.0.0.1:11434"), ("", "http://127.0.0.1:11434"),
    ("1.2.3.4", "http://1.2.3.4:11434"), (":56789", "http://127.0.0.1:56789"),
    ("example.com:56789", "http://example.com:56789"), ("http://example.com", "http://example.com:80"),
    ("https://example.com", "https://example.com:443"), ("https://example.com:56789", "https://example.com:56789"),
    ("example.com/path", "http://example.com:11434/path"), ("example.com:56789/path/", "http://example.com:56789/path"),
    ("[::1]:56789", "http://[::1]:56789"), ("[::1]", "http://[::1]:11434"), ("0.0.0.0", "http://0.0.0.0:11434"),
])
def test_parse_host(given: str | None, expected: str) -> None:
    assert parse_host(given) == expected


def test_host_from_argument_env_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OllamaProvider().host == "http://127.0.0.1:11434"
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box:9999")
    assert OllamaProvider().host == "http://gpu-box:9999"
    assert OllamaProvider("llama3.1", "other").host == "http://other:11434"
    assert OllamaProvider(base_url="https://ollama.example").host == "https://ollama.example:443"
    with pytest.raises(ValueError):
        OllamaProvider(host="a", base_url="b")


# -- translation ---------------------------------------------------------------------------------

def test_payload_options_and_stream_always_explicit() -> None:
    req = build_request([Message.system("Be brief."), Message.user("hi")], {
        "max_tokens": 64, "temperature": 0.2, "top_p": 0.9, "stop": ["\n\n"],
        "extra": {"seed": 42, "num_ctx": 16384, "format": "json", "think": False, "keep_alive": "1m"}})
    body = build_payload(req, "llama3.2", stream=False, defaults={"num_ctx": 8192, "keep_alive": "10m"})
    assert body == {
        "model": "llama3.2", "stream": False, "keep_alive": "1m", "format": "json", "think": False,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "options": {"num_ctx": 16384, "num_predict": 64, "temperature": 0.2, "top_p": 0.9, "stop": ["\n\n"], "seed": 42},
    }
    assert build_payload(build_request("x", {}), "m", stream=True)["stream"] is True


def test_unknown_extra_field_refused_not_dropped() -> None:
    with pytest.raises(ValidationError, match="tool_choice"):
        build_payload(build_request("x", {"extra": {"tool_choice": "auto"}}), "m", False)


def test_tools_vision_and_tool_results() -> None:
    call = ToolCall("call_0", "get_weather", {"city": "Tokyo"}, '{"city": "Tokyo"}')
    req = build_request([
        Message.user((ContentPart.from_text("What is this?"), ContentPart.image_bytes(b"\x89PNG", "image/png"))),
        Message.assistant(tool_calls=(call,)),
        Message.tool_result("call_0", "22C"),
    ], {"tools": [{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}]})
    body = build_payload(req, "llava", False)
    assert body["messages"][0] == {"role": "user", "content": "What is this?", "images": ["iVBORw=="]}
    assert body["messages"][1]["tool_calls"] == [{"id": "call_0", "function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}]
    assert body["messages"][2] == {"role": "tool", "content": "22C", "tool_name": "get_weather", "tool_call_id": "call_0"}
    assert body["tools"][0]["function"]["name"] == "get_weather"


def test_tool_results_without_ids_pair_with_calls_by_order() -> None:
    # Ollama's own history: calls without ids, results without ids; the second result answers the
    # second call, and a result naming its call by id is matched to that call first.
    history: list[Any] = [
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"function": {"name": "get_time", "arguments": {"zone": "Europe/Paris"}}}]},
        {"role": "tool", "content": "18C"},
        {"role": "tool", "content": "14:05"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "a", "function": {"name": "first", "arguments": {}}},
            {"id": "b", "function": {"name": "second", "arguments": {}}}]},
        {"role": "tool", "content": "2", "tool_call_id": "b"},
        {"role": "tool", "content": "1"},
        {"role": "tool", "content": "own", "tool_name": "explicit"},
    ]
    body = build_payload(build_request(history, {}), "llama3.1", False)
    tools = [(m.get("tool_name"), m["content"]) for m in body["messages"] if m["role"] == "tool"]
    assert tools == [("get_weather", "18C"), ("get_time", "14:05"), ("second", "2"), ("first", "1"),
                     ("explicit", "own")]
    assert body["messages"][1]["tool_calls"][0] == {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    assert "tool_call_id" not in body["messages"][2]  # no id invented, none sent as null


def test_tool_results_without_ids_accepted_end_to_end() -> None:
    seen: list[Any] = []

    def handler(req: Any) -> HttpResponse:
        seen.append(json.loads(req.body))
        return HttpResponse(200, {}, json.dumps({"model": "llama3.1", "message": {"role": "assistant", "content": "ok"},
                                                 "done": True, "done_reason": "stop"}).encode())

    provider = OllamaProvider("llama3.1", transport=MockTransport(handler))
    result = provider.generate_sync([
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
        {"role": "tool", "content": "done"}])
    assert result.content == "ok"
    assert seen[0]["messages"][1] == {"role": "tool", "content": "done", "tool_name": "f"}


def test_image_urls_rejected() -> None:
    with pytest.raises(ValidationError, match="bytes, not URLs"):
        OllamaProvider("llava").generate_sync([Message.user((ContentPart.image_url("https://x/a.png"),))])


def test_parse_result_metrics_and_tool_finish() -> None:
    data = {"model": "llama3.1", "message": {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}},
        {"id": "call_x", "function": {"name": "g", "arguments": {}}}]},
        "done": True, "done_reason": "stop", "eval_count": 10, "eval_duration": 2_000_000_000}
    r = parse_result(data, "m")
    assert r.finish_reason == "tool_calls"  # done_reason stays "stop" with tool calls
    assert [(c.id, c.name, c.arguments) for c in r.tool_calls] == [("call_0", "get_weather", {"city": "Tokyo"}),
                                                                   ("call_x", "g", {})]
    assert r.usage is not None
    assert (r.usage.input_tokens, r.usage.output_tokens) == (0, 10)  # absent metrics are 0
    assert r.usage.server_timings_s == {"total": 0.0, "load": 0.0, "prompt_eval": 0.0, "eval": 2.0}


@pytest.mark.parametrize("reason, common", [("stop", "stop"), ("length", "length"), ("load", "other"), (None, "other")])
def test_finish_reasons(reason: str | None, common: str) -> None:
    data = {"message": {"content": "x"}, "done": True, **({"done_reason": reason} if reason else {})}
    assert parse_result(data, "m").finish_reason == common


def test_final_line_text_is_kept() -> None:
    lines = [{"message": {"content": "Hel"}, "done": False}, {"message": {"content": "lo"}, "done": True, "done_reason": "stop"}]
    chunks = stream(OllamaProvider, ndjson(*lines))
    assert "".join(c.content for c in chunks) == "Hello" and chunks[-1].finish_reason == "stop"


# -- catalog -------------------------------------------------------------------------------------

def test_catalog() -> None:
    assert OllamaProvider("llama3.1:latest").capabilities.max_context_window == 131_072
    assert OllamaProvider("phi3").capabilities.max_context_window == 4_096
    assert not OllamaProvider("gemma2").capabilities.supports_function_calling
    assert OllamaProvider("qwen2.5").capabilities.tier is Tier.LOCAL
    for name in ("llama3.1", "llama3.1:70b", "llama3.2", "llama3.2:1b", "mistral", "mixtral", "phi3", "gemma2", "qwen2.5"):
        assert OllamaProvider(name).model_info is not None, name
    with pytest.raises(ValidationError, match="does not support tools"):
        OllamaProvider("gemma2").generate_sync("x", tools=[{"name": "f", "parameters": {"type": "object"}}])


# -- cassettes -----------------------------------------------------------------------------------

def test_cassette_chat(cassette: Any) -> None:
    with cassette("ollama/test_chat.yaml"):
        r = OllamaProvider("llama3.2").generate_sync(
            [Message.system("Answer in one word."), Message.user("Capital of France?")],
            temperature=0.2, max_tokens=64, stop=["\n\n"])
    assert r.usage is not None
    assert (r.content, r.finish_reason, r.usage.input_tokens, r.usage.output_tokens) == ("Paris", "stop", 26, 298)
    assert r.usage.server_timings_s is not None
    assert r.usage.server_timings_s["eval"] == pytest.approx(4.799921)


def test_cassette_stream(cassette: Any) -> None:
    with cassette("ollama/test_chat_stream.yaml"):
        chunks = list(OllamaProvider("llama3").stream_sync("Tell me a joke"))
    assert [c.content for c in chunks] == ["Why", " did", " the", ""]
    assert chunks[-1].usage is not None
    assert chunks[-1].finish_reason == "stop" and (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (17, 50)


def test_cassette_stream_tools(cassette: Any) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    with cassette("ollama/test_chat_stream_tools.yaml"):
        r = join_chunks(OllamaProvider("llama3.1").stream_sync("Weather in Tokyo?", tools=tools))
    assert r.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in r.tool_calls] == [("call_0", "get_weather", {"city": "Tokyo"})]


def test_cassette_health_and_list(cassette: Any) -> None:
    with cassette("ollama/test_health.yaml"):
        p = OllamaProvider("llama3.1")
        status = p.health_check_sync()
        assert status.healthy and status.detail == {"version": "0.5.1", "model_pulled": True}
        assert p.list_models_sync() == ["llama3.1:latest"]
        missing = OllamaProvider("mistral").health_check_sync()
    assert not missing.healthy and "ollama pull mistral" in (missing.error or "")


def test_cassette_show_fills_capabilities(cassette: Any) -> None:
    p = OllamaProvider("qwen2.5:14b")
    assert p.model_info is None and not p.capabilities.supports_function_calling
    with cassette("ollama/test_show.yaml"):
        info = p.fetch_capabilities_sync()
    assert (info.context_window, info.tools, info.vision) == (32_768, True, False)
    assert p.capabilities.max_context_window == 32_768 and p.capabilities.supports_function_calling


def test_cassette_model_not_found(cassette: Any) -> None:
    with cassette("ollama/test_model_not_found.yaml"), pytest.raises(ModelNotFoundError) as info:
        OllamaProvider("llama3", max_retries=0).generate_sync("hi")
    assert "ollama pull llama3" in str(info.value) and info.value.status == 404


# -- errors over real sockets --------------------------------------------------------------------

def ollama_on(server: FakeServer, **kw: Any) -> OllamaProvider:
    kw.setdefault("max_retries", 0)
    return OllamaProvider("llama3.1", server.url, **kw)


@pytest.mark.parametrize("status, cls", [(400, BadRequestError), (404, ModelNotFoundError), (500, ServerError),
                                         (502, ServerError), (503, OverloadedError)])
def test_status_mapping(server: FakeServer, status: int, cls: type) -> None:
    text = {503: "server busy, please try again.  maximum pending requests exceeded"}.get(status, "went wrong")
    server.route("POST", "/api/chat", lambda r, w: w.json(status, {"error": text}))
    with pytest.raises(cls) as info:
        ollama_on(server).generate_sync("hi")
    assert type(info.value) is cls and text in str(info.value)
    with pytest.raises(cls):
        list(ollama_on(server).stream_sync("hi"))


def test_connection_refused_says_no_ollama_answers() -> None:
    port = free_port()
    with pytest.raises(ConnectError, match=f"no Ollama server answers at http://127.0.0.1:{port}"):
        OllamaProvider("llama3.1", f":{port}", max_retries=0).generate_sync("hi")


def test_error_line_mid_stream(server: FakeServer) -> None:
    lines = [b'{"model":"llama3.1","message":{"role":"assistant","content":"Hel"},"done":false}\n',
             b'{"error":"an error was encountered while running the model"}\n']
    server.route("POST", "/api/chat", lambda r, w: w.stream(200, lines, {"Content-Type": "application/x-ndjson"}))
    got = []
    with pytest.raises(ServerError) as info:
        for c in ollama_on(server).stream_sync("hi"):
            got.append(c.content)
    assert isinstance(info.value, StreamError) and info.value.chunks_delivered == 1 and got == ["Hel"]
    assert "while running the model" in str(info.value)


def test_truncated_stream(server: FakeServer) -> None:
    lines = [b'{"message":{"content":"Hel"},"done":false}\n', b'{"message":{"content":"lo"},"done":false}']
    server.route("POST", "/api/chat", lambda r, w: w.stream(200, lines))
    with pytest.raises(TruncatedStreamError, match="done:true"):
        list(ollama_on(server).stream_sync("hi"))


def test_lines_split_across_chunks_crlf(server: FakeServer) -> None:
    raw = (b'{"message":{"content":"a\xc3\xa9"},"done":false}\r\n\r\n'
           b'{"message":{"content":"b"},"done":true,"done_reason":"stop","eval_count":2}')
    server.route("POST", "/api/chat", lambda r, w: w.stream(200, [raw[i:i + 7] for i in range(0, len(raw), 7)]))
    r = join_chunks(ollama_on(server).stream_sync("hi"))
    assert r.usage is not None
    assert (r.content, r.usage.output_tokens) == ("aéb", 2)


def test_raw_generate_endpoint(server: FakeServer) -> None:
    def route(req: Received, reply: Reply) -> None:
        body = req.json()
        assert body["raw"] is True and body["prompt"] == "[INST] hi [/INST]" and body["options"] == {"num_predict": 5}
        if body["stream"]:
            reply.stream(200, [b'{"response":"Hi","done":false}\n', b'{"response":"!","done":true,"done_reason":"length"}\n'])
        else:
            reply.json(200, {"model": "llama3.1", "response": "Hi!", "done": True, "done_reason": "length", "eval_count": 2})

    server.route("POST", "/api/generate", route)
    p = ollama_on(server)
    r = p.generate_raw_sync("[INST] hi [/INST]", max_tokens=5)
    assert (r.content, r.finish_reason) == ("Hi!", "length")
    assert join_chunks(p.stream_raw_sync("[INST] hi [/INST]", max_tokens=5)).content == "Hi!"
    assert p.get_stats().successes == 2


def test_bearer_key_for_hosted_ollama(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "ollama-secret-key-123456")
    server.route("POST", "/api/chat", lambda r, w: w.json(200, {"message": {"content": "ok"}, "done": True}))
    p = ollama_on(server)
    p.generate_sync("hi")
    assert server.received[-1].headers["authorization"] == "Bearer ollama-secret-key-123456"
    assert "ollama-secret" not in repr(p) and "ollama-secret" not in repr(vars(p))


def test_default_configuration_contacts_only_the_local_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Data sovereignty: with defaults, every connection attempt goes to 127.0.0.1:11434."""
    seen: list[Any] = []
    real = socket.socket.connect

    def record(self: socket.socket, address: Any) -> Any:
        seen.append(address)
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", record)
    p = OllamaProvider(retry=RetryPolicy(sleep=lambda s: None))  # defaults, without real backoff sleeps
    for call in (lambda: p.generate_sync("hi"), lambda: list(p.stream_sync("hi")), p.list_models_sync):
        with contextlib.suppress(ConnectError):  # no Ollama on this machine is fine; where we tried to go is the point
            call()
    p.health_check_sync()
    assert seen and {a[:2] for a in seen} == {("127.0.0.1", 11434)}


# -- contract --------------------------------------------------------------------------------------

def nd(*objs: dict[str, Any]) -> list[bytes]:
    return [json.dumps(o).encode() + b"\n" for o in objs]


class TestOllamaContract(ProviderContract):
    provider_id = "ollama"

    def make(self, server: FakeServer, **kwargs: Any) -> OllamaProvider:
        from ..contract import SECRET

        kwargs.setdefault("api_key", SECRET)
        return OllamaProvider("llama3.1", server.url, **kwargs)

    def _serve(self, server: FakeServer, plain: dict[str, Any], lines: list[bytes]) -> None:
        def route(req: Received, reply: Reply) -> None:
            if req.json()["stream"]:
                reply.stream(200, lines, {"Content-Type": "application/x-ndjson"})
            else:
                reply.json(200, plain)

        server.route("POST", "/api/chat", route)
        server.route("GET", "/api/version", lambda r, w: w.json(200, {"version": "0.12.0"}))
        server.route("GET", "/api/tags", lambda r, w: w.json(200, {"models": [{"name": "llama3.1:latest"}]}))

    def serve_text(self, server: FakeServer, text: str) -> None:
        words = text.split(" ")
        final = {"model": "llama3.1", "done": True, "done_reason": "stop", "prompt_eval_count": 9,
                 "eval_count": len(words), "eval_duration": 1000}
        lines = nd(*({"model": "llama3.1", "message": {"role": "assistant", "content": w if i == 0 else " " + w},
                      "done": False} for i, w in enumerate(words)), {**final, "message": {"role": "assistant", "content": ""}})
        self._serve(server, {**final, "message": {"role": "assistant", "content": text}}, lines)

    def serve_tool_call(self, server: FakeServer, name: str, arguments: dict[str, Any]) -> None:
        call = {"function": {"name": name, "arguments": arguments}}
        final = {"model": "llama3.1", "done": True, "done_reason": "stop", "prompt_eval_count": 9, "eval_count": 4}
        plain = {**final, "message": {"role": "assistant", "content": "", "tool_calls": [call]}}
        lines = nd({"model": "llama3.1", "message": {"role": "assistant", "content": "", "tool_calls": [call]}, "done": False},
                   {**final, "message": {"role": "assistant", "content": ""}})
        self._serve(server, plain, lines)

    def serve_error(self, server: FakeServer, status: int, message: str) -> None:
        server.route("POST", "/api/chat", lambda r, w: w.json(status, {"error": message}))
        server.route("GET", "/api/version", lambda r, w: w.json(status, {"error": message}))

    def serve_truncated_stream(self, server: FakeServer, text: str) -> None:
        words = text.split(" ")
        self._serve(server, {}, nd(*({"message": {"content": w if i == 0 else " " + w}, "done": False}
                                     for i, w in enumerate(words))))

    def serve_stream_error(self, server: FakeServer, text: str) -> None:
        self._serve(server, {}, nd({"message": {"content": text}, "done": False}, {"error": "runner crashed"}))

    # 401 and 403 come only from hosted Ollama; the shared table still applies to them.
