"""``dataclass``: ``dataclasses.dataclass``, applied when a class is first used rather than when
its module is imported.

``dataclasses.dataclass`` compiles each class's methods (``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, a frozen class's ``__setattr__``/``__delattr__``) with ``exec``, a few hundred
microseconds a class: most of what importing the library cost, for classes (a stream chunk, an
attempt trace, the stats...) that building a provider never touches.

This decorator leaves the class as written, with a stand-in for each attribute ``dataclass`` may
add. The first access to any of them -- making an instance, ``dataclasses.fields()`` or
``is_dataclass()``, a subclass, ``repr`` or ``==`` on an instance made without ``__init__`` (an
unpickled one) -- gives the class what ``@dataclasses.dataclass`` gives it, and from then on it is
exactly what that makes, stand-ins gone. Before that, a field's class attribute is what it will be
after (its default, or absent for a ``default_factory``).

Threads may use a class while another gives it its methods: ``dataclasses.dataclass`` runs on a
copy of the class, and each attribute then replaces its stand-in in one step, so a lookup always
finds one or the other (a stand-in waits for the lock). Functions that refer to the class they were
made for (a frozen class's ``__setattr__``) are pointed at the real one.

Type checkers see ``dataclasses.dataclass`` itself. Not deferred, made at once: a class with
``slots=True`` or ``__slots__`` (slots make a new class), or whose bases define
``__init_subclass__`` (it would run for the copy too).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import TYPE_CHECKING, Any

__all__ = ["dataclass", "pending"]

# What dataclass() may set on a class that its body did not (dataclass leaves those alone).
_ADDED = ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__", "__lt__", "__le__",
          "__gt__", "__ge__", "__match_args__", "__replace__", "__dataclass_fields__", "__dataclass_params__")
_NOT_COPIED = ("__dict__", "__weakref__")

_lock = threading.RLock()  # re-entrant: processing a class processes its dataclass bases
_pending: dict[type, tuple[dict[str, Any], dict[str, Any]]] = {}  # class -> (dataclass params, its field() objects)


class _StandIn:
    """Stands for one attribute ``dataclass`` will set: any access applies it, then answers."""

    __slots__ = ("cls", "name")

    def __init__(self, cls: type, name: str) -> None:
        self.cls = cls
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        _process(self.cls)
        # The real attribute now, bound as this lookup asked: from the class that held the stand-in
        # (inspect.signature on 3.13 asks with obj=the class itself, to bind __init__ to it).
        for klass in self.cls.__mro__:
            if self.name in klass.__dict__:
                real = klass.__dict__[self.name]
                break
        else:
            raise AttributeError(self.name)
        get = getattr(type(real), "__get__", None)
        return real if get is None else get(real, obj, owner)  # None (unhashable) has no __get__


def _process(cls: type) -> None:
    with _lock:
        entry = _pending.pop(cls, None)
        if entry is None:
            return  # done already (by another thread, or up the stack)
        params, fields = entry
        try:
            made = _made(cls, params, fields)
        except BaseException:
            _drop_stand_ins(cls)  # dataclass() refused it: it raises once, and is left as written
            raise
        for name, value in made.__dict__.items():
            if name not in _NOT_COPIED and cls.__dict__.get(name, _MISSING) is not value:
                _retarget(value, made, cls)
                setattr(cls, name, value)  # one step: a lookup sees the stand-in or this
        _drop_stand_ins(cls)  # what dataclass did not add: the inherited one is the final answer


_MISSING = object()


def _made(cls: type, params: dict[str, Any], fields: dict[str, Any]) -> type:
    """A copy of ``cls`` (same name, bases, body), given its methods by ``dataclasses.dataclass``."""
    body = {k: v for k, v in cls.__dict__.items() if k not in _NOT_COPIED and not isinstance(v, _StandIn)}
    body.update(fields)  # the field() objects, as the class body had them
    body["__qualname__"] = cls.__qualname__  # what the generated functions' names start with
    copy = type(cls)(cls.__name__, cls.__bases__, body)
    return dataclasses.dataclass(**params)(copy)


def _retarget(value: Any, old: type, new: type) -> None:
    """Point a generated function's closure at ``new`` where it holds ``old`` (a frozen class's
    ``__setattr__`` checks ``type(self) is cls`` and calls ``super(cls, self)``)."""
    seen = 0
    while callable(value) and seen < 4:  # __repr__ is wrapped by reprlib.recursive_repr
        for cell in getattr(value, "__closure__", None) or ():
            try:
                if cell.cell_contents is old:
                    cell.cell_contents = new
            except ValueError:  # an empty cell
                pass
        value = getattr(value, "__wrapped__", None)
        seen += 1


def _drop_stand_ins(cls: type) -> None:
    for name in _ADDED:
        if isinstance(cls.__dict__.get(name), _StandIn):
            delattr(cls, name)


def _defer(cls: type, params: dict[str, Any]) -> type:
    if params.get("slots") or "__slots__" in cls.__dict__ or any("__init_subclass__" in b.__dict__
                                                                   for b in cls.__mro__[1:-1]):
        # slots make a new class, which cannot wait; a base's __init_subclass__ would see the copy
        return dataclasses.dataclass(**params)(cls)
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
