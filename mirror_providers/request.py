"""One normalised, validated generation request, built from whatever the caller passed.

``build_request`` turns a prompt (text, a ``Message``, a list of messages or OpenAI-style dicts)
and keyword options into a ``GenerateRequest``. Everything is checked here, before any network
call, and bad input raises ``ValidationError`` naming the option: a value of the wrong type or
range, an unknown option name (``ValidationError`` is also a ``TypeError``, what Python raises for
an unknown keyword), a timeout that is not a finite positive number of seconds, and ``extra`` or
tool schemas that are not JSON (only string keys; no NaN or infinity, which JSON cannot carry).
Which ``extra`` fields a vendor builds itself, and so refuses, each provider checks on top.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import dataclasses
import itertools
import json
import math
import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any, TypedDict

from ._lazy import dataclass
from .errors import ValidationError
from .structured import OutputSchema, output_schema
from .types import (
    CACHE_TTLS,
    DOCUMENT_MEDIA_TYPES,
    IMAGE_MEDIA_TYPES,
    ROLES,
    ContentPart,
    Message,
    ReasoningBlock,
    Tool,
    ToolCall,
)

__all__ = ["MAX_TIMEOUT_S", "REASONING_LEVELS", "GenerateRequest", "Options", "Prompt", "build_request", "check_json",
           "check_options", "check_timeout"]

ToolChoice = str | Mapping[str, Any]
TOOL_CHOICES = ("auto", "none", "required")
# The longest timeout accepted (a week). A socket cannot wait forever: ``inf`` or 1e300 would
# pass a "> 0" check and fail only when the socket is armed, after the request was sent.
MAX_TIMEOUT_S = 7 * 24 * 3600.0

# The token estimate (``GenerateRequest.estimated_input_tokens``). Four characters a token is the
# usual rate of English text in BPE tokenizers; a chat template adds a few tokens of role markers a
# turn (OpenAI's cookbook counts 3 a message and 3 to prime the reply; Gemma's template 5 a turn).
# An image is counted at Anthropic's largest standard size (about 1,600 tokens; OpenAI's "low"
# detail is a flat 85), a PDF page at the top of Anthropic's 1,500-3,000 tokens a page.
CHARS_PER_TOKEN = 4
MESSAGE_TOKENS = 5
REPLY_TOKENS = 3
IMAGE_TOKENS = 1600
LOW_DETAIL_IMAGE_TOKENS = 85
PDF_PAGE_TOKENS = 3000
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")

# Set while a request is checked for counting its tokens: a prompt too long for the model's
# window is what a caller counts to learn how much to cut, so that check does not apply then.
counting_tokens: contextvars.ContextVar[bool] = contextvars.ContextVar("counting_tokens", default=False)


@dataclass(frozen=True)
class GenerateRequest:
    """A validated request, vendor-neutral.

    Attributes:
        messages: the conversation (system messages included, in place).
        system: a system prompt given as an option; vendors put it first.
        max_tokens, temperature, top_p: sampling controls, None for the vendor's default.
        stop: stop sequences.
        tools: functions the model may call.
        tool_choice: ``auto``, ``none``, ``required`` or a function name to force.
        parallel_tool_calls: allow several calls in one answer (None: vendor default).
        reasoning: ``"off"``, ``"on"`` (the model's own depth), or a level (``"minimal"``,
            ``"low"``, ``"medium"``, ``"high"``, ``"xhigh"``, ``"max"``); None: the model's default.
        schema: the structured output asked for (``schema=`` a JSON Schema dict or a dataclass
            type); the result's ``parsed`` is the checked answer.
        cache: automatic prompt caching (``"5m"`` or ``"1h"``): the vendor caches the whole
            prompt and moves the breakpoint forward as the conversation grows (Anthropic's
            top-level ``cache_control``; OpenAI and Ollama cache by themselves). None: only the
            breakpoints set on parts and tools.
        timeout: per-call read timeout in seconds.
        max_retries: per-call override of the provider's retry count (0: no retries).
        deadline_s: the most this call may take in all (connecting, waiting, retries and their
            back-off sleeps, reading the answer or the whole stream), in seconds.
        extra: vendor-specific fields merged into the request body as given (JSON values
            only; a field the vendor's payload builder sets itself is refused by the provider).
        session_key: names the conversation this call belongs to: a pool sends the calls of one
            session to the member that answered the last one while it is healthy (prompt-cache
            locality, reasoning replay). Never sent; a single provider ignores it.
    """

    messages: tuple[Message, ...]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: str | None = None
    parallel_tool_calls: bool | None = None
    reasoning: str | None = None
    schema: OutputSchema | None = None
    cache: str | None = None
    timeout: float | None = None
    max_retries: int | None = None
    deadline_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    session_key: str | None = None

    def system_text(self) -> str | None:
        """The option's system prompt and every system message, joined by blank lines."""
        parts = [self.system] if self.system else []
        parts += [m.text for m in self.messages if m.role == "system"]
        return "\n\n".join(parts) if parts else None

    def with_parts(self) -> list[Message]:
        """The messages whose content is parts (images, documents, cache breakpoints), not text:
        in a long conversation few or none, so checks of parts look only at these."""
        return [m for m in self.messages if type(m.content) is not str]

    def text_length(self) -> int:
        """Characters of text in the whole request (a cheap size estimate)."""
        chars = sum(len(m.content) for m in self.messages if type(m.content) is str)
        for m in self.with_parts():
            chars += len(m.text) + sum(len(p.text or "") for p in m.documents)
        return chars + len(self.system or "")

    def estimated_input_tokens(self) -> int:
        """The library's one estimate of the tokens this request's input takes, made without a
        tokenizer (``count_tokens_sync`` where no server counts, pool ``tpm=`` budgets).

        Text (messages, system prompt, plain-text documents, tool calls and results, tool
        definitions and the ``schema=``, as the JSON the vendors receive) at ``CHARS_PER_TOKEN``
        characters a token; ``MESSAGE_TOKENS`` for each turn's role markers plus ``REPLY_TOKENS``
        for the turn that primes the answer; ``IMAGE_TOKENS`` an image (``LOW_DETAIL_IMAGE_TOKENS``
        with ``detail="low"``); ``PDF_PAGE_TOKENS`` a PDF page (pages counted in the bytes; a PDF
        given by URL counts as one page). Rough: English prose comes out near the real count;
        code, other scripts and large images can take more.
        """
        chars = self.text_length()
        chars += sum(len(c.name) + len(c.arguments_json) for m in self.messages if m.tool_calls for c in m.tool_calls)
        if self.tools:
            chars += len(json.dumps([[t.name, t.description, t.parameters] for t in self.tools]))
        if self.schema is not None:
            chars += len(json.dumps(self.schema.schema))
        tokens = math.ceil(chars / CHARS_PER_TOKEN)
        turns = len(self.messages) + (1 if self.system else 0)
        tokens += turns * MESSAGE_TOKENS + REPLY_TOKENS
        for m in self.with_parts():
            tokens += sum(LOW_DETAIL_IMAGE_TOKENS if p.detail == "low" else IMAGE_TOKENS for p in m.images)
            tokens += sum(_pdf_pages(p) * PDF_PAGE_TOKENS for p in m.documents if p.media_type == "application/pdf")
        return tokens


def _pdf_pages(part: ContentPart) -> int:
    """Pages of a PDF part: its ``/Type /Page`` objects (not ``/Pages``), at least one; one for
    a PDF given by URL (its bytes are not here)."""
    if not part.data:
        return 1
    try:
        raw = base64.b64decode(part.data, validate=False)
    except (binascii.Error, ValueError):
        return 1
    return max(1, len(_PDF_PAGE.findall(raw)))


class Options(TypedDict, total=False):
    """Keyword options every ``generate``/``stream`` call accepts."""

    system: str | None
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    stop: None | str | Sequence[str]
    tools: Sequence[Tool | Mapping[str, Any]] | None
    tool_choice: ToolChoice | None
    parallel_tool_calls: bool | None
    reasoning: bool | str | None
    schema: Mapping[str, Any] | type | OutputSchema | None
    cache: bool | str | None
    timeout: float | None
    max_retries: int | None
    deadline_s: float | None
    extra: Mapping[str, Any] | None
    session_key: str | None


Prompt = str | Message | Sequence[Message | Mapping[str, Any]] | GenerateRequest

MAX_SESSION_KEY = 256  # characters; a pool keeps one entry per recent session

_OPTION_NAMES = frozenset(Options.__annotations__)


def build_request(prompt: Prompt, options: Mapping[str, Any]) -> GenerateRequest:
    """Normalise and validate a prompt and its options.

    Raises:
        ValidationError: the prompt or an option is invalid, or an option name is unknown (it is
            also a ``TypeError`` for those); the message names which.
    """
    if not isinstance(options, Mapping):
        raise ValidationError(f"options must be a mapping of option names to values, got {type(options).__name__}")
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise ValidationError(f"unknown option(s) {sorted(map(str, unknown))}; known: {sorted(_OPTION_NAMES)}; "
                              f"vendor-specific fields go in extra={{...}}")
    if isinstance(prompt, GenerateRequest) and _validated.get(id(prompt)) is prompt:
        base = prompt
        if not options:
            return base
    elif isinstance(prompt, GenerateRequest):  # made by hand: each of its fields is checked too
        base = GenerateRequest(messages=_messages(prompt.messages))
        options = {**{name: getattr(prompt, name) for name in _OPTION_NAMES}, **options}
    else:
        base = GenerateRequest(messages=_messages(prompt))
    changes: dict[str, Any] = {}
    for name, value in options.items():
        if value is not None:
            changes[name] = _CHECKS[name](value)
    request = dataclasses.replace(base, **changes)
    choice = request.tool_choice
    if choice not in (None, *TOOL_CHOICES) and choice not in {t.name for t in request.tools}:
        raise ValidationError(f"tool_choice {choice!r} names no tool of this request")
    _check_breakpoints(request)
    _validated[id(request)] = request
    return request


# Requests this module built (and so checked), by id: a pool hands the same request to each
# member without checking it again. A ``GenerateRequest`` made by hand is checked field by field.
_validated: weakref.WeakValueDictionary[int, GenerateRequest] = weakref.WeakValueDictionary()


def _messages(prompt: Any) -> tuple[Message, ...]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValidationError("prompt is empty")
        return (Message("user", prompt),)
    if isinstance(prompt, (Message, Mapping)):
        prompt = [prompt]
    if not isinstance(prompt, Sequence) or isinstance(prompt, (bytes, bytearray)):
        raise ValidationError(f"prompt must be text, a Message or a list of messages, not {type(prompt).__name__}")
    messages = tuple([_message(m, i) for i, m in enumerate(prompt)])
    if not messages:
        raise ValidationError("messages list is empty")
    if all(m.role == "system" for m in messages):
        raise ValidationError("messages hold only system prompts; add a user message")
    if not any(m.text.strip() or m.images or m.documents or m.tool_calls for m in messages if m.role != "system"):
        raise ValidationError("every message is empty")
    return messages


_WHITESPACE = re.compile(r"\s+")
MAX_CACHE_BREAKPOINTS = 4  # per request (Anthropic); the automatic one counts


def _check_breakpoints(request: GenerateRequest) -> None:
    """At most four cache breakpoints, and none kept longer than one before it (the vendor
    caches tools, then system, then messages; a 1h breakpoint after a 5m one is refused)."""
    where: list[tuple[str, str]] = [(f"tools[{i}]", t.cache) for i, t in enumerate(request.tools) if t.cache]
    if not where and not request.with_parts():
        return  # plain text turns carry no breakpoints
    ordered = sorted(enumerate(request.messages), key=lambda im: im[1].role != "system")  # system goes first
    for i, m in ordered:
        if isinstance(m.content, tuple):
            where += [(f"messages[{i}].content[{j}]", p.cache) for j, p in enumerate(m.content) if p.cache]
    if not where:
        return
    count = len(where) + (request.cache is not None)
    if count > MAX_CACHE_BREAKPOINTS:
        raise ValidationError(f"{count} cache breakpoints ({', '.join(w for w, _ in where)}"
                              f"{' and cache=' if request.cache else ''}); a request may have at most "
                              f"{MAX_CACHE_BREAKPOINTS}")
    if request.cache is not None:  # the automatic breakpoint goes on the last block: after all others
        where.append(("cache=", request.cache))
    for (before, ttl_before), (after, ttl_after) in itertools.pairwise(where):
        if ttl_before == "5m" and ttl_after == "1h":
            raise ValidationError(f"cache breakpoint {after} (1h) comes after {before} (5m): a longer-kept "
                                  f"breakpoint must come first (tools, then system, then messages)")


# Plain text turns already made, by (role, text): a conversation sends its history again on every
# call, and a Message is immutable, so the same one serves each time. Bounded in entries and in
# the length of text kept (a long text costs far more to encode than its Message to make).
_PLAIN_CACHE_ENTRIES = 2048
_PLAIN_CACHE_CHARS = 2048
_plain: dict[tuple[str, str], Message] = {}


def _plain_message(role: str, text: str) -> Message:
    if len(text) > _PLAIN_CACHE_CHARS:
        return Message(role, text)  # type: ignore[arg-type]  # role checked by the caller
    key = (role, text)
    message = _plain.get(key)
    if message is None:
        if len(_plain) >= _PLAIN_CACHE_ENTRIES:
            _plain.clear()
        message = _plain[key] = Message(role, text)  # type: ignore[arg-type]
    return message


def _message(value: Any, i: int) -> Message:
    # Most turns of a long conversation are plain text: those need no more checks than these.
    kind = type(value)
    if kind is dict and len(value) == 2 and type(value.get("content")) is str and type(value.get("role")) is str \
            and value["role"] in ROLES:
        return _plain_message(value["role"], value["content"])
    if (kind is Message and type(value.content) is str and type(value.role) is str and value.role in ROLES
            and not value.tool_calls
            and type(value.tool_calls) is tuple and value.tool_call_id is None and value.name is None):
        message: Message = value
        return message
    if isinstance(value, Mapping):
        value = _message_from_dict(value, i)
    if not isinstance(value, Message):
        raise ValidationError(f"messages[{i}] must be a Message or a dict, not {type(value).__name__}")
    if value.role not in ROLES:
        raise ValidationError(f"messages[{i}].role {value.role!r} is not one of {', '.join(ROLES)}")
    if isinstance(value.content, tuple):
        for j, part in enumerate(value.content):
            _check_part(part, f"messages[{i}].content[{j}]", value.role)
        if any(p.data and _WHITESPACE.search(p.data) for p in value.content):  # MIME-wrapped base64
            parts: tuple[ContentPart, ...] = tuple(
                dataclasses.replace(p, data=_WHITESPACE.sub("", p.data)) if p.data else p for p in value.content)
            value = dataclasses.replace(value, content=parts)
    elif not isinstance(value.content, str):
        raise ValidationError(f"messages[{i}].content must be text or a tuple of ContentPart")
    for attr in ("tool_call_id", "name"):
        if not isinstance(getattr(value, attr), (str, type(None))):
            raise ValidationError(f"messages[{i}].{attr} must be text, got {getattr(value, attr)!r}")
    if not _list(value.tool_calls):
        raise ValidationError(f"messages[{i}].tool_calls must be a tuple of ToolCall, got "
                              f"{type(value.tool_calls).__name__}")
    for j, call in enumerate(value.tool_calls):
        _check_tool_call(call, f"messages[{i}].tool_calls[{j}]")
    if isinstance(value.tool_calls, list):
        value = dataclasses.replace(value, tool_calls=tuple(value.tool_calls))
    checked: Message = value
    return checked


def _check_tool_call(call: Any, where: str) -> None:
    if not isinstance(call, ToolCall):
        raise ValidationError(f"{where} must be a ToolCall or a dict, not {type(call).__name__}")
    if not isinstance(call.id, str) or not isinstance(call.name, str) or not call.name:
        raise ValidationError(f"{where} needs a text id and a non-empty text name, got {call.id!r}, {call.name!r}")
    if not isinstance(call.arguments_json, str):
        raise ValidationError(f"{where}.arguments_json must be text, got {type(call.arguments_json).__name__}")
    if call.arguments is not None:
        if not isinstance(call.arguments, Mapping):
            raise ValidationError(f"{where}.arguments must be a dict or None, got {type(call.arguments).__name__}")
        check_json(call.arguments, f"{where}.arguments")


def _message_from_dict(d: Mapping[str, Any], i: int) -> Message:
    if "role" not in d:
        raise ValidationError(f"messages[{i}] has no 'role'")
    content = d.get("content") or ""
    if isinstance(content, list):
        content = tuple(_part_from_dict(p, f"messages[{i}].content[{j}]") for j, p in enumerate(content))
    calls_given = d.get("tool_calls") or ()
    if not _list(calls_given):
        raise ValidationError(f"messages[{i}].tool_calls must be a list, got {type(calls_given).__name__}")
    calls = tuple(c if isinstance(c, ToolCall) else _tool_call_from_dict(c, f"messages[{i}].tool_calls[{j}]")
                  for j, c in enumerate(calls_given))
    blocks_given = d.get("reasoning") or ()  # as Message.to_dict() writes it: kept, not dropped
    if not _list(blocks_given):
        raise ValidationError(f"messages[{i}].reasoning must be a list, got {type(blocks_given).__name__}")
    blocks = tuple(_reasoning_from_dict(r, f"messages[{i}].reasoning[{j}]") for j, r in enumerate(blocks_given))
    return Message(d["role"], content, tool_calls=calls, tool_call_id=d.get("tool_call_id"),
                   name=d.get("name") or d.get("tool_name"),  # Ollama's history calls it tool_name
                   reasoning=blocks)


_BLOCK_KINDS = ("thinking", "redacted_thinking", "message")


def _reasoning_from_dict(r: Any, where: str) -> ReasoningBlock:
    """A reasoning block given as ``ReasoningBlock.to_dict()`` wrote it (checked: it is sent back
    to the vendor unchanged, so a wrong field would be the vendor's 400 later)."""
    if isinstance(r, ReasoningBlock):
        return r
    if not isinstance(r, Mapping) or not isinstance(r.get("provider"), str) or not r["provider"]:
        raise ValidationError(f"{where} must be a reasoning block (a dict with its 'provider'), got {str(r)[:60]!r}")
    kind = r.get("kind", "thinking")
    if kind not in _BLOCK_KINDS:
        raise ValidationError(f"{where}.kind must be one of {', '.join(_BLOCK_KINDS)}, got {kind!r}")
    for name in ("text", "signature", "data", "origin"):
        if r.get(name) is not None and not isinstance(r[name], str):
            raise ValidationError(f"{where}.{name} must be text, got {type(r[name]).__name__}")
    index = r.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValidationError(f"{where}.index must be a whole number >= 0, got {index!r}")
    return ReasoningBlock(r["provider"], kind, r.get("text") or "", r.get("signature"), r.get("data"), index,
                          r.get("origin"))


def _part_from_dict(p: Any, where: str) -> ContentPart:
    if isinstance(p, ContentPart):
        return p
    if isinstance(p, str):
        return ContentPart.from_text(p)
    kind = p.get("type") if isinstance(p, Mapping) else None
    if kind == "text":
        text = p.get("text")
        if not isinstance(text, str):
            raise ValidationError(f"{where} is a text part whose text is not text: {text!r}")
        return ContentPart.from_text(text, _cache_of(p))
    if kind == "image_url":  # OpenAI's shape
        image = p.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        detail = image.get("detail") if isinstance(image, Mapping) else None
        if not isinstance(url, str):
            raise ValidationError(f"{where} image_url has no url")
        return ContentPart.image_url(url, detail)
    if kind == "image":
        return ContentPart(type="image", url=p.get("url"), data=p.get("data"),
                           media_type=p.get("media_type"), detail=p.get("detail"), cache=_cache_of(p))
    if kind == "document":
        return _document_from_dict(p, where)
    if kind == "file":  # OpenAI's {"type": "file", "file": {"file_data": "data:application/pdf;base64,...", ...}}
        f = p.get("file")
        data = f.get("file_data") if isinstance(f, Mapping) else None
        if not isinstance(data, str) or not data.startswith("data:"):
            raise ValidationError(f"{where} is a file part without file_data as a data: URL (file ids are not "
                                  f"supported: send the bytes)")
        header, _, payload = data.partition(",")
        assert isinstance(f, Mapping)
        return ContentPart(type="document", data=payload, media_type=header[5:].split(";")[0],
                           filename=f.get("filename"))
    raise ValidationError(f"{where} has unsupported part type {kind!r} (use 'text', 'image', 'image_url', "
                          f"'document' or 'file')")


def _cache_of(p: Mapping[str, Any]) -> Any:
    """A dict part's breakpoint: ours (``cache``) or Anthropic's ``cache_control``."""
    control = p.get("cache_control")
    if isinstance(control, Mapping):
        return control.get("ttl", "5m")
    return p.get("cache")


def _document_from_dict(p: Mapping[str, Any], where: str) -> ContentPart:
    """Ours (``data``/``url``/``text`` with ``media_type``) or Anthropic's (a ``source``)."""
    fields: dict[str, Any] = {"title": p.get("title"), "context": p.get("context"), "filename": p.get("filename"),
                              "cache": _cache_of(p)}
    citations = p.get("citations", False)
    fields["citations"] = citations.get("enabled", False) if isinstance(citations, Mapping) else citations
    source = p.get("source")
    if source is None:
        return ContentPart(type="document", url=p.get("url"), data=p.get("data"), text=p.get("text"),
                           media_type=p.get("media_type"), **fields)
    if not isinstance(source, Mapping):
        raise ValidationError(f"{where} document source must be a dict, got {type(source).__name__}")
    kind = source.get("type")
    if kind == "base64":
        return ContentPart(type="document", data=source.get("data"), media_type=source.get("media_type"), **fields)
    if kind == "url":
        return ContentPart(type="document", url=source.get("url"), media_type="application/pdf", **fields)
    if kind == "text":
        return ContentPart(type="document", text=source.get("data"), media_type=source.get("media_type"), **fields)
    raise ValidationError(f"{where} document source type {kind!r} is not supported (use base64, url or text)")


def _tool_call_from_dict(c: Any, where: str) -> ToolCall:
    if not isinstance(c, Mapping):
        raise ValidationError(f"{where} must be a ToolCall or a dict, not {type(c).__name__}")
    fn = c.get("function", c)
    if not isinstance(fn, Mapping):
        raise ValidationError(f"{where}.function must be a dict, got {type(fn).__name__}")
    args = fn.get("arguments", {})
    if isinstance(args, str):
        raw = args
        try:
            parsed = json.loads(args) if args else {}
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):  # "[1]" or "5" is JSON, but not arguments
            parsed = None
    elif isinstance(args, Mapping):
        check_json(args, f"{where} arguments")
        raw, parsed = json.dumps(args), dict(args)
    else:
        raise ValidationError(f"{where} arguments must be a JSON object or its text, got {type(args).__name__}")
    name, call_id = fn.get("name"), c.get("id")
    if not name or not isinstance(name, str):
        raise ValidationError(f"{where} has a tool call without a name (or not as text): {name!r}")
    if call_id is not None and (isinstance(call_id, bool) or not isinstance(call_id, (str, int))):
        raise ValidationError(f"{where} id must be text, got {call_id!r}")
    return ToolCall(id=str(call_id or ""), name=name, arguments=parsed, arguments_json=raw)


