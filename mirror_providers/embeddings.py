"""One validated embeddings request, the embedding models the library knows, and the pure
helpers the vendors' embeddings parsers share.

``build_embed_request`` checks what ``Provider.embed_sync`` was given before anything is sent:
the texts (one text or a list of non-empty texts), ``model``, ``dimensions``, ``batch_size`` and
the call options they share with generations (``timeout``, ``deadline_s``, ``max_retries``,
``extra``). Each provider checks on top what its API refuses (its batch limit, a model that takes
no ``dimensions``).

The embedding models are a small table of their own (``EMBEDDING_MODELS``), not rows of the chat
catalog (``data/models.json``): they take no chat calls, and ``mirror-providers models`` lists
chat models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ._lazy import dataclass
from .errors import ValidationError
from .request import GenerateRequest, check_options
from .types import Usage

__all__ = ["DEFAULT_BATCH_SIZE", "EMBEDDING_MODELS", "MAX_BATCH_SIZE", "MAX_DIMENSIONS", "EmbedRequest",
           "EmbeddingModel", "build_embed_request", "embedding_model", "sum_usage", "vector_of"]

DEFAULT_BATCH_SIZE = 256  # texts per request unless a call says otherwise
# OpenAI takes at most 2048 inputs per request ("any array must be 2048 dimensions or less",
# CreateEmbeddingRequest.input in OpenAI's OpenAPI spec); no API the library speaks takes more.
MAX_BATCH_SIZE = 2048
MAX_DIMENSIONS = 65_536  # far above any embedding model's; a larger number is a mistake


@dataclass(frozen=True)
class EmbeddingModel:
    """An embedding model the library knows.

    Attributes:
        id: the id sent on the wire.
        provider: the provider id whose API serves it.
        dimensions: the length of its vectors when ``dimensions=`` is not given.
        custom_dimensions: whether it takes ``dimensions=`` (shorter vectors), up to ``dimensions``.
        price_input: USD per million input tokens, when known (a local model: 0).
    """

    id: str
    provider: str
    dimensions: int
    custom_dimensions: bool = False
    price_input: float | None = None


# OpenAI: "dimensions ... Only supported in text-embedding-3 and later models" (the API reference);
# Ollama: nomic-embed-text (v1.5, trained for shorter prefixes) makes 768-dimensional vectors; the
# server itself says whether a model takes /api/embed's ``dimensions``, so only the upper bound is checked.
EMBEDDING_MODELS: tuple[EmbeddingModel, ...] = (
    # OpenAI's prices per million tokens: $0.02, $0.13, $0.10 (its pricing page, unchanged since 2024)
    EmbeddingModel("text-embedding-3-small", "openai", 1536, custom_dimensions=True, price_input=0.02),
    EmbeddingModel("text-embedding-3-large", "openai", 3072, custom_dimensions=True, price_input=0.13),
    EmbeddingModel("text-embedding-ada-002", "openai", 1536, price_input=0.10),
    EmbeddingModel("nomic-embed-text", "ollama", 768, custom_dimensions=True),
)


def embedding_model(provider: str, model: str) -> EmbeddingModel | None:
    """The table's row for a provider's embedding model, or None for one it does not know."""
    name = model.removesuffix(":latest") if provider == "ollama" else model
    return next((m for m in EMBEDDING_MODELS if m.provider == provider and m.id == name), None)


@dataclass(frozen=True)
class EmbedRequest(GenerateRequest):
    """A validated embeddings call: what ``build_embed_request`` returns.

    It is a ``GenerateRequest`` (with no messages) so that the pools' attempt loop, which reads
    a request's ``timeout``, ``deadline_s``, ``max_retries`` and size, routes it as it routes a
    generation; nothing generates from it (``build_request`` refuses a request without messages).

    Attributes:
        texts: the texts, in order.
        model: the embedding model asked for (None: the provider's ``embedding_model``).
        dimensions: the vector length asked for (None: the model's own).
        batch_size: texts per request (None: the provider's default).
    """

    texts: tuple[str, ...] = ()
    model: str | None = None
    dimensions: int | None = None
    batch_size: int | None = None

    def text_length(self) -> int:
        return sum(len(t) for t in self.texts)

    def batches(self, default_size: int) -> list[tuple[int, tuple[str, ...]]]:
        """The texts split into requests of at most ``batch_size`` (else ``default_size``):
        (index of its first text, its texts) each, in order."""
        size = self.batch_size or default_size
        return [(i, self.texts[i:i + size]) for i in range(0, len(self.texts), size)]


def _texts(texts: Any) -> tuple[str, ...]:
    if isinstance(texts, str):
        texts = (texts,)
    elif isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Sequence):
        raise ValidationError(f"texts must be text or a list of texts, got {type(texts).__name__}")
    if not texts:
        raise ValidationError("texts is empty: give at least one text to embed")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValidationError(f"texts[{i}] is {type(text).__name__}, not text")
        if not text:
            # OpenAI: the input "cannot be an empty string"; an empty text has no meaning to embed.
            raise ValidationError(f"texts[{i}] is empty: embedding APIs refuse empty text; leave it out")
    return tuple(texts)


def _positive(value: Any, name: str, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ValidationError(f"{name} must be a whole number from 1 to {most}, got {value!r}")
    return value


def build_embed_request(texts: Any, *, model: Any = None, dimensions: Any = None, batch_size: Any = None,
                        timeout: Any = None, deadline_s: Any = None, max_retries: Any = None,
                        extra: Any = None) -> EmbedRequest:
    """Normalise and validate an embeddings call (an ``EmbedRequest`` given alone is returned).

    Raises:
        ValidationError: the texts or an option are invalid; the message names which.
    """
    given = (model, dimensions, batch_size, timeout, deadline_s, max_retries, extra)
    if isinstance(texts, EmbedRequest) and all(v is None for v in given):
        return texts
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise ValidationError(f"model must be a non-empty string, got {model!r}")
    options: Mapping[str, Any] = check_options(
        {"timeout": timeout, "deadline_s": deadline_s, "max_retries": max_retries, "extra": extra})
    return EmbedRequest(
        messages=(), texts=_texts(texts), model=model,
        dimensions=None if dimensions is None else _positive(dimensions, "dimensions", MAX_DIMENSIONS),
        batch_size=None if batch_size is None else _positive(batch_size, "batch_size", MAX_BATCH_SIZE),
        **options)


def vector_of(value: Any, where: str) -> tuple[float, ...]:
    """An embedding as the vendor sent it: a non-empty list of finite numbers; anything else
    raises ValueError naming ``where``."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where} is {type(value).__name__ if value != [] else 'an empty list'}, not a vector")
    vector = tuple(float(x) if x.__class__ in (float, int) else math.nan for x in value)
    if not all(math.isfinite(x) for x in vector):
        raise ValueError(f"{where} holds something other than finite numbers")
    return vector


def sum_usage(parts: Sequence[Usage | None]) -> Usage | None:
    """The usage of several requests summed; None when none reported any."""
    known = [u for u in parts if u is not None]
    if not known:
        return None
    return Usage(input_tokens=sum(u.input_tokens for u in known), total_tokens=sum(u.total_tokens for u in known))
