"""The registry of providers and their model tables, and ``create_provider`` from a spec string.

Example::

    from mirror_providers import create_provider

    llm = create_provider("openai:gpt-4o-mini")          # provider id, colon, model
    llm = create_provider("openai", model="gpt-4o")      # or the model as an argument
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from .errors import ConfigurationError
from .providers.anthropic import AnthropicProvider
from .providers.http import HttpProvider
from .providers.ollama import OllamaProvider
from .providers.openai import OpenAIProvider
from .types import ModelInfo

__all__ = ["PROVIDERS", "create_provider", "list_models", "parse_spec", "register_provider"]

# In order of preference: the CLI uses the first one its environment configures.
PROVIDERS: dict[str, type[HttpProvider]] = {
    OpenAIProvider.provider_id: OpenAIProvider,
    AnthropicProvider.provider_id: AnthropicProvider,
    OllamaProvider.provider_id: OllamaProvider,
}

_T = TypeVar("_T", bound=type[HttpProvider])


def register_provider(cls: _T) -> _T:
    """Add a vendor class (an ``HttpProvider`` subclass with its own ``provider_id``) to the
    registry, so that ``create_provider("<id>:<model>")``, the model catalog and the CLI know it.
    Usable as a class decorator.

    Raises:
        ConfigurationError: not an ``HttpProvider`` subclass, or its id is taken by another class.
    """
    if not (isinstance(cls, type) and issubclass(cls, HttpProvider)):
        raise ConfigurationError(f"register_provider takes an HttpProvider subclass, got {cls!r}")
    pid = cls.provider_id
    if not isinstance(pid, str) or not pid or not pid.replace("-", "").replace("_", "").isalnum() or pid != pid.lower():
        raise ConfigurationError(f"{cls.__name__}.provider_id must be a lowercase word, got {pid!r}")
    if PROVIDERS.get(pid, cls) is not cls:
        raise ConfigurationError(f"provider id {pid!r} is taken by {PROVIDERS[pid].__name__}")
    PROVIDERS[pid] = cls
    return cls


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"openai:gpt-4o"`` -> ``("openai", "gpt-4o")``; ``"openai"`` -> ``("openai", None)``.

    Only the first colon separates: Ollama tags (``ollama:llama3.1:70b``) keep theirs.
    """
    if not isinstance(spec, str):
        raise ConfigurationError(f"a provider spec is text such as 'openai:gpt-4o-mini', got {type(spec).__name__}")
    provider, _, model = spec.strip().partition(":")
    if provider not in PROVIDERS and provider != "local":
        raise ConfigurationError(
            f"unknown provider {provider!r} in {spec!r}; known: {', '.join(sorted(PROVIDERS))}, local")
    return provider, model or None


def create_provider(spec: str, **kwargs: Any) -> HttpProvider:
    """Build a provider from ``"provider"`` or ``"provider:model"``; kwargs go to its constructor.

    ``"local"`` is the embedded model (``embedded.LocalProvider``): the server ``mirror-providers
    serve`` runs, or one started for this process (the ``local-model`` extra).

    Raises:
        ConfigurationError: an unknown provider, an argument that provider does not take (named,
            with those it takes), or a bad argument value (the constructor names it).
    """
    provider, model = parse_spec(spec)
    if model is not None:
        if kwargs.get("model") not in (None, model):
            raise ConfigurationError(f"model given twice: {model!r} in the spec and {kwargs['model']!r}")
        kwargs["model"] = model
    if provider == "local":
        from .embedded import LocalProvider

        cls: type[HttpProvider] = LocalProvider
    else:
        cls = PROVIDERS[provider]
    accepted = _constructor_arguments(cls)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigurationError(f"{provider} takes no argument(s) {unknown}; it takes {sorted(accepted)}",
                                 provider=provider)
    return cls(**kwargs)


def _constructor_arguments(cls: type[HttpProvider]) -> set[str]:
    """The keyword arguments a provider class takes: its own and those it passes on (``**kwargs``)
    to the classes above it."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def list_models(provider: str | None = None) -> list[tuple[str, ModelInfo]]:
    """Every catalog row as ``(provider id, ModelInfo)``, optionally for one provider."""
    if provider is not None and provider not in PROVIDERS:
        raise ConfigurationError(f"unknown provider {provider!r}; known: {', '.join(sorted(PROVIDERS))}")
    return [(pid, info) for pid, cls in sorted(PROVIDERS.items()) if provider in (None, pid)
            for info in cls.MODELS]
