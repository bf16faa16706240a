"""Every exception the library raises, and the one table from HTTP status to class.

The tree::

    ProviderError                       root of everything raised here (alias MirrorProvidersError)
    ├── ConfigurationError              missing key, unknown provider/model, bad constructor argument
    ├── ValidationError                 bad input caught before any network call
    │                                   (both also a ValueError and a TypeError: what bare Python
    │                                   raises for a bad argument)
    ├── TransportError                  the HTTP exchange itself failed
    │   ├── ConnectError                nothing answered at that address
    │   ├── RequestTimeout              connect or read timeout (not the builtin TimeoutError)
    │   │   └── DeadlineExceededError   the call's deadline_s passed
    │   ├── ProtocolError               broken HTTP, reset connection, undecodable body
    │   ├── ResponseTooLargeError       a size limit passed (body, decoded body, event, line)
    │   └── CallAbortedError            the caller broke the call off (a cancelled await)
    ├── APIError                        the vendor answered with an error
    │   ├── BadRequestError             400, 422
    │   │   ├── ContextLengthExceededError
    │   │   └── RequestTooLargeError    413
    │   ├── AuthenticationError         401
    │   ├── PermissionDeniedError       402, 403
    │   ├── NotFoundError               404
    │   │   ├── EndpointNotFoundError   nothing answers at the URL tried (a wrong base_url)
    │   │   └── ModelNotFoundError
    │   │       └── ModelRetiredError   the vendor shut the model down (``replacement``)
    │   ├── ConflictError               409
    │   ├── RateLimitError              429 (``retry_after``)
    │   │   └── QuotaExceededError      billing quota: waiting will not help
    │   ├── ServerError                 5xx, 408
    │   │   └── OverloadedError         529, "server busy"
    │   └── InvalidResponseError        a 2xx whose body is not what the API documents, or a 3xx
    ├── StreamError                     a stream broke after its 200 status
    │   └── TruncatedStreamError        ended without the vendor's terminator
    ├── AllProvidersFailedError         pooling: every member failed (``attempts``)
    └── CallbackError                   a caller's callback raised; the batch finished (``results``)

An error event inside a stream is raised as a class that is both the classified ``APIError``
subclass and ``StreamError`` (see :func:`stream_error_class`): ``except OverloadedError`` and
``except StreamError`` both catch it.

Each class says whether the same call may succeed later (``retryable``) and whether another
provider may succeed (``failover_ok``); retry and pooling code read these, never status codes.

Every error pickles with its class and attributes (the in-stream classes too, even into a process
that has not made that class yet), so one raised in a ``ProcessPoolExecutor`` worker reaches the
parent typed. ``__cause__`` and the traceback do not travel, as for any pickled exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

__all__ = [
    "APIError",
    "AllProvidersFailedError",
    "AuthenticationError",
    "BadRequestError",
    "CallAbortedError",
    "CallbackError",
    "ConfigurationError",
    "ConflictError",
    "ConnectError",
    "ContextLengthExceededError",
    "DeadlineExceededError",
    "EndpointNotFoundError",
    "InvalidResponseError",
    "MirrorProvidersError",
    "ModelNotFoundError",
    "ModelRetiredError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProtocolError",
    "ProviderError",
    "QuotaExceededError",
    "RateLimitError",
    "RequestTimeout",
    "RequestTooLargeError",
    "ResponseTooLargeError",
    "ServerError",
    "StreamError",
    "StructuredOutputError",
    "TransportError",
    "TruncatedStreamError",
    "ValidationError",
    "error_class_for_status",
    "stream_error_class",
]

BODY_LIMIT = 2000  # characters of a vendor error body kept on the exception


# What Python raises when parsing code meets JSON of the wrong shape (a list for an object, a
# string for a number, nesting deeper than the interpreter's stack): each is turned into an
# ``InvalidResponseError`` or ``StreamError`` at the provider's edge, never let out bare.
SHAPE_ERRORS: tuple[type[Exception], ...] = (KeyError, IndexError, TypeError, AttributeError, ValueError,
                                             OverflowError, RecursionError)


class ProviderError(Exception):
    """Root of every exception raised by mirror-providers.

    Attributes:
        message: what went wrong, in one sentence.
        provider: provider id (``"openai"``...) or None when not tied to one.
        model: the model the call was for, or None.
        retryable: the same call to the same provider may succeed later.
        failover_ok: another provider may succeed where this one failed.
    """

    retryable: ClassVar[bool] = False
    failover_ok: ClassVar[bool] = False
    chunks_delivered: int = 0
    """For errors raised while streaming: chunks the caller had received before it."""

    def __init__(
        self, message: str, *, provider: str | None = None, model: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model

    def _where(self) -> str:
        parts = [p for p in (self.provider, self.model) if p]
        return f"[{' '.join(parts)}] " if parts else ""

    def __str__(self) -> str:
        return f"{self._where()}{self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, model={self.model!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The default (``cls(*args)``, then ``__dict__``) cannot name the classes
        # ``stream_error_class`` makes at run time, and calls ``__init__`` with positional
        # arguments only. Rebuild without ``__init__`` and restore every attribute instead.
        cls = type(self)
        stream_of = cls.__dict__.get("_stream_of")
        if stream_of is not None:
            return _rebuild_stream_error, (stream_of, self.args), dict(self.__dict__)
        return _rebuild, (cls, self.args), dict(self.__dict__)


def _rebuild(cls: type[ProviderError], args: tuple[Any, ...]) -> ProviderError:
    """Unpickle: an instance of ``cls`` whose attributes the pickled state then restores."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    return exc


