"""CRD ``x-kubernetes-validations`` rules, evaluated with cel-python.

Rules see ``self`` (the value at the schema node) and, for transition rules, ``oldSelf`` (the
correlated value of the object before the update; such rules are skipped on create, as in the
real server). ``message``, ``messageExpression``, ``fieldPath`` and ``reason`` are honoured.
Not emulated: the cost budget, CEL optional types (``self.?x``) and the Kubernetes library
functions other than those in :data:`EXTRA_FUNCTIONS`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import celpy
from celpy import celtypes

from .errors import Cause, format_value
from .schema import Schema, child_path

_REASONS = {
    "FieldValueInvalid": "Invalid value: {value}: {message}",
    "FieldValueForbidden": "Forbidden: {message}",
    "FieldValueRequired": "Required value: {message}",
    "FieldValueDuplicate": "Duplicate value: {value}: {message}",
}


EXTRA_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "lowerAscii": lambda s: celtypes.StringType(s.lower()),
    "upperAscii": lambda s: celtypes.StringType(s.upper()),
    "trim": lambda s: celtypes.StringType(s.strip()),
    "replace": lambda s, old, new: celtypes.StringType(s.replace(old, new)),
    "split": lambda s, sep: celtypes.ListType([celtypes.StringType(p) for p in s.split(sep)]),
    "join": lambda items, sep="": celtypes.StringType(str(sep).join(str(i) for i in items)),
    "indexOf": lambda s, sub: celtypes.IntType(s.find(sub)),
    "lastIndexOf": lambda s, sub: celtypes.IntType(s.rfind(sub)),
    "isSorted": lambda items: celtypes.BoolType(list(items) == sorted(items)),
    "sum": lambda items: functools.reduce(lambda a, b: a + b, list(items),
                                          celtypes.IntType(0)),
    "min": lambda items: min(list(items)),
    "max": lambda items: max(list(items)),
}

_ENV = celpy.Environment()


class RuleError(ValueError):
    """A rule that does not compile."""


@functools.lru_cache(maxsize=1024)
def compile_rule(expression: str) -> Any:
    """Compile a CEL expression once; :class:`RuleError` if it does not parse."""
    try:
        return _ENV.program(_ENV.compile(expression), functions=EXTRA_FUNCTIONS)
    except celpy.CELParseError as exc:
        raise RuleError(str(exc).splitlines()[0]) from exc


def uses_old_self(rule: str) -> bool:
    """Whether a rule is a transition rule (mentions ``oldSelf``)."""
    return re.search(r"\boldSelf\b", rule) is not None


def rule_compile_errors(schema: Any, path: str) -> list[Cause]:
    """Every rule of a schema tree that does not compile, by schema path."""
    if not isinstance(schema, dict):
        return []
    causes = []
    for index, rule in enumerate(schema.get("x-kubernetes-validations") or []):
        for key in ("rule", "messageExpression"):
            if key in rule:
                try:
                    compile_rule(rule[key])
                except RuleError as exc:
                    causes.append(Cause("FieldValueInvalid", f"Invalid value: "
                                        f"{format_value(rule[key])}: compilation failed: {exc}",
                                        f"{path}.x-kubernetes-validations[{index}].{key}"))
    for key, sub in (schema.get("properties") or {}).items():
        causes += rule_compile_errors(sub, f"{path}.properties[{key}]")
    for key in ("items", "additionalProperties"):
        causes += rule_compile_errors(schema.get(key), f"{path}.{key}")
    return causes


_RESULTS: dict[tuple[str, str, str], Any] = {}
_RESULTS_SIZE = 4096


def _evaluate(expression: str, new: Any, old: Any) -> Any:
    """Evaluate an expression on ``self`` (and ``oldSelf``), memoized: CEL is pure and objects
    of one type share most values, while cel-python is slow (the key is exact: ``repr``)."""
    if not uses_old_self(expression):
        old = None
    key = (expression, repr(new), repr(old))
    if key not in _RESULTS:
        activation = {"self": celpy.json_to_cel(new)}
        if old is not None:
            activation["oldSelf"] = celpy.json_to_cel(old)
        result = compile_rule(expression).evaluate(activation)
        if len(_RESULTS) >= _RESULTS_SIZE:
            _RESULTS.clear()
        _RESULTS[key] = result
    return _RESULTS[key]


def _field_path(path: str, field_path: str) -> str:
    """Append a rule's ``fieldPath`` (``.a.b`` or ``.m['k']``) to a field path."""
    suffix = re.sub(r"\['([^']*)'\]", r"[\1]", field_path)
    return (path + suffix) if path else suffix.lstrip(".")


