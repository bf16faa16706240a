"""Public import path for the OpenAI client: ``from mirror_providers.openai import OpenAIProvider``."""

from .providers.openai import OpenAIProvider

__all__ = ["OpenAIProvider"]
