"""OpenTelemetry traces and metrics of every call, after the GenAI semantic conventions.

Needs ``pip install 'mirror-providers[otel]'`` (the ``opentelemetry-api`` package only; the
application brings the SDK and exporters it wants)::

    from mirror_providers import otel
    otel.instrument()                      # the global tracer and meter providers
    otel.instrument(capture_content=True)  # also the prompts and answers (off by default)

Each ``generate``, ``stream`` and ``embed`` call is a CLIENT span named ``"{operation} {model}"``
(``chat gpt-6-luna``, ``embeddings text-embedding-3-small``) with ``gen_ai.operation.name``,
``gen_ai.provider.name`` (and the older ``gen_ai.system``), ``gen_ai.request.model``,
``gen_ai.request.max_tokens``/``temperature``/``top_p``, ``gen_ai.response.model``,
``gen_ai.response.id``, ``gen_ai.response.finish_reasons``, ``gen_ai.usage.input_tokens``/
``output_tokens``, ``server.address``/``server.port``, and on failure ``error.type`` and an ERROR
status. A pool's call is a span too, and its members' calls (in the same thread) are its
children. Metrics: the histograms ``gen_ai.client.operation.duration`` (s) and
``gen_ai.client.token.usage`` (``{token}``, by ``gen_ai.token.type``). With ``capture_content``
the span carries ``gen_ai.input.messages``, ``gen_ai.system_instructions`` and
``gen_ai.output.messages`` as JSON; the key is never in any of it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from . import _telemetry
from ._wait import WouldBlock
from .errors import ConfigurationError

__all__ = ["instrument", "instrumented", "uninstrument"]

T = TypeVar("T")
INSTALL_HINT = "install OpenTelemetry's API with: pip install 'mirror-providers[otel]'"


def _api() -> tuple[Any, Any]:
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        raise ConfigurationError(f"OpenTelemetry is not installed; {INSTALL_HINT}") from None
    return trace, metrics


def instrument(*, tracer_provider: Any = None, meter_provider: Any = None, capture_content: bool = False) -> None:
    """Trace and measure every call of every provider and pool in this process (again: with
    the new settings). ``tracer_provider``/``meter_provider`` default to OpenTelemetry's global ones."""
    if not isinstance(capture_content, bool):
        raise ConfigurationError(f"capture_content must be True or False, got {capture_content!r}")
    trace, metrics = _api()
    from . import __version__

    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("mirror_providers", __version__)
    meter = (meter_provider or metrics.get_meter_provider()).get_meter("mirror_providers", __version__)
    _telemetry.active = _OpenTelemetry(trace, tracer, meter, capture_content)


def uninstrument() -> None:
    """Stop tracing calls."""
    _telemetry.active = None


def instrumented() -> bool:
    return isinstance(_telemetry.active, _OpenTelemetry)


def _system(provider: Any) -> str:
    return str(getattr(provider, "provider_id", "") or type(provider).__name__)


def _server(provider: Any) -> dict[str, Any]:
    url = getattr(provider, "base_url", None)
    if not isinstance(url, str):
        return {}
    parts = urlsplit(url)
    out: dict[str, Any] = {"server.address": parts.hostname or ""}
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return out
    out["server.port"] = port
    return out