def _rebuild_stream_error(api_class: type[APIError], args: tuple[Any, ...]) -> ProviderError:
    """Unpickle an in-stream error: its class is made again here if this process has not yet."""
    return _rebuild(stream_error_class(api_class), args)


MirrorProvidersError = ProviderError


class ConfigurationError(ProviderError, ValueError, TypeError):
    """The library was set up wrongly: a missing API key, an unknown provider or model, a
    constructor argument of the wrong type or value (the message names it).

    Like ``ValidationError`` it is also a ``ValueError`` and a ``TypeError``: code that caught what
    a bad constructor argument used to raise (``RetryPolicy(max_retries=-1)``, ``Limits(...)``,
    ``OllamaProvider(host=..., base_url=...)`` raised ``ValueError``) keeps working.
    """


class ValidationError(ProviderError, ValueError, TypeError):
    """Input rejected before any network call; the message names the offending option or value.

    It is also a ``ValueError`` and a ``TypeError``, so code that caught what bare Python raises
    for a bad argument (an unknown keyword is a ``TypeError``) keeps working.
    """


class TransportError(ProviderError):
    """The HTTP exchange failed before a complete response arrived."""

    retryable = True
    failover_ok = True


class ConnectError(TransportError):
    """No connection could be made (refused, DNS failure, TLS handshake failure)."""


class RequestTimeout(TransportError):
    """The connect or read timeout elapsed."""


class DeadlineExceededError(RequestTimeout):
    """The call's ``deadline_s`` passed (connecting, waiting, retrying and reading together):
    the same call cannot finish in time, another provider may."""

    retryable = False


class ProtocolError(TransportError):
    """The server broke HTTP: reset connection, truncated body, undecodable content."""


class ResponseTooLargeError(TransportError):
    """The answer passed a size limit (``transport.Limits``): its body, its decoded size, one
    stream event or line. Reading stopped there, memory stays flat; another provider may do."""

    retryable = False


class CallAbortedError(TransportError):
    """The caller broke the call off (a cancelled ``await``): never retried, never failed over."""

    retryable = False
    failover_ok = False


class APIError(ProviderError):
    """The vendor answered with an error status (or an error inside a stream).

    Attributes:
        status: HTTP status (200 for an error event inside a stream).
        request_id: the vendor's request id header, when it sent one.
        retry_after: seconds the vendor asked us to wait, or None.
        error_type: the vendor's structured error type (``"rate_limit_error"``...).
        error_code: the vendor's error code (``"context_length_exceeded"``...).
        body: the response body, truncated to ``BODY_LIMIT`` characters.
    """

    retryable = False
    failover_ok = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        error_type: str | None = None,
        error_code: str | None = None,
        body: str | None = None,
        should_retry: bool | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.error_type = error_type
        self.error_code = error_code
        self.body = body[:BODY_LIMIT] if body is not None else None
        if should_retry is not None:  # the vendor's x-should-retry overrides the class default
            self.retryable = should_retry  # type: ignore[misc]

    def __str__(self) -> str:
        status = f"{self.status} " if self.status is not None else ""
        kind = f"{self.error_code or self.error_type}: " if (self.error_code or self.error_type) else ""
        rid = f" (request_id={self.request_id})" if self.request_id else ""
        return f"{self._where()}{status}{kind}{self.message}{rid}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, provider={self.provider!r}, "
            f"model={self.model!r}, status={self.status!r}, request_id={self.request_id!r})"
        )


class BadRequestError(APIError):
    """The request was invalid (400, 422); every provider would likely reject it too."""


class ContextLengthExceededError(BadRequestError):
    """The prompt plus requested output does not fit the model's context window.

    A model with a larger window might accept it, so a pool may fail over.
    """

    failover_ok = True


class RequestTooLargeError(BadRequestError):
    """The request body exceeded the vendor's size limit (413)."""


class AuthenticationError(APIError):
    """The API key was missing, malformed or rejected (401)."""

    failover_ok = True


class PermissionDeniedError(APIError):
    """The key is valid but may not do this (403), or billing blocks it (402)."""

    failover_ok = True


class NotFoundError(APIError):
    """The endpoint or resource does not exist (404)."""

    failover_ok = True


