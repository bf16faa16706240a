"""The data the library passes around: messages in, results and stream chunks out.

All classes are frozen dataclasses that round-trip through JSON with dataclasses-json
(``to_dict``/``from_dict``/``to_json``/``from_json``). dataclasses-json is imported the first
time one of those methods is called, never at import time, so importing the library stays cheap;
for the same reason each class gets its dataclass methods when first used (``_lazy.dataclass``).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import mimetypes
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any, Literal, TypeVar

from ._lazy import dataclass

__all__ = [
    "Attempt",
    "Attempts",
    "Capabilities",
    "Citation",
    "ContentPart",
    "Cost",
    "FinishReason",
    "GenerationResult",
    "HealthStatus",
    "Lifecycle",
    "Message",
    "ModelCatalog",
    "ModelInfo",
    "ProviderStats",
    "RateLimit",
    "RateLimits",
    "ReasoningBlock",
    "Role",
    "StreamChunk",
    "Tier",
    "TokenCount",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "join_chunks",
    "parse_tool_arguments",
]

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "other"]
"""One vocabulary for every vendor (docs/protocols.md §5.4)."""

IMAGE_MEDIA_TYPES: tuple[str, ...] = ("image/png", "image/jpeg", "image/gif", "image/webp")
DOCUMENT_MEDIA_TYPES: tuple[str, ...] = ("application/pdf", "text/plain")
CACHE_TTLS: tuple[str, ...] = ("5m", "1h")  # how long a cache breakpoint's prefix is kept

_T = TypeVar("_T", bound="_JsonMixin")


class _JsonMixin:
    """``to_dict``/``from_dict``/``to_json``/``from_json`` via dataclasses-json, loaded lazily."""

    def to_dict(self, encode_json: bool = True) -> dict[str, Any]:
        """Return a dict of plain JSON values (enums as their values)."""
        from dataclasses_json import DataClassJsonMixin

        return DataClassJsonMixin.to_dict(self, encode_json=encode_json)  # type: ignore[arg-type]

    def to_json(self, **kwargs: Any) -> str:
        """Serialise to a JSON string (``json.dumps`` keyword arguments accepted)."""
        from dataclasses_json import DataClassJsonMixin

        return DataClassJsonMixin.to_json(self, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[_T], data: Mapping[str, Any]) -> _T:
        """Build an instance from what ``to_dict`` returned (an attempt trace's entries as
        ``Attempt``, which dataclasses-json cannot tell from the tuple type alone)."""
        from dataclasses_json.core import _decode_dataclass

        fields = dict(data)
        traced = "attempts" in getattr(cls, "__dataclass_fields__", {}) and "attempts" in fields
        trace = fields.pop("attempts", None) if traced else None
        obj = _decode_dataclass(cls, fields, False)  # type: ignore[no-untyped-call]
        if isinstance(trace, (list, tuple)):
            object.__setattr__(obj, "attempts", Attempts(
                a if isinstance(a, Attempt) else Attempt.from_dict(a) for a in trace))
        elif isinstance(trace, int):  # a count, as results made by hand may still carry
            object.__setattr__(obj, "attempts", trace)
        return obj  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls: type[_T], text: str) -> _T:
        """Build an instance from what ``to_json`` returned."""
        import json

        return cls.from_dict(json.loads(text))


class Tier(str, enum.Enum):
    """How capable (and costly) a model is; the tiered router routes on it."""

    FLAGSHIP = "flagship"
    BALANCED = "balanced"
    FAST = "fast"
    LOCAL = "local"


@dataclass(frozen=True)
class ContentPart(_JsonMixin):
    """One part of a multi-part message: text, an image, or a document (PDF or plain text).

    Attributes:
        type: ``"text"``, ``"image"`` or ``"document"``.
        text: the text of a text part, or of a plain-text document.
        url: an ``http(s)`` URL of an image or PDF (vendors that need bytes reject it).
        data: base64 bytes of an image or PDF (no ``data:`` prefix).
        media_type: an image's ``image/png``, ``image/jpeg``, ``image/gif`` or ``image/webp``; a
            document's ``application/pdf`` or ``text/plain``.
        detail: OpenAI's ``auto``/``low``/``high`` image hint; ignored elsewhere.
        title, context: a document's title and a note about it, for the model (Anthropic).
        citations: ask the vendor to cite this document in its answer (Anthropic; see
            ``GenerationResult.citations``).
        filename: a PDF's file name (OpenAI wants one; ``document.pdf`` when not given).
        cache: a prompt-cache breakpoint after this part, kept ``"5m"`` or ``"1h"``: the vendor
            caches the request up to here (Anthropic ``cache_control``; OpenAI and Ollama cache
            prefixes by themselves and need no marks).
    """

    type: Literal["text", "image", "document"]
    text: str | None = None
    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None
    title: str | None = None
    context: str | None = None
    citations: bool = False
    filename: str | None = None
    cache: str | None = None

    @classmethod
    def from_text(cls, text: str, cache: str | None = None) -> ContentPart:
        return cls(type="text", text=text, cache=cache)

    @classmethod
    def image_url(cls, url: str, detail: str | None = None) -> ContentPart:
        """An image the vendor fetches itself; a ``data:`` URL is split into bytes here."""
        if url.startswith("data:"):
            header, _, payload = url.partition(",")
            media_type = header[5:].split(";")[0]
            return cls(type="image", data=payload, media_type=media_type, detail=detail)
        return cls(type="image", url=url, detail=detail)

    @classmethod
    def image_bytes(cls, data: bytes, media_type: str, detail: str | None = None) -> ContentPart:
        return cls(type="image", data=base64.b64encode(data).decode("ascii"),
                   media_type=media_type, detail=detail)

    @classmethod
    def image_file(cls, path: str | os.PathLike[str], detail: str | None = None) -> ContentPart:
        """Read an image file; the media type is guessed from its name."""
        media_type = mimetypes.guess_type(os.fspath(path))[0] or "application/octet-stream"
        with open(path, "rb") as f:
            return cls.image_bytes(f.read(), media_type, detail)

    @classmethod
    def document_bytes(cls, data: bytes, *, title: str | None = None, context: str | None = None,
                       citations: bool = False, filename: str | None = None) -> ContentPart:
        """A PDF given as its bytes."""
        return cls(type="document", data=base64.b64encode(data).decode("ascii"), media_type="application/pdf",
                   title=title, context=context, citations=citations, filename=filename)

    @classmethod
    def document_file(cls, path: str | os.PathLike[str], *, title: str | None = None, context: str | None = None,
                      citations: bool = False) -> ContentPart:
        """Read a PDF file (``.pdf``) or a plain-text one (any other name, read as UTF-8)."""
        name = os.path.basename(os.fspath(path))
        if name.lower().endswith(".pdf"):
            with open(path, "rb") as f:
                return cls.document_bytes(f.read(), title=title, context=context, citations=citations,
                                          filename=name)
        with open(path, encoding="utf-8") as text_file:
            return cls.document_text(text_file.read(), title=title or name, context=context, citations=citations)

    @classmethod
    def document_url(cls, url: str, *, title: str | None = None, context: str | None = None,
                     citations: bool = False) -> ContentPart:
        """A PDF the vendor fetches itself (Anthropic; OpenAI's Chat Completions needs the bytes)."""
        return cls(type="document", url=url, media_type="application/pdf", title=title, context=context,
                   citations=citations)

    @classmethod
    def document_text(cls, text: str, *, title: str | None = None, context: str | None = None,
                      citations: bool = False) -> ContentPart:
        """A plain-text document (Anthropic cites it by character; elsewhere it is sent as text)."""
        return cls(type="document", text=text, media_type="text/plain", title=title, context=context,
                   citations=citations)

    def cached(self, ttl: str = "5m") -> ContentPart:
        """This part with a prompt-cache breakpoint after it (see ``cache``)."""
        return dataclasses.replace(self, cache=ttl)

    def as_text(self) -> str:
        """A plain-text document as the text a vendor without document parts is sent."""
        head = [f"Document: {self.title}"] if self.title else []
        head += [self.context] if self.context else []
        return "\n".join([*head, "", self.text or ""]) if head else self.text or ""

    @property
    def data_url(self) -> str:
        """The image (or PDF) as a URL: its own URL, or a ``data:`` URL built from its bytes."""
        if self.url:
            return self.url
        return f"data:{self.media_type};base64,{self.data}"


def _decode_content(value: Any) -> Any:
    # dataclasses-json cannot decode Union[str, Tuple[ContentPart, ...]] by itself.
    if isinstance(value, (list, tuple)):
        return tuple(p if isinstance(p, ContentPart) else ContentPart.from_dict(p) for p in value)
    return value


@dataclass(frozen=True)
class ToolCall(_JsonMixin):
    """A function call the model asked for.

    Attributes:
        id: the vendor's call id (generated when the vendor sends none, as Ollama may).
        name: the function name.
        arguments: the parsed arguments, or None when the model's JSON did not parse.
        arguments_json: the arguments exactly as the model produced them.
    """

    id: str
    name: str
    arguments: dict[str, Any] | None
    arguments_json: str


@dataclass(frozen=True)
class ToolCallDelta(_JsonMixin):
    """A fragment of a tool call in a stream; fragments with the same index join up.

    Attributes:
        index: which call of the answer this fragment belongs to.
        id: the call id, on the fragment that opens the call.
        name: the function name, on the fragment that opens the call.
        arguments_delta: the next piece of the JSON arguments text.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments_delta: str = ""


@dataclass(frozen=True)
class Tool(_JsonMixin):
    """A function the model may call.

    Attributes:
        name: letters, digits, ``_`` and ``-``.
        description: what the function does, for the model.
        parameters: a JSON schema whose top level is an object.
        cache: a prompt-cache breakpoint after this tool (``"5m"`` or ``"1h"``): the tool
            definitions up to here are cached (Anthropic; see ``ContentPart.cache``).
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    cache: str | None = None


@dataclass(frozen=True)
class ReasoningBlock(_JsonMixin):
    """Reasoning a vendor returned that must go back unchanged on the next turn (Anthropic's
    signed ``thinking`` and ``redacted_thinking`` blocks; OpenAI Responses' encrypted
    ``reasoning`` items, with the item id as ``signature`` and the encrypted content as ``data``;
    Ollama's ``thinking`` text).

    Attributes:
        provider: the vendor that made it; it is sent back only to that vendor (another one
            could not check it, and would refuse it or misread it).
        kind: ``"thinking"`` or ``"redacted_thinking"``; or ``"message"``, which is not reasoning
            but OpenAI Responses' mark of an answer message's ``phase`` (``"commentary"`` or
            ``"final_answer"`` as ``data``, that message's text as ``text``), sent back with it.
        text: the reasoning text ("" when the vendor returned only a signature).
        signature: the vendor's signature over it, when signed.
        data: the encrypted content of a redacted block.
        index: its position among the answer's content blocks, so the order is kept on replay.
        origin: the server that made it (``scheme://host:port`` of the provider's base URL), for
            content only that server can read (OpenAI's encrypted reasoning: a gateway's or another
            deployment's would be refused); it is sent back only there. None: to any server of
            its vendor.
    """

    provider: str
    kind: Literal["thinking", "redacted_thinking", "message"] = "thinking"
    text: str = ""
    signature: str | None = None
    data: str | None = None
    index: int = 0
    origin: str | None = None


@dataclass(frozen=True)
class Message(_JsonMixin):
    """One turn of a conversation.

    Attributes:
        role: ``system``, ``user``, ``assistant`` or ``tool``.
        content: text, or a tuple of ``ContentPart`` for text with images.
        tool_calls: calls made by an assistant turn.
        tool_call_id: on a ``tool`` turn, the id of the call it answers.
        name: on a ``tool`` turn, the function name (Ollama needs it).
        reasoning: on an assistant turn, the reasoning blocks its answer carried
            (``GenerationResult.to_message()`` keeps them); replayed to the vendor that made them.
    """

    role: Role
    content: str | tuple[ContentPart, ...] = field(
        default="", metadata={"dataclasses_json": {"decoder": _decode_content}}
    )
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    reasoning: tuple[ReasoningBlock, ...] = ()

    @classmethod
    def system(cls, text: str, cache: str | None = None) -> Message:
        """A system prompt; ``cache`` (``"5m"``/``"1h"``) puts a cache breakpoint after it."""
        return cls("system", (ContentPart.from_text(text, cache),) if cache else text)

    @classmethod
    def user(cls, content: str | tuple[ContentPart, ...]) -> Message:
        return cls("user", content)

    @classmethod
    def assistant(cls, text: str = "", tool_calls: tuple[ToolCall, ...] = ()) -> Message:
        return cls("assistant", text, tool_calls=tuple(tool_calls))

    @classmethod
    def tool_result(cls, tool_call_id: str, content: str, name: str | None = None) -> Message:
        return cls("tool", content, tool_call_id=tool_call_id, name=name)

    @property
    def text(self) -> str:
        """The text of the message, parts joined."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type == "text")

    @property
    def images(self) -> tuple[ContentPart, ...]:
        if isinstance(self.content, str):
            return ()
        return tuple(p for p in self.content if p.type == "image")

    @property
    def documents(self) -> tuple[ContentPart, ...]:
        if isinstance(self.content, str):
            return ()
        return tuple(p for p in self.content if p.type == "document")


@dataclass(frozen=True)
class RateLimit(_JsonMixin):
    """One of the vendor's rate limits as its response headers stated it with an answer.

    Attributes:
        limit: the most the window allows (requests or tokens), when stated.
        remaining: what is left of it now, when stated.
        reset_s: seconds from the answer until the limit is fully replenished, when stated.
    """

    limit: int | None = None
    remaining: int | None = None
    reset_s: float | None = None

    def room_in(self, needed: int) -> float:
        """Seconds until ``needed`` more fit (0.0: they fit now). Vendors refill continuously,
        so the wait is the share of ``reset_s`` the missing part takes; the whole of it when
        the limit is not stated."""
        if self.remaining is None or self.remaining >= needed or self.reset_s is None:
            return 0.0
        if self.limit is None or self.limit <= self.remaining:
            return self.reset_s
        return min(self.reset_s, self.reset_s * (needed - self.remaining) / (self.limit - self.remaining))


@dataclass(frozen=True)
class RateLimits(_JsonMixin):
    """What the vendor said of the account's rate limits with an answer (OpenAI
    ``x-ratelimit-*``, Anthropic ``anthropic-ratelimit-*``); a limit it did not state is None.

    Attributes:
        requests: requests a minute.
        tokens: tokens a minute (Anthropic: the most restrictive of its token limits).
        input_tokens, output_tokens: Anthropic's input and output token limits.
    """

    requests: RateLimit | None = None
    tokens: RateLimit | None = None
    input_tokens: RateLimit | None = None
    output_tokens: RateLimit | None = None

    def room_in(self, tokens: int, input_tokens: int | None = None) -> float:
        """Seconds until one more request fits every stated limit: about ``tokens`` tokens in
        all, ``input_tokens`` of them its input (all of them when not given); an output limit
        only needs to have some room left."""
        needs = ((self.requests, 1), (self.tokens, tokens),
                 (self.input_tokens, tokens if input_tokens is None else input_tokens), (self.output_tokens, 1))
        waits = [limit.room_in(need) for limit, need in needs if limit is not None]
        return max(waits, default=0.0)


@dataclass(frozen=True)
class Cost(_JsonMixin):
    """What one call cost, in US dollars, from the catalog's prices for the model that answered.

    A part whose tokens have no known price is None, and then so is ``total_usd``: an unknown
    price is never counted as 0. A call whose model has no prices at all has no ``Cost``
    (``result.cost`` is None).

    Attributes:
        input_usd: input tokens read at the full price (neither cached nor written to the cache).
        cached_input_usd: input tokens read from the prompt cache.
        cache_write_usd: input tokens written to the prompt cache (Anthropic).
        output_usd: output tokens, reasoning included.
        reasoning_usd: the part of ``output_usd`` spent on reasoning tokens (None when the vendor
            did not say how many there were).
        total_usd: the sum, or None when a part is unknown.
    """

    input_usd: float | None = 0.0
    cached_input_usd: float | None = 0.0
    cache_write_usd: float | None = 0.0
    output_usd: float | None = 0.0
    reasoning_usd: float | None = None
    total_usd: float | None = 0.0


@dataclass(frozen=True)
class Usage(_JsonMixin):
    """Token counts of one call.

    Attributes:
        input_tokens: prompt tokens, cached ones included.
        output_tokens: generated tokens (reasoning included where the vendor counts it).
        total_tokens: their sum, or the vendor's own total.
        cached_input_tokens: input tokens read from the vendor's prompt cache.
        cache_creation_input_tokens: input tokens written to it (Anthropic; OpenAI
            ``cache_write_tokens``, GPT-5.6 and later).
        reasoning_tokens: tokens spent reasoning, part of ``output_tokens`` (OpenAI
            ``reasoning_tokens``, Anthropic ``thinking_tokens``).
        server_timings_s: seconds the server reports spending per phase (Ollama: ``total``,
            ``load``, ``prompt_eval``, ``eval``), when it reports them.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    server_timings_s: dict[str, float] | None = None

    @property
    def prompt_tokens(self) -> int:
        """OpenAI's name for ``input_tokens``."""
        return self.input_tokens

    @property
    def completion_tokens(self) -> int:
        """OpenAI's name for ``output_tokens``."""
        return self.output_tokens


