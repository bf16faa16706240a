"""Anthropic Messages over raw HTTP and SSE (docs/protocols.md §3).

Also works against servers that speak Anthropic's ``/v1/messages`` (llama.cpp's server, recent
Ollama): point ``base_url`` at their root (without ``/v1``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from .._lazy import dataclass
from ..errors import (
    APIError,
    ConfigurationError,
    ModelNotFoundError,
    NotFoundError,
    QuotaExceededError,
    ValidationError,
)
from ..framing import ServerSentEvent
from ..models import shipped_models
from ..request import GenerateRequest
from ..types import (
    Citation,
    ContentPart,
    FinishReason,
    GenerationResult,
    HealthStatus,
    Message,
    ModelInfo,
    ReasoningBlock,
    TokenCount,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from .http import (
    KEEPALIVE,
    Cited,
    Delta,
    ErrorEvent,
    HttpProvider,
    Reasoning,
    _Secret,
    check_credential,
    check_header_value,
    finish_with_tools,
    id_of,
    optional_count,
    text_of,
    token_count,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .http import ClientSettings

__all__ = ["AnthropicProvider"]

MAX_MODEL_PAGES = 100  # of GET /v1/models: a server that says has_more forever is stopped there

logger = logging.getLogger("mirror_providers.anthropic")

ANTHROPIC_HOST = "api.anthropic.com"
API_VERSION = "2023-06-01"
# max_tokens is required; without one from the caller we ask for this much (capped by the model).
# Larger non-streaming answers risk idle-connection drops (docs/protocols.md §3.2).
DEFAULT_MAX_TOKENS = 8192

# The body fields build_payload sets -> what a caller uses instead of sending them in ``extra``.
OWNED_FIELDS: dict[str, str] = {
    "model": "the model is the provider's (model=...)",
    "messages": "pass the conversation as the prompt",
    "stream": "call stream_sync() or stream() to stream",
    "max_tokens": "pass max_tokens=... instead (or max_tokens=... to the provider for its default)",
    "system": "pass system=... instead (or a system message)",
    "temperature": "pass temperature=... instead",
    "top_p": "pass top_p=... instead",
    "stop_sequences": "pass stop=... instead",
    "tools": "pass tools=... instead",
    "tool_choice": "pass tool_choice=... (and parallel_tool_calls=False) instead",
}

# Token counting: POST /v1/messages/count_tokens takes the Messages body minus what only shapes
# the generation (protocols-2026.md §4.8; anthropic-sdk-python types/message_count_tokens_params.py
# lists model, messages, system, tools, tool_choice, thinking, output_config, cache_control). Those
# fields are dropped; any other ``extra`` field goes as given (the endpoint says if it refuses one).
COUNT_PATH = "/v1/messages/count_tokens"
GENERATION_ONLY = frozenset({"max_tokens", "stream", "temperature", "top_p", "top_k", "stop_sequences",
                             "metadata", "service_tier", "container", "inference_geo"})


def count_payload(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Messages body -> the ``count_tokens`` body for the same input."""
    return {k: v for k, v in body.items() if k not in GENERATION_ONLY}


# An error event inside a 200 stream carries only its type: the status each comes with as an HTTP
# error (docs/protocols.md §3.5).
ERROR_STATUSES: dict[str, int] = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "timeout_error": 504, "overloaded_error": 529,
}

FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "other",
}

MODELS: tuple[ModelInfo, ...] = shipped_models("anthropic")

# The tool a model without native structured output is made to call for schema= (its input is the
# answer). The name is reserved: a caller's tool may not use it.
OUTPUT_TOOL = "mirror_output"


def uses_output_tool(request: GenerateRequest, info: ModelInfo | None) -> bool:
    """Is ``schema=`` asked of this model by forcing ``OUTPUT_TOOL`` (no native structured output)?"""
    return request.schema is not None and info is not None and not info.structured_output


def refusal_text(stop_details: Any) -> str:
    """What a ``stop_reason: "refusal"`` says: the explanation, else its category."""
    if isinstance(stop_details, Mapping):
        explanation, category = stop_details.get("explanation"), stop_details.get("category")
        if isinstance(explanation, str) and explanation:
            return explanation
        if isinstance(category, str) and category:
            return f"refused ({category})"
    return "refused"


def finish_reason(value: str | None) -> FinishReason | None:
    if value is None:
        return None
    return FINISH_REASONS.get(value, "other")


