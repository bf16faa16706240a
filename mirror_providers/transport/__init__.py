"""The HTTP seam: requests and responses as plain data, and the transports that carry them.

* ``base``: ``HttpRequest``, ``HttpResponse``, ``StreamResponse``, ``Timeout``, ``Limits`` and the
  ``Transport`` interface (its contract is in ``Transport``'s docstring);
* ``default``: ``RequestsTransport``, the real one, on requests and urllib3, with ``pools``
  (urllib3 connection pools whose sockets a call can break off from another thread) and
  ``chunked`` (chunked bodies decoded straight from the connection's reader, a read at a time);
* ``mock``: ``MockTransport``, a function as a transport, for tests.

Everything public is importable from ``mirror_providers.transport``.
"""

from .._call import CallControl, current_call
from .base import (
    DEFAULT_LIMITS,
    DEFAULT_POOL_SIZE,
    DEFAULT_TIMEOUT,
    SECRET_HEADERS,
    STREAM_READ_SIZE,
    HttpRequest,
    HttpResponse,
    Limits,
    StreamResponse,
    Timeout,
    Transport,
    redact_headers,
)
from .default import RequestsTransport
from .mock import Handler, MockTransport

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_TIMEOUT",
    "SECRET_HEADERS",
    "STREAM_READ_SIZE",
    "CallControl",
    "Handler",
    "HttpRequest",
    "HttpResponse",
    "Limits",
    "MockTransport",
    "RequestsTransport",
    "StreamResponse",
    "Timeout",
    "Transport",
    "current_call",
    "redact_headers",
]
