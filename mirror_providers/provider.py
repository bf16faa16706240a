"""The ``Provider`` interface: what every vendor client and every pool offers.

Subclasses implement two blocking hooks, ``_generate(request)`` and ``_stream(request)``. This
module derives everything else from them once: input validation, statistics, and the awaitable
``generate()`` / async-iterator ``stream()`` (through ``_aio``: calls on its thread pool, each
stream on a thread of its own).

Embeddings follow the same pattern: a provider that has them implements ``_embed(request)`` and
``_check_embed(request)``; ``embed_sync`` (validation, statistics) and the awaitable ``embed``
are derived here.

Example::

    from mirror_providers.openai import OpenAIProvider

    with OpenAIProvider(model="gpt-4o-mini") as llm:
        print(llm.generate_sync("Capital of France?", max_tokens=5).content)
        for chunk in llm.stream_sync("Count to three"):
            print(chunk.content, end="", flush=True)
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from . import _aio, _telemetry, hooks
from ._call import CallScope, call_aborted, current_call, on_abort
from ._stats import Stats, percentiles
from ._wait import WouldBlock
from .conversation import Conversation
from .embeddings import EmbedRequest, build_embed_request
from .errors import SHAPE_ERRORS, CallbackError, InvalidResponseError, ProviderError, ValidationError
from .request import GenerateRequest, Prompt, build_request, counting_tokens
from .types import (
    Capabilities,
    EmbeddingResult,
    GenerationResult,
    HealthStatus,
    ProviderStats,
    StreamChunk,
    TokenCount,
)

if TYPE_CHECKING:
    from concurrent.futures import Future

    from typing_extensions import Unpack

    from .progress import ProgressBar
    from .request import Options

__all__ = ["ChunkStream", "Provider", "call_aborted", "current_scope", "on_abort", "percentiles",
           "set_max_workers", "thread_pool_size"]

set_max_workers = _aio.set_max_workers

Answer = TypeVar("Answer", GenerationResult, EmbeddingResult)
T = TypeVar("T")


def thread_pool_size() -> int:
    """How many threads run awaitables and batch helpers (``set_max_workers`` changes it)."""
    return _aio.max_workers()


def current_scope() -> CallScope | None:
    """The scope of the call running in this context (``_call.current_call``), or None."""
    scope = current_call.get()
    return scope if isinstance(scope, CallScope) else None


def _progress_bar(progress: bool | ProgressBar, size: int) -> ProgressBar | None:
    """The bar ``map_sync(progress=...)`` advances: a new one for True, the caller's own, or None."""
    if not progress:
        return None
    from .progress import ProgressBar  # loaded only by a batch that shows its progress

    if not isinstance(progress, ProgressBar):
        return ProgressBar(total=size)
    if progress.total is None:
        progress.update(total=progress.done + size)
    return progress


class ChunkStream(Iterator[StreamChunk]):
    """What ``stream_sync`` returns: an iterator of chunks that can also be aborted.

    ``close()`` stops it from the consuming thread (the generator's cleanup runs, the response
    is released); ``abort()`` may be called from any other thread and breaks the connection so a
    read blocked in the consuming thread fails at once.
    """

    def __init__(self, chunks: Iterator[StreamChunk]) -> None:
        self._chunks = chunks
        self._scope: CallScope | None = None
        self._run: Callable[..., Any] | None = None

    def __iter__(self) -> ChunkStream:
        return self

    def __next__(self) -> StreamChunk:
        chunk: StreamChunk = (self._run or self._context())(next, self._chunks)
        return chunk

    def within(self, take: Callable[[Iterator[StreamChunk]], T]) -> T:
        """``take(chunks)`` run in the stream's context, as ``next`` is: a reader that takes
        several steps at once (``_aio``'s loop reader) enters the context once for all of them."""
        result: T = (self._run or self._context())(take, self._chunks)
        return result

    def _context(self) -> Callable[..., Any]:
        # The stream runs in a context of its own, made at the first chunk, where its abort
        # scope is set: cheaper per chunk than setting and resetting the scope around each
        # one, and what the stream sets in its context stays there.
        self._scope = CallScope(current_call.get())
        context = contextvars.copy_context()
        context.run(current_call.set, self._scope)
        self._run = context.run
        return self._run

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            if self._run is None:
                close()
            else:  # the stream's cleanup runs in its own context too
                self._run(close)

    def abort(self) -> None:
        if self._scope is not None:
            self._scope.abort()


