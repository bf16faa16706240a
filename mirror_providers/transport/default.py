"""``RequestsTransport``: the real transport, on requests and urllib3.

Exceptions of requests/urllib3 become ours in exactly one function, ``_map_exception``. Bodies are
read under the request's deadline and size limits; a stream's socket can be broken off from
another thread (``pools``). Connection pools are reset in a forked child.

requests and urllib3 are imported when the first request is made, not when this module is (or a
transport is built): they cost more to import than the rest of the library, and a process that
builds providers without calling them (a CLI's ``--help``, tests on ``MockTransport``) never pays.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from .. import _wait
from .._call import current_call
from .._timers import call_at
from .._wait import WouldBlock
from ..errors import (
    CallAbortedError,
    ConnectError,
    DeadlineExceededError,
    ProtocolError,
    RequestTimeout,
    ResponseTooLargeError,
    TransportError,
)
from . import log
from .base import (
    DEFAULT_LIMITS,
    DEFAULT_POOL_SIZE,
    DEFAULT_TIMEOUT,
    STREAM_READ_SIZE,
    HttpRequest,
    HttpResponse,
    Limits,
    StreamResponse,
    Timeout,
    Transport,
    _origin,
)
from .chunked import decode_chunked
from .environ import Settings

if TYPE_CHECKING:
    import socket

    import requests
    import requests.adapters
    import requests.cookies
    import requests.structures
    import urllib3.response

__all__ = ["RequestsTransport"]

def _map_exception(exc: Exception, request: HttpRequest) -> TransportError:
    """The one place where requests/urllib3 exceptions become ours. Their texts may quote the
    whole URL: its query string (which can hold a key) never reaches our message."""
    mapped = _classify(exc, request)
    query = urlsplit(request.url).query
    text = mapped.message
    if query and query in text:
        return type(mapped)(text.replace(query, "..."))
    return mapped


def _classify(exc: Exception, request: HttpRequest) -> TransportError:
    import requests.exceptions
    import urllib3.exceptions

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


@functools.cache
def _caught() -> tuple[type[Exception], ...]:
    """What requests and urllib3 raise (imported by then: a request was made)."""
    import requests.exceptions
    import urllib3.exceptions

    return requests.exceptions.RequestException, urllib3.exceptions.HTTPError, CallAbortedError


def _new_adapter(pool_size: int) -> requests.adapters.HTTPAdapter:
    import requests.adapters

    from .pools import HTTPPool, HTTPSPool

    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    # Pools that let a caller abort a request from another thread (see current_call).
    adapter.poolmanager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}
    return adapter


class _Requests(NamedTuple):
    """What each request needs from requests, looked up once (requests is imported by then)."""

    prepared: type[requests.PreparedRequest]
    headers: type[requests.structures.CaseInsensitiveDict[str]]
    jar: type[requests.cookies.RequestsCookieJar]
    extract_cookies: Callable[..., None]
    check_header: Callable[[tuple[str, str]], None]
    invalid_header: type[Exception]
    # What a requests.Session sends unless told otherwise; Accept-Encoding is only what
    # ``_inflate`` undoes with bounded memory (requests would also offer br and zstd when installed).
    default_headers: dict[str, str]


@functools.cache
def _requests() -> _Requests:
    import requests.cookies
    import requests.exceptions
    import requests.models
    import requests.structures
    import requests.utils

    return _Requests(requests.models.PreparedRequest, requests.structures.CaseInsensitiveDict,
                     requests.cookies.RequestsCookieJar, requests.cookies.extract_cookies_to_jar,
                     requests.utils.check_header_validity, requests.exceptions.InvalidHeader,
                     {**requests.utils.default_headers(), "Accept-Encoding": "gzip, deflate"})


def _headers(lib: _Requests, request: HttpRequest) -> requests.structures.CaseInsensitiveDict[str]:
    """requests' default headers under the request's, checked as a session checks them; None
    removes a header. A bad one is a ``ProtocolError`` that names it and never shows its value
    (it may be a key)."""
    headers = lib.headers(lib.default_headers)
    for name, value in request.headers.items():
        if value is None:
            headers.pop(name, None)
            continue
        try:
            lib.check_header((name, value))
            if isinstance(value, str):
                value.encode("latin-1")  # what http.client sends; anything else fails there, unnamed
        except (lib.invalid_header, UnicodeEncodeError):
            raise ProtocolError(f"header {str(name)[:60]!r} of {request.method} {_origin(request.url)} cannot be "
                                f"sent: its name or value holds a line break, leading space or a character "
                                f"outside Latin-1, or is not text") from None
        headers[name] = value
    return headers


class RequestsTransport(Transport):
    """The real transport, on requests and urllib3.

    One ``HTTPAdapter`` whose connection pool is sized for the thread pool, so connections are
    reused across threads. It never blocks: more calls or open streams than it keeps get
    connections of their own, closed (without urllib3's "connection pool is full" warning) when
    they come back to a full pool. Requests are prepared as a ``requests.Session`` prepares
    them, but the environment (proxies, ``NO_PROXY``, the CA bundle variables) is read once per
    URL and again only when it changes (``environ``), not scanned on every call; cookies servers
    set are kept per thread.
    Redirects are not followed: a redirect is returned as a response, so credentials never travel
    to a second host. Exchanges are logged to ``mirror_providers.http`` (see ``transport.log``;
    the first one made applies ``MIRROR_PROVIDERS_LOG``).

    Args:
        timeout: default connect/read timeouts.
        pool_size: connections kept per host (match the number of threads making calls).
        verify: TLS verification: True, or a CA bundle path for private CAs. Turning it off
            needs an explicit ``False``.
        proxies: proxies per scheme, over the environment's (``HTTPS_PROXY`` and friends, read
            as requests reads them). Loopback addresses are always reached directly.
        limits: size limits on answers (a request may carry its own).
    """

    def __init__(
        self,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        pool_size: int = DEFAULT_POOL_SIZE,
        verify: bool | str = True,
        proxies: Mapping[str, str] | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.timeout = timeout
        self.limits = limits
        self.pool_size = pool_size
        self._settings = Settings(verify, proxies)
        self._closed = False
        self._users: dict[tuple[str, str, int], int] = {}  # origin -> providers using it (retain)
        self._users_lock = threading.Lock()
        self._fresh_pools()
        _live_transports.add(self)
        log.from_environment()

    def _fresh_pools(self) -> None:
        """No connection pools yet (at start, and in a forked child): the first request makes
        them (``_adapter``)."""
        self._made_adapter: requests.adapters.HTTPAdapter | None = None
        self._adapter_lock = threading.Lock()
        self._local = threading.local()  # per thread: the cookies servers set

    @property
    def _adapter(self) -> requests.adapters.HTTPAdapter:
        """The ``HTTPAdapter`` every thread's session shares, made (and requests imported) on first use."""
        adapter = self._made_adapter
        if adapter is None:
            with self._adapter_lock:
                adapter = self._made_adapter
                if adapter is None:
                    adapter = self._made_adapter = _new_adapter(self.pool_size)
        return adapter

    def _after_fork_in_child(self) -> None:
        """A forked child shares the parent's pooled sockets: a request on one of them could read
        the parent's answer, and the parent ours. The child closes its copies of the descriptors
        (which sends nothing and leaves the parent's connections open: no shutdown, no TLS
        close_notify) and opens connections of its own."""
        self._users_lock = threading.Lock()  # another thread may have held it at the fork
        self._settings.after_fork()
        old = self._made_adapter
        self._fresh_pools()
        if old is not None:
            _close_pools(old)

    def __repr__(self) -> str:
        return f"RequestsTransport(pool_size={self.pool_size}, timeout={self.timeout})"

    def _request(self, request: HttpRequest, stream: bool) -> requests.Response:
        """What ``requests.Session.request`` does for us, without its per-call environment scan,
        cookie merging and hooks: the request prepared from cached per-URL settings
        (``environ.Settings``) and handed to the adapter. Cookies a server sets are kept per
        thread and sent back, as a session would."""
        if self._closed:
            raise ConnectError("transport is closed")
        timeout = request.timeout or self.timeout
        connect, read = timeout.connect, timeout.read
        if request.deadline is not None:
            left = request.deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceededError(f"deadline passed before {request.method} {_origin(request.url)}")
            connect, read = min(connect, left), min(read, left)
        lib = _requests()
        settings = self._settings.for_url(request.url)
        prepared = lib.prepared()
        prepared.method = request.method.upper()
        prepared.url = settings.url
        prepared.headers = _headers(lib, request)
        prepared.prepare_body(request.body, None)
        jar: requests.cookies.RequestsCookieJar | None = getattr(self._local, "cookies", None)
        if jar:
            prepared.prepare_cookies(jar)
        response = self._adapter.send(prepared, stream=stream, timeout=(connect, read), verify=settings.verify,
                                      proxies=settings.proxies)
        if "set-cookie" in response.headers:  # kept, replaced or deleted in this thread's jar, as a session does
            if jar is None:
                jar = self._local.cookies = lib.jar()
            lib.extract_cookies(jar, prepared, response.raw)
        return response

    def _open(self, request: HttpRequest) -> tuple[requests.Response, _Expiry | None]:
        """Send and read the status and headers, under the request's deadline if it has one:
        the watchdog breaks the connection when it passes, whatever the server is doing."""
        call = request.call if request.call is not None else current_call.get()
        expiry = _Expiry(request.deadline, call) if request.deadline is not None else None
        # urllib3's pool checkout (``transport.pools``) leases each connection to the context's call.
        token = current_call.set(expiry or call)
        try:
            return self._request(request, stream=True), expiry
        except _caught() as exc:
            if expiry is not None:
                expiry.cancel()
            raise _mapped(exc, request, expiry) from exc
        except OSError as exc:  # requests' own: a CA bundle path that is not there
            if expiry is not None:
                expiry.cancel()
            raise ConnectError(f"cannot set up {request.method} {_origin(request.url)}: {exc}") from exc
        except BaseException:
            if expiry is not None:
                expiry.cancel()
            raise
        finally:
            current_call.reset(token)

    def send(self, request: HttpRequest) -> HttpResponse:
        if not log.enabled():  # all that logging costs when it is off
            return self._send(request)
        exchange = log.Exchange(request)
        try:
            response = self._send(request)
        except TransportError as exc:
            exchange.failed(exc)
            raise
        exchange.answered(response.status, response.headers, response.content)
        return response

    def open_stream(self, request: HttpRequest) -> StreamResponse:
        if not log.enabled():
            return self._open_stream(request, None)
        exchange = log.Exchange(request)
        try:
            return self._open_stream(request, exchange)
        except TransportError as exc:
            exchange.failed(exc)
            raise

    def _send(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        resp, expiry = self._open(request)
        limits = request.limits or self.limits
        try:
            if resp.status_code >= 300:  # an error: its first bytes say what went wrong
                content = _read_capped(resp, request, expiry, limits.max_error_body_bytes)
            else:
                content = _read_all(resp, request, expiry, limits)
        finally:
            if expiry is not None:
                expiry.cancel()
            resp.close()
        return HttpResponse(resp.status_code, resp.headers, content, time.perf_counter() - start)

    def _open_stream(self, request: HttpRequest, exchange: log.Exchange | None) -> StreamResponse:
        resp, expiry = self._open(request)
        limits = request.limits or self.limits
        guard = _ConnGuard(resp.raw)

        def close() -> None:
            if expiry is not None:
                expiry.cancel()
            resp.close()

        sources: list[_Source] = []
        chunks: Iterator[bytes] = _iter_decoded(resp, request, expiry, limits.max_stream_bytes, "stream",
                                                release=guard.release, nonblocking=sources)
        if exchange is not None:
            chunks = exchange.stream(resp.status_code, resp.headers, chunks)
        return StreamResponse(resp.status_code, resp.headers, chunks, close, guard.shutdown,
                              sources[0].nonblocking if sources else None)

    def retain(self, url: str) -> None:
        """One more user (a provider) of the connections to ``url``'s host; see ``release``."""
        key = _pool_origin(url)
        with self._users_lock:
            self._users[key] = self._users.get(key, 0) + 1

    def release(self, url: str) -> None:
        """A user of ``url``'s host is done with it. When the last one is, that host's pooled
        connections are closed: idle ones now, one in use as soon as its call gives it back.
        The transport stays usable (a later call opens a new connection, as requests does)."""
        key = _pool_origin(url)
        with self._users_lock:
            left = self._users.get(key, 0) - 1
            if left > 0:
                self._users[key] = left
                return
            self._users.pop(key, None)
        adapter = self._made_adapter
        if adapter is None:  # no request was made: no connection to close
            return
        manager = adapter.poolmanager
        for pool_key in list(manager.pools.keys()):
            if (pool_key.key_scheme, pool_key.key_host, pool_key.key_port) == key:
                pool = manager.pools.get(pool_key)
                if pool is not None:
                    pool.close()  # a connection given back later to a closed pool is closed
                with contextlib.suppress(KeyError):  # another thread dropped it first
                    del manager.pools[pool_key]

    def close(self) -> None:
        """Close every pooled connection now.

        ``HTTPAdapter.close()`` alone is not enough: urllib3 2.x's ``PoolManager.clear()`` drops
        its pools without closing them and leaves the sockets to garbage collection, so anything
        still referring to a pool (a caught exception's traceback, say) would keep them open.
        """
        self._closed = True
        adapter = self._made_adapter
        if adapter is not None:
            _close_pools(adapter)


def _close_pools(adapter: requests.adapters.HTTPAdapter) -> None:
    for manager in [adapter.poolmanager, *adapter.proxy_manager.values()]:
        for key in list(manager.pools.keys()):
            pool = manager.pools.get(key)
            if pool is not None:
                pool.close()
    adapter.close()


def _pool_origin(url: str) -> tuple[str, str, int]:
    """``url``'s origin as urllib3 keys its pools: scheme, lower-case host, port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


class _Expiry:
    """The deadline of one request, as the ``current_call`` its connections are leased to: when
    it passes, the watchdog shuts those connections down (a blocked read wakes at once) and no
    new one is checked out. A call the caller aborts (the enclosing ``current_call``) still is."""

    __slots__ = ("deadline", "expired", "_parent", "_hooks", "_lock", "_timer")

    def __init__(self, deadline: float, parent: Any) -> None:
        self.deadline = deadline
        self.expired = False
        self._parent = parent
        self._hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._timer = call_at(deadline, self._expire)

    @property
    def aborted(self) -> bool:
        return self.expired or (self._parent is not None and self._parent.aborted)

    def register(self, hook: Callable[[], None]) -> None:
        with self._lock:
            self._hooks.append(hook)
            expired = self.expired
        if expired:
            hook()
        if self._parent is not None:
            self._parent.register(hook)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._hooks = []

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.deadline


def _mapped(exc: Exception, request: HttpRequest, expiry: _Expiry | None) -> TransportError:
    """``_map_exception``, except that anything failing once the deadline passed is that."""
    if expiry is not None and expiry.passed():
        return DeadlineExceededError(f"deadline passed during {request.method} {_origin(request.url)}")
    if isinstance(exc, TransportError):
        return exc
    return _map_exception(exc, request)


def _read_all(resp: requests.Response, request: HttpRequest, expiry: _Expiry | None, limits: Limits) -> bytes:
    length = resp.headers.get("content-length", "")
    if length.isdigit() and int(length) > limits.max_body_bytes:
        raise ResponseTooLargeError(f"{_origin(request.url)} announced a body of {int(length)} bytes, over "
                                    f"Limits.max_body_bytes={limits.max_body_bytes}")
    parts = list(_iter_decoded(resp, request, expiry, limits.max_decoded_bytes, "body",
                               wire_limit=limits.max_body_bytes))
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _read_capped(resp: requests.Response, request: HttpRequest, expiry: _Expiry | None, cap: int) -> bytes:
    """The first ``cap`` bytes of the body; the rest is left unread (the connection is closed)."""
    parts: list[bytes] = []
    size = 0
    pieces = _iter_decoded(resp, request, expiry, None, "error body")
    try:
        for piece in pieces:
            parts.append(piece)
            size += len(piece)
            if size >= cap:
                break
    finally:
        pieces.close()
    return b"".join(parts)[:cap]


def _past_wire_limit(what: str, request: HttpRequest, wire_limit: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(f"{what} from {_origin(request.url)} passed Limits.max_body_bytes={wire_limit}")


def _past_limit(what: str, request: HttpRequest, limit: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(f"{what} from {_origin(request.url)} decodes to more than {limit} bytes (Limits)")


def _pieces(resp: requests.Response) -> tuple[Iterable[bytes], Callable[[bytes], Iterator[bytes]] | None,
                                             _Source | None]:
    """How ``_iter_decoded`` reads ``resp``: its pieces as they arrive, the decompressor to run
    them through (None: urllib3 decodes them, or nothing needs to), and the source that can be
    switched to reads that do not block (None: this body cannot be read that way)."""
    import urllib3.response

    raw = resp.raw
    pieces: Iterable[bytes]
    inflate: Callable[[bytes], Iterator[bytes]] | None = None
    source: _Source | None = None
    if isinstance(raw, urllib3.response.BaseHTTPResponse):
        encoding = (resp.headers.get("content-encoding") or "").strip().lower()
        ours = encoding in ("gzip", "x-gzip", "deflate")
        if ours:
            inflate = _Inflater(encoding).feed
        # Anything else urllib3 decodes itself (it too bounds each read's output by its size).
        decode = not ours and encoding not in ("", "identity")
        if isinstance(raw, urllib3.response.HTTPResponse) and raw.chunked and raw.supports_chunked_reads():
            fp = raw._fp.fp  # type: ignore[union-attr]
            sock = getattr(getattr(fp, "raw", None), "_sock", None)  # what socket.makefile reads from
            if not decode and raw.chunk_left is None and isinstance(fp, io.BufferedReader):
                # Nothing of the body read yet, and no decoder of urllib3's needed.
                import socket  # (loaded by then: urllib3 uses it)

                source = _Source(fp, sock if isinstance(sock, socket.socket) else None)
                pieces = _chunked(raw, source)
            else:
                pieces = raw.read_chunked(STREAM_READ_SIZE, decode_content=decode)
        else:
            pieces = iter(functools.partial(raw.read1, STREAM_READ_SIZE, decode_content=decode), b"")
    else:  # a stand-in such as vcrpy's replay stub, whose body is already decoded
        pieces = iter(functools.partial(raw.read1, STREAM_READ_SIZE), b"")
    return pieces, inflate, source if source is not None and source.sock is not None else None


class _Source:
    """The reads of a chunked body: blocking (the socket's read timeout applies), or, once
    ``nonblocking()`` was called, never blocking: where a read would wait, it returns the
    ``WouldBlock`` marker of the socket instead (``_wait``). The socket's timeout is put back
    when the body has been read, before its connection goes back to the pool.

    Not blocking, the first read takes what the connection's reader holds (body bytes that came
    with the headers); after it the reader is empty for good, and each read is one ``recv`` of
    the socket. The read after a ``recv`` that brought bytes returns the marker without asking
    again: the loop runs its other work before this stream reads on (bytes that came meanwhile
    make the socket readable at once, so nothing waits for them), and a ``recv`` that would find
    nothing, most often the case, is saved."""

    __slots__ = ("fp", "sock", "marker", "_timeout", "_buffered", "_drained", "_tls")

    def __init__(self, fp: io.BufferedReader, sock: socket.socket | None) -> None:
        self.fp = fp
        self.sock = sock
        self.marker: WouldBlock | None = None
        self._timeout: float | None = None
        self._buffered = True
        self._drained = False
        self._tls = hasattr(sock, "pending")

    def nonblocking(self) -> bool:
        assert self.sock is not None  # (a source without one is never offered: ``_pieces``)
        if self.marker is None:
            self._timeout = self.sock.gettimeout()
            self.sock.settimeout(0.0)
            self.marker = _wait.marker(self.sock.fileno())
        return True

    def restore(self) -> None:
        if self.marker is not None and self.sock is not None:
            with contextlib.suppress(OSError):  # closed meanwhile: nothing to put back
                self.sock.settimeout(self._timeout)

    def read1(self, size: int) -> bytes:
        marker = self.marker
        if marker is None:
            self.fp.peek(1)  # waits with the reader's own buffer, not a new one of ``size`` (read1 would)
            return self.fp.read1(size)
        if self._buffered:
            self._buffered = False
            try:
                data = self.fp.read1(size)  # what it holds, else one recv that does not wait
            except OSError as exc:
                if isinstance(exc, BlockingIOError) or type(exc).__name__ == "SSLWantReadError":
                    return marker
                raise
            if data:
                return data
            # Empty: EOF, or (a plain socket's reader says both alike) nothing yet: ask the socket.
        elif self._drained:
            self._drained = False
            return marker
        sock = self.sock
        assert sock is not None
        try:
            data = sock.recv(size)
        except OSError as exc:
            if isinstance(exc, BlockingIOError) or type(exc).__name__ == "SSLWantReadError":
                return marker  # (TLS: no whole record yet)
            raise
        # After each read that brought bytes, the loop gets its turn before the next one (a
        # server that floods the socket never holds the loop for more than a read), unless the
        # TLS layer holds decrypted bytes already: no readiness would be signalled for those.
        self._drained = not (self._tls and sock.pending())  # type: ignore[attr-defined]
        return data  # b"": EOF


def _chunked(raw: urllib3.response.HTTPResponse, source: _Source) -> Generator[bytes, None, bool]:
    """A chunked body decoded straight from the connection's reader (``chunked``), then finished
    by ``_finish_chunked`` (called by the decoder at the body's end: no generator between them)."""
    return decode_chunked(source.read1, STREAM_READ_SIZE, functools.partial(_finish_chunked, raw, source))


def _finish_chunked(raw: urllib3.response.HTTPResponse, source: _Source, garbage: bool) -> None:
    """A chunked body read to its end, finished as urllib3 finishes one: http.client's response
    closed, so the connection can be reused, unless bytes followed the body (then it is closed:
    they answer nothing)."""
    source.restore()
    if garbage and raw.connection is not None:
        raw.connection.close()
    original = raw._original_response
    if original is not None:
        original.close()


def _iter_decoded(resp: requests.Response, request: HttpRequest, expiry: _Expiry | None,
                  limit: int | None, what: str, wire_limit: int | None = None,
                  release: Callable[[], None] | None = None,
                  nonblocking: list[_Source] | None = None) -> Generator[bytes, None, None]:
    """``_decoded``'s generator over ``resp``'s pieces; the source that can read without
    blocking, if there is one, is appended to ``nonblocking``."""
    pieces, inflate, source = _pieces(resp)
    if nonblocking is not None and source is not None:
        nonblocking.append(source)
    return _decoded(resp, pieces, inflate, request, expiry, limit, what, wire_limit, release)


def _decoded(resp: requests.Response, pieces: Iterable[bytes], inflate: Callable[[bytes], Iterator[bytes]] | None,
             request: HttpRequest, expiry: _Expiry | None, limit: int | None, what: str, wire_limit: int | None,
             release: Callable[[], None] | None) -> Generator[bytes, None, None]:
    """Yield the body's bytes, decompressed, as soon as any arrive, at most ``STREAM_READ_SIZE``
    at a time.

    The deliberate choice of reads: a chunked body (what streaming servers send) is decoded from
    the connection's reader, all the chunks of each read at once (``chunked``; urllib3's
    ``read_chunked`` when urllib3 must decode it); any other body goes through ``read1``, which returns
    whatever is available, where ``iter_content(chunk_size=None)`` would read a body without
    chunked encoding to EOF first. gzip and deflate are undone here, ``STREAM_READ_SIZE`` of
    output at a time, so a small bomb never inflates in one piece; ``limit`` caps the decoded
    bytes and ``wire_limit`` the received ones.
    """
    raw = resp.raw
    received = 0
    try:
        if inflate is None:  # the usual case, each piece as it came (decoded is received): one loop
            for piece in pieces:
                received += len(piece)
                if wire_limit is not None and received > wire_limit:
                    raise _past_wire_limit(what, request, wire_limit)
                if limit is not None and received > limit:
                    raise _past_limit(what, request, limit)
                yield piece
        else:
            yield from _inflated(pieces, inflate, request, limit, what, wire_limit)
    except ResponseTooLargeError:
        raise
    except _caught() as exc:
        raise _mapped(exc, request, expiry) from exc
    except OSError as exc:  # a socket error the libraries did not wrap
        if expiry is not None and expiry.passed():
            raise _mapped(exc, request, expiry) from exc
        raise ProtocolError(f"connection broken while reading {_origin(request.url)}: {exc}") from exc
    # Fully read: hand the connection back to the pool for reuse (a stand-in holds none).
    release = release or getattr(raw, "release_conn", None)
    if release is not None:
        release()


def _inflated(pieces: Iterable[bytes], inflate: Callable[[bytes], Iterator[bytes]], request: HttpRequest,
              limit: int | None, what: str, wire_limit: int | None) -> Iterator[bytes]:
    received = decoded = 0
    for piece in pieces:
        if piece.__class__ is WouldBlock:
            yield piece  # nothing for the decompressor: passed up as it is
            continue
        received += len(piece)
        if wire_limit is not None and received > wire_limit:
            raise _past_wire_limit(what, request, wire_limit)
        for out in inflate(piece):
            decoded += len(out)
            if limit is not None and decoded > limit:
                raise _past_limit(what, request, limit)
            yield out
    yield from inflate(b"")  # anything the decompressor still holds


class _ConnGuard:
    """A stream's connection is either given back to the pool (its body was read to the end) or
    shut down by an abort from another thread, never both: a late abort must not break a
    connection the pool has already handed to another call."""

    __slots__ = ("_raw", "_lock", "_released")

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._lock = threading.Lock()
        self._released = False

    def release(self) -> None:
        with self._lock:
            self._released = True
            release = getattr(self._raw, "release_conn", None)
            if release is not None:
                release()

    def shutdown(self) -> None:
        with self._lock:
            shutdown = getattr(self._raw, "shutdown", None)  # urllib3 >= 2.3 wakes blocked reads
            if not self._released and shutdown is not None:
                # urllib3 raises ValueError or RuntimeError when the reading thread closed the
                # response first (another abort hook woke it): there is nothing left to break.
                with contextlib.suppress(OSError, ValueError, RuntimeError):
                    shutdown()


class _Inflater:
    """gzip (members one after another, as RFC 1952 allows) or deflate (zlib-wrapped or raw,
    both seen in the wild) undone ``STREAM_READ_SIZE`` bytes of output at a time."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding != "deflate"
        self._first = True
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The output ``data`` adds, in pieces; ``b""`` drains what the decompressor still holds."""
        later_member = False
        while True:
            if self._d.eof:
                data = self._d.unused_data + data
                if not self._gzip or not data.strip(b"\x00"):
                    return  # padding after the stream is ignored
                self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the next gzip member
                later_member = True
            try:
                out = self._d.decompress(data, STREAM_READ_SIZE)
            except zlib.error as exc:
                if later_member:
                    return  # garbage after a complete member is ignored, as urllib3 does
                if self._gzip or not self._first:
                    raise ProtocolError(f"undecodable {'gzip' if self._gzip else 'deflate'} body: {exc}") from None
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, without the zlib header
                self._first = False
                continue
            self._first = False
            data = self._d.unconsumed_tail
            if out:
                yield out
            if not data and not self._d.eof and len(out) < STREAM_READ_SIZE:
                return  # all input used and no output held back
            if self._d.eof and not data and not self._d.unused_data:
                return


_live_transports: weakref.WeakSet[RequestsTransport] = weakref.WeakSet()


def _import_before_fork() -> None:
    """requests is imported by a transport's first request, often on a worker thread. A fork
    while that import runs would leave its module lock held in the child forever, and the
    child's first request would hang: so a process with a transport finishes the import first."""
    if _live_transports:
        _requests()
        import requests.adapters  # noqa: F401  (what _new_adapter and the pools need)

        from . import pools  # noqa: F401


def _reset_in_child() -> None:
    for transport in list(_live_transports):
        transport._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(before=_import_before_fork, after_in_child=_reset_in_child)