def parse_usage(u: Mapping[str, Any] | None) -> Usage | None:
    if not u:
        return None
    if not isinstance(u, Mapping):
        raise ValueError(f"usage is {type(u).__name__}, not an object")
    details = u.get("output_tokens_details")
    thinking = optional_count(details, "thinking_tokens") if isinstance(details, Mapping) else None
    created = optional_count(u, "cache_creation_input_tokens")
    read = optional_count(u, "cache_read_input_tokens")
    inp = token_count(u, "input_tokens") + (created or 0) + (read or 0)
    out = token_count(u, "output_tokens")
    return Usage(input_tokens=inp, output_tokens=out, total_tokens=inp + out,
                 cached_input_tokens=read, cache_creation_input_tokens=created, reasoning_tokens=thinking)


# -- request ---------------------------------------------------------------------------------------

def cache_control(ttl: str) -> dict[str, str]:
    """A breakpoint's ``cache_control`` (5 minutes is the API's default and is not spelled out)."""
    return {"type": "ephemeral"} if ttl == "5m" else {"type": "ephemeral", "ttl": ttl}


def _document(p: ContentPart) -> dict[str, Any]:
    if p.text is not None:
        source: dict[str, Any] = {"type": "text", "media_type": "text/plain", "data": p.text}
    elif p.url:
        source = {"type": "url", "url": p.url}
    else:
        source = {"type": "base64", "media_type": "application/pdf", "data": p.data}
    block: dict[str, Any] = {"type": "document", "source": source}
    if p.title:
        block["title"] = p.title
    if p.context:
        block["context"] = p.context
    if p.citations:
        block["citations"] = {"enabled": True}
    return block


def _part(p: ContentPart) -> dict[str, Any] | None:
    if p.type == "text":
        block: dict[str, Any] | None = {"type": "text", "text": p.text} if p.text else None
    elif p.type == "document":
        block = _document(p)
    elif p.url:
        block = {"type": "image", "source": {"type": "url", "url": p.url}}
    else:
        block = {"type": "image", "source": {"type": "base64", "media_type": p.media_type, "data": p.data}}
    if block is not None and p.cache:
        block["cache_control"] = cache_control(p.cache)
    return block


def _parts(m: Message) -> list[dict[str, Any]]:
    if isinstance(m.content, str):
        return [{"type": "text", "text": m.content}] if m.content else []
    return [b for b in map(_part, m.content) if b is not None]


def system_blocks(request: GenerateRequest) -> str | list[dict[str, Any]] | None:
    """The ``system`` field: the prompts joined as text, or as text blocks when one carries a cache
    breakpoint (each system message's parts a block of its own)."""
    cached = any(isinstance(m.content, tuple) and any(p.cache for p in m.content)
                 for m in request.messages if m.role == "system")
    if not cached:
        return request.system_text()
    blocks: list[dict[str, Any]] = [{"type": "text", "text": request.system}] if request.system else []
    for m in request.messages:
        if m.role == "system":
            blocks += _parts(m)
    return blocks


def _blocks(m: Message) -> tuple[str, list[dict[str, Any]]]:
    """One of our messages -> (Anthropic role, content blocks)."""
    if m.role == "tool":
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id}
        result["content"] = m.content if isinstance(m.content, str) else _parts(m)
        return "user", [result]
    blocks = _parts(m)
    for c in m.tool_calls:
        blocks.append({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments or {}})
    # Thinking goes back unchanged, where it was among the answer's blocks (the API refuses a tool
    # loop whose thinking was dropped or moved); another vendor's reasoning is not ours to send.
    mine = [r for r in m.reasoning if r.provider == "anthropic" and r.kind != "message"] if m.reasoning else []
    for r in sorted(mine, key=lambda r: r.index):
        if r.kind == "redacted_thinking":
            block: dict[str, Any] = {"type": "redacted_thinking", "data": r.data or ""}
        else:
            block = {"type": "thinking", "thinking": r.text, "signature": r.signature or ""}
        blocks.insert(min(r.index, len(blocks)), block)
    return m.role, blocks


def _reasoning_block(block: Mapping[str, Any], index: int) -> ReasoningBlock:
    """A ``thinking`` or ``redacted_thinking`` content block, kept to be sent back."""
    if block.get("type") == "redacted_thinking":
        return ReasoningBlock("anthropic", "redacted_thinking", data=text_of(block.get("data"), "redacted data"),
                              index=index)
    signature = block.get("signature")
    return ReasoningBlock("anthropic", "thinking", text=text_of(block.get("thinking"), "thinking text"),
                          signature=text_of(signature, "a signature") or None,
                          index=index)


