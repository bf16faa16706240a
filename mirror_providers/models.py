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
import functools
import json
import math
import os
import pkgutil
import threading
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping
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


_FIELDS = {f.name: f for f in dataclasses.fields(ModelInfo)}
_REQUIRED = {name for name, f in _FIELDS.items()
             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


class _Invalid(ValueError):
    """A value that does not fit its field; ``path`` says where inside the value (``"[2][0]"``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path = ""


def _converter(hint: Any) -> Callable[[Any], Any]:
    """The check of a JSON value against one ``ModelInfo`` field's type, which also shapes it
    (lists to tuples, a tier's name to ``Tier``) and raises ``_Invalid``; made once per field, so
    reading the catalog (at import) does not take a field's type apart for every value."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        options = [t for t in args if t is not type(None)]
        inner = _converter(options[0])  # the fields' unions are "X | None" only
        return inner if len(options) == len(args) else (lambda v: None if v is None else inner(v))
    if origin is typing.Literal:
        return functools.partial(_literal, typing.get_args(hint))
    if origin is tuple:
        item_types = typing.get_args(hint)
        if item_types[-1] is Ellipsis:
            return functools.partial(_items, _converter(item_types[0]))
        return functools.partial(_fixed, tuple(_converter(t) for t in item_types))
    if hint is Tier:
        return _tier
    accepts, wanted = _SCALARS[hint]
    return functools.partial(_scalar, accepts, wanted, float if hint is float else None)


def _literal(allowed: tuple[Any, ...], value: Any) -> Any:
    if value not in allowed:
        raise _Invalid(f"{value!r} is not one of {list(allowed)}")
    return value


def _listed(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _Invalid(f"expected a list, got {type(value).__name__}")
    return value


def _items(each: Callable[[Any], Any], value: Any) -> tuple[Any, ...]:
    return tuple(_at(i, each, v) for i, v in enumerate(_listed(value)))


def _fixed(convs: tuple[Callable[[Any], Any], ...], value: Any) -> tuple[Any, ...]:
    if len(_listed(value)) != len(convs):
        raise _Invalid(f"expected {len(convs)} items, got {len(value)}")
    return tuple(_at(i, conv, v) for i, (conv, v) in enumerate(zip(convs, value, strict=True)))


def _at(index: int, conv: Callable[[Any], Any], value: Any) -> Any:
    try:
        return conv(value)
    except _Invalid as exc:
        exc.path = f"[{index}]{exc.path}"
        raise


_TIERS = {t.value: t for t in Tier}


def _tier(value: Any) -> Tier:
    if not isinstance(value, str) or value not in _TIERS:
        raise _Invalid(f"{value!r} is not a tier ({list(_TIERS)})")
    return _TIERS[value]


def _scalar(accepts: Callable[[Any], bool], wanted: str, shape: Callable[[Any], Any] | None, value: Any) -> Any:
    if not accepts(value):
        raise _Invalid(f"expected {wanted}, got {value!r}")
    return value if shape is None else shape(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_SCALARS: dict[Any, tuple[Callable[[Any], bool], str]] = {
    int: (lambda v: _is_number(v) and isinstance(v, int) and v >= 1, "a whole number >= 1"),
    float: (lambda v: _is_number(v) and v >= 0, "a price >= 0"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
    str: (lambda v: isinstance(v, str) and bool(v), "non-empty text"),
}
_CONVERTERS = {name: _converter(hint) for name, hint in typing.get_type_hints(ModelInfo).items()}


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
    values = {}
    for name, value in data.items():
        try:
            values[name] = _CONVERTERS[name](value)
        except _Invalid as exc:
            raise ValueError(f"{label}.{name}{exc.path}: {exc.message}") from None
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
                # pkgutil, not importlib.resources: the same loader.get_data (a zip install works), without
                # importing tempfile, shutil, zipfile... (see bench/ import row)
                data = pkgutil.get_data("mirror_providers", f"data/{DATA_FILE}")
                if data is None:
                    raise FileNotFoundError(f"mirror_providers/data/{DATA_FILE} is not in the package")
                text = data.decode("utf-8")
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
