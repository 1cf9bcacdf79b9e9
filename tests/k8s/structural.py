"""A CRD's structural schema applied to a custom resource, as kube-apiserver applies it.

The same steps, in the same order, with the same messages as k8s.io/apiextensions-apiserver and
k8s.io/kube-openapi (v1.36): ``prune`` drops the fields the schema does not declare and says which
(``fieldValidation=Strict`` refuses them, ``Warn`` warns), ``prune_nulls`` drops nulls of
non-nullable fields without a default, ``default`` fills in the schema's defaults, and
``validate`` checks types, formats aside, ``enum``, ``pattern``, ``minLength``/``maxLength``,
``minimum``/``maximum`` (exclusive too), ``multipleOf``, ``minItems``/``maxItems``/``uniqueItems``,
``minProperties``/``maxProperties``, ``required``, ``nullable``, ``x-kubernetes-int-or-string`` and
the keys of ``x-kubernetes-list-type: map``. Each error is a ``FieldError`` that renders as the API
server's ``field.Error``: ``spec.replicas: Invalid value: "string": spec.replicas in body must be of
type integer: "string"``.

Not emulated: ``format``, ``allOf``/``anyOf``/``oneOf``/``not``, CEL rules
(``x-kubernetes-validations``), embedded resources and ``metadata`` beyond ObjectMeta's fields.
"""

from __future__ import annotations

import decimal
import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

Schema = Mapping[str, Any]
# The fields of ObjectMeta: anything else under a custom resource's metadata is unknown.
OBJECT_META = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
_ROOT_META = ("apiVersion", "kind", "metadata")
# field.ErrorType: the cause's reason, and how its message starts.
INVALID, REQUIRED, NOT_SUPPORTED = (
    "FieldValueInvalid",
    "FieldValueRequired",
    "FieldValueNotSupported",
)
TYPE_INVALID, TOO_LONG, TOO_MANY = "FieldValueTypeInvalid", "FieldValueTooLong", "FieldValueTooMany"
DUPLICATE = "FieldValueDuplicate"
_TITLES = {
    INVALID: "Invalid value",
    TYPE_INVALID: "Invalid value",
    REQUIRED: "Required value",
    NOT_SUPPORTED: "Unsupported value",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
    DUPLICATE: "Duplicate value",
}
_OMIT = object()


class FieldError(NamedTuple):
    """One ``field.Error``: its type (a cause's reason), field path, bad value and detail."""

    type: str
    field: str
    value: Any = ""
    detail: str = ""

    def body(self) -> str:
        """``field.Error.ErrorBody()``: a cause's message."""
        title = _TITLES[self.type]
        if self.type in (REQUIRED, TOO_LONG) or self.value is _OMIT:
            text = title
        else:
            text = f"{title}: {go_value(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def aggregate(errors: list[FieldError]) -> str:
    """``utilerrors.NewAggregate(errs).Error()``: one message, or ``[a, b]`` without repeats."""
    messages = list(dict.fromkeys(str(e) for e in errors))
    return messages[0] if len(messages) == 1 else f"[{', '.join(messages)}]"


# --- Go's formatting ----------------------------------------------------------------------------


