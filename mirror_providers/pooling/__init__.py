"""Pools of providers that are themselves providers, on the library's thread pool.

* ``FallbackChain``: try members in order until one answers.
* ``ProviderPool``: spread requests over members with a strategy (round robin, random,
  weighted, least loaded, lowest latency), keeping unhealthy members out of rotation.
* ``TieredRouter``: pick a flagship, balanced or fast model by the prompt's complexity.

They nest (a pool inside a chain inside a router) and offer everything a provider does: sync and
async calls, streaming, health, stats, batch helpers. Member state lives behind ``MemberState``
(``InMemoryState`` by default). Pooling sees only the ``Provider`` interface.
"""

from ..types import Attempt, Attempts
from .budget import RateBudget
from .fallback import FallbackChain
from .pool import ProviderPool
from .provider import PoolProvider
from .redis_state import RedisState
from .state import BudgetState, CooldownPolicy, InMemoryState, MemberSnapshot, MemberState
from .strategies import (
    STRATEGIES,
    Candidate,
    LeastLoaded,
    LowestLatency,
    Random,
    RoundRobin,
    Strategy,
    Weighted,
)
from .tiered import RoutingDecision, TieredRouter, default_scorer

__all__ = [
    "STRATEGIES",
    "Attempt",
    "Attempts",
    "BudgetState",
    "Candidate",
    "CooldownPolicy",
    "FallbackChain",
    "InMemoryState",
    "LeastLoaded",
    "LowestLatency",
    "MemberSnapshot",
    "MemberState",
    "PoolProvider",
    "ProviderPool",
    "Random",
    "RateBudget",
    "RedisState",
    "RoundRobin",
    "RoutingDecision",
    "Strategy",
    "TieredRouter",
    "Weighted",
    "default_scorer",
]
