"""``_lazy.dataclass``: a class is exactly what ``dataclasses.dataclass`` makes, whatever touches it first."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pickle
import pkgutil
import sys
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import field
from typing import Any

import pytest

import mirror_providers
from mirror_providers import _lazy
from mirror_providers._lazy import dataclass


@dataclass(frozen=True)
class Point:
    """A frozen one, with every kind of field."""

    x: int
    tags: tuple[str, ...] = ()
    seen: list[int] = field(default_factory=list, compare=False)
    hidden: int = field(default=3, repr=False)


@dataclass(frozen=True)
class Point3(Point):
    z: int = 0


@dataclass
class Box:
    """A mutable one: unhashable, as dataclass makes it."""

    size: int = 1


@dataclass(frozen=True)
class Raw:
    """Only ever made without ``__init__`` here, as ``types.fast_stream_chunk`` makes chunks."""

    x: int


def test_field_class_attributes_are_as_after_processing_before_it() -> None:
    assert Point.tags == () and Point.hidden == 3 and not hasattr(Point, "seen")


def test_an_instance_is_what_dataclass_makes() -> None:
    p = Point3(1, ("a",))
    assert repr(p) == "Point3(x=1, tags=('a',), seen=[], z=0)"
    assert p == Point3(1, ("a",)) and hash(p) == hash(Point3(1, ("a",))) and p != Point3(2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(p)] == ["x", "tags", "seen", "hidden", "z"]
    assert Point3.__match_args__ == ("x", "tags", "seen", "hidden", "z")
    assert Point3.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(p)) == p == copy.deepcopy(p)
    assert dataclasses.replace(p, z=5).z == 5


def test_introspection_first_processes_the_class() -> None:
    assert str(inspect.signature(Box)) == "(size: 'int' = 1) -> None"
    assert dataclasses.is_dataclass(Box) and Box() == Box()
    with pytest.raises(TypeError, match="unhashable"):
        hash(Box())


def test_an_instance_made_without_init_still_processes_its_class() -> None:
    raw = object.__new__(Raw)
    object.__setattr__(raw, "__dict__", {"x": 5})
    assert repr(raw) == "Raw(x=5)" and raw == Raw(5)
    assert Raw not in _lazy.pending()


def test_a_plain_subclass_of_a_frozen_one_may_set_its_own_attributes() -> None:
    class Tagged(Point):
        pass

    t = Tagged(1)
    t.note = "mine"  # type: ignore[attr-defined]  # dataclass allows it: only Point itself is frozen
    assert t.note == "mine"  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.x = 2  # type: ignore[misc]


def test_slots_are_not_deferred() -> None:
    @dataclass(slots=True)
    class Slotted:
        x: int

    assert Slotted not in _lazy.pending() and Slotted.__slots__ == ("x",) and Slotted(1).x == 1


def pair(decorate: Callable[..., Any]) -> list[type]:
    """The same classes, made by ``decorate``: frozen, plain, ordered, unhashable-by-choice, with
    ``__post_init__``, a subclass, a class nested in another."""

    @decorate(frozen=True)
    class Frozen:
        a: int
        b: tuple[int, ...] = ()
        c: list[int] = field(default_factory=list, compare=False, repr=False)

        def __post_init__(self) -> None:
            object.__setattr__(self, "b", tuple(self.b))

    @decorate(order=True)
    class Ordered:
        a: int = 0

    @decorate(eq=False)
    class Identity:
        a: int = 0

    @decorate(frozen=True)
    class Child(Frozen):
        d: str = ""

    class Outer:
        @decorate
        class Inner:
            a: int = 0

    return [Frozen, Ordered, Identity, Child, Outer.Inner]


def functions(value: Any) -> Iterator[types.FunctionType]:
    while isinstance(value, types.FunctionType):
        yield value
        value = getattr(value, "__wrapped__", None)


def test_a_class_is_given_what_dataclass_gives_it() -> None:
    for eager, lazy in zip(pair(dataclasses.dataclass), pair(dataclass), strict=True):
        dataclasses.fields(lazy)  # process it
        assert {k for k in lazy.__dict__} == {k for k in eager.__dict__}, lazy
        for name, value in eager.__dict__.items():
            ours = lazy.__dict__[name]
            for e, o in zip(functions(value), functions(ours), strict=True):
                assert (o.__qualname__, o.__code__.co_code) == (e.__qualname__, e.__code__.co_code), (lazy, name)
                # no closure holds the copy dataclass() ran on: each holds what the eager one holds
                assert [type(c.cell_contents) for c in o.__closure__ or ()] == [
                    type(c.cell_contents) for c in e.__closure__ or ()]
                assert all(c.cell_contents is lazy for c, ec in zip(o.__closure__ or (), e.__closure__ or (),
                                                                    strict=True) if ec.cell_contents is eager)
        assert repr(lazy.__dataclass_params__) == repr(eager.__dataclass_params__)  # type: ignore[attr-defined]
        assert [f.name for f in dataclasses.fields(lazy)] == [f.name for f in dataclasses.fields(eager)]
        assert [c.__qualname__ for c in lazy.__mro__] == [c.__qualname__ for c in eager.__mro__]


def first_use_by_threads_at_once(failures: list[str]) -> None:
    @dataclass(frozen=True)
    class Fresh:
        a: int
        b: str = ""

    start = threading.Barrier(6)

    def use() -> None:
        start.wait()
        try:
            made = Fresh(1, "x")
            assert repr(made).endswith(".Fresh(a=1, b='x')") and made == Fresh(1, "x")
            assert hash(made) == hash(Fresh(1, "x"))
        except Exception as exc:  # collected: a thread's assertion would not fail the test
            failures.append(repr(exc))

    threads = [threading.Thread(target=use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_threads_making_the_first_instances_at_once_all_get_real_ones() -> None:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: inside dataclass() too
    failures: list[str] = []
    try:
        for _ in range(40):
            first_use_by_threads_at_once(failures)
    finally:
        sys.setswitchinterval(interval)
    assert failures == []


def test_every_dataclass_of_the_package_processes() -> None:
    """A definition error (a field without a default after one with) surfaces here, not at a
    user's first instance of a class the rest of the suite never made."""
    for info in pkgutil.walk_packages(mirror_providers.__path__, "mirror_providers."):
        if info.name != "mirror_providers.__main__":
            importlib.import_module(info.name)
    ours = [c for c in _lazy.pending() if c.__module__.startswith("mirror_providers.")]
    for cls in ours:
        assert dataclasses.fields(cls), cls
        assert not any(isinstance(v, _lazy._StandIn) for v in vars(cls).values()), cls
    assert not [c for c in _lazy.pending() if c.__module__.startswith("mirror_providers.")]
