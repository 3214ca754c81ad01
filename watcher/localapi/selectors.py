"""Label and field selectors, parsed as the real API server parses them.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``, ``a notin (x,y)``,
comma-separated (all must hold). Field selectors: ``f=v``, ``f==v``, ``f!=v`` on ``metadata.name``,
``metadata.namespace`` and the labels each resource registers; anything else is a 400 like the real one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from watcher.localapi import status
from watcher.localapi.resources import ResourceType

Predicate = Callable[[Mapping[str, Any]], bool]

_SET_TERM = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?$")


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside ``( )``."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
    terms.append("".join(current))
    return [t.strip() for t in terms if t.strip()]


def _bad(term: str) -> Exception:
    return status.bad_request(f"unable to parse requirement: invalid label selector term {term!r}")


def _check_key(key: str, term: str) -> str:
    if not _KEY.match(key):
        raise _bad(term)
    return key


def _check_value(value: str, term: str) -> str:
    if not _VALUE.match(value) or len(value) > 63:
        raise _bad(term)
    return value


def _label_term(term: str) -> Callable[[Mapping[str, str]], bool]:
    match = _SET_TERM.match(term)
    if match:
        if match.group(1):
            raise _bad(term)
        key = _check_key(match.group(2), term)
        values = frozenset(_check_value(v.strip(), term) for v in match.group(4).split(","))
        if match.group(3) == "in":
            return lambda labels: key in labels and labels[key] in values
        return lambda labels: key not in labels or labels[key] not in values
    for op in ("!=", "==", "="):
        if op in term:
            key, _, value = term.partition(op)
            key, value = _check_key(key.strip(), term), _check_value(value.strip(), term)
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: key in labels and labels[key] == value
    if term.startswith("!"):
        key = _check_key(term[1:].strip(), term)
        return lambda labels: key not in labels
    key = _check_key(term, term)
    return lambda labels: key in labels


def label_selector(text: str) -> Predicate:
    """A predicate over whole objects; raises a 400 APIError for a selector the server would reject."""
    terms = [_label_term(t) for t in _split_terms(text)]

    def matches(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(term(labels) for term in terms)

    return matches


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_selector(text: str, rtype: ResourceType) -> Predicate:
    allowed = {"metadata.name", "metadata.namespace", *rtype.fields}
    checks: list[tuple[str, bool, str]] = []
    for term in (t.strip() for t in text.split(",")):
        if not term:
            continue
        for op in ("!=", "==", "="):
            if op in term:
                field, _, value = term.partition(op)
                field = field.strip()
                break
        else:
            raise status.bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        if field not in allowed:
            raise status.bad_request(f"field label not supported: {field}")
        checks.append((field, op != "!=", value.strip()))

    def matches(obj: Mapping[str, Any]) -> bool:
        return all((_field_value(obj, field) == value) == equal for field, equal, value in checks)

    return matches


def combined(label: str, field: str, rtype: ResourceType) -> Predicate | None:
    """None when there is nothing to filter on, so callers can take the fast path."""
    predicates = []
    if label.strip():
        predicates.append(label_selector(label))
    if field.strip():
        predicates.append(field_selector(field, rtype))
    if not predicates:
        return None
    if len(predicates) == 1:
        return predicates[0]
    first, second = predicates
    return lambda obj: first(obj) and second(obj)