@dataclass(frozen=True)
class TokenCount(_JsonMixin):
    """How many input tokens a request would take (``Provider.count_tokens_sync``).

    Attributes:
        input_tokens: the tokens of everything the call would send: messages, system prompt,
            tools, images and documents.
        exact: True when the vendor or the server counted them with the model's own tokenizer;
            False for the library's estimate (``GenerateRequest.estimated_input_tokens``).
        source: who counted: ``"anthropic count_tokens"``, ``"openai responses/input_tokens"``,
            ``"llama.cpp /apply-template + /tokenize"`` or ``"estimate"``.
        provider, model: the provider and model the count is for (a pool's: the member asked).
    """

    input_tokens: int
    exact: bool
    source: str
    provider: str = ""
    model: str = ""


@dataclass(frozen=True)
class Citation(_JsonMixin):
    """A passage of a document (``ContentPart`` with ``citations=True``) the answer cites.

    Attributes:
        kind: where in the document: ``"page_location"`` (PDF pages), ``"char_location"`` (plain
            text characters), ``"content_block_location"``, or another kind the vendor names.
        cited_text: the passage quoted.
        document_index: which document of the request (0 for the first), when the vendor says.
        document_title: its title, when it has one.
        start, end: the passage's place in the document: first and end page (1-based, end
            exclusive), character or block, by ``kind``; None when the kind has none.
        answer_start, answer_end: the stretch of ``GenerationResult.content`` that cites it.
    """

    kind: str
    cited_text: str
    document_index: int | None = None
    document_title: str | None = None
    start: int | None = None
    end: int | None = None
    answer_start: int = 0
    answer_end: int = 0


