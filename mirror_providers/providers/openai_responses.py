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
from dataclasses import dataclass, field
from typing import Any

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

__all__ = ["RESPONSES_PATH", "ResponsesStream", "build_payload", "parse_result", "parse_usage", "wire_view"]

RESPONSES_PATH = "/responses"
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


def _assistant_items(m: Message) -> list[dict[str, Any]]:
    """An assistant turn as output items echoed back: its text, its calls, and the reasoning items
    it carried at their places (a reasoning item must come right before what followed it)."""
    ours = [r for r in m.reasoning if r.provider == "openai"]
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
    return items


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


def build_input(request: GenerateRequest) -> list[dict[str, Any]]:
    """Our conversation -> input items: system prompts as ``developer`` messages in place (the
    start of the input is where the prompt cache looks), tool results as ``function_call_output``."""
    items: list[dict[str, Any]] = [{"role": "developer", "content": request.system}] if request.system else []
    for m in request.messages:
        if m.role == "system":
            items.append({"role": "developer", "content": m.text})
        elif m.role == "tool":
            items.append({"type": "function_call_output", "call_id": m.tool_call_id or "", "output": m.text})
        elif m.role == "assistant":
            items += _assistant_items(m)
        else:
            items.append({"role": "user", "content": _content(m)})
    return items


def build_payload(request: GenerateRequest, model: str, stream: bool, info: ModelInfo | None = None,
                  store: bool = False) -> dict[str, Any]:
    """Our request -> the Responses body (``info``: the model's catalog row, if known)."""
    body: dict[str, Any] = {"model": model, "input": build_input(request), "store": store}
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

def _reasoning_item(item: Mapping[str, Any], index: int) -> ReasoningBlock:
    """A ``reasoning`` output item: its summary as text, its encrypted content to send back."""
    summary = "\n\n".join(text_of(s.get("text"), "a reasoning summary") for s in item.get("summary") or ()
                          if isinstance(s, Mapping))
    encrypted = item.get("encrypted_content")
    item_id = item.get("id")
    return ReasoningBlock("openai", "thinking", text=summary,
                          data=text_of(encrypted, "encrypted_content") or None,
                          signature=text_of(item_id, "a reasoning item id") or None, index=index)


def finish_of(data: Mapping[str, Any], had_calls: bool) -> FinishReason | None:
    """A response's status -> our finish reason (``incomplete`` by its reason)."""
    status = data.get("status")
    if status == "incomplete":
        details = data.get("incomplete_details") or {}
        return INCOMPLETE_REASONS.get(str(details.get("reason")), "other")
    return finish_with_tools("stop" if status in ("completed", None) else "other", had_calls)


def failure(data: Mapping[str, Any]) -> dict[str, Any]:
    """A failed response's ``error`` as an error envelope (its code is its type too)."""
    err = data.get("error")
    err = dict(err) if isinstance(err, Mapping) else {"message": f"the response {data.get('status')}"}
    err.setdefault("type", err.get("code"))
    return {"error": err}


def parse_result(data: Mapping[str, Any], model: str) -> GenerationResult:
    """A Responses answer -> our result (reasoning items kept for ``to_message``).

    Raises:
        ErrorEvent: the response failed (``status: "failed"``), or was not finished (a background
            response still queued or running: this client does not poll).
        KeyError, TypeError, ValueError: the body lacks the documented fields.
    """
    status = data.get("status")
    if status == "failed" or data.get("error"):
        raise ErrorEvent(failure(data))
    if status not in ("completed", "incomplete", None):  # None: a compatible server that leaves it out
        raise ValueError(f"response status is {status!r}: not finished (background responses are not polled)")
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[ToolCall] = []
    blocks: list[ReasoningBlock] = []
    for i, item in enumerate(data["output"]):
        kind = item.get("type")
        if kind == "message":
            mark = _phase_mark(item, i)
            if mark is not None:
                blocks.append(mark)
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
            blocks.append(_reasoning_item(item, i))
        # other items (built-in tools' calls...) are not ours to read
    summaries = [b.text for b in blocks if b.text and b.kind == "thinking"]
    return GenerationResult(
        content="".join(texts), model=str(data.get("model") or model), provider="",
        finish_reason=finish_of(data, bool(calls)), usage=parse_usage(data.get("usage")), tool_calls=tuple(calls),
        raw=dict(data), reasoning="\n\n".join(summaries) if summaries else None,
        reasoning_blocks=tuple(blocks), refusal="".join(refusals) or None, response_id=id_of(data))



