"""Stream framing: Server-Sent Events and JSON lines (Ollama).

Both decoders take an iterator of byte chunks exactly as they arrive and yield each event as soon
as its last byte is in: no read-ahead. A ``WouldBlock`` marker among the chunks (``_wait``) is
yielded as it is, between events. Line splitting happens on bytes (only CR, LF, CRLF), and
text is decoded only once an event or line is complete, so a UTF-8 character split across chunks
or a U+2028 inside JSON never breaks a line (docs/protocols.md §8.1).

SSE is decoded in two steps. Framing (finding the blank lines between events) works on whole
chunks with ``bytes`` methods: line endings are normalised to LF, a CR that ends a chunk waits
for the next one (it may be half of a CRLF), and the bytes of an unfinished event are kept until
a chunk holds its end. Each event's fields are then read in one pass over its lines, as
sseclient-py reads them (whose own reader is quadratic in an event's lines), except for the two
shapes vendors send on every event, ``data: X`` and ``event: E`` + ``data: X`` (docs/protocols.md
§8.2), which are sliced out directly; ``tests/test_framing.py`` checks both routes agree with
sseclient-py on random streams.
Framing an event this way costs 0.6-0.9 us, where feeding the bytes to sseclient-py line by line
cost about 3 us (``bench/``, "stream cost per event").

Choices where the spec and sseclient-py differ (docs/protocols.md §8.3):

* A leading BOM is stripped (vector 12).
* An event not followed by a blank line at EOF is dispatched (sseclient-py's lenient choice,
  vector 16). Vendors' streams are only complete when their own terminator arrived
  (``[DONE]``, ``message_stop``, ``done: true``); the vendor code checks that.
* ``retry`` is kept only when it is all ASCII digits (vector 14); an ``id`` containing NUL is
  ignored.
"""

from __future__ import annotations

import functools
import itertools
import json
import json.scanner
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from ._redact import snippet
from ._wait import WouldBlock
from .errors import ResponseTooLargeError, StreamError

__all__ = ["ServerSentEvent", "iter_json_lines", "iter_sse", "loads"]

