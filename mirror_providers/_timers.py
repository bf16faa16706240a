"""One watchdog thread that runs short callbacks at given monotonic times.

Deadlines use it to break a connection that is still busy when its time is up (a server trickling
a byte every half second never trips a read timeout). Callbacks must be quick and must not raise:
they shut a socket down, nothing more. The thread starts on first use, is a daemon, and a forked
child starts its own.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable

__all__ = ["Timer", "call_at"]


class Timer:
    """A scheduled callback; ``cancel()`` stops it if it has not run yet."""

    __slots__ = ("when", "_fn", "_owner")

    def __init__(self, when: float, fn: Callable[[], None], owner: _Watchdog) -> None:
        self.when = when
        self._fn: Callable[[], None] | None = fn
        self._owner = owner

    def cancel(self) -> None:
        if self._fn is not None:
            self._fn = None
            self._owner.cancelled()

    def _fire(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            with contextlib.suppress(Exception):  # a watchdog must outlive a bad callback
                fn()


class _Watchdog:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._stale = 0  # cancelled entries still in the heap

    def cancelled(self) -> None:
        """Most timers are cancelled long before they are due (a call ends well inside its
        deadline): drop them once they are half the heap, so it stays as big as what is pending."""
        with self._cond:
            self._stale += 1
            if self._stale > 64 and self._stale * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if entry[2]._fn is not None]
                heapq.heapify(self._heap)
                self._stale = 0

    def call_at(self, when: float, fn: Callable[[], None]) -> Timer:
        timer = Timer(when, fn, self)
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mirror-providers-watchdog", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is timer:
                self._cond.notify()  # the new one is due first: re-arm the wait
        return timer

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2]._fn is None:
                        heapq.heappop(self._heap)  # cancelled
                        self._stale = max(0, self._stale - 1)
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    if wait is not None and wait <= 0:
                        _, _, due = heapq.heappop(self._heap)
                        break
                    # A lock cannot wait past TIMEOUT_MAX (OverflowError, which would end this
                    # thread and with it every deadline): a later timer is waited for in steps.
                    self._cond.wait(None if wait is None else min(wait, threading.TIMEOUT_MAX))
            due._fire()


_watchdog = _Watchdog()


def call_at(when: float, fn: Callable[[], None]) -> Timer:
    """Run ``fn`` on the watchdog thread at ``time.monotonic() == when`` (at once if past)."""
    return _watchdog.call_at(when, fn)


def _reset_in_child() -> None:
    global _watchdog
    _watchdog = _Watchdog()  # the parent's thread does not exist here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)
