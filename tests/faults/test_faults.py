"""Every fault against every provider, sync and async, alone and inside a FallbackChain and a
ProviderPool, over real loopback sockets.

Each case asserts the typed error (or the successful fallback), that it came within the
configured timeouts, and afterwards: no library call still running on the thread pool, no other
thread left behind, no client socket left open, the redirect target never contacted, and the
provider or pool still serving requests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mirror_providers import _aio
from mirror_providers.errors import AllProvidersFailedError, ProviderError
from mirror_providers.pooling import FallbackChain, ProviderPool
from mirror_providers.provider import Provider
from mirror_providers.transport import RequestsTransport
from mirror_providers.types import StreamChunk, join_chunks

from ..server import FakeServer, Received, Reply
from ..waiting import eventually
from .wire import FAULTS, TEXT, WIRES, Fault, Wire

READ_TIMEOUT = 0.25
BOUND_S = 3.0  # generous: a stall must end at the read timeout, not at the server's whim
MODES = ["generate", "stream", "async_generate", "async_stream"]
WRAPPERS = ["alone", "chain", "pool"]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeServer, FakeServer, FakeServer]]:
    with FakeServer() as bad, FakeServer() as good, FakeServer() as other:
        yield bad, good, other


def open_client_sockets(ports: set[int]) -> int:
    """Our side of TCP connections to the given ports still holding a socket (ESTABLISHED or
    CLOSE_WAIT), from /proc/net/tcp."""
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            remote_port = int(parts[2].split(":")[1], 16)
            if remote_port in ports and parts[3] in ("01", "08"):
                count += 1
    return count


def other_threads() -> set[str]:
    return {t.name for t in threading.enumerate()
            if not t.name.startswith("mirror-providers") and "process_request_thread" not in t.name}


def healthy(w: Wire) -> Any:
    def route(req: Received, reply: Reply) -> None:
        if req.json().get(w.stream_field):
            reply.stream(200, w.frames(), {"Content-Type": w.stream_type})
        else:
            reply.json(200, w.ok_json())

    return route


def call(target: Provider, mode: str) -> tuple[str, int]:
    """Run one call; return (text, chunks seen). Raises what the call raises."""
    seen: list[StreamChunk] = []
    if mode == "generate":
        return target.generate_sync("hi").content, 0
    if mode == "stream":
        for c in target.stream_sync("hi"):
            seen.append(c)
        return join_chunks(seen).content, len(seen)

    async def run() -> str:
        if mode == "async_generate":
            return (await target.generate("hi")).content
        async for c in target.stream("hi"):
            seen.append(c)
        return join_chunks(seen).content

    return asyncio.run(run()), len(seen)


CASES = [
    pytest.param(v, f, m, w, id=f"{v}-{f.name}-{m}-{w}")
    for v in WIRES for f in FAULTS for m in MODES for w in WRAPPERS
    if (f.stream if m.endswith("stream") else f.plain) is not None
    and (v != "parrot" or w == "alone")  # the made-up vendor proves the base; pools are tested with the real three
]


@pytest.mark.parametrize("vendor, fault, mode, wrapper", CASES)
def test_fault(servers: tuple[FakeServer, FakeServer, FakeServer], vendor: str, fault: Fault, mode: str,
               wrapper: str) -> None:
    bad, good, other = servers
    w = WIRES[vendor]
    gate = threading.Event()
    for s in servers:
        s.received.clear()
    bad.routes = {("POST", w.path): lambda r, reply: fault.serve(w, bool(r.json().get(w.stream_field)), r, reply, gate, other)}
    good.routes = {("POST", w.path): healthy(w)}
    other.routes = {}
    threads_before = other_threads()
    transport = RequestsTransport()
    kw: dict[str, Any] = {"transport": transport, "timeout": READ_TIMEOUT, "max_retries": 0}
    member = w.make(bad.url, **kw)
    target: Provider = {"alone": lambda: member,  # type: ignore[no-untyped-call]
                        "chain": lambda: FallbackChain([member, w.make(good.url, **kw)]),
                        "pool": lambda: ProviderPool([member, w.make(good.url, **kw)], strategy="round_robin"),
                        }[wrapper]()
    expected = fault.stream if mode.endswith("stream") else fault.plain
    assert expected is not None
    spliced = mode.endswith("stream") and fault.after_first_chunk
    start = time.monotonic()
    try:
        if wrapper == "alone" or spliced:
            with pytest.raises(expected) as info:
                call(target, mode)
            err: ProviderError = info.value
            assert not isinstance(err, AllProvidersFailedError)
            if spliced:
                assert err.chunks_delivered >= 1  # says how much the caller already had
            for text in (str(err), repr(err), str(getattr(err, "body", ""))):
                assert "fault-KEY" not in text
        else:
            text, _ = call(target, mode)
            assert text == TEXT  # the healthy member answered
        assert time.monotonic() - start < BOUND_S
    finally:
        gate.set()

    # The fault is gone: the same provider (or pool) serves again.
    bad.routes = {("POST", w.path): healthy(w)}
    assert call(target, mode)[0] == TEXT

    if fault.name == "redirect_to_other_host":
        assert other.received == []  # neither the key nor the prompt went to the second host
    transport.close()
    assert eventually(lambda: _aio.active_workers() == 0), "a library call is still running"
    assert eventually(lambda: open_client_sockets({bad.port, good.port, other.port}) == 0), "socket left open"
    assert eventually(lambda: other_threads() <= threads_before), other_threads() - threads_before