def build_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Our conversation -> Anthropic turns: system messages dropped (they go to ``system``),
    tool results folded into user turns, consecutive same-role turns merged, and within a user
    turn ``tool_result`` blocks placed first (docs/protocols.md §3.2, §3.6)."""
    turns: list[dict[str, Any]] = []
    last: dict[str, Any] | None = None
    for m in messages:
        role: str = m.role
        if role == "system":
            continue
        if type(m.content) is str and role != "tool" and not m.tool_calls and not m.reasoning:
            if not m.content:  # a plain text turn, the common case, made directly
                continue
            if last is None or last["role"] != role:
                last = {"role": role, "content": m.content}  # a lone text turn is sent as a string
                turns.append(last)
                continue
            blocks = [{"type": "text", "text": m.content}]
        else:
            role, blocks = _blocks(m)
            if not blocks:
                continue
        if last is not None and last["role"] == role:
            if type(last["content"]) is str:
                last["content"] = [{"type": "text", "text": last["content"]}]
            last["content"].extend(blocks)
        else:
            last = {"role": role, "content": blocks}
            turns.append(last)
    for t in turns:
        content = t["content"]
        if type(content) is str:
            continue
        if len(content) == 1:
            if content[0]["type"] == "text" and len(content[0]) == 2:
                t["content"] = content[0]["text"]  # a lone plain text block (no cache_control, no citations)
        elif t["role"] == "user":
            content.sort(key=lambda b: b["type"] != "tool_result")  # stable: results first
    return turns


def _tool_choice(choice: str, parallel: bool | None) -> dict[str, Any]:
    mapped = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}
    out: dict[str, Any] = dict(mapped.get(choice) or {"type": "tool", "name": choice})
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


# reasoning= on a model with budget thinking (``{"type": "enabled", "budget_tokens": N}``, N >= 1024):
# the budget each level gets. Adaptive models take the level itself as ``output_config.effort``.
THINKING_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 2048, "on": 8192, "medium": 8192, "high": 16384,
                                    "xhigh": 32000, "max": 48000}


def thinking_budget(request: GenerateRequest, info: ModelInfo | None) -> int | None:
    """The thinking budget this request sends (budget-style models asked to reason), or None."""
    if info is None or info.reasoning != "budget" or request.reasoning in (None, "off"):
        return None
    return THINKING_BUDGETS[request.reasoning]


def thinking_fields(request: GenerateRequest, info: ModelInfo | None) -> dict[str, Any]:
    """``reasoning=`` as Anthropic fields: ``thinking`` (disabled, enabled with a budget, or
    adaptive with its text returned) and ``output_config.effort``. A model the catalog does not
    know is asked the current way (adaptive)."""
    level = request.reasoning
    if level is None or (info is not None and info.reasoning is None):
        return {}
    if level == "off":
        return {"thinking": {"type": "disabled"}}
    budget = thinking_budget(request, info)
    if budget is not None:
        return {"thinking": {"type": "enabled", "budget_tokens": budget}}
    fields: dict[str, Any] = {"thinking": {"type": "adaptive", "display": "summarized"}}
    if level != "on":
        fields["output_config"] = {"effort": level}
    return fields


def build_payload(request: GenerateRequest, model: str, max_tokens: int, stream: bool,
                  info: ModelInfo | None = None) -> dict[str, Any]:
    """Our request -> the Messages API body (``info``: the model's catalog row, if known)."""
    budget = thinking_budget(request, info)
    if request.max_tokens is None and budget is not None:  # room to think and then answer
        max_tokens = min(info.max_output if info else max_tokens, budget + max_tokens)
    body: dict[str, Any] = {"model": model, "max_tokens": request.max_tokens or max_tokens,
                            "messages": build_messages(request.messages)}
    body.update(thinking_fields(request, info))
    system = system_blocks(request)
    if system:
        body["system"] = system
    if request.cache is not None:
        body["cache_control"] = cache_control(request.cache)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.tools:
        body["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.parameters,
                          **({"cache_control": cache_control(t.cache)} if t.cache else {})}
                         for t in request.tools]
    if request.tool_choice is not None or request.parallel_tool_calls is False:
        body["tool_choice"] = _tool_choice(request.tool_choice or "auto", request.parallel_tool_calls)
    if request.schema is not None:
        if uses_output_tool(request, info):
            body.setdefault("tools", []).append({
                "name": OUTPUT_TOOL, "input_schema": request.schema.schema,
                "description": request.schema.description or "Give your answer by calling this tool."})
            body["tool_choice"] = {"type": "tool", "name": OUTPUT_TOOL}
        else:
            body.setdefault("output_config", {})["format"] = {"type": "json_schema",
                                                              "schema": request.schema.strict_schema()}
    if stream:
        body["stream"] = True
    extra = request.extra
    if isinstance(extra.get("output_config"), Mapping) and "output_config" in body:  # merged, not replaced
        extra = {**extra, "output_config": {**body["output_config"], **extra["output_config"]}}
    body.update(extra)
    return body


