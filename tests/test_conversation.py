"""Conversation over real loopback servers: what each request carries, and that only a success
changes the history."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mirror_providers import Conversation
from mirror_providers.errors import ServerError, TruncatedStreamError, ValidationError
from mirror_providers.openai import OpenAIProvider
from mirror_providers.providers.anthropic import AnthropicProvider
from mirror_providers.providers.ollama import OllamaProvider
from mirror_providers.types import ContentPart, Message, Tool

from .conftest import FAKE_KEY
from .server import (
    FakeServer,
    Received,
    Reply,
    add_ollama_routes,
    add_openai_routes,
    anthropic_message,
    openai_completion,
    openai_sse,
)
from .waiting import eventually, eventually_async

Route = Callable[[Received, Reply], None]
WEATHER = Tool("get_weather", "The weather in a city.",
               {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


def script(server: FakeServer, path: str, *replies: Route) -> list[Any]:
    """Answer the requests to ``path`` with ``replies`` in turn; returns the list their bodies go to."""
    bodies: list[Any] = []
    queue = iter(replies)

    def route(req: Received, reply: Reply) -> None:
        bodies.append(req.json())
        next(queue)(req, reply)

    server.route("POST", path, route)
    return bodies


def says(text: str) -> Route:
    return lambda req, reply: reply.json(200, openai_completion(text))


def streams(text: str) -> Route:
    return lambda req, reply: reply.stream(200, openai_sse(text), {"Content-Type": "text/event-stream"})


def fails(status: int = 500) -> Route:
    return lambda req, reply: reply.json(status, {"error": {"message": "down", "type": "server_error"}})


def calls_weather(call_id: str = "call_1") -> Route:
    def reply_with(req: Received, reply: Reply) -> None:
        body = openai_completion("")
        body["choices"][0]["message"] = {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}
        body["choices"][0]["finish_reason"] = "tool_calls"
        reply.json(200, body)
    return reply_with


@pytest.fixture
def openai(server: FakeServer) -> Iterator[OpenAIProvider]:
    add_openai_routes(server)
    p = OpenAIProvider(base_url=server.url + "/v1", api_key=FAKE_KEY, max_retries=0)
    with p:
        yield p


def chat(server: FakeServer, *replies: Route) -> list[Any]:
    return script(server, "/v1/chat/completions", *replies)


# -- OpenAI: the history on the wire --------------------------------------------------------------

def test_the_second_request_carries_the_first_exchange(server: FakeServer, openai: OpenAIProvider) -> None:
    bodies = chat(server, says("Paris."), says("About 2.1 million."))
    conv = openai.conversation(system="Be terse.", max_tokens=50, temperature=0.5)
    first = conv.send("Capital of France?")
    second = conv.send("Its population?", max_tokens=10)  # this send's option over the default
    assert (first.content, second.content) == ("Paris.", "About 2.1 million.")
    assert bodies[0]["messages"] == [{"role": "system", "content": "Be terse."},
                                     {"role": "user", "content": "Capital of France?"}]
    assert bodies[1]["messages"] == [{"role": "system", "content": "Be terse."},
                                     {"role": "user", "content": "Capital of France?"},
                                     {"role": "assistant", "content": "Paris."},
                                     {"role": "user", "content": "Its population?"}]
    assert [b.get("max_tokens", b.get("max_completion_tokens")) for b in bodies] == [50, 10]
    assert [b["temperature"] for b in bodies] == [0.5, 0.5]
    assert conv.messages == (Message.user("Capital of France?"), Message.assistant("Paris."),
                             Message.user("Its population?"), Message.assistant("About 2.1 million."))
    assert len(conv) == 4 and conv.system == "Be terse."


def test_an_option_given_as_none_drops_the_default_for_that_send(server: FakeServer, openai: OpenAIProvider) -> None:
    bodies = chat(server, says("a"), says("b"))
    conv = openai.conversation(system="Be terse.", temperature=0.5)
    conv.send("one", temperature=None, system=None)
    conv.send("two")
    assert "temperature" not in bodies[0] and bodies[0]["messages"][0]["role"] == "user"
    assert bodies[1]["temperature"] == 0.5 and bodies[1]["messages"][0] == {"role": "system", "content": "Be terse."}


def test_content_parts_make_one_user_turn(server: FakeServer, openai: OpenAIProvider) -> None:
    bodies = chat(server, says("A cat."))
    conv = openai.conversation()
    conv.send(["What is this?", ContentPart.image_url("https://example.com/cat.png")])
    content = bodies[0]["messages"][0]["content"]
    assert [p["type"] for p in content] == ["text", "image_url"] and content[0]["text"] == "What is this?"


# -- only a success changes the history ----------------------------------------------------------

def test_a_failed_send_leaves_the_history_as_it_was(server: FakeServer, openai: OpenAIProvider) -> None:
    bodies = chat(server, says("Paris."), fails(500), says("About 2.1 million."))
    conv = openai.conversation()
    conv.send("Capital of France?")
    before = conv.messages
    with pytest.raises(ServerError):
        conv.send("Its population?")
    assert conv.messages == before  # the user turn of the failed send is not kept
    conv.send("Its population?")  # so the retry sends it once
    assert [m["content"] for m in bodies[2]["messages"]] == ["Capital of France?", "Paris.", "Its population?"]
    assert len(conv) == 4


def test_a_stream_read_to_its_end_is_appended(server: FakeServer, openai: OpenAIProvider) -> None:
    bodies = chat(server, streams("Paris is the capital."), says("Yes."))
    conv = openai.conversation()
    pieces = [c.content for c in conv.stream("Capital of France?")]
    assert "".join(pieces) == "Paris is the capital."
    assert conv.messages[-1] == Message.assistant("Paris is the capital.")
    conv.send("Sure?")
    assert bodies[1]["messages"][1] == {"role": "assistant", "content": "Paris is the capital."}


def test_a_stream_stopped_early_leaves_the_history_as_it_was(server: FakeServer, openai: OpenAIProvider) -> None:
    bodies = chat(server, says("Paris."), streams("one two three"), says("Again."))
    conv = openai.conversation()
    conv.send("Capital of France?")
    before = conv.messages
    stream = conv.stream("Count.")
    for chunk in stream:
        if chunk.content:
            break
    assert conv.messages == before  # not yet closed: still nothing kept
    stream.close()  # type: ignore[attr-defined]  # a generator
    assert conv.messages == before
    conv.send("Count.")  # the conversation is free again, and the broken-off turn was not kept
    assert [m["content"] for m in bodies[2]["messages"]] == ["Capital of France?", "Paris.", "Count."]


def test_a_broken_stream_leaves_the_history_as_it_was(server: FakeServer, openai: OpenAIProvider) -> None:
    def broken(req: Received, reply: Reply) -> None:  # the body ends before the answer does
        reply.stream(200, openai_sse("first words")[:2], {"Content-Type": "text/event-stream"})

    chat(server, says("Paris."), broken)
    conv = openai.conversation()
    conv.send("Capital of France?")
    before = conv.messages
    seen: list[str] = []
    with pytest.raises(TruncatedStreamError):
        for chunk in conv.stream("Go on."):
            seen.append(chunk.content)
    assert seen and conv.messages == before


# -- tools ----------------------------------------------------------------------------------------

def test_a_tool_call_and_its_result_go_back(server: FakeServer, openai: OpenAIProvider) -> None:
    bodies = chat(server, calls_weather("call_1"), says("It is 21 degrees in Paris."))
    conv = openai.conversation(tools=[WEATHER])
    result = conv.send("Weather in Paris?")
    assert [(c.id, c.arguments) for c in result.tool_calls] == [("call_1", {"city": "Paris"})]
    added = conv.add_tool_result("call_1", {"temp_c": 21})
    assert added == Message.tool_result("call_1", '{"temp_c": 21}', "get_weather")  # the name is the call's
    final = conv.send()  # no prompt: the history as it is
    assert final.content == "It is 21 degrees in Paris."
    sent = bodies[1]["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["tool_calls"][0]["id"] == "call_1"
    assert sent[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'}
    assert len(sent) == 3 and bodies[1]["tools"][0]["function"]["name"] == "get_weather"
    assert [m.role for m in conv.messages] == ["user", "assistant", "tool", "assistant"]


def test_ollama_tool_results_carry_the_function_name(server: FakeServer) -> None:
    add_ollama_routes(server)
    done = {"model": "llama3.1", "done": True, "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2}
    bodies = script(server, "/api/chat",
                    lambda req, reply: reply.json(200, {**done, "message": {"role": "assistant", "content": "",
                        "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}}),
                    lambda req, reply: reply.json(200, {**done, "message": {"role": "assistant", "content": "21 C."}}))
    with OllamaProvider(model="llama3.1", base_url=server.url, max_retries=0) as p:
        conv = p.conversation(tools=[WEATHER])
        (call,) = conv.send("Weather in Paris?").tool_calls
        conv.add_tool_result(call.id, "21 C")
        assert conv.send().content == "21 C."
    sent = bodies[1]["messages"]
    assert sent[1]["tool_calls"] == [{"id": call.id, "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert sent[2]["role"] == "tool" and sent[2]["tool_name"] == "get_weather" and sent[2]["content"] == "21 C"


def test_tool_calls_must_be_answered_before_going_on(server: FakeServer, openai: OpenAIProvider) -> None:
    bodies = chat(server, calls_weather("call_1"))
    conv = openai.conversation(tools=[WEATHER])
    conv.send("Weather in Paris?")
    with pytest.raises(ValidationError, match=r"\['call_1'\] have no result.*add_tool_result"):
        conv.send("Never mind.")
    with pytest.raises(ValidationError, match=r"'call_9' answers no call.*\['call_1'\]"):
        conv.add_tool_result("call_9", "x")
    conv.add_tool_result("call_1", "21 C")
    with pytest.raises(ValidationError, match="no tool call awaits a result"):
        conv.add_tool_result("call_1", "again")
    with pytest.raises(ValidationError, match="cannot be encoded as JSON"):
        conv.add_tool_result("call_1", object())
    assert len(bodies) == 1 and len(conv) == 3


# -- Anthropic: thinking goes back signed ------------------------------------------------------

def thinking_message() -> dict[str, Any]:
    body = anthropic_message("")
    body["content"] = [{"type": "thinking", "thinking": "The user wants the weather.", "signature": "sig-abc"},
                       {"type": "text", "text": "Checking."},
                       {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]
    body["stop_reason"] = "tool_use"
    return body


def thinking_sse() -> list[bytes]:
    def ev(data: dict[str, Any]) -> bytes:
        return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()

    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"model": "claude-sonnet-4-5-20250929", "content": [],
                                              "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta",
                                                              "thinking": "The user wants the weather."}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig-abc"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking."}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1",
                                                                      "name": "get_weather", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta",
                                                              "partial_json": '{"city": "Paris"}'}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"}]
    return [ev(e) for e in events]


REPLAYED_TURN = {"role": "assistant", "content": [
    {"type": "thinking", "thinking": "The user wants the weather.", "signature": "sig-abc"},
    {"type": "text", "text": "Checking."},
    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]}


@pytest.fixture
def claude(server: FakeServer) -> Iterator[AnthropicProvider]:
    server.route("GET", "/v1/models", lambda r, w: w.json(200, {"data": [], "has_more": False}))
    p = AnthropicProvider(model="claude-sonnet-4-5", api_key=FAKE_KEY, base_url=server.url, max_retries=0)
    with p:
        yield p


@pytest.mark.parametrize("how", ["send", "stream"])
def test_anthropic_thinking_is_replayed_with_its_signature(server: FakeServer, claude: AnthropicProvider,
                                                           how: str) -> None:
    first: Route = ((lambda req, reply: reply.json(200, thinking_message())) if how == "send" else
                    (lambda req, reply: reply.stream(200, thinking_sse(), {"Content-Type": "text/event-stream"})))
    bodies = script(server, "/v1/messages", first, lambda req, reply: reply.json(200, anthropic_message("21 C.")))
    conv = claude.conversation(system="Use tools.", tools=[WEATHER], max_tokens=2000)
    if how == "send":
        conv.send("Weather in Paris?")
    else:
        assert "".join(c.content for c in conv.stream("Weather in Paris?")) == "Checking."
    (block,) = conv.messages[-1].reasoning
    assert (block.provider, block.signature) == ("anthropic", "sig-abc")
    conv.add_tool_result("toolu_1", "21 C")
    assert conv.send().content == "21 C."
    assert bodies[1]["system"] == "Use tools."
    assert bodies[1]["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        REPLAYED_TURN,
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "21 C"}]}]


# -- save, load, undo, reset ------------------------------------------------------------------------

def test_save_and_load_continue_the_same_conversation(server: FakeServer, claude: AnthropicProvider,
                                                      tmp_path: Path) -> None:
    bodies = script(server, "/v1/messages", lambda req, reply: reply.json(200, thinking_message()),
                    *[lambda req, reply: reply.json(200, anthropic_message("21 C."))] * 2)
    conv = claude.conversation(system="Use tools.", tools=[WEATHER])
    conv.send(["Weather in", ContentPart.image_bytes(b"\x89PNG fake", "image/png")])
    conv.add_tool_result("toolu_1", "21 C")
    path = tmp_path / "chat.json"
    conv.save(path)
    saved = json.loads(path.read_text())
    assert saved["format"] == "mirror-providers.conversation/1" and saved["system"] == "Use tools."
    again = Conversation.load(path, claude, tools=[WEATHER])
    assert again.messages == conv.messages and again.system == "Use tools."
    conv.send()
    again.send()
    assert bodies[1] == bodies[2]  # the loaded conversation sends exactly what the original does
    assert bodies[2]["messages"][1] == REPLAYED_TURN


def test_load_refuses_what_save_did_not_write(tmp_path: Path, openai: OpenAIProvider) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"messages": []}')
    with pytest.raises(ValidationError, match="not a saved conversation"):
        Conversation.load(path, openai)
    path.write_text("{not json")
    with pytest.raises(ValidationError, match="not JSON"):
        Conversation.load(path, openai)
    path.write_text(json.dumps({"format": "mirror-providers.conversation/1", "messages": [{"role": "system"}]}))
    with pytest.raises(ValidationError, match=r"messages\[0\] is a system message"):
        Conversation.load(path, openai)


def test_undo_drops_the_last_exchange(server: FakeServer, openai: OpenAIProvider) -> None:
    bodies = chat(server, says("Paris."), calls_weather("call_1"), says("21 C."), says("Rome."))
    conv = openai.conversation(tools=[WEATHER])
    conv.send("Capital of France?")
    conv.send("Weather there?")
    conv.add_tool_result("call_1", "21 C")
    assert conv.undo() == (Message.tool_result("call_1", "21 C", "get_weather"),)  # the waiting result only
    conv.add_tool_result("call_1", "21 C")
    conv.send()
    dropped = conv.undo()  # what the last send added: the result it sent and its answer
    assert [m.role for m in dropped] == ["tool", "assistant"]
    assert conv.undo()[0] == Message.user("Weather there?")  # then the tool-calling exchange
    assert [m.text for m in conv.messages] == ["Capital of France?", "Paris."]
    conv.send("Capital of Italy?")
    assert [m["content"] for m in bodies[3]["messages"]] == ["Capital of France?", "Paris.", "Capital of Italy?"]
    conv.reset()
    assert conv.messages == () and len(conv) == 0
    with pytest.raises(ValidationError, match="nothing to undo"):
        conv.undo()


# -- bad input ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt, error", [
    (None, "needs a prompt: the history is empty"),
    ("  ", "prompt is empty"),
    ([], "empty list"),
    (42, "not int"),
    ([b"bytes"], "not bytes"),
    (Message.system("x"), "not a system one; give the system prompt to conversation"),
    (Message.assistant("x"), "not a assistant one"),
])
def test_bad_prompts_are_refused_naming_the_problem(server: FakeServer, openai: OpenAIProvider, prompt: Any,
                                                    error: str) -> None:
    conv = openai.conversation()
    with pytest.raises(ValidationError, match=error):
        conv.send(prompt)
    with pytest.raises(ValidationError, match=error):
        list(conv.stream(prompt))
    assert not [r for r in server.received if r.method == "POST"] and len(conv) == 0


def test_send_without_a_prompt_after_an_answer_is_refused(server: FakeServer, openai: OpenAIProvider) -> None:
    chat(server, says("Paris."))
    conv = openai.conversation()
    conv.send("Capital of France?")
    with pytest.raises(ValidationError, match="the last message is an assistant turn.*add_tool_result"):
        conv.send()


def test_bad_defaults_and_history_are_refused_at_once(openai: OpenAIProvider) -> None:
    with pytest.raises(ValidationError, match="unknown option"):
        openai.conversation(temprature=0.5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="max_tokens"):
        openai.conversation(max_tokens=-1)
    with pytest.raises(ValidationError, match=r"messages\[1\] is a system message"):
        Conversation(openai, messages=[Message.user("a"), Message.system("b")])
    with pytest.raises(ValidationError, match="temperature"):
        openai.conversation().stream("hi", temperature=9)  # at the call, not at the first chunk


def test_a_second_turn_from_the_thread_reading_a_stream_is_refused(server: FakeServer,
                                                                   openai: OpenAIProvider) -> None:
    chat(server, streams("one two"))
    conv = openai.conversation()
    stream = conv.stream("Count.")
    next(stream)
    with pytest.raises(ValidationError, match="still reading a stream of this conversation"):
        conv.send("Hi")  # instead of waiting for itself forever
    assert [c.content for c in stream][-1] == "" and len(conv) == 2


# -- threads and async ----------------------------------------------------------------------------------

def _waiting_in(thread: threading.Thread, function: str) -> bool:
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


def test_sends_from_two_threads_are_serialized(server: FakeServer, openai: OpenAIProvider) -> None:
    release = threading.Event()

    def held(req: Received, reply: Reply) -> None:
        release.wait(10)
        reply.json(200, openai_completion("first answer"))

    bodies = chat(server, held, says("second answer"))
    conv = openai.conversation()
    first = threading.Thread(target=conv.send, args=("first",))
    second = threading.Thread(target=conv.send, args=("second",))
    first.start()
    assert eventually(lambda: len(bodies) == 1)  # the first send is at the server
    second.start()
    try:
        assert eventually(lambda: _waiting_in(second, "_hold"))  # the second waits for the history
        assert len(bodies) == 1
    finally:
        release.set()
        first.join(10)
        second.join(10)
    assert [m["content"] for m in bodies[1]["messages"]] == ["first", "first answer", "second"]
    assert [m.text for m in conv.messages] == ["first", "first answer", "second", "second answer"]


def test_send_async(server: FakeServer, openai: OpenAIProvider) -> None:
    bodies = chat(server, says("Paris."), says("Rome."))
    conv = openai.conversation()

    async def main() -> list[str]:
        return [(await conv.send_async(q)).content for q in ("France?", "Italy?")]

    assert asyncio.run(main()) == ["Paris.", "Rome."]
    assert [m["content"] for m in bodies[1]["messages"]] == ["France?", "Paris.", "Italy?"]


def test_a_cancelled_send_async_leaves_the_history_as_it_was(server: FakeServer, openai: OpenAIProvider) -> None:
    release = threading.Event()

    def silent(req: Received, reply: Reply) -> None:
        release.wait(30)

    bodies = chat(server, says("Paris."), silent)
    conv = openai.conversation()
    conv.send("France?")
    before = conv.messages

    async def main() -> None:
        task = asyncio.ensure_future(conv.send_async("Italy?"))
        assert await eventually_async(lambda: len(bodies) == 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the worker's connection was broken off: it gives the conversation back, unchanged
        assert await eventually_async(lambda: not conv._lock.locked())

    try:
        asyncio.run(main())
    finally:
        release.set()
    assert conv.messages == before


def test_a_loop_that_stops_at_the_finish_reason_keeps_the_turn(server: FakeServer) -> None:
    from mirror_providers.openai import OpenAIProvider as _OpenAI

    from .server import add_openai_routes as _routes

    _routes(server, text="Two three")
    conv = _OpenAI(api_key="sk-test", model="gpt-4o-mini", base_url=server.url + "/v1").conversation()
    for chunk in conv.stream("Count"):
        if chunk.finish_reason:
            break  # the natural way to stop: the last chunk has come
    assert [m.role for m in conv.messages] == ["user", "assistant"] and conv.messages[1].text == "Two three"
    conv.send("Again")  # not held by the stream left at its last chunk
    assert len(conv) == 4
