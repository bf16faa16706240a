"""The current call: one context that says whether the caller broke the call off.

A call (one ``generate()`` awaited and then cancelled, one stream a consumer aborts; a pool's
stream nests its members' streams) runs under a ``CallScope``; a plain ``generate_sync`` runs in
its caller's scope, if any. Everything that blocks for the call
registers a hook with it (a socket shutdown, a back-off sleep's wake-up) and asks ``aborted``
before starting anything new. The scope is found in one place, the ``current_call`` context
variable, which the transport reads too; ``HttpRequest.call`` carries the same object so that a
transport running the exchange elsewhere (another thread, another client library) can honour it.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["CallControl", "CallScope", "call_aborted", "current_call", "on_abort", "wait_in_call"]


class CallControl(Protocol):
    """What a call that may be broken off offers whoever works for it (see ``transport.Transport``)."""

    @property
    def aborted(self) -> bool: ...

    def register(self, hook: Callable[[], None]) -> None: ...


class CallScope:
    """The abort hooks of one call; aborting an outer scope aborts the scopes nested in it.

    ``register(hook)`` runs ``hook`` when the call is aborted (at once if it already was);
    ``pause(seconds)`` sleeps unless the call is aborted first; ``abort()`` may be called from any
    thread.
    """

    def __init__(self, parent: CallControl | None = None) -> None:
        self._parent = parent
        self._hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._aborted = False
        self._woken: threading.Event | None = None  # made by the first pause()
        if parent is not None:
            parent.register(self.abort)  # breaking the outer call off breaks this one too

    def register(self, hook: Callable[[], None]) -> None:
        with self._lock:
            self._hooks.append(hook)
            aborted = self._aborted
        if aborted:
            hook()

    @property
    def aborted(self) -> bool:
        return self._aborted

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` (a retry's back-off), waking at once if the call is aborted."""
        with self._lock:
            if self._woken is None:
                self._woken = threading.Event()
                if self._aborted:
                    self._woken.set()
            woken = self._woken
        woken.wait(seconds)

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            hooks = list(self._hooks)
            if self._woken is not None:
                self._woken.set()
        for hook in hooks:  # each runs, whatever another one raised: abort() itself never raises
            try:
                hook()
            except Exception:  # a hook that cannot break what it guards has nothing left to do
                continue


current_call: contextvars.ContextVar[CallControl | None] = contextvars.ContextVar(
    "mirror_providers_current_call", default=None)
"""The call the work done in this context belongs to, or None outside any call. Each pooled
connection checked out for it is registered with it as a ``shutdown()`` hook (which breaks that
connection only while this call still holds it, waking a thread blocked on it); once the call is
aborted, no new connection is checked out for it (``CallAbortedError``) and no retry starts."""


def call_aborted() -> bool:
    """Whether the call running in this context was broken off by its caller."""
    call = current_call.get()
    return call is not None and call.aborted


def on_abort(hook: Callable[[], None]) -> None:
    """Run ``hook`` if the call running in this context is aborted (no-op outside a call)."""
    call = current_call.get()
    if call is not None:
        call.register(hook)


def wait_in_call(seconds: float, sleep: Callable[[float], None]) -> bool:
    """Sleep ``seconds`` for the call in this context: with ``sleep`` when one was injected
    (tests), else on the call's own pause, which its caller breaking the call off cuts short.
    Returns whether the call was broken off (the caller raises ``CallAbortedError``)."""
    call = current_call.get()
    pause = getattr(call, "pause", None)
    if pause is not None and sleep is time.sleep:
        pause(seconds)
    else:
        sleep(seconds)
    return call_aborted()
