"""The HTTP seam's data and interface: ``HttpRequest`` in, ``HttpResponse`` or ``StreamResponse``
out, ``Transport`` between them, and the ``Timeout``/``Limits`` a transport honours.

A transport sends an ``HttpRequest`` and returns an ``HttpResponse`` (whole body read) or opens a
``StreamResponse`` (bytes as they arrive). It never raises for an HTTP status -- a 429 is a
response -- and raises only ``TransportError`` subclasses. It knows nothing about vendors, JSON
schemas or retries.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import field

from .._call import CallControl
from .._lazy import dataclass
from .._timers import call_at
from .._wait import WouldBlock
from ..errors import ConfigurationError

__all__ = ["DEFAULT_LIMITS", "DEFAULT_POOL_SIZE", "DEFAULT_TIMEOUT", "SECRET_HEADERS", "STREAM_READ_SIZE",
           "HttpRequest", "HttpResponse", "Limits", "StreamResponse", "Timeout", "Transport", "redact_headers"]

logger = logging.getLogger("mirror_providers.transport")

SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "cookie", "set-cookie",
                            "proxy-authorization"})
STREAM_READ_SIZE = 65536
# Connections kept per host. More are opened when more threads call or streams are open at once;
# the extras are closed as they come back (quietly: see ``pools``). The size caps idle
# connections and allocates nothing, so it is generous.
DEFAULT_POOL_SIZE = 128


@dataclass(frozen=True)
class Timeout:
    """Separate connect and read timeouts, in seconds.

    ``read`` bounds the wait for each piece of the response (the whole body of a non-streaming
    answer can take longer; the gap between two chunks cannot).
    """

    connect: float = 5.0
    read: float = 600.0

    @classmethod
    def coerce(cls, value: None | float | Timeout, default: Timeout) -> Timeout:
        """A float sets the read timeout and caps the connect timeout; None keeps ``default``."""
        if value is None:
            return default
        if isinstance(value, Timeout):
            return value
        seconds = float(value)
        return cls(connect=min(default.connect, seconds), read=seconds)


DEFAULT_TIMEOUT = Timeout()

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """How much of a server's answer is read; passing a limit raises ``ResponseTooLargeError``
    at once, having held no more than about the limit in memory.

    Attributes:
        max_body_bytes: a whole (not streamed) body as it arrives on the wire; a larger
            ``Content-Length`` is refused before reading.
        max_decoded_bytes: the same body after gzip/deflate, checked as it inflates (a few MB of
            gzip can inflate to gigabytes).
        max_event_bytes: one stream event (SSE) or line (JSON lines).
        max_error_body_bytes: what is read of an error response: enough for its message; the
            rest is not read and the connection is closed.
        max_stream_bytes: a whole stream, decoded; None for no limit (a long answer streams long).
    """

    max_body_bytes: int = 64 * MiB
    max_decoded_bytes: int = 64 * MiB
    max_event_bytes: int = 16 * MiB
    max_error_body_bytes: int = 64 * 1024
    max_stream_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_decoded_bytes", "max_event_bytes", "max_error_body_bytes",
                     "max_stream_bytes"):
            value = getattr(self, name)
            if value is None and name == "max_stream_bytes":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"Limits.{name} must be a positive int, got {value!r}")


DEFAULT_LIMITS = Limits()


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Copy headers with credentials and cookies replaced by ``[secure]``."""
    return {k: ("[secure]" if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


@dataclass(frozen=True)
class HttpRequest:
    """What to send.

    Attributes:
        method: ``GET`` or ``POST``...
        url: absolute URL.
        headers: request headers (credentials included: never log them unredacted).
        body: the encoded body, or None.
        timeout: connect/read timeouts; None uses the transport's default.
        deadline: ``time.monotonic()`` by which the exchange must be over (connecting, waiting and
            reading the body or the whole stream), or None. Past it, the connection is broken
            off and ``DeadlineExceededError`` raised.
        limits: size limits on the answer; None uses the transport's.
        call: the call this request belongs to (``CallControl``), or None: a transport stops
            work for it once ``call.aborted`` (see ``Transport``).
        secrets: credentials the request carries that no log may show (a provider names its key
            here, whatever header sends it); a transport also finds those in the usual headers.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    timeout: Timeout | None = None
    deadline: float | None = None
    limits: Limits | None = None
    call: CallControl | None = field(default=None, compare=False, repr=False)
    secrets: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __repr__(self) -> str:
        return f"HttpRequest({self.method} {self.url}, headers={redact_headers(self.headers)})"


@dataclass(frozen=True)
class HttpResponse:
    """A complete response.

    Attributes:
        status: HTTP status.
        headers: case-insensitive headers.
        content: the decoded (un-gzipped) body.
        elapsed_s: seconds from sending to having the whole body.
    """

    status: int
    headers: Mapping[str, str]
    content: bytes = b""
    elapsed_s: float = 0.0

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class StreamResponse:
    """A response whose body is read as it arrives; a context manager that always releases it.

    Args:
        status: HTTP status.
        headers: response headers.
        chunks: an iterator of body bytes, each yielded as soon as it arrives.
        on_close: called once when the response is closed (releases the connection).
        on_abort: called by ``abort()`` from any thread to wake a blocked read (socket shutdown).
        on_nonblocking: switches the body's source to reads that do not block (see
            ``nonblocking``); None when the source cannot.
    """

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        chunks: Iterable[bytes],
        on_close: Callable[[], None] | None = None,
        on_abort: Callable[[], None] | None = None,
        on_nonblocking: Callable[[], bool] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self._chunks = iter(chunks)
        self._on_close = on_close
        self._on_abort = on_abort
        self._on_nonblocking = on_nonblocking
        self.closed = False

    def nonblocking(self) -> bool:
        """From now on, where the body's source would wait for bytes it yields a ``WouldBlock``
        marker instead (``_wait``: an async stream read on its event loop). False, changing
        nothing, when the source cannot read that way."""
        return self._on_nonblocking is not None and not self.closed and self._on_nonblocking()

    def pieces(self) -> Iterator[bytes]:
        """``iter_bytes`` without closing the response at the end (its ``with`` block or
        ``close()`` does): one generator less between the body and its reader."""
        return filter(None, self._chunks)

    def iter_bytes(self) -> Iterator[bytes]:
        """Yield body bytes as they arrive; closes the response at the end."""
        try:
            yield from filter(None, self._chunks)  # never an empty chunk
        finally:
            self.close()

    def read(self, max_bytes: int | None = None) -> bytes:
        """Read the rest of the body (for error responses), or its first ``max_bytes``, and close."""
        if max_bytes is None:
            return b"".join(self.iter_bytes())
        parts: list[bytes] = []
        size = 0
        try:
            for piece in filter(None, self._chunks):
                parts.append(piece)
                size += len(piece)
                if size >= max_bytes:
                    break
        finally:
            self.close()
        return b"".join(parts)[:max_bytes]

    def drain(self, max_bytes: int = 64 * 1024, max_s: float = 0.1) -> bool:
        """Read and drop what is left of the body, so that its connection goes back to the pool
        rather than being closed; for a stream whose answer is complete (its terminator came).
        Stops after ``max_bytes`` or ``max_s`` (breaking the connection then); any error is
        swallowed, the answer being had already. True when the body ended within bounds."""
        steps = self.draining(max_bytes, max_s)
        while True:  # a blocking source yields nothing: its first step is the whole drain
            try:
                next(steps)
            except StopIteration as done:
                return bool(done.value)

    def draining(self, max_bytes: int = 64 * 1024, max_s: float = 0.1) -> Generator[WouldBlock, None, bool]:
        """``drain()`` step by step, for a non-blocking source: yields its ``WouldBlock`` markers,
        and nothing else, while the body's end has not come (``max_s`` still bounds it: the
        connection is broken off then, which wakes the reader of the marker). Returns ``drain()``'s
        answer."""
        if self.closed:
            return False
        timer = call_at(time.monotonic() + max_s, self.abort)
        size = 0
        try:
            for piece in self._chunks:
                if piece.__class__ is WouldBlock:
                    yield piece
                    continue
                size += len(piece)
                if size > max_bytes:
                    return False
            return True
        except Exception:  # noqa: BLE001 - a broken tail after a complete answer is not an error
            return False
        finally:
            timer.cancel()
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
            if self._on_close is not None:
                self._on_close()

    def abort(self) -> None:
        """Break the connection now, from any thread: a read blocked on it fails at once.

        The reading thread still closes the response; this only wakes it up.
        """
        if self._on_abort is not None and not self.closed:
            with contextlib.suppress(OSError):  # already closed under us
                self._on_abort()

    def __enter__(self) -> StreamResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Transport:
    """Interface every transport implements. Subclasses override ``send`` and ``open_stream``.

    The contract a provider relies on:

    * an HTTP status is a response, never an exception; failures of the exchange itself raise
      ``TransportError`` subclasses only (``ConnectError``, ``RequestTimeout``, ``ProtocolError``,
      ``ResponseTooLargeError``, ``DeadlineExceededError``...), chained from the cause;
    * ``request.deadline`` (a ``time.monotonic()`` value) bounds the whole exchange;
    * cancellation: when ``request.call`` is given, a transport that can break a request off
      refuses to start one once ``request.call.aborted`` is true (``CallAbortedError``) and
      registers a hook with ``request.call.register(hook)`` that breaks the connection it is
      using (another thread calls it, so the hook must be safe to run from anywhere and after the
      request ended). A transport that cannot do so still works: an aborted call then ends when
      the exchange does. ``StreamResponse(on_abort=...)`` is how a stream offers the same;
    * retries are not the transport's business: the provider's call loop decides them from the
      classified error.
    """

    def send(self, request: HttpRequest) -> HttpResponse:
        """Send the request and read the whole response."""
        raise NotImplementedError

    def open_stream(self, request: HttpRequest) -> StreamResponse:
        """Send the request and return as soon as the status and headers arrive."""
        raise NotImplementedError

    def close(self) -> None:
        """Release pooled connections."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def _origin(url: str) -> str:
    # Only scheme://host/path: never a query string, which could hold a key.
    return url.split("?", 1)[0]
