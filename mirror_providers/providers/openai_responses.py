"""OpenAI's Responses API (``POST /v1/responses``): the body, the answer and the stream.

The wire of ``OpenAIProvider(api="responses")`` (and of ``api="auto"`` for the models the catalog
marks ``responses``). Stateless by default: ``store: false``, the whole conversation sent as input
items each turn, and reasoning carried over as encrypted ``reasoning`` items (asked for with
``include: ["reasoning.encrypted_content"]``) kept on the assistant message, so a conversation can
move to another vendor at any turn. See docs/protocols.md §12 for the wire notes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from .._lazy import dataclass
from ..framing import ServerSentEvent
from ..request import GenerateRequest
from ..types import (
    ContentPart,
    FinishReason,
    GenerationResult,
    Message,
    ModelInfo,
    ReasoningBlock,
    ToolCall,
    ToolCallDelta,
    Usage,
    parse_tool_arguments,
)
from .http import (
    Delta,
    ErrorEvent,
    Reasoning,
    Refusal,
    finish_with_tools,
    id_of,
    optional_count,
    text_of,
    token_count,
)

__all__ = ["COUNT_FIELDS", "INPUT_TOKENS_PATH", "RESPONSES_PATH", "ResponsesStream", "build_payload", "count_payload",
           "parse_result", "parse_usage", "wire_view"]

RESPONSES_PATH = "/responses"
# POST /responses/input_tokens counts a would-be request's input: the create body's fields that
# make the input (protocols-2026.md §2.1; openai-ruby resources/responses/input_tokens.rb lists
# conversation, input, instructions, model, parallel_tool_calls, previous_response_id, reasoning,
# text, tool_choice, tools, truncation) -> {"object": "response.input_tokens", "input_tokens": N}.
INPUT_TOKENS_PATH = "/responses/input_tokens"
COUNT_FIELDS = frozenset({"conversation", "input", "instructions", "model", "parallel_tool_calls",
                          "previous_response_id", "reasoning", "text", "tool_choice", "tools", "truncation"})


def count_payload(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Responses create body -> the ``input_tokens`` body for the same input."""
    return {k: v for k, v in body.items() if k in COUNT_FIELDS}
ENCRYPTED = "reasoning.encrypted_content"
MAX_OUTPUT_ITEMS = 4096  # output items one streamed answer may open; a larger output_index is not a real one

# The body fields build_payload sets -> what a caller uses instead of sending them in ``extra``.
OWNED_FIELDS: dict[str, str] = {
    "model": "the model is the provider's (model=...)",
    "input": "pass the conversation as the prompt",
    "stream": "call stream_sync() or stream() to stream",
    "max_output_tokens": "pass max_tokens=... instead",
    "max_tokens": "pass max_tokens=... instead (sent as max_output_tokens)",
    "max_completion_tokens": "pass max_tokens=... instead (sent as max_output_tokens)",
    "messages": "pass the conversation as the prompt",
    "temperature": "pass temperature=... instead",
    "top_p": "pass top_p=... instead",
    "tools": "pass tools=... instead",
    "tool_choice": "pass tool_choice=... instead",
    "parallel_tool_calls": "pass parallel_tool_calls=... instead",
}

# Chat Completions fields the Responses API does not take (it answers 400 "Unknown parameter"), and
# what to use instead (docs/protocols-2026.md §2.2).
CHAT_ONLY_FIELDS: dict[str, str] = {
    "seed": "it has no seed",
    "n": "it makes one answer per call",
    "logit_bias": "it has no logit_bias",
    "frequency_penalty": "it has no frequency_penalty",
    "presence_penalty": "it has no presence_penalty",
    "reasoning_effort": "pass reasoning=... instead (sent as reasoning.effort)",
    "response_format": "pass schema=... instead (sent as text.format), or extra={'text': {'format': ...}}",
    "verbosity": "use extra={'text': {'verbosity': ...}}",
    "logprobs": "use extra={'top_logprobs': N, 'include': ['message.output_text.logprobs']}",
    "modalities": "audio output is a Chat Completions feature",
    "audio": "audio output is a Chat Completions feature",
    "prediction": "predicted outputs are a Chat Completions feature",
    "web_search_options": "use the web_search tool (extra={'tools': ...} is the library's: pass tools=...)",
}

