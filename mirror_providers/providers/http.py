"""``HttpProvider``: the transport plumbing every vendor shares.

It owns the base URL, the API key, timeouts, the transport (shared process-wide by default) and
retries, sends JSON, opens streams, and turns error responses into the ``errors`` tree. A vendor
subclass only translates: it builds the payload, parses the result and stream events, and
refines error classes with its own error types and codes.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal, Protocol, TypedDict
from urllib.parse import urlsplit

from .. import hooks, live_models, model_rules
from .. import models as model_data
from .._call import current_call, on_abort
from .._redact import redact, redact_url, snippet, split_userinfo
from .._timers import call_at
from .._wait import WouldBlock, reads_on_loop
from ..embeddings import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, EmbedRequest, embedding_model, sum_usage
from ..errors import (
    SHAPE_ERRORS,
    APIError,
    ConfigurationError,
    ConnectError,
    ContextLengthExceededError,
    EndpointNotFoundError,
    InvalidResponseError,
    ModelRetiredError,
    ProviderError,
    RequestTimeout,
    StreamError,
    StructuredOutputError,
    TruncatedStreamError,
    ValidationError,
    error_class_for_status,
    stream_error_class,
)
from ..framing import iter_json_lines, iter_sse, too_deep
from ..pricing import cost_of
from ..provider import ChunkStream, Provider, thread_pool_size
from ..rate_limits import parse_rate_limits
from ..request import GenerateRequest, check_timeout, counting_tokens
from ..retry import RetryPolicy, parse_retry_after, should_retry_header
from ..transport import (
    DEFAULT_LIMITS,
    DEFAULT_POOL_SIZE,
    DEFAULT_TIMEOUT,
    HttpRequest,
    HttpResponse,
    Limits,
    RequestsTransport,
    StreamResponse,
    Timeout,
    Transport,
)
from ..types import (
    Capabilities,
    Citation,
    Cost,
    EmbeddingResult,
    FinishReason,
    GenerationResult,
    HealthStatus,
    ModelCatalog,
    ModelInfo,
    StreamChunk,
    Tier,
    TokenCount,
    ToolCallDelta,
    Usage,
    fast_stream_chunk,
)

__all__ = ["KEEPALIVE", "Cited", "Delta", "ErrorEvent", "HttpProvider", "Reasoning", "Refusal", "StreamParser",
           "default_transport", "finish_with_tools", "optional_count", "text_of", "token_count"]

class _KeepAlive:
    __slots__ = ()

    def __repr__(self) -> str:
        return "KEEPALIVE"


KEEPALIVE = _KeepAlive()
"""What ``StreamParser.feed`` returns for a keep-alive frame (Anthropic's ``ping``): not data, so it
does not hold off the stream's idle timeout."""


class Reasoning:
    """What ``StreamParser.feed`` returns for a frame of reasoning text (a thinking delta); never
    empty (a parser returns None for an empty delta)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class Refusal(Reasoning):
    """What ``StreamParser.feed`` returns for a frame of refusal text (OpenAI ``delta.refusal``);
    never empty. A parser that returns these keeps the whole refusal in its ``refusal``
    attribute and sets ``refusal_streamed``."""

    __slots__ = ()


class Cited:
    """What ``StreamParser.feed`` returns when a text block that cited documents ends: its
    citations (Anthropic ``citations_delta``), each with the stretch of the answer it backs."""

    __slots__ = ("citations",)

    def __init__(self, citations: tuple[Citation, ...]) -> None:
        self.citations = citations


Delta = str | tuple[str, Sequence[ToolCallDelta]] | Reasoning | Cited | _KeepAlive | None
"""What a stream parser makes of one frame: text, (text, tool-call fragments), ``Reasoning``,
``Refusal``, ``Cited``, ``KEEPALIVE``, or None for nothing to show. A parser that keeps reasoning blocks to
send back has them in its ``reasoning_blocks`` attribute when the stream ends; one that saw a
refusal has it in ``refusal``."""


class StreamParser(Protocol):
    """A vendor's reading of one stream, frame by frame (a small state object per stream).

    ``feed`` gets each decoded frame (an SSE event, or one JSON line's value) and returns its
    ``Delta``; it raises ``ErrorEvent`` for an error the vendor reports inside the stream and may
    raise ``ValueError``/``KeyError``/``TypeError`` for a frame of the wrong shape (a
    ``StreamError`` then). It sets ``done`` when the vendor's terminator arrives. ``final()`` says
    how the answer ended once ``done``: (finish reason, usage). A parser may also keep the
    answer's ``response_id``, ``reasoning_blocks`` and ``refusal`` for the last chunk.
    """

    done: bool
    model: str  # the model the stream reports

    def feed(self, frame: Any) -> Delta: ...

    def final(self) -> tuple[FinishReason | None, Usage | None]: ...


class ErrorEvent(Exception):
    """Raised by a vendor's parser for an error object where an answer should be (inside a 200
    stream, or as a 200 body); the provider turns it into the classified error."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__("error event")
        self.data = data


def token_count(fields: Mapping[str, Any], name: str) -> int:
    """A usage field: a whole number >= 0, or 0 when absent or null. Anything else (text, a
    float, a bool, a negative number) raises ValueError naming the field: a count that is not
    one is a wrong answer, not a number to guess."""
    value = fields.get(name)
    if value is None:
        return 0
    if value.__class__ is not int or value < 0:
        raise ValueError(f"usage field {name!r} is {str(value)[:60]!r}, not a token count")
    return value


def optional_count(fields: Any, name: str) -> int | None:
    """``token_count`` for a field that may be absent (None), in an object that may be absent."""
    if fields is None or (isinstance(fields, Mapping) and fields.get(name) is None):
        return None
    if not isinstance(fields, Mapping):
        raise ValueError(f"usage details holding {name!r} are {type(fields).__name__}, not an object")
    return token_count(fields, name)


def text_of(value: Any, name: str) -> str:
    """A text field: a string, or "" when absent or null; anything else raises ValueError."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} is {type(value).__name__}, not text")
    return value


# How the vendors and the servers that speak their APIs say a prompt does not fit the model's
# window when no error code says so: Anthropic ("prompt is too long: 208656 tokens > 200000
# maximum", "input length and `max_tokens` exceed context limit"), OpenAI and vLLM ("This model's
# maximum context length is 8192 tokens"), llama.cpp ("exceeds the available context size"),
# Ollama ("the input length exceeds the context length").
_TOO_LONG = re.compile(
    r"prompt is too long|exceed(?:s|ed)? (?:the )?(?:available )?context (?:limit|size|length|window)"
    r"|maximum context length|context length exceeded|context window exceeded", re.IGNORECASE)


def too_long_class(cls: type[APIError], message: str | None) -> type[APIError]:
    """``ContextLengthExceededError`` for a bad request whose message says the prompt is too
    long for the model (a pool may then fail over to a larger window); ``cls`` otherwise."""
    if message and issubclass(ContextLengthExceededError, cls) and _TOO_LONG.search(message):
        return ContextLengthExceededError
    return cls


def _media_type(headers: Mapping[str, str]) -> str:
    """The media type of a response's Content-Type, lower case, without parameters."""
    return (headers.get("content-type") or "").partition(";")[0].strip().lower()


def id_of(data: Mapping[str, Any]) -> str | None:
    """An answer's ``id`` (``GenerationResult.response_id``): a non-empty string, else None (a
    compatible server may leave it out or send something else; it is informative, not checked)."""
    value = data.get("id")
    return value if isinstance(value, str) and value else None


def finish_with_tools(reported: FinishReason | None, delivered_tool_calls: bool) -> FinishReason | None:
    """The vendor's finish reason, except that an answer which delivered tool calls and reported
    no reason, or ``stop``, finished with ``tool_calls``: OpenRouter and other compatible servers
    end such streams with ``[DONE]`` alone, and a caller checking for ``tool_calls`` must not
    skip the calls."""
    if delivered_tool_calls and reported in (None, "stop"):
        return "tool_calls"
    return reported

logger = logging.getLogger("mirror_providers.providers")

_shared_lock = threading.Lock()
_shared_transport: RequestsTransport | None = None

DEFAULT_DEADLINE_S = 900.0  # a plain call's total bound when neither it nor its provider sets one

_LOOPBACK = ("localhost", "127.0.0.1", "::1", "0.0.0.0")

_FRAMINGS: dict[str, Callable[[Iterator[bytes], int | None], Iterator[Any]]] = {
    "sse": iter_sse, "ndjson": iter_json_lines}


def _reset_in_child() -> None:
    global _shared_lock
    _shared_lock = threading.Lock()  # another thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)


class _Secret:
    """Holds a credential; its repr and str never show it (debuggers, ``vars()``, crash reporters)."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None) -> None:
        self._value = value

    def get(self) -> str | None:
        return self._value

    def __repr__(self) -> str:
        return "Secret([secure])" if self._value else "Secret(None)"

    __str__ = __repr__


# RFC 9110 §5.6.2: a header name is a token.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _bad_text(value: str) -> bool:
    """Text a header cannot carry: control characters (CR/LF would split the header) or non-Latin-1."""
    return any(ord(c) < 32 and c != "\t" or ord(c) == 127 or ord(c) > 255 for c in value)


def check_credential(value: Any, name: str, provider: str) -> None:
    """A key or token: text of printable ASCII without spaces (an empty one means none)."""
    if not isinstance(value, str) or any(not 33 <= ord(c) <= 126 for c in value):
        shown = type(value).__name__ if not isinstance(value, str) else "text with spaces or control characters"
        raise ConfigurationError(f"{name} must be printable text without spaces, got {shown}", provider=provider)


def check_header_value(value: Any, name: str, provider: str) -> None:
    """None, or text a header can carry (no line breaks or control characters)."""
    if value is not None and (not isinstance(value, str) or _bad_text(value)):
        shown = repr(value) if not isinstance(value, str) else "text with control characters"
        raise ConfigurationError(f"{name} must be text without line breaks or control characters, got {shown}",
                                 provider=provider)


def _check_timeout_setting(timeout: Any, provider: str) -> None:
    try:
        if isinstance(timeout, Timeout):
            check_timeout(timeout.connect, "timeout.connect")
            check_timeout(timeout.read, "timeout.read")
        elif timeout is not None:
            check_timeout(timeout)
    except ValidationError as exc:
        raise ConfigurationError(f"{exc.message} (or give a Timeout(connect=..., read=...))",
                                 provider=provider) from None


def _check_settings(provider: str, model: Any, timeout: Any, max_retries: Any, retry: Any, transport: Any,
                    headers: Any) -> None:
    """The shared constructor arguments, checked before anything uses them; ConfigurationError names each."""
    if model is not None and not isinstance(model, str):
        raise ConfigurationError(f"model must be a non-empty string, got {model!r}", provider=provider)
    _check_timeout_setting(timeout, provider)
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError(f"max_retries must be an integer >= 0, got {max_retries!r}", provider=provider)
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}", provider=provider)
    if transport is not None and not (callable(getattr(transport, "send", None))
                                      and callable(getattr(transport, "open_stream", None))):
        raise ConfigurationError(f"transport must be a Transport (with send and open_stream), got "
                                 f"{type(transport).__name__}", provider=provider)
    if headers is None:
        return
    if not isinstance(headers, Mapping):
        raise ConfigurationError(f"headers must be a dict of text to text, got {type(headers).__name__}",
                                 provider=provider)
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigurationError(f"headers: {name!r} is not a valid header name", provider=provider)
        check_header_value(value, f"headers[{name!r}]", provider)
        if value is None:
            raise ConfigurationError(f"headers[{name!r}] must be text, got None", provider=provider)


def _check_base_url(url: str, provider: str) -> None:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError as exc:
        raise ConfigurationError(f"base_url {redact_url(url)!r}: {exc}", provider=provider) from None
    if not parts.hostname or any(c.isspace() or ord(c) < 32 for c in url):
        raise ConfigurationError(f"base_url must be an http(s) URL with a host and no spaces, got "
                                 f"{redact_url(url)!r}", provider=provider)


def default_transport() -> RequestsTransport:
    """The process-wide transport every provider uses unless given its own."""
    global _shared_transport
    with _shared_lock:
        if _shared_transport is None or _shared_transport._closed:
            # Sized for the thread pool, so awaited and batched calls never overflow it.
            _shared_transport = RequestsTransport(pool_size=max(DEFAULT_POOL_SIZE, thread_pool_size()))
        return _shared_transport


def _hook_url(url: str) -> str:
    """A URL for hooks: no user info, no query (a key may ride in one under any name)."""
    return redact_url(url.split("?", 1)[0].split("#", 1)[0])


def _find_in(table: Sequence[ModelInfo], name: str) -> ModelInfo | None:
    for info in table:
        if name in info.names():
            return info
    return None


class ClientSettings(TypedDict, total=False):
    """The constructor arguments every vendor client takes (``HttpProvider``'s), for the vendors'
    own constructors to pass on: ``**settings: Unpack[ClientSettings]``."""

    api_key: str | None
    base_url: str | None
    timeout: None | float | Timeout
    max_retries: int
    retry: RetryPolicy | None
    transport: Transport | None
    headers: Mapping[str, str] | None
    verify: bool | str
    deadline_s: float | None
    limits: Limits | None
    drop_params: bool
    embedding_model: str | None


def _spelled_out(init: Callable[..., None], base: Callable[..., None]) -> inspect.Signature:
    """``init``'s signature with the ``**settings`` it passes on to ``base`` written out, so that
    ``help()`` and ``inspect.signature`` show every argument (``api_key``, ``base_url``...)."""
    own = inspect.signature(init)
    params = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
    names = {p.name for p in params}
    params += [p for p in inspect.signature(base).parameters.values()
               if p.kind is p.KEYWORD_ONLY and p.name not in names]
    return own.replace(parameters=params)


class HttpProvider(Provider):
    """Base of the vendor clients.

    Args:
        model: model id or alias; the class's ``DEFAULT_MODEL`` when None.
        api_key: the key; read from the class's ``API_KEY_ENV`` when None.
        base_url: the API root; read from ``BASE_URL_ENV``, else ``DEFAULT_BASE_URL``.
        timeout: seconds (read timeout) or a ``Timeout``; defaults to 5 s connect, 600 s read.
        max_retries: retries of connection errors and retryable statuses (0 disables).
        retry: a full ``RetryPolicy`` (overrides ``max_retries``).
        transport: the transport to use (tests pass a ``MockTransport``); not closed by
            ``close()``. Defaults to one ``RequestsTransport`` shared by all providers.
        headers: extra headers sent with every request.
        verify: TLS verification (True, or a CA bundle path). ``False`` must be explicit.
        deadline_s: the most one call may take in all: connecting, waiting, retries and their
            back-off sleeps, reading the answer (a stream's too). None: plain calls get
            ``DEFAULT_DEADLINE_S``; a stream is bounded by its timeouts, where keep-alive comments
            and pings do not count as data. A call's own ``deadline_s`` overrides it.
        limits: size limits on answers (``transport.Limits``); the defaults hold no more than
            64 MiB of one body and 16 MiB of one stream event.
        drop_params: options the model refuses (per its catalog row: ``temperature`` on a model
            that rejects it...) are dropped with a ``ParameterDroppedWarning`` instead of
            refused with a ``ValidationError``.
        embedding_model: the model ``embed_sync`` uses when a call names none (default: the
            class's ``DEFAULT_EMBEDDING_MODEL``); ``model`` is the chat model, never used for it.

    Every argument is checked here: a wrong type or value (a timeout that is not a finite positive
    number of seconds, ``max_retries=-1``, a header with a line break...) raises
    ``ConfigurationError`` naming it, before any request could be sent.
    """

    _READS_ON_LOOP: ClassVar[bool] = True  # async streams read on the event loop where the body allows (_wait)
    DEFAULT_BASE_URL: ClassVar[str] = ""
    BASE_URL_RULE: ClassVar[str] = "use the base URL the vendor documents"  # said when a URL answers 404
    DEFAULT_MODEL: ClassVar[str] = ""
    API_KEY_ENV: ClassVar[str | None] = None
    BASE_URL_ENV: ClassVar[str | None] = None
    OTHER_ENV: ClassVar[tuple[str, ...]] = ()  # further environment variables the constructor reads
    CONFIGURED_BY: ClassVar[tuple[str, ...] | None] = None  # None: API_KEY_ENV and BASE_URL_ENV
    REQUEST_ID_HEADER: ClassVar[str | None] = None
    VENDOR_HOST: ClassVar[str | None] = None  # the vendor's own API host: a retired model is refused there
    CONNECT_HINT: ClassVar[str] = ""  # appended to "cannot connect" errors; may use {base_url}
    SUPPORTS_STREAMING: ClassVar[bool] = True
    TOOL_RESULTS_NEED_IDS: ClassVar[bool] = True  # False: the vendor pairs tool results by order
    # True: a model without native structured output is asked for schema= another way (Anthropic
    # forces a tool); False: such a model refuses schema= before sending.
    STRUCTURED_FALLBACK: ClassVar[bool] = False
    MODELS: ClassVar[tuple[ModelInfo, ...]] = ()
    UNKNOWN_MODEL: ClassVar[ModelInfo] = ModelInfo(
        id="", context_window=8192, max_output=4096, vision=False, tools=False, tier=Tier.BALANCED
    )
    # Body fields the vendor's payload builder sets itself -> what to use instead. ``extra`` may
    # not set them: it would silently override what the library built (``stream``...).
    OWNED_FIELDS: ClassVar[Mapping[str, str]] = {}
    # Body fields that ask for reasoning the vendor's way: ``extra`` may carry them, but not
    # together with ``reasoning=`` (which would be two answers to one question).
    REASONING_FIELDS: ClassVar[tuple[str, ...]] = ()
    # Body fields that ask for structured output the vendor's way: not together with ``schema=``.
    # A dotted name is a field inside one (``output_config.format``).
    SCHEMA_FIELDS: ClassVar[tuple[str, ...]] = ()
    # The wire: where a chat call goes, how its stream is framed ("sse" or "ndjson"), what its
    # terminator is called in errors, and the status each of the vendor's error codes and types
    # comes with (for an error reported where an answer should be, which has no status of its own).
    CHAT_PATH: ClassVar[str] = ""
    FRAMING: ClassVar[str] = "sse"
    STREAM_END: ClassVar[str] = "its end event"
    ERROR_STATUSES: ClassVar[Mapping[str, int]] = {}
    # Embeddings: where they are asked for ("" for a vendor without them), the model used when
    # neither the call nor the constructor names one, the most texts one request may carry, and
    # the body fields the payload builder sets itself (``extra`` may not set them).
    EMBED_PATH: ClassVar[str] = ""
    DEFAULT_EMBEDDING_MODEL: ClassVar[str] = ""
    MAX_EMBED_BATCH: ClassVar[int] = MAX_BATCH_SIZE
    EMBED_BATCH_SIZE: ClassVar[int] = DEFAULT_BATCH_SIZE
    EMBED_FIELDS: ClassVar[tuple[str, ...]] = ("model", "input", "dimensions")
    NO_EMBEDDINGS: ClassVar[str] = ""  # why a vendor without embeddings has none, and what to use

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and any(p.kind is p.VAR_KEYWORD for p in inspect.signature(init).parameters.values()):
            base = next(k.__dict__["__init__"] for k in cls.__mro__[1:] if "__init__" in k.__dict__)
            init.__signature__ = _spelled_out(init, base)

    def __init__(
        self,
        model: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: None | float | Timeout = None,
        max_retries: int = 2,
        retry: RetryPolicy | None = None,
        transport: Transport | None = None,
        headers: Mapping[str, str] | None = None,
        verify: bool | str = True,
        deadline_s: float | None = None,
        limits: Limits | None = None,
        drop_params: bool = False,
        embedding_model: str | None = None,
    ) -> None:
        super().__init__()
        _check_settings(self.provider_id, model, timeout, max_retries, retry, transport, headers)
        if embedding_model is not None and (not isinstance(embedding_model, str) or not embedding_model.strip()):
            raise ConfigurationError(f"embedding_model must be a non-empty string, got {embedding_model!r}",
                                     provider=self.provider_id)
        self.embedding_model = embedding_model or self.DEFAULT_EMBEDDING_MODEL or None
        if not isinstance(drop_params, bool):
            raise ConfigurationError(f"drop_params must be True or False, got {drop_params!r}",
                                     provider=self.provider_id)
        self.drop_params = drop_params
        self.deadline_s = self._checked_deadline(deadline_s)
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigurationError(f"limits must be a transport.Limits, got {type(limits).__name__}",
                                     provider=self.provider_id)
        self.limits = limits or DEFAULT_LIMITS
        self._table: tuple[ModelInfo, ...] = self.MODELS  # the catalog, refreshed from the vendor if asked
        self._model_info, self._model = self._resolve_model(model)
        self._key = _Secret(self._key_from(api_key))
        url, userinfo = split_userinfo(self._url_from(base_url))  # no URL shown from here on carries a password
        self.base_url = self._normalise_base_url(url)
        _check_base_url(self.base_url, self.provider_id)
        self.timeout = Timeout.coerce(timeout, DEFAULT_TIMEOUT)
        self._use_transport(transport, verify)
        self._use_cached_models()
        self.retry = retry or RetryPolicy(max_retries=max_retries)
        self._extra_headers = dict(headers or {})
        self._basic = _Secret(None)
        self._check_key()
        if userinfo is not None:
            self._use_basic_auth(*userinfo)

    # -- construction steps, in the order __init__ takes them ---------------------------------

    def _checked_deadline(self, deadline_s: float | None) -> float | None:
        if deadline_s is not None:
            try:
                check_timeout(deadline_s, "deadline_s")
            except ValidationError as exc:
                raise ConfigurationError(exc.message, provider=self.provider_id) from None
        return deadline_s

    def _resolve_model(self, model: str | None) -> tuple[ModelInfo | None, str]:
        """The catalog row (None for a model the catalog does not know) and the id to send: the
        row's id for an alias, the name as given for a dated snapshot or an unknown model."""
        requested = model or self.DEFAULT_MODEL
        if not isinstance(requested, str) or not requested.strip():
            raise ConfigurationError(f"model must be a non-empty string, got {model!r}",
                                     provider=self.provider_id)
        info = self._find(requested)
        if info is None:
            return None, requested
        day = model_data.today()
        if info.status(day) == "deprecated":
            model_data.warn_deprecated(self.provider_id, info, self._table, day, stacklevel=4)
        return info, requested if requested in info.snapshots else info.id

    def _key_from(self, api_key: str | None) -> str | None:
        """The key given, else the environment's; checked, so a bad one is refused here."""
        env_key = os.environ.get(self.API_KEY_ENV) if self.API_KEY_ENV else None
        key = api_key if api_key is not None else (env_key or None)
        if key is not None:
            check_credential(key, "api_key" if api_key is not None else str(self.API_KEY_ENV), self.provider_id)
        return key

    def _url_from(self, base_url: str | None) -> str:
        env_url = os.environ.get(self.BASE_URL_ENV) if self.BASE_URL_ENV else None
        url = base_url or env_url or self.DEFAULT_BASE_URL
        if not isinstance(url, str):
            raise ConfigurationError(f"base_url must be text, got {type(url).__name__}", provider=self.provider_id)
        return url

    def _use_transport(self, transport: Transport | None, verify: bool | str) -> None:
        """The caller's transport, a private one for a non-default ``verify``, or the shared one."""
        if not (verify is True or verify is False or (isinstance(verify, str) and os.path.isfile(verify))):
            raise ConfigurationError(f"verify must be True, False or the path of a CA bundle file, got {verify!r}",
                                     provider=self.provider_id)
        if verify is not True and transport is not None:
            raise ConfigurationError("give verify to the transport you pass, not to the provider",
                                     provider=self.provider_id)
        if verify is False:
            logger.warning("TLS certificate verification is OFF for %s at %s", self.provider_id, self.base_url)
        self._owns_transport = transport is None and verify is not True
        self.transport: Transport = transport or (
            RequestsTransport(verify=verify) if verify is not True else default_transport())
        # On the shared transport, close() releases this provider's hold on its host's connections.
        self._shares_transport = transport is None and verify is True
        self._retained = False
        self._retain()

    # -- identity ---------------------------------------------------------------------------

    @classmethod
    def environment_variables(cls) -> tuple[str, ...]:
        """Every environment variable the constructor reads."""
        return tuple(v for v in (cls.API_KEY_ENV, cls.BASE_URL_ENV, *cls.OTHER_ENV) if v)

    @classmethod
    def is_configured(cls) -> bool:
        """Whether the environment sets this provider up (a key, or a server to talk to)."""
        names = cls.CONFIGURED_BY if cls.CONFIGURED_BY is not None else (cls.API_KEY_ENV, cls.BASE_URL_ENV)
        return any(os.environ.get(name) for name in names if name)

    @classmethod
    def catalog_name(cls, name: str) -> str:
        """The name a model is looked up by in the catalog (Ollama drops ``:latest``)."""
        return name

    @classmethod
    def find_model(cls, name: str) -> ModelInfo | None:
        """The shipped catalog's row for a model id, alias or snapshot, or None for an unknown model."""
        return _find_in(cls.MODELS, cls.catalog_name(name))

    def _find(self, name: str) -> ModelInfo | None:
        """This provider's catalog row for a name (the shipped one, or the refreshed one)."""
        return _find_in(self._table, self.catalog_name(name))

    @property
    def models(self) -> tuple[ModelInfo, ...]:
        """This provider's model catalog: the shipped rows, with what the vendor's models endpoint
        said merged over them once ``refresh_models_sync`` ran (here or, cached, in an earlier process)."""
        return self._table

    def refresh_models_sync(self, max_age_s: float = 0.0) -> ModelCatalog:
        """Read the vendor's models endpoint and merge what it says over the shipped catalog:
        lifecycle dates, limits and capabilities the vendor reports win, the rest is kept, and a
        model the catalog does not know gets this provider's conservative defaults. The listing is
        cached on disk (see :mod:`mirror_providers.live_models`), so later providers for this server,
        in this process or another, start from it.

        Args:
            max_age_s: use the cached listing when it is at most this old (0: always ask the vendor).

        Raises:
            ValidationError: ``max_age_s`` is not a number >= 0.
            ProviderError: the models endpoint failed (typed as any call's errors).
        """
        if isinstance(max_age_s, bool) or not isinstance(max_age_s, (int, float)) or not max_age_s >= 0:
            raise ValidationError(f"max_age_s must be a number of seconds >= 0, got {max_age_s!r}",
                                  provider=self.provider_id)
        now = time.time()
        cached = live_models.read_cache(self.provider_id, self.base_url) if max_age_s > 0 else None
        source: Literal["vendor", "cache"] = "cache"
        if cached is not None and now - cached[0] <= max_age_s:
            fetched_at, rows = cached[0], list(cached[1])
        else:
            rows, fetched_at, source = self._live_models_sync(), now, "vendor"
            try:
                live_models.write_cache(self.provider_id, self.base_url, rows, fetched_at)
            except OSError as exc:
                logger.warning("could not cache the %s model listing in %s: %s", self.provider_id,
                               live_models.cache_dir(), exc.strerror or type(exc).__name__)
        self._use_live(rows)
        listed = tuple(self.catalog_name(r["id"]) for r in rows if isinstance(r.get("id"), str) and r["id"])
        return ModelCatalog(models=self._table, listed=listed, fetched_at=fetched_at, source=source)

    def _live_models_sync(self) -> list[dict[str, Any]]:
        """The vendor's models endpoint as live rows (``{"id": ..., ModelInfo field: value}``).
        Each vendor reads its own; one without a models endpoint says so."""
        raise ConfigurationError(f"{type(self).__name__} has no models endpoint to refresh from",
                                 provider=self.provider_id)

    def _use_live(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self._use_table(live_models.merge_live(self.MODELS, rows, self.UNKNOWN_MODEL, self.provider_id,
                                               self.catalog_name))

    def _use_cached_models(self) -> None:
        """At construction: the listing an earlier ``refresh_models_sync`` cached for this server."""
        table = live_models.merged_cache(self.provider_id, self.base_url, self.MODELS, self.UNKNOWN_MODEL,
                                         self.catalog_name)
        if table is not None:
            self._use_table(table)

    def _use_table(self, table: tuple[ModelInfo, ...]) -> None:
        """Make ``table`` this provider's catalog, and its row for the model the one in use."""
        self._table = table
        self._model_info = self._for_wire(self._find(self._model))

    def _for_wire(self, info: ModelInfo | None) -> ModelInfo | None:
        """The catalog row as the wire this provider speaks sees the model (OpenAI has two)."""
        return info

    @property
    def on_vendor_host(self) -> bool:
        """True when the base URL is the vendor's own API (not a compatible server or a proxy)."""
        return self.VENDOR_HOST is not None and urlsplit(self.base_url).hostname == self.VENDOR_HOST

    def retired_error(self) -> ModelRetiredError | None:
        """The error a call to this model raises because the vendor shut it down, or None.

        Only on the vendor's own host: a proxy or compatible server may still serve the name.
        """
        info = self._model_info
        if info is None or not self.on_vendor_host:
            return None
        day = model_data.today()
        if info.status(day) != "retired":
            return None
        repl = model_data.replacement_for(info, self._table, day)
        when = f" on {info.retires_on}" if info.retires_on else ""
        use = f"; use {repl}, its named replacement" if repl else "; the vendor named no replacement"
        return ModelRetiredError(f"{self._model} was shut down by {self.provider_id}{when}{use}",
                                 provider=self.provider_id, model=self._model, retired_on=info.retires_on,
                                 replacement=repl)

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def model_info(self) -> ModelInfo | None:
        """The catalog row of this model, or None when the catalog does not know it."""
        return self._model_info

    @property
    def capabilities(self) -> Capabilities:
        info = self._model_info
        if info is None:
            tier = Tier.LOCAL if self.is_local else self.UNKNOWN_MODEL.tier
            info = ModelInfo(id=self._model, context_window=self.UNKNOWN_MODEL.context_window,
                             max_output=self.UNKNOWN_MODEL.max_output, vision=self.UNKNOWN_MODEL.vision,
                             tools=self.UNKNOWN_MODEL.tools, tier=tier,
                             structured_output=self.UNKNOWN_MODEL.structured_output)
        caps = info.capabilities(streaming=self.SUPPORTS_STREAMING)
        if self.STRUCTURED_FALLBACK and not caps.supports_structured_output:
            caps = dataclasses.replace(caps, supports_structured_output=True)
        if self.EMBED_PATH:
            caps = dataclasses.replace(caps, supports_embeddings=True)
        return caps

    @property
    def origin(self) -> str:
        """``scheme://host:port`` of the base URL (no credentials, no path): the server that made
        what this provider reads (see ``ReasoningBlock.origin``)."""
        parts = urlsplit(self.base_url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{(parts.hostname or '').lower()}{port}"

    @property
    def is_local(self) -> bool:
        """True when the base URL points at this machine."""
        return (urlsplit(self.base_url).hostname or "") in _LOOPBACK

    @property
    def _api_key(self) -> str | None:
        return self._key.get()

    @property
    def identity(self) -> str:
        return f"{self.provider_id}:{self.model_name}@{redact_url(self.base_url)}"

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(provider={self.provider_id!r}, model={self._model!r}, "
                f"base_url={self.base_url!r})")

    def close(self) -> None:
        """Release the connections this provider opened: its own transport's all, or on the
        shared transport its host's, once no other open provider calls that host. The provider
        stays usable; a later call opens a new connection (and holds it until the next close)."""
        if self._owns_transport:
            self.transport.close()
        elif self._retained:
            self._retained = False
            assert isinstance(self.transport, RequestsTransport)
            self.transport.release(self.base_url)

    def _retain(self) -> None:
        if self._shares_transport and not self._retained:
            assert isinstance(self.transport, RequestsTransport)
            self.transport.retain(self.base_url)
            self._retained = True

    # -- what a vendor implements -----------------------------------------------------------

    def _build_payload(self, request: GenerateRequest, stream: bool) -> dict[str, Any]:
        """The request -> the vendor's JSON body for ``CHAT_PATH``."""
        raise NotImplementedError

    def _parse_result(self, data: Any) -> GenerationResult:
        """A 2xx body -> the result (its ``provider``, ``latency_s`` and ``request_id`` are set by
        the base). May raise ``ErrorEvent``, or a ``SHAPE_ERRORS`` class for a body of the wrong shape."""
        raise NotImplementedError

    def _build_embed_payload(self, model: str, texts: Sequence[str], request: EmbedRequest) -> dict[str, Any]:
        """One batch of texts -> the vendor's JSON body for ``EMBED_PATH``."""
        raise NotImplementedError

    def _parse_embeddings(self, data: Any) -> tuple[list[tuple[float, ...]], Usage | None, str | None]:
        """A 2xx embeddings body -> (the vectors in input order, usage, the model it names). May
        raise ``ErrorEvent``, or a ``SHAPE_ERRORS`` class for a body of the wrong shape."""
        raise NotImplementedError

    def _stream_parser(self) -> StreamParser:
        """A fresh ``StreamParser`` for one stream."""
        raise NotImplementedError

    # -- hooks a vendor may override ---------------------------------------------------------

    def _check_key(self) -> None:
        """Raise ConfigurationError when a key is required and missing."""

    def _auth_headers(self) -> dict[str, str]:
        return {}

    def _normalise_base_url(self, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must start with http:// or https://, got {redact_url(url)!r}",
                                     provider=self.provider_id)
        return url.rstrip("/")

    def _error_details(self, body: Any) -> tuple[str | None, str | None, str | None]:
        """Vendor error JSON -> (message, error type, error code).

        Reads the common envelopes: ``{"error": "text"}`` (Ollama), ``{"error": {"message", "type",
        ...}}`` (OpenAI, Anthropic, llama.cpp) and the same fields at the top level (vLLM).
        """
        if not isinstance(body, dict):
            return None, None, None
        err = body.get("error", body)
        if isinstance(err, str):
            return err, None, None
        if not isinstance(err, dict):
            return None, None, None
        message, kind = err.get("message"), err.get("type")
        try:
            code = self._error_code(err)
        except SHAPE_ERRORS:
            code = None
        # Fields of another shape than the documented text are left out, not guessed at.
        return (message if isinstance(message, str) and message else None,
                kind if isinstance(kind, str) and kind else None,
                code if isinstance(code, str) and len(code) <= 200 else None)

    def _error_code(self, err: Mapping[str, Any]) -> str | None:
        """Where the vendor keeps its error code inside the error object."""
        code = err.get("code")
        return str(code) if isinstance(code, (str, int)) and not isinstance(code, bool) else None

    def _refine_error_class(self, cls: type[APIError], status: int, error_type: str | None,
                            error_code: str | None, is_json: bool) -> type[APIError]:
        """Adjust the status-table class with the vendor's own error types and codes."""
        return cls

    def _check(self, request: GenerateRequest) -> None:
        retired = self.retired_error()
        if retired is not None:
            raise retired
        for key in request.extra:
            if key in self.OWNED_FIELDS:
                raise self._owned(key, f"extra[{key!r}]")
            if key in self.REASONING_FIELDS and request.reasoning is not None:
                raise ValidationError(f"reasoning={request.reasoning!r} and extra[{key!r}] both ask for reasoning: "
                                      f"give one", provider=self.provider_id, model=self._model)
        self._check_schema_fields(request, self.SCHEMA_FIELDS)
        if self.TOOL_RESULTS_NEED_IDS:
            for i, m in enumerate(request.messages):
                if m.role == "tool" and not m.tool_call_id:
                    raise ValidationError(f"messages[{i}] has role 'tool' but no tool_call_id ({self.provider_id} "
                                          f"pairs each result with its call by id)", provider=self.provider_id,
                                          model=self._model)
        info = self._model_info
        if info is not None:
            self._check_for_model(request, info)

    def _check_schema_fields(self, request: GenerateRequest, fields: Sequence[str]) -> None:
        """``schema=`` and one of ``fields`` in ``extra`` (dotted: nested) would ask twice."""
        if request.schema is None:
            return
        for dotted in fields:
            *outer, last = dotted.split(".")
            node: Any = request.extra
            for name in outer:
                node = node.get(name) if isinstance(node, Mapping) else None
            if isinstance(node, Mapping) and last in node:  # present at all: even null would override ours
                where = "".join(f"[{name!r}]" for name in dotted.split("."))
                raise ValidationError(f"schema= and extra{where} both ask for structured output: give one",
                                      provider=self.provider_id, model=self._model)

    def _check_for_model(self, request: GenerateRequest, info: ModelInfo) -> None:
        """What the catalog row says this model refuses, refused before sending."""
        if request.max_tokens is not None and request.max_tokens > info.max_output:
            raise ValidationError(f"max_tokens={request.max_tokens} exceeds {info.id}'s output limit "
                                  f"of {info.max_output}", provider=self.provider_id, model=self._model)
        parted = request.with_parts()
        if not info.vision and any(m.images for m in parted):
            raise ValidationError(f"{info.id} does not accept images", provider=self.provider_id,
                                  model=self._model)
        if not info.documents and any(p.media_type == "application/pdf" for m in parted for p in m.documents):
            raise ValidationError(f"{info.id} does not read PDF documents", provider=self.provider_id,
                                  model=self._model)
        if not info.tools and request.tools:
            raise ValidationError(f"{info.id} does not support tools", provider=self.provider_id,
                                  model=self._model)
        if request.schema is not None and not info.structured_output and not self.STRUCTURED_FALLBACK:
            raise ValidationError(f"{info.id} does not support structured output (schema=); use a newer model",
                                  provider=self.provider_id, model=self._model)
        # A token is at least one character for these tokenizers' worst case of about 4 bytes of
        # text per token on average: only a prompt that cannot fit is rejected here.
        if request.text_length() > info.context_window * 8 and not counting_tokens.get():
            raise ValidationError(
                f"prompt of {request.text_length()} characters cannot fit {info.id}'s context window "
                f"of {info.context_window} tokens", provider=self.provider_id, model=self._model)
        for conflict in model_rules.conflicts(info, model_rules.fit(info, request)):
            if not (self.drop_params and conflict.droppable):
                hint = " (or make the provider with drop_params=True to drop it)" if conflict.droppable else ""
                raise ValidationError(conflict.reason + hint, provider=self.provider_id, model=self._model)

    def _fitted(self, request: GenerateRequest) -> GenerateRequest:
        """The request as this model takes it (see ``model_rules``): reasoning turned off where an
        option needs it, and with ``drop_params`` the refused options dropped."""
        info = self._model_info
        if info is None:
            return request
        request = model_rules.fit(info, request)
        if self.drop_params:
            found = model_rules.conflicts(info, request)
            if found:
                request = model_rules.drop(request, found, self._model)
        return request

    def _owned(self, key: str, where: str) -> ValidationError:
        return ValidationError(f"{where} would override the {key!r} field the library builds itself; "
                               f"{self.OWNED_FIELDS[key]}", provider=self.provider_id, model=self._model)

    # -- sending ----------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        headers.update(self._auth_headers())
        basic = self._basic.get()
        if basic:
            headers["Authorization"] = basic
        headers.update(self._extra_headers)
        return headers

    def _use_basic_auth(self, user: str, password: str) -> None:
        """``user:password@`` in the base URL: sent as HTTP Basic auth (a reverse proxy in front of
        a server, say), unless the provider already authenticates with ``Authorization``."""
        where = redact_url(f"{urlsplit(self.base_url).scheme}://x@{urlsplit(self.base_url).netloc}")
        if any(name.lower() == "authorization" for name in (*self._auth_headers(), *self._extra_headers)):
            raise ConfigurationError(
                f"base_url carries credentials ({where}) and {self.provider_id} already sends an Authorization "
                f"header (its key or headers=): give one or the other", provider=self.provider_id)
        if any(not 32 <= ord(c) <= 126 for c in user + password) or ":" in user:
            raise ConfigurationError(f"the credentials in base_url ({where}) must be printable ASCII (percent-"
                                     f"encode the rest) with no ':' in the user name", provider=self.provider_id)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._basic = _Secret(f"Basic {token}")
        self._userinfo = _Secret(password), _Secret(token)

    def _prepare(self, request: HttpRequest) -> HttpRequest:
        """Sees each outgoing request whole, before each attempt, and returns the one to send: a
        vendor whose API signs requests (over method, URL, headers, body and the time) signs here."""
        return request

    def _request(self, method: str, path: str, payload: Mapping[str, Any] | None,
                 timeout: float | None, deadline: float | None, url: str | None = None) -> HttpRequest:
        if not self._retained:
            self._retain()  # used again after close()
        body = json.dumps(payload, separators=(",", ":")).encode() if payload is not None else None
        t = Timeout.coerce(timeout, self.timeout) if timeout is not None else self.timeout
        return HttpRequest(method, url or self._url(path), self._headers(), body, t, deadline, self.limits,
                           current_call.get(), secrets=tuple(s for s in self._secrets() if s))

    def _deadline(self, deadline_s: float | None, stream: bool) -> float | None:
        """The ``time.monotonic()`` a call starting now must end by, or None."""
        seconds = deadline_s if deadline_s is not None else self.deadline_s
        if seconds is None and not stream:
            seconds = DEFAULT_DEADLINE_S
        return None if seconds is None else time.monotonic() + seconds

    def _policy(self, max_retries: int | None) -> RetryPolicy:
        if max_retries is None or max_retries == self.retry.max_retries:
            return self.retry
        return dataclasses.replace(self.retry, max_retries=max_retries)

    # -- the call loop ----------------------------------------------------------------------

    def _exchange(self, request: HttpRequest, max_retries: int | None, stream: bool) -> Any:
        """Send ``request`` (or open it as a stream) and return the 2xx response. Every failure
        is classified first (an error status through ``_error_from_response``, an exchange that
        failed as the transport's error), then tried again only when the policy's
        ``wait_before`` says the class may succeed later; what is not retried is raised."""
        policy = self._policy(max_retries)
        transport = self.transport
        retry = 0
        while True:
            retry += 1
            began = time.perf_counter()
            told = self._hooks or hooks.global_hooks()
            if told:
                self._told_request(retry, request.url, stream)
            try:
                if stream:
                    opened = transport.open_stream(self._prepare(request))
                    on_abort(opened.abort)
                    if opened.status < 300:
                        return opened
                    status, headers, body = opened.status, opened.headers, opened.read(self.limits.max_error_body_bytes)
                else:
                    response = transport.send(self._prepare(request))
                    if response.status < 300:
                        return response
                    status, headers, body = response.status, response.headers, response.content
                error: ProviderError = self._error_from_response(status, headers, body)
                if status == 404:
                    error = self._model_or_endpoint(error, request.url)
                elif status == 501:
                    error = self._not_implemented(error, request.url)
            except ProviderError as exc:
                error = self._annotate(exc)
            wait = policy.wait_before(retry, error, request.deadline)
            if wait is None:
                raise error
            logger.info("%s: retrying in %.2fs after %s", self.provider_id, wait, type(error).__name__)
            if told:
                self._told_retry(retry, time.perf_counter() - began, stream, error, wait)
            try:
                policy.pause(wait)
            except ProviderError as exc:
                raise self._annotate(exc) from error

    def _told_request(self, attempt: int, url: str, stream: bool) -> None:
        hooks.emit(self._hooks, "on_request", lambda: self._event(
            "request", attempt=attempt, url=_hook_url(url), stream=stream))

    def _told_retry(self, attempt: int, elapsed: float, stream: bool, error: ProviderError, wait: float) -> None:
        hooks.emit(self._hooks, "on_retry", lambda: self._event(
            "retry", attempt=attempt, elapsed_s=elapsed, stream=stream, status=getattr(error, "status", None),
            request_id=getattr(error, "request_id", None), error=type(error).__name__, message=error.message,
            retry_in_s=wait))

    def _send(self, method: str, path: str, payload: Mapping[str, Any] | None = None,
              timeout: float | None = None, max_retries: int | None = None,
              deadline_s: float | None = None, url: str | None = None) -> tuple[Any, HttpResponse]:
        """Send, raise the mapped error for an error status, return (JSON body, response).
        ``url`` replaces base URL + ``path`` (an endpoint at the server's root, say)."""
        return self._send_by(method, path, payload, timeout, max_retries, self._deadline(deadline_s, stream=False),
                             url)

    def _send_by(self, method: str, path: str, payload: Mapping[str, Any] | None, timeout: float | None,
                 max_retries: int | None, deadline: float | None, url: str | None = None) -> tuple[Any, HttpResponse]:
        """``_send`` with the ``time.monotonic()`` it must end by (several requests of one call
        share one deadline)."""
        request = self._request(method, path, payload, timeout, deadline, url)
        resp: HttpResponse = self._exchange(request, max_retries, stream=False)
        return self._json(resp.content, resp.headers), resp

    def _post_for_count(self, path: str, payload: Mapping[str, Any], request: GenerateRequest,
                        url: str | None = None) -> tuple[Any, HttpResponse]:
        """POST a token-counting request with the call's timeout, retries and deadline: what
        came back (a JSON object; anything else raises InvalidResponseError) and the response."""
        data, resp = self._send("POST", path, payload, request.timeout, request.max_retries, request.deadline_s,
                                url)
        if not isinstance(data, dict):
            raise self._invalid(f"token count answer is {type(data).__name__}, not an object", resp.headers)
        return data, resp

    def _counted(self, count: Any, field: str, source: str, headers: Mapping[str, str]) -> TokenCount:
        """An exact ``TokenCount`` from a server's answer (``field`` must be a whole number >= 0)."""
        try:
            tokens = token_count({field: count}, field) if count is not None else None
        except ValueError as exc:
            raise self._invalid(f"token count answer: {exc}", headers) from None
        if tokens is None:
            raise self._invalid(f"token count answer has no {field!r}", headers)
        return TokenCount(tokens, exact=True, source=source, provider=self.provider_id, model=self._model)

    def _generate(self, request: GenerateRequest) -> GenerationResult:
        return self._answer(self.CHAT_PATH, self._build_payload(self._fitted(request), False), request)

    def _stream(self, request: GenerateRequest) -> Iterator[StreamChunk]:
        return self._stream_from(self.CHAT_PATH, self._build_payload(self._fitted(request), True), request)

    def _generate_at(self, path: str, payload: Mapping[str, Any], request: GenerateRequest) -> GenerationResult:
        """``generate_sync`` for another endpoint of the vendor's (Ollama's ``/api/generate``):
        the same call loop, result and statistics, with a payload the vendor built."""
        return self._recorded(lambda: self._answer(path, payload, request), request)

    def _stream_at(self, path: str, payload: Mapping[str, Any], request: GenerateRequest) -> ChunkStream:
        """``stream_sync`` for another endpoint of the vendor's."""
        return ChunkStream(self._recorded_stream(self._stream_from(path, payload, request), request))

    # -- embeddings ---------------------------------------------------------------------------

    def _embedding_model_for(self, request: EmbedRequest) -> str:
        model = request.model or self.embedding_model
        if not model:
            raise ValidationError(f"{type(self).__name__} has no default embedding model: give embed_sync(model=...) "
                                  f"or the provider embedding_model=... ({self._model} is its chat model)",
                                  provider=self.provider_id, model=self._model)
        return model

    def _check_embed(self, request: EmbedRequest) -> None:
        if not self.EMBED_PATH:
            raise ValidationError(self.NO_EMBEDDINGS or f"{self.provider_id} has no embeddings API",
                                  provider=self.provider_id, model=self._model)
        model = self._embedding_model_for(request)
        where = {"provider": self.provider_id, "model": model}
        if request.batch_size is not None and request.batch_size > self.MAX_EMBED_BATCH:
            raise ValidationError(f"batch_size={request.batch_size} exceeds the {self.MAX_EMBED_BATCH} texts "
                                  f"{self.provider_id} takes in one request", **where)
        for key in request.extra:
            if key in self.EMBED_FIELDS:
                raise ValidationError(f"extra[{key!r}] would override the {key!r} field the library builds itself; "
                                      f"use embed_sync's own arguments", **where)
        info = embedding_model(self.provider_id, model)
        if request.dimensions is not None and info is not None:
            if not info.custom_dimensions:
                raise ValidationError(f"{model} makes {info.dimensions}-dimensional vectors and takes no dimensions=",
                                      **where)
            if request.dimensions > info.dimensions:
                raise ValidationError(f"dimensions={request.dimensions} exceeds {model}'s {info.dimensions}", **where)

    def _embed(self, request: EmbedRequest) -> EmbeddingResult:
        """Send the texts in batches, one after another, under one deadline; the vectors in input
        order, the usage summed. A failed batch raises its error, saying which batch it was."""
        model = self._embedding_model_for(request)
        deadline = self._deadline(request.deadline_s, stream=False)
        start = time.perf_counter()
        batches = request.batches(self.EMBED_BATCH_SIZE)
        vectors: list[tuple[float, ...]] = []
        usages: list[Usage | None] = []
        reported, request_id, limits = model, None, None
        for n, (first, texts) in enumerate(batches):
            try:
                data, resp = self._send_by("POST", self.EMBED_PATH, self._build_embed_payload(model, texts, request),
                                           request.timeout, request.max_retries, deadline)
                got, usage, said = self._embeddings_of(data, len(texts), resp.headers)
            except ProviderError as exc:
                if exc.model in (None, self._model):
                    exc.model = model
                if len(batches) > 1:
                    exc.message = (f"{exc.message} (embeddings batch {n + 1} of {len(batches)}: texts {first} to "
                                   f"{first + len(texts) - 1}; the earlier batches' vectors are discarded)")
                raise
            if vectors and got and len(got[0]) != len(vectors[0]):
                raise self._invalid(f"batch {n + 1}'s vectors have {len(got[0])} dimensions, the first batch's "
                                    f"{len(vectors[0])}", resp.headers)
            vectors.extend(got)
            usages.append(usage)
            reported, request_id, limits = said or reported, self._request_id(resp.headers), parse_rate_limits(
                resp.headers)
        usage = sum_usage(usages)
        return EmbeddingResult(vectors=tuple(vectors), model=reported, provider=self.provider_id,
                               usage=usage, latency_s=time.perf_counter() - start,
                               request_id=request_id, rate_limits=limits, cost=self._embedding_cost(model, usage))

    def _embedding_cost(self, model: str, usage: Usage | None) -> Cost | None:
        """An embeddings call's cost: its input tokens at the embedding model's price."""
        row = embedding_model(self.provider_id, model)
        if row is None or row.price_input is None or usage is None:
            return None
        return Cost(input_usd=usage.input_tokens * row.price_input * 1e-6, output_usd=0.0,
                    total_usd=usage.input_tokens * row.price_input * 1e-6)

    def _embeddings_of(self, data: Any, count: int,
                       headers: Mapping[str, str]) -> tuple[list[tuple[float, ...]], Usage | None, str | None]:
        """A batch's answer read by the vendor's parser, checked: one vector per text, all of one
        length. An answer of another shape is an ``InvalidResponseError``."""
        try:
            vectors, usage, model = self._parse_embeddings(data)
        except ErrorEvent as event:
            body = json.dumps(event.data).encode()
            raise self._error_from_response(self._error_status(event.data), headers, body) from None
        except SHAPE_ERRORS as exc:
            raise self._invalid(f"embeddings answer lacks the expected fields ({type(exc).__name__}: "
                                f"{str(exc)[:200]})", headers) from exc
        if len(vectors) != count:
            raise self._invalid(f"asked for {count} embeddings, got {len(vectors)}", headers)
        if any(len(v) != len(vectors[0]) for v in vectors):
            raise self._invalid("the embeddings of one answer differ in length", headers)
        return vectors, usage, model

    def _answer(self, path: str, payload: Mapping[str, Any], request: GenerateRequest) -> GenerationResult:
        start = time.perf_counter()
        data, resp = self._send("POST", path, payload, request.timeout, request.max_retries, request.deadline_s)
        request_id = self._request_id(resp.headers)
        try:
            result = self._parse_result(data)
        except ErrorEvent as event:
            body = json.dumps(event.data).encode()
            raise self._error_from_response(self._error_status(event.data), resp.headers, body) from None
        except SHAPE_ERRORS as exc:
            raise self._invalid(f"response lacks the expected fields ({type(exc).__name__}: {str(exc)[:200]})",
                                resp.headers) from exc
        # The result is new and ours alone: its provider, timing and request id are the base's to say.
        fields = result.__dict__
        fields["provider"], fields["latency_s"], fields["request_id"] = (
            self.provider_id, time.perf_counter() - start, request_id or self._scrub_id(result.request_id))
        fields["response_id"] = self._scrub_id(result.response_id)
        fields["rate_limits"] = parse_rate_limits(resp.headers)
        fields["cost"] = self._cost(result.model, result.usage)
        if request.schema is not None and result.refusal is None:
            fields["parsed"] = self._parsed(request, result.content, result.finish_reason, request_id)
        return result

    def _parsed(self, request: GenerateRequest, text: str, finish: str | None, request_id: str | None) -> Any:
        """A ``schema=`` answer checked; a ``StructuredOutputError`` names this provider. None for
        a turn that called tools instead of answering (its text, if any, is a preamble)."""
        assert request.schema is not None
        if finish == "tool_calls":
            return None
        try:
            return request.schema.parse(text, finish)
        except StructuredOutputError as exc:
            exc.provider, exc.model, exc.request_id = self.provider_id, self._model, request_id
            raise

    def _stream_from(self, path: str, payload: Mapping[str, Any], request: GenerateRequest) -> Iterator[StreamChunk]:
        chunks = self._stream_frames(path, payload, request)
        return chunks if request.schema is None else self._with_parsed(chunks, request)

    def _with_parsed(self, chunks: Generator[StreamChunk, None, None],
                     request: GenerateRequest) -> Iterator[StreamChunk]:
        """A ``schema=`` stream: its text kept and checked whole when it ends (only then is it
        JSON); the final chunk carries ``parsed``, unless the model refused."""
        kept: list[str] = []
        refused = False
        with contextlib.closing(chunks):  # a consumer that stops early closes the stream at once
            for chunk in chunks:
                if chunk.__class__ is WouldBlock:  # type: ignore[comparison-overlap]
                    yield chunk
                    continue
                if chunk.finish_reason is None:
                    kept.append(chunk.content)
                    refused = refused or bool(chunk.refusal)
                    yield chunk
                    continue
                if not (refused or chunk.refusal):
                    parsed = self._parsed(request, "".join(kept), chunk.finish_reason, chunk.request_id)
                    chunk = dataclasses.replace(chunk, parsed=parsed)
                yield chunk

    def _unfinished(self, idle_fired: bool, idle_s: float, index: int) -> ProviderError:
        """Why a stream that ended before its terminator ended: the idle watch broke it off (a
        server that stalled on a body without a length ends "cleanly" then), or it was cut."""
        if idle_fired:
            return RequestTimeout(f"no answer data for {idle_s:g}s (the read timeout) after {index} chunks")
        return TruncatedStreamError(f"stream ended without {self._stream_end()} after {index} chunks: "
                                    f"the answer is incomplete")

    def _whole_instead_of_stream(self, stream: StreamResponse, request_id: str | None) -> ProviderError:
        """A stream request answered with one JSON document: the vendor's error, if it is one
        (a quota error sent this way must stay a quota error), else an InvalidResponseError that
        says what came instead of events."""
        raw = stream.read(self.limits.max_error_body_bytes)
        try:
            data = json.loads(raw) if not too_deep(raw) else None
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("error"):
            return self._in_stream_error(data, request_id)
        text = " ".join(self._scrub(raw.decode("utf-8", errors="replace")).split())[:200]
        return InvalidResponseError(f"asked for a stream of events, got one application/json document instead "
                                    f"(a server that ignores \"stream\"?): {text}", provider=self.provider_id,
                                    model=self._model, status=200, request_id=request_id)

    def _check_stream_head(self, stream: StreamResponse, request_id: str | None) -> None:
        if self.FRAMING == "sse" and _media_type(stream.headers) == "application/json":
            raise self._annotate(self._whole_instead_of_stream(stream, request_id), 0)

    def _stream_end(self) -> str:
        """What the stream's terminator is called in errors."""
        return self.STREAM_END

    def _stream_frames(self, path: str, payload: Mapping[str, Any],
                       request: GenerateRequest) -> Generator[StreamChunk, None, None]:
        """Open a stream and yield a chunk, numbered in order, for each frame the vendor's parser
        reads text or tool-call fragments from; then the final chunk (finish reason, usage,
        request id). Errors say how many chunks were delivered; a stream that ends before its
        terminator raises ``TruncatedStreamError``: a cut answer is never passed off as a short
        one. A stream that sends nothing but keep-alives (SSE comments, blank lines, frames the
        parser calls ``KEEPALIVE``) for the read timeout is broken off with ``RequestTimeout``,
        as a silent one would be."""
        wants_loop = _claim_loop()  # before the request: a hook's stream must not see the flag
        parser = self._stream_parser()
        http = self._request("POST", path, payload, request.timeout, self._deadline(request.deadline_s, stream=True))
        assert http.timeout is not None
        idle_s = http.timeout.read
        stream: StreamResponse = self._exchange(http, request.max_retries, stream=True)
        provider, feed, index = self.provider_id, parser.feed, 0
        with stream:
            request_id = self._request_id(stream.headers)
            limits = parse_rate_limits(stream.headers)
            self._check_stream_head(stream, request_id)
            idle = _IdleWatch(idle_s, stream.abort)
            on_loop = wants_loop and stream.nonblocking()
            try:
                for frame in _FRAMINGS[self.FRAMING](stream.pieces(), self.limits.max_event_bytes):
                    if frame.__class__ is WouldBlock:
                        yield frame  # type: ignore[misc]  # nothing to read now: the loop resumes this when there is
                        continue
                    try:
                        out = feed(frame)
                    except ErrorEvent as event:
                        raise self._in_stream_error(event.data, request_id) from None
                    except SHAPE_ERRORS as exc:
                        raise StreamError(f"stream event not understood ({type(exc).__name__}: "
                                          f"{str(exc)[:200]})") from exc
                    if out is KEEPALIVE:
                        continue
                    idle.last = time.monotonic()
                    if out:
                        if out.__class__ is str:
                            yield fast_stream_chunk(out, index, (), parser.model, provider)
                            index += 1
                        elif out.__class__ is tuple and out[0].__class__ is str:
                            if out[0] or out[1]:
                                yield fast_stream_chunk(out[0], index, tuple(out[1]), parser.model, provider)
                                index += 1
                        else:
                            yield self._reasoning_chunk(out, index, parser.model)
                            index += 1
                    if parser.done:  # the rest is the body's end: read, so the connection can be reused
                        yield from _drained(stream, on_loop)  # type: ignore[misc]
                        break
            except ProviderError as exc:
                if idle.fired and not isinstance(exc, RequestTimeout):
                    silent = RequestTimeout(f"no data but keep-alives for {idle_s:g}s (the read timeout) after "
                                            f"{index} chunks")
                    raise self._annotate(silent, index) from exc
                self._annotate(exc, index)
                raise
            finally:
                idle.stop()
        if not parser.done:
            raise self._annotate(self._unfinished(idle.fired, idle_s, index), index)
        try:
            finish, usage = parser.final()
        except SHAPE_ERRORS as exc:
            raise self._annotate(StreamError(f"stream's final report not understood ({type(exc).__name__}: "
                                             f"{str(exc)[:200]})"), index) from exc
        blocks = tuple(getattr(parser, "reasoning_blocks", ()))
        refusal = getattr(parser, "refusal", None)
        cost = self._cost(parser.model, usage)
        self._stats.cost(cost)
        yield StreamChunk(content="", index=index, finish_reason=finish or "stop", usage=usage, model=parser.model,
                          provider=provider, request_id=request_id, reasoning_blocks=blocks,
                          refusal=refusal if refusal and not getattr(parser, "refusal_streamed", False) else "",
                          response_id=self._scrub_id(getattr(parser, "response_id", None)), rate_limits=limits,
                          cost=cost)

    def _scrub_id(self, value: str | None) -> str | None:
        """An id the vendor's body gave (a hostile server could echo the key as one)."""
        return self._scrub(value) if isinstance(value, str) and value else value

    def _cost(self, answered_by: str | None, usage: Usage | None) -> Cost | None:
        """The call's cost at the prices of the model that answered (a snapshot's row; this
        provider's model when the vendor named none the catalog knows)."""
        if usage is None:
            return None
        info = self._model_info
        if answered_by and answered_by != self._model and (info is None or answered_by not in info.names()):
            info = self._find(answered_by) or info  # a dated snapshot the vendor answered with
        return cost_of(info, usage)

    def _reasoning_chunk(self, out: Any, index: int, model: str) -> StreamChunk:
        """The chunk of a ``Reasoning``, ``Refusal`` or ``Cited`` delta; anything else a parser
        returned is a StreamError."""
        if out.__class__ is Reasoning and out.text.__class__ is str:
            return StreamChunk(index=index, model=model, provider=self.provider_id, reasoning=out.text)
        if out.__class__ is Refusal and out.text.__class__ is str:
            return StreamChunk(index=index, model=model, provider=self.provider_id, refusal=out.text)
        if out.__class__ is Cited:
            return StreamChunk(index=index, model=model, provider=self.provider_id, citations=out.citations)
        raise self._annotate(StreamError(f"stream event's text is {type(out).__name__}, not text"), index)

    def _request_id(self, headers: Mapping[str, str]) -> str | None:
        """The vendor's request id header (scrubbed: a hostile server could echo the key there)."""
        value = headers.get(self.REQUEST_ID_HEADER) if self.REQUEST_ID_HEADER else None
        return self._scrub(value) if value else value

    def _json(self, content: bytes, headers: Mapping[str, str]) -> Any:
        try:
            if too_deep(content):
                raise RecursionError
            return json.loads(content)
        except RecursionError:
            problem = "response is JSON nested too deep to read"
        except ValueError:  # raised below, outside the handler: the parser's error holds the body
            text = self._scrub(content[:4096].decode("utf-8", "replace"))
            problem = f"response is not valid JSON: {snippet(text)!r}"
        raise self._invalid(problem, headers)

    # -- errors -----------------------------------------------------------------------------

    def _secrets(self) -> list[str]:
        """The credentials this provider sends, which no text it shows may contain."""
        secrets = [self._key.get() or ""]
        userinfo = getattr(self, "_userinfo", None)
        if userinfo is not None:
            secrets.extend(s.get() or "" for s in userinfo)
        return secrets

    def _scrub(self, text: str) -> str:
        """Remove the credentials, and masked echoes of a key, from text (linear in its length)."""
        return redact(text, self._secrets())

    def _scrub_error(self, exc: BaseException) -> None:
        """Redact credentials from an error's message and body, and from the exceptions chained
        to it (a JSON error keeps the document it failed on; a bad frame may echo the key)."""
        secrets = self._secrets()
        seen = 0
        current: BaseException | None = exc
        while current is not None and seen < 8:
            if isinstance(current, ProviderError):
                current.message = redact(current.message, secrets)
                rid = getattr(current, "request_id", None)
                if isinstance(rid, str):  # a hostile server may echo the key as its id
                    current.request_id = redact(rid, secrets)  # type: ignore[attr-defined]
                body = getattr(current, "body", None)
                if isinstance(body, str):
                    current.body = redact(body, secrets)  # type: ignore[attr-defined]
            current.args = tuple(redact(a, secrets) if isinstance(a, str) else a for a in current.args)
            doc = getattr(current, "doc", None)
            if isinstance(doc, str):
                current.doc = redact(doc, secrets)  # type: ignore[attr-defined]
            current = current.__cause__ or current.__context__
            seen += 1

    def _on_error(self, exc: ProviderError) -> None:
        self._scrub_error(exc)

    def _error_from_response(self, status: int, headers: Mapping[str, str], content: bytes) -> APIError:
        raw = content.decode("utf-8", errors="replace")
        try:  # parsed before redaction, which could break a JSON escape it cuts through
            body = json.loads(raw) if raw.strip() else None
        except (ValueError, RecursionError):
            body = None
        text = self._scrub(raw)
        message, error_type, error_code = self._error_details(body) if body is not None else (None, None, None)
        if message:
            message = self._scrub(message)
        if status >= 300 and status < 400:
            location = headers.get("location", "")
            message = (f"unexpected redirect to {urlsplit(location).netloc or location!r} "
                       f"(redirects are not followed; check base_url)")
            cls: type[APIError] = InvalidResponseError  # this member's setup is wrong; another may work
        else:
            cls = self._refine_error_class(error_class_for_status(status), status, error_type, error_code,
                                           body is not None)
            cls = too_long_class(cls, message)
        if not message:
            snippet = " ".join(text.split())[:200]
            message = f"HTTP {status}" + (f": {snippet}" if snippet else " with an empty body")
        # Some error bodies name the request while the header is absent (Anthropic's do).
        body_id = body.get("request_id") if isinstance(body, dict) else None
        return cls(
            message, provider=self.provider_id, model=self._model, status=status,
            request_id=self._request_id(headers) or (self._scrub(body_id) if isinstance(body_id, str) and body_id
                                                     else None),
            retry_after=parse_retry_after(headers),
            error_type=error_type, error_code=error_code, body=text,
            should_retry=should_retry_header(headers),
        )

    def _names_the_model(self, error: APIError) -> bool:
        """Does this 404 speak of the model (rather than of a path nothing answers at)?"""
        said = (error.message or "").lower()
        return error.error_code == "model_not_found" or "model" in said or self._model.lower() in said

    def _model_or_endpoint(self, error: ProviderError, url: str) -> ProviderError:
        """A 404 that names the model (the vendor's ``model_not_found``, a message that speaks
        of the model) stays a ``ModelNotFoundError``; any other says nothing answers at this
        URL: an ``EndpointNotFoundError`` naming it, and the provider's base-URL rule."""
        if not isinstance(error, APIError) or self._names_the_model(error):
            return error
        answered = " ".join((error.body or "").split())[:160] or "an empty body"
        found = EndpointNotFoundError(
            f"{redact_url(url)} answered 404 ({answered}): nothing answers there, so base_url is probably "
            f"wrong ({redact_url(self.base_url)} now; {self.BASE_URL_RULE})",
            provider=self.provider_id, model=self._model, status=404, request_id=error.request_id,
            error_type=error.error_type, error_code=error.error_code, body=error.body)
        return found

    def _not_implemented(self, error: ProviderError, url: str) -> ProviderError:
        """A 501: the server does not implement what was asked (llama.cpp's server started without
        ``--embeddings``, say). Asking again cannot help, another server may: an
        ``EndpointNotFoundError`` that says so."""
        if not isinstance(error, APIError):
            return error
        return EndpointNotFoundError(
            f"{redact_url(url)} answered 501, not implemented: {error.message}", provider=self.provider_id,
            model=self._model, status=501, request_id=error.request_id, error_type=error.error_type,
            error_code=error.error_code, body=error.body)

    def _listing(self, data: Any, field: str, what: str) -> list[Any]:
        """``data[field]`` of a listing answer (absent or null: empty); anything but an object
        holding a list raises InvalidResponseError."""
        if not isinstance(data, dict):
            raise self._invalid(f"{what} answer is {type(data).__name__}, not an object")
        items = data.get(field)
        if items is None:
            return []
        if not isinstance(items, list):
            raise self._invalid(f"{what} answer's {field!r} is {type(items).__name__}, not a list")
        return items

    def _invalid(self, what: str, headers: Mapping[str, str] | None = None) -> InvalidResponseError:
        """A 2xx answer that is not what the API documents."""
        return InvalidResponseError(what, provider=self.provider_id, model=self._model, status=200,
                                    request_id=self._request_id(headers) if headers is not None else None)

    def _error_status(self, data: Mapping[str, Any]) -> int:
        """The HTTP status an error object (without one) comes with, from the vendor's own
        vocabulary ``ERROR_STATUSES`` (its error codes and types); 500 when it names none."""
        _, error_type, code = self._error_details(data)
        statuses = self.ERROR_STATUSES
        return statuses.get(code or "") or statuses.get(error_type or "") or 500

    def _in_stream_error(self, data: Mapping[str, Any], request_id: str | None) -> APIError:
        """An error object inside a 200 stream -> the class its status would have had as an HTTP
        error, which is also a ``StreamError``."""
        message, error_type, code = self._error_details(data)
        status = self._error_status(data)
        cls = too_long_class(self._refine_error_class(error_class_for_status(status), status, error_type, code, True),
                             message)
        body_id = data.get("request_id")
        return stream_error_class(cls)(
            f"error inside the stream: {self._scrub(message or 'unknown error')}", provider=self.provider_id,
            model=self._model, status=200,
            request_id=self._scrub(body_id) if isinstance(body_id, str) and body_id else request_id,
            error_type=error_type, error_code=code, body=self._scrub(json.dumps(data)))

    def _health(self, probe: Callable[[dict[str, Any]], str | None]) -> HealthStatus:
        """Run ``probe`` (which fills in details and returns why it is unhealthy, or None) and
        report; a library error is reported, never raised."""
        start = time.perf_counter()
        detail: dict[str, Any] = {}
        info = self._model_info
        status = info.status(model_data.today()) if info is not None else "active"
        if info is not None and status != "active":
            detail["lifecycle"] = status
            detail["retires_on"] = info.retires_on
        retired = self.retired_error()
        if retired is not None:  # no request: the vendor would only say the model is gone
            return HealthStatus(False, self.provider_id, self._model, 0.0, error=str(retired), detail=detail)
        try:
            error = probe(detail)
        except ProviderError as exc:
            self._scrub_error(exc)
            error = str(exc)
        except SHAPE_ERRORS as exc:  # an answer of another shape than documented: unhealthy, not a crash
            error = self._scrub(f"answer not understood ({type(exc).__name__}: {str(exc)[:200]})")
        return HealthStatus(error is None, self.provider_id, self._model, time.perf_counter() - start,
                            error=error, detail=detail)

    def _annotate(self, exc: ProviderError, delivered: int = 0) -> ProviderError:
        """Say who failed (transport errors do not know) and how many chunks were out, and keep
        credentials out of what it says."""
        self._scrub_error(exc)
        if exc.provider is None:
            exc.provider, exc.model = self.provider_id, self._model
            if isinstance(exc, ConnectError) and self.CONNECT_HINT:
                exc.message = f"{exc.message} ({self.CONNECT_HINT.format(base_url=self.base_url)})"
        exc.chunks_delivered = delivered
        return exc


def _claim_loop() -> bool:
    """Whether this stream is an async stream's, to be read on its event loop where its body
    allows (``_wait``). The flag is cleared in the stream's context at once, before anything is
    sent: a stream a hook opens inside this one (``on_request``, ``on_retry``, ``on_error``,
    ``on_stream_end``), or one opened after a body that cannot be read that way, reads as usual."""
    if not reads_on_loop.get():
        return False
    reads_on_loop.set(False)
    return True


def _drained(stream: StreamResponse, on_loop: bool) -> Iterator[WouldBlock]:
    """Read the rest of a complete stream's body; read on the loop, its waits are yielded."""
    if on_loop:
        yield from stream.draining()
    else:
        stream.drain()


class _IdleWatch:
    """Breaks a stream off (``abort``) once ``idle_s`` pass without real data: ``last`` is set by
    the reader at each frame that is not a keep-alive. One timer per stream, re-armed only when it
    comes due, so marking progress costs a clock read."""

    def __init__(self, idle_s: float, abort: Callable[[], None]) -> None:
        self.idle_s = idle_s
        self.last = time.monotonic()
        self.fired = False
        self._abort = abort
        self._stopped = False
        self._timer = call_at(self.last + idle_s, self._due)

    def _due(self) -> None:
        if self._stopped:
            return
        due = self.last + self.idle_s
        if time.monotonic() < due:
            self._timer = call_at(due, self._due)
            return
        self.fired = True
        self._abort()

    def stop(self) -> None:
        self._stopped = True
        self._timer.cancel()