@dataclass(frozen=True)
class Attempt(_JsonMixin):
    """One member a pool tried or passed over for a call, as ``GenerationResult.attempts`` and
    ``AllProvidersFailedError.attempts`` list them.

    Attributes:
        provider, model: the member.
        error: what it raised (a skipped member: the ``ValidationError`` it would have raised;
            a member given up on: why); None when it answered. Not in ``to_dict``; ``reason`` is.
        elapsed_s: how long the try took.
        skipped: the member was not tried (it could not take the request, or could not in time).
        outcome: ``"ok"`` (its answer is the result), ``"failed"``, ``"skipped"``,
            ``"abandoned"`` (given up on: no first chunk in time, or a hedge that lost),
            ``"filtered"`` (it answered, but with a content filter or a refusal the pool was told
            to fall back on).
        reason: the error or the reason, as text ("" for ``ok``).
    """

    provider: str
    model: str
    error: BaseException | None = field(default=None, compare=False, repr=False,
                                        metadata={"dataclasses_json": {"exclude": lambda _: True}})
    elapsed_s: float = 0.0
    skipped: bool = False
    outcome: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        if not self.outcome:
            _set_attribute(self, "outcome", "skipped" if self.skipped else "ok" if self.error is None else "failed")
        if not self.reason and self.error is not None:
            _set_attribute(self, "reason", f"{type(self.error).__name__}: {self.error}")

    def __str__(self) -> str:
        what = self.reason or self.outcome
        return f"{self.provider}:{self.model} after {self.elapsed_s:.2f}s: {what}"


