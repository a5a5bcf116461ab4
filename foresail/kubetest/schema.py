"""Structural OpenAPI v3 schemas of CRDs: pruning, defaulting and validation.

Follows the apiextensions rules: unknown fields are pruned (unless
``x-kubernetes-preserve-unknown-fields``), ``null`` in a non-nullable property is dropped, then
``default`` s are applied, then the object is validated and every violation becomes a
:class:`Cause` named by its field path (``spec.containers[0].name``).
"""

from __future__ import annotations

import base64
import copy
import datetime
import functools
import re
from typing import Any

from .errors import Cause, format_value

Schema = dict[str, Any]

OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields",
})
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def child_path(path: str, key: str) -> str:
    """``spec`` + ``replicas`` -> ``spec.replicas``."""
    return f"{path}.{key}" if path else key


def _keeps_root(schema: Schema, root: bool) -> bool:
    return root or bool(schema.get("x-kubernetes-embedded-resource"))


def prune(value: Any, schema: Schema | None, root: bool = False) -> Any:
    """Drop fields the schema does not declare, and nulls in non-nullable properties (in place)."""
    if schema is None:
        return value
    if isinstance(value, dict):
        _prune_object(value, schema, _keeps_root(schema, root))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            prune(item, schema["items"])
    return value


def _prune_object(value: dict[str, Any], schema: Schema, root: bool) -> None:
    """``prune`` for an object: each field by its property's schema, or ``additionalProperties``; at a root
    (or an embedded resource) apiVersion, kind and metadata stay, metadata only with ObjectMeta's fields."""
    props: dict[str, Schema] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    for key in list(value):
        if root and key in _ROOT_FIELDS:
            if key == "metadata" and isinstance(value[key], dict):
                for meta_key in [k for k in value[key] if k not in OBJECT_META_FIELDS]:
                    del value[key][meta_key]
            continue
        sub = props.get(key) if key in props else (additional if isinstance(additional, dict) else None)
        if key in props or isinstance(additional, dict):
            if value[key] is None and not (sub or {}).get("nullable"):
                del value[key]
            else:
                prune(value[key], sub)
        elif not (preserve or additional is True):
            del value[key]


def apply_defaults(value: Any, schema: Schema | None) -> Any:
    """Fill absent properties that declare a ``default`` (in place, recursively)."""
    if schema is None:
        return value
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key, item in value.items():
                if key not in (schema.get("properties") or {}):
                    apply_defaults(item, additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])
    return value


def on_read(obj: dict[str, Any], schema: Schema | None) -> dict[str, Any]:
    """A custom resource as the real server decodes it from storage (in place): pruned and defaulted by the
    current schema, so an object stored before a field was dropped or a ``default`` added reads as if written
    now (nothing is written back)."""
    prune(obj, schema, root=True)
    return apply_defaults(obj, schema)


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):  # one past int64 the real server's JSON decoder reads as a float
        return "integer" if -(2 ** 63) <= value < 2 ** 63 else "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_ok(value: Any, schema: Schema) -> bool:
    actual = _type_of(value)
    if actual == "null":
        return bool(schema.get("nullable"))
    if schema.get("x-kubernetes-int-or-string"):
        return actual in ("integer", "string")
    wanted = schema.get("type")
    if not wanted:
        return True
    if wanted == "number":
        return actual in ("integer", "number")
    return actual == wanted


def _format_ok(value: str, fmt: str) -> bool:
    """Whether a string has a (supported) OpenAPI format; unknown formats pass."""
    try:
        if fmt == "date-time":
            datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif fmt == "date":
            datetime.date.fromisoformat(value)
        elif fmt == "byte":
            base64.b64decode(value, validate=True)
        elif fmt == "uuid":
            return bool(_UUID.match(value))
    except (ValueError, TypeError):
        return False
    return True


def _invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {format_value(value)}: {detail}", path)


def validate(value: Any, schema: Schema | None, path: str = "", root: bool = True) -> list[Cause]:
    """Every violation of ``schema`` by ``value`` (apiVersion/kind/metadata at the root skipped)."""
    if schema is None:
        return []
    where = path or "<root>"
    if not _type_ok(value, schema):
        wanted = "integer or string" if schema.get("x-kubernetes-int-or-string") \
            else schema.get("type")
        actual = _type_of(value)
        return [Cause("FieldValueTypeInvalid", f'Invalid value: "{actual}": {where} in body must '
                      f'be of type {wanted}: "{actual}"', path)]
    if value is None:
        return []
    causes: list[Cause] = []
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(format_value(v) for v in schema["enum"])
        causes.append(Cause("FieldValueNotSupported", f"Unsupported value: {format_value(value)}: "
                            f"supported values: {allowed}", path))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        causes += _validate_number(value, schema, path, where)
    elif isinstance(value, str):
        causes += _validate_string(value, schema, path, where)
    elif isinstance(value, list):
        causes += _validate_array(value, schema, path, where)
    elif isinstance(value, dict):
        causes += _validate_object(value, schema, path, where, root)
    return causes


