"""The Responses wire against real recorded traffic (cassettes/openai_responses, recorded by
pydantic-ai; see its README): a loopback server answers each request with the recorded answer, in
order, and the tests check what we make of the answers and that the requests we send carry what
the recorded ones carried (the same input items, tools, format and reasoning replay)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror_providers.base import BadRequestError, ContentPart, Message
from mirror_providers.openai import OpenAIProvider
from mirror_providers.types import join_chunks

from .server import FakeServer, Received, Reply

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes" / "openai_responses"


class Replay:
    """Serves a cassette's answers in order and keeps the bodies we sent beside the recorded ones."""

    def __init__(self, server: FakeServer, name: str) -> None:
        doc = yaml.safe_load((CASSETTES / name).read_text(encoding="utf-8"))
        self.interactions = doc["interactions"]
        self.sent: list[dict[str, Any]] = []
        server.route("POST", "/v1/responses", self._route)

    def recorded(self, i: int) -> dict[str, Any]:
        body: dict[str, Any] = self.interactions[i]["request"]["parsed_body"]
        return body

    def _route(self, req: Received, reply: Reply) -> None:
        self.sent.append(req.json())
        response = self.interactions[len(self.sent) - 1]["response"]
        status = response["status"]["code"]
        if "parsed_body" in response:
            reply.json(status, response["parsed_body"])
        else:
            reply.body(status, response["body"]["string"].encode() if isinstance(response["body"], dict)
                       else str(response["body"]).encode(), {"Content-Type": "text/event-stream"})


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as s:
        yield s


def provider(server: FakeServer, model: str) -> OpenAIProvider:
    return OpenAIProvider(api_key="sk-test", model=model, base_url=server.url + "/v1", api="responses", max_retries=0)


def test_simple_answer(server: FakeServer) -> None:
    replay = Replay(server, "model_simple_response.yaml")
    r = provider(server, "gpt-4o").generate_sync("What is the capital of France?")
    assert (r.content, r.finish_reason, r.model) == ("The capital of France is Paris.", "stop", "gpt-4o-2024-08-06")
    assert r.usage is not None and (r.usage.input_tokens, r.usage.output_tokens, r.usage.cached_input_tokens) == (14, 8, 0)
    assert replay.sent[0]["input"] == replay.recorded(0)["input"] and replay.sent[0]["store"] is False


def test_tool_call_round_trip(server: FakeServer) -> None:
    replay = Replay(server, "model_simple_response_with_tool_call.yaml")
    tool = replay.recorded(0)["tools"][0]
    llm = provider(server, "gpt-4o")
    first = llm.generate_sync("What is the capital of PotatoLand?", tools=[tool])
    assert first.finish_reason == "tool_calls"
    (call,) = first.tool_calls
    assert (call.name, call.arguments, call.id) == ("get_capital", {"country": "PotatoLand"}, "call_YfwRsW8sUxDKipwyhWTzOXCA")
    convo = [Message.user("What is the capital of PotatoLand?"), first.to_message(),
             Message.tool_result(call.id, "Potato City")]
    second = llm.generate_sync(convo, tools=[tool])
    assert "Potato City" in second.content and second.finish_reason == "stop"
    ours, theirs = replay.sent[1]["input"], replay.recorded(1)["input"]
    assert [i.get("type", "message") for i in ours] == [i.get("type", "message") for i in theirs]
    for key in ("call_id", "name", "arguments"):
        assert ours[1][key] == theirs[1][key]
    assert ours[2] == theirs[2]  # the function_call_output
    assert replay.sent[0]["tools"][0]["name"] == "get_capital"


def test_structured_output_after_a_tool(server: FakeServer) -> None:
    replay = Replay(server, "native_output.yaml")
    recorded = replay.recorded(0)
    schema = recorded["text"]["format"]["schema"]
    tool = {"name": "get_user_country", "parameters": {"type": "object", "properties": {}}}
    llm = provider(server, "gpt-4o")
    question = "What is the largest city in the user country?"
    first = llm.generate_sync(question, tools=[tool], schema=schema)
    assert first.parsed is None and first.tool_calls[0].name == "get_user_country"
    second = llm.generate_sync([Message.user(question), first.to_message(),
                                Message.tool_result(first.tool_calls[0].id, "Mexico")], tools=[tool], schema=schema)
    assert second.parsed == {"city": "Mexico City", "country": "Mexico"}
    fmt = replay.sent[0]["text"]["format"]
    assert (fmt["type"], fmt["strict"], fmt["schema"]) == ("json_schema", True, recorded["text"]["format"]["schema"])


