"""OpenAIProvider on the Responses wire: which wire api="auto" picks, the body, every stream and
error path over loopback sockets, and the provider contract. Shapes: docs/protocols.md §12."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mirror_providers.base import (
    ContentPart,
    InvalidResponseError,
    Message,
    ModelNotFoundError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    StreamError,
    TruncatedStreamError,
    ValidationError,
)
from mirror_providers.errors import ConfigurationError
from mirror_providers.openai import OpenAIProvider
from mirror_providers.providers.openai_responses import build_payload
from mirror_providers.request import build_request
from mirror_providers.transport import HttpResponse, MockTransport
from mirror_providers.types import ReasoningBlock, ToolCall, join_chunks

from ..contract import ProviderContract
from ..server import FakeServer, Received, Reply

USAGE = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 2},
         "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 17}


def response(output: list[dict[str, Any]], status: str = "completed", **more: Any) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "status": status, "model": "gpt-6-luna", "output": output,
            "usage": USAGE, **more}


def message(text: str) -> dict[str, Any]:
    return {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def event(kind: str, seq: int, **fields: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': seq, **fields})}\n\n".encode()


def text_stream(text: str, terminal: str | None = "response.completed", start: int = 0) -> list[bytes]:
    words = text.split(" ")
    frames = [event("response.created", 0, response={"id": "resp_1", "model": "gpt-6-luna", "status": "in_progress",
                                                      "output": []}),
              event("response.output_item.added", 1, output_index=0, item={"type": "message", "id": "msg_1",
                                                                            "role": "assistant", "content": []})]
    for i, w in enumerate(words):
        frames.append(event("response.output_text.delta", 2 + i, output_index=0, content_index=0, item_id="msg_1",
                            delta=w if i == 0 else " " + w))
    n = 2 + len(words)
    frames.append(event("response.output_item.done", n, output_index=0, item=message(text)))
    if terminal:
        frames.append(event(terminal, n + 1, response=response([message(text)], "completed"
                                                                if terminal == "response.completed" else "incomplete",
                                                                incomplete_details={"reason": "max_output_tokens"})))
    return frames


def call_stream(name: str, args: str) -> list[bytes]:
    item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": name, "arguments": "",
            "status": "in_progress"}
    frames = [event("response.created", 0, response={"model": "gpt-6-luna"}),
              event("response.output_item.added", 1, output_index=0, item=item)]
    for i in range(0, len(args), 4):
        frames.append(event("response.function_call_arguments.delta", 2 + i // 4, output_index=0, item_id="fc_1",
                            delta=args[i:i + 4]))
    n = 2 + (len(args) + 3) // 4
    done = {**item, "arguments": args, "status": "completed"}
    frames += [event("response.function_call_arguments.done", n, output_index=0, item_id="fc_1", arguments=args),
               event("response.output_item.done", n + 1, output_index=0, item=done),
               event("response.completed", n + 2, response=response([done]))]
    return frames


def serve(server: FakeServer, plain: Any, frames: list[bytes], status: int = 200) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []

    def route(req: Received, reply: Reply) -> None:
        body = req.json()
        bodies.append(body)
        if status != 200:
            reply.json(status, plain)
        elif body.get("stream"):
            reply.stream(200, frames, {"Content-Type": "text/event-stream", "x-request-id": "req_1"})
        else:
            reply.json(200, plain, {"x-request-id": "req_1"})

    server.route("POST", "/v1/responses", route)
    server.route("GET", "/v1/models", lambda r, w: w.json(200, {"data": [{"id": "gpt-6-luna"}]}))
    return bodies


def llm(server: FakeServer, **kwargs: Any) -> OpenAIProvider:
    kwargs.setdefault("model", "gpt-6-luna")
    return OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", api="responses", max_retries=0, **kwargs)


# -- which wire ----------------------------------------------------------------------------------

def test_auto_picks_responses_only_for_marked_models_on_openai() -> None:
    assert OpenAIProvider(api_key="k", model="gpt-6-luna").api == "responses"
    assert OpenAIProvider(api_key="k", model="o3-pro").api == "responses"
    assert OpenAIProvider(api_key="k", model="gpt-4o-mini").api == "chat"
    assert OpenAIProvider(api_key="k", model="some-new-model").api == "chat"
    assert OpenAIProvider(model="gpt-6-luna", base_url="http://127.0.0.1:8000/v1").api == "chat"  # vLLM & co.
    assert OpenAIProvider(api_key="k", model="gpt-6-luna", api="chat").api == "chat"
    assert OpenAIProvider(model="llama", base_url="http://127.0.0.1:8000/v1", api="responses").api == "responses"
    with pytest.raises(ConfigurationError, match="api must be one of auto, chat, responses"):
        OpenAIProvider(api_key="k", api="completions")
    with pytest.raises(ConfigurationError, match="store=True is a Responses API setting"):
        OpenAIProvider(api_key="k", model="gpt-4o-mini", store=True)


def test_tools_with_reasoning_are_refused_on_chat_but_sent_on_responses() -> None:
    bodies: list[dict[str, Any]] = []

    def handler(req: Any) -> HttpResponse:
        bodies.append(json.loads(req.body))
        return HttpResponse(200, {"content-type": "application/json"}, json.dumps(response([message("ok")])).encode())

    tool = {"name": "t", "parameters": {"type": "object", "properties": {}}}
    chat = OpenAIProvider(api_key="k", model="gpt-6.2-sol", api="chat", transport=MockTransport(handler))
    with pytest.raises(ValidationError, match="tools"):
        chat.generate_sync("hi", tools=[tool])
    auto = OpenAIProvider(api_key="k", model="gpt-6.2-sol", transport=MockTransport(handler))
    auto.generate_sync("hi", tools=[tool], reasoning="high", max_tokens=500)
    assert bodies[-1]["tools"] == [{"type": "function", "name": "t", "description": "",
                                    "parameters": {"type": "object", "properties": {}}}]
    assert bodies[-1]["reasoning"] == {"effort": "high", "summary": "auto"} and bodies[-1]["max_output_tokens"] == 500
    assert auto.capabilities.supports_function_calling and not chat.capabilities.supports_function_calling


# -- the body -------------------------------------------------------------------------------------

def test_payload_items_in_order() -> None:
    convo = [Message.system("Be brief."),
             Message.user((ContentPart.from_text("What is this?"), ContentPart.image_url("https://x/y.png", "low"),
                           ContentPart.document_url("https://x/r.pdf"), ContentPart.document_text("memo", title="M"))),
             Message("assistant", "Let me look.", tool_calls=(ToolCall("call_9", "look", {"q": 1}, '{"q": 1}'),),
                     reasoning=(ReasoningBlock("openai", data="ENC", signature="rs_1", index=0),
                                ReasoningBlock("anthropic", text="not ours", signature="sig", index=0))),
             Message.tool_result("call_9", "found it")]
    req = build_request(convo, {"system": "Answer in French.", "schema": {"type": "object", "properties": {
        "a": {"type": "string"}}, "required": ["a"]}, "tool_choice": "look", "tools": [
        {"name": "look", "parameters": {"type": "object", "properties": {"q": {"type": "integer"}}}}]})
    body = build_payload(req, "gpt-6-luna", stream=True)
    assert body["input"] == [
        {"role": "developer", "content": "Answer in French."},
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "input_text", "text": "What is this?"},
                                     {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
                                     {"type": "input_file", "file_url": "https://x/r.pdf"},
                                     {"type": "input_text", "text": "Document: M\n\nmemo"}]},
        {"type": "reasoning", "summary": [], "encrypted_content": "ENC", "id": "rs_1"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look.",
                                                              "annotations": []}]},
        {"type": "function_call", "call_id": "call_9", "name": "look", "arguments": '{"q": 1}'},
        {"type": "function_call_output", "call_id": "call_9", "output": "found it"}]
    assert body["store"] is False and body["include"] == ["reasoning.encrypted_content"]
    assert body["tool_choice"] == {"type": "function", "name": "look"}
    assert body["text"]["format"]["type"] == "json_schema" and body["text"]["format"]["strict"] is True
    assert body["stream"] is True and body["stream_options"] == {"include_obfuscation": False}


def phased(text: str, phase: str, item_id: str) -> dict[str, Any]:
    return {**message(text), "id": item_id, "phase": phase}


def test_phases_are_kept_and_sent_back_in_place(server: FakeServer) -> None:
    output = [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "ENC"},
              phased("Checking. ", "commentary", "msg_a"),
              {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "look", "arguments": "{}"},
              phased("Done.", "final_answer", "msg_b")]
    serve(server, response(output), [])
    r = llm(server).generate_sync("x")
    assert r.content == "Checking. Done." and r.reasoning is None  # a phase is not reasoning
    assert [(b.kind, b.data, b.text, b.index) for b in r.reasoning_blocks] == [
        ("thinking", "ENC", "", 0), ("message", "commentary", "Checking. ", 1),
        ("message", "final_answer", "Done.", 3)]
    sent = build_payload(build_request([Message.user("x"), r.to_message()], {}), "gpt-6-luna", stream=False,
                         origin=server.url)["input"]
    assert [(i.get("type", i.get("role")), i.get("phase")) for i in sent] == [
        ("user", None), ("reasoning", None), ("message", "commentary"), ("function_call", None),
        ("message", "final_answer")]
    assert [i["content"][0]["text"] for i in sent if i.get("type") == "message"] == ["Checking. ", "Done."]
    assert all("id" not in i for i in sent if i.get("type") == "message")  # not stored: no ids to refer to


def test_a_reasoning_item_goes_back_only_with_the_item_that_followed_it(server: FakeServer) -> None:
    rs = [{"type": "reasoning", "id": f"rs_{i}", "summary": [], "encrypted_content": f"E{i}"} for i in range(2)]
    cases: list[tuple[list[dict[str, Any]], list[str]]] = [  # (output, the item types sent back)
        ([rs[0], {**message(""), "status": "incomplete"}], []),  # cut short after reasoning: nothing follows it
        ([rs[0], {"type": "web_search_call", "id": "ws_1", "status": "completed"}, rs[1], message("Paris.")],
         ["reasoning", "message"]),  # the built-in tool's item is not sent back, nor the reasoning before it
        ([message("Let me look."), rs[1], {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}],
         ["message", "reasoning", "function_call"]),
    ]
    for output, expected in cases:
        serve(server, response(output, "incomplete" if not expected else "completed"), [])
        turn = llm(server).generate_sync("q").to_message()
        sent = build_payload(build_request([Message.user("q"), turn, Message.user("go on")], {}), "m", False,
                             origin=server.url)["input"]
        assert [i.get("type") for i in sent[1:-1]] == expected, output
        assert [i["encrypted_content"] for i in sent if i.get("type") == "reasoning"] == ["E1"] * expected.count(
            "reasoning")


def test_a_turn_given_back_as_a_dict_keeps_its_reasoning_and_phase(server: FakeServer) -> None:
    output = [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "ENC"},
              phased("Checking.", "commentary", "msg_a"),
              {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "look", "arguments": "{}"}]
    bodies = serve(server, response(output), [])
    p = llm(server)
    turn = p.generate_sync("x").to_message()
    p.generate_sync([{"role": "user", "content": "x"}, turn.to_dict(),
                     {"role": "tool", "content": "found", "tool_call_id": "call_1"}])
    assert [(i.get("type", i.get("role")), i.get("phase")) for i in bodies[1]["input"]] == [
        ("user", None), ("reasoning", None), ("message", "commentary"), ("function_call", None),
        ("function_call_output", None)]
    with pytest.raises(ValidationError, match=r"messages\[1\].reasoning\[0\].kind must be one of"):
        p.generate_sync([{"role": "user", "content": "x"}, {**turn.to_dict(), "reasoning": [{"provider": "openai",
                                                                                             "kind": "secret"}]}])


def test_encrypted_reasoning_goes_back_only_to_the_server_that_made_it(server: FakeServer) -> None:
    output = [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "ONLY-HERE"}, message("Hi.")]
    bodies = serve(server, response(output), [])
    here = llm(server)
    turn = here.generate_sync("x").to_message()
    assert turn.reasoning[0].origin == here.origin == server.url.lower()
    elsewhere = OpenAIProvider(api_key="sk-test", base_url=server.url.replace("127.0.0.1", "localhost") + "/v1",
                               api="responses", model="gpt-6-luna", max_retries=0)
    for p in (here, elsewhere):
        p.generate_sync([Message.user("x"), turn, Message.user("and?")])
    assert [i.get("type") for i in bodies[1]["input"]] == [None, "reasoning", "message", None]
    assert [i.get("type") for i in bodies[2]["input"]] == [None, "message", None]  # another server: not its to read


def test_an_edited_answer_goes_back_as_one_message_without_phase() -> None:
    marks = (ReasoningBlock("openai", "message", text="a", data="commentary", index=0),
             ReasoningBlock("openai", "message", text="b", data="final_answer", index=1))
    edited = Message("assistant", "something else", reasoning=marks)
    sent = build_payload(build_request([edited], {}), "gpt-6-luna", stream=False)["input"]
    assert sent == [{"type": "message", "role": "assistant",
                     "content": [{"type": "output_text", "text": "something else", "annotations": []}]}]
    other_vendor = Message("assistant", "ab", reasoning=tuple(
        ReasoningBlock("anthropic", m.kind, text=m.text, data=m.data, index=m.index) for m in marks))
    assert "phase" not in build_payload(build_request([other_vendor], {}), "m", stream=False)["input"][0]


def test_streamed_phases_and_response_id(server: FakeServer) -> None:
    frames = text_stream("all done")
    frames[-2] = event("response.output_item.done", 4, output_index=0, item=phased("all done", "final_answer", "msg_1"))
    serve(server, {}, frames)
    joined = join_chunks(llm(server).stream_sync("x"))
    assert [(b.kind, b.data, b.text) for b in joined.reasoning_blocks] == [("message", "final_answer", "all done")]
    assert joined.reasoning is None and joined.response_id == "resp_1"
    assert build_payload(build_request([joined.to_message()], {}), "m", stream=False)["input"][0]["phase"] == "final_answer"


def test_what_responses_cannot_take_is_refused(server: FakeServer) -> None:
    p = llm(server)
    cases: list[tuple[dict[str, Any], str]] = [({"stop": "\n"}, "stop is not supported by the Responses API"),
                           ({"extra": {"input": []}}, r"extra\['input'\] would override"),
                           ({"extra": {"seed": 7}}, r"extra\['seed'\] is a Chat Completions field .* api='chat'"),
                           ({"extra": {"reasoning_effort": "low"}}, r"pass reasoning=\.\.\. instead"),
                           ({"extra": {"response_format": {"type": "json_object"}}}, r"pass schema=\.\.\. instead"),
                           ({"extra": {"frequency_penalty": 0.5}}, "Chat Completions field"),
                           ({"extra": {"reasoning": {"effort": "low"}}, "reasoning": "high"}, "both ask for reasoning"),
                           ({"extra": {"text": {"format": {"type": "json_object"}}},
                             "schema": {"type": "object", "properties": {}}}, "both ask for structured output")]
    for options, match in cases:
        with pytest.raises(ValidationError, match=match):
            p.generate_sync("hi", **options)


def test_store_and_previous_response_id(server: FakeServer) -> None:
    bodies = serve(server, response([message("ok")]), [])
    p = llm(server, store=True)
    first = p.generate_sync("hi")
    assert first.response_id == "resp_1"
    p.generate_sync("and then?", extra={"previous_response_id": first.response_id, "text": {"verbosity": "low"}})
    assert bodies[0]["store"] is True and bodies[1]["previous_response_id"] == "resp_1"
    assert bodies[1]["text"] == {"verbosity": "low"}


# -- answers --------------------------------------------------------------------------------------

def test_answer_usage_refusal_and_incomplete(server: FakeServer) -> None:
    serve(server, response([message("Paris")]), [])
    r = llm(server).generate_sync("Capital?")
    assert (r.content, r.finish_reason, r.request_id) == ("Paris", "stop", "req_1")
    assert r.usage is not None and (r.usage.input_tokens, r.usage.cached_input_tokens,
                                    r.usage.cache_creation_input_tokens, r.usage.reasoning_tokens) == (10, 4, 2, 3)
    refused = {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]}
    serve(server, response([refused]), [])
    r = llm(server).generate_sync("bad", schema={"type": "object", "properties": {}})
    assert (r.refusal, r.parsed) == ("I can't.", None)
    serve(server, response([message("Half")], "incomplete", incomplete_details={"reason": "max_output_tokens"}), [])
    assert llm(server).generate_sync("long").finish_reason == "length"
    serve(server, response([], "incomplete", incomplete_details={"reason": "content_filter"}), [])
    assert llm(server).generate_sync("x").finish_reason == "content_filter"


@pytest.mark.parametrize(("error", "cls"), [({"code": "rate_limit_exceeded", "message": "slow down"}, RateLimitError),
                                            ({"code": "server_error", "message": "oops"}, ServerError),
                                            ({"code": "insufficient_quota", "message": "pay"}, QuotaExceededError)])
def test_a_failed_response_is_typed(server: FakeServer, error: dict[str, Any], cls: type[Exception]) -> None:
    serve(server, response([], "failed", error=error), [])
    with pytest.raises(cls, match=error["message"]):
        llm(server).generate_sync("x")


def test_a_server_that_leaves_out_the_status_is_read(server: FakeServer) -> None:
    body = response([message("fine")])
    del body["status"]
    serve(server, body, [])
    r = llm(server).generate_sync("x")
    assert (r.content, r.finish_reason) == ("fine", "stop")


def test_a_background_response_is_not_taken_for_an_answer(server: FakeServer) -> None:
    serve(server, response([], "queued"), [])
    with pytest.raises(InvalidResponseError, match="not finished"):
        llm(server).generate_sync("x")


def test_unknown_model_400_is_model_not_found(server: FakeServer) -> None:
    body = {"error": {"message": "The requested model 'nope' does not exist.", "type": "invalid_request_error",
                      "param": "model", "code": "model_not_found"}}
    serve(server, body, [], status=400)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        llm(server, model="nope").generate_sync("x")


# -- streams --------------------------------------------------------------------------------------

def test_stream_text_and_joined_equals_generate(server: FakeServer) -> None:
    serve(server, response([message("one two three")]), text_stream("one two three"))
    p = llm(server)
    chunks = list(p.stream_sync("count"))
    assert [c.content for c in chunks if c.content] == ["one", " two", " three"]
    joined = join_chunks(chunks)
    assert joined.content == p.generate_sync("count").content and joined.finish_reason == "stop"
    assert joined.usage is not None and joined.usage.total_tokens == 17 and chunks[-1].request_id == "req_1"
    assert chunks[-1].response_id == joined.response_id == "resp_1"


def test_incomplete_stream_is_length(server: FakeServer) -> None:
    serve(server, {}, text_stream("cut short", terminal="response.incomplete"))
    assert join_chunks(llm(server).stream_sync("x")).finish_reason == "length"


def test_a_stream_without_its_terminal_event_is_truncated(server: FakeServer) -> None:
    serve(server, {}, text_stream("no end here", terminal=None))
    with pytest.raises(TruncatedStreamError, match="without response.completed"):
        list(llm(server).stream_sync("x"))


def test_a_sequence_gap_is_a_stream_error(server: FakeServer) -> None:
    frames = text_stream("a b c d")
    del frames[3]
    serve(server, {}, frames)
    with pytest.raises(StreamError, match="sequence_number 4 where 3 was due"):
        list(llm(server).stream_sync("x"))


@pytest.mark.parametrize("err", [
    {"type": "error", "code": "server_error", "message": "flat boom", "param": None},
    {"type": "error", "error": {"type": "server_error", "code": "server_error", "message": "nested boom"}},
])
def test_error_events_of_both_shapes(server: FakeServer, err: dict[str, Any]) -> None:
    frames = text_stream("partial answer", terminal=None)
    frames.append(f"event: error\ndata: {json.dumps({**err, 'sequence_number': 5})}\n\n".encode())
    serve(server, {}, frames)
    with pytest.raises(ServerError, match="boom") as info:
        list(llm(server).stream_sync("x"))
    assert isinstance(info.value, StreamError) and info.value.chunks_delivered == 2


def test_response_failed_mid_stream(server: FakeServer) -> None:
    frames = text_stream("partial", terminal=None)
    frames.append(event("response.failed", 4, response={"status": "failed", "error": {
        "code": "rate_limit_exceeded", "message": "too fast"}}))
    serve(server, {}, frames)
    with pytest.raises(RateLimitError, match="too fast"):
        list(llm(server).stream_sync("x"))


def test_tool_call_stream_unknown_events_and_a_gateway_done(server: FakeServer) -> None:
    frames = call_stream("get_weather", '{"city": "Paris"}')
    frames.insert(2, event("response.web_search_call.searching", 99, output_index=5).replace(b'"sequence_number": 99, ', b""))
    frames.append(b"data: [DONE]\n\n")
    serve(server, {}, frames)
    joined = join_chunks(llm(server).stream_sync("weather?", tools=[{"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}]))
    assert [(c.id, c.name, c.arguments) for c in joined.tool_calls] == [("call_1", "get_weather", {"city": "Paris"})]
    assert joined.finish_reason == "tool_calls"


def test_arguments_sent_only_on_done_are_kept(server: FakeServer) -> None:
    frames = [f for f in call_stream("f", '{"a": 1}') if b"arguments.delta" not in f]
    serve(server, {}, [f.replace(b'"sequence_number"', b'"seq"') for f in frames])  # no numbers: older servers
    joined = join_chunks(llm(server).stream_sync("x", tools=[{"name": "f", "parameters": {"type": "object"}}]))
    assert joined.tool_calls[0].arguments == {"a": 1}


def test_summary_stream_and_refusal_stream(server: FakeServer) -> None:
    frames = [event("response.created", 0, response={"model": "gpt-6-luna"}),
              event("response.reasoning_summary_text.delta", 1, output_index=0, summary_index=0, delta="First."),
              event("response.reasoning_summary_text.delta", 2, output_index=0, summary_index=1, delta="Second."),
              event("response.output_item.done", 3, output_index=0, item={
                  "type": "reasoning", "id": "rs_9", "encrypted_content": "DONE-ENC",
                  "summary": [{"type": "summary_text", "text": "First."}, {"type": "summary_text", "text": "Second."}]}),
              event("response.refusal.delta", 4, output_index=1, delta="No."),
              event("response.completed", 5, response=response([]))]
    serve(server, {}, frames)
    joined = join_chunks(llm(server).stream_sync("x", reasoning="low"))
    assert joined.reasoning == "First.\n\nSecond." and joined.refusal == "No."
    assert joined.reasoning_blocks == (ReasoningBlock("openai", text="First.\n\nSecond.", data="DONE-ENC",
                                                      signature="rs_9", index=0, origin=server.url),)


FN_TOOL = [{"name": "f", "parameters": {"type": "object"}}]


def test_arguments_for_an_item_never_opened_are_a_stream_error(server: FakeServer) -> None:
    frames = call_stream("f", '{"a": 1}')
    frames.insert(3, event("response.function_call_arguments.delta", 99, output_index=5, item_id="fc_x",
                           delta='{"b": 2}').replace(b'"sequence_number": 99, ', b""))
    serve(server, {}, frames)
    with pytest.raises(StreamError, match="output_index 5, which no output_item.added opened"):
        list(llm(server).stream_sync("x", tools=FN_TOOL))


def test_a_call_sent_only_whole_in_output_item_done_is_kept(server: FakeServer) -> None:
    done = {"type": "function_call", "id": "fc_1", "call_id": "call_7", "name": "f", "arguments": '{"a": 1}'}
    frames = [event("response.created", 0, response={"model": "gpt-6-luna"}),
              event("response.output_item.done", 1, output_index=0, item=done),
              event("response.completed", 2, response=response([done]))]
    serve(server, response([done]), frames)
    p = llm(server)
    joined = join_chunks(p.stream_sync("x", tools=FN_TOOL))
    plain = p.generate_sync("x", tools=FN_TOOL)
    assert [(c.id, c.name, c.arguments) for c in joined.tool_calls] == [("call_7", "f", {"a": 1})]
    assert joined.tool_calls == plain.tool_calls and joined.finish_reason == plain.finish_reason == "tool_calls"


def test_a_terminal_event_without_status_says_how_it_ended(server: FakeServer) -> None:
    frames = text_stream("cut", terminal=None)
    frames.append(event("response.incomplete", len(frames), response={
        "incomplete_details": {"reason": "max_output_tokens"}}))
    serve(server, {}, frames)
    assert join_chunks(llm(server).stream_sync("x")).finish_reason == "length"


def test_a_completed_event_whose_response_failed_is_the_failure(server: FakeServer) -> None:
    failed = {"status": "failed", "error": {"code": "server_error", "message": "it broke"}}
    frames = text_stream("x", terminal=None)
    frames.append(event("response.completed", len(frames), response=failed))
    serve(server, failed, frames)
    p = llm(server)
    with pytest.raises(ServerError, match="it broke"):
        list(p.stream_sync("x"))
    with pytest.raises(ServerError, match="it broke"):  # the same as the answer unstreamed
        p.generate_sync("x")


def test_the_vendors_error_wins_over_a_numbering_gap(server: FakeServer) -> None:
    frames = text_stream("partial", terminal=None)
    frames.append(event("error", 40, code="insufficient_quota", message="out of credit"))
    serve(server, {}, frames)
    with pytest.raises(QuotaExceededError, match="out of credit"):
        list(llm(server).stream_sync("x"))


def test_an_error_event_whose_error_is_text_keeps_it(server: FakeServer) -> None:
    frames = text_stream("partial", terminal=None)
    frames.append(b'data: {"type": "error", "error": "the upstream gave up"}\n\n')
    serve(server, {}, frames)
    with pytest.raises(StreamError, match="the upstream gave up"):
        list(llm(server).stream_sync("x"))


def test_a_summary_that_is_not_a_list_is_refused(server: FakeServer) -> None:
    serve(server, response([{"type": "reasoning", "id": "rs_1", "summary": "plain text", "encrypted_content": "E"},
                            message("ok")]), [])
    with pytest.raises(InvalidResponseError, match="summary is str, not a list"):
        llm(server).generate_sync("x")


def test_one_json_document_instead_of_a_stream(server: FakeServer) -> None:
    def route(req: Received, reply: Reply) -> None:
        body = req.json()
        if body["input"][0]["content"] == "quota":
            reply.json(200, {"error": {"code": "insufficient_quota", "message": "You exceeded your quota"}})
        else:  # a server that ignores "stream" and answers whole
            reply.json(200, response([message("all at once")]))

    server.route("POST", "/v1/responses", route)
    p = llm(server)
    with pytest.raises(QuotaExceededError, match="exceeded your quota") as info:
        list(p.stream_sync("quota"))
    assert not info.value.retryable  # not a truncated stream to retry
    with pytest.raises(InvalidResponseError, match="got one application/json document instead"):
        list(p.stream_sync("whole"))


def test_a_request_id_header_echoing_the_key_is_scrubbed(server: FakeServer) -> None:
    server.route("POST", "/v1/responses", lambda r, w: w.json(500, {"error": {"message": "boom"}},
                                                              {"x-request-id": "sk-test-echoed-key-1234567"}))
    p = OpenAIProvider(api_key="sk-test-echoed-key-1234567", base_url=server.url + "/v1", api="responses",
                       model="gpt-6-luna", max_retries=0)
    with pytest.raises(ServerError) as info:
        p.generate_sync("x")
    assert "sk-test-echoed-key-1234567" not in str(info.value) + repr(info.value) + str(info.value.request_id)


class TestResponsesContract(ProviderContract):
    provider_id = "openai"

    def make(self, server: FakeServer, **kwargs: Any) -> OpenAIProvider:
        from ..contract import SECRET

        kwargs.setdefault("api_key", SECRET)
        return OpenAIProvider(model="gpt-6-luna", base_url=server.url + "/v1", api="responses", **kwargs)

    def serve_text(self, server: FakeServer, text: str) -> None:
        serve(server, response([message(text)]), text_stream(text))

    def serve_tool_call(self, server: FakeServer, name: str, arguments: dict[str, Any]) -> None:
        args = json.dumps(arguments)
        call = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": name, "arguments": args}
        serve(server, response([call]), call_stream(name, args))

    def serve_error(self, server: FakeServer, status: int, message_text: str) -> None:
        body = {"error": {"message": message_text, "type": "invalid_request_error", "param": None, "code": None}}
        serve(server, body, [], status=status)
        server.route("GET", "/v1/models/gpt-6-luna", lambda r, w: w.json(status, body))
        server.route("GET", "/v1/models", lambda r, w: w.json(status, body))

    def serve_truncated_stream(self, server: FakeServer, text: str) -> None:
        serve(server, response([message(text)]), text_stream(text, terminal=None))

    def serve_stream_error(self, server: FakeServer, text: str) -> None:
        frames = text_stream(text, terminal=None)
        frames.append(b'event: error\ndata: {"type": "error", "code": "server_error", "message": "boom"}\n\n')
        serve(server, response([message(text)]), frames)