@dataclass
class ResponsesStream:
    """One Responses stream's reading (a ``StreamParser``): text, refusal and summary deltas,
    function calls by output item, reasoning items kept from ``output_item.done``, the terminal
    event's status and usage. ``sequence_number`` must count up without gaps when present."""

    model: str
    finish: FinishReason | None = None
    usage_: Usage | None = None
    done: bool = False
    next_sequence: int | None = None
    slots: dict[int, int] = field(default_factory=dict)  # output_index of a function call -> tool-call ordinal
    arguments_seen: set[int] = field(default_factory=set)  # output indexes whose arguments streamed
    summary_at: tuple[int, int] | None = None  # (output_index, summary_index) of the last summary delta
    blocks: dict[int, ReasoningBlock] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    response_id: str | None = None
    refusal_streamed = True

    @property
    def refusal(self) -> str | None:
        return "".join(self.refused) if self.refused else None

    @property
    def reasoning_blocks(self) -> tuple[ReasoningBlock, ...]:
        return tuple(self.blocks[i] for i in sorted(self.blocks))

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
        self._sequence(data)
        kind = data.get("type", event.event)
        if kind == "response.output_text.delta":  # nearly every event: tested first
            text: str | None = data.get("delta")
            return text
        if kind == "response.function_call_arguments.delta":
            index = self._slot(data)
            self.arguments_seen.add(index)
            return "", (ToolCallDelta(index=self.slots.get(index, 0), arguments_delta=text_of(data.get("delta"),
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

    def _summary(self, data: Mapping[str, Any]) -> Delta:
        piece = text_of(data.get("delta"), "a summary delta")
        if not piece:
            return None
        at = (self._slot(data), int(data.get("summary_index", 0)))
        first_of_part = self.summary_at is not None and self.summary_at != at
        self.summary_at = at
        return Reasoning("\n\n" + piece if first_of_part else piece)

    def _other(self, kind: Any, data: Mapping[str, Any]) -> Delta:
        if kind == "response.output_item.added":
            item = data.get("item") or {}
            if item.get("type") == "function_call":
                index = self._slot(data)
                slot = self.slots.setdefault(index, len(self.slots))
                return "", (ToolCallDelta(index=slot, id=text_of(item.get("call_id"), "call_id"),
                                          name=text_of(item.get("name"), "name")),)
        elif kind == "response.function_call_arguments.done":
            index = self._slot(data)
            if index not in self.arguments_seen and data.get("arguments"):  # a server that sends only .done
                self.arguments_seen.add(index)
                return "", (ToolCallDelta(index=self.slots.get(index, 0),
                                          arguments_delta=text_of(data["arguments"], "arguments")),)
        elif kind == "response.output_item.done":
            item = data.get("item") or {}
            if item.get("type") == "reasoning":  # its encrypted content is the one to send back
                index = self._slot(data)
                self.blocks[index] = _reasoning_item(item, index)
            elif item.get("type") == "message" and item.get("phase") is not None:
                index = self._slot(data)
                mark = _phase_mark(item, index)
                if mark is not None:
                    self.blocks[index] = mark
        elif kind == "response.created":
            response = data.get("response") or {}
            self.model = str(response.get("model") or self.model)
            self.response_id = id_of(response) or self.response_id
        elif kind in ("response.completed", "response.incomplete"):
            response = data.get("response") or {}
            self.model = str(response.get("model") or self.model)
            self.response_id = id_of(response) or self.response_id
            self.finish = finish_of(response, bool(self.slots))
            self.usage_ = parse_usage(response.get("usage"))
            self.done = True
        elif kind == "response.failed":
            raise ErrorEvent(failure(data.get("response") or {}))
        elif kind == "error":
            raise ErrorEvent(data if isinstance(data.get("error"), Mapping) else {"error": data})
        return None  # response.in_progress, content_part.*, .done events, built-in tools' events...

    def final(self) -> tuple[FinishReason | None, Usage | None]:
        return self.finish, self.usage_
