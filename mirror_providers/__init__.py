"""mirror-providers: one interface to OpenAI, Anthropic and Ollama that survives a failing vendor.

Importing the package is cheap: every public name below is loaded on first use.

Example::

    from mirror_providers.openai import OpenAIProvider

    llm = OpenAIProvider(model="gpt-4o-mini")
    print(llm.generate_sync("Capital of France?").content)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "APIError": "errors",
    "AllProvidersFailedError": "errors",
    "AnthropicProvider": "providers.anthropic",
    "AuthenticationError": "errors",
    "BadRequestError": "errors",
    "CallAbortedError": "errors",
    "CallbackError": "errors",
    "Capabilities": "types",
    "ConfigurationError": "errors",
    "ConflictError": "errors",
    "ConnectError": "errors",
    "Citation": "types",
    "Cost": "types",
    "HookEvent": "hooks",
    "add_hook": "hooks",
    "remove_hook": "hooks",
    "ContentPart": "types",
    "ContextLengthExceededError": "errors",
    "Conversation": "conversation",
    "DeadlineExceededError": "errors",
    "EmbeddingResult": "types",
    "GenerateRequest": "request",
    "GenerationResult": "types",
    "HealthStatus": "types",
    "HttpRequest": "transport",
    "HttpResponse": "transport",
    "InvalidResponseError": "errors",
    "StructuredOutputError": "errors",
    "Limits": "transport",
    "Message": "types",
    "MirrorProvidersError": "errors",
    "MockTransport": "transport",
    "ModelCatalog": "types",
    "ModelInfo": "types",
    "ModelDeprecatedWarning": "models",
    "EndpointNotFoundError": "errors",
    "ModelNotFoundError": "errors",
    "ModelRetiredError": "errors",
    "NotFoundError": "errors",
    "OllamaProvider": "providers.ollama",
    "OpenAIProvider": "providers.openai",
    "OverloadedError": "errors",
    "PermissionDeniedError": "errors",
    "ProtocolError": "errors",
    "ProgressBar": "progress",
    "Provider": "provider",
    "ProviderError": "errors",
    "ProviderStats": "types",
    "QuotaExceededError": "errors",
    "RateLimitError": "errors",
    "RequestTimeout": "errors",
    "RequestTooLargeError": "errors",
    "ResponseTooLargeError": "errors",
    "RequestsTransport": "transport",
    "RetryPolicy": "retry",
    "RetryingTransport": "retry",
    "ServerError": "errors",
    "StreamChunk": "types",
    "StreamError": "errors",
    "StreamResponse": "transport",
    "Tier": "types",
    "Timeout": "transport",
    "TokenCount": "types",
    "Tool": "types",
    "ToolCall": "types",
    "ToolCallDelta": "types",
    "Transport": "transport",
    "TransportError": "errors",
    "TruncatedStreamError": "errors",
    "Usage": "types",
    "ValidationError": "errors",
    "create_provider": "catalog",
    "enable_debug_logging": "transport.log",
    "join_chunks": "types",
    "set_max_workers": "provider",
    "list_models": "catalog",
}

__all__ = [  # written out (not computed from _EXPORTS) so type checkers see the exports; a test keeps them equal
    "APIError",
    "AllProvidersFailedError",
    "AnthropicProvider",
    "AuthenticationError",
    "BadRequestError",
    "CallAbortedError",
    "CallbackError",
    "Capabilities",
    "Citation",
    "ConfigurationError",
    "ConflictError",
    "ConnectError",
    "ContentPart",
    "ContextLengthExceededError",
    "Conversation",
    "Cost",
    "DeadlineExceededError",
    "EmbeddingResult",
    "EndpointNotFoundError",
    "GenerateRequest",
    "GenerationResult",
    "HealthStatus",
    "HookEvent",
    "HttpRequest",
    "HttpResponse",
    "InvalidResponseError",
    "Limits",
    "Message",
    "MirrorProvidersError",
    "MockTransport",
    "ModelCatalog",
    "ModelDeprecatedWarning",
    "ModelInfo",
    "ModelNotFoundError",
    "ModelRetiredError",
    "NotFoundError",
    "OllamaProvider",
    "OpenAIProvider",
    "OverloadedError",
    "PermissionDeniedError",
    "ProgressBar",
    "ProtocolError",
    "Provider",
    "ProviderError",
    "ProviderStats",
    "QuotaExceededError",
    "RateLimitError",
    "RequestTimeout",
    "RequestTooLargeError",
    "RequestsTransport",
    "ResponseTooLargeError",
    "RetryPolicy",
    "RetryingTransport",
    "ServerError",
    "StreamChunk",
    "StreamError",
    "StreamResponse",
    "StructuredOutputError",
    "Tier",
    "Timeout",
    "TokenCount",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Transport",
    "TransportError",
    "TruncatedStreamError",
    "Usage",
    "ValidationError",
    "__version__",
    "add_hook",
    "create_provider",
    "enable_debug_logging",
    "join_chunks",
    "list_models",
    "remove_hook",
    "set_max_workers",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mirror_providers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from .catalog import create_provider, list_models
    from .conversation import Conversation
    from .errors import (
        AllProvidersFailedError,
        APIError,
        AuthenticationError,
        BadRequestError,
        CallAbortedError,
        CallbackError,
        ConfigurationError,
        ConflictError,
        ConnectError,
        ContextLengthExceededError,
        DeadlineExceededError,
        EndpointNotFoundError,
        InvalidResponseError,
        MirrorProvidersError,
        ModelNotFoundError,
        ModelRetiredError,
        NotFoundError,
        OverloadedError,
        PermissionDeniedError,
        ProtocolError,
        ProviderError,
        QuotaExceededError,
        RateLimitError,
        RequestTimeout,
        RequestTooLargeError,
        ResponseTooLargeError,
        ServerError,
        StreamError,
        StructuredOutputError,
        TransportError,
        TruncatedStreamError,
        ValidationError,
    )
    from .hooks import HookEvent, add_hook, remove_hook
    from .models import ModelDeprecatedWarning
    from .progress import ProgressBar
    from .provider import Provider, set_max_workers
    from .providers.anthropic import AnthropicProvider
    from .providers.ollama import OllamaProvider
    from .providers.openai import OpenAIProvider
    from .request import GenerateRequest
    from .retry import RetryingTransport, RetryPolicy
    from .transport import (
        HttpRequest,
        HttpResponse,
        Limits,
        MockTransport,
        RequestsTransport,
        StreamResponse,
        Timeout,
        Transport,
    )
    from .transport.log import enable_debug_logging
    from .types import (
        Capabilities,
        Citation,
        ContentPart,
        Cost,
        EmbeddingResult,
        GenerationResult,
        HealthStatus,
        Message,
        ModelCatalog,
        ModelInfo,
        ProviderStats,
        StreamChunk,
        Tier,
        TokenCount,
        Tool,
        ToolCall,
        ToolCallDelta,
        Usage,
        join_chunks,
    )
