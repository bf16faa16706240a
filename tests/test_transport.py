"""RequestsTransport against a real loopback server; MockTransport."""

from __future__ import annotations

import contextlib
import gzip
import logging
import threading
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from mirror_providers.errors import ConnectError, ProtocolError, RequestTimeout
from mirror_providers.transport import (
    HttpRequest,
    HttpResponse,
    MockTransport,
    RequestsTransport,
    StreamResponse,
    Timeout,
    redact_headers,
)

from .server import FakeServer, Received, Reply, free_port


def test_send_reads_status_headers_body(server: FakeServer) -> None:
    server.route("POST", "/x", lambda r, w: w.json(201, {"echo": r.json()}, {"x-request-id": "req_1"}))
    with RequestsTransport() as t:
        resp = t.send(HttpRequest("POST", server.url + "/x", {"Content-Type": "application/json"}, b'{"a":1}'))
    assert resp.status == 201
    assert resp.headers["X-Request-Id"] == "req_1"  # case-insensitive
    assert resp.text == '{"echo": {"a": 1}}'


def test_error_status_is_a_response_not_an_exception(server: FakeServer) -> None:
    server.route("GET", "/x", lambda r, w: w.json(429, {"error": "slow down"}, {"retry-after": "3"}))
    with RequestsTransport() as t:
        resp = t.send(HttpRequest("GET", server.url + "/x"))
    assert resp.status == 429 and resp.headers["retry-after"] == "3"


def test_gzip_body_is_decoded(server: FakeServer) -> None:
    data = gzip.compress(b'{"ok": true}')
    server.route("GET", "/x", lambda r, w: w.body(200, data, {"Content-Encoding": "gzip"}))
    with RequestsTransport() as t:
        assert t.send(HttpRequest("GET", server.url + "/x")).content == b'{"ok": true}'


def test_redirect_is_not_followed(server: FakeServer) -> None:
    with FakeServer() as other:
        server.route("POST", "/x", lambda r, w: w.body(307, b"", {"Location": other.url + "/steal"}))
        with RequestsTransport() as t:
            resp = t.send(HttpRequest("POST", server.url + "/x", {"Authorization": "Bearer sk-secret"}, b"{}"))
        assert resp.status == 307
        assert other.received == []


def test_connection_refused_is_connect_error() -> None:
    with RequestsTransport() as t, pytest.raises(ConnectError) as info:
        t.send(HttpRequest("GET", f"http://127.0.0.1:{free_port()}/x"))
    assert isinstance(info.value.__cause__, Exception)  # chained from the requests exception


def test_read_timeout_is_request_timeout(server: FakeServer) -> None:
    gate = threading.Event()
    server.route("GET", "/slow", lambda r, w: gate.wait(5))
    try:
        with RequestsTransport() as t, pytest.raises(RequestTimeout, match="read timeout"):
            t.send(HttpRequest("GET", server.url + "/slow", timeout=Timeout(connect=1, read=0.2)))
    finally:
        gate.set()


def test_stream_yields_bytes_as_they_arrive_chunked(server: FakeServer) -> None:
    gate = threading.Event()

    def route(r: Received, w: Reply) -> None:
        w.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
        w.chunk(b"data: 1\n\n")
        gate.wait(5)
        w.chunk(b"data: 2\n\n")
        w.end_chunks()

    server.route("POST", "/s", route)
    with RequestsTransport() as t, t.open_stream(HttpRequest("POST", server.url + "/s", body=b"{}")) as s:
        it = s.iter_bytes()
        assert next(it) == b"data: 1\n\n"  # arrives while the server still holds the rest
        gate.set()
        assert b"".join(it) == b"data: 2\n\n"