def _check_part(part: Any, where: str, role: str) -> None:
    if not isinstance(part, ContentPart):
        raise ValidationError(f"{where} must be a ContentPart, not {type(part).__name__}")
    for attr in ("text", "url", "data", "media_type", "detail", "title", "context", "filename", "cache"):
        if not isinstance(getattr(part, attr), (str, type(None))):
            raise ValidationError(f"{where}.{attr} must be text, got {type(getattr(part, attr)).__name__}")
    if part.cache is not None and part.cache not in CACHE_TTLS:
        raise ValidationError(f"{where}.cache must be one of {', '.join(CACHE_TTLS)} (how long the prefix is "
                              f"kept), got {part.cache!r}")
    if not isinstance(part.citations, bool):
        raise ValidationError(f"{where}.citations must be True or False, got {part.citations!r}")
    if part.type == "document":
        _check_document(part, where, role)
    elif part.type == "text":
        if part.text is None:
            raise ValidationError(f"{where} is a text part without text")
        if part.cache and not part.text:
            raise ValidationError(f"{where} is an empty text part with a cache breakpoint: put it on the part "
                                  f"the cached prefix ends with")
    elif part.type == "image":
        if role != "user":
            raise ValidationError(f"{where}: images are only allowed in user messages, not {role!r}")
        if not part.url and not part.data:
            raise ValidationError(f"{where} is an image part with neither url nor data")
        if part.url and not part.url.startswith(("http://", "https://")):
            raise ValidationError(f"{where} image url must be http(s) or a data: URL")
        if part.data and part.media_type not in IMAGE_MEDIA_TYPES:
            raise ValidationError(
                f"{where} image type {part.media_type!r} is not supported; use one of {', '.join(IMAGE_MEDIA_TYPES)}"
            )
    else:
        raise ValidationError(f"{where} has unknown type {part.type!r}")