_BOM = b"\xef\xbb\xbf"
_CR, _LF = 13, 10  # as ints: ``10 in chunk`` finds an LF several times faster than ``b"\n" in chunk``
# The C scanner behind json.loads, called directly: json.loads adds a whitespace regex on each side
# and two Python frames, a third of the cost of decoding a typical stream frame.
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def loads(text: str | bytes) -> Any:
    """``json.loads`` without its per-call overhead when the text is one JSON value with no
    surrounding space (every vendor frame); anything else takes ``json.loads`` itself, so the
    result and the error are exactly its own.

    Raises:
        ValueError: not valid JSON (``json.JSONDecodeError``), or bytes not valid UTF-8.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        value, end = _scan(text, 0)
    except (StopIteration, ValueError):  # the scanner's "no value here", or a malformed one
        pass
    else:
        if end == len(text):
            return value
    return json.loads(text)


class ServerSentEvent(NamedTuple):
    """One dispatched event.

    Attributes:
        event: the event type (``"message"`` when the stream named none).
        data: the data lines joined with ``\\n``.
        id: the last event id seen so far, or None.
        retry: the reconnection delay in milliseconds, when valid.
    """

    event: str
    data: str
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """Parse ``data`` as JSON; a malformed frame raises ``StreamError``."""
        try:
            if len(self.data) >= 2 * MAX_JSON_DEPTH and too_deep(self.data):  # (a usual frame is shorter)
                raise RecursionError
            return loads(self.data)
        except RecursionError:
            raise StreamError(f"stream event {self.event!r} is JSON nested too deep to read") from None
        except ValueError as exc:
            raise StreamError(f"malformed JSON in stream event {self.event!r}: {snippet(self.data)!r}") from exc


_event = functools.partial(tuple.__new__, ServerSentEvent)  # skips NamedTuple's Python-level __new__


def iter_sse(chunks: Iterable[bytes], max_event_bytes: int | None = None) -> Iterator[ServerSentEvent]:  # noqa: C901
    """Decode SSE events from byte chunks.

    Framing and the two common event shapes share one frame on purpose: this loop runs once per
    streamed event, and each helper generator would add a call to every event (bench/frames.py).

    Raises:
        StreamError: the stream is not valid UTF-8.
        ResponseTooLargeError: an event grew past ``max_event_bytes`` before its blank line
            (raised as soon as it does, having held about that much).
    """
    last_id: list[str | None] = [None]  # the id persists across events
    pending: list[bytes] = []  # the unfinished event's bytes: no blank line inside
    held = 0  # their length
    held_cr = False  # the last chunk ended in CR: with an LF opening the next one it is one CRLF
    head: bytes | None = b""  # the first bytes, until we know whether they start with a BOM
    try:
        # A blank line after EOF dispatches an unterminated last event (the lenient choice).
        for chunk in itertools.chain(chunks, (b"\n\n",)):
            if chunk.__class__ is WouldBlock:  # a non-blocking source has nothing now: passed up
                yield chunk  # type: ignore[misc]
                continue
            if head is not None:
                head += chunk
                if len(head) < len(_BOM) and _BOM.startswith(head):
                    continue
                chunk, head = head[len(_BOM):] if head.startswith(_BOM) else head, None
            if held_cr or _CR in chunk:
                if held_cr:
                    chunk, held_cr = b"\r" + chunk, False
                if chunk.endswith(b"\r"):
                    chunk, held_cr = chunk[:-1], True
                chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if not pending and chunk.endswith(b"\n\n"):  # whole events: the usual case
                blocks = chunk.split(b"\n\n")
                blocks.pop()  # "" or a lone LF, which would only end an empty event
            # A blank line inside the chunk, or pending's last LF followed by the chunk's first.
            elif b"\n\n" in chunk or (pending and pending[-1].endswith(b"\n") and chunk.startswith(b"\n")):
                pending.append(chunk)
                blocks = b"".join(pending).split(b"\n\n")
                pending.clear()
                rest = blocks.pop()
                held = len(rest)
                if rest:
                    pending.append(rest)
                if max_event_bytes is not None and held > max_event_bytes:
                    raise _too_large("event", max_event_bytes)
            else:
                if chunk:
                    pending.append(chunk)
                    held += len(chunk)
                    if max_event_bytes is not None and held > max_event_bytes:
                        raise _too_large("event", max_event_bytes)
                continue
            for block in blocks:
                # The two shapes vendors send are sliced out; anything else goes to sseclient-py.
                if block.startswith(b"data: ") and _LF not in block:
                    yield _event(("message", block[6:].decode(), last_id[0], None))
                    continue
                if block.startswith(b"event: "):
                    name, data_line, data = block.partition(b"\ndata: ")
                    if data_line and _LF not in name and _LF not in data:
                        yield _event((name[7:].decode() or "message", data.decode(), last_id[0], None))
                        continue
                event = _parse_fields(block, last_id)
                if event is not None:
                    yield event
    except UnicodeDecodeError as exc:
        failure, cause = _not_utf8(exc)
    else:
        return
    raise failure from cause  # outside the handler: the original, holding the raw bytes, is not kept


def _not_utf8(exc: UnicodeDecodeError) -> tuple[StreamError, UnicodeDecodeError]:
    """A StreamError for undecodable bytes, and a cause that holds only the offending bytes: the
    original holds the whole chunk, which may echo a key, and crash reporters read causes."""
    bad = exc.object[exc.start:exc.end]
    error = StreamError(f"stream is not valid UTF-8: {exc.encoding} cannot decode {bad!r} at byte {exc.start} "
                        f"of a frame: {exc.reason}")
    return error, UnicodeDecodeError(exc.encoding, bad, 0, len(bad), exc.reason)


def _parse_fields(block: bytes, last_id: list[str | None]) -> ServerSentEvent | None:
    """The event in ``block`` (its lines, LF-separated), or None when it has no data: one pass
    over its lines, as sseclient-py reads them (``tests/test_framing.py`` checks the two agree).
    sseclient-py itself is not used: it grows an event one line at a time (``data += line``),
    which is quadratic in the event's lines; a hostile 2 MB event of comment lines held the
    reading thread for 20 s, beyond any timeout's reach."""
    data: list[str] = []
    name = ""
    event_id: str | None = None
    retry_text: str | None = None
    for line in block.decode().split("\n"):  # LF only: U+2028 and friends are not line ends here
        if not line.strip() or line[0] == ":":  # blank, or a comment
            continue
        field, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
        elif field == "id":
            event_id = value
        elif field == "retry":
            retry_text = value
    if not data:
        return None
    if event_id is not None and "\x00" not in event_id:
        last_id[0] = event_id
    retry = int(retry_text) if retry_text is not None and retry_text.isascii() and retry_text.isdigit() else None
    return ServerSentEvent(name or "message", "\n".join(data), last_id[0], retry)


