"""TieredRouter: send each request to a flagship, balanced or fast model by how demanding it looks.

The default scorer is cheap and transparent: it adds up points for what usually makes a prompt
hard, and each point comes with the reason ``explain()`` reports.

======================================  =======================================================
signal                                  points
======================================  =======================================================
length                                  +0.05 per 50 words of the whole conversation, up to 0.3
questions                               +0.05 per question mark after the first, up to 0.15
words asking for analysis or depth      +0.2 each (``analyze``, ``in depth``, ``prove``,
                                        ``philosophical``, ``trade-off``...), up to 0.6
code                                    +0.25 for a fenced code block or several code lines
conversation                            +0.05 per message beyond 2, up to 0.15
tools                                   +0.1 when tools are offered
======================================  =======================================================

The score is capped at 1.0. Below 0.2 goes to ``fast``, below 0.5 to ``balanced``, the rest to
``flagship`` (``thresholds=`` changes the two cut points). ``"ok"`` scores 0 (fast);
``"Analyze this philosophical question in depth..."`` scores 0.6 (flagship).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..embeddings import EmbedRequest
from ..errors import ConfigurationError
from ..provider import Provider
from ..request import GenerateRequest, Prompt, build_request
from ..types import Tier
from .provider import Member, PoolProvider

__all__ = ["RoutingDecision", "TieredRouter", "default_scorer"]

TIERS = (Tier.FAST, Tier.BALANCED, Tier.FLAGSHIP)

DEPTH_WORDS = (
    "analyze", "analyse", "analysis", "in depth", "in-depth", "deeply", "thorough", "comprehensive",
    "philosophical", "philosophy", "prove", "proof", "derive", "derivation", "compare", "contrast", "evaluate",
    "critique", "trade-off", "tradeoff", "implications", "step by step", "reason about", "justify", "architecture",
    "design a", "optimize", "optimise", "research", "strategy", "nuanced",
)
_DEPTH = re.compile(r"\b(" + "|".join(re.escape(w) for w in DEPTH_WORDS) + r")", re.IGNORECASE)
_CODE_LINE = re.compile(r"^\s*(def |class |import |from \w+ import|function |public |#include|SELECT |for \(|if \()",
                        re.MULTILINE)


@dataclass(frozen=True)
class RoutingDecision:
    """Why a request went where it went.

    Attributes:
        score: 0 (trivial) to 1 (most demanding).
        tier: the tier the score selects.
        reasons: each signal that added points, with its points.
        used_tier: the tier that will actually serve it (a missing tier falls to the nearest).
    """

    score: float
    tier: Tier
    reasons: tuple[str, ...] = field(default_factory=tuple)
    used_tier: Tier | None = None


Scorer = Callable[[GenerateRequest], "float | tuple[float, list[str]]"]


def default_scorer(request: GenerateRequest) -> tuple[float, list[str]]:
    """Score a request by the table in the module docstring; returns (score, reasons)."""
    text = "\n".join(m.text for m in request.messages) + "\n" + (request.system or "")
    reasons: list[str] = []
    score = 0.0

    def add(points: float, why: str) -> None:
        nonlocal score
        if points > 0:
            score += points
            reasons.append(f"{why} (+{points:.2f})")

    words = len(text.split())
    add(min(0.3, 0.05 * (words // 50)), f"{words} words")
    questions = text.count("?")
    add(min(0.15, 0.05 * max(0, questions - 1)), f"{questions} questions")
    depth = sorted({m.group(1).lower() for m in _DEPTH.finditer(text)})
    add(min(0.6, 0.2 * len(depth)), "asks for depth: " + ", ".join(depth))
    if "```" in text or len(_CODE_LINE.findall(text)) >= 2:
        add(0.25, "contains code")
    add(min(0.15, 0.05 * max(0, len(request.messages) - 2)), f"{len(request.messages)} messages")
    if request.tools:
        add(0.1, f"{len(request.tools)} tools offered")
    return min(1.0, round(score, 4)), reasons


class TieredRouter(PoolProvider):
    """Route each request to the tier its complexity calls for.

    Args:
        flagship, balanced, fast: the provider for each tier (any may be missing; a request for a
            missing tier goes to the nearest one, the more capable one on a tie).
        scorer: ``request -> score`` or ``request -> (score, reasons)``, score in [0, 1]
            (default ``default_scorer``).
        thresholds: (fast below, balanced below): default (0.2, 0.5).
        fallback: when the chosen tier fails with an error another provider may not have, try
            the next nearest tier (default True).
        **kwargs: state, failure_threshold, cooldown_s, deadline_s, attempt_timeout_s, clock, seed, name.

    Example::

        router = TieredRouter(flagship=OpenAIProvider(model="gpt-4o"), fast=OpenAIProvider(model="gpt-4o-mini"))
        router.explain("ok").tier            # Tier.FAST
        router.generate_sync("Analyze this philosophical question in depth...")  # flagship
    """

    provider_id: ClassVar[str] = "router"

    def __init__(self, flagship: Provider | None = None, balanced: Provider | None = None,
                 fast: Provider | None = None, *, scorer: Scorer | None = None,
                 thresholds: tuple[float, float] = (0.2, 0.5), fallback: bool = True, **kwargs: Any) -> None:
        tiers = {Tier.FLAGSHIP: flagship, Tier.BALANCED: balanced, Tier.FAST: fast}
        present = [(t, p) for t, p in tiers.items() if p is not None]
        if not present:
            raise ConfigurationError("TieredRouter needs at least one of flagship, balanced, fast")
        if (not isinstance(thresholds, (list, tuple)) or len(thresholds) != 2
                or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in thresholds)):
            raise ConfigurationError(f"thresholds must be a pair of numbers (fast, balanced), got {thresholds!r}")
        low, high = thresholds
        if not 0 <= low <= high <= 1:
            raise ConfigurationError(f"thresholds must satisfy 0 <= fast < balanced <= 1, got {thresholds}")
        super().__init__([p for _, p in present], **kwargs)
        self._tier_member = {t: m for (t, _), m in zip(present, self.members, strict=True)}
        self.scorer: Scorer = scorer or default_scorer
        self.thresholds = (low, high)
        self.fallback = fallback

    def tier_for(self, score: float) -> Tier:
        low, high = self.thresholds
        return Tier.FAST if score < low else Tier.BALANCED if score < high else Tier.FLAGSHIP

    def _order(self, tier: Tier) -> list[Tier]:
        """Present tiers, nearest to ``tier`` first; ties go to the more capable one."""
        rank = TIERS.index(tier)
        return sorted(self._tier_member, key=lambda t: (abs(TIERS.index(t) - rank), -TIERS.index(t)))

    def _decide(self, request: GenerateRequest) -> RoutingDecision:
        scored = self.scorer(request)
        score, reasons = scored if isinstance(scored, tuple) else (scored, [])
        if not 0 <= score <= 1:
            raise ConfigurationError(f"scorer returned {score!r}; scores must be between 0 and 1")
        tier = self.tier_for(score)
        return RoutingDecision(score, tier, tuple(reasons), self._order(tier)[0])

    def explain(self, prompt: Prompt, **options: Any) -> RoutingDecision:
        """The score, the tier, and why, without sending anything."""
        return self._decide(build_request(prompt, options))

    def _plan(self, request: GenerateRequest) -> Iterator[Member]:
        return iter(self._candidates(request))

    def _candidates(self, request: GenerateRequest) -> Sequence[Member]:
        # Embeddings are not scored (no text of theirs asks for depth): the fast tier first.
        tier = Tier.FAST if isinstance(request, EmbedRequest) else self._decide(request).tier
        order = self._order(tier)
        members = [self._tier_member[t] for t in order]
        return members if self.fallback else members[:1]