# -- response --------------------------------------------------------------------------------------

def _tool_call(block: Mapping[str, Any]) -> ToolCall:
    args = block.get("input") or {}
    return ToolCall(id=str(block.get("id") or ""), name=str(block.get("name") or ""),
                    arguments=dict(args) if isinstance(args, dict) else None, arguments_json=json.dumps(args))


# Where each kind of citation says the passage is: (start field, end field).
_CITATION_SPANS = {"page_location": ("start_page_number", "end_page_number"),
                   "char_location": ("start_char_index", "end_char_index"),
                   "content_block_location": ("start_block_index", "end_block_index")}


def citation(c: Mapping[str, Any], answer_start: int, answer_end: int) -> Citation:
    """One entry of a text block's ``citations`` (or a ``citations_delta``'s ``citation``).

    Raises:
        ValueError, AttributeError: not a citation object.
    """
    kind = text_of(c.get("type"), "a citation's type")
    lo, hi = _CITATION_SPANS.get(kind, ("", ""))

    def number(name: str) -> int | None:
        value = c.get(name) if name else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    title = c.get("document_title")
    return Citation(kind=kind, cited_text=text_of(c.get("cited_text"), "cited_text"),
                    document_index=number("document_index"), document_title=title if isinstance(title, str) else None,
                    start=number(lo), end=number(hi), answer_start=answer_start, answer_end=answer_end)


def _text_and_citations(blocks: Any) -> tuple[str, tuple[Citation, ...]]:
    """The answer's text blocks joined, and their citations with the stretch of text each backs."""
    pieces: list[str] = []
    cited: list[Citation] = []
    offset = 0
    for b in blocks:
        if b.get("type") != "text":
            continue
        text = text_of(b.get("text"), "a text block's text")
        for c in b.get("citations") or ():
            cited.append(citation(c, offset, offset + len(text)))
        pieces.append(text)
        offset += len(text)
    return "".join(pieces), tuple(cited)


def parse_result(data: Mapping[str, Any], model: str) -> GenerationResult:
    """A Messages response -> our result (thinking blocks kept for ``to_message``).

    Raises:
        KeyError, TypeError: the body lacks the documented fields.
    """
    blocks = data["content"]
    calls = tuple(_tool_call(b) for b in blocks if b.get("type") == "tool_use")
    thinking = tuple(_reasoning_block(b, i) for i, b in enumerate(blocks)
                     if b.get("type") in ("thinking", "redacted_thinking"))
    content, cited = _text_and_citations(blocks)
    finish = finish_with_tools(finish_reason(data.get("stop_reason")), bool(calls))
    output = [c for c in calls if c.name == OUTPUT_TOOL]
    if output:  # schema= by a forced tool: its input is the answer
        calls = tuple(c for c in calls if c.name != OUTPUT_TOOL)
        content, cited = output[0].arguments_json, ()
        finish = "stop" if finish == "tool_calls" and not calls else finish
    refused = data.get("stop_reason") == "refusal"
    return GenerationResult(
        content=content,
        refusal=refusal_text(data.get("stop_details")) if refused else None,
        model=str(data.get("model") or model),
        provider="",
        finish_reason=finish,
        usage=parse_usage(data.get("usage")),
        tool_calls=calls,
        raw=dict(data),
        reasoning="".join(b.text for b in thinking) if thinking else None,
        reasoning_blocks=thinking,
        citations=cited,
        response_id=id_of(data),
    )


