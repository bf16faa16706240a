"""The HTTP seam: requests and responses as plain data, and the transports that carry them.

A transport sends an ``HttpRequest`` and returns an ``HttpResponse`` (whole body read) or opens a
``StreamResponse`` (bytes as they arrive). It never raises for an HTTP status -- a 429 is a
response -- and raises only ``TransportError`` subclasses, mapped from requests/urllib3 in exactly
one function, ``_map_exception``. It knows nothing about vendors, JSON schemas or retries.

``RequestsTransport`` is the real one; ``MockTransport`` turns a function into a transport for
tests, after httpx's ``MockTransport``.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import requests.adapters
import urllib3.exceptions
import urllib3.response

from ._pools import HTTPPool, HTTPSPool, current_call
from .errors import ConnectError, ProtocolError, RequestTimeout, TransportError

__all__ = [
    "DEFAULT_TIMEOUT",
    "current_call",
    "HttpRequest",
    "HttpResponse",
    "MockTransport",
    "RequestsTransport",
    "StreamResponse",
    "Timeout",
    "Transport",
    "redact_headers",
]

logger = logging.getLogger("mirror_providers.transport")

SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "cookie", "set-cookie",
                            "proxy-authorization"})
STREAM_READ_SIZE = 65536
# Connections kept per host. urllib3 opens more when more threads call at once and discards the
# extras with a "connection pool is full" warning: the size caps idle connections, it allocates
# nothing, so it is generous.
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
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    timeout: Timeout | None = None

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
    """

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        chunks: Iterable[bytes],
        on_close: Callable[[], None] | None = None,
        on_abort: Callable[[], None] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self._chunks = iter(chunks)
        self._on_close = on_close
        self._on_abort = on_abort
        self.closed = False

    def iter_bytes(self) -> Iterator[bytes]:
        """Yield body bytes as they arrive; closes the response at the end."""
        try:
            yield from filter(None, self._chunks)  # never an empty chunk
        finally:
            self.close()

    def read(self) -> bytes:
        """Read the rest of the body (for error responses) and close."""
        return b"".join(self.iter_bytes())

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
            try:
                self._on_abort()
            except OSError:  # already closed under us
                pass

    def __enter__(self) -> StreamResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Transport:
    """Interface every transport implements. Subclasses override ``send`` and ``open_stream``."""

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


def _map_exception(exc: Exception, request: HttpRequest) -> TransportError:
    """The one place where requests/urllib3 exceptions become ours."""
    where = f"{request.method} {_origin(request.url)}"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return RequestTimeout(f"connect timeout to {where}")
    if isinstance(exc, (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError)):
        return RequestTimeout(f"read timeout from {where}")
    if isinstance(exc, requests.exceptions.SSLError):
        return ConnectError(f"TLS error with {where}: {exc}")
    if isinstance(exc, requests.exceptions.ConnectionError):
        # requests wraps what urllib3 raised (itself often inside MaxRetryError): look at that.
        inner = exc.args[0] if exc.args else exc
        if isinstance(inner, urllib3.exceptions.MaxRetryError) and inner.reason is not None:
            inner = inner.reason
        if isinstance(inner, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.NameResolutionError)):
            # Checked first: urllib3 makes NewConnectionError a subclass of ConnectTimeoutError.
            return ConnectError(f"cannot connect to {where}: {_reason(inner)}")
        if isinstance(inner, (urllib3.exceptions.ReadTimeoutError, TimeoutError)):
            return RequestTimeout(f"read timeout from {where}")  # raised while reading the body
        if isinstance(inner, urllib3.exceptions.ConnectTimeoutError):
            return RequestTimeout(f"connect timeout to {where}")
        if isinstance(inner, urllib3.exceptions.ProtocolError):
            return ProtocolError(f"connection broken during {where}: {_reason(inner)}")
        return ConnectError(f"cannot connect to {where}: {_reason(inner)}")
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError)):
        return ProtocolError(f"connection broken while reading {where}: {_reason(exc)}")
    if isinstance(exc, (requests.exceptions.ContentDecodingError, urllib3.exceptions.DecodeError)):
        return ProtocolError(f"undecodable body from {where}: {_reason(exc)}")
    if isinstance(exc, requests.exceptions.InvalidURL):
        return ConnectError(f"invalid URL for {where}: {exc}")
    return ProtocolError(f"{type(exc).__name__} during {where}: {exc}")


