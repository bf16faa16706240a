"""Logging each HTTP exchange of ``RequestsTransport``, with every credential it sent scrubbed.

Logger ``mirror_providers.http``:

* INFO: one line per exchange once it is over: method, URL (no user info, and the query's
  values hidden: a key may be in one under any name), status (or the transport error), seconds,
  bytes;
* DEBUG: also the request (headers, body) before it is sent, the response's status and headers
  when they arrive, its body, and each event of a stream as it arrives (an SSE event, or a line
  of JSON lines), each body or event cut at ``BODY_LIMIT`` characters with its full size noted.

When the logger is not enabled for INFO (the default) the cost is one ``isEnabledFor`` per
exchange: nothing is formatted and streams are not wrapped.

What is scrubbed: headers named in ``SECRET_HEADERS``, or whose names look like credentials
(``Parrot-Key``, ``X-Auth-Token``), show ``[secure]``; and their values (with ``Authorization``'s
token, Basic auth's password), the request's ``secrets`` (the provider's key, whatever header
sends it), key-like query values and URL user info are replaced by ``[redacted]`` wherever they
appear -- other headers, the URL, the bodies, a server's echo of them -- with ``_redact.redact``,
the scrubber error messages use; so are keys a vendor echoes masked (``sk-abc****wxyz``).

``MIRROR_PROVIDERS_LOG`` (``debug``, ``info`` or ``off``) is read once, when the first
``RequestsTransport`` is made; ``enable_debug_logging()`` switches at any time.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Literal

from .._redact import (
    longest_spelling,
    looks_secret,
    redact,
    redact_head,
    redact_query,
    redact_url,
    secret_params,
    split_userinfo,
)
from ..errors import ConfigurationError, TransportError
from .base import SECRET_HEADERS, HttpRequest

__all__ = ["BODY_LIMIT", "ENV_VAR", "Exchange", "enable_debug_logging", "enabled", "from_environment"]

logger = logging.getLogger("mirror_providers.http")

ENV_VAR = "MIRROR_PROVIDERS_LOG"
BODY_LIMIT = 4096  # characters shown of one body or stream event
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "off": logging.NOTSET}

_numbers = itertools.count(1)  # exchange numbers, to tell concurrent exchanges' lines apart
_setup_lock = threading.Lock()
_env_read = False
_our_handler: logging.Handler | None = None


def enabled() -> bool:
    """Whether exchanges are logged at all: the one check an exchange costs when they are not."""
    return logger.isEnabledFor(logging.INFO)


def enable_debug_logging(level: Literal["debug", "info", "off"] = "debug") -> None:
    """Log the library's HTTP exchanges (and its other records) at ``level``.

    Sets the ``mirror_providers`` logger's level. When neither it nor any logger above it has a
    handler (the application configured no logging), a stderr handler is added to it; an
    application that configured logging gets the records through its own handlers.
    ``"off"`` undoes both. The same as ``MIRROR_PROVIDERS_LOG=debug`` in the environment, which
    is read when the first ``RequestsTransport`` is made.

    Example::

        import mirror_providers
        mirror_providers.enable_debug_logging()        # bodies, headers, stream events
        mirror_providers.enable_debug_logging("info")  # one line per request

    Raises:
        ConfigurationError: ``level`` is not ``"debug"``, ``"info"`` or ``"off"``.
    """
    if not isinstance(level, str) or level.lower() not in _LEVELS:
        raise ConfigurationError(f"log level must be 'debug', 'info' or 'off', got {level!r}")
    global _our_handler
    package = logging.getLogger("mirror_providers")
    with _setup_lock:
        package.setLevel(_LEVELS[level.lower()])
        if level.lower() == "off":
            if _our_handler is not None:
                package.removeHandler(_our_handler)
                _our_handler = None
        elif _our_handler is None and not package.hasHandlers():
            _our_handler = logging.StreamHandler(sys.stderr)
            _our_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            package.addHandler(_our_handler)


def from_environment() -> None:
    """Apply ``MIRROR_PROVIDERS_LOG`` the first time this is called (when a transport is made)."""
    global _env_read
    if _env_read:
        return
    _env_read = True
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return
    if value not in _LEVELS:
        logging.getLogger("mirror_providers").warning(
            "%s=%r ignored: it must be debug, info or off", ENV_VAR, value)
        return
    enable_debug_logging(value)  # type: ignore[arg-type]  # checked just above


def secrets_of(request: HttpRequest) -> list[str]:
    """The credentials ``request`` carries: its ``secrets``, its secret headers' values (and the
    token after an auth scheme, and Basic auth's password), key-like query values, URL user info."""
    found: list[str] = list(request.secrets)
    for name, value in request.headers.items():
        if not _secret_header(name) or not value:
            continue
        found.append(value)
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if token:
            found.append(token)
            if scheme.lower() == "basic":
                found.extend(_basic_parts(token))
        if name.lower() == "cookie":
            found.extend(v for pair in value.split(";") if (v := pair.partition("=")[2].strip()))
    found.extend(secret_params(request.url))
    userinfo = split_userinfo(request.url)[1]
    if userinfo is not None:
        found.extend(userinfo)
    # Longest first: a password inside the "user:password" it came from goes with its user name.
    return sorted((s for s in dict.fromkeys(found) if s), key=len, reverse=True)


