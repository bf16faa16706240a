"""What each vendor's server sends, and the faults a loopback server can inject into it.

A ``Fault`` turns a vendor's well-formed answer into a misbehaving one on a real socket: stalls,
cut connections, garbage bodies, redirects. ``expected`` says what the library must raise.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.errors import (
    InvalidResponseError,
    ProtocolError,
    ProviderError,
    RequestTimeout,
    ServerError,
    StreamError,
    TruncatedStreamError,
)
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.provider import Provider

from ..parrot import ParrotProvider
from ..providers.test_openai_responses import message as responses_message
from ..providers.test_openai_responses import response as responses_answer
from ..providers.test_openai_responses import text_stream as responses_stream
from ..server import (
    FakeServer,
    Received,
    Reply,
    anthropic_message,
    anthropic_sse,
    openai_completion,
    openai_sse,
)

TEXT = "all systems nominal"


@dataclass(frozen=True)
class Wire:
    """One vendor's endpoint and well-formed answers."""

    name: str
    path: str
    ok_json: Callable[[], dict[str, Any]]
    frames: Callable[[], list[bytes]]  # a complete stream, terminator included, one frame each
    error_body: Callable[[int], dict[str, Any]]
    error_frame: bytes  # an error reported inside a 200 stream
    make: Callable[..., Provider]
    stream_type: str = "text/event-stream"
    content_frames: int = 1  # frames up to and including the first that carries text
    end_frames: int = 1  # frames that make up the terminator
    stream_field: str = "stream"  # the body field that asks for a stream


def _ollama_frames() -> list[bytes]:
    words = TEXT.split(" ")
    lines = [{"model": "llama3.1", "message": {"role": "assistant", "content": w if i == 0 else " " + w},
              "done": False} for i, w in enumerate(words)]
    lines.append({"model": "llama3.1", "message": {"role": "assistant", "content": ""}, "done": True,
                  "done_reason": "stop", "eval_count": 3})
    return [json.dumps(x).encode() + b"\n" for x in lines]


WIRES = {
    "openai": Wire(
        "openai", "/v1/chat/completions", lambda: openai_completion(TEXT), lambda: openai_sse(TEXT),
        lambda status: {"error": {"message": "upstream trouble", "type": "server_error", "code": None}},
        b'data: {"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}\n\n',
        lambda url, **kw: OpenAIProvider(model="gpt-4o-mini", base_url=url + "/v1", api_key="sk-fault-KEY-123", **kw),
        content_frames=3,
    ),
    "responses": Wire(
        "responses", "/v1/responses", lambda: responses_answer([responses_message(TEXT)]),
        lambda: responses_stream(TEXT),
        lambda status: {"error": {"message": "upstream trouble", "type": "server_error", "code": None}},
        b'event: error\ndata: {"type":"error","code":"server_error","message":"The server had an error"}\n\n',
        lambda url, **kw: OpenAIProvider(model="gpt-6-luna", base_url=url + "/v1", api_key="sk-fault-KEY-123",
                                         api="responses", **kw),
        content_frames=3, end_frames=2,
    ),
    "anthropic": Wire(
        "anthropic", "/v1/messages", lambda: anthropic_message(TEXT), lambda: anthropic_sse(TEXT),
        lambda status: {"type": "error", "error": {"type": "api_error", "message": "upstream trouble"}},
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n',
        lambda url, **kw: AnthropicProvider(model="sonnet", base_url=url, api_key="sk-ant-fault-KEY-123", **kw),
        content_frames=3, end_frames=2,
    ),
    "ollama": Wire(
        "ollama", "/api/chat",
        lambda: {"model": "llama3.1", "message": {"role": "assistant", "content": TEXT}, "done": True,
                 "done_reason": "stop", "eval_count": 3},
        _ollama_frames,
        lambda status: {"error": "upstream trouble"},
        b'{"error":"an error was encountered while running the model"}\n',
        lambda url, **kw: OllamaProvider("llama3.1", url, api_key="ollama-fault-KEY-123", **kw),
        stream_type="application/x-ndjson",
    ),
    "parrot": Wire(
        "parrot", "/v2/speak",
        lambda: {"model": "polly-1", "said": TEXT, "why": "done", "cost": {"in": 3, "out": 3}},
        lambda: [*(b'data: {"piece": "%s"}\n\n' % (w if i == 0 else " " + w).encode()
                   for i, w in enumerate(TEXT.split(" "))),
                 b'event: end\ndata: {"why": "done", "cost": {"in": 3, "out": 3}}\n\n'],
        lambda status: {"problem": {"kind": "broken", "text": "upstream trouble"}},
        b'event: problem\ndata: {"problem": {"kind": "busy", "text": "try later"}}\n\n',
        lambda url, **kw: ParrotProvider(base_url=url, api_key="parrot-fault-KEY-123", **kw),
        stream_field="live",
    ),
}


@dataclass(frozen=True)
class Fault:
    """A misbehaviour and the error it must produce.

    Attributes:
        name: what happens.
        plain: expected error for a non-streaming call (None: the fault does not apply).
        stream: expected error for a streaming call (None: does not apply).
        after_first_chunk: in a stream, the fault strikes after content was delivered (a chain
            must then raise instead of failing over).
        serve: writes the faulty answer.
    """

    name: str
    plain: type[ProviderError] | None
    stream: type[ProviderError] | None
    after_first_chunk: bool
    serve: Callable[[Wire, bool, Received, Reply, threading.Event, FakeServer], None]