def _reason(exc: BaseException) -> str:
    text = str(exc)
    # urllib3 wraps the useful part in "<connection object at 0x...>: Failed to establish ...".
    return text.split(">: ", 1)[-1] if ">: " in text else text


def _origin(url: str) -> str:
    # Only scheme://host/path: never a query string, which could hold a key.
    return url.split("?", 1)[0]


_CAUGHT = (requests.exceptions.RequestException, urllib3.exceptions.HTTPError)


class RequestsTransport(Transport):
    """The real transport, on requests and urllib3.

    One ``requests.Session`` per thread (so cookies and per-request state never race), all of
    them sharing one ``HTTPAdapter`` whose connection pool is sized for the thread pool, so
    connections are reused across threads without "connection pool is full" warnings.
    Redirects are not followed: a redirect is returned as a response, so credentials never travel
    to a second host.

    Args:
        timeout: default connect/read timeouts.
        pool_size: connections kept per host (match the number of threads making calls).
        verify: TLS verification: True, or a CA bundle path for private CAs. Turning it off
            needs an explicit ``False``.
        proxies: proxies per scheme; by default requests reads ``HTTPS_PROXY`` and friends.
    """

    def __init__(
        self,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        pool_size: int = DEFAULT_POOL_SIZE,
        verify: bool | str = True,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        self.timeout = timeout
        self.pool_size = pool_size
        self._verify = verify
        self._proxies = dict(proxies) if proxies else None
        self._closed = False
        self._fresh_pools()
        _live_transports.add(self)

    def _fresh_pools(self) -> None:
        """New, empty connection pools and per-thread sessions (at start, and in a forked child)."""
        self._adapter = requests.adapters.HTTPAdapter(
            pool_connections=4, pool_maxsize=self.pool_size, max_retries=0
        )
        # Pools that let a caller abort a request from another thread (see current_call).
        self._adapter.poolmanager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}
        self._local = threading.local()

    def _after_fork_in_child(self) -> None:
        """A forked child shares the parent's pooled sockets: a request on one of them could read
        the parent's answer, and the parent ours. The child closes its copies of the descriptors
        (which sends nothing and leaves the parent's connections open: no shutdown, no TLS
        close_notify) and opens connections of its own."""
        old = self._adapter
        self._fresh_pools()
        _close_pools(old)

    def __repr__(self) -> str:
        return f"RequestsTransport(pool_size={self.pool_size}, timeout={self.timeout})"

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.mount("http://", self._adapter)
            session.mount("https://", self._adapter)
            if self._proxies is not None:
                session.proxies.update(self._proxies)
            self._local.session = session
        return session

    def _request(self, request: HttpRequest, stream: bool) -> requests.Response:
        if self._closed:
            raise ConnectError("transport is closed")
        timeout = request.timeout or self.timeout
        return self._session().request(
            request.method,
            request.url,
            headers=dict(request.headers),
            data=request.body,
            timeout=(timeout.connect, timeout.read),
            allow_redirects=False,
            stream=stream,
            # Per request: requests lets REQUESTS_CA_BUNDLE override a session-level setting.
            verify=self._verify,
            # An explicit no-op auth stops requests from reading ~/.netrc, which would
            # overwrite our Authorization header.
            auth=_no_auth,
        )

    def send(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        try:
            resp = self._request(request, stream=False)
        except _CAUGHT as exc:
            raise _map_exception(exc, request) from exc
        elapsed = time.perf_counter() - start
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s -> %s in %.3fs", request.method, _origin(request.url),
                         resp.status_code, elapsed)
        return HttpResponse(resp.status_code, resp.headers, resp.content, elapsed)

    def open_stream(self, request: HttpRequest) -> StreamResponse:
        try:
            resp = self._request(request, stream=True)
        except _CAUGHT as exc:
            raise _map_exception(exc, request) from exc
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s -> %s (stream)", request.method, _origin(request.url), resp.status_code)
        shutdown = getattr(resp.raw, "shutdown", None)  # urllib3 >= 2.3 wakes blocked reads
        return StreamResponse(resp.status_code, resp.headers, _iter_raw(resp, request), resp.close, shutdown)

    def close(self) -> None:
        """Close every pooled connection now.

        ``HTTPAdapter.close()`` alone is not enough: urllib3 2.x's ``PoolManager.clear()`` drops
        its pools without closing them and leaves the sockets to garbage collection, so anything
        still referring to a pool (a caught exception's traceback, say) would keep them open.
        """
        self._closed = True
        _close_pools(self._adapter)


