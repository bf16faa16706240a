"""Hooks: see every call as it happens, with plain data and never a key.

A hook is any object with some of these methods, each called with one ``HookEvent``:

* ``on_request``: an HTTP attempt is about to be sent (``attempt`` counts from 1, ``url`` has no
  credentials and no query values), or a pool is about to try a member;
* ``on_retry``: an attempt failed and will be tried again in ``retry_in_s`` seconds;
* ``on_failover``: a pool member failed and the pool goes on to the next one, if one is left;
* ``on_response``: a ``generate`` call succeeded (usage, cost, finish reason, request id);
* ``on_stream_end``: a stream was read to its end (the same, from its last chunk);
* ``on_error``: a call failed for good (``error`` is the class name, ``message`` its text).

Register one on a provider or pool (``llm.add_hook(hook)``: that provider's events, or the pool's
own), or for everything (``mirror_providers.add_hook(hook)``). A hook that raises is logged
(``mirror_providers.hooks``) and never breaks the call. With no hook registered nothing is built:
the cost is one check of two empty tuples at each point.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Literal

from ._lazy import dataclass
from .types import Cost, Usage

__all__ = ["HOOK_METHODS", "HookEvent", "add_hook", "emit", "global_hooks", "remove_hook"]

log = logging.getLogger("mirror_providers.hooks")

HOOK_METHODS = ("on_request", "on_retry", "on_failover", "on_response", "on_stream_end", "on_error")
HookMethod = Literal["on_request", "on_retry", "on_failover", "on_response", "on_stream_end", "on_error"]


@dataclass(frozen=True)
class HookEvent:
    """What a hook is told.

    Attributes:
        kind: the hook method without ``on_`` (``"request"``, ``"retry"``...).
        provider, model: who (a pool member for a pool's ``request`` and ``failover``).
        level: ``"provider"`` for a vendor client's own events, ``"pool"`` for a pool's.
        pool: the pool's name, for a pool's events.
        attempt: the try this is about (1 for the first), where it applies.
        elapsed_s: seconds since the call (or, for ``request``/``retry``, the attempt) began.
        stream: whether the call is a stream.
        url: where the request goes (``request``), without credentials or query values.
        status: the HTTP status of the failure, when there was one.
        request_id: the vendor's request id, when it sent one.
        usage, cost, finish_reason: of the answer (``response``, ``stream_end``).
        chunks: chunks delivered (``stream_end``, and a stream's ``error``).
        error, message: the error's class name and message (``retry``, ``failover``, ``error``).
        retry_in_s: the wait before the next attempt (``retry``).
    """

    kind: str
    provider: str
    model: str
    level: Literal["provider", "pool"] = "provider"
    pool: str | None = None
    attempt: int = 1
    elapsed_s: float = 0.0
    stream: bool = False
    url: str | None = None
    status: int | None = None
    request_id: str | None = None
    usage: Usage | None = None
    cost: Cost | None = None
    finish_reason: str | None = None
    chunks: int | None = None
    error: str | None = None
    message: str | None = None
    retry_in_s: float | None = None


_lock = threading.Lock()
_global: tuple[Any, ...] = ()


def _check(hook: Any) -> None:
    if not any(callable(getattr(hook, name, None)) for name in HOOK_METHODS):
        from .errors import ConfigurationError

        raise ConfigurationError(f"a hook needs one of the methods {', '.join(HOOK_METHODS)}; "
                                 f"{type(hook).__name__} has none")


def add_hook(hook: Any) -> None:
    """Call ``hook`` for every provider's and pool's events, in this process."""
    global _global
    _check(hook)
    with _lock:
        _global = (*_global, hook)


def remove_hook(hook: Any) -> None:
    """Stop calling a hook ``add_hook`` registered (nothing happens for one it did not)."""
    global _global
    with _lock:
        _global = tuple(h for h in _global if h is not hook)


def global_hooks() -> tuple[Any, ...]:
    """The hooks ``add_hook`` registered."""
    return _global


def emit(local: tuple[Any, ...], method: HookMethod, event: Callable[[], HookEvent]) -> None:
    """Call ``method`` of each hook (``local`` then the global ones) with the event ``event()``
    builds; a hook that raises is logged and skipped."""
    hooks = local + _global if _global else local
    if not hooks:
        return
    built = event()
    for hook in hooks:
        fn = getattr(hook, method, None)
        if fn is None:
            continue
        try:
            fn(built)
        except (KeyboardInterrupt, SystemExit):
            raise  # the person or the program asked to stop: not the hook's bug to hide
        except BaseException as exc:  # a hook never breaks the call
            log.warning("hook %s.%s raised %s: %s", type(hook).__name__, method, type(exc).__name__, exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))