# Where the answer stopped short (``incomplete_details.reason``) in our vocabulary.
INCOMPLETE_REASONS: dict[str, FinishReason] = {"max_output_tokens": "length", "content_filter": "content_filter"}

# ``response.failed``'s error codes -> the HTTP status the same failure comes with.
FAILED_STATUSES: dict[str, int] = {"rate_limit_exceeded": 429, "insufficient_quota": 429, "server_error": 500,
                                   "invalid_prompt": 400, "vector_store_timeout": 504}


def wire_view(info: ModelInfo | None) -> ModelInfo | None:
    """The catalog row as the Responses API sees the model: tools are taken whatever the
    reasoning effort (Chat Completions refuses them on the newest families), and ``max_tokens`` is
    sent as ``max_output_tokens``."""
    if info is None:
        return None
    return dataclasses.replace(
        info, rejects=tuple(r for r in info.rejects if r != "tools"),
        rejects_while_reasoning=tuple(r for r in info.rejects_while_reasoning if r != "tools"),
        renames=tuple((a, b) for a, b in info.renames if a != "max_tokens"))


def parse_usage(u: Mapping[str, Any] | None) -> Usage | None:
    """``usage``: input includes the cached tokens, output includes the reasoning tokens."""
    if not u:
        return None
    if not isinstance(u, Mapping):
        raise ValueError(f"usage is {type(u).__name__}, not an object")
    inp, out = token_count(u, "input_tokens"), token_count(u, "output_tokens")
    details = u.get("input_tokens_details")
    return Usage(input_tokens=inp, output_tokens=out, total_tokens=token_count(u, "total_tokens") or inp + out,
                 cached_input_tokens=optional_count(details, "cached_tokens"),
                 cache_creation_input_tokens=optional_count(details, "cache_write_tokens"),
                 reasoning_tokens=optional_count(u.get("output_tokens_details"), "reasoning_tokens"))


# -- request ---------------------------------------------------------------------------------------

def _input_part(p: ContentPart) -> dict[str, Any]:
    if p.type == "text":
        return {"type": "input_text", "text": p.text}
    if p.type == "document" and p.text is not None:  # plain text: no document part for it
        return {"type": "input_text", "text": p.as_text()}
    if p.type == "document":
        if p.url:
            return {"type": "input_file", "file_url": p.url}
        return {"type": "input_file", "filename": p.filename or "document.pdf",
                "file_data": p.data_url}
    image: dict[str, Any] = {"type": "input_image", "image_url": p.data_url}
    if p.detail:
        image["detail"] = p.detail
    return image


def _content(m: Message) -> Any:
    if isinstance(m.content, str):
        return m.content
    if m.role != "user":
        return m.text
    return [_input_part(p) for p in m.content]