def go_float(value: float) -> str:
    """``fmt.Sprintf("%v", float64)``: shortest digits, an exponent below 1e-4 or from 1e6 on."""
    if math.isinf(value) or math.isnan(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = decimal.Decimal(repr(abs(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # where the decimal point goes, counted from the left
    if point - 1 < -4 or point - 1 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        e = point - 1
        return f"{sign}{mantissa}e{'-' if e < 0 else '+'}{abs(e):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def go_value(value: Any) -> str:
    """A bad value as ``field.Error`` prints it: numbers and booleans bare, strings quoted, JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return go_quote(value)
    return go_json(value)


def go_quote(text: str) -> str:
    """``%q`` of a string (strconv.Quote)."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(char)])
        elif char.isprintable() or char == " ":
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def go_json(value: Any) -> str:
    """``json.Marshal``: compact, map keys sorted, <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _go_list(values: list[Any]) -> str:
    return "[" + " ".join(_go_plain(v) for v in values) + "]"


def _go_plain(value: Any) -> str:
    """``%v`` of a JSON value: strings bare, numbers as Go prints them."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return _go_list(value)
    if value is None:
        return "<nil>"
    return go_value(value)


# --- pruning and defaulting ------------------------------------------------------------------


def prune(obj: dict[str, Any], schema: Schema | None) -> list[str]:
    """Drop what the schema does not declare, in place; the dropped paths, as Strict names them.

    The root's apiVersion, kind and metadata are kept (metadata loses what ObjectMeta lacks).
    """
    unknown: list[str] = []
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        for key in sorted(set(metadata) - OBJECT_META):
            unknown.append(f"metadata.{key}")
            del metadata[key]
    found: list[str] = []
    _prune(obj, schema or {}, "", found, root=True)
    return unknown + sorted(found)


def _prune(x: Any, s: Schema | None, path: str, found: list[str], *, root: bool = False) -> None:
    if s is not None and s.get("x-kubernetes-preserve-unknown-fields"):
        _skip_prune(x, s, path, found, root=root)
        return
    if isinstance(x, dict):
        for key in list(x):
            child = f"{path}.{key}" if path else key
            if root and key in _ROOT_META:
                continue
            if s is not None and key in (s.get("properties") or {}):
                _prune(x[key], s["properties"][key], child, found)
            elif s is not None and isinstance(s.get("additionalProperties"), dict):
                _prune(x[key], s["additionalProperties"], child, found)
            else:
                found.append(child)
                del x[key]
    elif isinstance(x, list):
        for i, item in enumerate(x):
            _prune(item, None if s is None else s.get("items"), f"{path}[{i}]", found)


def _skip_prune(x: Any, s: Schema, path: str, found: list[str], *, root: bool = False) -> None:
    if isinstance(x, dict):
        for key, value in x.items():
            child = f"{path}.{key}" if path else key
            if root and key in _ROOT_META:
                continue
            if key in (s.get("properties") or {}):
                _prune(value, s["properties"][key], child, found)
            elif isinstance(s.get("additionalProperties"), dict):
                _prune(value, s["additionalProperties"], child, found)
    elif isinstance(x, list) and isinstance(s.get("items"), dict):
        for i, item in enumerate(x):
            _skip_prune(item, s["items"], f"{path}[{i}]", found)


def _field_schema(s: Schema | None, key: str) -> Schema | None:
    if s is None:
        return None
    if key in (s.get("properties") or {}):
        return s["properties"][key]  # type: ignore[no-any-return]
    extra = s.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def prune_nulls(x: Any, s: Schema | None) -> None:
    """Drop nulls of non-nullable fields that have no default (PruneNonNullableNullsWithoutDefaults)."""
    if isinstance(x, dict):
        for key in list(x):
            child = _field_schema(s, key)
            droppable = child is not None and not child.get("nullable") and "default" not in child
            if x[key] is None and droppable:
                del x[key]
                continue
            prune_nulls(x[key], child)
    elif isinstance(x, list):
        for item in x:
            prune_nulls(item, (s or {}).get("items"))


def default(x: Any, s: Schema | None) -> None:
    """Fill in absent fields (and non-nullable nulls) with the schema's defaults, in place."""
    if s is None:
        return
    if isinstance(x, dict):
        for key, prop in (s.get("properties") or {}).items():
            if "default" in prop and (
                key not in x or (x[key] is None and not prop.get("nullable"))
            ):
                x[key] = json.loads(json.dumps(prop["default"]))
        for key in x:
            if key in (s.get("properties") or {}):
                default(x[key], s["properties"][key])
            elif isinstance(extra := s.get("additionalProperties"), dict):
                if x[key] is None and not extra.get("nullable") and "default" in extra:
                    x[key] = json.loads(json.dumps(extra["default"]))
                default(x[key], extra)
    elif isinstance(x, list) and isinstance(items := s.get("items"), dict):
        for i in range(len(x)):
            if x[i] is None and not items.get("nullable") and "default" in items:
                x[i] = json.loads(json.dumps(items["default"]))
            default(x[i], items)


def integral_floats_as_ints(x: Any) -> None:
    """Write floats with no fraction as integers, in place, as Go's JSON encoder does."""
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
    for key, value in list(items):
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
            x[key] = int(value)
        else:
            integral_floats_as_ints(value)


# --- validation ------------------------------------------------------------------------------


def validate(obj: Any, schema: Schema, prefix: str = "") -> list[FieldError]:
    """Every error of ``obj`` against ``schema``, as the API server lists them.

    ``prefix`` is the path of ``obj`` in the object (``status`` for the status subresource): it
    names the fields, but not the paths inside the messages, as on the API server.
    """
    errors = [_to_field_error(e, prefix) for e in _validate(obj, schema, "")]
    return errors + list(_list_maps(obj, schema, prefix))


class _Openapi(NamedTuple):
    """kube-openapi's ``errors.Validation``: the code (what failed), name, value and message."""

    code: str
    name: str
    value: Any
    message: str
    valid: Any = None  # the enum's values, or the limit that failed


def _to_field_error(e: _Openapi, prefix: str) -> FieldError:
    """``kubeOpenAPIResultToFieldErrors``."""
    name = e.name.removeprefix(".") if e.name not in ("", ".") else ""
    where = ".".join(p for p in (prefix, name) if p)
    where = where.replace(".[", "[")
    value = "" if e.value is None else e.value
    if e.code == "required":
        return FieldError(REQUIRED, where)
    if e.code == "enum":
        values = ", ".join(go_quote(v if isinstance(v, str) else go_json(v)) for v in e.valid)
        return FieldError(NOT_SUPPORTED, where, e.value, f"supported values: {values}")
    if e.code == "maxLength":
        noun = "byte" if e.valid == 1 else "bytes"
        return FieldError(TOO_LONG, where, "", f"may not be more than {e.valid} {noun}")
    if e.code in ("maxItems", "maxProperties"):
        noun = "item" if e.valid == 1 else "items"
        return FieldError(TOO_MANY, where, e.value, f"must have at most {e.valid} {noun}")
    if e.code == "type":
        return FieldError(TYPE_INVALID, where, value, e.message)
    return FieldError(INVALID, where, value, e.message)


_IN = "in body"


def _types(s: Schema) -> list[str]:
    if s.get("x-kubernetes-int-or-string"):
        return ["integer", "string"]
    return [s["type"]] if s.get("type") else []


def _json_type(x: Any) -> str:
    if isinstance(x, bool):
        return "boolean"
    if isinstance(x, int):
        return "integer"
    if isinstance(x, float):
        return "number"
    if isinstance(x, str):
        return "string"
    if isinstance(x, list):
        return "array"
    return "object"


def _validate(x: Any, s: Schema, path: str) -> Iterator[_Openapi]:
    """kube-openapi's SchemaValidator: type, string, number, slice, enum, object, in that order."""
    types = _types(s)
    if x is None:
        if types and not s.get("nullable"):
            joined = ",".join(types)
            yield _Openapi("type", path, "null", f'{path} {_IN} must be of type {joined}: "null"')
        if s.get("enum"):
            yield _enum_error(x, s, path)
        return
    kind = _json_type(x)
    float_int = kind == "number" and float(x).is_integer() and "integer" in types
    int_float = kind == "integer" and "number" in types
    if types and kind not in types and not (float_int or int_float):
        joined = ",".join(types)
        yield _Openapi("type", path, kind, f'{path} {_IN} must be of type {joined}: "{kind}"')
    if kind == "string":
        yield from _string(x, s, path)
    if kind in ("integer", "number"):
        yield from _number(x, s, path)
    if kind == "array":
        yield from _slice(x, s, path)
    if s.get("enum") and not _in_enum(x, s["enum"]):
        yield _enum_error(x, s, path)
    if kind == "object":
        yield from _object(x, s, path)


def _string(x: str, s: Schema, path: str) -> Iterator[_Openapi]:
    if "maxLength" in s and len(x) > s["maxLength"]:
        message = f"{path} {_IN} should be at most {s['maxLength']} chars long"
        yield _Openapi("maxLength", path, x, message, s["maxLength"])
    elif "minLength" in s and len(x) < s["minLength"]:
        message = f"{path} {_IN} should be at least {s['minLength']} chars long"
        yield _Openapi("minLength", path, x, message)
    elif "pattern" in s and not re.search(s["pattern"], x):
        yield _Openapi("pattern", path, x, f"{path} {_IN} should match '{s['pattern']}'")


def _number(x: float, s: Schema, path: str) -> Iterator[_Openapi]:
    def bound(limit: float) -> str:  # an int compares (and prints) the limit as an int64
        return str(int(limit)) if isinstance(x, int) else go_float(float(limit))

    if (factor := s.get("multipleOf")) is not None:
        if isinstance(x, int) and float(factor).is_integer():
            bad = x % int(factor) != 0
        else:
            bad = not float(x / factor).is_integer()
        if bad:
            yield _Openapi(
                "multipleOf",
                path,
                x,
                f"{path} {_IN} should be a multiple of {go_float(float(factor))}",
            )
    if (low := s.get("minimum")) is not None:
        exclusive = bool(s.get("exclusiveMinimum"))
        limit = int(low) if isinstance(x, int) else float(low)
        if x < limit or (exclusive and x <= limit):
            word = "greater than" if exclusive else "greater than or equal to"
            yield _Openapi("minimum", path, x, f"{path} {_IN} should be {word} {bound(low)}")
    if (high := s.get("maximum")) is not None:
        exclusive = bool(s.get("exclusiveMaximum"))
        limit = int(high) if isinstance(x, int) else float(high)
        if x > limit or (exclusive and x >= limit):
            word = "less than" if exclusive else "less than or equal to"
            yield _Openapi("maximum", path, x, f"{path} {_IN} should be {word} {bound(high)}")


def _slice(x: list[Any], s: Schema, path: str) -> Iterator[_Openapi]:
    if isinstance(items := s.get("items"), dict):
        for i, item in enumerate(x):
            yield from _validate(item, items, f"{path}[{i}]")
    if "minItems" in s and len(x) < s["minItems"]:
        message = f"{path} {_IN} should have at least {s['minItems']} items"
        yield _Openapi("minItems", path, len(x), message)
    if "maxItems" in s and len(x) > s["maxItems"]:
        message = f"{path} {_IN} should have at most {s['maxItems']} items"
        yield _Openapi("maxItems", path, len(x), message, s["maxItems"])
    if s.get("uniqueItems") and len({go_json(i) for i in x}) < len(x):
        yield _Openapi("uniqueItems", path, x, f"{path} {_IN} shouldn't contain duplicates")


def _object(x: dict[str, Any], s: Schema, path: str) -> Iterator[_Openapi]:
    if "minProperties" in s and len(x) < s["minProperties"]:
        message = f"{path} {_IN} should have at least {s['minProperties']} properties"
        yield _Openapi("minProperties", path, len(x), message)
    if "maxProperties" in s and len(x) > s["maxProperties"]:
        message = f"{path} {_IN} should have at most {s['maxProperties']} properties"
        yield _Openapi("maxProperties", path, len(x), message, s["maxProperties"])
    properties = s.get("properties") or {}
    if isinstance(extra := s.get("additionalProperties"), dict):
        for key, value in x.items():
            if key not in properties:
                yield from _validate(value, extra, f"{path}.{key}")
    for key, prop in properties.items():
        if key in x:
            yield from _validate(x[key], prop, f"{path}.{key}" if path else key)
    for key in s.get("required") or []:
        if key not in x:
            yield _Openapi("required", f"{path}.{key}", None, f"{path}.{key} {_IN} is required")


def _in_enum(x: Any, values: list[Any]) -> bool:
    for value in values:
        if isinstance(value, bool) or isinstance(x, bool):
            if isinstance(value, bool) and isinstance(x, bool) and value == x:
                return True
        elif isinstance(value, int | float) and isinstance(x, int | float):
            if x == value:
                return True
        elif x == value and type(x) is type(value):
            return True
    return False


def _enum_error(x: Any, s: Schema, path: str) -> _Openapi:
    message = f"{path} {_IN} should be one of {_go_list(s['enum'])}"
    return _Openapi("enum", path, x, message, list(s["enum"]))


def _list_maps(x: Any, s: Schema, path: str) -> Iterator[FieldError]:
    """Duplicate keys in ``x-kubernetes-list-type`` set and map lists (ValidateListSetsAndMaps)."""
    if isinstance(x, dict):
        extra = s.get("additionalProperties")
        for key, value in x.items():
            child = f"{path}.{key}" if path else key
            if isinstance(extra, dict):
                yield from _list_maps(value, extra, f"{path}[{key}]")
            if key in (s.get("properties") or {}):
                yield from _list_maps(value, s["properties"][key], child)
    elif isinstance(x, list):
        kind, keys = s.get("x-kubernetes-list-type"), s.get("x-kubernetes-list-map-keys") or []
        if kind == "set":
            seen: set[str] = set()
            for i, item in enumerate(x):
                if (marker := go_json(item)) in seen:
                    yield FieldError(DUPLICATE, f"{path}[{i}]", item)
                seen.add(marker)
        elif kind == "map":
            seen = set()
            for i, item in enumerate(x):
                if item is not None and not isinstance(item, dict):
                    yield FieldError(
                        INVALID,
                        f"{path}[{i}]",
                        item,
                        "must be an object for an array of list-type map",
                    )
                    return
                key = {k: item[k] for k in keys if k in (item or {})}
                if (marker := go_json(key)) in seen:
                    yield FieldError(DUPLICATE, f"{path}[{i}]", key)
                seen.add(marker)
        if isinstance(items := s.get("items"), dict):
            for i, item in enumerate(x):
                yield from _list_maps(item, items, f"{path}[{i}]")


def value_at(obj: Any, path: str) -> tuple[bool, Any]:
    """The value at a field path (``spec.a[0].b``) of ``obj``: (found, value)."""
    for step in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if step.startswith("[") and isinstance(obj, list):
            i = int(step[1:-1])
            if i >= len(obj):
                return False, None
            obj = obj[i]
        elif isinstance(obj, dict) and step in obj:
            obj = obj[step]
        else:
            return False, None
    return True, obj


# --- server-side apply: structured-merge-diff's typed check ----------------------------------


def apply_errors(config: dict[str, Any], schema: Schema) -> list[str]:
    """What structured-merge-diff finds wrong in an apply configuration before anything else.

    Its own words (``.spec.x: field not declared in schema``, ``expected numeric (int or float),
    got string``); the API server answers them with a 500. Go walks a map in random order and stops
    at a map's first undeclared field; this walks it sorted, one of those orders.
    """
    root = dict(schema)
    properties = dict(root.get("properties") or {})
    properties |= {"apiVersion": {"type": "string"}, "kind": {"type": "string"}}
    properties["metadata"] = {"type": "object", "properties": {key: {} for key in OBJECT_META}}
    root |= {"type": "object", "properties": properties}
    errors: list[str] = []
    _typed(config, root, "", errors)
    return errors


def _typed(x: Any, s: Schema, path: str, errors: list[str]) -> None:
    if x is None or not s:
        return
    preserve = bool(s.get("x-kubernetes-preserve-unknown-fields"))
    kind = s.get("type")
    if kind is None:  # int-or-string: any value here; the schema's validation judges it
        return
    if kind in ("integer", "number") and (isinstance(x, bool) or not isinstance(x, int | float)):
        errors.append(f"{path}: expected numeric (int or float), got {_go_type(x)}")
    elif kind == "string" and not isinstance(x, str):
        errors.append(
            f"{path}: expected string, got &value.valueUnstructured{{Value:{_go_sharp(x)}}}"
        )
    elif kind == "boolean" and not isinstance(x, bool):
        errors.append(f"{path}: expected boolean, got &{{{_go_v(x)}}}")
    elif kind == "array" and not isinstance(x, list):
        errors.append(f"{path}: expected list, got &{{{_go_v(x)}}}")
    elif kind == "array":
        for i, item in enumerate(x):
            _typed(item, s.get("items") or {}, f"{path}[{i}]", errors)
    elif kind == "object" and not isinstance(x, dict):
        errors.append(f"{path}: expected map, got &{{{_go_v(x)}}}")
    elif kind == "object":
        properties, extra = s.get("properties") or {}, s.get("additionalProperties")
        for key in sorted(x):
            child = properties.get(key, extra if isinstance(extra, dict) else None)
            if child is None and not preserve:
                errors.append(f"{path}.{key}: field not declared in schema")
                return
            _typed(x[key], child or {}, f"{path}.{key}", errors)


def _go_type(x: Any) -> str:
    """``%T`` of a decoded JSON value."""
    for kind, name in ((bool, "bool"), (int, "int64"), (float, "float64"), (str, "string")):
        if isinstance(x, kind):
            return name
    return "map[string]interface {}" if isinstance(x, dict) else "[]interface {}"


def _go_v(x: Any) -> str:
    """``%v`` of a decoded JSON value: maps as map[k:v], lists as [a b]."""
    if isinstance(x, dict):
        return "map[" + " ".join(f"{k}:{_go_v(v)}" for k, v in sorted(x.items())) + "]"
    return _go_plain(x)


def _go_sharp(x: Any) -> str:
    """``%#v`` of a decoded JSON value."""
    if isinstance(x, dict):
        items = ", ".join(f"{go_quote(k)}:{_go_sharp(v)}" for k, v in sorted(x.items()))
        return "map[string]interface {}{" + items + "}"
    if isinstance(x, list):
        return "[]interface {}{" + ", ".join(_go_sharp(v) for v in x) + "}"
    return "interface {}(nil)" if x is None else go_value(x)