def _check_document(part: ContentPart, where: str, role: str) -> None:
    """One source (PDF bytes, a PDF URL, or plain text) of the matching media type; PDF bytes are
    base64 of a file that starts as a PDF does."""
    if role != "user":
        raise ValidationError(f"{where}: documents are only allowed in user messages, not {role!r}")
    sources = [name for name in ("data", "url", "text") if getattr(part, name) is not None]
    if len(sources) != 1:
        raise ValidationError(f"{where} is a document with {' and '.join(sources) or 'no source'}: give exactly "
                              f"one of data (PDF bytes), url (a PDF to fetch) or text")
    if part.media_type not in DOCUMENT_MEDIA_TYPES:
        raise ValidationError(f"{where} document type {part.media_type!r} is not supported; use one of "
                              f"{', '.join(DOCUMENT_MEDIA_TYPES)}")
    wanted = "text/plain" if part.text is not None else "application/pdf"
    if part.media_type != wanted:
        raise ValidationError(f"{where} is a {sources[0]} document, so its media_type must be {wanted}, "
                              f"not {part.media_type}")
    if part.url is not None and not part.url.startswith(("http://", "https://")):
        raise ValidationError(f"{where} document url must be http(s), got {snippet_of(part.url)!r}")
    if part.data is not None:
        data = _WHITESPACE.sub("", part.data)  # base64 wrapped at 76 columns (MIME) is base64 too
        try:
            head = base64.b64decode(data[:12], validate=True)
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError(f"{where} document data is not base64 (give the bytes to "
                                  f"ContentPart.document_bytes)") from None
        if not head.startswith(b"%PDF-"):
            raise ValidationError(f"{where} document data is not a PDF (it does not start with %PDF-)")


