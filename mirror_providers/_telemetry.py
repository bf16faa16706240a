"""The seam tracing plugs into: None (the default) costs one global read per call.

``otel.instrument()`` sets ``active`` to an object that wraps each call; nothing here imports
OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

__all__ = ["Telemetry", "active"]

T = TypeVar("T")


class Telemetry(Protocol):
    def call(self, provider: Any, operation: str, request: Any, run: Callable[[], T]) -> T:
        """Run one blocking call (``run()``), observed."""

    def stream(self, provider: Any, request: Any, chunks: Iterator[Any]) -> Iterator[Any]:
        """A stream's chunks, observed from its first to its end."""


active: Telemetry | None = None
