"""Alert rules: which watch events become alerts, and how their summary and description read.

The rules file is checked completely when the plugin starts, and every problem is reported at once,
naming the file, the rule and what is wrong: a typo in a rule must stop the daemon at start-up rather
than silently never fire.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

import yaml

from watcher import errors

from . import paths

EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED")
DEFAULT_TYPES = "ADDED|MODIFIED"  # without ``type`` in ``match``, an object's deletion does not fire a rule
REQUIRED_KEYS = ("name", "match", "severity", "summary")
OPTIONAL_KEYS = ("description", "labels")
# Labels the plugin sets itself; a rule's own ``labels`` may not change them (they make the alert key).
RESERVED_LABELS = ("alertname", "severity", "namespace", "kind", "name")
MAX_ANNOTATION = 4096  # an Event message is short; this only stops a runaway template
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RuleError(ValueError):
    """One problem with one rule; collected and reported together by :func:`load`."""


# --- patterns ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """``path: pattern`` from a rule's ``match``: alternatives split by ``|``, ``*`` matches any text."""

    path: str
    segments: tuple[str, ...]
    pattern: str
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, path: str, pattern: Any, schema: Optional[Mapping[str, Any]] = None) -> Condition:
        try:
            segments = paths.parse(path, allow_star=True, schema=schema)
        except paths.PathError as e:
            raise RuleError(f"match: {e}") from None
        if isinstance(pattern, (bool, int)):
            pattern = paths.as_text(pattern)  # YAML reads `count: 1` as a number; compare its text
        if not isinstance(pattern, str):
            raise RuleError(f"match: {path!r} needs a string pattern, not {_yaml_type(pattern)}")
        alternatives = pattern.split("|")
        if any(not alternative for alternative in alternatives):
            raise RuleError(f"match: {path!r} has an empty alternative in {pattern!r}")
        if segments == ("type",):
            unknown = [a for a in alternatives if "*" not in a and a not in EVENT_TYPES]
            if unknown:
                raise RuleError(f"match: type {', '.join(unknown)} is not one of {', '.join(EVENT_TYPES)}")
        regex = "|".join(
            "".join(".*" if piece == "*" else re.escape(piece) for piece in re.split(r"(\*)", alternative))
            for alternative in alternatives
        )
        return cls(path, segments, pattern, re.compile(f"(?:{regex})", re.DOTALL))

    def accepts(self, text: str) -> bool:
        return self.regex.fullmatch(text) is not None

    def holds(self, event: Mapping[str, Any]) -> bool:
        """True when any value the path reaches matches; a missing field never matches."""
        return any(
            value is not None and self.accepts(paths.as_text(value))
            for value in paths.values(event, self.segments)
        )


# --- templates --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """Text with ``{dotted.path}`` fields of the event; ``{{`` and ``}}`` are literal braces."""

    text: str
    parts: tuple[Union[str, tuple[str, ...]], ...]

    @classmethod
    def parse(cls, text: Any, schema: Optional[Mapping[str, Any]] = None) -> Template:
        if not isinstance(text, str):
            raise RuleError(f"needs a string, not {_yaml_type(text)}")
        parts: list[Union[str, tuple[str, ...]]] = []
        literal: list[str] = []
        i = 0
        while i < len(text):
            char = text[i]
            if text.startswith("{{", i) or text.startswith("}}", i):
                literal.append(char)
                i += 2
            elif char == "}":
                raise RuleError(f"a lone '}}' at position {i} in {text!r} (write '}}}}' for a literal brace)")
            elif char == "{":
                end = text.find("}", i)
                field = text[i + 1 : end] if end >= 0 else ""
                if end < 0 or "{" in field:
                    raise RuleError(f"the '{{' at position {i} in {text!r} is not closed")
                if not field:
                    raise RuleError(f"an empty placeholder '{{}}' in {text!r} names nothing")
                if ":" in field or "!" in field:
                    raise RuleError(
                        f"'{{{field}}}' in {text!r}: format specs and conversions are not supported"
                    )
                try:
                    segments = paths.parse(field, allow_star=False, schema=schema)
                except paths.PathError as e:
                    raise RuleError(str(e)) from None
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append(segments)
                i = end + 1
            else:
                literal.append(char)
                i += 1
        if literal:
            parts.append("".join(literal))
        return cls(text, tuple(parts))

    def render(self, event: Mapping[str, Any]) -> str:
        """Missing fields render as empty text: events differ in what they fill in."""
        text = "".join(
            part if isinstance(part, str) else paths.as_text(paths.first(event, part)) for part in self.parts
        )
        return text if len(text) <= MAX_ANNOTATION else text[: MAX_ANNOTATION - 1] + "…"


# --- rules ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    severity: str
    event_types: Condition
    conditions: tuple[Condition, ...]
    summary: Template
    description: Template
    labels: tuple[tuple[str, str], ...] = ()

    def matches(self, event: Mapping[str, Any]) -> bool:
        return self.event_types.holds(event) and self.matches_object(event)

    def matches_object(self, event: Mapping[str, Any]) -> bool:
        """The match without its ``type``: does the object (still) have the alerting condition?"""
        return all(condition.holds(event) for condition in self.conditions)

    def accepts_kind(self, kind: str) -> bool:
        """False when ``object.kind`` in the match rules out ``kind``: the rule can never fire then."""
        return all(c.accepts(kind) for c in self.conditions if c.segments == ("object", "kind"))

    def annotations(self, event: Mapping[str, Any]) -> dict[str, str]:
        rendered = {"summary": self.summary.render(event), "description": self.description.render(event)}
        return {key: value for key, value in rendered.items() if value}