@dataclass
class StreamState:
    """One stream's reading (a ``StreamParser``). Unknown events and delta types are ignored,
    as the API asks."""

    model: str
    finish: FinishReason | None = None
    input_usage: dict[str, Any] = field(default_factory=dict)
    output_usage: dict[str, Any] = field(default_factory=dict)
    tool_slots: dict[int, int] = field(default_factory=dict)  # content-block index -> tool-call ordinal
    thinking: dict[int, ReasoningBlock] = field(default_factory=dict)  # content-block index -> its block so far
    thinking_text: dict[int, list[str]] = field(default_factory=dict)  # its text pieces, joined at the end
    output_blocks: set[int] = field(default_factory=set)  # content-block indexes of OUTPUT_TOOL calls
    refusal: str | None = None
    done: bool = False
    text_length: int = 0  # characters of answer text so far: where a cited block's text starts and ends
    text_starts: dict[int, int] = field(default_factory=dict)  # text block index -> its start in the answer
    cited: dict[int, list[Any]] = field(default_factory=dict)  # text block index -> its citations so far
    response_id: str | None = None

    def _block_stop(self, index: int) -> Delta:
        """A content block closes: a text block that cited documents gives its citations."""
        found = self.cited.pop(index, None)
        if not found:
            return None
        start = self.text_starts.get(index, 0)
        return Cited(tuple(citation(c, start, self.text_length) for c in found))

    def _thinking_delta(self, index: int, delta: Mapping[str, Any]) -> Delta:
        """A thinking block's text grows; its signature arrives once, at its end."""
        block = self.thinking.setdefault(index, ReasoningBlock("anthropic", index=index))
        if delta.get("type") == "signature_delta":
            self.thinking[index] = dataclasses.replace(block, signature=text_of(delta.get("signature"), "a signature"))
            return None
        text = text_of(delta.get("thinking"), "a thinking delta")
        if not text:
            return None
        self.thinking_text.setdefault(index, []).append(text)
        return Reasoning(text)

    @property
    def reasoning_blocks(self) -> tuple[ReasoningBlock, ...]:
        return tuple(dataclasses.replace(self.thinking[i], text=self.thinking[i].text + "".join(self.thinking_text[i]))
                     if i in self.thinking_text else self.thinking[i] for i in sorted(self.thinking))

    def _block_start(self, index: int, block: Mapping[str, Any]) -> Delta:
        """A content block opens: a tool call's id and name, the first text, a thinking block."""
        if block.get("type") == "tool_use" and block.get("name") == OUTPUT_TOOL:
            self.output_blocks.add(index)
            return None
        if block.get("type") == "tool_use":
            slot = self.tool_slots.setdefault(index, len(self.tool_slots))
            return "", (ToolCallDelta(index=slot, id=block.get("id"), name=block.get("name")),)
        if block.get("type") == "text":
            first: str | None = block.get("text")
            self.text_starts[index] = self.text_length
            if first:
                self.text_length += len(first)
                if block.get("citations"):
                    self.cited[index] = list(block["citations"])
            return first
        if block.get("type") in ("thinking", "redacted_thinking"):
            self.thinking[index] = _reasoning_block(block, index)
            start = self.thinking[index].text
            return Reasoning(start) if start else None
        return None

    def _other_delta(self, index: int, delta: Mapping[str, Any]) -> Delta:
        """A ``content_block_delta`` that is not text: tool-call JSON, thinking, a citation."""
        kind = delta.get("type")
        if kind == "input_json_delta" and delta.get("partial_json"):
            if index in self.output_blocks:  # schema= by a forced tool
                answer: str = text_of(delta["partial_json"], "partial_json")
                return answer
            slot = self.tool_slots.get(index, 0)
            return "", (ToolCallDelta(index=slot, arguments_delta=delta["partial_json"]),)
        if kind in ("thinking_delta", "signature_delta"):
            return self._thinking_delta(index, delta)
        if kind == "citations_delta":
            self.cited.setdefault(index, []).append(delta["citation"])
        return None

    def feed(self, event: ServerSentEvent) -> Delta:
        """One SSE event -> its text or tool-call fragment."""
        if event.event == "ping":  # the keep-alive: it carries nothing, so it does not count as data
            return KEEPALIVE
        data = event.json()
        if not isinstance(data, dict):
            return None
        kind = data.get("type", event.event)
        if kind == "content_block_delta":  # nearly every event: tested first
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                text = delta.get("text")  # not text: the base raises StreamError
                if text.__class__ is str:
                    self.text_length += len(text)
                out: Delta = text
                return out
            return self._other_delta(int(data.get("index", 0)), delta)
        elif kind == "content_block_stop":
            return self._block_stop(int(data.get("index", 0)))
        elif kind == "message_start":
            message = data.get("message") or {}
            self.model = str(message.get("model") or self.model)
            self.input_usage = dict(message.get("usage") or {})
            self.response_id = id_of(message)
        elif kind == "content_block_start":
            return self._block_start(int(data.get("index", 0)), data.get("content_block") or {})
        elif kind == "message_delta":
            delta = data.get("delta") or {}
            self.finish = finish_reason(delta.get("stop_reason")) or self.finish
            if delta.get("stop_reason") == "refusal":
                self.refusal = refusal_text(delta.get("stop_details"))
            self.output_usage.update(data.get("usage") or {})  # cumulative counts: the last wins
        elif kind == "message_stop":
            self.done = True
        elif kind == "error" or event.event == "error":
            raise ErrorEvent(data)
        return None

    def usage(self) -> Usage | None:
        merged = {**self.input_usage, **{k: v for k, v in self.output_usage.items() if v is not None}}
        return parse_usage(merged)

    def final(self) -> tuple[FinishReason | None, Usage | None]:
        if self.output_blocks and not self.tool_slots and self.finish == "tool_calls":
            return "stop", self.usage()  # the forced schema= tool's call was the answer
        return finish_with_tools(self.finish, bool(self.tool_slots)), self.usage()


