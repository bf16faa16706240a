"""Ollama's native API (``/api/chat``, ``/api/generate``) with NDJSON streaming (docs/protocols.md §4).

Talks only to the configured host (``host=``, else ``OLLAMA_HOST``, else 127.0.0.1:11434): nothing
leaves the machine unless you point it elsewhere. No key is needed locally; ``OLLAMA_API_KEY``
(or ``api_key=``) is sent as a bearer token for hosted Ollama.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import field, replace
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from .._lazy import dataclass
from .._redact import redact_url
from ..embeddings import EmbedRequest, vector_of
from ..errors import (
    SHAPE_ERRORS,
    APIError,
    ConfigurationError,
    ModelNotFoundError,
    NotFoundError,
    OverloadedError,
    ValidationError,
)
from ..models import shipped_models
from ..provider import ChunkStream
from ..request import GenerateRequest, build_request
from ..types import (
    FinishReason,
    GenerationResult,
    HealthStatus,
    Message,
    ModelInfo,
    ReasoningBlock,
    Tier,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from .http import Delta, ErrorEvent, HttpProvider, Reasoning, text_of, token_count

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .http import ClientSettings

__all__ = ["OllamaProvider", "parse_host"]

DEFAULT_HOST = "http://127.0.0.1:11434"

# Modelfile parameters: ``extra`` keys with these names go into ``options``.
OPTION_NAMES = frozenset({
    "num_ctx", "num_predict", "temperature", "top_k", "top_p", "min_p", "typical_p", "seed", "stop",
    "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty", "mirostat", "mirostat_eta",
    "mirostat_tau", "tfs_z", "num_keep", "penalize_newline", "num_batch", "num_gpu", "main_gpu", "use_mmap",
    "num_thread", "numa", "low_vram",
})
# Top-level request fields ``extra`` may set. Ollama ignores unknown fields silently, so anything
# else is refused here rather than dropped there.
CHAT_FIELDS = frozenset({"format", "keep_alive", "think", "options", "logprobs", "top_logprobs"})
GENERATE_FIELDS = CHAT_FIELDS | {"suffix", "template", "context", "images"}
# What the payload builders set -> what to use instead. The Modelfile options among them are
# refused in ``extra`` and in ``extra["options"]`` alike.
OWNED_FIELDS: dict[str, str] = {
    "model": "the model is the provider's (model=...)",
    "messages": "pass the conversation as the prompt",
    "prompt": "pass the prompt to generate_raw_sync()",
    "stream": "call stream_sync() or stream() to stream",
    "tools": "pass tools=... instead",
    "raw": "pass raw=... to generate_raw_sync()",
    "system": "pass system=... instead",
    "num_predict": "pass max_tokens=... instead",
    "temperature": "pass temperature=... instead",
    "top_p": "pass top_p=... instead",
    "stop": "pass stop=... instead",
}
# The type of each Modelfile option (Ollama answers 400 for another; api/types.go Options).
_INT_OPTIONS = frozenset({"num_ctx", "num_predict", "top_k", "seed", "repeat_last_n", "mirostat", "num_keep",
                          "num_batch", "num_gpu", "main_gpu", "num_thread"})
_BOOL_OPTIONS = frozenset({"penalize_newline", "use_mmap", "numa", "low_vram"})
# keep_alive: seconds (negative: forever) or a Go duration string ("10m", "1h30m", "-1s", "0").
_DURATION = re.compile(r"[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+)")

FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length"}

MODELS: tuple[ModelInfo, ...] = shipped_models("ollama")


def parse_host(host: str | None) -> str:
    """``OLLAMA_HOST`` rules (ollama-python ``_parse_host``): ``"1.2.3.4"`` ->
    ``http://1.2.3.4:11434``, ``":9"`` -> ``http://127.0.0.1:9``, ``"https://h"`` -> ``https://h:443``,
    paths kept, IPv6 in brackets."""
    host = (host or "").strip()
    if not host:
        return DEFAULT_HOST
    if "://" in host:
        scheme, rest = host.split("://", 1)
        default_port = 443 if scheme == "https" else 80
    else:
        scheme, rest, default_port = "http", host, 11434
    netloc, _, path = rest.partition("/")
    if netloc.startswith("["):
        name, _, after = netloc.partition("]")
        name, port = name + "]", after.lstrip(":")
    else:
        name, _, port = netloc.partition(":")
    name = name or "127.0.0.1"
    path = "/" + path.strip("/") if path.strip("/") else ""
    return f"{scheme}://{name}:{int(port) if port else default_port}{path}"


def _seconds(ns: Any) -> float:
    if ns is None:
        return 0.0
    if isinstance(ns, bool) or not isinstance(ns, (int, float)) or not 0 <= ns < 1e20:
        raise ValueError(f"a duration is {str(ns)[:40]!r}, not nanoseconds")
    return float(ns) / 1e9


def parse_usage(data: Mapping[str, Any]) -> Usage:
    """The final object's metrics (absent when zero: docs/protocols.md §4.3) -> Usage."""
    inp, out = token_count(data, "prompt_eval_count"), token_count(data, "eval_count")
    timings = {name: _seconds(data.get(f"{name}_duration")) for name in ("total", "load", "prompt_eval", "eval")}
    return Usage(input_tokens=inp, output_tokens=out, total_tokens=inp + out, server_timings_s=timings)


