"""Locks that a forked child gets fresh.

A lock another thread held at ``fork()`` stays held forever in the child, where that thread does
not exist: the child's first call (or ``get_stats``) would hang. Objects whose ``_lock`` guards
process-local state make it with ``lock_for(self)``; after a fork the child gives each of them a
new, free lock. The guarded state is as the fork found it: for counters, at worst one update behind.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

_owners: weakref.WeakSet[Any] = weakref.WeakSet()


def lock_for(owner: Any) -> threading.Lock:
    """A new lock for ``owner._lock``, replaced by a free one in a forked child."""
    _owners.add(owner)
    return threading.Lock()


def _reset_in_child() -> None:
    for owner in list(_owners):
        owner._lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_in_child)