def _close_pools(adapter: requests.adapters.HTTPAdapter) -> None:
    for manager in [adapter.poolmanager, *adapter.proxy_manager.values()]:
        for key in list(manager.pools.keys()):
            pool = manager.pools.get(key)
            if pool is not None:
                pool.close()
    adapter.close()


def _no_auth(r: Any) -> Any:
    return r


_live_transports: weakref.WeakSet[RequestsTransport] = weakref.WeakSet()


def _reset_in_child() -> None:
    for transport in list(_live_transports):
        transport._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_in_child)


def _iter_raw(resp: requests.Response, request: HttpRequest) -> Iterator[bytes]:
    """Yield decoded body bytes as soon as any arrive.

    The deliberate choice of iterator: a chunked body (what streaming servers send) is read one
    HTTP chunk at a time with urllib3's ``read_chunked``, which yields each chunk as soon as it is
    complete and costs a third of ``read1`` per chunk. Any other body goes through ``read1``,
    which returns whatever is available, where ``iter_content(chunk_size=None)`` would read a body
    without chunked encoding to EOF first.
    """
    raw = resp.raw
    chunks: Iterable[bytes]
    if isinstance(raw, urllib3.response.BaseHTTPResponse):
        # requests opens responses with decode_content=False; gzip is undone here.
        if isinstance(raw, urllib3.response.HTTPResponse) and raw.chunked and raw.supports_chunked_reads():
            chunks = raw.read_chunked(None, decode_content=True)
        else:
            chunks = iter(functools.partial(raw.read1, STREAM_READ_SIZE, decode_content=True), b"")
    else:  # a stand-in such as vcrpy's replay stub, whose body is already decoded
        chunks = iter(functools.partial(raw.read1, STREAM_READ_SIZE), b"")
    try:
        yield from chunks
    except _CAUGHT as exc:
        raise _map_exception(exc, request) from exc
    except OSError as exc:  # a socket error the libraries did not wrap
        raise ProtocolError(f"connection broken while reading {_origin(request.url)}: {exc}") from exc
    # Fully read: hand the connection back to the pool for reuse (a stand-in holds none).
    release = getattr(raw, "release_conn", None)
    if release is not None:
        release()


Handler = Callable[[HttpRequest], HttpResponse | StreamResponse]


class MockTransport(Transport):
    """A transport that answers with a function, for tests.

    The handler returns an ``HttpResponse``; for streaming calls it may also return a
    ``StreamResponse`` (or an ``HttpResponse``, whose body is then streamed in one chunk).
    Every request is kept in ``requests`` for assertions.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[HttpRequest] = []
        self._lock = threading.Lock()

    def _handle(self, request: HttpRequest) -> HttpResponse | StreamResponse:
        with self._lock:
            self.requests.append(request)
        return self.handler(request)

    def send(self, request: HttpRequest) -> HttpResponse:
        resp = self._handle(request)
        if isinstance(resp, StreamResponse):
            return HttpResponse(resp.status, resp.headers, resp.read())
        return resp

    def open_stream(self, request: HttpRequest) -> StreamResponse:
        resp = self._handle(request)
        if isinstance(resp, HttpResponse):
            return StreamResponse(resp.status, resp.headers, [resp.content])
        return resp