def snippet_of(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _number(name: str, lo: float, hi: float) -> Any:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ValidationError(f"{name} must be a number, got {value!r}")
        if not lo <= value <= hi:
            raise ValidationError(f"{name} must be between {lo} and {hi}, got {value!r}")
        return float(value)

    return check


def _max_tokens(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"max_tokens must be an integer, got {value!r}")
    if value < 1:
        raise ValidationError(f"max_tokens must be at least 1, got {value}")
    return value


def _list(value: Any) -> bool:
    """A list or tuple: not text, bytes, a dict or a set (whose order or items would surprise)."""
    return isinstance(value, (list, tuple))


def _stop(value: Any) -> tuple[str, ...]:
    stops = (value,) if isinstance(value, str) else tuple(value) if _list(value) else None
    if stops is None or not all(isinstance(s, str) and s for s in stops):
        raise ValidationError(f"stop must be a non-empty string or a list of them, got {value!r}")
    return stops


def _tools(value: Any) -> tuple[Tool, ...]:
    if not _list(value):
        raise ValidationError(f"tools must be a list of Tool or dicts, got {type(value).__name__}")
    tools = [_tool(t, f"tools[{i}]") for i, t in enumerate(value)]
    names = [t.name for t in tools]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValidationError(f"tools name the same function more than once: {twice}")
    return tuple(tools)


def _tool(t: Any, where: str) -> Tool:
    if isinstance(t, Mapping):
        fn = t.get("function", t)  # OpenAI's {"type": "function", "function": {...}} or flat
        if not isinstance(fn, Mapping):
            raise ValidationError(f"{where}.function must be a dict, got {type(fn).__name__}")
        schema = fn.get("parameters", fn.get("input_schema", {"type": "object", "properties": {}}))
        if not isinstance(schema, Mapping):
            raise ValidationError(f"{where} parameters must be a JSON schema (a dict), got {type(schema).__name__}")
        t = Tool(name=fn.get("name", ""), description=fn.get("description") or "", parameters=dict(schema),
                 cache=_cache_of(t))
    if not isinstance(t, Tool):
        raise ValidationError(f"{where} must be a Tool or a dict, not {type(t).__name__}")
    name = t.name
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name) or len(name) > 64:
        raise ValidationError(f"{where} name {name!r} must be 1-64 letters, digits, '_' or '-'")
    if not isinstance(t.description, str):
        raise ValidationError(f"{where} ({name}) description must be text, got {type(t.description).__name__}")
    if not isinstance(t.parameters, Mapping) or t.parameters.get("type") != "object":
        raise ValidationError(f"{where} ({name}) parameters must be a JSON schema of type 'object'")
    check_json(t.parameters, f"{where} ({name}) parameters")
    if t.cache is not None and t.cache not in CACHE_TTLS:
        raise ValidationError(f"{where} ({name}) cache must be one of {', '.join(CACHE_TTLS)}, got {t.cache!r}")
    return t