def _head_stream(w: Wire, reply: Reply) -> None:
    reply.head(200, {"Content-Type": w.stream_type}, chunked=True)


def _first_content(w: Wire) -> list[bytes]:
    """The frames up to and including the first one that carries text."""
    return w.frames()[:w.content_frames]


def status_503(w: Wire, stream: bool, req: Received, reply: Reply, gate: threading.Event, other: FakeServer) -> None:
    reply.json(503, w.error_body(503))


def headers_then_stall(w: Wire, stream: bool, req: Received, reply: Reply, gate: threading.Event,
                       other: FakeServer) -> None:
    if stream:
        _head_stream(w, reply)
    else:
        reply.head(200, {"Content-Type": "application/json"}, length=len(json.dumps(w.ok_json())))
    gate.wait(10)


def _partial(w: Wire, stream: bool, reply: Reply) -> None:
    """The start of an answer: the first content frames of a stream, or half of a JSON body."""
    if stream:
        _head_stream(w, reply)
        for f in _first_content(w):
            reply.chunk(f)
    else:
        body = json.dumps(w.ok_json()).encode()
        reply.head(200, {"Content-Type": "application/json"}, length=len(body))
        reply.raw(body[: len(body) // 2])


def stall_mid_body(w: Wire, stream: bool, req: Received, reply: Reply, gate: threading.Event,
                   other: FakeServer) -> None:
    _partial(w, stream, reply)
    gate.wait(10)


def close_mid_body(w: Wire, stream: bool, req: Received, reply: Reply, gate: threading.Event,
                   other: FakeServer) -> None:
    _partial(w, stream, reply)
    reply.reset()


def malformed_json(w: Wire, stream: bool, req: Received, reply: Reply, gate: threading.Event,
                   other: FakeServer) -> None:
    if stream:
        bad = b"data: {oops\n\n" if w.stream_type == "text/event-stream" else b"{oops\n"
        reply.stream(200, [bad], {"Content-Type": w.stream_type})
    else:
        reply.body(200, b'{"oops', {"Content-Type": "application/json"})


def html_error(w: Wire, stream: bool, req: Received, reply: Reply, gate: threading.Event, other: FakeServer) -> None:
    reply.body(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", {"Content-Type": "text/html"})


def empty_200(w: Wire, stream: bool, req: Received, reply: Reply, gate: threading.Event, other: FakeServer) -> None:
    reply.body(200, b"", {"Content-Type": w.stream_type if stream else "application/json"})


def wrong_content_type(w: Wire, stream: bool, req: Received, reply: Reply, gate: threading.Event,
                       other: FakeServer) -> None:
    reply.body(200, b"Service temporarily unavailable", {"Content-Type": "text/plain"})


def invalid_utf8(w: Wire, stream: bool, req: Received, reply: Reply, gate: threading.Event,
                 other: FakeServer) -> None:
    if stream:
        sse = w.stream_type == "text/event-stream"
        bad = (b'data: {"x": "\xff' if sse else b'{"x": "\xff')
        rest = (b'\xfe"}\n\n' if sse else b'\xfe"}\n')
        _head_stream(w, reply)
        for f in _first_content(w):
            reply.chunk(f)
        reply.chunk(bad)  # the invalid bytes arrive split across two chunks
        reply.chunk(rest)
        reply.end_chunks()
    else:
        reply.body(200, b'{"model": "\xff\xfe"}', {"Content-Type": "application/json"})


def no_terminator(w: Wire, stream: bool, req: Received, reply: Reply, gate: threading.Event,
                  other: FakeServer) -> None:
    reply.stream(200, w.frames()[:-w.end_frames], {"Content-Type": w.stream_type})


def error_mid_stream(w: Wire, stream: bool, req: Received, reply: Reply, gate: threading.Event,
                     other: FakeServer) -> None:
    reply.stream(200, [*_first_content(w), w.error_frame], {"Content-Type": w.stream_type})


def redirect(w: Wire, stream: bool, req: Received, reply: Reply, gate: threading.Event, other: FakeServer) -> None:
    reply.body(307, b"", {"Location": other.url + w.path})


FAULTS = [
    Fault("status_503", ServerError, ServerError, False, status_503),
    Fault("headers_then_stall", RequestTimeout, RequestTimeout, False, headers_then_stall),
    Fault("stall_mid_body", RequestTimeout, RequestTimeout, True, stall_mid_body),
    Fault("close_mid_body", ProtocolError, ProtocolError, True, close_mid_body),
    Fault("malformed_json", InvalidResponseError, StreamError, False, malformed_json),
    Fault("html_error_page", ServerError, ServerError, False, html_error),
    Fault("empty_200", InvalidResponseError, TruncatedStreamError, False, empty_200),
    Fault("wrong_content_type", InvalidResponseError, StreamError, False, wrong_content_type),
    Fault("invalid_utf8_split", InvalidResponseError, StreamError, True, invalid_utf8),
    Fault("stream_without_terminator", None, TruncatedStreamError, True, no_terminator),
    Fault("error_mid_stream", None, StreamError, True, error_mid_stream),
    Fault("redirect_to_other_host", InvalidResponseError, InvalidResponseError, False, redirect),
]