class ModelNotFoundError(NotFoundError):
    """The model does not exist on this provider, or this key cannot use it."""


class EndpointNotFoundError(NotFoundError):
    """Nothing answers at the URL tried (a 404 that does not name the model): most likely a
    wrong ``base_url``. The message names the URL (without credentials) and the provider's
    base-URL rule."""


class ModelRetiredError(ModelNotFoundError):
    """The vendor has shut the model down; raised before sending.

    Attributes:
        retired_on: the shutdown date (ISO), when known.
        replacement: the model the vendor names instead (followed past retired ones), or None.
    """

    def __init__(self, message: str, *, retired_on: str | None = None, replacement: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retired_on = retired_on
        self.replacement = replacement


class ConflictError(APIError):
    """The vendor reported a conflict (409); both official SDKs retry it."""

    retryable = True
    failover_ok = True


class RateLimitError(APIError):
    """Too many requests (429). ``retry_after`` holds the wait the vendor asked for, if any."""

    retryable = True
    failover_ok = True


class QuotaExceededError(RateLimitError):
    """The account's quota or spend limit is exhausted: waiting will not help."""

    retryable = False


class ServerError(APIError):
    """The vendor failed (5xx) or timed the request out (408)."""

    retryable = True
    failover_ok = True


class OverloadedError(ServerError):
    """The vendor is temporarily overloaded (Anthropic 529, Ollama 503 queue full)."""


class InvalidResponseError(APIError):
    """A success status whose body is not valid JSON or lacks the documented fields, or a redirect
    (the APIs never redirect; following one could send the key elsewhere)."""

    failover_ok = True


class StructuredOutputError(InvalidResponseError):
    """The answer to a ``schema=`` call is not JSON matching the schema (cut off at ``max_tokens``,
    or a model that did not follow it). Another provider may do better, so pools fail over.

    Attributes:
        content: the text the model returned.
        problems: what did not match, one line each (empty when the text was not JSON).
        finish_reason: why the model stopped (``"length"``: the JSON was cut off).
    """

    content: str = ""
    problems: tuple[str, ...] = ()
    finish_reason: str | None = None


class StreamError(ProviderError):
    """A stream failed after its 200 status: a malformed frame or an error event.

    ``chunks_delivered`` says how many chunks the caller had already received.
    """

    failover_ok = True


class TruncatedStreamError(StreamError):
    """The stream ended without the vendor's terminator: the answer is incomplete."""

    retryable = True


class AllProvidersFailedError(ProviderError):
    """Every provider of a chain or pool failed, each with an error another provider may not
    have: a pool holding this pool as a member may still fail over.

    Attributes:
        attempts: one entry per attempt, in order, each with ``provider``, ``model``,
            ``error`` and ``elapsed_s`` attributes (from a pool: ``types.Attempts``, the trace
            results carry).
    """

    failover_ok = True

    def __init__(self, message: str, attempts: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.attempts: Sequence[Any] = list(attempts)


class CallbackError(ProviderError):
    """A callback the caller passed (``map_sync``'s ``on_progress``) raised.

    The callback is not called again after it raised, and every call of the batch still runs to
    its end, so no finished answer is lost and none is left running unseen. The callback's
    exception is the ``__cause__``.

    Attributes:
        results: the batch's complete results, in prompt order (a ``GenerationResult`` or a
            ``ProviderError`` for each prompt, as ``map_sync`` would have returned them).
    """

    def __init__(self, message: str, *, results: Sequence[Any] = (), provider: str | None = None,
                 model: str | None = None) -> None:
        super().__init__(message, provider=provider, model=model)
        self.results = list(results)


# Status -> class. Vendors refine the result with their own error types and codes.
_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PermissionDeniedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: ServerError,
    409: ConflictError,
    413: RequestTooLargeError,
    422: BadRequestError,
    429: RateLimitError,
    529: OverloadedError,
}


def error_class_for_status(status: int) -> type[APIError]:
    """Return the error class for an HTTP status (any other 4xx is a bad request)."""
    cls = _STATUS_CLASSES.get(status)
    if cls is not None:
        return cls
    if status >= 500:
        return ServerError
    if status >= 400:
        return BadRequestError
    return APIError


_STREAM_CLASSES: dict[type[APIError], type[APIError]] = {}


def stream_error_class(api_class: type[APIError]) -> type[APIError]:
    """Return a class that is both ``api_class`` and ``StreamError``, for in-stream errors.

    An ``overloaded_error`` event in an Anthropic stream must be catchable as
    ``OverloadedError`` (what happened) and as ``StreamError`` (when it happened).
    """
    cls = _STREAM_CLASSES.get(api_class)
    if cls is None:
        name = api_class.__name__.replace("Error", "") + "StreamError"
        cls = type(name, (api_class, StreamError), {"__module__": __name__, "_stream_of": api_class})
        _STREAM_CLASSES[api_class] = cls
    return cls
