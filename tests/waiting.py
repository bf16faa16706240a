"""The one way tests wait for something another thread does: poll a condition, bounded.

Used only where nothing can be injected instead (a server thread winding down, a socket being
closed by the kernel); the bound makes a broken promise a failure, not a hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["eventually", "eventually_async"]


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
