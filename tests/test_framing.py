"""SSE and NDJSON framing against the test vectors of docs/protocols.md §8.3."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator

import pytest
import sseclient

from mirror_providers.errors import StreamError
from mirror_providers.framing import ServerSentEvent, iter_json_lines, iter_sse, loads


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
    def source() -> Iterator[bytes]:
        yield b"data: first\n\n"
        raise AssertionError("read ahead before the first event was consumed")

    it = iter_sse(source())
    assert next(it).data == "first"


@pytest.mark.parametrize("pieces", [[b"data: first\n", b"\n"], [b"data: first\r", b"\n\r", b"\n"],
                                    [b"data: first\n", b"\ndata: sec"]])
def test_event_yielded_when_its_blank_line_arrives_in_a_later_chunk(pieces: list[bytes]) -> None:
    def source() -> Iterator[bytes]:
        yield from pieces
        raise AssertionError("read ahead before the first event was consumed")

    assert next(iter_sse(source())).data == "first"


def test_invalid_utf8_raises_stream_error() -> None:
    with pytest.raises(StreamError, match="UTF-8"):
        list(iter_sse([b"data: \xff\xfe\n\n"]))


def test_malformed_json_event_raises_stream_error() -> None:
    (ev,) = list(iter_sse([b"data: {not json\n\n"]))
    with pytest.raises(StreamError, match="malformed JSON"):
        ev.json()


# -- the fast routes agree with sseclient-py -------------------------------------------------------

def reference_events(stream: bytes) -> list[ServerSentEvent]:
    """sseclient-py alone, given the whole stream at once (its line splitting is only exact then)."""
    last_id = None
    out = []
    for ev in sseclient.SSEClient(iter([stream.removeprefix(b"\xef\xbb\xbf")])).events():
        if ev.id is not None and "\x00" not in ev.id:
            last_id = ev.id
        retry = int(ev.retry) if ev.retry is not None and ev.retry.isascii() and ev.retry.isdigit() else None
        out.append(ServerSentEvent(ev.event or "message", ev.data, last_id, retry))
    return out


TEXTS = ['{"a": 1}', '{"t":"h\u00e9: x"}', "[DONE]", " padded", "", "caf\u00e9 \u2028 line", "a:b:c", "  two"]
LINES: list[Callable[[random.Random], str]] = [
    lambda r: "data: " + r.choice(TEXTS),
    lambda r: "data:" + r.choice(TEXTS),
    lambda r: "data",
    lambda r: "event: " + r.choice(["message_start", "content_block_delta", "ping", "", "error"]),
    lambda r: f"id: {r.randint(0, 99)}",
    lambda r: "retry: " + r.choice(["3000", "3s", ""]),
    lambda r: ": keep-alive",
    lambda r: "foo: bar",
    lambda r: "Data: 1",
]


def random_stream(r: random.Random) -> bytes:
    eol = r.choice(["\n", "\r\n", "\r"])  # one ending per stream: sseclient-py mis-frames mixed ones
    events = []
    for _ in range(r.randint(0, 8)):
        if r.random() < 0.6:  # what vendors send
            lines = [f"data: {r.choice(TEXTS)}"] if r.random() < 0.5 else \
                [f"event: {r.choice(['ping', 'content_block_delta'])}", f"data: {r.choice(TEXTS)}"]
        else:
            lines = [r.choice(LINES)(r) for _ in range(r.randint(1, 4))]
        events.append(eol.join(lines) + eol + eol * r.randint(1, 2))
    stream = "".join(events).encode()
    return (b"\xef\xbb\xbf" if r.random() < 0.1 else b"") + stream


def random_split(r: random.Random, data: bytes) -> list[bytes]:
    cuts = sorted(r.sample(range(len(data) + 1), min(len(data) + 1, r.randint(0, 12))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@pytest.mark.parametrize("seed", range(40))
def test_fast_routes_agree_with_sseclient_on_random_streams(seed: int) -> None:
    r = random.Random(seed)
    for _ in range(50):
        stream = random_stream(r)
        expected = reference_events(stream)
        assert list(iter_sse([stream])) == expected, stream
        assert list(iter_sse(random_split(r, stream))) == expected, stream
        assert list(iter_sse([stream[i:i + 1] for i in range(len(stream))])) == expected, stream


def test_loads_matches_json_loads() -> None:
    for text in ['{"a": [1, 2.5, null]}', ' {"a":1}', '{"a":1} ', '"x"', "12", "1e400", '{"a":"\u2028"}']:
        assert loads(text) == json.loads(text)
        assert loads(text.encode()) == json.loads(text)
    for bad in ["", "{", '{"a":1} x', "{'a': 1}", "NaNa", "1 2"]:
        with pytest.raises(json.JSONDecodeError):
            loads(bad)


# -- NDJSON ------------------------------------------------------------------------------------

def test_ndjson_split_lines_crlf_blank_lines_and_unterminated_last() -> None:
    chunks = [b'{"a":', b'1}\r\n\r\n{"b":2}\n', b"\n", b'{"c":"\xe2\x80', b'\xa8"}']
    assert list(iter_json_lines(chunks)) == [{"a": 1}, {"b": 2}, {"c": "\u2028"}]


def test_ndjson_yields_each_line_as_it_arrives() -> None:
    def source() -> Iterator[bytes]:
        yield b'{"a":1}\n'
        raise AssertionError("read ahead")

    assert next(iter_json_lines(source())) == {"a": 1}


def test_ndjson_malformed_line() -> None:
    with pytest.raises(StreamError, match="malformed JSON"):
        list(iter_json_lines([b'{"a":1}\n{oops\n']))


def test_ndjson_invalid_utf8() -> None:
    with pytest.raises(StreamError, match="UTF-8"):
        list(iter_json_lines([b'{"a":"\xff"}\n']))


@pytest.mark.parametrize("seed", range(20))
def test_ndjson_any_split_gives_the_lines_objects(seed: int) -> None:
    r = random.Random(seed)
    objects = [{"i": i, "t": r.choice(["x", "h\u00e9", "\u2028", " "])} for i in range(r.randint(0, 30))]
    lines = [json.dumps(o, ensure_ascii=False) + r.choice(["\n", "\r\n", "\n\n", "  \n"]) for o in objects]
    data = "".join(lines).encode()
    assert list(iter_json_lines(random_split(r, data))) == objects


# -- hostile shapes: linear, or a reading thread is held beyond any timeout -----------------------

@pytest.mark.timeout(60)  # a hang guard: linear work here is well under a second, quadratic is hours
def test_an_event_of_a_million_lines_is_read_in_one_pass() -> None:
    comments = b":\n" * 2_000_000 + b"data: after\n\n"
    (ev,) = list(iter_sse([comments]))
    assert ev.data == "after"
    many = b"data: x\n" * 1_000_000 + b"\n"
    (ev,) = list(iter_sse([many[i:i + 65536] for i in range(0, len(many), 65536)]))
    assert ev.data == "\n".join(["x"] * 1_000_000)


@pytest.mark.timeout(60)
def test_depth_check_is_linear_on_an_unterminated_string_of_escaped_quotes() -> None:
    from mirror_providers.framing import too_deep

    hostile = '"' + '\\"' * 2_000_000 + "[" * 401
    assert not too_deep(hostile) and not too_deep(hostile.encode())  # all of it is inside the string
    assert too_deep('{"a": "\\\\"}' + "[" * 900)  # an escaped backslash ends its string as it should