def test_reasoning_summaries_and_encrypted_replay(server: FakeServer) -> None:
    replay = Replay(server, "model_thinking_part.yaml")
    llm = provider(server, "gpt-5")
    first = llm.generate_sync("How do I cross the street?", reasoning="high")
    assert replay.sent[0]["reasoning"]["effort"] == "high" and replay.sent[0]["include"] == ["reasoning.encrypted_content"]
    assert first.reasoning is not None and first.reasoning.startswith("**Considering street crossing safety**")
    assert first.usage is not None and first.usage.reasoning_tokens == 1920
    (block,) = first.reasoning_blocks
    follow_up = replay.recorded(1)["input"][3]["content"]
    llm.generate_sync([Message.user("How do I cross the street?"), first.to_message(), Message.user(follow_up)],
                      reasoning="high")
    ours = [i for i in replay.sent[1]["input"] if i.get("type") == "reasoning"]
    theirs = [i for i in replay.recorded(1)["input"] if i.get("type") == "reasoning"]
    assert [(i["id"], i["encrypted_content"]) for i in ours] == [(i["id"], i["encrypted_content"]) for i in theirs]
    assert block.provider == "openai" and block.signature == theirs[0]["id"]
    assert [i.get("type", i.get("role")) for i in replay.sent[1]["input"]] == ["user", "reasoning", "message", "user"]


def test_streamed_commentary_call_and_stateless_replay(server: FakeServer) -> None:
    replay = Replay(server, "phase_streamed_on_part_start.yaml")
    recorded = replay.recorded(0)
    tool = {"name": "get_capital", "parameters": recorded["tools"][0]["parameters"]}
    llm = provider(server, "gpt-5.5")
    convo = [Message.system(recorded["instructions"]), Message.user("What is the capital of PotatoLand?")]
    chunks = list(llm.stream_sync(convo, tools=[tool]))
    first = join_chunks(chunks)
    assert first.content == "I’ll check the capital lookup tool for “PotatoLand.”"
    assert [(c.name, c.arguments, c.id) for c in first.tool_calls] == [
        ("get_capital", {"country": "PotatoLand"}, "call_LabG58Uhrq9kZvR52BYKjToD")]
    assert first.finish_reason == "tool_calls"
    assert first.usage is not None and (first.usage.input_tokens, first.usage.output_tokens,
                                        first.usage.reasoning_tokens) == (63, 69, 26)
    theirs = next(i for i in replay.recorded(1)["input"] if i.get("type") == "reasoning")
    block, mark = first.reasoning_blocks
    assert block.data == theirs["encrypted_content"]  # the .done value, not the .added one
    assert (mark.kind, mark.data, mark.text) == ("message", "commentary", first.content)
    assert first.reasoning == ""  # it reasoned, and streamed no summary; the phase is not reasoning
    assert first.response_id is not None and first.response_id.startswith("resp_")
    second = join_chunks(llm.stream_sync([*convo, first.to_message(),
                                          Message.tool_result(first.tool_calls[0].id, "Potato City")], tools=[tool]))
    assert "Potato City" in second.content and second.finish_reason == "stop"
    ours = replay.sent[1]["input"]
    assert [i.get("type", i.get("role")) for i in ours] == ["developer", "user", "reasoning", "message",
                                                            "function_call", "function_call_output"]
    assert ours[2]["encrypted_content"] == theirs["encrypted_content"] and ours[2]["id"] == theirs["id"]
    recorded_message = next(i for i in replay.recorded(1)["input"] if i.get("type") == "message")
    assert ours[3]["phase"] == recorded_message["phase"] == "commentary"  # what the model said was not its answer
    assert ours[3]["content"][0]["text"] == first.content  # (the recording's client folded its quotes to ASCII)


def test_image_by_url(server: FakeServer) -> None:
    replay = Replay(server, "image_url_input.yaml")
    url = replay.recorded(0)["input"][0]["content"][1]["image_url"]
    r = provider(server, "gpt-4o").generate_sync([Message.user((ContentPart.from_text("hello"),
                                                                 ContentPart.image_url(url, detail="auto")))])
    assert r.content and r.finish_reason == "stop"
    assert replay.sent[0]["input"] == replay.recorded(0)["input"]


def test_a_recorded_400_is_a_bad_request(server: FakeServer) -> None:
    Replay(server, "model_http_error.yaml")
    with pytest.raises(BadRequestError, match="decimal below minimum value") as info:
        list(provider(server, "gpt-4o").stream_sync("What is the capital of France?"))
    assert info.value.status == 400 and info.value.error_code == "decimal_below_min_value"


def test_every_cassette_is_replayed_here() -> None:
    names = {p.name for p in CASSETTES.glob("*.yaml")}
    source = Path(__file__).read_text()
    assert names and all(f'"{n}"' in source for n in names), names
    assert json.loads(json.dumps(sorted(names)))  # the set is not empty and plain names
