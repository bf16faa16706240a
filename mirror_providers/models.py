"""The model catalog as data: ``data/models.json`` shipped in the package, read once.

Each row is a :class:`~mirror_providers.types.ModelInfo` (its fields are the JSON keys; tuples are
JSON lists). The file is checked strictly when read: an unknown key, a value of the wrong type or
a name two rows of one vendor both claim is an error naming the row, so a bad edit fails the test
suite instead of quietly changing what the library sends.

Lifecycle: a row's :meth:`~mirror_providers.types.ModelInfo.status` on a given day follows its
dates, so a model whose shutdown date passes after this release is treated as retired from that
day. ``replacement_for`` follows the vendor's named replacements to one that is still available.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import threading
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping
from importlib.resources import files
from typing import Any

from .types import ModelInfo, Tier

__all__ = ["ModelDeprecatedWarning", "as_of", "is_iso_date", "load_models", "replacement_for", "shipped_models",
           "today", "warn_deprecated"]

DATA_FILE = "models.json"


class ModelDeprecatedWarning(FutureWarning):
    """The model is deprecated by its vendor: it still works, and stops on the date named.

    A ``FutureWarning``, so Python shows it by default (once per model and process)."""


def today() -> str:
    """Today's date (ISO), as lifecycle checks see it; tests replace this function."""
    return datetime.date.today().isoformat()


_HINTS = typing.get_type_hints(ModelInfo)
_FIELDS = {f.name: f for f in dataclasses.fields(ModelInfo)}
_REQUIRED = {name for name, f in _FIELDS.items()
             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


def _convert(value: Any, hint: Any, where: str) -> Any:
    """A JSON value checked against (and shaped to) one ``ModelInfo`` field's type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [t for t in typing.get_args(hint) if t is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        return _convert(value, options[0], where)  # the fields' unions are "X | None" only
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ValueError(f"{where}: {value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        item_types = typing.get_args(hint)
        if item_types[-1] is Ellipsis:
            item_types = (item_types[0],) * len(value)
        elif len(value) != len(item_types):
            raise ValueError(f"{where}: expected {len(item_types)} items, got {len(value)}")
        return tuple(_convert(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, item_types, strict=True)))
    if hint is Tier:
        if value not in {t.value for t in Tier}:
            raise ValueError(f"{where}: {value!r} is not a tier ({[t.value for t in Tier]})")
        return Tier(value)
    accepts, wanted = _SCALARS[hint]
    if not accepts(value):
        raise ValueError(f"{where}: expected {wanted}, got {value!r}")
    return float(value) if hint is float else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_SCALARS: dict[Any, tuple[Callable[[Any], bool], str]] = {
    int: (lambda v: _is_number(v) and isinstance(v, int) and v >= 1, "a whole number >= 1"),
    float: (lambda v: _is_number(v) and v >= 0, "a price >= 0"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
    str: (lambda v: isinstance(v, str) and bool(v), "non-empty text"),
}


def _row(data: Any, where: str) -> ModelInfo:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: a model is an object, got {type(data).__name__}")
    label = f"{where} ({data.get('id')!r})"
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{label}: unknown field(s) {unknown}; known: {sorted(_FIELDS)}")
    missing = sorted(_REQUIRED - set(data))
    if missing:
        raise ValueError(f"{label}: missing {missing}")
    values = {name: _convert(value, _HINTS[name], f"{label}.{name}") for name, value in data.items()}
    for date_field in ("retires_on", "deprecated_on"):
        day = values.get(date_field)
        if day is not None and not is_iso_date(day):
            raise ValueError(f"{label}.{date_field}: {day!r} is not a YYYY-MM-DD date")
    return ModelInfo(**values)


def is_iso_date(text: str) -> bool:
    """Whether the text is a date in ISO form (YYYY-MM-DD)."""
    try:
        return datetime.date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


def load_models(text: str, source: str = DATA_FILE) -> dict[str, tuple[ModelInfo, ...]]:
    """Parse a catalog file: vendor id -> its rows, in file order.

    Raises:
        ValueError: the text is not a catalog (names the row and field at fault).
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not JSON: {exc}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("models"), list):
        raise ValueError(f"{source}: expected an object with a 'models' list")
    by_vendor: dict[str, list[ModelInfo]] = {}
    for i, data in enumerate(doc["models"]):
        if isinstance(data, Mapping) and isinstance(data.get("renames"), Mapping):  # an object in the file
            data = {**data, "renames": [[k, v] for k, v in data["renames"].items()]}
        info = _row(data, f"{source} models[{i}]")
        if not info.provider:
            raise ValueError(f"{source} models[{i}] ({info.id!r}): no provider")
        by_vendor.setdefault(info.provider, []).append(info)
    for vendor, rows in by_vendor.items():
        _check_table(vendor, rows, source)
    return {vendor: tuple(rows) for vendor, rows in by_vendor.items()}


