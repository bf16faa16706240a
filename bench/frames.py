"""Package frames per streamed event: how many calls into ``mirror_providers`` code (function calls
and generator resumptions) one event costs, and how deep the package's stack is when a chunk is made.

    python bench/frames.py

Each vendor streams 2,000 one-token events from a ``MockTransport`` (one event per byte chunk, as
they arrive from a real server); the counts are per event, the fixed per-stream cost spread over it.
"""

from __future__ import annotations

import json
import os
import sys

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.transport import HttpResponse, MockTransport, StreamResponse

EVENTS = 2000
PACKAGE = os.path.dirname(os.path.abspath(sys.modules["mirror_providers"].__file__ or ""))


def _openai() -> list[bytes]:
    one = json.dumps({"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "hi"}}]})
    end = json.dumps({"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return [f"data: {one}\n\n".encode()] * EVENTS + [f"data: {end}\n\n".encode(), b"data: [DONE]\n\n"]


def _anthropic() -> list[bytes]:
    start = {"type": "message_start", "message": {"model": "claude-haiku-4-5", "usage": {"input_tokens": 3}}}
    one = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}
    stop = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": EVENTS}}

    def ev(name: str, data: object) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    return ([ev("message_start", start)] + [ev("content_block_delta", one)] * EVENTS
            + [ev("message_delta", stop), ev("message_stop", {"type": "message_stop"})])


def _ollama() -> list[bytes]:
    one = json.dumps({"model": "llama3.1", "message": {"role": "assistant", "content": "hi"}, "done": False})
    end = json.dumps({"model": "llama3.1", "message": {"role": "assistant", "content": ""}, "done": True,
                      "done_reason": "stop", "prompt_eval_count": 3, "eval_count": EVENTS})
    return [(one + "\n").encode()] * EVENTS + [(end + "\n").encode()]


def measure(provider_cls: type, body: list[bytes], **kwargs: object) -> tuple[float, int]:
    transport = MockTransport(lambda r: StreamResponse(200, {}, iter(list(body))) if b'"stream":true' in (r.body or b"")
                              else HttpResponse(200, {}, b"{}"))
    provider = provider_cls(transport=transport, max_retries=0, **kwargs)
    calls = 0
    deepest = 0

    def profile(frame, event, arg):  # type: ignore[no-untyped-def]
        nonlocal calls, deepest
        if event == "call" and frame.f_code.co_filename.startswith(PACKAGE):
            calls += 1
            if frame.f_code.co_name == "fast_stream_chunk":
                depth, f = 0, frame
                while f is not None:
                    depth += f.f_code.co_filename.startswith(PACKAGE)
                    f = f.f_back
                deepest = max(deepest, depth)

    sys.setprofile(profile)
    try:
        chunks = list(provider.stream_sync("hi"))
    finally:
        sys.setprofile(None)
    assert len(chunks) == EVENTS + 1, len(chunks)
    return calls / EVENTS, deepest


def main() -> None:
    rows = [("openai", OpenAIProvider, _openai(), {"api_key": "sk-x"}),
            ("anthropic", AnthropicProvider, _anthropic(), {"api_key": "sk-x"}),
            ("ollama", OllamaProvider, _ollama(), {})]
    print(f"{'vendor':<10} {'package calls/event':>20} {'package stack depth at a chunk':>32}")
    for name, cls, body, kwargs in rows:
        per_event, depth = measure(cls, body, **kwargs)
        print(f"{name:<10} {per_event:>20.2f} {depth:>32}")


if __name__ == "__main__":
    main()
