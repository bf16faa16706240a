"""``_lazy.dataclass``: a class is exactly what ``dataclasses.dataclass`` makes, whatever touches it first."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pickle
import pkgutil
from dataclasses import field

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


def test_slots_are_refused() -> None:
    with pytest.raises(TypeError, match="slots"):
        @dataclass(slots=True)
        class Slotted:
            x: int


def test_every_dataclass_of_the_package_processes() -> None:
    """A definition error (a field without a default after one with) surfaces here, not at a
    user's first instance of a class the rest of the suite never made."""
    for info in pkgutil.walk_packages(mirror_providers.__path__, "mirror_providers."):
        if info.name != "mirror_providers.__main__":
            importlib.import_module(info.name)
    for cls in _lazy.pending():
        if cls.__module__.startswith("mirror_providers."):
            assert dataclasses.fields(cls), cls
    assert not [c for c in _lazy.pending() if c.__module__.startswith("mirror_providers.")]