def _supported(caps: Any, *path: str) -> bool | None:
    """``capabilities.<path>.supported`` of a Models API entry, None when it is not there."""
    node = caps
    for name in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(name)
    value = node.get("supported") if isinstance(node, Mapping) else None
    return value if isinstance(value, bool) else None


def live_row(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A Models API entry -> a live catalog row: ``max_input_tokens`` as the context window,
    ``max_tokens`` as the output limit, image and PDF input, structured outputs, and how the
    model thinks (adaptive when it says so, else budget). Fields it lacks are left to the catalog."""
    row: dict[str, Any] = {"id": entry.get("id")}
    if entry.get("max_input_tokens") is not None:
        row["context_window"] = entry["max_input_tokens"]
    if entry.get("max_tokens") is not None:
        row["max_output"] = entry["max_tokens"]
    caps = entry.get("capabilities")
    for ours, theirs in (("vision", "image_input"), ("documents", "pdf_input"),
                         ("structured_output", "structured_outputs")):
        value = _supported(caps, theirs)
        if value is not None:
            row[ours] = value
    thinking = _supported(caps, "thinking")
    if thinking is False:
        row["reasoning"] = None
    elif thinking:
        row["reasoning"] = "adaptive" if _supported(caps, "thinking", "types", "adaptive") else "budget"
    return row


class AnthropicProvider(HttpProvider):
    """Anthropic's Messages API.

    Args:
        model: a model id or alias (``sonnet``, ``opus``, ``haiku``, ``claude-opus-4-8``...);
            default ``claude-sonnet-5-5``.
        api_key: defaults to ``ANTHROPIC_API_KEY``; required for api.anthropic.com.
        auth_token: an OAuth-style token sent as ``Authorization: Bearer`` instead of a key
            (default ``ANTHROPIC_AUTH_TOKEN``).
        base_url: defaults to ``ANTHROPIC_BASE_URL``, else ``https://api.anthropic.com`` (no ``/v1``).
        betas: beta feature names for the ``anthropic-beta`` header.
        max_tokens: the ``max_tokens`` sent when a call gives none (the API requires one);
            default: the model's output limit, capped at 8192.
        **kwargs: timeout, max_retries, retry, transport, headers, verify, deadline_s, limits.

    Example::

        llm = AnthropicProvider(model="sonnet")
        llm.generate_sync("Say hi", max_tokens=20).content
    """

    provider_id = "anthropic"
    DEFAULT_BASE_URL = "https://api.anthropic.com"
    BASE_URL_RULE = "Anthropic's base URL is the server root, without /v1: https://api.anthropic.com"
    DEFAULT_MODEL = "claude-sonnet-5-5"
    VENDOR_HOST = ANTHROPIC_HOST
    API_KEY_ENV = "ANTHROPIC_API_KEY"
    BASE_URL_ENV = "ANTHROPIC_BASE_URL"
    OTHER_ENV = ("ANTHROPIC_AUTH_TOKEN",)
    CONFIGURED_BY = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN")
    REQUEST_ID_HEADER = "request-id"
    CHAT_PATH = "/v1/messages"
    FRAMING = "sse"
    STREAM_END = "message_stop"
    ERROR_STATUSES: ClassVar[Mapping[str, int]] = ERROR_STATUSES
    MODELS: ClassVar[tuple[ModelInfo, ...]] = MODELS
    OWNED_FIELDS: ClassVar[Mapping[str, str]] = OWNED_FIELDS
    REASONING_FIELDS = ("thinking",)
    SCHEMA_FIELDS = ("output_format", "output_config.format")
    STRUCTURED_FALLBACK = True
    NO_EMBEDDINGS = ("Anthropic has no embeddings API: it recommends Voyage AI (https://docs.voyageai.com) for "
                     "embeddings; or embed with OpenAIProvider (text-embedding-3-small) or OllamaProvider "
                     "(nomic-embed-text), and keep this provider for generation")

    def __init__(self, model: str | None = None, *, auth_token: str | None = None,
                 betas: tuple[str, ...] | list[str] = (), max_tokens: int | None = None,
                 **kwargs: Unpack[ClientSettings]) -> None:
        token = auth_token or os.environ.get("ANTHROPIC_AUTH_TOKEN") or None
        if token is not None:
            check_credential(token, "auth_token" if auth_token else "ANTHROPIC_AUTH_TOKEN", self.provider_id)
        if not isinstance(betas, (tuple, list)) or not all(isinstance(b, str) and b for b in betas):
            raise ConfigurationError(f"betas must be a list of beta names, got {betas!r}", provider=self.provider_id)
        check_header_value(",".join(betas), "betas", self.provider_id)
        self._has_token = token is not None
        self._token = _Secret(token)
        self.betas = tuple(betas)
        super().__init__(model, **kwargs)
        limit = self._model_info.max_output if self._model_info else DEFAULT_MAX_TOKENS
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens < 1):
            raise ConfigurationError(f"max_tokens must be a positive integer, got {max_tokens!r}",
                                     provider=self.provider_id)
        if max_tokens is not None and self._model_info is not None and max_tokens > limit:
            raise ConfigurationError(f"max_tokens={max_tokens} exceeds {self._model_info.id}'s output limit of "
                                     f"{limit}", provider=self.provider_id, model=self._model)
        self.default_max_tokens = max_tokens or min(limit, DEFAULT_MAX_TOKENS)

    @property
    def is_anthropic(self) -> bool:
        return self.on_vendor_host

    def _check_key(self) -> None:
        if self.is_anthropic and not self._api_key and not self._has_token:
            raise ConfigurationError(
                "no API key: pass api_key=... or set ANTHROPIC_API_KEY (needed for api.anthropic.com)",
                provider=self.provider_id, model=self._model)

    def _auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        token = self._token.get()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.betas:
            headers["anthropic-beta"] = ",".join(self.betas)
        return headers

    def _secrets(self) -> list[str]:
        return [*super()._secrets(), self._token.get() or ""]

    def _check(self, request: GenerateRequest) -> None:
        super()._check(request)
        if request.temperature is not None and request.temperature > 1:
            raise ValidationError(f"temperature must be between 0 and 1 for Anthropic, got {request.temperature}",
                                  provider=self.provider_id, model=self._model)
        if not any(m.role != "system" for m in request.messages):
            raise ValidationError("Anthropic needs at least one user message", provider=self.provider_id,
                                  model=self._model)
        if any(t.name == OUTPUT_TOOL for t in request.tools):
            raise ValidationError(f"tool name {OUTPUT_TOOL!r} is reserved (schema= uses it on models without "
                                  f"structured output)", provider=self.provider_id, model=self._model)
        if uses_output_tool(request, self._model_info):
            if request.tool_choice is not None:
                raise ValidationError(f"{self._model} has no native structured output, so schema= forces a tool; "
                                      f"tool_choice={request.tool_choice!r} cannot be kept with it",
                                      provider=self.provider_id, model=self._model)
            if request.reasoning not in (None, "off"):
                raise ValidationError(f"{self._model} has no native structured output, so schema= forces a tool, "
                                      f"which thinking does not allow: drop reasoning= or use a newer model",
                                      provider=self.provider_id, model=self._model)
        budget = thinking_budget(request, self._model_info)
        if budget is not None and request.max_tokens is not None and request.max_tokens <= budget:
            raise ValidationError(f"max_tokens={request.max_tokens} leaves no room to answer after thinking: "
                                  f"reasoning={request.reasoning!r} gives {self._model} a {budget}-token thinking "
                                  f"budget, and max_tokens must be above it", provider=self.provider_id,
                                  model=self._model)

    # -- errors -------------------------------------------------------------------------------

    def _error_code(self, err: Mapping[str, Any]) -> str | None:
        details = err.get("details")
        code = details.get("error_code") if isinstance(details, dict) else None
        return str(code) if code is not None else None

    def _names_the_model(self, error: APIError) -> bool:
        # /v1/messages names no other resource: the vendor's own not_found_error (in its
        # envelope, {"type": "error", "error": {...}}) is the model's.
        try:
            body = json.loads(error.body or "")
        except ValueError:
            body = None
        own = isinstance(body, dict) and body.get("type") == "error" and error.error_type == "not_found_error"
        return own or super()._names_the_model(error)

    def _refine_error_class(self, cls: type[APIError], status: int, error_type: str | None,
                            error_code: str | None, is_json: bool) -> type[APIError]:
        if error_code == "enforced_spend_limit_reached":
            return QuotaExceededError
        if status == 404 and cls is NotFoundError and (error_type == "not_found_error" or is_json):
            return ModelNotFoundError  # /v1/messages names no other resource
        return cls

    # -- the wire -----------------------------------------------------------------------------

    def _build_payload(self, request: GenerateRequest, stream: bool) -> dict[str, Any]:
        return build_payload(request, self._model, self.default_max_tokens, stream, self._model_info)

    def _parse_result(self, data: Any) -> GenerationResult:
        return parse_result(data, self._model)

    def _count_tokens(self, request: GenerateRequest) -> TokenCount:
        """``POST /v1/messages/count_tokens`` with the body ``generate_sync`` would send (exact).
        Servers that speak Messages may have it too (llama.cpp's does)."""
        payload = count_payload(self._build_payload(self._fitted(request), False))
        data, resp = self._post_for_count(COUNT_PATH, payload, request)
        return self._counted(data.get("input_tokens"), "input_tokens", "anthropic count_tokens", resp.headers)

    def _stream_parser(self) -> StreamState:
        return StreamState(model=self._model)

    # -- health and models --------------------------------------------------------------------

    def list_models_sync(self) -> list[str]:
        """Ids of the models this key can use (``GET /v1/models``, every page)."""
        return [str(m.get("id")) for m in self._model_pages()]

    def _model_pages(self) -> list[dict[str, Any]]:
        """Every entry of ``GET /v1/models``, page after page."""
        entries: list[dict[str, Any]] = []
        after = ""
        seen: set[str] = set()
        for _ in range(MAX_MODEL_PAGES):
            data, _ = self._send("GET", f"/v1/models?limit=1000{after}", timeout=self.timeout.connect + 10)
            entries += [m for m in self._listing(data, "data", "GET /v1/models") if isinstance(m, dict)]
            cursor = data.get("last_id")
            if not data.get("has_more") or not cursor:
                return entries
            if not isinstance(cursor, str) or cursor in seen:
                again = isinstance(cursor, str)  # only text is looked up: a list would not hash
                raise self._invalid(f"GET /v1/models says has_more but its cursor {str(cursor)[:60]!r} "
                                    f"{'was already given' if again else 'is not text'}: stopped paging")
            seen.add(cursor)
            after = f"&after_id={quote(cursor, safe='')}"
        raise self._invalid(f"GET /v1/models still says has_more after {MAX_MODEL_PAGES} pages: stopped paging")

    def _live_models_sync(self) -> list[dict[str, Any]]:
        """The Models API's limits and capabilities as live rows (it has no lifecycle data)."""
        return [live_row(m) for m in self._model_pages()]

    def health_check_sync(self) -> HealthStatus:
        """``GET /v1/models/{model}``: checks the key and that the model is still served; no tokens.
        Servers other than Anthropic's answer ``GET /v1/models`` instead."""

        def probe(detail: dict[str, Any]) -> str | None:
            path = f"/v1/models/{quote(self._model, safe='')}" if self.is_anthropic else "/v1/models"
            self._send("GET", path, timeout=self.timeout.connect + 10)
            return None

        return self._health(probe)
