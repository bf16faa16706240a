"""TieredRouter: decisions on a table of prompts, explain, missing and failing tiers, nesting."""

from __future__ import annotations

import pytest

from mirror_providers.errors import ConfigurationError, ServerError
from mirror_providers.pooling import FallbackChain, ProviderPool, TieredRouter, default_scorer
from mirror_providers.request import build_request
from mirror_providers.types import Message, Tier, join_chunks

from ..fakes import Fake, err

CODE = "Fix this:\n```python\ndef f(x):\n    return x +\n```"
LONG = " ".join(["word"] * 320)


def router(**kw: object) -> TieredRouter:
    return TieredRouter(flagship=Fake("big"), balanced=Fake("mid"), fast=Fake("small"), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("prompt, tier", [
    ("ok", Tier.FAST),
    ("What is 2+2?", Tier.FAST),
    ("Translate 'hello' to French", Tier.FAST),
    ("Analyze this philosophical question in depth: is free will compatible with determinism?", Tier.FLAGSHIP),
    ("Compare Python and Rust for web servers", Tier.BALANCED),
    (CODE, Tier.BALANCED),
    ("Compare these two designs and evaluate the trade-offs in depth", Tier.FLAGSHIP),
    (LONG, Tier.BALANCED),
    ("Why? How? When? Where?", Tier.FAST),
])
def test_decisions(prompt: str, tier: Tier) -> None:
    assert router().explain(prompt).tier is tier


def test_readme_examples_route_as_documented() -> None:
    r = router()
    assert r.generate_sync("ok").model == "small"
    assert r.generate_sync("Analyze this philosophical question in depth...").model == "big"


def test_explain_gives_score_and_reasons() -> None:
    d = router().explain("Analyze this philosophical question in depth...")
    assert d.score == 0.6 and d.tier is Tier.FLAGSHIP and d.used_tier is Tier.FLAGSHIP
    assert d.reasons == ("asks for depth: analyze, in depth, philosophical (+0.60)",)
    assert router().explain("ok").reasons == ()


def test_conversation_length_and_tools_count() -> None:
    msgs = [Message.user("hi"), Message.assistant("hello"), Message.user("and?"), Message.assistant("so"),
            Message.user("more")]
    score, reasons = default_scorer(build_request(msgs, {"tools": [{"name": "f", "parameters": {"type": "object"}}]}))
    assert score == pytest.approx(0.25) and any("5 messages" in r for r in reasons) and any("tools" in r for r in reasons)


def test_custom_scorer_and_thresholds() -> None:
    r = router(scorer=lambda req: 0.9 if "urgent" in req.messages[-1].text else 0.0)
    assert r.generate_sync("urgent thing").model == "big" and r.generate_sync("thing").model == "small"
    r2 = router(thresholds=(0.0, 0.0))
    assert r2.explain("ok").tier is Tier.FLAGSHIP
    with pytest.raises(ConfigurationError):
        router(scorer=lambda req: 7.0).generate_sync("x")
    with pytest.raises(ConfigurationError):
        router(thresholds=(0.6, 0.2))


def test_missing_tier_goes_to_the_nearest() -> None:
    r = TieredRouter(flagship=Fake("big"), fast=Fake("small"))
    assert r.explain("Compare Python and Rust").used_tier is Tier.FLAGSHIP  # tie: the more capable
    only_fast = TieredRouter(fast=Fake("small"))
    assert only_fast.generate_sync("Analyze in depth, philosophically").model == "small"
    with pytest.raises(ConfigurationError):
        TieredRouter()


def test_failing_tier_falls_to_the_next() -> None:
    r = TieredRouter(flagship=Fake("big", fail=err(ServerError)), balanced=Fake("mid"), fast=Fake("small"))
    result = r.generate_sync("Analyze this philosophical question in depth")
    assert (result.model, result.attempts.tries) == ("mid", 2)
    strict = TieredRouter(flagship=Fake("big", fail=err(ServerError)), fast=Fake("small"), fallback=False)
    with pytest.raises(Exception, match="1 attempt"):
        strict.generate_sync("Analyze this philosophical question in depth")


def test_nesting_pool_in_chain_in_router() -> None:
    pool = ProviderPool([Fake("p1", fail=err(ServerError)), Fake("p2")], strategy="round_robin")
    chain = FallbackChain([Fake("c1", fail=err(ServerError)), pool])
    r = TieredRouter(flagship=chain, fast=Fake("small"))
    result = r.generate_sync("Analyze this philosophical question in depth")
    assert result.model == "p2" and result.attempts == 3
    assert join_chunks(r.stream_sync("Analyze this philosophical question in depth")).content.startswith("p2")
    stats = r.get_stats()
    assert stats.members[0].members  # the chain's members show under the router's
    assert r.health_check_sync().healthy
