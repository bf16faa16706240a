"""RetryPolicy, Retry-After parsing and RetryingTransport, with an injected sleep."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from mirror_providers.errors import ConnectError, ProtocolError
from mirror_providers.retry import RetryingTransport, RetryPolicy, parse_retry_after
from mirror_providers.transport import HttpRequest, HttpResponse, MockTransport, StreamResponse

NOW = 1_700_000_000.0


@pytest.mark.parametrize("headers, expected", [
    ({"retry-after-ms": "250"}, 0.25),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ({"retry-after": "2.5"}, 2.5),
    ({"retry-after": formatdate(NOW + 30, usegmt=True)}, 30.0),
    ({"retry-after": formatdate(NOW - 30, usegmt=True)}, 0.0),
    ({"retry-after": "soon"}, None),
    ({"retry-after": "-1"}, None),
    ({"retry-after-ms": "x", "retry-after": "3"}, 3.0),
    ({}, None),
])
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_backoff_grows_caps_and_jitters() -> None:
    p = RetryPolicy(random=lambda: 0.0)
    assert [p.backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert RetryPolicy(random=lambda: 1.0).backoff(1) == 0.375  # at most -25 %


def test_policy_rejects_negative() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)


def script(*answers: object) -> MockTransport:
    queue = list(answers)

    def handler(req: HttpRequest) -> HttpResponse | StreamResponse:
        a = queue.pop(0)
        if isinstance(a, Exception):
            raise a
        return a  # type: ignore[return-value]

    return MockTransport(handler)


def resp(status: int, **headers: str) -> HttpResponse:
    return HttpResponse(status, {k.replace("_", "-"): v for k, v in headers.items()}, b"")


REQ = HttpRequest("POST", "http://x/", body=b"{}")


def test_retries_connect_errors_and_statuses() -> None:
    slept: list[float] = []
    inner = script(ConnectError("refused"), resp(529), resp(200))
    t = RetryingTransport(inner, RetryPolicy(max_retries=2, sleep=slept.append, random=lambda: 0.0))
    assert t.send(REQ).status == 200
    assert slept == [0.5, 1.0] and len(inner.requests) == 3


@pytest.mark.parametrize("status, retried", [(408, True), (409, True), (429, True), (500, True), (502, True),
                                             (529, True), (400, False), (401, False), (404, False)])
def test_which_statuses_retry(status: int, retried: bool) -> None:
    inner = script(resp(status), resp(200))
    t = RetryingTransport(inner, RetryPolicy(max_retries=1, sleep=lambda s: None))
    assert t.send(REQ).status == (200 if retried else status)


def test_gives_up_after_max_retries() -> None:
    inner = script(resp(500), resp(500), resp(503))
    t = RetryingTransport(inner, RetryPolicy(max_retries=2, sleep=lambda s: None))
    assert t.send(REQ).status == 503 and len(inner.requests) == 3
    inner = script(ProtocolError("reset"), ProtocolError("reset"))
    with pytest.raises(ProtocolError):
        RetryingTransport(inner, RetryPolicy(max_retries=1, sleep=lambda s: None)).send(REQ)


def test_should_retry_header_both_ways() -> None:
    inner = script(resp(400, x_should_retry="true"), resp(200))
    assert RetryingTransport(inner, RetryPolicy(sleep=lambda s: None)).send(REQ).status == 200
    inner = script(resp(503, x_should_retry="false"))
    assert RetryingTransport(inner, RetryPolicy(sleep=lambda s: None)).send(REQ).status == 503


def test_retry_after_honoured_and_capped() -> None:
    slept: list[float] = []
    inner = script(resp(429, retry_after="3"), resp(200))
    RetryingTransport(inner, RetryPolicy(sleep=slept.append)).send(REQ)
    assert slept == [3.0]
    slept.clear()
    inner = script(resp(429, retry_after="61"))
    assert RetryingTransport(inner, RetryPolicy(sleep=slept.append)).send(REQ).status == 429
    assert slept == []


def test_stream_retried_only_before_it_is_returned() -> None:
    closed: list[bool] = []
    first = StreamResponse(503, {}, [b"busy"], on_close=lambda: closed.append(True))
    inner = script(first, StreamResponse(200, {}, [b"data"]))
    s = RetryingTransport(inner, RetryPolicy(sleep=lambda s: None)).open_stream(REQ)
    assert s.status == 200 and s.read() == b"data"
    assert closed == [True]  # the refused stream was released


def test_zero_retries() -> None:
    inner = script(resp(500))
    assert RetryingTransport(inner, RetryPolicy(max_retries=0)).send(REQ).status == 500
