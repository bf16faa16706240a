"""The vendors' rate-limit headers: read into ``result.rate_limits`` (answers and streams, on real
sockets and recorded traffic), and pools steering away from a member before it answers 429."""

from __future__ import annotations

from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict

from mirror_providers.anthropic import AnthropicProvider
from mirror_providers.openai import OpenAIProvider
from mirror_providers.pooling import FallbackChain, ProviderPool
from mirror_providers.rate_limits import parse_rate_limits
from mirror_providers.types import Message, RateLimit, RateLimits, join_chunks

from .server import FakeServer, Received, Reply, openai_completion, openai_sse

NOW = 1_747_183_770.0  # 2025-05-14T00:49:30Z


def parsed(headers: dict[str, str]) -> RateLimits | None:
    return parse_rate_limits(CaseInsensitiveDict(headers), now=lambda: NOW)


def test_openai_headers_as_documented() -> None:
    limits = parsed({"x-ratelimit-limit-requests": "5000", "x-ratelimit-limit-tokens": "160000",
                     "x-ratelimit-remaining-requests": "4999", "X-RateLimit-Remaining-Tokens": "159972",
                     "x-ratelimit-reset-requests": "12ms", "x-ratelimit-reset-tokens": "6m0s"})
    assert limits == RateLimits(requests=RateLimit(5000, 4999, pytest.approx(0.012)),  # type: ignore[arg-type]
                                tokens=RateLimit(160000, 159972, 360.0))


