"""SSE and NDJSON framing against the test vectors of protocols.md §8.3."""

from __future__ import annotations

import pytest

from mirror_providers.errors import StreamError
from mirror_providers.sse import iter_json_lines, iter_sse


def events(*chunks: bytes) -> list[tuple[str, str]]:
    return [(e.event, e.data) for e in iter_sse(iter(chunks))]


@pytest.mark.parametrize(
    "chunks, expected",
    [
        pytest.param([b'data: {"a":1}\n\n'], [("message", '{"a":1}')], id="1-simple"),
        pytest.param([b'data: {"a"', b":1}\n", b"\n"], [("message", '{"a":1}')], id="2-split"),
        pytest.param([b"event: ping\r\ndata: {}\r\n\r\n"], [("ping", "{}")], id="3-crlf"),
        pytest.param([b"data: x\r", b"\n\r\n"], [("message", "x")], id="4-crlf-split"),
        pytest.param([b"data: x\r\rdata: y\r\r"], [("message", "x"), ("message", "y")], id="5-cr-only"),
        pytest.param([b": OPENROUTER PROCESSING\n\ndata: 1\n\n"], [("message", "1")], id="6-comment"),
        pytest.param([b"data: a\ndata: b\n\n"], [("message", "a\nb")], id="7-multiline"),
        pytest.param([b"data:x\n\n", b"data:  x\n\n"], [("message", "x"), ("message", " x")], id="8-one-space"),
        pytest.param([b"data\n\n"], [("message", "")], id="9-bare-data"),
        pytest.param([b"event: ping\n\n"], [], id="10-no-data"),
        pytest.param([b'data: {"c":"\xe2', b'\x80\xa8"}\n\n'], [("message", '{"c":"\u2028"}')], id="11-u2028-split"),
        pytest.param([b"\xef\xbb\xbfdata: 1\n\n"], [("message", "1")], id="12-bom"),
        pytest.param([b"\xef\xbb", b"\xbfdata: 1\n\n"], [("message", "1")], id="12b-bom-split"),
        pytest.param([b"foo: bar\ndata: 1\n\n"], [("message", "1")], id="15-unknown-field"),
        pytest.param([b'event: message_start\ndata: {"type":"message_start"   }\n\n'],
                     [("message_start", '{"type":"message_start"   }')], id="17-padding"),
        pytest.param([b"Data: 1\n\n"], [], id="18-case-sensitive"),
    ],
)
def test_vectors(chunks: list[bytes], expected: list[tuple[str, str]]) -> None:
    assert events(*chunks) == expected


def test_vector_13_id_and_retry_kept() -> None:
    (ev,) = list(iter_sse([b"id: 7\nretry: 3000\ndata: 1\n\n"]))
    assert (ev.data, ev.id, ev.retry) == ("1", "7", 3000)


def test_vector_14_bad_retry_ignored() -> None:
    (ev,) = list(iter_sse([b"retry: 3s\ndata: 1\n\n"]))
    assert ev.retry is None and ev.data == "1"


def test_vector_16_unterminated_final_event_is_dispatched() -> None:
    # Our documented choice (lenient, as sseclient-py): vendors check their own terminator.
    assert events(b"data: [DONE]") == [("message", "[DONE]")]


def test_id_persists_across_events() -> None:
    evs = list(iter_sse([b"id: 1\ndata: a\n\ndata: b\n\n"]))
    assert [e.id for e in evs] == ["1", "1"]


def test_byte_at_a_time() -> None:
    raw = b'event: content_block_delta\ndata: {"t":"h\xc3\xa9"}\n\ndata: [DONE]\n\n'
    assert events(*[raw[i:i + 1] for i in range(len(raw))]) == [
        ("content_block_delta", '{"t":"hé"}'), ("message", "[DONE]")]


def test_event_yielded_before_the_stream_continues() -> None:
    def source():
        yield b"data: first\n\n"
        raise AssertionError("read ahead before the first event was consumed")

    it = iter_sse(source())
    assert next(it).data == "first"


def test_invalid_utf8_raises_stream_error() -> None:
    with pytest.raises(StreamError, match="UTF-8"):
        list(iter_sse([b"data: \xff\xfe\n\n"]))


def test_malformed_json_event_raises_stream_error() -> None:
    (ev,) = list(iter_sse([b"data: {not json\n\n"]))
    with pytest.raises(StreamError, match="malformed JSON"):
        ev.json()


# -- NDJSON ------------------------------------------------------------------------------------

def test_ndjson_split_lines_crlf_blank_lines_and_unterminated_last() -> None:
    chunks = [b'{"a":', b'1}\r\n\r\n{"b":2}\n', b"\n", b'{"c":"\xe2\x80', b'\xa8"}']
    assert list(iter_json_lines(chunks)) == [{"a": 1}, {"b": 2}, {"c": "\u2028"}]


def test_ndjson_yields_each_line_as_it_arrives() -> None:
    def source():
        yield b'{"a":1}\n'
        raise AssertionError("read ahead")

    assert next(iter_json_lines(source())) == {"a": 1}


def test_ndjson_malformed_line() -> None:
    with pytest.raises(StreamError, match="malformed JSON"):
        list(iter_json_lines([b'{"a":1}\n{oops\n']))


def test_ndjson_invalid_utf8() -> None:
    with pytest.raises(StreamError, match="UTF-8"):
        list(iter_json_lines([b'{"a":"\xff"}\n']))
