"""One normalised, validated generation request, built from whatever the caller passed.

``build_request`` turns a prompt (text, a ``Message``, a list of messages or OpenAI-style dicts)
and keyword options into a ``GenerateRequest``. Everything is checked here, before any network
call, and bad input raises ``ValidationError`` naming the problem.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from .errors import ValidationError
from .types import IMAGE_MEDIA_TYPES, ROLES, ContentPart, Message, Tool, ToolCall

__all__ = ["GenerateRequest", "Options", "Prompt", "build_request"]

ToolChoice = str | Mapping[str, Any]
TOOL_CHOICES = ("auto", "none", "required")


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
        timeout: per-call read timeout in seconds.
        max_retries: per-call override of the provider's retry count (0: no retries).
        deadline_s: the most this call may take in all (connecting, waiting, retries and their
            back-off sleeps, reading the answer or the whole stream), in seconds.
        extra: vendor-specific fields merged into the request body as given.
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
    timeout: float | None = None
    max_retries: int | None = None
    deadline_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def system_text(self) -> str | None:
        """The option's system prompt and every system message, joined by blank lines."""
        parts = [self.system] if self.system else []
        parts += [m.text for m in self.messages if m.role == "system"]
        return "\n\n".join(parts) if parts else None

    def text_length(self) -> int:
        """Characters of text in the whole request (a cheap size estimate)."""
        return sum(len(m.text) for m in self.messages) + len(self.system or "")


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
    timeout: float | None
    max_retries: int | None
    deadline_s: float | None
    extra: Mapping[str, Any] | None


Prompt = str | Message | Sequence[Message | Mapping[str, Any]] | GenerateRequest

_OPTION_NAMES = frozenset(Options.__annotations__)


def build_request(prompt: Prompt, options: Mapping[str, Any]) -> GenerateRequest:
    """Normalise and validate a prompt and its options.

    Raises:
        ValidationError: the prompt or an option is invalid; the message names which.
        TypeError: an unknown option name.
    """
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; vendor-specific fields go in extra={{...}}")
    if isinstance(prompt, GenerateRequest):
        base = prompt
    else:
        base = GenerateRequest(messages=_messages(prompt))
    if not options:
        return base
    changes: dict[str, Any] = {}
    for name, value in options.items():
        if value is not None:
            changes[name] = _CHECKS[name](value)
    request = dataclasses.replace(base, **changes)
    choice = request.tool_choice
    if choice not in (None, *TOOL_CHOICES) and choice not in {t.name for t in request.tools}:
        raise ValidationError(f"tool_choice {choice!r} names no tool of this request")
    return request


def _messages(prompt: Any) -> tuple[Message, ...]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValidationError("prompt is empty")
        return (Message("user", prompt),)
    if isinstance(prompt, (Message, Mapping)):
        prompt = [prompt]
    if not isinstance(prompt, Sequence) or isinstance(prompt, (bytes, bytearray)):
        raise ValidationError(f"prompt must be text, a Message or a list of messages, not {type(prompt).__name__}")
    messages = tuple(_message(m, i) for i, m in enumerate(prompt))
    if not messages:
        raise ValidationError("messages list is empty")
    if all(m.role == "system" for m in messages):
        raise ValidationError("messages hold only system prompts; add a user message")
    if not any(m.text.strip() or m.images or m.tool_calls for m in messages if m.role != "system"):
        raise ValidationError("every message is empty")
    return messages


def _message(value: Any, i: int) -> Message:
    if isinstance(value, Mapping):
        value = _message_from_dict(value, i)
    if not isinstance(value, Message):
        raise ValidationError(f"messages[{i}] must be a Message or a dict, not {type(value).__name__}")
    if value.role not in ROLES:
        raise ValidationError(f"messages[{i}].role {value.role!r} is not one of {', '.join(ROLES)}")
    if isinstance(value.content, tuple):
        for j, part in enumerate(value.content):
            _check_part(part, f"messages[{i}].content[{j}]", value.role)
    elif not isinstance(value.content, str):
        raise ValidationError(f"messages[{i}].content must be text or a tuple of ContentPart")
    return value