def iter_json_lines(chunks: Iterable[bytes], max_line_bytes: int | None = None) -> Iterator[Any]:
    """Decode newline-delimited JSON objects (Ollama's streams) from byte chunks.

    Accepts LF and CRLF, skips blank lines, parses a final line that lacks its newline.

    Raises:
        StreamError: a line is not valid JSON or not valid UTF-8.
        ResponseTooLargeError: a line grew past ``max_line_bytes`` before its newline.
    """
    pending: list[bytes] = []  # the unfinished line's bytes
    held = 0  # their length
    for chunk in itertools.chain(chunks, (b"\n",)):  # an LF after EOF ends an unterminated last line
        if chunk.__class__ is WouldBlock:  # a non-blocking source has nothing now: passed up
            yield chunk
            continue
        if _LF not in chunk:
            if chunk:
                pending.append(chunk)
                held += len(chunk)
                if max_line_bytes is not None and held > max_line_bytes:
                    raise _too_large("line", max_line_bytes)
            continue
        if pending:
            pending.append(chunk)
            chunk = b"".join(pending)
            pending.clear()
        lines = chunk.split(b"\n")
        rest = lines.pop()
        held = len(rest)
        if rest:
            pending.append(rest)
        if max_line_bytes is not None and held > max_line_bytes:
            raise _too_large("line", max_line_bytes)
        for line in lines:
            obj = _parse_line(line)
            if obj is not None:
                yield obj


# JSON nested deeper than this is refused unread. Python's parser would raise RecursionError near
# the interpreter's recursion limit, but a garbage collection that runs while it is that deep
# calls weakref callbacks there too, and those fail as "unraisable" noise. Real answers nest a
# few levels; a tool's arguments perhaps a few dozen.
MAX_JSON_DEPTH = 400
# A string, or an unterminated one to the end of the text (its closing quote is optional: a
# string that must end in a quote is retried from each quote inside it, which is quadratic on
# text such as '"' followed by many '\\"'), or a bracket.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]')
_BYTE_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]')


def too_deep(text: str | bytes) -> bool:
    """Whether JSON text opens more than ``MAX_JSON_DEPTH`` arrays and objects inside each other.
    Cheap for ordinary text: only text with that many brackets is scanned."""
    if len(text) < 2 * MAX_JSON_DEPTH:
        return False
    if isinstance(text, str):
        if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
            return False
        tokens: Iterator[Any] = (m.group() for m in _TOKENS.finditer(text))
        opening: tuple[Any, ...] = ("[", "{")
        closing: tuple[Any, ...] = ("]", "}")
    else:
        if text.count(b"[") + text.count(b"{") <= MAX_JSON_DEPTH:
            return False
        tokens = (m.group() for m in _BYTE_TOKENS.finditer(text))
        opening, closing = (b"[", b"{"), (b"]", b"}")
    depth = 0
    for token in tokens:
        if token in opening:
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif token in closing:
            depth -= 1
    return False


def _too_large(what: str, limit: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(f"a stream {what} passed {limit} bytes without ending (Limits.max_event_bytes)")


def _parse_line(line: bytes) -> Any:
    line = line.strip()
    if not line:
        return None
    cause: BaseException | None = None
    try:
        if len(line) >= 2 * MAX_JSON_DEPTH and too_deep(line):  # (a usual line is shorter)
            raise RecursionError
        return loads(line)
    except UnicodeDecodeError as exc:
        failure, cause = _not_utf8(exc)
    except RecursionError:
        failure = StreamError("a stream line is JSON nested too deep to read")
    except ValueError as exc:
        failure = StreamError(f"malformed JSON line in stream: {snippet(line.decode('utf-8', 'replace'))!r}")
        cause = ValueError(str(exc))  # the parser's own error holds the whole line as .doc
    raise failure from cause  # outside the handlers, so the original is not kept as the context
