"""The chunked-body decoder the transport reads streams with (``transport/chunked.py``).

Unit tests over a buffered reader of known bytes, cut at random; then the same body shapes on
real sockets through ``RequestsTransport`` and a provider: extensions, trailers, bare LFs, bytes
after the body, malformed sizes, a read timeout, EOF mid-chunk, and connection reuse.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from unittest import mock

import pytest
import urllib3.exceptions
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror_providers.errors import ProtocolError, RequestTimeout
from mirror_providers.openai import OpenAIProvider
from mirror_providers.transport import HttpRequest, RequestsTransport, Timeout, chunked
from mirror_providers.transport.chunked import MAX_LINE, MAX_TRAILERS, decode_chunked

from .server import FakeServer, Received, Reply, openai_sse


class _Trickle(io.RawIOBase):
    """A raw stream that hands out its bytes in the given cuts, as a socket might."""

    def __init__(self, data: bytes, cuts: list[int]) -> None:
        self._data, self._cuts, self._pos = data, list(cuts), 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        step = self._cuts.pop(0) if self._cuts else len(self._data)
        piece = self._data[self._pos:self._pos + min(step, len(b))]
        b[:len(piece)] = piece
        self._pos += len(piece)
        return len(piece)


def _decode(wire: bytes, cuts: list[int] | None = None, size: int = 65536) -> tuple[list[bytes], bool]:
    reader = io.BufferedReader(_Trickle(wire, cuts or []), buffer_size=8)  # tiny: the cuts decide reads
    gen = decode_chunked(reader.read1, size)
    pieces: list[bytes] = []
    while True:
        try:
            pieces.append(next(gen))
        except StopIteration as stop:
            return pieces, stop.value


def _chunked(parts: list[bytes], *, ext: str = "", eol: bytes = b"\r\n", trailers: bytes = b"") -> bytes:
    body = b"".join(b"%x%s%s%s%s" % (len(p), ext.encode(), eol, p, eol) for p in parts if p)
    return body + b"0" + eol + trailers + eol


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.binary(min_size=1, max_size=300), max_size=12),
       cuts=st.lists(st.integers(1, 64), max_size=80),
       ext=st.sampled_from(["", ";x=1", "; name=\"quoted\"", "  "]),
       eol=st.sampled_from([b"\r\n", b"\n"]),
       trailers=st.sampled_from([b"", b"X-Check: 1\r\n", b"A: 1\r\nB: 2\r\n"]))
def test_any_cut_of_a_body_decodes_to_its_data(parts: list[bytes], cuts: list[int], ext: str, eol: bytes,
                                               trailers: bytes) -> None:
    pieces, garbage = _decode(_chunked(parts, ext=ext, eol=eol, trailers=trailers), cuts)
    assert b"".join(pieces) == b"".join(parts)
    assert all(pieces) and not garbage


def _outcome(wire: bytes, cuts: list[int]) -> object:
    try:
        return _decode(wire, cuts)
    except urllib3.exceptions.ProtocolError as exc:
        return str(exc)


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=6),
       damage=st.lists(st.tuples(st.integers(0, 400), st.sampled_from(b"0aF\r\n; xZ")), max_size=3),
       cuts=st.lists(st.integers(1, 64), max_size=30))
def test_the_whole_chunk_shortcut_decides_every_body_as_the_general_path_does(
        parts: list[bytes], damage: list[tuple[int, int]], cuts: list[int]) -> None:
    # Valid bodies with a few bytes changed, in any cuts: the same pieces, or the same error.
    wire = bytearray(_chunked(parts))
    for at, byte in damage:
        wire[at % len(wire)] = byte
    with mock.patch.object(chunked, "_PLAIN_SIZE", lambda buf, pos: None):
        general = _outcome(bytes(wire), list(cuts))
    assert _outcome(bytes(wire), list(cuts)) == general


def test_data_is_yielded_before_the_next_read_blocks() -> None:
    reads: list[int] = []
    feed = iter([b"5\r\nhel", b"lo\r\n3\r\nabc\r\n", b"0\r\n\r\n"])

    def read1(n: int) -> bytes:
        reads.append(n)
        return next(feed, b"")

    gen = decode_chunked(read1, 4096)
    assert next(gen) == b"hel"  # what the first read held, not waiting for the chunk's end
    assert len(reads) == 1
    assert next(gen) == b"loabc"  # both chunks of the second read, in one piece
    assert len(reads) == 2
    with pytest.raises(StopIteration):
        next(gen)


def test_bytes_after_the_end_are_reported() -> None:
    assert _decode(b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n") == ([b"ok"], True)


def test_eof_among_the_trailers_ends_the_body() -> None:
    assert _decode(b"2\r\nok\r\n0\r\n") == ([b"ok"], False)
    assert _decode(b"2\r\nok\r\n0\r\nX-Trailer: cut") == ([b"ok"], False)


@pytest.mark.parametrize("wire, problem", [
    (b"0x2\r\nok\r\n0\r\n\r\n", "invalid size"),
    (b"-2\r\nok\r\n0\r\n\r\n", "invalid size"),
    (b"+2\r\nok\r\n0\r\n\r\n", "invalid size"),
    (b"1_0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n", "invalid size"),
    (b"\r\nok\r\n0\r\n\r\n", "invalid size"),
    (b"zz\r\n", "invalid size"),
    (b"1" * 17 + b"\r\n", "invalid size"),
    (b"2\r\nokXX3\r\nabc\r\n0\r\n\r\n", "not followed by CRLF"),
    (b"2\r\nok\rX", "not followed by CRLF"),
    (b"2\r\nok", "ended prematurely"),
    (b"2\r\no", "ended prematurely"),
    (b"2\r\nok\r\n", "ended prematurely"),
    (b"", "ended prematurely"),
    (b"1" * (MAX_LINE + 1), "too long"),
    (b"2;" + b"e" * MAX_LINE + b"\r\nok\r\n0\r\n\r\n", "too long"),
    (b"0\r\n" + b"X: 1\r\n" * (MAX_TRAILERS + 1) + b"\r\n", "more than"),
])
def test_a_malformed_body_is_a_protocol_error(wire: bytes, problem: str) -> None:
    with pytest.raises(urllib3.exceptions.ProtocolError, match=problem):
        _decode(wire, [7] * 100000)


def test_a_huge_size_line_is_refused_before_it_is_all_held() -> None:
    held: list[int] = []

    def read1(n: int) -> bytes:
        held.append(n)
        return b"a" * 4096  # a size line that never ends

    with pytest.raises(urllib3.exceptions.ProtocolError, match="too long"):
        list(decode_chunked(read1, 4096))
    assert len(held) <= MAX_LINE // 4096 + 2


def test_a_read_that_times_out_is_urllib3s_read_timeout() -> None:
    def read1(n: int) -> bytes:
        raise TimeoutError("timed out")

    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        list(decode_chunked(read1, 4096))


# ---- on real sockets -------------------------------------------------------------------------

def _raw_route(server: FakeServer, wire: Callable[[], Iterator[bytes]], path: str = "/v1/chat/completions") -> None:
    def handle(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
        for piece in wire():
            reply.raw(piece)

    server.route("POST", path, handle)


def _sse_wire(text: str, *, ext: str = "", eol: bytes = b"\r\n", trailers: bytes = b"",
              after: bytes = b"") -> Callable[[], Iterator[bytes]]:
    def wire() -> Iterator[bytes]:
        frames = openai_sse(text)
        data = _chunked(frames, ext=ext, eol=eol, trailers=trailers) + after
        for i in range(0, len(data), 5):  # five bytes at a time: sizes, data and CRLFs cut anywhere
            yield data[i:i + 5]

    return wire


@pytest.mark.parametrize("shape", [
    {}, {"ext": ";ext=1"}, {"eol": b"\n"}, {"trailers": b"X-Checksum: abc\r\n"},
])
def test_odd_but_valid_bodies_stream_and_the_connection_is_reused(shape: dict[str, object]) -> None:
    with FakeServer() as server:
        _raw_route(server, _sse_wire("one two three", **shape))  # type: ignore[arg-type]
        llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, timeout=10)
        for _ in range(3):
            assert "".join(c.content for c in llm.stream_sync("hi")).split() == ["one", "two", "three"]
        assert server.connections == 1
        llm.close()


def test_bytes_after_the_body_close_the_connection_instead_of_poisoning_the_next_call() -> None:
    with FakeServer() as server:
        _raw_route(server, _sse_wire("one two", after=b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
        llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, timeout=10)
        for _ in range(3):
            assert "".join(c.content for c in llm.stream_sync("hi")).split() == ["one", "two"]
        assert server.connections == 3  # each stream's connection was closed, none reused
        llm.close()


@pytest.mark.parametrize("tail", [b"zz\r\n", b"5\r\nabcdeXY", b"5\r\nab"])
def test_a_malformed_or_cut_body_on_the_wire_is_a_typed_protocol_error(tail: bytes) -> None:
    def wire() -> Iterator[bytes]:
        frames = b"".join(openai_sse("one")[:2])
        yield b"%x\r\n%s\r\n" % (len(frames), frames)
        yield tail

    def handle(req: Received, reply: Reply) -> None:
        reply.head(200, {"Content-Type": "text/event-stream"}, chunked=True)
        for piece in wire():
            reply.raw(piece)
        reply._h.close_connection = True  # a cut body is followed by EOF; junk is refused before it

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", handle)
        llm = OpenAIProvider(api_key="sk-test", base_url=server.url + "/v1", max_retries=0, timeout=10)
        got: list[str] = []
        with pytest.raises(ProtocolError):
            for chunk in llm.stream_sync("hi"):
                got.append(chunk.content)
        assert "".join(got) == "one"  # what came before the damage was delivered
        llm.close()


def test_a_stream_that_stops_mid_chunk_times_out_as_a_request_timeout() -> None:
    release = threading.Event()

    def wire() -> Iterator[bytes]:
        frame = openai_sse("one")[0]
        yield b"%x\r\n%s" % (len(frame) + 10, frame)  # ten bytes of this chunk never come
        release.wait(30)

    with FakeServer() as server:
        _raw_route(server, wire)
        transport = RequestsTransport()
        request = HttpRequest("POST", server.url + "/v1/chat/completions", {}, b"{}", timeout=Timeout(connect=5, read=0.3))
        try:
            with transport.open_stream(request) as stream:
                it = stream.iter_bytes()
                assert next(it).startswith(b"data: ")  # the part that came is delivered at once
                with pytest.raises(RequestTimeout):
                    next(it)
        finally:
            release.set()
            transport.close()


def test_an_abort_wakes_a_read_blocked_inside_a_chunk() -> None:
    release = threading.Event()

    def wire() -> Iterator[bytes]:
        yield b"20\r\n" + b"x" * 10
        release.wait(30)

    with FakeServer() as server:
        _raw_route(server, wire)
        transport = RequestsTransport()
        request = HttpRequest("POST", server.url + "/v1/chat/completions", {}, b"{}", timeout=Timeout(connect=5, read=30))
        try:
            stream = transport.open_stream(request)
            it = stream.iter_bytes()
            assert next(it) == b"x" * 10
            threading.Timer(0.2, stream.abort).start()
            with pytest.raises(ProtocolError, match="ended prematurely"):  # woken by the abort, not at 30 s
                next(it)
            stream.close()
        finally:
            release.set()
            transport.close()