_CHOICE_TYPES = {"auto": "auto", "none": "none", "required": "required", "any": "required"}


REASONING_LEVELS = ("off", "on", "minimal", "low", "medium", "high", "xhigh", "max")
_REASONING_SYNONYMS = {"none": "off", "false": "off", "disabled": "off", "true": "on", "enabled": "on"}


def _reasoning(value: Any) -> str:
    """True/False, or a level name (``"none"`` is ``"off"``), as one of ``REASONING_LEVELS``."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        level = _REASONING_SYNONYMS.get(value.strip().lower(), value.strip().lower())
        if level in REASONING_LEVELS:
            return level
    raise ValidationError(f"reasoning must be True, False or one of {list(REASONING_LEVELS)} "
                          f"(\"none\" means off), got {value!r}")


def _tool_choice(value: Any) -> str:
    if isinstance(value, Mapping):
        # OpenAI's {"type": "function", "function": {"name": ...}}, Anthropic's {"type": "tool",
        # "name": ...}, or either vendor's {"type": "auto" | "none" | "required" | "any"}.
        fn = value.get("function", value)
        name = fn.get("name") if isinstance(fn, Mapping) else None
        kind = value.get("type")
        value = name if name is not None or not isinstance(kind, str) else _CHOICE_TYPES.get(kind, value)
    if not isinstance(value, str) or not value:
        raise ValidationError(f"tool_choice must be 'auto', 'none', 'required' or a tool name, got {value!r}")
    return value


def check_timeout(value: Any, name: str = "timeout") -> float:
    """A timeout in seconds: a finite number above 0 and at most ``MAX_TIMEOUT_S``.

    Raises:
        ValidationError: naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT_S:
        raise ValidationError(f"{name} must be a positive number of seconds (at most {MAX_TIMEOUT_S:.0f}), "
                              f"got {value!r}")
    return float(value)


