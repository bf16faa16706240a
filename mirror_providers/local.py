"""Public import path for local models: ``from mirror_providers.local import OllamaProvider``."""

from .providers.ollama import OllamaProvider

__all__ = ["OllamaProvider"]