def _secret_header(name: str) -> bool:
    return name.lower() in SECRET_HEADERS or looks_secret(name)


def _basic_parts(token: str) -> list[str]:
    try:
        pair = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return []
    return [pair, pair.partition(":")[2]]


class Exchange:
    """One exchange being logged; made only when ``enabled()``.

    ``RequestsTransport`` calls ``failed`` for a ``TransportError``, ``answered`` for a whole
    response, or ``stream`` to wrap a stream's chunks (which logs as they pass).
    """

    def __init__(self, request: HttpRequest) -> None:
        self.number = next(_numbers)
        self.start = time.perf_counter()
        self.secrets = secrets_of(request)
        self.margin = longest_spelling(self.secrets)
        self.what = f"#{self.number} {request.method} {self.scrub(redact_query(redact_url(request.url)))}"
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s headers=%s", self.what, self.headers(request.headers))
            if request.body is not None:
                logger.debug("#%d request body %s", self.number, self.show(request.body, len(request.body)))

    def scrub(self, text: str) -> str:
        return redact(text, self.secrets)

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {k: "[secure]" if _secret_header(k) else self.scrub(v) for k, v in headers.items()}

    def show(self, data: bytes | bytearray, size: int, whole: bool | None = None) -> str:
        """``data`` (the first bytes of ``size``, or all of it when ``whole``), decoded, scrubbed and
        cut at ``BODY_LIMIT``, on one line."""
        text = bytes(data[:4 * (BODY_LIMIT + self.margin)]).decode("utf-8", errors="replace")
        shown = redact_head(text, BODY_LIMIT, self.secrets)
        shown = shown.replace("\r", "\\r").replace("\n", "\\n")  # one line per record
        if len(text) > BODY_LIMIT or not (whole if whole is not None else size <= len(data)):
            return f"({size} bytes, first {BODY_LIMIT} characters) {shown}..."
        return f"({size} bytes) {shown}"

    def failed(self, exc: TransportError) -> None:
        logger.info("%s -> %s: %s after %.3fs", self.what, type(exc).__name__, self.scrub(str(exc)),
                    time.perf_counter() - self.start)

    def answered(self, status: int, headers: Mapping[str, str], content: bytes) -> None:
        elapsed = time.perf_counter() - self.start
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("#%d %s headers=%s", self.number, status, self.headers(headers))
            if content:
                logger.debug("#%d response body %s", self.number, self.show(content, len(content)))
        logger.info("%s -> %s in %.3fs (%d bytes)", self.what, status, elapsed, len(content))

    def stream(self, status: int, headers: Mapping[str, str], chunks: Iterator[bytes]) -> Iterator[bytes]:
        """``chunks`` as they are, logging each event at DEBUG and the outcome at INFO."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("#%d %s headers=%s (stream)", self.number, status, self.headers(headers))
        sse = "event-stream" in (headers.get("content-type") or "").lower()
        return self._logged(status, chunks, _Events(self, sse) if logger.isEnabledFor(logging.DEBUG) else None)

    def _logged(self, status: int, chunks: Iterator[bytes], events: _Events | None) -> Iterator[bytes]:
        size = 0
        outcome = "closed before its end"
        try:
            for chunk in chunks:
                size += len(chunk)
                if events is not None:
                    events.feed(chunk)
                yield chunk
            outcome = "ended"
        except TransportError as exc:
            outcome = f"broken, {type(exc).__name__}: {self.scrub(str(exc))}"
            raise
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # a consumer that stops early closes this generator: release the body
            if events is not None:
                events.flush()
            logger.info("%s -> %s (stream %s) in %.3fs (%d bytes)", self.what, status, outcome,
                        time.perf_counter() - self.start, size)


class _Events:
    """Splits a stream's bytes into what is logged: SSE events (lines up to a blank line), or
    lines. Holds at most what is shown of the current event, however long it is."""

    def __init__(self, exchange: Exchange, sse: bool) -> None:
        self._x = exchange
        self._sse = sse
        self._keep = 4 * (BODY_LIMIT + exchange.margin) + 1
        self._held = bytearray()  # the start of the current event
        self._size = 0  # the current event's whole size
        self._blank = True  # the current line has nothing but its end so far

    def feed(self, data: bytes) -> None:
        start = 0
        while (nl := data.find(b"\n", start)) != -1:
            self._add(data[start:nl + 1])
            if not self._sse or self._blank:  # an SSE event ends at a blank line
                self.flush()
            self._blank = True
            start = nl + 1
        self._add(data[start:])

    def _add(self, piece: bytes) -> None:
        self._size += len(piece)
        self._blank = self._blank and not piece.rstrip(b"\r\n")
        room = self._keep - len(self._held)
        if room > 0:
            self._held += piece[:room]

    def flush(self) -> None:
        """Log the event held so far, if it has more than blank lines."""
        held, size = self._held, self._size
        self._held, self._size = bytearray(), 0
        text = held.strip()
        if text:  # its size is with its line ends; what is shown, without
            logger.debug("#%d %s %s", self._x.number, "event" if self._sse else "line",
                         self._x.show(text, size, whole=len(held) == size))