def _message_from_dict(d: Mapping[str, Any], i: int) -> Message:
    if "role" not in d:
        raise ValidationError(f"messages[{i}] has no 'role'")
    content = d.get("content") or ""
    if isinstance(content, list):
        content = tuple(_part_from_dict(p, f"messages[{i}].content[{j}]") for j, p in enumerate(content))
    calls = tuple(
        c if isinstance(c, ToolCall) else _tool_call_from_dict(c, i) for c in d.get("tool_calls") or ()
    )
    return Message(d["role"], content, tool_calls=calls, tool_call_id=d.get("tool_call_id"),
                   name=d.get("name") or d.get("tool_name"))  # Ollama's history calls it tool_name


def _part_from_dict(p: Any, where: str) -> ContentPart:
    if isinstance(p, ContentPart):
        return p
    if isinstance(p, str):
        return ContentPart.from_text(p)
    kind = p.get("type") if isinstance(p, Mapping) else None
    if kind == "text":
        return ContentPart.from_text(str(p.get("text", "")))
    if kind == "image_url":  # OpenAI's shape
        image = p.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        detail = image.get("detail") if isinstance(image, Mapping) else None
        if not isinstance(url, str):
            raise ValidationError(f"{where} image_url has no url")
        return ContentPart.image_url(url, detail)
    if kind == "image":
        return ContentPart(type="image", url=p.get("url"), data=p.get("data"),
                           media_type=p.get("media_type"), detail=p.get("detail"))
    raise ValidationError(f"{where} has unsupported part type {kind!r} (use 'text', 'image' or 'image_url')")


def _tool_call_from_dict(c: Mapping[str, Any], i: int) -> ToolCall:
    import json

    fn = c.get("function", c)
    args = fn.get("arguments", {})
    if isinstance(args, str):
        raw = args
        try:
            parsed = json.loads(args) if args else {}
        except ValueError:
            parsed = None
    else:
        raw, parsed = json.dumps(args), dict(args)
    if not fn.get("name"):
        raise ValidationError(f"messages[{i}] has a tool call without a name")
    return ToolCall(id=str(c.get("id") or ""), name=fn["name"], arguments=parsed, arguments_json=raw)


def _check_part(part: Any, where: str, role: str) -> None:
    if not isinstance(part, ContentPart):
        raise ValidationError(f"{where} must be a ContentPart, not {type(part).__name__}")
    if part.type == "text":
        if part.text is None:
            raise ValidationError(f"{where} is a text part without text")
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


def _stop(value: Any) -> tuple[str, ...]:
    stops = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(s, str) and s for s in stops):
        raise ValidationError(f"stop must be a non-empty string or a list of them, got {value!r}")
    return stops


def _tools(value: Any) -> tuple[Tool, ...]:
    tools = []
    for i, t in enumerate(value):
        if isinstance(t, Mapping):
            fn = t.get("function", t)  # OpenAI's {"type": "function", "function": {...}} or flat
            schema = fn.get("parameters", fn.get("input_schema", {"type": "object", "properties": {}}))
            t = Tool(name=fn.get("name", ""), description=fn.get("description", ""), parameters=dict(schema))
        if not isinstance(t, Tool):
            raise ValidationError(f"tools[{i}] must be a Tool or a dict, not {type(t).__name__}")
        if not t.name or not all(c.isalnum() or c in "_-" for c in t.name) or len(t.name) > 64:
            raise ValidationError(f"tools[{i}] name {t.name!r} must be 1-64 letters, digits, '_' or '-'")
        if t.parameters.get("type") != "object":
            raise ValidationError(f"tools[{i}] ({t.name}) parameters must be a JSON schema of type 'object'")
        tools.append(t)
    return tuple(tools)


def _tool_choice(value: Any) -> str:
    if isinstance(value, Mapping):  # OpenAI's {"type": "function", "function": {"name": ...}}
        value = value.get("function", value).get("name")
    if not isinstance(value, str) or not value:
        raise ValidationError(f"tool_choice must be 'auto', 'none', 'required' or a tool name, got {value!r}")
    return value


def _timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValidationError(f"timeout must be a positive number of seconds, got {value!r}")
    return float(value)


def _deadline(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValidationError(f"deadline_s must be a positive, finite number of seconds, got {value!r}")
    return float(value)


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
    return dict(value)


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
    "timeout": _timeout,
    "max_retries": _retries,
    "deadline_s": _deadline,
    "extra": _extra,
}