class Attempts(tuple[Attempt, ...]):
    """A result's attempt trace: the ``Attempt`` of each member tried or passed over, in order,
    the one that answered last. Empty for a provider called directly.

    As a number (``==``, ``<``, ``+``, ``int()``) it is the count of tries, skips not counted,
    and 1 for a direct call: the count ``GenerationResult.attempts`` was before it was a trace.
    """

    __slots__ = ()

    @property
    def tries(self) -> int:
        """Tries made (a skipped member is not one); 1 for a direct call."""
        return sum(1 for a in self if not a.skipped) if self else 1

    def __int__(self) -> int:
        return self.tries

    __index__ = __int__

    def __eq__(self, other: object) -> bool:
        if other.__class__ is int:
            return self.tries == other
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = tuple.__hash__

    def __lt__(self, other: Any) -> bool:
        return self.tries < other if other.__class__ is int else tuple.__lt__(self, other)

    def __le__(self, other: Any) -> bool:
        return self.tries <= other if other.__class__ is int else tuple.__le__(self, other)

    def __gt__(self, other: Any) -> bool:
        return self.tries > other if other.__class__ is int else tuple.__gt__(self, other)

    def __ge__(self, other: Any) -> bool:
        return self.tries >= other if other.__class__ is int else tuple.__ge__(self, other)

    def __add__(self, other: Any) -> Any:
        if other.__class__ is int:
            return self.tries + other
        return Attempts(tuple.__add__(self, other))

    def __radd__(self, other: Any) -> Any:
        if other.__class__ is int:
            return other + self.tries
        return Attempts(tuple(other) + tuple(self))

    def __repr__(self) -> str:
        return f"Attempts({list(self)!r})" if self else "Attempts()"


