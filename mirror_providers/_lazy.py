"""``dataclass``: ``dataclasses.dataclass``, applied when a class is first used rather than when
its module is imported.

``dataclasses.dataclass`` compiles each class's methods (``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, a frozen class's ``__setattr__``/``__delattr__``) with ``exec``, a few hundred
microseconds a class: most of what importing the library cost, for classes (a stream chunk, an
attempt trace, the stats...) that building a provider never touches.

This decorator leaves the class as written, with a stand-in for each attribute ``dataclass`` may
add. The first access to any of them -- making an instance, ``dataclasses.fields()`` or
``is_dataclass()``, a subclass, ``repr`` or ``==`` on an instance made without ``__init__`` (an
unpickled one) -- applies ``dataclasses.dataclass`` to the class in place, and from then on the
class is exactly what ``@dataclasses.dataclass`` makes, stand-ins gone. Before that, a field's
class attribute is what it will be after (its default, or absent for a ``default_factory``).

Type checkers see ``dataclasses.dataclass`` itself. ``slots=True`` is not supported (it makes a
new class, which cannot wait).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import TYPE_CHECKING, Any

__all__ = ["dataclass"]

# Everything dataclass() may set on a class (what is already in its body it leaves alone).
_ADDED = ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__", "__lt__", "__le__",
          "__gt__", "__ge__", "__match_args__", "__dataclass_fields__", "__dataclass_params__")

_lock = threading.RLock()  # re-entrant: processing a class processes its dataclass bases
_pending: dict[type, tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]] = {}  # class -> (params, fields)


class _StandIn:
    """Stands for one attribute ``dataclass`` will set: any access applies it, then answers."""

    __slots__ = ("cls", "name")

    def __init__(self, cls: type, name: str) -> None:
        self.cls = cls
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        _process(self.cls)
        return getattr(owner if obj is None else obj, self.name)  # the real attribute now (None: unhashable)


def _process(cls: type) -> None:
    with _lock:
        entry = _pending.get(cls)
        if entry is None:
            return  # done already (by another thread, or up the stack)
        params, fields = entry
        for name in _ADDED:
            if isinstance(cls.__dict__.get(name), _StandIn):
                delattr(cls, name)
        for name, f in fields.items():
            setattr(cls, name, f)
        try:
            dataclasses.dataclass(**params)(cls)
        finally:  # a class dataclass() refused raises once, then is left as it is (no stand-in loops)
            del _pending[cls]


def _defer(cls: type, params: dict[str, Any]) -> type:
    if params.get("slots"):
        raise TypeError("mirror_providers._lazy.dataclass does not support slots=True")
    fields = {name: v for name, v in cls.__dict__.items() if isinstance(v, dataclasses.Field)}
    for name, f in fields.items():
        if f.default is dataclasses.MISSING:
            delattr(cls, name)
        else:
            setattr(cls, name, f.default)
    with _lock:
        for name in _ADDED:
            if name not in cls.__dict__:
                setattr(cls, name, _StandIn(cls, name))
        _pending[cls] = (params, fields)
    return cls


def pending() -> tuple[type, ...]:
    """The classes still waiting for ``dataclasses.dataclass`` (tests process them all)."""
    with _lock:
        return tuple(_pending)


def _fresh_lock_in_child() -> None:
    global _lock
    _lock = threading.RLock()  # one another thread held at fork() would stay held in the child


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_fresh_lock_in_child)


if TYPE_CHECKING:
    from dataclasses import dataclass
else:

    def dataclass(cls: type | None = None, /, **params: Any) -> Any:
        """``@dataclass`` or ``@dataclass(frozen=True, ...)``, as ``dataclasses.dataclass``."""
        if cls is None:
            return lambda c: _defer(c, params)
        return _defer(cls, params)
