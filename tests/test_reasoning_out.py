"""Reasoning out and replay: thinking text on results and chunks, signed blocks kept on
``to_message()`` and sent back unchanged, and dropped for another vendor. The Anthropic bytes are
docs/protocols.md's (real claude-opus-5 answer; real thinking stream, abridged)."""

from __future__ import annotations

import json
from typing import Any

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.local import OllamaProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.transport import HttpRequest, HttpResponse, MockTransport, StreamResponse
from mirror_providers.types import Message, ReasoningBlock, ToolCall, join_chunks

OPUS_5_ANSWER: dict[str, Any] = {
    "id": "msg_011CdMGQkaWBowzKjDD9nzPh", "type": "message", "role": "assistant", "model": "claude-opus-5",
    "content": [
        {"type": "thinking", "thinking": "This is a straightforward arithmetic problem, so I'll just provide the "
                                         "answer directly.", "signature": "EqSIG1"},
        {"type": "text", "text": "2 + 2 = 4"}],
    "stop_reason": "end_turn", "stop_sequence": None, "stop_details": None,
    "usage": {"input_tokens": 13, "output_tokens": 44, "output_tokens_details": {"thinking_tokens": 33},
              "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
              "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
              "inference_geo": "global", "service_tier": "standard"}}

THINKING_STREAM = (
    'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-20250514","id":"msg_01",'
    '"type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":43,'
    '"output_tokens":1}}    }\n\n'
    'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"thinking",'
    '"thinking":"","signature":""}          }\n\n'
    'event: ping\ndata: {"type": "ping"}\n\n'
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta",'
    '"thinking":"This"}       }\n\n'
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta",'
    '"thinking":" is easy."}}\n\n'
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta",'
    '"thinking":""}}\n\n'
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta",'
    '"signature":"EqSIG2"}             }\n\n'
    'event: content_block_stop\ndata: {"type":"content_block_stop","index":0               }\n\n'
    'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking",'
    '"data":"ENCRYPTED"}}\n\n'
    'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n'
    'event: content_block_start\ndata: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use",'
    '"id":"toolu_1","name":"add","input":{}}}\n\n'
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta",'
    '"partial_json":"{\\"a\\": 2}"}}\n\n'
    'event: content_block_stop\ndata: {"type":"content_block_stop","index":2}\n\n'
    'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
    '"usage":{"output_tokens":282}}\n\n'
    'event: message_stop\ndata: {"type":"message_stop"         }\n\n')


class Recorder:
    def __init__(self, answer: Any, stream: bytes | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.answer, self.stream = answer, stream

    def __call__(self, request: HttpRequest) -> HttpResponse | StreamResponse:
        body = json.loads(request.body or b"{}")
        self.bodies.append(body)
        if body.get("stream") and self.stream is not None:
            return StreamResponse(200, {"content-type": "text/event-stream"}, iter([self.stream]))
        return HttpResponse(200, {"content-type": "application/json"}, json.dumps(self.answer).encode())


def test_anthropic_thinking_on_the_result_and_replayed_unchanged() -> None:
    rec = Recorder(OPUS_5_ANSWER)
    llm = AnthropicProvider("claude-opus-5", api_key="k", transport=MockTransport(rec), max_retries=0)
    r = llm.generate_sync("What is 2+2?", reasoning="high")
    assert r.content == "2 + 2 = 4" and r.reasoning is not None and r.reasoning.startswith("This is a straightforward")
    assert r.usage is not None and r.usage.reasoning_tokens == 33
    turn = r.to_message()
    assert turn.reasoning[0].signature == "EqSIG1"
    llm.generate_sync([Message.user("What is 2+2?"), turn, Message.user("And 3+3?")], reasoning="high")
    sent = rec.bodies[-1]["messages"][1]["content"]
    assert sent[0] == OPUS_5_ANSWER["content"][0] and sent[1] == {"type": "text", "text": "2 + 2 = 4"}


def test_anthropic_thinking_stream_chunks_and_tool_loop_replay() -> None:
    rec = Recorder(OPUS_5_ANSWER, THINKING_STREAM.encode())
    llm = AnthropicProvider("claude-opus-5", api_key="k", transport=MockTransport(rec), max_retries=0)
    chunks = list(llm.stream_sync("Add 2", reasoning="low"))
    assert [c.reasoning for c in chunks if c.reasoning] == ["This", " is easy."]
    r = join_chunks(chunks)
    assert r.reasoning == "This is easy." and r.finish_reason == "tool_calls"
    assert [(b.kind, b.text, b.signature, b.data, b.index) for b in r.reasoning_blocks] == [
        ("thinking", "This is easy.", "EqSIG2", None, 0), ("redacted_thinking", "", None, "ENCRYPTED", 1)]
    turn = r.to_message()
    llm.generate_sync([Message.user("Add 2"), turn, Message.tool_result("toolu_1", "4")], reasoning="low")
    blocks = rec.bodies[-1]["messages"][1]["content"]
    assert blocks == [{"type": "thinking", "thinking": "This is easy.", "signature": "EqSIG2"},
                      {"type": "redacted_thinking", "data": "ENCRYPTED"},
                      {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 2}}]