class Provider:
    """A source of generations: a vendor client, or a pool of providers.

    Blocking calls are the primary API (``generate_sync``, ``stream_sync``,
    ``health_check_sync``); ``generate``, ``stream`` and ``health_check`` are their awaitable
    forms (calls run on the library's thread pool, each stream on a thread of its own). Use a
    provider as a context manager, or call ``close()``, to release its connections.

    Every call accepts the options of :class:`mirror_providers.request.Options`: ``system``,
    ``max_tokens``, ``temperature``, ``top_p``, ``stop``, ``tools``, ``tool_choice``,
    ``parallel_tool_calls``, ``timeout`` (seconds, per read), ``deadline_s`` (seconds, the whole
    call), ``max_retries`` (this call's retry count) and ``extra`` (vendor fields, sent as given;
    JSON values only, and never a field the vendor's payload builder sets from the options, such
    as ``stream``). Every option is checked before anything is sent: a bad value or an unknown
    name raises ``ValidationError`` naming it.
    """

    provider_id: ClassVar[str] = "provider"
    # Whether ``stream()`` may read on the event loop (``_wait``): HTTP providers say so.
    _READS_ON_LOOP: ClassVar[bool] = False

    def __init__(self) -> None:
        self._stats = Stats()
        self._hooks: tuple[Any, ...] = ()

    # -- hooks ------------------------------------------------------------------------------

    def add_hook(self, hook: Any) -> None:
        """Call ``hook`` with this provider's events (a pool's: its own); see ``hooks``."""
        hooks._check(hook)
        self._hooks = (*self._hooks, hook)

    def remove_hook(self, hook: Any) -> None:
        """Stop calling a hook ``add_hook`` registered here."""
        self._hooks = tuple(h for h in self._hooks if h is not hook)

    def _event(self, kind: str, **fields: Any) -> hooks.HookEvent:
        """A hook event about this provider (a pool says it is one, with its name)."""
        fields.setdefault("provider", self.provider_id)
        fields.setdefault("model", self.model_name)
        return hooks.HookEvent(kind, **fields)

    def _told_error(self, exc: ProviderError, start: float, stream: bool, chunks: int | None = None) -> None:
        hooks.emit(self._hooks, "on_error", lambda: self._event(
            "error", elapsed_s=time.perf_counter() - start, stream=stream, status=getattr(exc, "status", None),
            request_id=getattr(exc, "request_id", None), error=type(exc).__name__,
            message=getattr(exc, "message", str(exc)), chunks=chunks))

    def _told_stream_end(self, last: StreamChunk | None, count: int, elapsed: float) -> None:
        hooks.emit(self._hooks, "on_stream_end", lambda: self._event(
            "stream_end", provider=(last.provider if last else None) or self.provider_id,
            model=(last.model if last else None) or self.model_name, elapsed_s=elapsed, stream=True,
            request_id=last.request_id if last else None, usage=last.usage if last else None,
            cost=last.cost if last else None, finish_reason=last.finish_reason if last else None, chunks=count,
            attempt=max(1, int(last.attempts)) if last else 1))

    # -- what subclasses implement -------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The model requests go to (an alias resolved to the vendor's id)."""
        raise NotImplementedError

    @property
    def capabilities(self) -> Capabilities:
        """What the model can do."""
        raise NotImplementedError

    @property
    def identity(self) -> str:
        """Names the upstream this provider calls, the same in every process configured alike
        (a pool's state store keys its members by it): ``provider_id:model``, plus the endpoint
        for HTTP providers. Never holds a secret."""
        return f"{self.provider_id}:{self.model_name}"

    def _generate(self, request: GenerateRequest) -> GenerationResult:
        raise NotImplementedError

    def _stream(self, request: GenerateRequest) -> Iterator[StreamChunk]:
        raise NotImplementedError

    def _count_tokens(self, request: GenerateRequest) -> TokenCount:
        """The input tokens of a checked request; by default the library's estimate. A vendor
        whose API or server counts overrides this."""
        return TokenCount(request.estimated_input_tokens(), exact=False, source="estimate",
                          provider=self.provider_id, model=self.model_name)

    def health_check_sync(self) -> HealthStatus:
        """Check cheaply that the provider answers and the model is usable. Never raises."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections this provider owns."""

    # -- derived, once ----------------------------------------------------------------------

    def generate_sync(self, prompt: Prompt, **options: Unpack[Options]) -> GenerationResult:
        """Generate a complete answer.

        Args:
            prompt: text, a ``Message``, or a list of messages (``Message`` or
                ``{"role": ..., "content": ...}`` dicts).
            **options: see the class docstring.

        Raises:
            ValidationError: bad input, before any network call.
            APIError: the vendor answered with an error (a subclass says which).
            TransportError: the HTTP exchange failed.
        """
        request = build_request(prompt, options)
        self._check(request)
        return self._recorded(lambda: self._generate(request), request)

    def count_tokens_sync(self, prompt: Prompt, **options: Unpack[Options]) -> TokenCount:
        """Count the input tokens ``generate_sync(prompt, **options)`` would send, without generating.

        The prompt and options are the same as ``generate_sync``'s and are checked the same way,
        so the count covers the system prompt, tools, images and documents the call would send.
        Who counts: Anthropic's ``/v1/messages/count_tokens`` (exact; free, rate-limited apart
        from generations); OpenAI's ``/v1/responses/input_tokens`` for a model on the Responses
        API (exact); the embedded llama.cpp server's own tokenizer over the chat template
        (``LocalProvider``, exact); everywhere else, Chat Completions and Ollama included, which
        have no count endpoint, the library's estimate (``exact=False``). A pool asks the first
        member in rotation that would take the request. Counting is not a generation: it does
        not show in ``get_stats()``.

        Raises:
            ValidationError: bad input, before any network call.
            APIError: the vendor refused to count (a subclass says why; retried as calls are).
            TransportError: the HTTP exchange failed.
        """
        request = build_request(prompt, options)
        token = counting_tokens.set(True)
        try:
            self._check(request)
        finally:
            counting_tokens.reset(token)
        try:
            return self._count_tokens(request)
        except ProviderError as exc:
            self._on_error(exc)
            raise
        except SHAPE_ERRORS as exc:  # a parser met an answer of the wrong shape
            raise InvalidResponseError(f"token count not understood ({type(exc).__name__}: {str(exc)[:200]})",
                                       provider=self.provider_id, model=self.model_name) from exc

    async def count_tokens(self, prompt: Prompt, **options: Unpack[Options]) -> TokenCount:
        """Awaitable ``count_tokens_sync``, run on the library's thread pool (cancelling the task
        breaks the HTTP connection, as for ``generate``)."""
        request = build_request(prompt, options)
        self._check(request)  # refused here, before a worker is taken
        scope = CallScope(current_call.get())

        def call() -> TokenCount:
            token = current_call.set(scope)
            try:
                return self.count_tokens_sync(request)
            finally:
                current_call.reset(token)

        return await _aio.run_sync(call, on_cancel=scope.abort)

    def _recorded(self, call: Callable[[], Answer], request: Any = None, operation: str = "chat") -> Answer:
        """Run one blocking generation (or embeddings call), counting it in the stats (and, when
        tracing is on, in a span)."""
        telemetry = _telemetry.active
        if telemetry is not None:
            return telemetry.call(self, operation, request, lambda: self._call_counted(call))
        return self._call_counted(call)

    def _call_counted(self, call: Callable[[], Answer]) -> Answer:
        self._stats.start()
        start = time.perf_counter()
        try:
            try:
                result = call()
            except ProviderError:
                raise
            except SHAPE_ERRORS as exc:  # a parser met an answer of the wrong shape
                raise InvalidResponseError(f"answer not understood ({type(exc).__name__}: {str(exc)[:200]})",
                                           provider=self.provider_id, model=self.model_name) from exc
        except BaseException as exc:
            if isinstance(exc, ProviderError):
                self._on_error(exc)
            if isinstance(exc, ProviderError) and not call_aborted():
                self._stats.failure(exc)
                self._told_error(exc, start, False)
            else:  # not the provider's failure: a bug, or the caller broke the call off
                self._stats.abandoned()
            raise
        elapsed = time.perf_counter() - start
        self._stats.success(elapsed)
        self._stats.cost(result.cost)
        hooks.emit(self._hooks, "on_response", lambda: self._event(
            "response", provider=result.provider or self.provider_id, model=result.model or self.model_name,
            elapsed_s=elapsed, request_id=result.request_id, usage=result.usage, cost=result.cost,
            finish_reason=getattr(result, "finish_reason", None), attempt=max(1, int(result.attempts))))
        return result

    def stream_sync(self, prompt: Prompt, **options: Unpack[Options]) -> ChunkStream:
        """Generate an answer as chunks, each yielded as soon as it arrives.

        The input is validated at once; the request is sent when iteration starts. Stopping
        early (``break``, ``close()``) releases the connection. The last chunk carries
        ``finish_reason`` and, when the vendor reports it, ``usage``.

        Raises:
            StreamError: the stream broke or carried an error event (it is also the matching
                ``APIError`` subclass); ``TruncatedStreamError`` if it ended early.
        """
        request = build_request(prompt, options)
        self._check(request)
        return ChunkStream(self._recorded_stream(self._stream(request), request))

    def _recorded_stream(self, chunks: Iterator[StreamChunk], request: Any = None) -> Iterator[StreamChunk]:
        telemetry = _telemetry.active
        if telemetry is not None:
            return telemetry.stream(self, request, self._stream_counted(chunks))
        return self._stream_counted(chunks)

    def _stream_counted(self, chunks: Iterator[StreamChunk]) -> Iterator[StreamChunk]:
        """Yield a stream's chunks, counting it in the stats when it ends, fails or is dropped."""
        self._stats.start()
        start = time.perf_counter()
        outcome = "abandoned"  # unless it finishes or fails: the consumer stopped early
        told = bool(self._hooks or hooks.global_hooks())
        count, last = 0, None  # with hooks: for on_stream_end
        try:
            if told:
                for chunk in chunks:
                    if chunk.__class__ is not WouldBlock:  # type: ignore[comparison-overlap]  # (``_wait``)
                        count += 1
                        last = chunk
                    yield chunk
            else:
                yield from chunks
            outcome = "done"
        except ProviderError as exc:
            self._on_error(exc)
            if call_aborted():
                raise  # the caller broke the stream off: "abandoned" below
            outcome = "failed"
            self._stats.failure(exc)
            if told:
                self._told_error(exc, start, True, getattr(exc, "chunks_delivered", None))
            raise
        finally:
            if outcome == "done":
                elapsed = time.perf_counter() - start
                self._stats.success(elapsed)
                if told:
                    self._told_stream_end(last, count, elapsed)
            elif outcome == "abandoned":
                self._stats.abandoned()
                if told:
                    close = getattr(chunks, "close", None)  # ``yield from`` would have closed it
                    if close is not None:
                        close()

    def _check(self, request: GenerateRequest) -> None:
        """Provider-specific validation before sending (model limits...)."""

    def unsupported(self, request: GenerateRequest) -> ValidationError | None:
        """The ``ValidationError`` this provider would refuse the request with before sending it
        (a model without vision given an image, without structured output given ``schema=``...;
        for an ``EmbedRequest``, a provider without embeddings), or None when it would send it.
        Pools skip members that would refuse. Sends nothing."""
        try:
            if isinstance(request, EmbedRequest):
                self._check_embed(request)
            else:
                self._check(request)
        except ValidationError as exc:
            return exc
        except ProviderError:  # refused for another reason (a retired model): the call says so
            return None
        return None

    def _on_error(self, exc: ProviderError) -> None:
        """Called with each error a call raises, before the stats see it (to redact it, say)."""

    async def generate(self, prompt: Prompt, **options: Unpack[Options]) -> GenerationResult:
        """Awaitable ``generate_sync``, run on the library's thread pool.

        Cancelling the awaiting task breaks the HTTP connection at once, so the worker thread and
        the connection are freed instead of waiting for the vendor's answer.
        """
        request = build_request(prompt, options)
        self._check(request)  # refused here, before a worker is taken
        return await self._in_worker(lambda: self.generate_sync(request))

    async def _in_worker(self, blocking: Callable[[], Answer]) -> Answer:
        """Await ``blocking`` run on the thread pool in a call scope of its own, which cancelling
        the awaiting task aborts (its connection broken at once)."""
        scope = CallScope(current_call.get())

        def call() -> Answer:
            token = current_call.set(scope)
            try:
                return blocking()
            finally:
                current_call.reset(token)

        return await _aio.run_sync(call, on_cancel=scope.abort)

    def stream(self, prompt: Prompt, **options: Unpack[Options]) -> AsyncIterator[StreamChunk]:
        """Async iterator over ``stream_sync``'s chunks.

        The stream is opened on a worker thread. An HTTP provider's chunked answer is then read
        on the event loop itself, as its bytes arrive (no thread per open stream), unless hooks
        are registered (they run on the stream's thread, where blocking stalls nothing else);
        any other answer is read on the worker.
        Leaving the ``async for`` early, or cancelling the task, closes the HTTP response.
        """
        request = build_request(prompt, options)
        self._check(request)  # refused here, before a worker is taken
        return _aio.iterate_in_thread(lambda: self.stream_sync(request), reads_on_loop=self._reads_on_loop())

    def _reads_on_loop(self) -> bool:
        """Whether ``stream()`` may read this provider's stream on the event loop (``_wait``):
        only where every layer between the body and the chunks passes its markers up (an HTTP
        provider's own ``stream_sync``; no wrapper of a subclass's, no tracer that is not ours),
        and with no hook registered: a hook may block (post the usage somewhere, make a call),
        which on the loop's thread would stall every task, so a stream with hooks keeps its thread."""
        telemetry = _telemetry.active
        return (self._READS_ON_LOOP and type(self).stream_sync is Provider.stream_sync
                and not (self._hooks or hooks.global_hooks())  # they would run on the loop's thread
                and (telemetry is None or getattr(telemetry, "passes_markers", False)))

    def submit(self, prompt: Prompt, **options: Unpack[Options]) -> Future[GenerationResult]:
        """Start ``generate_sync`` on the library's thread pool and return its ``Future``."""
        request = build_request(prompt, options)
        self._check(request)  # refused here, before a worker is taken
        return _aio.submit(self.generate_sync, request)

    def map_sync(
        self,
        prompts: Iterable[Prompt],
        *,
        max_workers: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        progress: bool | ProgressBar = False,
        **options: Unpack[Options],
    ) -> list[GenerationResult | ProviderError]:
        """Generate answers for many prompts concurrently; results come back in prompt order.

        A prompt that fails gives its ``ProviderError`` in its place; the others are unaffected.

        Args:
            prompts: the prompts (anything ``generate_sync`` accepts).
            max_workers: how many calls run at once (default: the thread pool's size).
            on_progress: called as ``on_progress(done, total)`` after each prompt finishes, from
                the calling thread (a progress bar can update directly). If it raises, it is not
                called again and the batch runs to its end: see ``CallbackError``.
            progress: True draws a ``ProgressBar`` on stderr for this batch (done, rate, ETA and
                how many prompts failed), closed when the batch ends. A ``ProgressBar`` of the
                caller's is advanced instead and left open (one bar over several batches); its
                total, if unknown, becomes what it has done plus this batch. Works beside
                ``on_progress``.
            **options: options for every call.

        Raises:
            ValidationError: a prompt or option is invalid (checked for all before any call).
            CallbackError: ``on_progress`` (or the bar, a subclass's own drawing, say) raised (its
                exception is the ``__cause__``; neither is called again); raised once every call
                has finished, with the complete results in ``.results``.
        """
        requests = [build_request(p, options) for p in prompts]
        for request in requests:
            self._check(request)
        bar = _progress_bar(progress, len(requests))
        if bar is None:
            return _aio.map_blocking(self._generate_or_error, requests, max_workers, on_progress,
                                     self._callback_failed)

        def advance(i: int, result: GenerationResult | ProviderError) -> None:
            bar.advance(ok=not isinstance(result, ProviderError))

        try:
            return _aio.map_blocking(self._generate_or_error, requests, max_workers, on_progress,
                                     self._callback_failed, on_result=advance)
        finally:
            if bar is not progress:  # ours: closed even on Ctrl-C, so what follows starts on a new line
                bar.close()

    def _callback_failed(self, results: list[GenerationResult | ProviderError], exc: Exception) -> CallbackError:
        return CallbackError(
            f"a progress callback (on_progress or the progress bar) raised {type(exc).__name__}: {exc}; it was "
            f"not called again, and every call of the batch finished: .results holds all {len(results)} results",
            results=results, provider=self.provider_id, model=self.model_name)

    def _generate_or_error(self, request: GenerateRequest) -> GenerationResult | ProviderError:
        try:
            return self.generate_sync(request)
        except ProviderError as exc:
            return exc

    def embed_sync(self, texts: str | Sequence[str], *, model: str | None = None, dimensions: int | None = None,
                   batch_size: int | None = None, timeout: float | None = None, deadline_s: float | None = None,
                   max_retries: int | None = None, extra: Mapping[str, Any] | None = None) -> EmbeddingResult:
        """Embed texts: one vector per text, in order.

        Long lists are sent in requests of at most ``batch_size`` texts, one after another, all
        to the same model; the usage of all of them is summed. Retries, ``deadline_s`` (for the
        whole call, every request included), errors and statistics are those of ``generate_sync``.

        Args:
            texts: one text, or a list of texts (none of them empty).
            model: the embedding model (default: the provider's ``embedding_model``; a chat
                model is not one). On a pool, each member uses its own unless this is given.
            dimensions: shorter vectors, for models that support it (OpenAI's
                ``text-embedding-3-*``; Ollama's models that support it).
            batch_size: texts per request (default 256; the vendor's limit at most, 2048 for OpenAI).
            timeout, deadline_s, max_retries, extra: as for ``generate_sync``; ``extra`` holds
                vendor fields (Ollama ``truncate``, ``keep_alive``...).

        Raises:
            ValidationError: bad input, or a provider without embeddings (Anthropic), before
                anything is sent.
            APIError: the vendor answered with an error; its message says which request of the
                call (``batch 2 of 3, texts 256-511``) failed.
            TransportError: the HTTP exchange failed.
        """
        request = build_embed_request(texts, model=model, dimensions=dimensions, batch_size=batch_size,
                                      timeout=timeout, deadline_s=deadline_s, max_retries=max_retries, extra=extra)
        self._check_embed(request)
        return self._recorded(lambda: self._embed(request), request, "embeddings")

    async def embed(self, texts: str | Sequence[str], *, model: str | None = None, dimensions: int | None = None,
                    batch_size: int | None = None, timeout: float | None = None, deadline_s: float | None = None,
                    max_retries: int | None = None, extra: Mapping[str, Any] | None = None) -> EmbeddingResult:
        """Awaitable ``embed_sync``, run on the library's thread pool; cancelling the awaiting
        task breaks the HTTP connection at once."""
        request = build_embed_request(texts, model=model, dimensions=dimensions, batch_size=batch_size,
                                      timeout=timeout, deadline_s=deadline_s, max_retries=max_retries, extra=extra)
        self._check_embed(request)  # refused here, before a worker is taken
        return await self._in_worker(lambda: self._recorded(lambda: self._embed(request), request, "embeddings"))

    def _embed(self, request: EmbedRequest) -> EmbeddingResult:
        raise NotImplementedError

    def _check_embed(self, request: EmbedRequest) -> None:
        """Refuse an embeddings call this provider would not send (by default: it has none)."""
        raise ValidationError(f"{type(self).__name__} does not offer embeddings", provider=self.provider_id,
                              model=self.model_name)

    def conversation(self, **options: Unpack[Options]) -> Conversation:
        """Start a ``Conversation`` with this provider: each ``send()`` keeps the exchange.

        Args:
            **options: default options for every send (a send's own override them), such as
                ``system``, the system prompt sent with every request.

        Example::

            conv = llm.conversation(system="You are terse.")
            conv.send("Name a prime number.")
            print(conv.send("And the next one?").content)
        """
        return Conversation(self, **options)

    async def health_check(self) -> HealthStatus:
        """Awaitable ``health_check_sync``."""
        return await _aio.run_sync(self.health_check_sync)

    def get_stats(self) -> ProviderStats:
        """Request and error counts, latency percentiles, health and last error."""
        return self._stats.snapshot(self.provider_id, self.model_name)

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.provider_id!r}, model={self.model_name!r})"
