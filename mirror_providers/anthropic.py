"""Public import path for the Anthropic client: ``from mirror_providers.anthropic import AnthropicProvider``."""

from .providers.anthropic import AnthropicProvider

__all__ = ["AnthropicProvider"]
