"""Run a vendor's frames through its provider: the real request, stream and parsing code, over a
``MockTransport`` that answers with the encoded frames."""

from __future__ import annotations

import json
from typing import Any

from mirror_providers.provider import Provider
from mirror_providers.transport import HttpResponse, MockTransport, StreamResponse
from mirror_providers.types import GenerationResult, StreamChunk


def sse(*events: Any) -> bytes:
    """Each event a JSON object (``data:`` only) or ``(name, object)``."""
    out = []
    for e in events:
        if isinstance(e, tuple):
            out.append(f"event: {e[0]}\ndata: {json.dumps(e[1])}\n\n")
        else:
            out.append(f"data: {json.dumps(e)}\n\n")
    return "".join(out).encode()


def ndjson(*objects: Any) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objects)


def provider_for(cls: type[Provider], body: bytes, status: int = 200, headers: dict[str, str] | None = None,
                 **kwargs: Any) -> Provider:
    transport = MockTransport(lambda request: StreamResponse(status, headers or {}, [body]))
    return cls(transport=transport, max_retries=0, **kwargs)  # type: ignore[call-arg]


def stream(cls: type[Provider], body: bytes, **kwargs: Any) -> list[StreamChunk]:
    """Every chunk of a stream whose body is ``body``."""
    return list(provider_for(cls, body, **kwargs).stream_sync("hi"))


def answer(cls: type[Provider], data: Any, headers: dict[str, str] | None = None, **kwargs: Any) -> GenerationResult:
    """The result of a plain call answered with ``data``."""
    body = json.dumps(data).encode()
    transport = MockTransport(lambda request: HttpResponse(200, headers or {}, body))
    return cls(transport=transport, max_retries=0, **kwargs).generate_sync("hi")  # type: ignore[call-arg]