def load_file(
    path: str, *, kind: Optional[str] = None, schema: Optional[Mapping[str, Any]] = None
) -> list[Rule]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise errors.PluginError(f"rules_file {path}: cannot read it: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise errors.PluginError(f"rules_file {path}: is not UTF-8 text") from None
    return load(text, path, kind=kind, schema=schema)


def load(
    text: str, source: str, *, kind: Optional[str] = None, schema: Optional[Mapping[str, Any]] = None
) -> list[Rule]:
    """Parse and check a rules document; ``PluginError`` lists every problem found.

    ``schema`` (the fields of the watched kind, when known) is applied only to rules that can match
    ``kind``, so one file may carry rules for Events and for Pods side by side.
    """
    try:
        document = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise errors.PluginError(f"rules_file {source}: bad YAML{where}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise errors.PluginError(f"rules_file {source}: bad YAML: {e}") from None
    if not isinstance(document, Mapping) or set(document) != {"rules"}:
        found = ", ".join(map(str, document)) if isinstance(document, Mapping) else _yaml_type(document)
        raise errors.PluginError(
            f"rules_file {source}: must be a mapping with the one key 'rules' (found {found})"
        )
    items = document["rules"]
    if not isinstance(items, list) or not items:
        raise errors.PluginError(f"rules_file {source}: 'rules' must be a non-empty list of rules")
    problems: list[str] = []
    rules: list[Rule] = []
    seen: set[str] = set()
    for number, item in enumerate(items, 1):
        label = f"rule #{number}"
        name = item.get("name") if isinstance(item, Mapping) else None
        if isinstance(name, str):
            label = f"rule {name!r} (#{number})"
            if name in seen:
                problems.append(f"rules_file {source}: {label}: the name is used by an earlier rule")
            seen.add(name)
        try:
            rules.append(_parse_rule(item, kind, schema))
        except RuleError as e:
            problems.append(f"rules_file {source}: {label}: {e}")
    if problems:
        raise errors.PluginError([(errors.EXIT_PLUGIN, problem) for problem in problems])
    return rules


def _parse_rule(item: Any, kind: Optional[str], schema: Optional[Mapping[str, Any]]) -> Rule:
    if not isinstance(item, Mapping):
        raise RuleError(f"must be a mapping, not {_yaml_type(item)}")
    allowed = REQUIRED_KEYS + OPTIONAL_KEYS
    unknown = sorted(str(key) for key in item if key not in allowed)
    if unknown:
        raise RuleError(f"unknown key {', '.join(map(repr, unknown))} (allowed: {', '.join(allowed)})")
    missing = [key for key in REQUIRED_KEYS if key not in item]
    if missing:
        raise RuleError(f"missing {', '.join(missing)}")
    name, severity, match = item["name"], item["severity"], item["match"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise RuleError("name must be letters, digits and _ . : - (it becomes the alertname label)")
    if not isinstance(severity, str) or not _NAME.match(severity):
        raise RuleError("severity must be a word such as critical, warning or info")
    if not isinstance(match, Mapping) or not match:
        raise RuleError("match must be a non-empty mapping of dotted path: pattern")
    # Parse without the schema first: whether the schema applies depends on the rule's object.kind.
    draft = _build(name, severity, item, match, None)
    if schema is not None and (kind is None or draft.accepts_kind(kind)):
        return _build(name, severity, item, match, schema)
    return draft


def _build(name: str, severity: str, item: Mapping[str, Any], match: Mapping[str, Any], schema: Any) -> Rule:
    conditions = [Condition.parse(str(path), pattern, schema) for path, pattern in match.items()]
    event_types = next((c for c in conditions if c.segments == ("type",)), None)
    if event_types is None:
        event_types = Condition.parse("type", DEFAULT_TYPES)
    templates = {}
    for key in ("summary", "description"):
        try:
            templates[key] = Template.parse(item.get(key, ""), schema)
        except RuleError as e:
            raise RuleError(f"{key}: {e}") from None
    if not templates["summary"].text.strip():
        raise RuleError("summary: must not be empty")
    return Rule(
        name=name,
        severity=severity,
        event_types=event_types,
        conditions=tuple(c for c in conditions if c.segments != ("type",)),
        summary=templates["summary"],
        description=templates["description"],
        labels=_labels(item.get("labels", {})),
    )


def _labels(raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, Mapping):
        raise RuleError(f"labels must be a mapping of name: value, not {_yaml_type(raw)}")
    labels = []
    for key, value in raw.items():
        if not isinstance(key, str) or not _LABEL_NAME.match(key):
            raise RuleError(f"labels: {key!r} is not a valid label name ([A-Za-z_][A-Za-z0-9_]*)")
        if key in RESERVED_LABELS:
            raise RuleError(f"labels: {key!r} is set by the plugin and cannot be overridden")
        if not isinstance(value, str) or not value:
            raise RuleError(f"labels: {key!r} needs a non-empty string value")
        labels.append((key, value))
    return tuple(sorted(labels))


def _yaml_type(value: Any) -> str:
    names = {type(None): "nothing", dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), f"a {type(value).__name__}")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, (str, int, float, bool)) and key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        if isinstance(key, (str, int, float, bool)):
            seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
