"""RetryPolicy, Retry-After parsing and RetryingTransport, with an injected sleep."""

from __future__ import annotations

import dataclasses
import json
from email.utils import formatdate

import pytest

from mirror_providers.errors import ConnectError, ProtocolError, QuotaExceededError, RateLimitError, ServerError
from mirror_providers.openai import OpenAIProvider
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


# -- the providers' call loop: classified first, retried only when the class says so ---------------

def body_resp(status: int, body: dict[str, object], **headers: str) -> HttpResponse:
    return HttpResponse(status, {k.replace("_", "-"): v for k, v in headers.items()}, json.dumps(body).encode())


OK = body_resp(200, {"model": "m", "choices": [{"index": 0, "message": {"content": "ok"}, "finish_reason": "stop"}]})


def openai(inner: MockTransport, slept: list[float], **kwargs: object) -> OpenAIProvider:
    return OpenAIProvider(api_key="sk-x", api="chat", transport=inner, retry=RetryPolicy(sleep=slept.append, random=lambda: 0.0),
                          **kwargs)  # type: ignore[arg-type]


def test_quota_429_is_not_retried_but_rate_limit_429_is() -> None:
    slept: list[float] = []
    quota = body_resp(429, {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota",
                                      "code": "insufficient_quota"}})
    inner = script(quota, OK)
    with pytest.raises(QuotaExceededError):
        openai(inner, slept).generate_sync("hi")
    assert len(inner.requests) == 1 and slept == []  # waiting does not refill a quota

    limited = body_resp(429, {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}})
    inner = script(limited, limited, OK)
    assert openai(inner, slept).generate_sync("hi").content == "ok"
    assert len(inner.requests) == 3 and slept == [0.5, 1.0]


def test_the_vendors_should_retry_header_decides_either_way() -> None:
    slept: list[float] = []
    inner = script(body_resp(503, {"error": {"message": "busy"}}, x_should_retry="false"), OK)
    with pytest.raises(ServerError):
        openai(inner, slept).generate_sync("hi")
    assert len(inner.requests) == 1
    inner = script(body_resp(400, {"error": {"message": "try again"}}, x_should_retry="true"), OK)
    assert openai(inner, slept).generate_sync("hi").content == "ok" and len(inner.requests) == 2


def test_a_stream_error_status_is_read_classified_and_released_before_a_retry() -> None:
    slept: list[float] = []
    closed: list[bool] = []
    quota = json.dumps({"error": {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}})
    refused = StreamResponse(429, {}, [quota.encode()], on_close=lambda: closed.append(True))
    inner = script(refused, StreamResponse(200, {}, [b"data: [DONE]\n\n"]))
    with pytest.raises(QuotaExceededError):
        list(openai(inner, slept).stream_sync("hi"))
    assert len(inner.requests) == 1 and closed == [True]

    busy = StreamResponse(503, {}, [b'{"error": {"message": "busy"}}'], on_close=lambda: closed.append(True))
    frames = b'data: {"choices": [{"index": 0, "delta": {"content": "ok"}}]}\n\ndata: [DONE]\n\n'
    inner = script(busy, StreamResponse(200, {}, [frames]))
    assert "".join(c.content for c in openai(inner, slept).stream_sync("hi")) == "ok"
    assert len(inner.requests) == 2 and closed == [True, True]


def test_a_per_call_retry_count_and_a_long_retry_after_end_the_retries() -> None:
    slept: list[float] = []
    inner = script(body_resp(500, {}), OK)
    with pytest.raises(ServerError):
        openai(inner, slept).generate_sync("hi", max_retries=0)
    assert len(inner.requests) == 1
    inner = script(body_resp(429, {}, retry_after="120"), OK)
    with pytest.raises(RateLimitError) as info:
        openai(inner, slept).generate_sync("hi")
    assert info.value.retry_after == 120 and len(inner.requests) == 1 and slept == []


def test_connect_errors_are_retried_and_the_last_one_raised_annotated() -> None:
    slept: list[float] = []
    inner = script(ConnectError("refused"), ConnectError("refused"), ConnectError("refused"))
    with pytest.raises(ConnectError) as info:
        openai(inner, slept).generate_sync("hi")
    assert len(inner.requests) == 3 and info.value.provider == "openai"


def test_prepare_sees_every_attempt_whole() -> None:
    seen: list[HttpRequest] = []

    class Signed(OpenAIProvider):
        def _prepare(self, request: HttpRequest) -> HttpRequest:
            seen.append(request)
            return dataclasses.replace(request, headers={**request.headers, "x-signature": f"sig-{len(seen)}"})

    slept: list[float] = []
    inner = script(body_resp(500, {}), OK)
    p = Signed(api_key="sk-x", api="chat", transport=inner, retry=RetryPolicy(sleep=slept.append))
    assert p.generate_sync("hi").content == "ok"
    assert [r.headers["x-signature"] for r in inner.requests] == ["sig-1", "sig-2"]
    assert all(r.method == "POST" and r.url.endswith("/chat/completions") and r.body for r in seen)
