"""Label and field selectors, parsed as the real server parses them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

_LABEL_REQ = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=|>|<|\s+in\b|\s+notin\b)\s*(?P<value>\(.*\)|[^,()]*?))?\s*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

Matcher = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Requirement:
    """One requirement of a label selector."""

    key: str
    op: str  # = != in notin exists !exists > <
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether a label set satisfies this requirement."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        try:
            number, bound = int(value or ""), int(self.values[0])
        except ValueError:
            return False
        return number > bound if self.op == ">" else number < bound


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses (blank parts kept)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse ``a=b,c!=d,e in (f,g),h notin (i),j,!k``; 400 BadRequest if malformed (as the real parser: no
    empty requirement around a comma; ``in ()`` is ``in ("")``)."""
    if not (text or "").strip():
        return []
    requirements = []
    parts = _split_top_level(text)
    for index, part in enumerate(parts):
        if not part.strip():
            raise bad_request("found ',', expected: !, identifier, or 'end of string'" if index == 0 else
                              f"found '{',' if index < len(parts) - 1 else ''}', expected: identifier after ','")
        m = _LABEL_REQ.match(part)
        if not m or (m.group("neg") and m.group("op")):
            raise bad_request(f"unable to parse requirement: {part!r}")
        key, op, raw = m.group("key"), (m.group("op") or "").strip(), m.group("value")
        if not op:
            requirements.append(Requirement(key, "!exists" if m.group("neg") else "exists"))
            continue
        if op in ("in", "notin"):
            if not (raw.startswith("(") and raw.endswith(")")):
                raise bad_request(f"unable to parse requirement: {part!r}: expected '('")
            values = tuple(v.strip() for v in raw[1:-1].split(","))
        else:
            values = (raw.strip(),)
        if op in (">", "<") and not re.fullmatch(r"-?\d+", values[0]):
            raise bad_request(f"unable to parse requirement: {part!r}: for 'Gt', 'Lt' operators, "
                              "the value must be an integer")
        for value in values:
            if not _LABEL_VALUE.match(value):
                raise bad_request(f"unable to parse requirement: invalid label value: {value!r}")
        requirements.append(Requirement(key, "=" if op == "==" else op, values))
    return requirements


def label_matcher(text: str | None) -> Matcher:
    """A predicate on objects for a label selector string (None matches everything)."""
    requirements = parse_label_selector(text or "")

    def matches(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in requirements)

    return matches


def selector_to_string(selector: dict[str, Any] | None) -> str:
    """A ``LabelSelector`` object (matchLabels/matchExpressions) as a selector string, as Go's
    ``LabelSelectorAsSelector(...).String()`` writes it: the requirements sorted by key, set values sorted."""
    selector = selector or {}
    parts = [(k, f"{k}={v}") for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin"}
    for expr in selector.get("matchExpressions") or []:
        op, key = expr.get("operator"), expr.get("key")
        if op in ops:
            parts.append((key, f"{key} {ops[op]} ({','.join(sorted(map(str, expr.get('values') or [])))})"))
        elif op == "Exists":
            parts.append((key, key))
        elif op == "DoesNotExist":
            parts.append((key, f"!{key}"))
    return ",".join(text for _, text in sorted(parts, key=lambda part: str(part[0])))


def field_value(obj: dict[str, Any], path: str) -> str:
    """The string value of a dotted field (``involvedObject.name``); '' when absent."""
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return str(node).lower()
    return str(node)


def field_matcher(text: str | None, allowed: tuple[str, ...]) -> Matcher:
    """A predicate for a field selector; 400 BadRequest for fields the type does not support."""
    terms: list[tuple[str, bool, str]] = []
    for part in filter(str.strip, _split_top_level(text or "")):
        m = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        name, op, value = m.groups()
        if name not in allowed:
            raise bad_request(f'field label not supported: {name}')
        terms.append((name, op == "!=", value))

    def matches(obj: dict[str, Any]) -> bool:
        return all((field_value(obj, name) == value) != negate for name, negate, value in terms)

    return matches
