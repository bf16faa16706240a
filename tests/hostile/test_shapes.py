"""Only typed errors, whatever shape of JSON the server sends.

A server may answer 200 with JSON that is well-formed but not what the API documents: a list for
an object, text for a count, nesting 100,000 deep, a tool-call index of a billion, a retry-after
in year 99999. Each call must end in a valid result or a ``ProviderError`` (an
``InvalidResponseError`` or ``StreamError`` for such answers, which allow failover): never a bare
``TypeError`` or ``RecursionError``. Table rows name the shapes seen in the wild; the property
tests feed random JSON, and random mutations of valid answers, through real loopback sockets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.base import ProviderError, RateLimitError
from mirror_providers.errors import InvalidResponseError, StreamError
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import FallbackChain, ProviderPool
from mirror_providers.retry import parse_retry_after
from mirror_providers.types import GenerationResult

from ..server import (
    FakeServer,
    Received,
    Reply,
    add_openai_routes,
    anthropic_message,
    anthropic_sse,
    openai_completion,
    openai_sse,
)

PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages", "ollama": "/api/chat"}
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


def make(vendor: str, url: str) -> Any:
    if vendor == "openai":
        return OpenAIProvider(api_key="sk-test", model="gpt-4o-mini", base_url=url + "/v1", max_retries=0)
    if vendor == "anthropic":
        return AnthropicProvider(api_key="sk-ant-test", model="claude-sonnet-4-5", base_url=url, max_retries=0)
    return OllamaProvider("llama3.1", url, max_retries=0)


def ollama_answer(text: str = "ok") -> dict[str, Any]:
    return {"model": "llama3.1", "message": {"role": "assistant", "content": text}, "done": True,
            "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 1}


def ollama_lines(text: str = "ok") -> list[bytes]:
    return [json.dumps({"model": "llama3.1", "message": {"role": "assistant", "content": text}, "done": False}).encode()
            + b"\n", json.dumps({**ollama_answer(""), "done": True}).encode() + b"\n"]


VALID = {"openai": lambda: openai_completion("ok"), "anthropic": lambda: anthropic_message("ok"),
         "ollama": ollama_answer}


def sse(frames: list[Any], event: str | None = None) -> list[bytes]:
    head = f"event: {event}\n".encode() if event else b""
    return [head + b"data: " + (f if isinstance(f, bytes) else json.dumps(f).encode()) + b"\n\n" for f in frames]


def outcome(call: Callable[[], Any]) -> Any:
    """The call's result, or its error if that is a ProviderError; anything else fails the test."""
    try:
        return call()
    except ProviderError as exc:
        return exc


# -- plain answers ------------------------------------------------------------------------------

def with_(base: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(base))
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return dict(out)


