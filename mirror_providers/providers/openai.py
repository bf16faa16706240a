"""OpenAI Chat Completions over raw HTTP and SSE (docs/protocols.md §2).

Also the client for OpenAI-compatible servers (vLLM, llama.cpp, LM Studio, Ollama's ``/v1``,
Groq, OpenRouter...): point ``base_url`` (or ``OPENAI_BASE_URL``) at their ``/v1`` root. A key is
required only for api.openai.com.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from .. import models as model_data
from .._lazy import dataclass
from .._redact import snippet
from ..embeddings import EmbedRequest, vector_of
from ..errors import (
    APIError,
    ConfigurationError,
    ContextLengthExceededError,
    ModelNotFoundError,
    NotFoundError,
    QuotaExceededError,
    ValidationError,
)
from ..framing import ServerSentEvent
from ..models import shipped_models
from ..request import GenerateRequest
from ..structured import strict_problems
from ..types import (
    FinishReason,
    GenerationResult,
    HealthStatus,
    Message,
    ModelInfo,
    StreamChunk,
    TokenCount,
    ToolCall,
    ToolCallDelta,
    Usage,
    parse_tool_arguments,
)
from . import openai_responses as responses_wire
from .http import (
    Delta,
    ErrorEvent,
    HttpProvider,
    Reasoning,
    Refusal,
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

__all__ = ["APIS", "OpenAIProvider"]

APIS = ("auto", "chat", "responses")  # OpenAIProvider(api=...): which of OpenAI's two wires

MAX_TOOL_CALLS = 1024  # tool calls one streamed answer may build; a larger index is not a real one

OPENAI_HOST = "api.openai.com"

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}

# The body fields build_payload sets -> what a caller uses instead of sending them in ``extra``.
OWNED_FIELDS: dict[str, str] = {
    "model": "the model is the provider's (model=...)",
    "messages": "pass the conversation as the prompt",
    "stream": "call stream_sync() or stream() to stream",
    "stream_options": "streams always ask for usage (stream_sync() or stream())",
    "max_tokens": "pass max_tokens=... instead",
    "max_completion_tokens": "pass max_tokens=... instead (sent as max_completion_tokens to reasoning models)",
    "temperature": "pass temperature=... instead",
    "top_p": "pass top_p=... instead",
    "stop": "pass stop=... instead",
    "tools": "pass tools=... instead",
    "tool_choice": "pass tool_choice=... instead",
    "parallel_tool_calls": "pass parallel_tool_calls=... instead",
}

# An error inside a 200 stream carries only its type and code: the status each comes with as an
# HTTP error (docs/protocols.md §2.5).
ERROR_STATUSES: dict[str, int] = {
    "invalid_request_error": 400, "context_length_exceeded": 400, "invalid_api_key": 401,
    "model_not_found": 404, "rate_limit_exceeded": 429, "insufficient_quota": 429, "server_error": 500,
    **responses_wire.FAILED_STATUSES,
}

CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
# A model the catalog does not know is taken for a reasoning model (which refuses max_tokens and
# needs max_completion_tokens, docs/protocols.md §2.2) by its name: o1, o3..., gpt-5 and later,
# with or without a router's "openai/" prefix.
_REASONING_ID = re.compile(r"(^|/)(o\d|gpt-([5-9]|\d{2,}))")

MODELS: tuple[ModelInfo, ...] = shipped_models("openai")


def finish_reason(value: str | None) -> FinishReason | None:
    if value is None:
        return None
    return FINISH_REASONS.get(value, "other")


def parse_usage(u: Mapping[str, Any] | None) -> Usage | None:
    if not u:
        return None
    if not isinstance(u, Mapping):
        raise ValueError(f"usage is {type(u).__name__}, not an object")
    prompt = token_count(u, "prompt_tokens")
    completion = token_count(u, "completion_tokens")
    cached = optional_count(u.get("prompt_tokens_details"), "cached_tokens")
    written = optional_count(u.get("prompt_tokens_details"), "cache_write_tokens")  # GPT-5.6+; inside prompt_tokens
    reasoning = optional_count(u.get("completion_tokens_details"), "reasoning_tokens")
    return Usage(input_tokens=prompt, output_tokens=completion,
                 total_tokens=token_count(u, "total_tokens") or prompt + completion,
                 cached_input_tokens=cached, cache_creation_input_tokens=written, reasoning_tokens=reasoning)


def _content(m: Message) -> Any:
    if isinstance(m.content, str):
        return m.content
    if m.role == "system":  # text parts only (a cache mark changes nothing here): one text
        return m.text
    parts: list[dict[str, Any]] = []
    for p in m.content:
        if p.type == "text":
            parts.append({"type": "text", "text": p.text})
        elif p.type == "document" and p.text is not None:  # plain text: no document parts here
            parts.append({"type": "text", "text": p.as_text()})
        elif p.type == "document":
            parts.append({"type": "file", "file": {"filename": p.filename or "document.pdf",
                                                   "file_data": p.data_url}})
        else:
            image: dict[str, Any] = {"url": p.data_url}
            if p.detail:
                image["detail"] = p.detail
            parts.append({"type": "image_url", "image_url": image})
    return parts


def _message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": _content(m)}
    if m.role == "assistant" and m.tool_calls:
        out["content"] = out["content"] or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
            for c in m.tool_calls
        ]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id
    return out


def max_tokens_field(model: str, info: ModelInfo | None, on_openai: bool = False) -> str:
    """What the output cap is called for this model: the catalog's word for a known model;
    ``max_completion_tokens`` on OpenAI itself (documented for every model) or for a reasoning
    model's name; ``max_tokens`` for other servers (Ollama's ``/v1`` knows only that)."""
    if info is not None:
        return info.wire_name("max_tokens")
    return "max_completion_tokens" if on_openai or _REASONING_ID.search(model) else "max_tokens"


def build_payload(request: GenerateRequest, model: str, stream: bool, info: ModelInfo | None = None,
                  on_openai: bool = False) -> dict[str, Any]:
    """Our request -> the Chat Completions body (``info``: the model's catalog row, if known)."""
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages += [_message(m) for m in request.messages]
    body: dict[str, Any] = {"model": model, "messages": messages}
    if request.max_tokens is not None:
        body[max_tokens_field(model, info, on_openai)] = request.max_tokens
    reasoning = request.reasoning
    if reasoning not in (None, "on") and (info is None or info.reasoning is not None):
        body["reasoning_effort"] = "none" if reasoning == "off" else reasoning
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = list(request.stop)
    if request.tools:
        body["tools"] = [
            {"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters}}
            for t in request.tools
        ]
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = choice if choice in ("auto", "none", "required") else {
            "type": "function", "function": {"name": choice}}
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.schema is not None:
        spec: dict[str, Any] = {"name": request.schema.name, "schema": request.schema.strict_schema(), "strict": True}
        if request.schema.description:
            spec["description"] = request.schema.description
        body["response_format"] = {"type": "json_schema", "json_schema": spec}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    body.update(request.extra)
    return body


def _tool_call(c: Mapping[str, Any]) -> ToolCall:
    fn = c.get("function") or {}
    args = fn.get("arguments")
    raw = args if isinstance(args, str) else json.dumps(args or {})
    return ToolCall(id=str(c.get("id") or ""), name=str(fn.get("name") or ""),
                    arguments=parse_tool_arguments(raw), arguments_json=raw)


def reasoning_text(message: Mapping[str, Any]) -> str | None:
    """The reasoning an OpenAI-compatible server returns beside the answer: ``reasoning_content``
    (DeepSeek, vLLM, llama.cpp) or ``reasoning`` (Ollama's ``/v1``, newer vLLM); OpenAI itself
    returns none on Chat Completions. Not sent back: those servers do not take it as input."""
    for name in ("reasoning_content", "reasoning"):
        value = message.get(name)
        if isinstance(value, str):  # another shape (OpenRouter's objects...) is not reasoning text
            return value
    return None


def _refusal(message: Mapping[str, Any]) -> str | None:
    value = message.get("refusal")
    return text_of(value, "a refusal") or None if value is not None else None


def parse_result(data: Mapping[str, Any], model: str) -> GenerationResult:
    """A Chat Completions response -> our result.

    Raises:
        KeyError, TypeError, IndexError: the body lacks the documented fields.
    """
    choice = data["choices"][0]
    message = choice.get("message") or {}
    calls = tuple(_tool_call(c) for c in message.get("tool_calls") or ())
    return GenerationResult(
        refusal=_refusal(message),
        content=text_of(message.get("content"), "message content"),
        reasoning=reasoning_text(message),
        model=str(data.get("model") or model),
        provider="",
        finish_reason=finish_with_tools(finish_reason(choice.get("finish_reason")), bool(calls)),
        usage=parse_usage(data.get("usage")),
        tool_calls=calls,
        raw=dict(data),
        response_id=id_of(data),
    )


@dataclass
class StreamState:
    """One stream's reading (a ``StreamParser``): finish reason and usage are held for the final
    chunk, because OpenAI sends usage in a chunk of its own after the finish reason."""

    model: str
    finish: FinishReason | None = None
    usage: Usage | None = None
    last_tool_index: int = 0
    tool_ids: dict[int, str] = field(default_factory=dict)
    had_tool_calls: bool = False
    done: bool = False
    refused: list[str] = field(default_factory=list)
    response_id: str | None = None
    refusal_streamed = True  # each piece went out as a Refusal delta

    @property
    def refusal(self) -> str | None:
        return "".join(self.refused) if self.refused else None

    def feed(self, event: ServerSentEvent) -> Delta:
        """One SSE event -> its text or tool-call fragments."""
        if event.data.startswith("[DONE]"):  # the SDK's test: any data beginning with [DONE]
            self.done = True
            return None
        data = event.json()
        if data.get("error"):  # checked before parsing, as the SDK does
            raise ErrorEvent(data)
        usage = data.get("usage")
        if usage:
            self.usage = parse_usage(usage)
        model = data.get("model")
        if model:
            self.model = str(model)
        if self.response_id is None:  # every chunk repeats it
            self.response_id = id_of(data)
        choices = data.get("choices")
        if not choices:
            return None
        choice = choices[0]
        if len(choices) > 1 or choice.get("index", 0) != 0:  # n=1 is enforced, but a server may send more
            choice = next((c for c in choices if c.get("index", 0) == 0), None)
            if choice is None:
                return None
        reason = choice.get("finish_reason")
        if reason is not None:
            self.finish = finish_reason(reason) or self.finish
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if content and len(delta) == 1:  # the common event: a piece of text and nothing else
            return content  # type: ignore[no-any-return]
        refused = delta.get("refusal")
        if refused:
            self.refused.append(text_of(refused, "a refusal delta"))
            return Refusal(refused)
        calls = delta.get("tool_calls")
        if calls:
            return content or "", _tool_call_deltas(calls, self)
        if not content:
            thought = reasoning_text(delta)
            if thought:
                return Reasoning(thought)
        return content

    def final(self) -> tuple[FinishReason | None, Usage | None]:
        return finish_with_tools(self.finish, self.had_tool_calls), self.usage


def _tool_call_deltas(calls: Iterable[Any], state: StreamState) -> list[ToolCallDelta]:
    deltas = []
    state.had_tool_calls = True
    for c in calls:
        # Servers that omit the index mean "the call being built" (docs/protocols.md §2.6).
        idx = c.get("index", state.last_tool_index)
        if idx.__class__ is not int or not 0 <= idx < MAX_TOOL_CALLS:
            raise ValueError(f"tool call index {str(idx)[:40]!r} is not a number from 0 to {MAX_TOOL_CALLS - 1}")
        state.last_tool_index = idx
        fn = c.get("function") or {}
        cid = c.get("id")
        new_call = cid and state.tool_ids.get(idx) != cid
        if new_call:
            state.tool_ids[idx] = cid
        args = fn.get("arguments")
        deltas.append(ToolCallDelta(
            index=idx, id=cid if new_call else None, name=fn.get("name") if new_call else None,
            arguments_delta=args if isinstance(args, str) else (json.dumps(args) if args else ""),
        ))
    return deltas


def embeddings_payload(model: str, texts: Sequence[str], request: EmbedRequest) -> dict[str, Any]:
    """A batch -> ``POST /v1/embeddings``'s body: ``{model, input: [...], encoding_format: "float",
    dimensions?}`` and the call's ``extra`` (``user``...)."""
    body: dict[str, Any] = {"model": model, "input": list(texts), "encoding_format": "float"}
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    body.update(request.extra)
    return body


def parse_embeddings(data: Any) -> tuple[list[tuple[float, ...]], Usage | None, str | None]:
    """``{data: [{index, embedding}], model, usage: {prompt_tokens, total_tokens}}`` -> (vectors
    in input order, usage, model). Items are placed by ``index`` (a compatible server that
    leaves it out: by position); the indexes must be 0 to n-1, each once."""
    if not isinstance(data, dict):
        raise TypeError(f"the answer is {type(data).__name__}, not an object")
    if data.get("error"):
        raise ErrorEvent(data)
    items = data["data"]
    if not isinstance(items, list):
        raise TypeError(f"'data' is {type(items).__name__}, not a list")
    placed: dict[int, tuple[float, ...]] = {}
    for i, item in enumerate(items):
        index = item.get("index", i) if isinstance(item, dict) else None
        if index.__class__ is not int or not 0 <= index < len(items) or index in placed:
            raise ValueError(f"data[{i}]'s index is {str(index)[:40]!r}: not one of 0 to {len(items) - 1}, once each")
        placed[index] = vector_of(item.get("embedding"), f"data[{i}].embedding")
    fields = data.get("usage")
    usage = None
    if isinstance(fields, dict):
        prompt = token_count(fields, "prompt_tokens")
        usage = Usage(input_tokens=prompt, total_tokens=token_count(fields, "total_tokens") or prompt)
    model = data.get("model")
    return [placed[i] for i in range(len(items))], usage, model if isinstance(model, str) and model else None


class OpenAIProvider(HttpProvider):
    """OpenAI Chat Completions, or any OpenAI-compatible server.

    Args:
        model: ``gpt-4o``, ``gpt-4o-mini``... or any id the server knows (default ``gpt-4o-mini``).
        api_key: defaults to ``OPENAI_API_KEY``; required only for api.openai.com.
        base_url: defaults to ``OPENAI_BASE_URL``, else ``https://api.openai.com/v1``; for a
            compatible server, its ``/v1`` root (``http://localhost:8000/v1``).
        organization, project: ``OpenAI-Organization`` / ``OpenAI-Project`` headers (default
            ``OPENAI_ORG_ID`` / ``OPENAI_PROJECT_ID``).
        **kwargs: timeout, max_retries, retry, transport, headers, verify, deadline_s, limits.
            (see :class:`HttpProvider`).

    Example::

        llm = OpenAIProvider(model="gpt-4o-mini")
        llm.generate_sync("Say hi", max_tokens=5).content
    """

    provider_id = "openai"
    DEFAULT_BASE_URL = "https://api.openai.com/v1"
    BASE_URL_RULE = ("an OpenAI base URL ends in /v1, as https://api.openai.com/v1 or "
                     "http://localhost:8080/v1 for a compatible server")
    DEFAULT_MODEL = "gpt-6-luna"
    VENDOR_HOST = OPENAI_HOST
    API_KEY_ENV: ClassVar[str | None] = "OPENAI_API_KEY"
    BASE_URL_ENV: ClassVar[str | None] = "OPENAI_BASE_URL"
    OTHER_ENV = ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID")
    REQUEST_ID_HEADER = "x-request-id"
    CHAT_PATH = "/chat/completions"
    FRAMING = "sse"
    STREAM_END = "[DONE]"
    ERROR_STATUSES: ClassVar[Mapping[str, int]] = ERROR_STATUSES
    MODELS: ClassVar[tuple[ModelInfo, ...]] = MODELS
    OWNED_FIELDS: ClassVar[Mapping[str, str]] = OWNED_FIELDS
    REASONING_FIELDS = ("reasoning_effort",)
    SCHEMA_FIELDS = ("response_format",)
    EMBED_PATH = "/embeddings"
    DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
    EMBED_FIELDS = ("model", "input", "dimensions", "encoding_format")  # float vectors are what we read

    # Who counts tokens when the wire has no count endpoint: None (the library's estimate) or
    # "llama.cpp" (the server's /apply-template and /tokenize at its root: the embedded model's).
    TOKENIZER: ClassVar[str | None] = None

    api: str = "chat"  # the wire this provider speaks: "chat" (Chat Completions) or "responses"

    def __init__(self, model: str | None = None, *, organization: str | None = None,
                 project: str | None = None, api: str = "auto", store: bool = False,
                 **kwargs: Unpack[ClientSettings]) -> None:
        self.organization = organization or os.environ.get("OPENAI_ORG_ID") or None
        self.project = project or os.environ.get("OPENAI_PROJECT_ID") or None
        check_header_value(self.organization, "organization" if organization else "OPENAI_ORG_ID", self.provider_id)
        check_header_value(self.project, "project" if project else "OPENAI_PROJECT_ID", self.provider_id)
        if api not in APIS:
            raise ConfigurationError(f"api must be one of {', '.join(APIS)}, got {api!r}", provider=self.provider_id)
        if not isinstance(store, bool):
            raise ConfigurationError(f"store must be True or False, got {store!r}", provider=self.provider_id)
        self.store = store
        super().__init__(model, **kwargs)
        info = self._model_info
        wants_responses = self.is_openai and info is not None and info.responses
        self.api = "responses" if api == "responses" or (api == "auto" and wants_responses) else "chat"
        if store and self.api != "responses":
            raise ConfigurationError("store=True is a Responses API setting: give api='responses' too",
                                     provider=self.provider_id)
        self._model_info = self._for_wire(self._model_info)

    def _for_wire(self, info: ModelInfo | None) -> ModelInfo | None:
        return responses_wire.wire_view(info) if self.api == "responses" else info

    @property
    def is_openai(self) -> bool:
        """True when talking to OpenAI itself rather than a compatible server."""
        return self.on_vendor_host

    def _check_key(self) -> None:
        if self.is_openai and not self._api_key:
            raise ConfigurationError(
                "no API key: pass api_key=... or set OPENAI_API_KEY (a key is needed for api.openai.com)",
                provider=self.provider_id, model=self._model)

    def _auth_headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        return headers

    def _check(self, request: GenerateRequest) -> None:
        if self.api == "responses":
            self._check_responses(request)
        super()._check(request)
        n = request.extra.get("n", 1)
        if n != 1:
            raise ValidationError(f"n={n!r} is not supported: one call returns one answer",
                                  provider=self.provider_id, model=self._model)
        if self.api == "chat" and any(p.url for m in request.with_parts() for p in m.documents):
            raise ValidationError("Chat Completions takes PDFs as bytes, not URLs: use ContentPart.document_bytes "
                                  "or document_file (or api='responses')", provider=self.provider_id,
                                  model=self._model)
        if request.schema is not None and self.is_openai:
            problems = strict_problems(request.schema.strict_schema())
            if problems:
                raise ValidationError(f"schema {request.schema.name!r} is not one OpenAI's strict mode takes: "
                                      f"{'; '.join(problems[:3])}", provider=self.provider_id, model=self._model)

    def _check_responses(self, request: GenerateRequest) -> None:
        """What the Responses API has no field for, or would get twice."""
        def refuse(message: str) -> ValidationError:
            return ValidationError(message, provider=self.provider_id, model=self._model)

        if request.stop:
            raise refuse("stop is not supported by the Responses API (use api='chat' for stop sequences)")
        for key in request.extra:
            if key in responses_wire.OWNED_FIELDS:
                raise refuse(f"extra[{key!r}] would override the {key!r} field the library builds itself; "
                             f"{responses_wire.OWNED_FIELDS[key]}")
            if key in responses_wire.CHAT_ONLY_FIELDS:
                raise refuse(f"extra[{key!r}] is a Chat Completions field the Responses API does not take "
                             f"({responses_wire.CHAT_ONLY_FIELDS[key]}); make the provider with api='chat' to "
                             f"send it")
        if "reasoning" in request.extra and request.reasoning is not None:
            raise refuse(f"reasoning={request.reasoning!r} and extra['reasoning'] both ask for reasoning: give one")
        self._check_schema_fields(request, ("text.format",))

    # -- errors -----------------------------------------------------------------------------

    def _refine_error_class(self, cls: type[APIError], status: int, error_type: str | None,
                            error_code: str | None, is_json: bool) -> type[APIError]:
        if error_code in CONTEXT_CODES or error_type == "exceed_context_size_error":
            return ContextLengthExceededError
        if "insufficient_quota" in (error_code, error_type):
            return QuotaExceededError
        if error_code == "model_not_found":  # Responses says so with a 400
            return ModelNotFoundError
        if status == 404 and cls is NotFoundError and is_json:
            # The model is the only resource /chat/completions names; a non-JSON 404 is more
            # likely a wrong base_url.
            return ModelNotFoundError
        return cls

    # -- the wire -----------------------------------------------------------------------------

    def _generate(self, request: GenerateRequest) -> GenerationResult:
        if self.api == "responses":
            return self._answer(responses_wire.RESPONSES_PATH, self._build_payload(self._fitted(request), False),
                                request)
        return super()._generate(request)

    def _stream(self, request: GenerateRequest) -> Iterator[StreamChunk]:
        if self.api == "responses":
            return self._stream_from(responses_wire.RESPONSES_PATH, self._build_payload(self._fitted(request), True),
                                     request)
        return super()._stream(request)

    def _stream_end(self) -> str:
        return "response.completed" if self.api == "responses" else self.STREAM_END

    def _count_tokens(self, request: GenerateRequest) -> TokenCount:
        """OpenAI's ``POST /responses/input_tokens`` for a model on the Responses API (exact);
        llama.cpp's tokenizer for ``TOKENIZER = "llama.cpp"``; else the estimate: Chat
        Completions has no count endpoint, and compatible servers' tokenizers differ."""
        if self.api == "responses" and self.is_openai:
            payload = responses_wire.count_payload(self._build_payload(self._fitted(request), False))
            data, resp = self._post_for_count(responses_wire.INPUT_TOKENS_PATH, payload, request)
            return self._counted(data.get("input_tokens"), "input_tokens", "openai responses/input_tokens",
                                 resp.headers)
        if self.TOKENIZER == "llama.cpp" and self.api == "chat":
            return self._count_with_llama_cpp(request)
        return super()._count_tokens(request)

    def _count_with_llama_cpp(self, request: GenerateRequest) -> TokenCount:
        """The prompt as llama.cpp's server would evaluate it: the chat body through the model's
        chat template (``POST /apply-template`` -> ``{"prompt"}``), then tokenized with the
        special tokens a generation adds (``POST /tokenize`` ``{"content", "add_special": true}``
        -> ``{"tokens": [...]}``, BOS included). Both are at the server's root, not under /v1."""
        root = self.base_url.removesuffix("/v1")
        body = self._build_payload(self._fitted(request), False)
        data, resp = self._post_for_count("/apply-template", body, request, url=root + "/apply-template")
        prompt = data.get("prompt")
        if not isinstance(prompt, str):
            raise self._invalid(f"/apply-template answer's prompt is {type(prompt).__name__}, not text", resp.headers)
        data, resp = self._post_for_count("/tokenize", {"content": prompt, "add_special": True}, request,
                                          url=root + "/tokenize")
        tokens = data.get("tokens")
        if not isinstance(tokens, list):
            raise self._invalid(f"/tokenize answer's tokens are {type(tokens).__name__}, not a list", resp.headers)
        return self._counted(len(tokens), "tokens", "llama.cpp /apply-template + /tokenize", resp.headers)

    def _build_payload(self, request: GenerateRequest, stream: bool) -> dict[str, Any]:
        if self.api == "responses":
            return responses_wire.build_payload(request, self._model, stream, self._model_info, self.store,
                                                self.origin)
        return build_payload(request, self._model, stream, self._model_info, self.is_openai)

    def _build_embed_payload(self, model: str, texts: Sequence[str], request: EmbedRequest) -> dict[str, Any]:
        return embeddings_payload(model, texts, request)

    def _parse_embeddings(self, data: Any) -> tuple[list[tuple[float, ...]], Usage | None, str | None]:
        return parse_embeddings(data)

    def _parse_result(self, data: Any) -> GenerationResult:
        if self.api == "responses":
            return responses_wire.parse_result(data, self._model, self.origin)
        return parse_result(data, self._model)

    def _stream_parser(self) -> StreamState | responses_wire.ResponsesStream:
        if self.api == "responses":
            return responses_wire.ResponsesStream(model=self._model, origin=self.origin)
        return StreamState(model=self._model)

    # -- health and models ------------------------------------------------------------------

    def list_models_sync(self) -> list[str]:
        """Ids of the models this key (or server) can use: ``GET /models``."""
        return [row["id"] for row in self._live_models_sync()]

    def _live_models_sync(self) -> list[dict[str, Any]]:
        """``GET /models``: ids, and each model's ``shutdown_date`` (OpenAI lists no limits or
        capabilities; docs/protocols.md §6). A date that has come makes the model retired."""
        data, _ = self._send("GET", "/models", timeout=self.timeout.connect + 10)
        rows: list[dict[str, Any]] = []
        day = model_data.today()
        for m in self._listing(data, "data", "GET /models"):
            if not isinstance(m, dict) or not isinstance(m.get("id"), str) or not m["id"]:
                raise self._invalid(f"GET /models lists an entry without a text id: {snippet(repr(m), 80)}")
            row: dict[str, Any] = {"id": m["id"]}
            shutdown = m.get("shutdown_date")
            if isinstance(shutdown, str) and model_data.is_iso_date(shutdown):
                row["retires_on"] = shutdown
                row["lifecycle"] = "retired" if shutdown <= day else "deprecated"
            rows.append(row)
        return rows

    def health_check_sync(self) -> HealthStatus:
        """``GET /models/{model}`` on OpenAI (checks key and model access, costs no tokens);
        ``GET /models`` on a compatible server (whose model list may use other names)."""

        def probe(detail: dict[str, Any]) -> str | None:
            if self.is_openai:
                self._send("GET", f"/models/{quote(self._model, safe='')}", timeout=self.timeout.connect + 10)
            else:
                models = self.list_models_sync()
                detail["models"] = models
                detail["model_listed"] = self._model in models
            return None

        return self._health(probe)
