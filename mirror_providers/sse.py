"""Stream framing: Server-Sent Events (via sseclient-py) and JSON lines (Ollama).

Both decoders take an iterator of byte chunks exactly as they arrive and yield each event as soon
as its last byte is in: no read-ahead. Line splitting happens on bytes (only CR, LF, CRLF), and
text is decoded only once an event or line is complete, so a UTF-8 character split across chunks
or a U+2028 inside JSON never breaks a line (protocols.md §8.1).

Choices where the spec and sseclient-py differ (protocols.md §8.3):

* A leading BOM is stripped before sseclient-py sees the bytes (vector 12).
* An event not followed by a blank line at EOF is dispatched (sseclient-py's lenient choice,
  vector 16). Vendors' streams are only complete when their own terminator arrived
  (``[DONE]``, ``message_stop``, ``done: true``); the vendor code checks that.
* ``retry`` is kept only when it is all ASCII digits (vector 14); an ``id`` containing NUL is
  ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sseclient

from .errors import StreamError

__all__ = ["ServerSentEvent", "iter_json_lines", "iter_sse"]

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class ServerSentEvent:
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
            return json.loads(self.data)
        except ValueError as exc:
            raise StreamError(f"malformed JSON in stream event {self.event!r}: {self.data[:200]!r}") from exc


def _strip_bom(chunks: Iterable[bytes]) -> Iterator[bytes]:
    it = iter(chunks)
    head = b""
    for chunk in it:
        head += chunk
        if len(head) >= len(_BOM) or not _BOM.startswith(head):
            break
    if head.startswith(_BOM):
        head = head[len(_BOM):]
    if head:
        yield head
    yield from it


def iter_sse(chunks: Iterable[bytes]) -> Iterator[ServerSentEvent]:
    """Decode SSE events from byte chunks.

    Raises:
        StreamError: the stream is not valid UTF-8.
    """
    last_id: str | None = None
    client = sseclient.SSEClient(_strip_bom(chunks))
    events = client.events()
    while True:
        try:
            ev = next(events)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise StreamError(f"stream is not valid UTF-8: {exc}") from exc
        if ev.id is not None and "\x00" not in ev.id:
            last_id = ev.id
        retry = int(ev.retry) if ev.retry is not None and ev.retry.isascii() and ev.retry.isdigit() else None
        yield ServerSentEvent(ev.event or "message", ev.data, last_id, retry)


def iter_json_lines(chunks: Iterable[bytes]) -> Iterator[Any]:
    """Decode newline-delimited JSON objects (Ollama's streams) from byte chunks.

    Accepts LF and CRLF, skips blank lines, parses a final line that lacks its newline.

    Raises:
        StreamError: a line is not valid JSON or not valid UTF-8.
    """
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        if b"\n" not in chunk:
            continue
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            obj = _parse_line(line)
            if obj is not None:
                yield obj
    obj = _parse_line(buffer)
    if obj is not None:
        yield obj


def _parse_line(line: bytes) -> Any:
    line = line.strip()
    if not line:
        return None
    try:
        return json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise StreamError(f"stream is not valid UTF-8: {exc}") from exc
    except ValueError as exc:
        raise StreamError(f"malformed JSON line in stream: {line[:200]!r}") from exc
