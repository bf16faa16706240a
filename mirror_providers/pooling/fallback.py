"""FallbackChain: try providers in order until one answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from ..request import GenerateRequest
from .provider import Member, PoolProvider

__all__ = ["FallbackChain"]


class FallbackChain(PoolProvider):
    """Try members in order; move on only when the error says another provider may help.

    Rate limits, overload, server errors, timeouts, connection failures, a model missing on that
    member, a rejected key: the next member is tried. A bad request that every member would
    reject is raised at once. When every member fails, ``AllProvidersFailedError`` lists each
    attempt (provider, model, error, elapsed time). A member that keeps failing is skipped for a
    cooldown (tried last, never dropped), so a dead first member stops costing a connection
    attempt per call.

    Streams fall back only before their first chunk; a stream that breaks after it raises the
    member's error with ``chunks_delivered`` set, never an answer spliced from two models.

    Args:
        providers: the members, in order of preference.
        deadline_s: the most one call may take across all attempts.
        attempt_timeout_s: the read timeout of each attempt.
        **kwargs: state, failure_threshold, cooldown_s, clock, seed, name (see ``PoolProvider``).

    Example::

        from mirror_providers.pooling import FallbackChain

        llm = FallbackChain([OpenAIProvider(model="gpt-4o"), AnthropicProvider(model="sonnet")])
        result = llm.generate_sync("Hello")
        print(result.provider, result.attempts)
    """

    provider_id: ClassVar[str] = "fallback"

    def _plan(self, request: GenerateRequest) -> Iterator[Member]:
        return iter(self._available_first(self.members))