ODD_ANSWERS: dict[str, list[tuple[str, Any]]] = {
    "openai": [
        ("a list", [1, 2]), ("a string", "ok"), ("null", None), ("a number", 5),
        ("no choices", {"choices": []}), ("choices a string", {"choices": "abc"}),
        ("choice a string", {"choices": ["x"]}), ("message null", {"choices": [{"message": None}]}),
        ("message a list", {"choices": [{"message": [1]}]}),
        ("content a number", with_(openai_completion("ok"), ("choices", 0, "message", "content"), 5)),
        ("content a dict", with_(openai_completion("ok"), ("choices", 0, "message", "content"), {"a": 1})),
        ("finish_reason a dict", with_(openai_completion("ok"), ("choices", 0, "finish_reason"), {"x": 1})),
        ("usage a list", with_(openai_completion("ok"), ("usage",), [1])),
        ("usage text", with_(openai_completion("ok"), ("usage", "prompt_tokens"), "many")),
        ("usage huge float", with_(openai_completion("ok"), ("usage", "prompt_tokens"), 1e308)),
        ("usage negative", with_(openai_completion("ok"), ("usage", "completion_tokens"), -1)),
        ("usage details a list", with_(openai_completion("ok"), ("usage", "prompt_tokens_details"), [])),
        ("tool calls a dict", with_(openai_completion("ok"), ("choices", 0, "message", "tool_calls"), {"a": 1})),
        ("tool call a string", with_(openai_completion("ok"), ("choices", 0, "message", "tool_calls"), ["x"])),
        ("tool function a list", with_(openai_completion("ok"), ("choices", 0, "message", "tool_calls"),
                                       [{"id": "c", "function": [1]}])),
    ],
    "anthropic": [
        ("a list", [1, 2]), ("a string", "ok"), ("null", None), ("no content", {"type": "message"}),
        ("content a dict", with_(anthropic_message("ok"), ("content",), {"type": "text"})),
        ("content a string", with_(anthropic_message("ok"), ("content",), "ok")),
        ("block a number", with_(anthropic_message("ok"), ("content",), [5])),
        ("text a number", with_(anthropic_message("ok"), ("content", 0, "text"), 5)),
        ("stop_reason a list", with_(anthropic_message("ok"), ("stop_reason",), [1])),
        ("usage a string", with_(anthropic_message("ok"), ("usage",), "x")),
        ("usage text", with_(anthropic_message("ok"), ("usage", "input_tokens"), "5")),
        ("usage a bool", with_(anthropic_message("ok"), ("usage", "output_tokens"), True)),
        ("tool input a list", with_(anthropic_message("ok"), ("content",),
                                    [{"type": "tool_use", "id": "t", "name": "f", "input": [1]}])),
    ],
    "ollama": [
        ("a list", [1, 2]), ("a string with error", "error"), ("null", None), ("no message", {"done": True}),
        ("message a list", with_(ollama_answer(), ("message",), [1])),
        ("content a number", with_(ollama_answer(), ("message", "content"), 5)),
        ("eval_count text", with_(ollama_answer(), ("eval_count",), "7")),
        ("duration text", with_(ollama_answer(), ("done_reason",), {"a": 1})),
        ("duration huge", {**ollama_answer(), "total_duration": 1e308}),
        ("tool calls a string", with_(ollama_answer(), ("message", "tool_calls"), "x")),
        ("tool call function a list", with_(ollama_answer(), ("message", "tool_calls"), [{"function": [1]}])),
        ("response a number", {"response": 5, "done": True}),
    ],
}
ODD_BODIES = [("nested 100k deep", DEEP), ("object nested 100k deep", DEEP_OBJECT)]


def _answer_cases() -> Iterator[Any]:
    for vendor, rows in ODD_ANSWERS.items():
        for name, body in rows:
            yield pytest.param(vendor, json.dumps(body).encode(), id=f"{vendor}-{name}")
        for name, raw in ODD_BODIES:
            yield pytest.param(vendor, raw, id=f"{vendor}-{name}")


ANSWER_CASES = list(_answer_cases())


@pytest.mark.parametrize("vendor,body", ANSWER_CASES)
def test_an_odd_answer_is_a_typed_error_and_a_chain_moves_on(vendor: str, body: bytes) -> None:
    with FakeServer() as odd, FakeServer() as good:
        odd.route("POST", PATHS[vendor], lambda r, w: w.body(200, body, {"Content-Type": "application/json"}))
        add_openai_routes(good, "from the good one")
        got = outcome(lambda: make(vendor, odd.url).generate_sync("hi"))
        if isinstance(got, ProviderError):
            assert isinstance(got, InvalidResponseError) and got.failover_ok, got
        else:  # a shape the parser may read (a text block that holds a number is not one)
            assert isinstance(got, GenerationResult) and isinstance(got.content, str)
        chain = FallbackChain([make(vendor, odd.url), make("openai", good.url)])
        result = chain.generate_sync("hi")
        assert result.content == "from the good one" or isinstance(got, GenerationResult)


@pytest.mark.parametrize("vendor,body", ANSWER_CASES[::4])
def test_a_pool_routes_around_an_odd_answer(vendor: str, body: bytes) -> None:
    with FakeServer() as odd, FakeServer() as good:
        odd.route("POST", PATHS[vendor], lambda r, w: w.body(200, body, {"Content-Type": "application/json"}))
        add_openai_routes(good, "good")
        pool = ProviderPool([make(vendor, odd.url), make("openai", good.url)], strategy="round_robin")
        for _ in range(4):
            assert isinstance(pool.generate_sync("hi"), GenerationResult)


# -- streams ------------------------------------------------------------------------------------