def test_gzip_stream_is_decoded_as_it_arrives(server: FakeServer) -> None:
    gate = threading.Event()
    zipper = zlib.compressobj(wbits=31)  # gzip framing

    def route(r: Received, w: Reply) -> None:
        w.head(200, {"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}, chunked=True)
        w.chunk(zipper.compress(b"data: 1\n\n") + zipper.flush(zlib.Z_SYNC_FLUSH))
        gate.wait(5)
        w.chunk(zipper.compress(b"data: 2\n\n") + zipper.flush())
        w.end_chunks()

    server.route("POST", "/s", route)
    with RequestsTransport() as t, t.open_stream(HttpRequest("POST", server.url + "/s", body=b"{}")) as s:
        it = s.iter_bytes()
        assert next(it) == b"data: 1\n\n"  # decompressed before the rest is sent
        gate.set()
        assert b"".join(it) == b"data: 2\n\n"


def test_stream_yields_bytes_as_they_arrive_without_chunked_encoding(server: FakeServer) -> None:
    gate = threading.Event()

    def route(r: Received, w: Reply) -> None:
        w.head(200, {"Content-Type": "text/event-stream"})  # close-delimited body
        w.raw(b"data: 1\n\n")
        gate.wait(5)
        w.raw(b"data: 2\n\n")

    server.route("POST", "/s", route)
    with RequestsTransport() as t, t.open_stream(HttpRequest("POST", server.url + "/s", body=b"{}")) as s:
        it = s.iter_bytes()
        assert next(it) == b"data: 1\n\n"
        gate.set()
        assert b"".join(it) == b"data: 2\n\n"


def test_stream_connection_is_reused_after_full_read(server: FakeServer) -> None:
    server.route("POST", "/s", lambda r, w: w.stream(200, [b"a", b"b"]))
    with RequestsTransport() as t:
        for _ in range(3):
            with t.open_stream(HttpRequest("POST", server.url + "/s", body=b"{}")) as s:
                assert s.read() == b"ab"
    assert server.connections == 1


def test_stream_closed_early_releases_the_response(server: FakeServer) -> None:
    gate = threading.Event()

    def route(r: Received, w: Reply) -> None:
        w.head(200, {}, chunked=True)
        w.chunk(b"first")
        gate.wait(5)

    server.route("POST", "/s", route)
    try:
        with RequestsTransport() as t:
            s = t.open_stream(HttpRequest("POST", server.url + "/s", body=b"{}"))
            it = s.iter_bytes()
            assert next(it) == b"first"
            it.close()  # type: ignore[attr-defined]  # consumer stops early
            assert s.closed
    finally:
        gate.set()


def test_connection_cut_mid_stream_is_protocol_error(server: FakeServer) -> None:
    def route(r: Received, w: Reply) -> None:
        w.head(200, {}, chunked=True)
        w.chunk(b"first")
        w.reset()

    server.route("POST", "/s", route)
    with RequestsTransport() as t, t.open_stream(HttpRequest("POST", server.url + "/s", body=b"{}")) as s:
        it = s.iter_bytes()
        assert next(it) == b"first"
        with pytest.raises(ProtocolError):
            list(it)


def test_no_pool_full_warning_at_pool_concurrency(server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    barrier = threading.Barrier(32, timeout=5)

    def route(r: Received, w: Reply) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()  # all 32 requests are in flight at once
        w.json(200, {})

    server.route("GET", "/x", route)
    with RequestsTransport(pool_size=32) as t, warnings.catch_warnings():
        warnings.simplefilter("error")
        caplog.set_level(logging.WARNING, logger="urllib3")
        with ThreadPoolExecutor(32) as ex:
            for _ in range(3):
                statuses = list(ex.map(lambda _: t.send(HttpRequest("GET", server.url + "/x")).status, range(32)))
                assert statuses == [200] * 32
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    assert server.connections <= 32


@pytest.mark.parametrize("ending", ["read to the end", "closed early", "aborted"])
def test_more_open_streams_than_the_pool_keeps_block_nothing_and_warn_nothing(
        server: FakeServer, caplog: pytest.LogCaptureFixture, ending: str) -> None:
    streams, kept = 12, 4
    release = threading.Event()

    def route(r: Received, w: Reply) -> None:
        w.head(200, chunked=True)
        w.chunk(b"first")
        release.wait(10)  # every stream is open at once
        w.chunk(b"last")
        w.end_chunks()

    server.route("POST", "/s", route)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    with RequestsTransport(pool_size=kept) as t, warnings.catch_warnings():
        warnings.simplefilter("error")
        opened = [t.open_stream(HttpRequest("POST", server.url + "/s", body=b"{}")) for _ in range(streams)]
        pieces = [s.iter_bytes() for s in opened]
        assert [next(p) for p in pieces] == [b"first"] * streams  # none waited for a pooled connection
        assert server.connections == streams
        if ending == "aborted":
            for s in opened:
                s.abort()
        release.set()
        for s, p in zip(opened, pieces, strict=True):
            if ending == "read to the end":
                assert b"".join(p) == b"last"
            s.close()
        if ending == "read to the end":  # the pool keeps what it may and closes the rest
            assert server.wait_open_connections(kept)
            assert t.send(HttpRequest("POST", server.url + "/s", body=b"{}")).status == 200  # reused
            assert server.connections == streams
        else:
            assert server.wait_open_connections(0)
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_closed_transport_refuses() -> None:
    t = RequestsTransport()
    t.close()
    with pytest.raises(ConnectError, match="closed"):
        t.send(HttpRequest("GET", "http://127.0.0.1:1/"))


def test_request_repr_redacts_credentials() -> None:
    req = HttpRequest("POST", "http://h/x", {"Authorization": "Bearer sk-secret", "x-api-key": "sk-ant-secret"})
    assert "secret" not in repr(req)
    assert redact_headers({"Cookie": "a", "Accept": "b"}) == {"Cookie": "[secure]", "Accept": "b"}


def test_debug_log_has_no_secrets(server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    server.route("GET", "/x", lambda r, w: w.json(200, {}))
    caplog.set_level(logging.DEBUG)
    with RequestsTransport() as t:
        t.send(HttpRequest("GET", server.url + "/x?q=sk-query", {"Authorization": "Bearer sk-secret"}))
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("mirror_providers")]
    assert ours and not any("sk-query" in m for m in ours)  # our lines never carry a query string
    assert "sk-secret" not in caplog.text  # headers are never logged, by us or urllib3


def test_mock_transport_records_and_streams() -> None:
    t = MockTransport(lambda req: HttpResponse(200, {}, b"hello"))
    assert t.send(HttpRequest("GET", "http://x/")).content == b"hello"
    with t.open_stream(HttpRequest("GET", "http://x/")) as s:
        assert s.read() == b"hello"
    t2 = MockTransport(lambda req: StreamResponse(200, {}, [b"a", b"b"]))
    assert t2.send(HttpRequest("GET", "http://x/")).content == b"ab"
    assert len(t.requests) == 2


def test_timeout_coerce() -> None:
    d = Timeout(connect=5, read=600)
    assert Timeout.coerce(None, d) is d
    assert Timeout.coerce(2, d) == Timeout(connect=2, read=2)
    assert Timeout.coerce(30, d) == Timeout(connect=5, read=30)


def test_stream_first_bytes_not_delayed(server: FakeServer) -> None:
    """The stream iterator hands bytes over while the server is still mid-response."""
    release = threading.Event()

    def route(r: Received, w: Reply) -> None:
        w.head(200, {}, chunked=True)
        w.chunk(b"x")
        release.wait(5)
        w.end_chunks()

    server.route("POST", "/s", route)
    with RequestsTransport() as t, t.open_stream(HttpRequest("POST", server.url + "/s", body=b"{}")) as s:
        start = time.perf_counter()
        first = next(s.iter_bytes())
        waited = time.perf_counter() - start
        release.set()
    assert first == b"x" and waited < 5  # did not wait for the server's release


def test_close_closes_sockets_even_while_an_exception_holds_the_pool(server: FakeServer) -> None:
    """urllib3 2.x's PoolManager.clear() leaves sockets to the garbage collector; close() must not."""
    gate = threading.Event()
    server.route("GET", "/stall", lambda r, w: (w.head(200, {}, length=10), gate.wait(5)))  # type: ignore[func-returns-value]
    server.route("GET", "/ok", lambda r, w: w.json(200, {}))
    t = RequestsTransport()
    try:
        t.send(HttpRequest("GET", server.url + "/stall", timeout=Timeout(connect=1, read=0.2)))
    except RequestTimeout as exc:
        kept = exc  # a caller holding on to the error (and its traceback)
    gate.set()
    assert t.send(HttpRequest("GET", server.url + "/ok")).status == 200
    t.close()
    import gc

    gc.collect()
    live = [o for o in gc.get_objects() if type(o).__name__ == "HTTPConnection" and getattr(o, "sock", None)
            and o.sock.getpeername()[1] == server.port]
    assert live == [] and kept is not None