def _value_at(value: Any, field_path: str) -> Any:
    for part in re.findall(r"\.([A-Za-z0-9_]+)|\['([^']*)'\]", field_path):
        key = part[0] or part[1]
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _check_rule(rule: dict[str, Any], new: Any, old: Any, path: str, kind: str) -> Cause | None:
    expression = rule.get("rule", "")
    if uses_old_self(expression) and old is None and not rule.get("optionalOldSelf"):
        return None
    where = _field_path(path, rule["fieldPath"]) if rule.get("fieldPath") else path
    shown = _value_at(new, rule["fieldPath"]) if rule.get("fieldPath") else new
    value = format_value(shown) if not isinstance(shown, (dict, list)) else f'"{kind}"'
    try:
        result = _evaluate(expression, new, old)
    except celpy.CELEvalError as exc:
        return Cause("FieldValueInvalid", f"Invalid value: {value}: rule evaluation error: "
                     f"{exc.args[0] if exc.args else exc}", where)
    if isinstance(result, celpy.CELEvalError):
        return Cause("FieldValueInvalid", f"Invalid value: {value}: rule evaluation error: "
                     f"{result.args[0] if result.args else result}", where)
    if result is True or result == celtypes.BoolType(True):
        return None
    message = rule.get("message") or f"failed rule: {expression}"
    if rule.get("messageExpression"):
        try:
            text = _evaluate(rule["messageExpression"], new, old)
            if isinstance(text, str) and text.strip():
                message = str(text)
        except celpy.CELEvalError:
            pass
    reason = rule.get("reason") or "FieldValueInvalid"
    template = _REASONS.get(reason, _REASONS["FieldValueInvalid"])
    return Cause(reason, template.format(value=value, message=message), where)


def validate_rules(new: Any, old: Any, schema: Schema | None, path: str = "") -> list[Cause]:
    """Evaluate every ``x-kubernetes-validations`` rule on ``new`` (``old`` for oldSelf)."""
    if not isinstance(schema, dict) or new is None:
        return []
    causes = []
    kind = schema.get("type") or "object"
    for rule in schema.get("x-kubernetes-validations") or []:
        cause = _check_rule(rule, new, old, path, kind)
        if cause:
            causes.append(cause)
    if isinstance(new, dict):
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        old_map = old if isinstance(old, dict) else {}
        for key, item in new.items():
            if key in props:
                causes += validate_rules(item, old_map.get(key), props[key], child_path(path, key))
            elif isinstance(additional, dict):
                causes += validate_rules(item, old_map.get(key), additional, f"{path}[{key}]")
    elif isinstance(new, list) and isinstance(schema.get("items"), dict):
        items = schema["items"]
        keys = schema.get("x-kubernetes-list-map-keys") or []
        old_items = {}
        if schema.get("x-kubernetes-list-type") == "map" and isinstance(old, list):
            old_items = {tuple(o.get(k) for k in keys): o for o in old if isinstance(o, dict)}
        for index, item in enumerate(new):
            previous = old_items.get(tuple(item.get(k) for k in keys)) \
                if old_items and isinstance(item, dict) else None
            causes += validate_rules(item, previous, items, f"{path}[{index}]")
    return causes