ODD_STREAMS: dict[str, list[tuple[str, list[bytes]]]] = {
    "openai": [
        ("data a list", sse([[1, 2]])), ("data a string", sse(["x"])), ("data a number", sse([5])),
        ("choices a dict", sse([{"choices": {"a": 1}}])), ("choice a string", sse([{"choices": ["x"]}])),
        ("delta a string", sse([{"choices": [{"index": 0, "delta": "hi"}]}])),
        ("content a number", sse([{"choices": [{"index": 0, "delta": {"content": 5}}]}])),
        ("content a list", sse([{"choices": [{"index": 0, "delta": {"content": ["a"]}}]}])),
        ("finish a list", sse([{"choices": [{"index": 0, "delta": {}, "finish_reason": [1]}]}])),
        ("usage text", sse([{"choices": [], "usage": {"prompt_tokens": "x"}}])),
        ("usage a list", sse([{"choices": [], "usage": [1]}])),
        ("tool index a string", sse([{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": "0"}]}}]}])),
        ("tool index a billion", sse([{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 10 ** 9}]}}]}])),
        ("tool index negative", sse([{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": -3}]}}]}])),
        ("tool index a dict", sse([{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": {}}]}}]}])),
        ("tool calls a dict", sse([{"choices": [{"index": 0, "delta": {"tool_calls": {"a": 1}}}]}])),
        ("tool function a list", sse([{"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "c", "function": [1]}]}}]}])),
        ("nested 100k deep", sse([DEEP])),
        ("error a list", sse([{"error": [1, 2]}])),
        ("error message a dict", sse([{"error": {"message": {"a": 1}, "type": 5, "code": [1]}}])),
    ],
    "anthropic": [
        ("data a list", sse([[1]], "message_start")),
        ("message a string", sse([{"type": "message_start", "message": "x"}], "message_start")),
        ("usage a string", sse([{"type": "message_start", "message": {"usage": "x"}}], "message_start")),
        ("delta a string", sse([{"type": "content_block_delta", "index": 0, "delta": "x"}], "content_block_delta")),
        ("text a number", sse([{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta",
                                                                                    "text": 5}}])),
        ("index text", sse([{"type": "content_block_start", "index": "first",
                             "content_block": {"type": "tool_use", "id": "t", "name": "f"}}])),
        ("index a list", sse([{"type": "content_block_start", "index": [0],
                               "content_block": {"type": "tool_use", "id": "t", "name": "f"}}])),
        ("delta usage text", [*anthropic_sse("ok")[:-2], *sse([{"type": "message_delta", "delta": {},
                                                                "usage": {"output_tokens": "x"}}]),
                              anthropic_sse("ok")[-1]]),
        ("error a list", sse([{"type": "error", "error": [1]}], "error")),
        ("nested 100k deep", sse([DEEP], "message_start")),
        ("unknown block type", [*anthropic_sse("ok")[:1], *sse([{"type": "content_block_start", "index": 1,
                                                                 "content_block": {"type": "future_block"}}]),
                                *anthropic_sse("ok")[1:]]),
    ],
    "ollama": [
        ("message a list", [b'{"message": [1], "done": false}\n']),
        ("message a string", [b'{"message": "x", "done": false}\n']),
        ("content a number", [b'{"message": {"content": 5}, "done": false}\n']),
        ("done a string", [b'{"message": {"content": "x"}, "done": "yes"}\n']),
        ("final usage text", [b'{"message": {"content": "x"}, "done": false}\n',
                              b'{"done": true, "eval_count": "7"}\n']),
        ("final duration a dict", [b'{"done": true, "total_duration": {"a": 1}}\n']),
        ("tool calls a dict", [b'{"message": {"content": "", "tool_calls": {"a": 1}}, "done": false}\n']),
        ("error a list", [b'{"error": [1, 2]}\n']),
        ("nested 100k deep", [DEEP + b"\n"]),
    ],
}


def _stream_cases() -> Iterator[Any]:
    for vendor, rows in ODD_STREAMS.items():
        for name, frames in rows:
            yield pytest.param(vendor, frames, id=f"{vendor}-{name}")


@pytest.mark.parametrize("vendor,frames", list(_stream_cases()))
def test_an_odd_stream_is_a_typed_error_and_a_chain_moves_on(vendor: str, frames: list[bytes]) -> None:
    ctype = "application/x-ndjson" if vendor == "ollama" else "text/event-stream"
    with FakeServer() as odd, FakeServer() as good:
        odd.route("POST", PATHS[vendor], lambda r, w: w.stream(200, frames, {"Content-Type": ctype}))
        add_openai_routes(good, "from the good one")
        got = outcome(lambda: list(make(vendor, odd.url).stream_sync("hi")))
        assert isinstance(got, (StreamError, list)), got
        if isinstance(got, list):
            assert all(isinstance(c.content, str) for c in got)
        chain = FallbackChain([make(vendor, odd.url), make("openai", good.url)])
        if isinstance(got, StreamError) and got.chunks_delivered:
            # Text already went out: another answer after it would be two answers spliced.
            with pytest.raises(StreamError):
                list(chain.stream_sync("hi"))
            return
        text = "".join(c.content for c in chain.stream_sync("hi"))
        assert text == "from the good one" or isinstance(got, list)


# -- error bodies and headers -------------------------------------------------------------------

ODD_ERROR_BODIES = [b"[1, 2]", b'"slow down"', b"5", b"null", b'{"error": 5}', b'{"error": [1]}',
                    b'{"error": {"message": ["x"], "type": {"a": 1}, "code": {"b": 2}}}',
                    b'{"error": {"message": "m", "details": "x"}}', b'{"error": {"details": {"error_code": [1]}}}',
                    DEEP, DEEP_OBJECT, b'{"error": {"code": true, "type": null}}']
ODD_RETRY_AFTER = ["Fri, 31 Dec 99999 23:59:59 GMT", "1e400", "nan", "-5", "9" * 400, "inf", "Mon, 40 Foo 2026",
                   "Thu, 01 Jan 1970 00:00:00 GMT", "\u00e9t\u00e9"]


@pytest.mark.parametrize("vendor", ["openai", "anthropic", "ollama"])
@pytest.mark.parametrize("how", ["generate", "stream"])
def test_an_odd_error_body_keeps_its_status_class(server: FakeServer, vendor: str, how: str) -> None:
    for i, body in enumerate(ODD_ERROR_BODIES):
        retry_after = ODD_RETRY_AFTER[i % len(ODD_RETRY_AFTER)]
        server.route("POST", PATHS[vendor], lambda r, w, b=body, ra=retry_after: w.body(  # type: ignore[misc]
            429, b, {"Content-Type": "application/json", "retry-after": ra.encode("utf-8").decode("latin-1")}))
        provider = make(vendor, server.url)
        got = outcome(lambda p=provider: list(p.stream_sync("hi")) if how == "stream" else p.generate_sync("hi"))  # type: ignore[misc]
        assert isinstance(got, RateLimitError), (body[:40], got)
        assert got.retry_after is None or 0 <= got.retry_after < 1e6
        assert len(got.message) < 1000


def test_a_retry_after_the_clock_cannot_hold_is_ignored() -> None:
    for value in ODD_RETRY_AFTER:
        wait = parse_retry_after({"retry-after": value, "retry-after-ms": value})
        assert wait is None or wait == 0.0


@given(st.text(max_size=80))
@settings(max_examples=200, deadline=None)
def test_any_retry_after_parses_to_a_finite_wait_or_none(value: str) -> None:
    wait = parse_retry_after({"retry-after": value})
    assert wait is None or 0 <= wait < float("inf")


# -- health and model listings ------------------------------------------------------------------

ODD_LISTINGS = [b"[1, 2]", b'"x"', b"null", b'{"data": {"a": 1}}', b'{"models": "x"}', b'{"data": [5, null]}',
                b'{"models": [1, {"name": 5}]}', DEEP, b"not json"]


@pytest.mark.parametrize("vendor", ["openai", "anthropic", "ollama"])
def test_health_check_never_raises_and_listings_are_typed(server: FakeServer, vendor: str) -> None:
    for body in ODD_LISTINGS:
        for path in ("/v1/models", "/api/tags", "/api/version", "/v1/models/claude-sonnet-4-5-20250929"):
            server.route("GET", path, lambda r, w, b=body: w.body(200, b, {"Content-Type": "application/json"}))  # type: ignore[misc]
        provider = make(vendor, server.url)
        status = provider.health_check_sync()
        assert status.healthy in (True, False) and (status.healthy or status.error)
        got = outcome(provider.list_models_sync)
        assert isinstance(got, (list, InvalidResponseError)), got
        if isinstance(got, list):
            assert all(isinstance(m, str) for m in got)


def test_anthropic_model_paging_stops_on_a_repeated_cursor(server: FakeServer) -> None:
    server.route("GET", "/v1/models", lambda r, w: w.json(200, {"data": [{"id": "m"}], "has_more": True,
                                                                "last_id": "same"}))
    with pytest.raises(InvalidResponseError, match="already given"):
        make("anthropic", server.url).list_models_sync()
    assert len(server.received) == 2


def test_anthropic_model_paging_is_bounded(server: FakeServer) -> None:
    pages = iter(range(10 ** 6))
    server.route("GET", "/v1/models", lambda r, w: w.json(200, {"data": [{"id": "m"}], "has_more": True,
                                                                "last_id": f"c{next(pages)}"}))
    with pytest.raises(InvalidResponseError, match="100 pages"):
        make("anthropic", server.url).list_models_sync()
    assert len(server.received) == 100


def test_anthropic_model_paging_follows_real_cursors(server: FakeServer) -> None:
    def models(req: Received, reply: Reply) -> None:
        after = req.path.partition("after_id=")[2]
        page = int(after[1:]) + 1 if after else 0
        reply.json(200, {"data": [{"id": f"m{page}"}], "has_more": page < 4, "last_id": f"c{page}"})

    server.route("GET", "/v1/models", models)
    assert make("anthropic", server.url).list_models_sync() == [f"m{i}" for i in range(5)]


# -- random shapes ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths_of(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any]) -> Any:
    """A valid answer with one field replaced by a random value, or a random value outright."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    path = draw(st.sampled_from(paths_of(valid)))
    return with_(valid, path, draw(json_values))


class Feed:
    """A loopback server whose answer each hypothesis example sets."""

    def __init__(self) -> None:
        self.body = b"{}"
        self.frames: list[bytes] = []
        self.server = FakeServer()
        self.server.__enter__()
        for path in PATHS.values():
            self.server.route("POST", path, self._reply)

    def _reply(self, req: Received, reply: Reply) -> None:
        if req.json().get("stream"):
            reply.stream(200, self.frames)
        else:
            reply.body(200, self.body, {"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def feed() -> Iterator[Feed]:
    f = Feed()
    yield f
    f.server.__exit__(None, None, None)


@pytest.mark.parametrize("vendor", ["openai", "anthropic", "ollama"])
def test_random_answers_give_a_result_or_a_typed_error(feed: Feed, vendor: str) -> None:
    provider = make(vendor, feed.server.url)

    @given(mutated(VALID[vendor]()))  # type: ignore[no-untyped-call]
    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
    def check(body: Any) -> None:
        feed.body = json.dumps(body).encode()
        got = outcome(lambda: provider.generate_sync("hi"))
        assert isinstance(got, (GenerationResult, InvalidResponseError)), got
        if isinstance(got, GenerationResult):
            assert isinstance(got.content, str) and all(isinstance(c.arguments_json, str) for c in got.tool_calls)
            if got.usage is not None:
                assert got.usage.input_tokens >= 0 and got.usage.output_tokens >= 0

    check()


def _valid_frames(vendor: str) -> list[Any]:
    if vendor == "openai":
        return [json.loads(f[6:]) for f in openai_sse("ok there")[:-1]]
    if vendor == "anthropic":
        return [json.loads(f.split(b"data: ", 1)[1]) for f in anthropic_sse("ok there")]
    return [json.loads(line) for line in ollama_lines("ok")]


def _encode(vendor: str, frames: list[Any]) -> list[bytes]:
    if vendor == "openai":
        return [b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames] + [b"data: [DONE]\n\n"]
    if vendor == "anthropic":
        return [f"event: {f.get('type') if isinstance(f, dict) else 'x'}\ndata: {json.dumps(f)}\n\n".encode()
                for f in frames]
    return [json.dumps(f).encode() + b"\n" for f in frames]


@pytest.mark.parametrize("vendor", ["openai", "anthropic", "ollama"])
def test_random_stream_events_give_chunks_or_a_typed_error(feed: Feed, vendor: str) -> None:
    provider = make(vendor, feed.server.url)
    valid = _valid_frames(vendor)

    @given(st.integers(0, len(valid) - 1), st.data())
    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
    def check(which: int, data: st.DataObject) -> None:
        frames = list(valid)
        frames[which] = data.draw(mutated(valid[which]) if isinstance(valid[which], dict) else json_values)
        feed.frames = _encode(vendor, frames)
        got = outcome(lambda: list(provider.stream_sync("hi")))
        assert isinstance(got, (list, StreamError)), got
        if isinstance(got, list):
            assert all(isinstance(c.content, str) for c in got)

    check()


@given(mutated(anthropic_message("ok")) | mutated(openai_completion("ok")) | mutated(ollama_answer()))
@settings(max_examples=150, deadline=None)
def test_random_error_bodies_keep_their_status_class(body: Any) -> None:
    """The error-body reader, fed directly (a socket adds nothing to this one): any JSON gives the
    status's class with a message of bounded size."""
    raw = json.dumps({"error": body} if isinstance(body, dict) and len(body) % 2 else body).encode()
    for vendor in ("openai", "anthropic", "ollama"):
        provider = make(vendor, "http://127.0.0.1:9")
        err = provider._error_from_response(429, {"retry-after": "3"}, raw)
        assert isinstance(err, RateLimitError) and err.retry_after == 3.0 and len(err.message) < 1000