def _tool_calls(calls: Any, start: int) -> tuple[ToolCall, ...]:
    out = []
    for i, c in enumerate(calls or (), start):
        fn = c.get("function") or {}
        args = fn.get("arguments")
        if isinstance(args, str):  # some builds send a JSON string like OpenAI
            text = args
            try:
                parsed: Any = json.loads(args) if args else {}
            except ValueError:
                parsed = None
        else:
            parsed, text = args or {}, json.dumps(args or {})
        out.append(ToolCall(id=str(c.get("id") or f"call_{i}"), name=str(fn.get("name") or ""),
                            arguments=parsed if isinstance(parsed, dict) else None, arguments_json=text))
    return tuple(out)


def finish_reason(data: Mapping[str, Any], had_tool_calls: bool) -> FinishReason:
    # done_reason stays "stop" when the model called tools (docs/protocols.md §4.6).
    if had_tool_calls:
        return "tool_calls"
    return FINISH_REASONS.get(str(data.get("done_reason")), "other")


# -- request ---------------------------------------------------------------------------------------

def _text(m: Message) -> str:
    """The message's text, plain-text documents included (Ollama has no document parts)."""
    if not m.documents:
        return m.text
    assert isinstance(m.content, tuple)
    return "\n\n".join(p.text or "" if p.type == "text" else p.as_text() for p in m.content
                         if p.type in ("text", "document"))


