"""What a call cost, from the catalog's prices (USD per million tokens) and the usage it reported."""

from __future__ import annotations

from .types import Cost, ModelInfo, Usage

__all__ = ["cost_of"]

PER_TOKEN = 1e-6  # catalog prices are per million tokens
MAX_TOKENS = 10**12  # more tokens than any call has: such a usage is not priced


def _part(tokens: int, price: float | None) -> float | None:
    if tokens <= 0:
        return 0.0
    return None if price is None else tokens * price * PER_TOKEN


def cost_of(info: ModelInfo | None, usage: Usage | None) -> Cost | None:
    """The ``Cost`` of a call of ``info``'s model that used ``usage``: None when either is
    unknown or the model has no prices at all; a part without a price is None, and the total with it.

    ``usage.input_tokens`` counts cached and cache-written tokens too (the library's ``Usage``);
    they are priced at ``price_cached_input`` and ``price_cache_write``, the rest at ``price_input``.
    Reasoning tokens are output tokens and billed as such: ``reasoning_usd`` is their share.
    """
    if info is None or usage is None or (info.price_input is None and info.price_output is None):
        return None
    if max(usage.input_tokens, usage.output_tokens, usage.cached_input_tokens or 0,
           usage.cache_creation_input_tokens or 0, usage.reasoning_tokens or 0) > MAX_TOKENS:
        return None  # counts no call has: a hostile or broken server's, not a price to add up
    # The parts never exceed their whole, whatever the vendor reported.
    cached = min(usage.cached_input_tokens or 0, usage.input_tokens)
    written = min(usage.cache_creation_input_tokens or 0, usage.input_tokens - cached)
    plain = usage.input_tokens - cached - written
    parts = (_part(plain, info.price_input), _part(cached, info.price_cached_input),
             _part(written, info.price_cache_write), _part(usage.output_tokens, info.price_output))
    reasoning = (None if usage.reasoning_tokens is None
                 else _part(min(usage.reasoning_tokens, usage.output_tokens), info.price_output))
    total = None if any(p is None for p in parts) else sum(p for p in parts if p is not None)
    return Cost(input_usd=parts[0], cached_input_usd=parts[1], cache_write_usd=parts[2], output_usd=parts[3],
                reasoning_usd=reasoning, total_usd=total)