def test_another_vendor_s_reasoning_is_dropped_on_failover() -> None:
    turn = Message("assistant", "", tool_calls=(ToolCall("call_1", "add", {"a": 2}, '{"a": 2}'),),
                   reasoning=(ReasoningBlock("anthropic", text="secret plan", signature="EqSIG9"),))
    convo = [Message.user("Add 2"), turn, Message.tool_result("call_1", "4")]
    rec = Recorder({"model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"},
                                                "finish_reason": "stop"}]})
    OpenAIProvider("gpt-6-luna", api_key="k", transport=MockTransport(rec), max_retries=0,
                   api="chat").generate_sync(convo)
    assert "thinking" not in json.dumps(rec.bodies[-1]) and "EqSIG" not in json.dumps(rec.bodies[-1])
    orec = Recorder({"model": "qwen3", "message": {"role": "assistant", "content": "4"}, "done": True})
    OllamaProvider("qwen3", transport=MockTransport(orec), max_retries=0).generate_sync(convo)
    assert "EqSIG" not in json.dumps(orec.bodies[-1]) and "thinking" not in orec.bodies[-1]["messages"][1]


def test_openai_compatible_reasoning_content_and_ollama_thinking() -> None:
    body = {"model": "deepseek-reasoner", "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "42", "reasoning_content": "6 times 7"}}]}
    sse = (b'data: {"choices":[{"index":0,"delta":{"reasoning_content":"6 times"}}]}\n\n'
           b'data: {"choices":[{"index":0,"delta":{"reasoning_content":" 7"}}]}\n\n'
           b'data: {"choices":[{"index":0,"delta":{"content":"42"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
    llm = OpenAIProvider("deepseek-reasoner", base_url="http://127.0.0.1:9/v1",
                         transport=MockTransport(Recorder(body, sse)), max_retries=0)
    assert llm.generate_sync("q").reasoning == "6 times 7"
    r = join_chunks(llm.stream_sync("q"))
    assert (r.content, r.reasoning, r.reasoning_blocks) == ("42", "6 times 7", ())
    answer = {"model": "qwen3", "message": {"role": "assistant", "content": "42", "thinking": "6 times 7"}, "done": True}
    lines = (b'{"model":"qwen3","message":{"role":"assistant","content":"","thinking":"6 times"},"done":false}\n'
             b'{"model":"qwen3","message":{"role":"assistant","content":"","thinking":" 7"},"done":false}\n'
             b'{"model":"qwen3","message":{"role":"assistant","content":"42"},"done":false}\n'
             b'{"model":"qwen3","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}\n')
    rec = Recorder(answer, lines)
    ollama = OllamaProvider("qwen3", transport=MockTransport(rec), max_retries=0)
    plain = ollama.generate_sync("q", reasoning=True)
    assert plain.reasoning == "6 times 7"
    streamed = join_chunks(ollama.stream_sync("q", reasoning=True))
    assert (streamed.content, streamed.reasoning) == ("42", "6 times 7")
    ollama.generate_sync([Message.user("q"), streamed.to_message(), Message.user("again")])
    assert rec.bodies[-1]["messages"][1]["thinking"] == "6 times 7"
