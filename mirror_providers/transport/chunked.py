"""A chunked HTTP/1.1 body (RFC 9112 §7.1) decoded from the connection's buffered reader.

urllib3's ``read_chunked`` reads one chunk per step: a ``readline`` for the size, a
``_safe_read`` for the data and another for its CRLF, then a decoder call and a generator hop
inside an error-catching context manager. A streamed event is one chunk, so that is ~3 us an
event (``bench/``, "stream cost per event"). Here each ``read1`` takes whatever the socket has,
up to ``STREAM_READ_SIZE``, and every chunk in it is decoded in one pass; what arrived is yielded
before the next read blocks, so nothing waits for more bytes than the server sent.

Stricter than urllib3 where it is lax: a size is hex digits only (``int(x, 16)`` also takes
``0x``, ``_``, signs and spaces), at most 16 of them; a chunk's data must be followed by CRLF
(or a lone LF), not by any two bytes; trailers are capped in length and number as headers are.
EOF among the trailers (or instead of their blank line) ends the body, as urllib3 allows.

Errors are urllib3's own classes, so the transport maps them in its one place: a malformed or
truncated body is ``urllib3.exceptions.ProtocolError``, a read that times out is
``ReadTimeoutError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator

from .._redact import snippet
from .._wait import WouldBlock

__all__ = ["MAX_LINE", "MAX_TRAILERS", "decode_chunked"]

MAX_LINE = 65536  # a size or trailer line, as urllib3's _MAX_CHUNK_LINE_LENGTH
MAX_TRAILERS = 100  # as http.client's _MAXHEADERS
_HEX = frozenset(b"0123456789abcdefABCDEF")
_CR, _LF = 13, 10
_SIZE, _DATA, _CRLF, _TRAILER, _DONE = 0, 1, 2, 3, 4
_PLAIN_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})\r\n").match  # the size line every server sends


def decode_chunked(read1: Callable[[int], bytes], size: int,
                   end: Callable[[bool], None] | None = None) -> Generator[bytes, None, bool]:
    """Yield a chunked body's data as it arrives, reading with ``read1(size)``. A ``WouldBlock``
    that ``read1`` returns (a non-blocking source with nothing to read) is yielded as it is.

    Returns (as the generator's value) True when bytes followed the body's end in the same read:
    the connection holds something that is not a response to anything and must not be reused.
    ``end``, if given, is called with that value first, as soon as the body is complete.

    Raises:
        urllib3.exceptions.ProtocolError: a malformed size, CRLF or trailer, or EOF before the end.
        urllib3.exceptions.ReadTimeoutError: a read timed out.
    """
    at = _Position()
    buf = b""
    while True:
        out: list[bytes] = []
        try:
            pos = _parse(buf, at, out)
        except _Malformed as exc:
            if out:  # what came before the damage is delivered first
                yield b"".join(out) if len(out) > 1 else out[0]
            raise _error(*exc.args) from None
        if out:
            yield b"".join(out) if len(out) > 1 else out[0]
        if at.state == _DONE:
            garbage = pos < len(buf)
            if end is not None:
                end(garbage)
            return garbage
        buf = buf[pos:]
        try:
            more = read1(size)
            while more.__class__ is WouldBlock:  # a non-blocking source has nothing now (``_wait``)
                yield more
                more = read1(size)
        except TimeoutError:
            import urllib3.exceptions

            raise urllib3.exceptions.ReadTimeoutError(None, None, "Read timed out.") from None  # type: ignore[arg-type]
        if not more:
            if at.state == _TRAILER:  # EOF instead of the trailers' blank line: "some sites" (urllib3)
                if end is not None:
                    end(False)
                return False
            raise _error("body", "ended prematurely")
        buf = buf + more if buf else more


class _Position:
    """Where the decoder is in the body."""

    __slots__ = ("state", "left", "trailers")

    def __init__(self) -> None:
        self.state = _SIZE
        self.left = 0  # data bytes of the current chunk still to come
        self.trailers = 0


def _parse(buf: bytes, at: _Position, out: list[bytes]) -> int:
    """Decode what ``buf`` holds, appending data to ``out``; return where the undecoded rest
    starts (an unfinished line, a CR whose LF may follow, or bytes after the body's end)."""
    pos, n = 0, len(buf)
    while pos < n:
        state = at.state
        if state == _SIZE:  # the usual case first: a whole chunk, a plain size line, data, CRLF
            plain = _PLAIN_SIZE(buf, pos)
            if plain is not None:
                start = plain.end()
                end = start + int(plain[1], 16)
                if end > start and buf[end:end + 2] == b"\r\n":
                    out.append(buf[start:end])
                    pos = end + 2
                    continue
            # Anything else (an extension, a last chunk, a part of one) goes the general way.
        if state == _DATA:
            take = min(n - pos, at.left)
            out.append(buf if take == n else buf[pos:pos + take])
            pos += take
            at.left -= take
            if not at.left:
                at.state = _CRLF
        elif state == _CRLF:  # checked byte by byte: junk here is refused at once, not at a line's end
            byte = buf[pos]
            if byte == _LF or (byte == _CR and pos + 1 < n and buf[pos + 1] == _LF):
                pos += 1 if byte == _LF else 2
                at.state = _SIZE
            elif byte != _CR or pos + 1 < n:
                raise _Malformed("chunk", f"data not followed by CRLF: {buf[pos:pos + 16]!r}")
            else:
                return pos  # a CR; its LF is still to come
        elif state == _DONE:
            return pos
        else:
            end = buf.find(b"\n", pos)
            if end < 0 or end - pos >= MAX_LINE:
                if n - pos > MAX_LINE or end >= 0:
                    raise _Malformed("chunk size line" if state == _SIZE else "chunk trailer line", "too long")
                return pos  # the rest of the line is still to come
            at.state, at.left, at.trailers = _after_line(buf[pos:end], state, at.trailers)
            pos = end + 1
    return pos


def _after_line(line: bytes, state: int, trailers: int) -> tuple[int, int, int]:
    """The state after a complete line (its LF removed): the next state, the chunk's data length
    when one starts, the trailers counted."""
    if state == _SIZE:
        left = _chunk_size(line)
        return (_DATA if left else _TRAILER), left, trailers
    if line in (b"", b"\r"):  # the blank line after the trailers: the body is complete
        return _DONE, 0, trailers
    if trailers >= MAX_TRAILERS:
        raise _Malformed("chunk trailers", f"more than {MAX_TRAILERS}")
    return _TRAILER, 0, trailers + 1


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip(b" \t\r")
    if not text or len(text) > 16 or not _HEX.issuperset(text):
        raise _Malformed("chunk", f"invalid size line {snippet(line.decode('latin-1'))!r}")
    return int(text, 16)


class _Malformed(Exception):
    """Raised inside the decoder with ``(what, problem)``; leaves it as urllib3's ProtocolError."""


def _error(what: str, problem: str) -> Exception:
    import urllib3.exceptions

    return urllib3.exceptions.ProtocolError(f"Response {what} {problem}")
