"""Pools of providers that are themselves providers (FallbackChain, ProviderPool, TieredRouter).

Pooling sees only the ``Provider`` interface. The classes land with the pooling issue (#5).
"""

__all__: list[str] = []
