"""Structured output: the ``schema=`` option, and checking what the model returned against it.

``output_schema`` turns what the caller gave (a JSON Schema dict, OpenAI's ``{"name", "schema",
"strict"}`` wrapper, or a dataclass type) into an ``OutputSchema``; the providers put its schema on
the wire their way. ``OutputSchema.parse`` decodes an answer's text, checks it against the schema
and, for a dataclass, builds the instance. The check covers the keywords structured-output APIs
use: ``type``, ``properties``, ``required``, ``additionalProperties``, ``items``, ``enum``,
``const``, ``anyOf``/``oneOf``/``allOf``, local ``$ref`` (``#/$defs/...``), and the length, size
and range bounds; other keywords (``format``, ``pattern``...) are sent to the vendor and not
checked here.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from ._lazy import dataclass
from .errors import StructuredOutputError, ValidationError

__all__ = ["OutputSchema", "check_instance", "dataclass_schema", "output_schema", "strict_problems"]

_NAME = re.compile(r"[^a-zA-Z0-9_-]")
_JSON_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


@dataclass(frozen=True)
class OutputSchema:
    """A checked ``schema=`` value.

    Attributes:
        name: the schema's name, as OpenAI wants one (``[a-zA-Z0-9_-]``, at most 64).
        schema: the JSON Schema (its root is an object).
        target: the dataclass to build from the answer, or None for a dict schema.
        description: what the output is, when the caller said (sent where the vendor takes it).
    """

    name: str
    schema: dict[str, Any]
    target: type | None = None
    description: str | None = None

    def strict_schema(self) -> dict[str, Any]:
        """The schema with ``additionalProperties: false`` on every object that does not say,
        as OpenAI's strict mode requires (its SDK does the same)."""
        closed: dict[str, Any] = _closed(self.schema)
        return closed

    def parse(self, text: str, finish_reason: str | None = None) -> Any:
        """The answer's text decoded, checked and (for a dataclass) built.

        Raises:
            StructuredOutputError: the text is not JSON, or does not match the schema.
        """
        try:
            value = json.loads(text)
        except ValueError as exc:
            cut = " (the answer was cut off at max_tokens)" if finish_reason == "length" else ""
            raise _error(f"the answer is not JSON{cut}: {exc}", text, (), finish_reason) from None
        problems = check_instance(value, self.schema)
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise _error(f"the answer does not match the schema {self.name!r}: {shown}", text, problems,
                         finish_reason)
        if self.target is None:
            return value
        return _build(self.target, value)


def _error(message: str, text: str, problems: Sequence[str], finish_reason: str | None) -> StructuredOutputError:
    err = StructuredOutputError(message)
    err.content, err.problems, err.finish_reason = text, tuple(problems), finish_reason
    return err


def output_schema(value: Any) -> OutputSchema:
    """``schema=`` as given -> an ``OutputSchema``.

    Raises:
        ValidationError: not a schema dict, wrapper or dataclass type; or a schema whose root is
            not an object, or that uses a type this module cannot express. (That a dict is JSON
            is the caller's to check: ``request`` does.)
    """
    if isinstance(value, OutputSchema):
        return value
    if isinstance(value, type) and dataclasses.is_dataclass(value):
        schema = dataclass_schema(value)
        return OutputSchema(_clean_name(value.__name__), schema, value, _doc(value))
    if not isinstance(value, Mapping):
        raise ValidationError(f"schema must be a JSON Schema dict or a dataclass type, got {type(value).__name__}")
    name, description = value.get("title"), value.get("description")
    if "schema" in value and "type" not in value and "properties" not in value:  # OpenAI's wrapper
        name, description = value.get("name"), value.get("description")
        value = value["schema"]
        if not isinstance(value, Mapping):
            raise ValidationError(f"schema['schema'] must be a JSON Schema dict, got {type(value).__name__}")
    if value.get("type") != "object":
        raise ValidationError(f"schema's root must be {{'type': 'object', ...}} (what every vendor's structured "
                              f"output takes), got type {value.get('type')!r}; wrap other values in an object")
    _check_schema(value, "schema")
    if name is not None and not isinstance(name, str):
        raise ValidationError(f"schema name must be text, got {name!r}")
    if description is not None and not isinstance(description, str):
        raise ValidationError(f"schema description must be text, got {description!r}")
    return OutputSchema(_clean_name(name or "response"), json.loads(json.dumps(value)), None, description)


