"""``MockTransport``: a function as a transport, for tests (after httpx's ``MockTransport``)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from .base import HttpRequest, HttpResponse, StreamResponse, Transport

__all__ = ["Handler", "MockTransport"]

Handler = Callable[[HttpRequest], HttpResponse | StreamResponse]
"""What a ``MockTransport`` calls for each request."""


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
