"""The one way tests wait for something another thread does: poll a condition, bounded.

Used only where nothing can be injected instead (a server thread winding down, a socket being
closed by the kernel); the bound makes a broken promise a failure, not a hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["Heartbeat", "eventually", "eventually_async"]


def eventually(cond: Callable[[], object], within: float = 3.0, every: float = 0.01) -> bool:
    """Whether ``cond()`` became true within ``within`` seconds (checked every ``every``)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every)
    return bool(cond())


async def eventually_async(cond: Callable[[], object], within: float = 5.0, every: float = 0.01) -> bool:
    """``eventually`` for a coroutine: waits with ``asyncio.sleep``, so the loop keeps running."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(every)
    return bool(cond())


class Heartbeat:
    """A task that ticks every 10 ms; ``max_gap`` is the longest the loop kept it waiting."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while not self._stop:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            last = now

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> float:
        self._stop = True
        assert self._task is not None
        await self._task
        return self.max_gap