def _timeout(value: Any) -> float:
    return check_timeout(value)


def check_json(value: Any, where: str) -> None:
    """Check that ``value`` can be sent as JSON: string keys, no NaN or infinity, no objects.

    Raises:
        ValidationError: naming ``where``.
    """
    try:
        json.dumps(value, allow_nan=False, skipkeys=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"{where} must be JSON (text keys; numbers finite): {exc}") from None
    # json.dumps turns int, float, bool and None keys into text: the vendor would see other keys.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            bad = [k for k in item if not isinstance(k, str)]
            if bad:
                raise ValidationError(f"{where} must be JSON: key {bad[0]!r} is not text")
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def _deadline(value: Any) -> float:
    # Bounded like a timeout: the watchdog that enforces a deadline cannot wait for 1e300 seconds.
    return check_timeout(value, "deadline_s")


def _retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"max_retries must be an integer >= 0, got {value!r}")
    return value


def _system(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"system must be text, got {type(value).__name__}")
    return value


def _extra(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"extra must be a dict, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise ValidationError(f"extra keys must be field names (text), got {key!r}")
        check_json(item, f"extra[{key!r}]")
    return dict(value)


def _schema(value: Any) -> OutputSchema:
    if isinstance(value, Mapping):
        check_json(value, "schema")
    return output_schema(value)


def _cache(value: Any) -> str | None:
    """True (5 minutes), False (none), or a TTL."""
    if value is True:
        return "5m"
    if value is False:
        return None
    if value in CACHE_TTLS:
        return str(value)
    raise ValidationError(f"cache must be True, False or one of {', '.join(CACHE_TTLS)}, got {value!r}")


def _session_key(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_SESSION_KEY:
        raise ValidationError(f"session_key must be non-empty text of at most {MAX_SESSION_KEY} characters, "
                              f"got {str(value)[:40]!r}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"parallel_tool_calls must be True or False, got {value!r}")
    return value


_CHECKS: dict[str, Any] = {
    "system": _system,
    "max_tokens": _max_tokens,
    "temperature": _number("temperature", 0.0, 2.0),
    "top_p": _number("top_p", 0.0, 1.0),
    "stop": _stop,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "parallel_tool_calls": _bool,
    "reasoning": _reasoning,
    "schema": _schema,
    "cache": _cache,
    "timeout": _timeout,
    "max_retries": _retries,
    "deadline_s": _deadline,
    "extra": _extra,
    "session_key": _session_key,
}


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Some of the call options, each checked as ``build_request`` checks it (None left out):
    what calls other than generations (``embed_sync``) take of them.

    Raises:
        ValidationError: naming the option.
    """
    return {name: _CHECKS[name](value) for name, value in options.items() if value is not None}