def _validate_number(value: float, schema: Schema, path: str, where: str) -> list[Cause]:
    causes = []
    if "minimum" in schema:
        low, excl = schema["minimum"], schema.get("exclusiveMinimum") is True
        if value < low or (excl and value == low):
            causes.append(_invalid(path, value, f"{where} in body should be greater than "
                                   f"{'' if excl else 'or equal to '}{low}"))
    if "maximum" in schema:
        high, excl = schema["maximum"], schema.get("exclusiveMaximum") is True
        if value > high or (excl and value == high):
            causes.append(_invalid(path, value, f"{where} in body should be less than "
                                   f"{'' if excl else 'or equal to '}{high}"))
    if schema.get("multipleOf") and value % schema["multipleOf"]:
        causes.append(_invalid(path, value, f"{where} in body should be a multiple of "
                               f"{schema['multipleOf']}"))
    fmt = schema.get("format")
    if fmt in ("int32", "int64") and isinstance(value, int):
        bits = 31 if fmt == "int32" else 63
        if not -(2 ** bits) <= value < 2 ** bits:
            causes.append(_invalid(path, value, f"{where} in body must be of type {fmt}"))
    return causes


@functools.lru_cache(maxsize=256)
def _go_pattern(pattern: str) -> str:
    """A schema ``pattern`` (Go's RE2, as the API server reads it) for Python's ``re``: a ``$`` outside a character
    class ends the text (``\\Z``), as in Go, where Python's also matches before a final newline."""
    out, escaped, in_class = [], False, False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "[]":
            in_class = ch == "["
        elif ch == "$" and not in_class:
            ch = "\\Z"
        out.append(ch)
    return "".join(out)


def _validate_string(value: str, schema: Schema, path: str, where: str) -> list[Cause]:
    causes = []
    if "minLength" in schema and len(value) < schema["minLength"]:
        causes.append(_invalid(path, value, f"{where} in body should be at least "
                               f"{schema['minLength']} chars long"))
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        causes.append(Cause("FieldValueTooLong",
                            f"Too long: may not be more than {schema['maxLength']} bytes", path))
    if "pattern" in schema and not re.search(_go_pattern(schema["pattern"]), value):
        causes.append(_invalid(path, value, f"{where} in body should match "
                               f"'{schema['pattern']}'"))
    if schema.get("format") and not _format_ok(value, schema["format"]):
        causes.append(_invalid(path, value, f"{where} in body must be of type "
                               f"{schema['format']}: {format_value(value)}"))
    return causes


def _validate_array(value: list[Any], schema: Schema, path: str, where: str) -> list[Cause]:
    causes = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        causes.append(_invalid(path, len(value), f"{where} in body should have at least "
                               f"{schema['minItems']} items"))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        causes.append(Cause("FieldValueTooMany", f"Too many: {len(value)}: must have at most "
                            f"{schema['maxItems']} items", path))
    list_type = schema.get("x-kubernetes-list-type")
    seen: list[Any] = []
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        if list_type in ("set", "map"):
            identity = item if list_type == "set" else tuple(
                (item or {}).get(k) for k in schema.get("x-kubernetes-list-map-keys") or [])
            if identity in seen:
                causes.append(Cause("FieldValueDuplicate",
                                    f"Duplicate value: {format_value(item)}", item_path))
            seen.append(identity)
        causes += validate(item, schema.get("items"), item_path, root=False)
    return causes


def _validate_object(value: dict[str, Any], schema: Schema, path: str, where: str,
                     root: bool) -> list[Cause]:
    causes = []
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        causes.append(Cause("FieldValueTooMany", f"Too many: {len(value)}: must have at most "
                            f"{schema['maxProperties']} items", path))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        causes.append(_invalid(path, len(value), f"{where} in body should have at least "
                               f"{schema['minProperties']} properties"))
    for key in schema.get("required") or []:
        if key not in value:
            causes.append(Cause("FieldValueRequired", "Required value", child_path(path, key)))
    props = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if _keeps_root(schema, root) and key in _ROOT_FIELDS:
            continue
        if key in props:
            causes += validate(item, props[key], child_path(path, key), root=False)
        elif isinstance(additional, dict):
            causes += validate(item, additional, child_path(path, key), root=False)
    return causes


def structural_errors(schema: Any, path: str) -> list[Cause]:
    """Why a CRD version schema is not structural (types everywhere, no properties+additional)."""
    if not isinstance(schema, dict):
        return [Cause("FieldValueRequired", "Required value: a structural schema is required",
                      path)]
    causes = []
    special = schema.get("x-kubernetes-int-or-string") or schema.get(
        "x-kubernetes-preserve-unknown-fields")
    kind = schema.get("type")
    if not kind and not special:
        causes.append(Cause("FieldValueRequired",
                            "Required value: must not be empty for specified object fields",
                            f"{path}.type"))
    elif kind and kind not in ("object", "array", "string", "integer", "number", "boolean"):
        causes.append(Cause("FieldValueNotSupported", f'Unsupported value: "{kind}"',
                            f"{path}.type"))
    if schema.get("properties") and isinstance(schema.get("additionalProperties"), dict):
        causes.append(Cause("FieldValueForbidden", "Forbidden: additionalProperties and "
                            "properties are mutual exclusive", f"{path}.additionalProperties"))
    if kind == "array" and not isinstance(schema.get("items"), dict):
        causes.append(Cause("FieldValueRequired",
                            "Required value: must be specified", f"{path}.items"))
    for key, sub in (schema.get("properties") or {}).items():
        causes += structural_errors(sub, f"{path}.properties[{key}]")
    if isinstance(schema.get("items"), dict):
        causes += structural_errors(schema["items"], f"{path}.items")
    if isinstance(schema.get("additionalProperties"), dict):
        causes += structural_errors(schema["additionalProperties"],
                                    f"{path}.additionalProperties")
    if "default" in schema:
        for cause in validate(copy.deepcopy(schema["default"]), schema, "", root=False):
            causes.append(Cause(cause.reason, cause.message, f"{path}.default{cause.field and '.'}"
                                f"{cause.field}"))
    return causes