def _clean_name(name: str) -> str:
    return _NAME.sub("_", name)[:64] or "response"


def _doc(cls: type) -> str | None:
    doc = cls.__doc__
    # A dataclass without a docstring gets a generated one ("Point(x: int, y: int)"): not a description.
    if not doc or doc.startswith(f"{cls.__name__}("):
        return None
    return " ".join(doc.split())


def _check_schema(schema: Any, where: str) -> None:
    """The parts of a schema the checker reads must be of the right kind."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, Mapping):
        raise ValidationError(f"{where} must be a schema object, got {type(schema).__name__}")
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for k in kinds:
        if k not in _JSON_TYPES:
            raise ValidationError(f"{where}.type {k!r} is not a JSON Schema type ({', '.join(_JSON_TYPES)})")
    for key in ("properties", "$defs", "definitions"):
        if key in schema:
            if not isinstance(schema[key], Mapping):
                raise ValidationError(f"{where}.{key} must be an object")
            for name, sub in schema[key].items():
                _check_schema(sub, f"{where}.{key}.{name}")
    _check_lists(schema, where)


def _check_lists(schema: Mapping[str, Any], where: str) -> None:
    required = schema.get("required")
    if required is not None and not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
        raise ValidationError(f"{where}.required must be a list of property names")
    for key in ("items", "additionalProperties"):
        if key in schema:
            _check_schema(schema[key], f"{where}.{key}")
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            if not isinstance(schema[key], list) or not schema[key]:
                raise ValidationError(f"{where}.{key} must be a non-empty list of schemas")
            for i, sub in enumerate(schema[key]):
                _check_schema(sub, f"{where}.{key}[{i}]")
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise ValidationError(f"{where}.enum must be a list")


def _closed(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    out = {k: _closed(v) if k in ("properties", "items", "anyOf", "oneOf", "allOf", "$defs", "definitions",
                                  "additionalProperties") else v
           for k, v in schema.items()}
    for key in ("properties", "$defs", "definitions"):
        if isinstance(schema.get(key), Mapping):
            out[key] = {name: _closed(sub) for name, sub in schema[key].items()}
    if out.get("type") == "object" and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def strict_problems(schema: Any, path: str = "$") -> list[str]:
    """What keeps ``schema`` from OpenAI's strict mode (empty when nothing): every object must
    list all its properties as required and allow no others."""
    found: list[str] = []
    if isinstance(schema, list):
        for i, sub in enumerate(schema):
            found += strict_problems(sub, f"{path}[{i}]")
        return found
    if not isinstance(schema, Mapping):
        return found
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        missing = [name for name in props if name not in (schema.get("required") or ())]
        if missing:
            found.append(f"{path} does not require {missing} (make optional fields nullable instead)")
        if schema.get("additionalProperties", False) is not False:
            found.append(f"{path} allows additional properties")
        for name, sub in props.items():
            found += strict_problems(sub, f"{path}.{name}")
    for key in ("items", "anyOf", "oneOf", "allOf"):
        if key in schema:
            found += strict_problems(schema[key], f"{path}.{key}")
    for key in ("$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            found += strict_problems(sub, f"{path}.{key}.{name}")
    return found


# -- checking an answer --------------------------------------------------------------------------

def check_instance(value: Any, schema: Mapping[str, Any]) -> list[str]:
    """What in ``value`` does not match ``schema`` (empty when it matches), each with its path."""
    problems: list[str] = []
    _check(value, schema, schema, "$", problems, 0)
    return problems


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool) or (
            isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def _resolve(ref: str, root: Mapping[str, Any]) -> Any:
    if not ref.startswith("#"):
        return None
    node: Any = root
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _check(value: Any, schema: Any, root: Mapping[str, Any], path: str, out: list[str], depth: int) -> None:
    if schema is True or not isinstance(schema, Mapping) and schema is not False:
        return
    if schema is False:
        out.append(f"{path} is not allowed")
        return
    if depth > 64:
        out.append(f"{path} nests too deep to check")
        return
    if "$ref" in schema:
        target = _resolve(str(schema["$ref"]), root)
        if target is None:
            out.append(f"{path}: $ref {schema['$ref']!r} does not resolve")
        else:
            _check(value, target, root, path, out, depth + 1)
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_type_ok(value, k) for k in kinds):
            out.append(f"{path} is {_json_type(value)}, not {' or '.join(kinds)}")
            return
    _check_choices(value, schema, root, path, out, depth)
    if isinstance(value, dict):
        _check_object(value, schema, root, path, out, depth)
    elif isinstance(value, list):
        _check_array(value, schema, root, path, out, depth)
    elif isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", math.inf):
            out.append(f"{path} has length {len(value)}, outside its bounds")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, schema, path, out)


def _check_choices(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: str, out: list[str],
                   depth: int) -> None:
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        out.append(f"{path} is {_short(value)}, not one of {_short(schema['enum'])}")
    if "const" in schema and not _same(value, schema["const"]):
        out.append(f"{path} is {_short(value)}, not {_short(schema['const'])}")
    for key in ("anyOf", "oneOf"):
        if key in schema:
            matches = sum(1 for sub in schema[key] if not _sub_problems(value, sub, root, path, depth))
            if matches == 0 or (key == "oneOf" and matches > 1):
                out.append(f"{path} matches {matches} of the {key} choices" if matches else
                           f"{path} ({_short(value)}) matches none of the {key} choices")
    for sub in schema.get("allOf") or ():
        _check(value, sub, root, path, out, depth + 1)


def _check_object(value: dict[str, Any], schema: Mapping[str, Any], root: Mapping[str, Any], path: str,
                  out: list[str], depth: int) -> None:
    props = schema.get("properties") or {}
    for name in schema.get("required") or ():
        if name not in value:
            out.append(f"{path} lacks required property {name!r}")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in props:
            _check(item, props[name], root, f"{path}.{name}", out, depth + 1)
        elif extra is False:
            out.append(f"{path} has property {name!r}, which the schema does not allow")
        elif isinstance(extra, Mapping):
            _check(item, extra, root, f"{path}.{name}", out, depth + 1)


def _check_array(value: list[Any], schema: Mapping[str, Any], root: Mapping[str, Any], path: str,
                 out: list[str], depth: int) -> None:
    if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", math.inf):
        out.append(f"{path} has {len(value)} items, outside its bounds")
    items = schema.get("items")
    if isinstance(items, (Mapping, bool)):
        for i, item in enumerate(value):
            _check(item, items, root, f"{path}[{i}]", out, depth + 1)


def _check_number(value: float, schema: Mapping[str, Any], path: str, out: list[str]) -> None:
    for key, ok in _BOUNDS:
        bound = schema.get(key)
        if isinstance(bound, (int, float)) and not isinstance(bound, bool) and not ok(value, bound):
            out.append(f"{path} is {value}, outside its {key} of {bound}")


_BOUNDS: tuple[tuple[str, typing.Callable[[float, float], bool]], ...] = (
    ("minimum", lambda v, b: v >= b), ("maximum", lambda v, b: v <= b),
    ("exclusiveMinimum", lambda v, b: v > b), ("exclusiveMaximum", lambda v, b: v < b))


def _sub_problems(value: Any, schema: Any, root: Mapping[str, Any], path: str, depth: int) -> list[str]:
    found: list[str] = []
    _check(value, schema, root, path, found, depth + 1)
    return found


def _same(a: Any, b: Any) -> bool:
    # JSON equality: 1 == 1.0, but True is not 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _json_type(value: Any) -> str:
    for kind in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _type_ok(value, kind):
            return "null" if kind == "null" else f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
    return type(value).__name__


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


# -- dataclasses ---------------------------------------------------------------------------------

def dataclass_schema(cls: type) -> dict[str, Any]:
    """A JSON Schema for a dataclass type: every field required (optional ones as ``T | None``),
    no other properties, nested dataclasses inline; the form OpenAI's strict mode takes.

    Raises:
        ValidationError: a field's type has no JSON form (a set, bytes, a recursive dataclass...).
    """
    return _type_schema(cls, f"schema {cls.__name__}", ())


def _type_schema(hint: Any, where: str, seen: tuple[type, ...]) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        raise ValidationError(f"{where}: Any has no JSON schema; give the field a type")
    if origin in (typing.Union, types.UnionType):
        options = [_type_schema(a, where, seen) for a in args if a is not type(None)]
        if type(None) in args:
            options.append({"type": "null"})
        return options[0] if len(options) == 1 else {"anyOf": options}
    if origin is typing.Literal:
        if not all(isinstance(a, (str, int, float, bool)) or a is None for a in args):
            raise ValidationError(f"{where}: Literal values must be JSON scalars")
        return {"enum": list(args)}
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            raise ValidationError(f"{where}: fixed-length tuples have no strict JSON schema; use tuple[T, ...]")
        if not args:
            raise ValidationError(f"{where}: give the item type (list[str]...)")
        return {"type": "array", "items": _type_schema(args[0], f"{where}[]", seen)}
    if origin in (dict, Mapping):
        if not args or args[0] is not str:
            raise ValidationError(f"{where}: dict keys must be str (dict[str, T])")
        return {"type": "object", "additionalProperties": _type_schema(args[1], f"{where}{{}}", seen)}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum_schema(hint, where)
    simple = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}
    if hint in simple:
        return {"type": simple[hint]}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass_object(hint, where, seen)
    raise ValidationError(f"{where}: type {getattr(hint, '__name__', hint)!r} has no JSON schema "
                          f"(use str, int, float, bool, None, list, dict[str, T], Literal, an Enum or a dataclass)")


def _enum_schema(cls: type[enum.Enum], where: str) -> dict[str, Any]:
    values = [m.value for m in cls]
    if not all(isinstance(v, (str, int, float)) for v in values):
        raise ValidationError(f"{where}: enum {cls.__name__}'s values must be text or numbers")
    return {"enum": values}


def _dataclass_object(cls: type, where: str, seen: tuple[type, ...]) -> dict[str, Any]:
    if cls in seen:
        raise ValidationError(f"{where}: {cls.__name__} contains itself; recursive types are not supported")
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    props = {f.name: _type_schema(hints[f.name], f"{where}.{f.name}", (*seen, cls)) for f in fields}
    return {"type": "object", "properties": props, "required": [f.name for f in fields],
            "additionalProperties": False}


def _build(hint: Any, value: Any) -> Any:
    """A checked JSON value -> the Python value of ``hint`` (the dataclass, its enums, tuples)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            if not _type_schema_problems(option, value):
                return _build(option, value)
        return value
    if origin in (list, tuple, Sequence):
        items = [_build(args[0], v) for v in value]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        return {k: _build(args[1], v) for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if hint is float and isinstance(value, int):
        return float(value)
    if hint is int and isinstance(value, float):
        return int(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return hint(**{f.name: _build(hints[f.name], value[f.name])
                       for f in dataclasses.fields(hint) if f.init and f.name in value})
    return value


def _type_schema_problems(hint: Any, value: Any) -> list[str]:
    return check_instance(value, _type_schema(hint, "", ()))