class _OpenTelemetry:
    passes_markers = True  # its stream wrapper passes an async stream's loop markers up (``_wait``)

    def __init__(self, trace: Any, tracer: Any, meter: Any, capture_content: bool) -> None:
        self._trace, self._tracer, self._capture = trace, tracer, capture_content
        self._duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s",
                                                description="GenAI operation duration")
        self._tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}",
                                              description="Measures number of input and output tokens used")

    # -- spans ------------------------------------------------------------------------------

    def _start(self, provider: Any, operation: str, request: Any) -> tuple[Any, dict[str, Any]]:
        asked = getattr(request, "model", None) or (getattr(provider, "embedding_model", None)
                                                    if operation == "embeddings" else None)
        model = str(asked or getattr(provider, "model_name", "") or "")
        base = {"gen_ai.operation.name": operation, "gen_ai.provider.name": _system(provider),
                "gen_ai.system": _system(provider), "gen_ai.request.model": model, **_server(provider)}
        attributes = dict(base)
        for name, key in (("max_tokens", "gen_ai.request.max_tokens"), ("temperature", "gen_ai.request.temperature"),
                          ("top_p", "gen_ai.request.top_p")):
            value = getattr(request, name, None)
            if value is not None:
                attributes[key] = value
        if self._capture and request is not None:
            attributes.update(_content_in(request))
        span = self._tracer.start_span(f"{operation} {model}".strip(), kind=self._trace.SpanKind.CLIENT,
                                       attributes=attributes)
        return span, base

    def _finish(self, span: Any, base: dict[str, Any], started: float, result: Any = None,
                error: BaseException | None = None) -> None:
        metric = dict(base)
        if result is not None:
            model = getattr(result, "model", None)
            if model:
                span.set_attribute("gen_ai.response.model", model)
                metric["gen_ai.response.model"] = model
            response_id = getattr(result, "response_id", None) or getattr(result, "request_id", None)
            if response_id:
                span.set_attribute("gen_ai.response.id", response_id)
            finish = getattr(result, "finish_reason", None)
            if finish:
                span.set_attribute("gen_ai.response.finish_reasons", [finish])
            usage = getattr(result, "usage", None)
            if usage is not None:
                span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
                self._tokens.record(usage.input_tokens, {**metric, "gen_ai.token.type": "input"})
                if base["gen_ai.operation.name"] != "embeddings":
                    span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
                    self._tokens.record(usage.output_tokens, {**metric, "gen_ai.token.type": "output"})
            if self._capture and getattr(result, "content", None) is not None:
                span.set_attribute("gen_ai.output.messages", json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": result.content}],
                      "finish_reason": finish or ""}], ensure_ascii=False))
        if error is not None:
            kind = type(error).__name__
            span.set_attribute("error.type", kind)
            metric["error.type"] = kind
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(error)[:500]))
        self._duration.record(time.perf_counter() - started, metric)
        span.end()

    # -- the seam -----------------------------------------------------------------------------

    def call(self, provider: Any, operation: str, request: Any, run: Callable[[], T]) -> T:
        span, base = self._start(provider, operation, request)
        started = time.perf_counter()
        try:
            with self._trace.use_span(span, end_on_exit=False, record_exception=False,
                                      set_status_on_exception=False):
                result = run()
        except BaseException as exc:
            self._finish(span, base, started, error=exc)
            raise
        self._finish(span, base, started, result=result)
        return result

    def stream(self, provider: Any, request: Any, chunks: Iterator[Any]) -> Iterator[Any]:
        return self._streamed(provider, request, chunks)

    def _streamed(self, provider: Any, request: Any, chunks: Iterator[Any]) -> Iterator[Any]:
        span, base = self._start(provider, "chat", request)
        started = time.perf_counter()
        last: Any = None
        text: list[str] = []
        try:
            for chunk in chunks:
                if chunk.__class__ is not WouldBlock:  # (a stream read on its loop: ``_wait``)
                    last = chunk
                    if self._capture:
                        text.append(chunk.content)
                yield chunk
        except BaseException as exc:
            if isinstance(exc, GeneratorExit):  # the consumer stopped early: not an error
                span.set_attribute("mirror_providers.stream.abandoned", True)
                self._finish(span, base, started, result=last)
            else:
                self._finish(span, base, started, result=last, error=exc)
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            raise
        if last is not None and self._capture:
            last = _Joined(last, "".join(text))
        self._finish(span, base, started, result=last)


class _Joined:
    """A stream's last chunk with the whole text, for ``gen_ai.output.messages``."""

    def __init__(self, last: Any, content: str) -> None:
        self._last, self.content = last, content

    def __getattr__(self, name: str) -> Any:
        return getattr(self._last, name)


def _content_in(request: Any) -> dict[str, str]:
    """The prompt as the conventions' JSON (text parts; other parts by type only)."""
    out: dict[str, str] = {}
    system = getattr(request, "system", None)
    if system:
        out["gen_ai.system_instructions"] = json.dumps([{"type": "text", "content": system}], ensure_ascii=False)
    messages = getattr(request, "messages", None)
    if messages:
        rendered = []
        for m in messages:
            parts: list[dict[str, Any]] = []
            content = m.content
            if isinstance(content, str):
                parts.append({"type": "text", "content": content})
            else:
                for p in content:
                    parts.append({"type": "text", "content": p.text} if p.type == "text" and p.text is not None
                                 else {"type": p.type})
            rendered.append({"role": m.role, "parts": parts})
        out["gen_ai.input.messages"] = json.dumps(rendered, ensure_ascii=False)
    texts = getattr(request, "texts", None)
    if texts and not messages:
        out["gen_ai.input.messages"] = json.dumps([{"role": "user", "parts": [
            {"type": "text", "content": t} for t in texts]}], ensure_ascii=False)
    return out