def _check_table(vendor: str, rows: Iterable[ModelInfo], source: str) -> None:
    """One vendor's rows: every name claimed once, every replacement a row of the table."""
    owner: dict[str, str] = {}
    rows = list(rows)
    for info in rows:
        for name in info.names():
            if owner.setdefault(name, info.id) != info.id:
                raise ValueError(f"{source}: {vendor} name {name!r} is claimed by {owner[name]!r} and {info.id!r}")
    for info in rows:
        if info.replacement is not None and info.replacement not in owner:
            raise ValueError(f"{source}: {vendor} {info.id!r} names replacement {info.replacement!r}, "
                             f"which is not in the table")
        if info.replacement == info.id:
            raise ValueError(f"{source}: {vendor} {info.id!r} names itself as its replacement")


_lock = threading.Lock()
_shipped: dict[str, tuple[ModelInfo, ...]] | None = None


def _fresh_lock_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # one another thread held at fork() would stay held in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_in_child)
_as_of: str = ""


def _load_shipped() -> dict[str, tuple[ModelInfo, ...]]:
    global _shipped, _as_of
    if _shipped is None:
        with _lock:
            if _shipped is None:
                text = files("mirror_providers").joinpath("data").joinpath(DATA_FILE).read_text(encoding="utf-8")
                table = load_models(text)
                _as_of = str(json.loads(text).get("as_of") or "")
                _shipped = table
    return _shipped


def shipped_models(provider: str) -> tuple[ModelInfo, ...]:
    """The shipped catalog's rows for one vendor (empty for a vendor it does not list)."""
    return _load_shipped().get(provider, ())


def as_of() -> str:
    """The date (ISO) the shipped catalog describes."""
    _load_shipped()
    return _as_of


def replacement_for(info: ModelInfo, table: Iterable[ModelInfo], today: str | None = None) -> str | None:
    """The vendor's named replacement, followed past replacements that are retired themselves
    (``claude-3-5-sonnet`` -> ``claude-sonnet-4-5`` (retired) -> ``claude-sonnet-5-5``); None when
    the vendor named none."""
    by_name = {name: row for row in table for name in row.names()}
    seen = {info.id}
    current = info
    while current.replacement is not None and current.replacement not in seen:
        nxt = by_name.get(current.replacement)
        if nxt is None:
            return current.replacement
        if nxt.status(today) != "retired":
            return nxt.id
        seen.add(nxt.id)
        current = nxt
    return None if current is info else current.id


_warned: set[tuple[str, str]] = set()


def warn_deprecated(provider: str, info: ModelInfo, table: Iterable[ModelInfo], today: str | None = None,
                    stacklevel: int = 2) -> bool:
    """Warn (``ModelDeprecatedWarning``) that a model is deprecated, once per vendor and model in
    this process. Returns whether it warned."""
    key = (provider, info.id)
    with _lock:
        if key in _warned:
            return False
        _warned.add(key)
    when = f"; {provider} shuts it down on {info.retires_on}" if info.retires_on else ""
    repl = replacement_for(info, table, today)
    use = f"; the named replacement is {repl}" if repl else ""
    warnings.warn(f"{info.id} is deprecated{when}{use}", ModelDeprecatedWarning, stacklevel=stacklevel + 1)
    return True