def _message(m: Message, tool_name: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": _text(m)}
    images = [p.data for p in m.images]
    if images:
        out["images"] = images
    if m.tool_calls:
        out["tool_calls"] = [{**({"id": c.id} if c.id else {}),
                              "function": {"name": c.name, "arguments": c.arguments or {}}}
                             for c in m.tool_calls]
    thought = "".join(r.text for r in m.reasoning if r.provider == "ollama" and r.kind != "message")
    if m.role == "assistant" and thought:  # the model's own thinking, back where it was (Message.thinking)
        out["thinking"] = thought
    if m.role == "tool":
        if tool_name:
            out["tool_name"] = tool_name
        if m.tool_call_id:
            out["tool_call_id"] = m.tool_call_id
    return out


def _tool_names(messages: Sequence[Message]) -> list[str | None]:
    """The function each ``tool`` message answers (None for other roles): its own ``name``, else the
    call its id names, else, as Ollama's own history has no ids, the next unanswered call of the
    assistant turn before it, in order."""
    names: list[str | None] = []
    by_id: dict[str, str] = {}
    pending: list[ToolCall] = []
    for m in messages:
        name = None
        if m.tool_calls:
            pending = list(m.tool_calls)
            by_id.update((c.id, c.name) for c in m.tool_calls if c.id)
        elif m.role == "tool":
            if m.tool_call_id:
                answered = next((c for c in pending if c.id == m.tool_call_id), None)
            else:
                answered = pending[0] if pending else None
            if answered is not None:
                pending.remove(answered)
            name = m.name or (answered.name if answered else by_id.get(m.tool_call_id or ""))
        names.append(name)
    return names


def _split_extra(extra: Mapping[str, Any], allowed: frozenset[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    top: dict[str, Any] = {}
    options: dict[str, Any] = {}
    unknown = []
    for key, value in extra.items():
        if key in OPTION_NAMES:
            options[key] = value
        elif key == "options":
            options.update(value)
        elif key in allowed:
            top[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValidationError(f"Ollama does not know the field(s) {sorted(unknown)}; it would ignore them silently "
                              f"(request fields: {sorted(allowed)}; Modelfile options go in extra too)")
    return top, options


def check_option(name: str, value: Any, where: str) -> None:
    """One Modelfile option's value has the type Ollama requires.

    Raises:
        ValidationError: naming ``where``.
    """
    if name in _BOOL_OPTIONS:
        ok = isinstance(value, bool)
    elif name in _INT_OPTIONS:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif name == "stop":
        ok = isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value)
    else:  # the float options
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        kind = ("True or False" if name in _BOOL_OPTIONS else "an integer" if name in _INT_OPTIONS
                else "a list of strings" if name == "stop" else "a finite number")
        raise ValidationError(f"{where} must be {kind}, got {value!r}")


def check_keep_alive(value: Any, where: str) -> None:
    """Seconds (a finite number; negative keeps the model loaded) or a duration such as ``"10m"``."""
    if isinstance(value, str):
        ok = bool(_DURATION.fullmatch(value.strip()))
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise ValidationError(f"{where} must be seconds or a duration such as '10m', '1h30m' or '-1s', got {value!r}")


def check_extra(extra: Mapping[str, Any]) -> None:
    """The Ollama-specific rules for ``extra``: Modelfile options known and of the right type, the
    ones the library sets refused, ``options`` a dict, ``keep_alive`` a duration.

    Raises:
        ValidationError: naming the field.
    """
    options = extra.get("options", {})
    if not isinstance(options, Mapping):
        raise ValidationError(f"extra['options'] must be a dict of Modelfile options, got {type(options).__name__}")
    unknown = sorted(str(k) for k in options if k not in OPTION_NAMES)
    if unknown:
        raise ValidationError(f"extra['options'] has unknown Modelfile option(s) {unknown}; Ollama would ignore them "
                              f"(known: {sorted(OPTION_NAMES)})")
    for name, value in [*options.items(), *((k, v) for k, v in extra.items() if k in OPTION_NAMES)]:
        where = f"extra['options'][{name!r}]" if name in options else f"extra[{name!r}]"
        if name in OWNED_FIELDS:
            raise ValidationError(f"{where} would override the {name!r} option the library builds itself; "
                                  f"{OWNED_FIELDS[name]}")
        check_option(name, value, where)
    if "keep_alive" in extra:
        check_keep_alive(extra["keep_alive"], "extra['keep_alive']")


def embeddings_payload(model: str, texts: Sequence[str], request: EmbedRequest,
                       defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A batch -> ``POST /api/embed``'s body: ``{model, input: [...], dimensions?, keep_alive?}``
    and the call's ``extra`` (``truncate``, ``options``, ``keep_alive``)."""
    body: dict[str, Any] = {"model": model, "input": list(texts)}
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    if "keep_alive" in defaults:
        body["keep_alive"] = defaults["keep_alive"]
    body.update(request.extra)
    return body


def parse_embeddings(data: Any) -> tuple[list[tuple[float, ...]], Usage | None, str | None]:
    """``{model, embeddings: [[...], ...], prompt_eval_count}`` -> (vectors in input order, usage, model)."""
    if not isinstance(data, dict):
        raise TypeError(f"the answer is {type(data).__name__}, not an object")
    if data.get("error"):
        raise ErrorEvent(data)
    rows = data["embeddings"]
    if not isinstance(rows, list):
        raise TypeError(f"'embeddings' is {type(rows).__name__}, not a list")
    vectors = [vector_of(row, f"embeddings[{i}]") for i, row in enumerate(rows)]
    usage = None
    if data.get("prompt_eval_count") is not None:
        count = token_count(data, "prompt_eval_count")
        usage = Usage(input_tokens=count, total_tokens=count)
    model = data.get("model")
    return vectors, usage, model if isinstance(model, str) and model else None


def check_embed_extra(extra: Mapping[str, Any]) -> None:
    """``extra`` of an embeddings call: ``truncate`` a bool, ``keep_alive`` a duration,
    ``options`` Modelfile options."""
    if "truncate" in extra and not isinstance(extra["truncate"], bool):
        raise ValidationError(f"extra['truncate'] must be True or False, got {extra['truncate']!r}")
    check_extra({k: v for k, v in extra.items() if k in ("options", "keep_alive")})


def _check_raw(raw: Any) -> None:
    if not isinstance(raw, bool):
        raise ValidationError(f"raw must be True or False, got {raw!r}")


def _options(request: GenerateRequest, defaults: Mapping[str, Any]) -> dict[str, Any]:
    options = dict(defaults)
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if request.stop:
        options["stop"] = list(request.stop)
    return options


def think_field(request: GenerateRequest, info: ModelInfo | None) -> bool | str | None:
    """``reasoning=`` as Ollama's ``think``: false/true, or a level for models that take levels
    (gpt-oss: low, medium, high); None to leave it out (the model's default)."""
    level = request.reasoning
    if level is None or (info is not None and info.reasoning is None):
        return None
    if level in ("off", "on"):
        return level == "on"
    if info is not None and info.reasoning == "think":
        return True  # an on/off model: any level is "on"
    return level


def build_payload(request: GenerateRequest, model: str, stream: bool,
                  defaults: Mapping[str, Any] = {},  # noqa: B006 - read only
                  info: ModelInfo | None = None) -> dict[str, Any]:
    """Our request -> the ``/api/chat`` body (``stream`` always explicit: Ollama streams by default)."""
    top, extra_options = _split_extra(request.extra, CHAT_FIELDS)
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages += [_message(m, name) for m, name in zip(request.messages, _tool_names(request.messages), strict=True)]
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    think = think_field(request, info)
    if think is not None:
        body["think"] = think
    options = {**_options(request, {k: v for k, v in defaults.items() if k in OPTION_NAMES}), **extra_options}
    if options:
        body["options"] = options
    if "keep_alive" in defaults:
        body["keep_alive"] = defaults["keep_alive"]
    if request.tools:
        body["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                           "parameters": t.parameters}} for t in request.tools]
    if request.schema is not None:
        body["format"] = request.schema.schema
    body.update(top)
    return body


# -- response --------------------------------------------------------------------------------------

def parse_result(data: Mapping[str, Any], model: str) -> GenerationResult:
    """A non-streaming ``/api/chat`` or ``/api/generate`` answer -> our result.

    Raises:
        ErrorEvent: the body is an error object.
        KeyError, TypeError: the body lacks the documented fields.
    """
    if isinstance(data, dict) and "error" in data:
        raise ErrorEvent(data)
    if "message" in data:
        message = data["message"]
        text = text_of(message.get("content"), "message content")
        calls = _tool_calls(message.get("tool_calls"), 0)
        thought = message.get("thinking")
    else:
        text, calls, thought = text_of(data["response"], "response"), (), data.get("thinking")
    thought = text_of(thought, "thinking") if thought is not None else None
    return GenerationResult(
        content=text, model=str(data.get("model") or model), provider="",
        finish_reason=finish_reason(data, bool(calls)), usage=parse_usage(data), tool_calls=calls, raw=dict(data),
        reasoning=thought, reasoning_blocks=(ReasoningBlock("ollama", text=thought),) if thought else (),
    )


@dataclass
class StreamState:
    """One stream's reading (a ``StreamParser``) of its JSON lines. The final ``done: true``
    object's text is kept too: it is not always empty."""

    model: str
    tool_count: int = 0
    last: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    thought: list[str] = field(default_factory=list)

    @property
    def reasoning_blocks(self) -> tuple[ReasoningBlock, ...]:
        return (ReasoningBlock("ollama", text="".join(self.thought)),) if self.thought else ()

    def feed(self, data: Any) -> Delta:
        """One JSON line -> its text and complete tool calls."""
        if not isinstance(data, dict):
            return None
        if data.get("error"):  # checked first, as ollama-python does
            raise ErrorEvent(data)
        model = data.get("model")
        if model:
            self.model = str(model)
        done = data.get("done")
        if done is not None and done.__class__ is not bool:
            raise ValueError(f"done is {str(done)[:40]!r}, not true or false")
        if done:
            self.done = True
            self.last = data
        message = data.get("message")
        text = (message.get("content") if message else data.get("response")) or ""
        raw_calls = message.get("tool_calls") if message else None
        thinking = (message or data).get("thinking")
        if thinking:
            self.thought.append(text_of(thinking, "thinking"))
            if not text and not raw_calls:
                return Reasoning(thinking)
        if not raw_calls:
            return text  # not text: the base raises StreamError
        calls = _tool_calls(raw_calls, self.tool_count)
        deltas = tuple(ToolCallDelta(index=self.tool_count + i, id=c.id, name=c.name, arguments_delta=c.arguments_json)
                       for i, c in enumerate(calls))
        self.tool_count += len(calls)
        return text, deltas

    def final(self) -> tuple[FinishReason | None, Usage | None]:
        return finish_reason(self.last, self.tool_count > 0), parse_usage(self.last)


def show_fields(data: Any) -> dict[str, Any]:
    """An ``/api/show`` answer -> catalog fields: the trained context length (``<arch>.context_length``
    in ``model_info``, also the output limit: Ollama has no separate one) and, when the server lists
    ``capabilities`` (0.6 and later), tools, vision and thinking.

    Raises:
        TypeError, ValueError, AttributeError: not an answer of that shape.
    """
    fields: dict[str, Any] = {}
    info = data.get("model_info") or {}
    context = next((v for k, v in info.items() if k.endswith(".context_length")), None)
    if isinstance(context, float) and context.is_integer():
        context = int(context)
    if context is not None and (isinstance(context, bool) or not isinstance(context, int)):
        raise ValueError(f"context_length is {str(context)[:40]!r}, not a whole number")
    if context is not None and context > 0:
        fields["context_window"] = fields["max_output"] = context
    caps = data.get("capabilities")
    if isinstance(caps, list):
        names = {c for c in caps if isinstance(c, str)}
        fields.update(tools="tools" in names, vision="vision" in names,
                      reasoning="think" if "thinking" in names else None)
    return fields


class OllamaProvider(HttpProvider):
    """A model served by Ollama, through its native API.

    Args:
        model: ``llama3.1``, ``llama3.2:1b``, ``qwen2.5``... (``name:tag``; ``:latest`` implied).
        host: the server (``OLLAMA_HOST`` rules: ``"gpu-box"``, ``":11435"``, ``"https://ollama.example"``);
            default ``OLLAMA_HOST``, else ``127.0.0.1:11434``. ``base_url=`` is accepted too.
        api_key: a bearer token for hosted Ollama (default ``OLLAMA_API_KEY``); not needed locally.
        num_ctx: the context window the server allocates (Ollama silently truncates prompts longer
            than its default, which is far below most models' trained context).
        keep_alive: how long the model stays loaded after a call (``"10m"``, seconds, ``-1``).
        **kwargs: timeout, max_retries, retry, transport, headers, verify, deadline_s, limits.

    Per-call Ollama fields go in ``extra``: Modelfile options (``seed``, ``top_k``, ``num_ctx``...)
    and request fields (``format`` for JSON or a schema, ``think``, ``keep_alive``). Options the
    library sets (``num_predict``, ``temperature``, ``top_p``, ``stop``) come from their call options
    and are refused in ``extra``; an unknown option or one of the wrong type is refused too.
    """

    provider_id = "ollama"
    DEFAULT_BASE_URL = DEFAULT_HOST
    BASE_URL_RULE = "Ollama's base URL is the server root, without /api or /v1: http://localhost:11434"
    DEFAULT_MODEL = "llama3.1"
    API_KEY_ENV = "OLLAMA_API_KEY"
    BASE_URL_ENV = "OLLAMA_HOST"
    CONFIGURED_BY = ("OLLAMA_HOST",)  # a key alone names no server
    CHAT_PATH = "/api/chat"
    FRAMING = "ndjson"
    STREAM_END = "its final done:true line"
    CONNECT_HINT = "no Ollama server answers at {base_url}: start it with `ollama serve` or set OLLAMA_HOST"
    MODELS: ClassVar[tuple[ModelInfo, ...]] = MODELS
    REASONING_FIELDS = ("think",)
    TOOL_RESULTS_NEED_IDS: ClassVar[bool] = False  # its own history has none: results pair by order
    UNKNOWN_MODEL: ClassVar[ModelInfo] = ModelInfo(id="", context_window=4096, max_output=4096, tools=False,
                                                   tier=Tier.LOCAL)
    OWNED_FIELDS: ClassVar[Mapping[str, str]] = OWNED_FIELDS
    SCHEMA_FIELDS = ("format",)
    EMBED_PATH = "/api/embed"
    DEFAULT_EMBEDDING_MODEL = "nomic-embed-text"

    def __init__(self, model: str | None = None, host: str | None = None, *, num_ctx: int | None = None,
                 keep_alive: str | float | None = None, **kwargs: Unpack[ClientSettings]) -> None:
        if host is not None and kwargs.get("base_url") is not None:
            raise ConfigurationError("give host or base_url, not both", provider=self.provider_id)
        if host is not None and not isinstance(host, str):
            raise ConfigurationError(f"host must be text, got {type(host).__name__}", provider=self.provider_id)
        if num_ctx is not None and (isinstance(num_ctx, bool) or not isinstance(num_ctx, int) or num_ctx < 1):
            raise ConfigurationError(f"num_ctx must be a positive integer, got {num_ctx!r}", provider=self.provider_id)
        if keep_alive is not None:
            try:
                check_keep_alive(keep_alive, "keep_alive")
            except ValidationError as exc:
                raise ConfigurationError(exc.message, provider=self.provider_id) from None
        kwargs["base_url"] = host if host is not None else kwargs.get("base_url")
        super().__init__(model, **kwargs)
        self._defaults: dict[str, Any] = {}
        if num_ctx is not None:
            self._defaults["num_ctx"] = num_ctx
        if keep_alive is not None:
            self._defaults["keep_alive"] = keep_alive

    @classmethod
    def catalog_name(cls, name: str) -> str:
        return name.removesuffix(":latest")

    def _normalise_base_url(self, url: str) -> str:
        if "://" in url and not url.lower().startswith(("http://", "https://")):
            raise ConfigurationError(f"host {redact_url(url)!r} must be http:// or https://",
                                     provider=self.provider_id)
        try:
            normalised = parse_host(url)
            urlsplit(normalised).port  # noqa: B018 - raises for a port out of range
            return normalised
        except ValueError as exc:  # a port that is not a number, or out of range
            raise ConfigurationError(f"host {redact_url(url)!r} is not an Ollama address ({exc})",
                                     provider=self.provider_id) from None

    @property
    def host(self) -> str:
        return self.base_url

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _check(self, request: GenerateRequest) -> None:
        super()._check(request)
        try:
            check_extra(request.extra)
        except ValidationError as exc:
            exc.provider, exc.model = self.provider_id, self._model
            raise
        for m in request.messages:
            if any(p.url for p in m.images):
                raise ValidationError("Ollama takes images as bytes, not URLs: use ContentPart.image_bytes or "
                                      "image_file", provider=self.provider_id, model=self._model)
            if any(p.media_type == "application/pdf" for p in m.documents):
                raise ValidationError("Ollama does not read PDFs: send the document's text "
                                      "(ContentPart.document_text)", provider=self.provider_id, model=self._model)

    # -- errors -------------------------------------------------------------------------------

    def _refine_error_class(self, cls: type[APIError], status: int, error_type: str | None,
                            error_code: str | None, is_json: bool) -> type[APIError]:
        if status == 404 and cls is NotFoundError:
            return ModelNotFoundError
        if status == 503:
            return OverloadedError  # the request queue is full
        return cls

    def _names_the_model(self, error: APIError) -> bool:
        # Ollama's own 404 is always the model's ({"error": "model ... not found"}); a 404 in
        # any other shape comes from another server.
        try:
            body = json.loads(error.body or "")
        except ValueError:
            return False
        return isinstance(body, dict) and isinstance(body.get("error"), str)

    def _error_from_response(self, status: int, headers: Mapping[str, str], content: bytes) -> APIError:
        err = super()._error_from_response(status, headers, content)
        if isinstance(err, ModelNotFoundError):
            err.message = f"{err.message} (pull it first: `ollama pull {self._model}`)"
        return err

    # -- the wire -----------------------------------------------------------------------------

    def _build_payload(self, request: GenerateRequest, stream: bool) -> dict[str, Any]:
        return build_payload(request, self._model, stream, self._defaults, self._model_info)

    def _check_embed(self, request: EmbedRequest) -> None:
        super()._check_embed(request)
        try:
            check_embed_extra(request.extra)
        except ValidationError as exc:
            exc.provider, exc.model = self.provider_id, request.model or self.embedding_model
            raise

    def _build_embed_payload(self, model: str, texts: Sequence[str], request: EmbedRequest) -> dict[str, Any]:
        return embeddings_payload(model, texts, request, self._defaults)

    def _parse_embeddings(self, data: Any) -> tuple[list[tuple[float, ...]], Usage | None, str | None]:
        return parse_embeddings(data)

    def _parse_result(self, data: Any) -> GenerationResult:
        return parse_result(data, self._model)

    def _stream_parser(self) -> StreamState:
        return StreamState(model=self._model)

    def generate_raw_sync(self, prompt: str, *, raw: bool = True, **options: Any) -> GenerationResult:
        """``/api/generate``: the prompt goes to the model as given (``raw=True``: no chat template).

        Options are those of ``generate_sync``; ``extra`` may add ``suffix``, ``images``, ``template``.
        """
        request = build_request(prompt, options)
        self._check(request)
        _check_raw(raw)
        return self._generate_at("/api/generate", self._generate_payload(request, raw, False), request)

    def stream_raw_sync(self, prompt: str, *, raw: bool = True, **options: Any) -> ChunkStream:
        """Streaming ``/api/generate``."""
        request = build_request(prompt, options)
        self._check(request)
        _check_raw(raw)
        return self._stream_at("/api/generate", self._generate_payload(request, raw, True), request)

    def _generate_payload(self, request: GenerateRequest, raw: bool, stream: bool) -> dict[str, Any]:
        top, extra_options = _split_extra(request.extra, GENERATE_FIELDS)
        body: dict[str, Any] = {"model": self._model, "prompt": request.messages[-1].text, "stream": stream,
                                "raw": raw}
        options = {**_options(request, {k: v for k, v in self._defaults.items() if k in OPTION_NAMES}),
                   **extra_options}
        if options:
            body["options"] = options
        if request.system:
            body["system"] = request.system
        if "keep_alive" in self._defaults:
            body["keep_alive"] = self._defaults["keep_alive"]
        if request.schema is not None:
            body["format"] = request.schema.schema
        body.update(top)
        return body

    # -- health, models, capabilities ---------------------------------------------------------

    def list_models_sync(self) -> list[str]:
        """Names of the installed models (``GET /api/tags``)."""
        data, _ = self._send("GET", "/api/tags", timeout=self.timeout.connect + 10)
        return [str(m.get("name") or m.get("model")) for m in self._listing(data, "models", "GET /api/tags")
                if isinstance(m, dict)]

    def is_pulled_sync(self) -> bool:
        """Whether this provider's model is installed on the server."""
        wanted = {self._model, f"{self._model}:latest"} if ":" not in self._model else {self._model}
        return bool(wanted & set(self.list_models_sync()))

    def health_check_sync(self) -> HealthStatus:
        """``GET /api/version`` (is the server up) then ``GET /api/tags`` (is the model pulled).
        Never loads a model into memory."""

        def probe(detail: dict[str, Any]) -> str | None:
            data, _ = self._send("GET", "/api/version", timeout=self.timeout.connect + 5)
            detail["version"] = data.get("version") if isinstance(data, dict) else None
            detail["model_pulled"] = self.is_pulled_sync()
            return None if detail["model_pulled"] else f"model {self._model} is not pulled: `ollama pull {self._model}`"

        return self._health(probe)

    def fetch_capabilities_sync(self) -> ModelInfo:
        """Ask the server about this model (``POST /api/show``): its trained context length and whether
        it does tools, vision and thinking. The answer replaces the catalog row for this provider."""
        fields = self._show(self._model)
        base = self._model_info or replace(self.UNKNOWN_MODEL, id=self._model)
        if fields.get("reasoning") == "think" and base.reasoning == "think_levels":
            del fields["reasoning"]  # the server says only "thinking"; the catalog knows the levels
        self._model_info = replace(base, **fields)
        return self._model_info

    def _show(self, name: str) -> dict[str, Any]:
        """``POST /api/show`` of one model as catalog fields (those the answer reports)."""
        data, _ = self._send("POST", "/api/show", {"model": name}, timeout=self.timeout.connect + 30)
        try:
            return show_fields(data)
        except SHAPE_ERRORS as exc:
            raise self._invalid(f"/api/show answer for {name} not understood ({str(exc)[:200]})") from None

    def _live_models_sync(self) -> list[dict[str, Any]]:
        """``GET /api/tags``, then ``POST /api/show`` for each installed model (a model removed in
        between is listed without details)."""
        rows: list[dict[str, Any]] = []
        for name in self.list_models_sync():
            try:
                rows.append({"id": name, **self._show(name)})
            except ModelNotFoundError:
                rows.append({"id": name})
        return rows