DIRECT = Attempts()


@dataclass(frozen=True)
class GenerationResult(_JsonMixin):
    """A complete answer.

    Attributes:
        content: the generated text ("" when the model only called tools).
        model: the model that answered, as the vendor reported it.
        provider: provider id.
        finish_reason: why generation stopped, in the common vocabulary.
        usage: token counts, when the vendor reported them.
        tool_calls: the calls the model asked for.
        latency_s: seconds from sending the request to having the whole answer.
        request_id: the vendor's request id.
        attempts: the pool's attempt trace (``Attempts``: each member tried or skipped, and how
            it went); empty for a provider called directly. As a number it is the count of tries.
        raw: the vendor's JSON answer, unchanged (empty for a result joined from a stream).
        reasoning: the reasoning text or summary the vendor returned, None when it returned none.
        reasoning_blocks: reasoning to send back with this turn (see ``to_message``).
        parsed: for a ``schema=`` call, the answer decoded and checked against the schema (the
            dataclass instance for a dataclass schema); None otherwise, when the model refused,
            and when it called tools instead of answering.
        refusal: the model's refusal (OpenAI ``message.refusal``, Anthropic ``stop_reason:
            "refusal"``), None when it did not refuse.
        citations: the document passages the answer cites, in answer order (Anthropic, for
            documents sent with ``citations=True``).
        response_id: the vendor's id of this answer (OpenAI ``resp_...`` or ``chatcmpl-...``,
            Anthropic ``msg_...``), when it sent one; with ``store=True`` on OpenAI's Responses
            wire, ``extra={"previous_response_id": result.response_id}`` continues from it.
        rate_limits: the account's rate limits as the vendor stated them with this answer
            (None when it stated none, as Ollama never does). Pools steer away from a member
            whose limits have no room for another call like this one until they have.
        cost: what the call cost from the catalog's prices (see ``Cost``); None when the
            model's prices are unknown or the vendor reported no usage.
    """

    content: str
    model: str
    provider: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    latency_s: float = 0.0
    request_id: str | None = None
    attempts: Attempts = field(default=DIRECT, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    reasoning: str | None = None
    reasoning_blocks: tuple[ReasoningBlock, ...] = ()
    parsed: Any = field(default=None, compare=False)
    refusal: str | None = None
    citations: tuple[Citation, ...] = ()
    response_id: str | None = None
    rate_limits: RateLimits | None = field(default=None, compare=False)
    cost: Cost | None = None

    @property
    def text(self) -> str:
        return self.content

    def to_message(self) -> Message:
        """This answer as the assistant turn of a conversation: text, tool calls, and the
        reasoning blocks the vendor needs back (multi-turn tool use with thinking)."""
        return Message("assistant", self.content, tool_calls=self.tool_calls, reasoning=self.reasoning_blocks)

    def __str__(self) -> str:
        return self.content


@dataclass(frozen=True)
class EmbeddingResult(_JsonMixin):
    """The vectors of one ``embed_sync`` call.

    Attributes:
        vectors: one vector per input text, in input order (however many requests the texts
            were sent in).
        model: the embedding model that made them, as the vendor reported it. Vectors of
            different models are not comparable: keep one model per index.
        provider: provider id.
        usage: input tokens, summed over the call's requests (``input_tokens`` and
            ``total_tokens``), when the vendor reported them.
        latency_s: seconds from sending the first request to having the last answer.
        request_id: the vendor's request id of the last request.
        attempts: the pool's attempt trace, as ``GenerationResult.attempts``.
        rate_limits: the account's rate limits as stated with the last answer.
    """

    vectors: tuple[tuple[float, ...], ...]
    model: str
    provider: str
    usage: Usage | None = None
    latency_s: float = 0.0
    request_id: str | None = None
    attempts: Attempts = field(default=DIRECT, compare=False)
    rate_limits: RateLimits | None = field(default=None, compare=False)
    cost: Cost | None = None

    @property
    def dimensions(self) -> int:
        """The length of each vector (0 when there are none)."""
        return len(self.vectors[0]) if self.vectors else 0

    def __len__(self) -> int:
        return len(self.vectors)


@dataclass(frozen=True)
class StreamChunk(_JsonMixin):
    """One piece of a streamed answer.

    Attributes:
        content: the text delta ("" for chunks that carry only metadata).
        index: position of this chunk in the stream, from 0.
        finish_reason: set on the last chunk.
        usage: set on the last chunk when the vendor reports usage.
        tool_calls: tool-call fragments carried by this chunk.
        model: the model reported by the vendor, when known.
        provider: provider id.
        request_id: the vendor's request id, on the last chunk (when the vendor sent one).
        reasoning: a reasoning text delta ("" for none).
        reasoning_blocks: on the last chunk, the reasoning blocks to send back (see
            ``GenerationResult.to_message``).
        refusal: a refusal text delta ("" for none); the model refused instead of answering.
        parsed: on the last chunk of a ``schema=`` stream, the checked answer (see
            ``GenerationResult.parsed``).
        citations: the citations of the text block that just ended (see
            ``GenerationResult.citations``).
        response_id: on the last chunk, the vendor's id of this answer (see
            ``GenerationResult.response_id``).
        attempts: on the last chunk of a pool's stream, its attempt trace (see
            ``GenerationResult.attempts``).
        rate_limits: on the last chunk, the rate limits the vendor stated when the stream
            opened (see ``GenerationResult.rate_limits``).
        cost: on the last chunk, what the call cost (see ``GenerationResult.cost``).
    """

    content: str = ""
    index: int = 0
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    model: str | None = None
    provider: str | None = None
    request_id: str | None = None
    reasoning: str = ""
    reasoning_blocks: tuple[ReasoningBlock, ...] = ()
    refusal: str = ""
    parsed: Any = field(default=None, compare=False)
    citations: tuple[Citation, ...] = ()
    response_id: str | None = None
    attempts: Attempts = field(default=DIRECT, compare=False)
    rate_limits: RateLimits | None = field(default=None, compare=False)
    cost: Cost | None = None

    def __str__(self) -> str:
        return self.content


_new_object = object.__new__
_set_attribute = object.__setattr__


def fast_stream_chunk(content: str, index: int, tool_calls: tuple[ToolCallDelta, ...], model: str | None,
                      provider: str) -> StreamChunk:
    """``StreamChunk(content, index, tool_calls=..., model=..., provider=...)`` for the streams'
    hot path: the same frozen instance, built in half the time by setting its ``__dict__`` at
    once rather than eight attributes through the frozen ``__init__``'s ``object.__setattr__``.
    ``test_types.py`` checks it stays equal to the constructor's result, field for field."""
    chunk = _new_object(StreamChunk)
    _set_attribute(chunk, "__dict__", {"content": content, "index": index, "finish_reason": None, "usage": None,
                                       "tool_calls": tool_calls, "model": model, "provider": provider,
                                       "request_id": None, "reasoning": "", "reasoning_blocks": (),
                                       "refusal": "", "parsed": None, "citations": (), "response_id": None,
                                       "attempts": DIRECT, "rate_limits": None, "cost": None})
    return chunk


@dataclass(frozen=True)
class Capabilities(_JsonMixin):
    """What a provider/model can do.

    Attributes:
        supports_streaming: token streaming.
        supports_vision: image input.
        supports_function_calling: tools.
        max_tokens: the largest ``max_tokens`` (output) the model accepts.
        max_context_window: input plus output tokens the model accepts.
        tier: flagship, balanced, fast or local.
        supports_structured_output: ``schema=`` (natively, or by the vendor's fallback).
        supports_reasoning: ``reasoning=`` levels other than the model's default.
        supports_documents: PDF document parts.
        supports_embeddings: ``embed_sync``/``embed`` (the provider has an embeddings endpoint;
            the embedding model is its own, see ``embed_sync``).
    """

    supports_streaming: bool = True
    supports_vision: bool = False
    supports_function_calling: bool = False
    max_tokens: int = 4096
    max_context_window: int = 8192
    tier: Tier = Tier.BALANCED
    supports_structured_output: bool = True
    supports_reasoning: bool = False
    supports_documents: bool = False
    supports_embeddings: bool = False


Lifecycle = Literal["active", "deprecated", "retired"]


@dataclass(frozen=True)
class ModelInfo(_JsonMixin):
    """A row of the model catalog (``mirror_providers/data/models.json``; see :mod:`.models`).

    Attributes:
        id: the id sent on the wire.
        context_window: input plus output tokens.
        max_output: the ``max_tokens`` ceiling.
        vision, tools: image input and function calling.
        tier: the model's tier.
        aliases: other names accepted for this model; the request sends ``id``.
        lifecycle: ``"active"``, ``"deprecated"`` or ``"retired"`` as of the data's date; use
            :meth:`status` for the state on a given day (a retirement date may have passed since).
        retires_on: the vendor's shutdown date (ISO), when announced.
        provider: the vendor id (``"openai"``...).
        snapshots: dated ids of this model, sent as given (``gpt-4o-2024-08-06``).
        deprecated_on: when the vendor announced the deprecation (ISO), when known.
        replacement: the model the vendor names as the replacement.
        documents: PDF input.
        structured_output: JSON-schema output natively (``response_format``, ``output_config.format``,
            Ollama ``format``); Anthropic models without it are asked by forcing a tool.
        reasoning: how the model is asked to reason, or None when it does not: ``"effort"``
            (OpenAI ``reasoning_effort``), ``"adaptive"`` (Anthropic adaptive thinking with
            ``output_config.effort``), ``"budget"`` (Anthropic thinking with ``budget_tokens``),
            ``"think"`` (Ollama ``think`` on/off), ``"think_levels"`` (Ollama ``think`` levels).
        reasoning_levels: the levels the model accepts (``"off"``/``"none"`` among them when
            reasoning can be turned off); empty when not known, and then not checked.
        reasoning_default: what the model does when not told.
        rejects: request parameters the model refuses (``temperature``, ``top_p``, ``top_k``,
            ``tools``, ``prefill`` (an assistant message last), ``forced_tool_choice``).
        rejects_while_reasoning: parameters refused unless reasoning is off.
        rejects_together: parameters that may be given one at a time but not all at once.
        renames: request parameters sent under another name (``max_tokens`` ->
            ``max_completion_tokens``), as pairs.
        price_input, price_output, price_cached_input, price_cache_write: USD per million
            tokens, where the vendor publishes them.
        responses: OpenAI: the model needs the Responses API for some of what it does (tools
            with reasoning, or everything: the pro models); ``api="auto"`` sends it there.
    """

    id: str
    context_window: int
    max_output: int
    vision: bool = False
    tools: bool = True
    tier: Tier = Tier.BALANCED
    aliases: tuple[str, ...] = ()
    lifecycle: Lifecycle = "active"
    retires_on: str | None = None
    provider: str = ""
    snapshots: tuple[str, ...] = ()
    deprecated_on: str | None = None
    replacement: str | None = None
    documents: bool = False
    structured_output: bool = True
    reasoning: Literal["effort", "adaptive", "budget", "think", "think_levels"] | None = None
    reasoning_levels: tuple[str, ...] = ()
    reasoning_default: str | None = None
    rejects: tuple[str, ...] = ()
    rejects_while_reasoning: tuple[str, ...] = ()
    rejects_together: tuple[str, ...] = ()
    renames: tuple[tuple[str, str], ...] = ()
    price_input: float | None = None
    price_output: float | None = None
    price_cached_input: float | None = None
    price_cache_write: float | None = None
    responses: bool = False

    def names(self) -> tuple[str, ...]:
        """Every name this row answers to: id, aliases, snapshots."""
        return (self.id, *self.aliases, *self.snapshots)

    def status(self, today: str | None = None) -> Lifecycle:
        """The lifecycle on ``today`` (ISO date; the machine's date when None): retired once the
        shutdown date has come, deprecated once announced."""
        day = today or datetime.date.today().isoformat()
        if self.retires_on is not None:
            if day >= self.retires_on:
                return "retired"
        elif self.lifecycle == "retired":
            return "retired"
        if self.deprecated_on is not None:
            return "deprecated" if day >= self.deprecated_on else "active"
        return "active" if self.lifecycle == "active" else "deprecated"

    def wire_name(self, param: str) -> str:
        """What ``param`` is called on the wire for this model."""
        return dict(self.renames).get(param, param)

    def capabilities(self, streaming: bool = True) -> Capabilities:
        return Capabilities(
            supports_streaming=streaming,
            supports_vision=self.vision,
            supports_function_calling=self.tools and "tools" not in self.rejects,
            max_tokens=self.max_output,
            max_context_window=self.context_window,
            tier=self.tier,
            supports_structured_output=self.structured_output,
            supports_reasoning=self.reasoning is not None,
            supports_documents=self.documents,
        )


@dataclass(frozen=True)
class ModelCatalog(_JsonMixin):
    """What ``refresh_models_sync`` found: the merged catalog and where its live part came from.

    Attributes:
        models: the catalog rows, the vendor's listing merged over the shipped ones.
        listed: the ids the vendor listed (as the catalog names them).
        fetched_at: when the vendor was asked (Unix time).
        source: ``"vendor"`` (asked now) or ``"cache"`` (a listing cached on disk earlier).
    """

    models: tuple[ModelInfo, ...]
    listed: tuple[str, ...]
    fetched_at: float
    source: Literal["vendor", "cache"]

    def age_s(self, now: float | None = None) -> float:
        """Seconds since the vendor was asked."""
        return max(0.0, (time.time() if now is None else now) - self.fetched_at)

    def find(self, name: str) -> ModelInfo | None:
        """The row for a model id, alias or snapshot."""
        return next((m for m in self.models if name in m.names()), None)


@dataclass(frozen=True)
class HealthStatus(_JsonMixin):
    """The outcome of a health check; true in a boolean context when healthy.

    Attributes:
        healthy: the provider answered and the model is usable.
        provider, model: who was checked.
        latency_s: how long the check took.
        error: why it is not healthy.
        detail: extra facts (server version, whether the model is pulled...).
    """

    healthy: bool
    provider: str
    model: str
    latency_s: float = 0.0
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.healthy


@dataclass(frozen=True)
class ProviderStats(_JsonMixin):
    """Counters and latencies of one provider since it was created.

    Attributes:
        provider, model: who.
        status: ``"unknown"`` (no call finished yet), ``"healthy"``, ``"degraded"`` (its last
            call failed), ``"unhealthy"`` (3 or more consecutive failures; in a pool, the pool's
            ``failure_threshold``) or, for a pool member out of rotation, ``"cooldown"``.
        requests: calls started; successes and errors are the finished ones.
        in_flight: calls running now.
        consecutive_errors: failures since the last success.
        latency_p50_s, latency_p95_s, latency_p99_s: over the last 1000 successful calls.
        last_error: the last error, as text (never holds a key).
        last_error_at: its Unix time.
        cooldown_remaining_s: for a pool member, seconds until it is tried again (None: in rotation).
        members: for pools, the stats of each member.
        hedges, hedges_won: for pools with ``hedge_after_s``, hedged requests started, and how
            many of them answered first.
        cost_usd: what the successful calls cost, summed over those whose cost is known.
        unpriced: successful calls whose cost is not known (a model without prices, a part
            without a price, no usage reported): ``cost_usd`` leaves them out.
    """

    provider: str
    model: str
    status: str = "unknown"
    requests: int = 0
    successes: int = 0
    errors: int = 0
    in_flight: int = 0
    consecutive_errors: int = 0
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_p99_s: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    cooldown_remaining_s: float | None = None
    members: tuple[ProviderStats, ...] = ()
    hedges: int = 0
    hedges_won: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0


def parse_tool_arguments(text: str) -> dict[str, Any] | None:
    """Parse a tool call's JSON arguments: ``{}`` for empty text, None when not a JSON object."""
    import json

    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def join_chunks(chunks: Iterable[StreamChunk], *, provider: str = "", model: str = "") -> GenerationResult:
    """Join a stream's chunks into the ``GenerationResult`` the same call would have returned."""
    text: list[str] = []
    calls: dict[int, list[Any]] = {}  # index -> [id, name, [argument pieces]]
    finish: FinishReason | None = None
    usage: Usage | None = None
    request_id: str | None = None
    response_id: str | None = None
    limits: RateLimits | None = None
    cost: Cost | None = None
    trace: Attempts = DIRECT
    thought: list[str] = []
    refused: list[str] = []
    blocks: tuple[ReasoningBlock, ...] = ()
    parsed: Any = None
    cited: list[Citation] = []
    for chunk in chunks:
        text.append(chunk.content)
        if chunk.citations:
            cited += chunk.citations
        if chunk.reasoning:
            thought.append(chunk.reasoning)
        if chunk.refusal:
            refused.append(chunk.refusal)
        if chunk.parsed is not None:
            parsed = chunk.parsed
        blocks = chunk.reasoning_blocks or blocks
        for d in chunk.tool_calls:
            slot = calls.setdefault(d.index, [None, None, []])
            slot[0] = slot[0] or d.id
            slot[1] = slot[1] or d.name
            slot[2].append(d.arguments_delta)
        finish = chunk.finish_reason or finish
        usage = chunk.usage or usage
        provider = chunk.provider or provider
        model = chunk.model or model
        request_id = chunk.request_id or request_id
        response_id = chunk.response_id or response_id
        limits = chunk.rate_limits or limits
        cost = chunk.cost or cost
        trace = chunk.attempts or trace
    # A call of a function without parameters may stream no argument text at all (Anthropic sends
    # one empty fragment): its arguments are "{}", as the same answer unstreamed says.
    joined = {i: "".join(c[2]) or "{}" for i, c in calls.items()}
    tool_calls = tuple(
        ToolCall(id=c[0] or "", name=c[1] or "", arguments=parse_tool_arguments(joined[i]), arguments_json=joined[i])
        for i, c in sorted(calls.items())
    )
    reasoning = "".join(thought) if thought or any(b.kind != "message" for b in blocks) else None
    return GenerationResult("".join(text), model, provider, finish, usage, tool_calls, request_id=request_id,
                            reasoning=reasoning, reasoning_blocks=blocks, parsed=parsed,
                            refusal="".join(refused) or None, citations=tuple(cited), response_id=response_id,
                            attempts=trace, rate_limits=limits, cost=cost)