def _assistant_items(m: Message, origin: str | None) -> list[dict[str, Any]]:
    """An assistant turn as output items echoed back: its text, its calls, and the reasoning items
    it carried at their places (a reasoning item must come right before what followed it)."""
    ours = [r for r in m.reasoning if r.provider == "openai" and (r.origin in (None, origin) or r.kind == "message")]
    phases = [r for r in ours if r.kind == "message" and r.data]
    anchored: list[tuple[int, dict[str, Any]]] = []
    items: list[dict[str, Any]] = []
    if phases and "".join(r.text for r in phases) == m.text:
        # The answer came as messages with a phase (commentary, then final_answer): each goes back
        # as it came, so the model knows which of its words were the answer.
        anchored += [(r.index, _message_item(r.text, r.data)) for r in phases]
    elif m.text:  # no phase, or the text was edited since: one message, no phase to misstate
        items.append(_message_item(m.text))
    for c in m.tool_calls:
        items.append({"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments_json})
    for r in ours:
        if r.kind != "message" and r.data:
            # The summary was for display; the encrypted content is what the model reads back.
            item: dict[str, Any] = {"type": "reasoning", "summary": [], "encrypted_content": r.data}
            if r.signature:
                item["id"] = r.signature
            anchored.append((r.index, item))
    for index, item in sorted(anchored, key=lambda pair: pair[0]):
        items.insert(min(index, len(items)), item)
    while items and items[-1]["type"] == "reasoning":
        # Nothing followed it (an answer cut short after reasoning, its text empty): the API
        # refuses a reasoning item without the item that followed it, so it stays behind.
        items.pop()
    return items


# The output items a turn sends back: its text, its calls, its reasoning. A built-in tool's item
# (web_search_call...) is not kept, nor, with store=false, is the reasoning item before it.
OUR_ITEMS = frozenset(("message", "function_call", "reasoning"))


def replayable(kinds: Mapping[int, Any], blocks: Mapping[int, ReasoningBlock]) -> tuple[ReasoningBlock, ...]:
    """The blocks of an answer (by output index) to keep for its next turn, each indexed by its
    place among the items sent back: a reasoning item whose next item is a built-in tool's
    (which is not sent back) is dropped, as the API would refuse it without that item.
    ``kinds``: each output item's type, where known."""
    dropped = {i for i, b in blocks.items() if b.kind != "message" and kinds.get(i + 1, "message") not in OUR_ITEMS}
    ours = sorted(i for i in {*kinds, *blocks} if kinds.get(i, "reasoning") in OUR_ITEMS and i not in dropped)
    rank = {i: r for r, i in enumerate(ours)}
    return tuple(blocks[i] if blocks[i].index == rank[i] else dataclasses.replace(blocks[i], index=rank[i])
                 for i in sorted(blocks) if i not in dropped)


def _message_item(text: str, phase: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": text, "annotations": []}]}
    if phase:
        item["phase"] = phase
    return item


def _phase_mark(item: Mapping[str, Any], index: int) -> ReasoningBlock | None:
    """A message item's ``phase`` as a block to send back with its text (None without one)."""
    phase = item.get("phase")
    if phase is None:
        return None
    text = "".join(text_of(p.get("text"), "output_text") for p in item.get("content") or ()
                   if isinstance(p, Mapping) and p.get("type") == "output_text")
    return ReasoningBlock("openai", "message", text=text, data=text_of(phase, "a message phase") or None, index=index)


def build_input(request: GenerateRequest, origin: str | None = None) -> list[dict[str, Any]]:
    """Our conversation -> input items: system prompts as ``developer`` messages in place (the
    start of the input is where the prompt cache looks), tool results as ``function_call_output``;
    encrypted reasoning only where it was made (``origin``: the server this request goes to)."""
    items: list[dict[str, Any]] = [{"role": "developer", "content": request.system}] if request.system else []
    for m in request.messages:
        if m.role == "system":
            items.append({"role": "developer", "content": m.text})
        elif m.role == "tool":
            items.append({"type": "function_call_output", "call_id": m.tool_call_id or "", "output": m.text})
        elif m.role == "assistant":
            items += _assistant_items(m, origin)
        else:
            items.append({"role": "user", "content": _content(m)})
    return items


def build_payload(request: GenerateRequest, model: str, stream: bool, info: ModelInfo | None = None,
                  store: bool = False, origin: str | None = None) -> dict[str, Any]:
    """Our request -> the Responses body (``info``: the model's catalog row, if known;
    ``origin``: the server it goes to)."""
    body: dict[str, Any] = {"model": model, "input": build_input(request, origin), "store": store}
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    reasons = info is None or info.reasoning is not None
    level = request.reasoning
    if reasons and level != "off":
        body["include"] = [ENCRYPTED]  # reasoning carried over without server-side state
    if reasons and level not in (None, "on"):
        body["reasoning"] = {"effort": "none"} if level == "off" else {"effort": level, "summary": "auto"}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.tools:
        body["tools"] = [{"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}
                         for t in request.tools]
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = choice if choice in ("auto", "none", "required") else {"type": "function", "name": choice}
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.schema is not None:
        fmt: dict[str, Any] = {"type": "json_schema", "name": request.schema.name,
                               "schema": request.schema.strict_schema(), "strict": True}
        if request.schema.description:
            fmt["description"] = request.schema.description
        body["text"] = {"format": fmt}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_obfuscation": False}  # no random padding on every delta
    extra = request.extra
    if isinstance(extra.get("text"), Mapping) and "text" in body:  # merged (verbosity...), not replaced
        extra = {**extra, "text": {**body["text"], **extra["text"]}}
    if isinstance(extra.get("include"), list) and "include" in body:
        extra = {**extra, "include": [*body["include"], *(i for i in extra["include"] if i != ENCRYPTED)]}
    body.update(extra)
    return body


# -- response --------------------------------------------------------------------------------------

def _reasoning_item(item: Mapping[str, Any], index: int, origin: str | None) -> ReasoningBlock:
    """A ``reasoning`` output item: its summary as text, its encrypted content to send back."""
    parts = item.get("summary") or []
    if not isinstance(parts, list):
        raise ValueError(f"a reasoning item's summary is {type(parts).__name__}, not a list")
    summary = "\n\n".join(text_of(s.get("text"), "a reasoning summary") for s in parts if isinstance(s, Mapping))
    encrypted = item.get("encrypted_content")
    item_id = item.get("id")
    return ReasoningBlock("openai", "thinking", text=summary,
                          data=text_of(encrypted, "encrypted_content") or None,
                          signature=text_of(item_id, "a reasoning item id") or None, index=index,
                          origin=origin if encrypted else None)


def finish_of(data: Mapping[str, Any], had_calls: bool, missing: str = "completed") -> FinishReason | None:
    """A response's status -> our finish reason (``incomplete`` by its reason); ``missing`` is
    the status of a response that leaves it out (a compatible server; a stream's terminal event
    says which it is)."""
    status = data.get("status") or missing
    if status == "incomplete":
        details = data.get("incomplete_details") or {}
        return INCOMPLETE_REASONS.get(str(details.get("reason")), "other")
    return finish_with_tools("stop" if status in ("completed", None) else "other", had_calls)


def failure(data: Mapping[str, Any]) -> dict[str, Any]:
    """A failed response's ``error`` as an error envelope (its code is its type too)."""
    err = data.get("error")
    if isinstance(err, str) and err:
        err = {"message": err}
    err = dict(err) if isinstance(err, Mapping) else {"message": f"the response {data.get('status') or 'failed'}"
                                                                 " (it gave no error)"}
    err.setdefault("type", err.get("code"))
    return {"error": err}


def parse_result(data: Mapping[str, Any], model: str, origin: str | None = None) -> GenerationResult:
    """A Responses answer -> our result (reasoning items kept for ``to_message``).

    Raises:
        ErrorEvent: the response failed (``status: "failed"``), or was not finished (a background
            response still queued or running: this client does not poll).
        KeyError, TypeError, ValueError: the body lacks the documented fields.
    """
    status = data.get("status")
    if status == "failed" or data.get("error"):
        raise ErrorEvent(failure(data))
    if status in ("queued", "in_progress"):
        raise ValueError(f"response status is {status!r}: not finished (background responses are not polled)")
    if status not in ("completed", "incomplete", None):  # None: a compatible server that leaves it out
        raise ValueError(f"response status is {str(status)[:40]!r}, not completed or incomplete")
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[ToolCall] = []
    blocks: dict[int, ReasoningBlock] = {}
    kinds: dict[int, Any] = {}
    for i, item in enumerate(data["output"]):
        kind = kinds[i] = item.get("type")
        if kind == "message":
            mark = _phase_mark(item, i)
            if mark is not None:
                blocks[i] = mark
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    texts.append(text_of(part.get("text"), "output_text"))
                elif part.get("type") == "refusal":
                    refusals.append(text_of(part.get("refusal"), "a refusal"))
        elif kind == "function_call":
            raw = text_of(item.get("arguments"), "function_call arguments") or "{}"
            calls.append(ToolCall(id=text_of(item.get("call_id"), "call_id"), name=text_of(item.get("name"), "name"),
                                  arguments=parse_tool_arguments(raw), arguments_json=raw))
        elif kind == "reasoning":
            blocks[i] = _reasoning_item(item, i, origin)
        # other items (built-in tools' calls...) are not ours to read
    summaries = [b.text for b in blocks.values() if b.text and b.kind == "thinking"]
    return GenerationResult(
        content="".join(texts), model=str(data.get("model") or model), provider="",
        finish_reason=finish_of(data, bool(calls)), usage=parse_usage(data.get("usage")), tool_calls=tuple(calls),
        raw=dict(data), reasoning="\n\n".join(summaries) if summaries else None,
        reasoning_blocks=replayable(kinds, blocks), refusal="".join(refusals) or None, response_id=id_of(data))



@dataclass
class ResponsesStream:
    """One Responses stream's reading (a ``StreamParser``): text, refusal and summary deltas,
    function calls by output item, reasoning items kept from ``output_item.done``, the terminal
    event's status and usage. ``sequence_number`` must count up without gaps when present."""

    model: str
    origin: str | None = None  # the server streaming it (see ReasoningBlock.origin)
    finish: FinishReason | None = None
    usage_: Usage | None = None
    done: bool = False
    next_sequence: int | None = None
    slots: dict[int, int] = field(default_factory=dict)  # output_index of a function call -> tool-call ordinal
    arguments_seen: set[int] = field(default_factory=set)  # output indexes whose arguments streamed
    summary_at: tuple[int, int] | None = None  # (output_index, summary_index) of the last summary delta
    blocks: dict[int, ReasoningBlock] = field(default_factory=dict)
    kinds: dict[int, Any] = field(default_factory=dict)  # output_index -> its item's type
    refused: list[str] = field(default_factory=list)
    response_id: str | None = None
    refusal_streamed = True

    @property
    def refusal(self) -> str | None:
        return "".join(self.refused) if self.refused else None

    @property
    def reasoning_blocks(self) -> tuple[ReasoningBlock, ...]:
        return replayable(self.kinds, self.blocks)

    def _sequence(self, data: Mapping[str, Any]) -> None:
        number = data.get("sequence_number")
        if number is None:
            return
        if number.__class__ is not int:
            raise ValueError(f"sequence_number {str(number)[:40]!r} is not a number")
        if self.next_sequence is not None and number != self.next_sequence:
            raise ValueError(f"sequence_number {number} where {self.next_sequence} was due: events were lost")
        self.next_sequence = number + 1

    def _slot(self, data: Mapping[str, Any]) -> int:
        index = data.get("output_index", 0)
        if index.__class__ is not int or not 0 <= index < MAX_OUTPUT_ITEMS:
            raise ValueError(f"output_index {str(index)[:40]!r} is not a number from 0 to {MAX_OUTPUT_ITEMS - 1}")
        return int(index)

    def feed(self, event: ServerSentEvent) -> Delta:
        """One SSE event -> its text, refusal, summary or tool-call fragment."""
        if event.data.startswith("[DONE]"):  # a gateway's addition: the terminal event already came
            return None
        data = event.json()
        if not isinstance(data, dict):
            return None
        kind = data.get("type", event.event)
        if kind != "error" and kind != "response.failed":  # the vendor's error wins over a numbering one
            self._sequence(data)
        if kind == "response.output_text.delta":  # nearly every event: tested first
            text: str | None = data.get("delta")
            return text
        if kind == "response.function_call_arguments.delta":
            index = self._slot(data)
            self.arguments_seen.add(index)
            return "", (ToolCallDelta(index=self._call_slot(index), arguments_delta=text_of(data.get("delta"),
                                                                                             "arguments delta")),)
        if kind == "response.reasoning_summary_text.delta":
            return self._summary(data)
        if kind == "response.refusal.delta":
            piece = text_of(data.get("delta"), "a refusal delta")
            if piece:
                self.refused.append(piece)
                return Refusal(piece)
            return None
        return self._other(kind, data)

    def _call_slot(self, index: int) -> int:
        """The tool-call ordinal of the function call at output ``index``."""
        slot = self.slots.get(index)
        if slot is None:
            raise ValueError(f"function call arguments for output_index {index}, which no output_item.added "
                             f"opened as a function call")
        return slot

    def _summary(self, data: Mapping[str, Any]) -> Delta:
        piece = text_of(data.get("delta"), "a summary delta")
        if not piece:
            return None
        part = data.get("summary_index") or 0
        if part.__class__ is not int:
            raise ValueError(f"summary_index {str(part)[:40]!r} is not a number")
        at = (self._slot(data), part)
        first_of_part = self.summary_at is not None and self.summary_at != at
        self.summary_at = at
        return Reasoning("\n\n" + piece if first_of_part else piece)

    def _other(self, kind: Any, data: Mapping[str, Any]) -> Delta:
        if kind == "response.output_item.added":
            item = data.get("item") or {}
            self.kinds[self._slot(data)] = item.get("type")
            if item.get("type") == "function_call":
                index = self._slot(data)
                slot = self.slots.setdefault(index, len(self.slots))
                return "", (ToolCallDelta(index=slot, id=text_of(item.get("call_id"), "call_id"),
                                          name=text_of(item.get("name"), "name")),)
        elif kind == "response.function_call_arguments.done":
            index = self._slot(data)
            if index not in self.arguments_seen and data.get("arguments"):  # a server that sends only .done
                self.arguments_seen.add(index)
                return "", (ToolCallDelta(index=self._call_slot(index),
                                          arguments_delta=text_of(data["arguments"], "arguments")),)
        elif kind == "response.output_item.done":
            index, item = self._slot(data), data.get("item") or {}
            self.kinds[index] = item.get("type")
            return self._item_done(index, item)
        elif kind in ("response.created", "response.completed", "response.incomplete"):
            self._response(kind, data.get("response") or {})
        elif kind == "response.failed":
            raise ErrorEvent(failure(data.get("response") or {}))
        elif kind == "error":
            if isinstance(data.get("error"), Mapping):
                raise ErrorEvent(data)
            if isinstance(data.get("error"), str):  # {"type": "error", "error": "boom"}
                raise ErrorEvent({"error": {**data, "message": data.get("message") or data["error"]}})
            raise ErrorEvent({"error": data})
        return None  # response.in_progress, content_part.*, .done events, built-in tools' events...

    def _item_done(self, index: int, item: Mapping[str, Any]) -> Delta:
        """An output item is complete: a call's unstreamed part, a reasoning item's encrypted
        content (the one to send back), a message's phase."""
        kind = item.get("type")
        if kind == "function_call":
            return self._call_done(index, item)
        if kind == "reasoning":
            self.blocks[index] = _reasoning_item(item, index, self.origin)
        elif kind == "message" and item.get("phase") is not None:
            mark = _phase_mark(item, index)
            if mark is not None:
                self.blocks[index] = mark
        return None

    def _response(self, kind: str, response: Mapping[str, Any]) -> None:
        """``response.created`` or a terminal event's response: model, id, and at the end how
        it finished (a terminal event whose response failed is the failure)."""
        if kind != "response.created" and (response.get("status") == "failed" or response.get("error")):
            raise ErrorEvent(failure(response))  # as generate_sync reads the same response
        self.model = str(response.get("model") or self.model)
        self.response_id = id_of(response) or self.response_id
        if kind != "response.created":
            self.finish = finish_of(response, bool(self.slots), kind.rpartition(".")[2])
            self.usage_ = parse_usage(response.get("usage"))
            self.done = True

    def _call_done(self, index: int, item: Mapping[str, Any]) -> Delta:
        """A function call's item is complete: what of it did not stream (a server that sends a
        call only whole, here) is given now."""
        fresh = index not in self.slots
        slot = self.slots.setdefault(index, len(self.slots))
        args = "" if index in self.arguments_seen else text_of(item.get("arguments"), "function_call arguments")
        self.arguments_seen.add(index)
        if not fresh and not args:
            return None
        return "", (ToolCallDelta(index=slot, id=text_of(item.get("call_id"), "call_id") if fresh else None,
                                  name=text_of(item.get("name"), "name") if fresh else None,
                                  arguments_delta=args),)

    def final(self) -> tuple[FinishReason | None, Usage | None]:
        return self.finish, self.usage_