@pytest.mark.parametrize("text, seconds", [
    ("12ms", 0.012), ("1s", 1.0), ("6m0s", 360.0), ("2m59.56s", 179.56), ("1h2m3s", 3723.0), (".5s", 0.5),
    ("20", 20.0), ("0.25", 0.25), ("800us", 0.0008), ("3µs", 3e-6),  # Azure sends plain seconds
    ("", None), ("soon", None), ("-1s", None), ("1e400", None), ("12 ms", None), ("5d", None), ("1s2", None),
    ("nan", None), ("inf", None), ("99999999h", None),
])
def test_reset_durations(text: str, seconds: float | None) -> None:
    limits = parsed({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": text})
    assert limits is not None and limits.requests is not None
    assert limits.requests.reset_s == (None if seconds is None else pytest.approx(seconds))


def test_anthropic_headers_with_rfc3339_resets() -> None:
    limits = parsed({
        "anthropic-ratelimit-requests-limit": "4000", "anthropic-ratelimit-requests-remaining": "3999",
        "anthropic-ratelimit-requests-reset": "2025-05-14T00:49:34Z",
        "anthropic-ratelimit-tokens-limit": "80000", "anthropic-ratelimit-tokens-remaining": "76000",
        "anthropic-ratelimit-tokens-reset": "2025-05-14T00:49:40.5+00:00",
        "anthropic-ratelimit-input-tokens-remaining": "40000",
        "anthropic-ratelimit-input-tokens-reset": "2025-05-14T00:49:29Z",  # past: replenished already
        "anthropic-ratelimit-output-tokens-remaining": "12", "anthropic-ratelimit-output-tokens-reset": "tomorrow",
    })
    assert limits == RateLimits(RateLimit(4000, 3999, 4.0), RateLimit(80000, 76000, 10.5), RateLimit(None, 40000, 0.0),
                                RateLimit(None, 12, None))


@pytest.mark.parametrize("headers", [
    {}, {"content-type": "application/json"}, {"x-ratelimit-remaining-requests": "lots"},
    {"anthropic-ratelimit-requests-remaining": "-3", "anthropic-ratelimit-requests-reset": "2025-05-14"},
    {"x-ratelimit-remaining-tokens": "1" * 40},
])
def test_nothing_readable_is_none(headers: dict[str, str]) -> None:
    assert parsed(headers) is None


def test_room_for_another_call() -> None:
    tokens = RateLimit(limit=10_000, remaining=1_000, reset_s=60.0)
    assert tokens.room_in(500) == 0.0
    assert tokens.room_in(1_900) == pytest.approx(60.0 * 900 / 9_000)  # refilled continuously
    assert RateLimit(None, 0, 8.0).room_in(1) == 8.0 and RateLimit(None, 0, None).room_in(1) == 0.0
    assert RateLimits(requests=RateLimit(100, 0, 2.0), tokens=tokens).room_in(1_900) == pytest.approx(6.0)


def test_answers_and_streams_carry_the_headers_over_sockets() -> None:
    headers = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59",
               "x-ratelimit-reset-requests": "1s"}

    def answer(req: Received, reply: Reply) -> None:
        if req.json().get("stream"):
            reply.stream(200, openai_sse("Hi there"), {"Content-Type": "text/event-stream", **headers})
        else:
            reply.json(200, openai_completion("Hi there"), headers)

    with FakeServer() as server:
        server.route("POST", "/v1/chat/completions", answer)
        p = OpenAIProvider(api_key="sk-test", model="gpt-4o-mini", base_url=server.url + "/v1")
        want = RateLimits(requests=RateLimit(60, 59, 1.0))
        assert p.generate_sync("hi").rate_limits == want
        chunks = list(p.stream_sync("hi"))
        assert chunks[-1].rate_limits == want and join_chunks(chunks).rate_limits == want
        assert all(c.rate_limits is None for c in chunks[:-1])
        assert p.generate_sync("hi").to_json()  # serialises with them


def test_recorded_answers_carry_the_headers(cassette: Any) -> None:
    with cassette("openai/test_generate.yaml"):
        r = OpenAIProvider(api_key="sk-test", model="gpt-4o-mini").generate_sync(
            [Message.system("Answer in one word."), Message.user("Capital of France?")], max_tokens=16)
    assert r.rate_limits == RateLimits(RateLimit(5000, 4999, pytest.approx(0.012)),  # type: ignore[arg-type]
                                       RateLimit(160000, 159972, pytest.approx(0.010)))  # type: ignore[arg-type]
    with cassette("anthropic/test_generate.yaml"):
        a = AnthropicProvider(api_key="sk-ant-test", model="claude-sonnet-4-20250514").generate_sync(
            [Message.system("Answer in one word."), Message.user("Capital of France?")], max_tokens=1024,
            temperature=0.2)
    assert a.rate_limits is not None and a.rate_limits.requests == RateLimit(4000, 3999, 0.0)  # a 2025 reset: past


def _vendor(remaining: str, reset: str, served: list[str], name: str) -> Any:
    def answer(req: Received, reply: Reply) -> None:
        served.append(name)
        reply.json(200, openai_completion(f"{name} here"), {
            "x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": remaining,
            "x-ratelimit-reset-requests": reset})
    return answer


def test_a_pool_steers_away_from_a_member_whose_headers_say_it_is_spent() -> None:
    served: list[str] = []
    with FakeServer() as spent, FakeServer() as fresh:
        spent.route("POST", "/v1/chat/completions", _vendor("0", "30s", served, "spent"))
        fresh.route("POST", "/v1/chat/completions", _vendor("99", "1s", served, "fresh"))
        members = [OpenAIProvider(api_key="sk-test", model="gpt-4o-mini", base_url=s.url + "/v1")
                   for s in (spent, fresh)]
        chain = FallbackChain(members)
        assert [chain.generate_sync(f"q{i}").content for i in range(4)] == ["spent here"] + ["fresh here"] * 3
        assert served == ["spent", "fresh", "fresh", "fresh"]  # no 429 was needed to learn it
        stats = chain.get_stats().members[0]
        assert stats.errors == 0 and stats.cooldown_remaining_s is not None
        assert 0 < stats.cooldown_remaining_s <= 0.3  # 30 s for 100 requests: one is back in 0.3 s (less, as time passes)


def test_a_pool_ignores_headers_with_room_left() -> None:
    served: list[str] = []
    with FakeServer() as one, FakeServer() as two:
        one.route("POST", "/v1/chat/completions", _vendor("5", "30s", served, "one"))
        two.route("POST", "/v1/chat/completions", _vendor("5", "30s", served, "two"))
        pool = ProviderPool([OpenAIProvider(api_key="sk-test", model="gpt-4o-mini", base_url=s.url + "/v1")
                             for s in (one, two)], strategy="round_robin")
        for _ in range(4):
            pool.generate_sync("hi")
        assert served == ["one", "two", "one", "two"]


@pytest.mark.parametrize("text, seconds", [
    ("2025-05-14T00:49:40Z", 10.0), ("2025-05-14T00:49:40.5Z", 10.5), ("2025-05-14t00:49:40.123456789z", 10.123456789),
    ("2025-05-13T19:49:40-05:00", 10.0), ("2025-05-14T02:19:40+01:30", 10.0), ("2025-05-14 00:49:31.25Z", 1.25),
    ("2025-05-14T00:49:40", None), ("2025-13-14T00:49:40Z", None), ("2025-05-14T25:00:00Z", None),
    ("2025-05-14T00:49:40+24:00", None), ("２０２５-05-14T00:49:40Z", None), ("2031-01-01T00:00:00Z", None),
])
def test_rfc3339_resets(text: str, seconds: float | None) -> None:
    limits = parsed({"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": text})
    assert limits is not None and limits.requests is not None
    assert limits.requests.reset_s == (None if seconds is None else pytest.approx(seconds))


def test_an_input_limit_counts_the_input_only() -> None:
    limits = RateLimits(input_tokens=RateLimit(30_000, 20_000, 20.0), tokens=RateLimit(None, 50_000, 20.0))
    assert limits.room_in(32_001, input_tokens=1) == 0.0  # max_tokens is not input
    assert limits.room_in(32_001) > 0  # all of it input, as far as the caller said
    assert RateLimits(output_tokens=RateLimit(8000, 0, 5.0)).room_in(10, 10) == pytest.approx(5.0 / 8000)  # refilling
