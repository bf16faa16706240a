"""The in-memory provider (``Fake``) and the clock (``Clock``) every test that needs one uses."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from mirror_providers.errors import ProviderError
from mirror_providers.provider import Provider
from mirror_providers.request import GenerateRequest
from mirror_providers.types import Capabilities, GenerationResult, HealthStatus, StreamChunk, Tier, Usage


class Clock:
    """A clock that only moves when told."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


class Fake(Provider):
    """Answers ``"<name>: <prompt>"``; ``fail`` makes every call raise it (a factory or an instance).

    ``fail_after`` makes streams raise after that many chunks. ``gate`` (an Event) blocks calls
    until set. Every request is kept in ``calls``; ``timeouts`` records the timeout each got.
    """

    provider_id = "fake"

    def __init__(self, name: str, *, fail: ProviderError | Callable[[], ProviderError] | None = None,
                 fail_after: int | None = None, tier: Tier = Tier.BALANCED, gate: threading.Event | None = None,
                 on_call: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.name = name
        self.fail = fail
        self.fail_after = fail_after
        self.tier = tier
        self.gate = gate
        self.on_call = on_call
        self.calls: list[GenerateRequest] = []
        self.timeouts: list[float | None] = []
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self.name

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(tier=self.tier, max_tokens=1000, max_context_window=8000)

    def _enter(self, request: GenerateRequest) -> None:
        with self._lock:
            self.calls.append(request)
            self.timeouts.append(request.timeout)
        if self.on_call:
            self.on_call()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None and self.fail_after is None:
            raise self.fail() if callable(self.fail) else self.fail

    def _generate(self, request: GenerateRequest) -> GenerationResult:
        self._enter(request)
        return GenerationResult(f"{self.name}: {request.messages[-1].text}", self.name, "fake", "stop",
                                Usage(1, 2, 3))

    def _stream(self, request: GenerateRequest) -> Iterator[StreamChunk]:
        self._enter(request)
        words = f"{self.name}: {request.messages[-1].text}".split(" ")
        for i, w in enumerate(words):
            if self.fail_after is not None and i == self.fail_after:
                assert self.fail is not None
                raise self.fail() if callable(self.fail) else self.fail
            yield StreamChunk(w if i == 0 else " " + w, i, model=self.name, provider="fake")
        yield StreamChunk("", len(words), "stop", Usage(1, 2, 3), model=self.name, provider="fake")

    def health_check_sync(self) -> HealthStatus:
        return HealthStatus(self.fail is None, "fake", self.name, 0.0, None if self.fail is None else "failing")


def err(cls: type[ProviderError], **kw: Any) -> Callable[[], ProviderError]:
    """A fresh error per raise (errors carry per-call state such as chunks_delivered)."""
    return lambda: cls("boom", **kw)
