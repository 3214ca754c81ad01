"""Dotted paths into a watch event (``object.involvedObject.name``), shared by matches and templates.

A watch event has exactly two keys, ``type`` and ``object``, so every path starts with one of them;
anything else names nothing and is refused when the rules load, not when the first event arrives.
Segments are map keys or list indexes; ``*`` (in matches only) stands for every element of a list or
every value of a map.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Optional

ROOTS = ("type", "object")
STAR = "*"
# Kubernetes map keys (labels, annotations) may hold '/', '-' and '_'; dots separate segments, so a
# label key with a dot in it (``app.kubernetes.io/name``) cannot be named: said in the README.
_SEGMENT = re.compile(r"^[A-Za-z0-9_/-]+$")

# What a core v1 Event carries (k8s.io/api/core/v1 Event, ObjectReference, EventSource, EventSeries,
# ObjectMeta). ``None`` marks a leaf; ``ANY`` a map or list whose contents are free-form.
ANY: Any = object()
_REFERENCE = dict.fromkeys(("apiVersion", "fieldPath", "kind", "name", "namespace", "resourceVersion", "uid"))
_METADATA: dict[str, Any] = {
    **dict.fromkeys(
        (
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "generateName",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        )
    ),
    **dict.fromkeys(("labels", "annotations", "ownerReferences", "finalizers", "managedFields"), ANY),
}
EVENT_SCHEMA: Mapping[str, Any] = {
    "type": None,
    "object": {
        **dict.fromkeys(
            (
                "apiVersion",
                "kind",
                "reason",
                "message",
                "firstTimestamp",
                "lastTimestamp",
                "count",
                "type",
                "eventTime",
                "action",
                "reportingComponent",
                "reportingInstance",
            )
        ),
        "metadata": _METADATA,
        "involvedObject": _REFERENCE,
        "related": _REFERENCE,
        "source": dict.fromkeys(("component", "host")),
        "series": dict.fromkeys(("count", "lastObservedTime")),
    },
}


class PathError(ValueError):
    """A path that cannot name anything in a watch event; the message says why."""


def parse(text: str, *, allow_star: bool, schema: Optional[Mapping[str, Any]] = None) -> tuple[str, ...]:
    """Split and check ``text``; with ``schema``, also refuse fields the watched kind does not have."""
    if not isinstance(text, str) or not text:
        raise PathError("a path must be a non-empty string like object.reason")
    segments = tuple(text.split("."))
    for segment in segments:
        if segment == STAR:
            if not allow_star:
                raise PathError(f"'*' is allowed in match paths only, not in {text!r}")
        elif not _SEGMENT.match(segment):
            raise PathError(f"{text!r} has an empty or malformed segment {segment!r}")
    if segments[0] not in ROOTS:
        raise PathError(
            f"{text!r} names nothing: a path starts with 'type' or 'object' (the watch event's keys)"
        )
    if segments[0] == "type" and len(segments) > 1:
        raise PathError(f"{text!r} names nothing: 'type' is the event type string and has no fields")
    if schema is not None:
        _check_schema(text, segments, schema)
    return segments


def _check_schema(text: str, segments: tuple[str, ...], schema: Mapping[str, Any]) -> None:
    node: Any = schema
    for depth, segment in enumerate(segments):
        if node is ANY:
            return
        if node is None:
            raise PathError(f"{text!r} names nothing: {'.'.join(segments[:depth])} has no fields")
        if segment == STAR:
            raise PathError(f"{text!r}: '*' can only follow a list or a map such as metadata.labels")
        if segment not in node:
            where = ".".join(segments[:depth])
            raise PathError(
                f"{text!r} names nothing: {where} has no field {segment!r} (known: {', '.join(sorted(node))})"
            )
        node = node[segment]


def values(event: Any, segments: tuple[str, ...]) -> Iterator[Any]:
    """Every value ``segments`` reaches (several with ``*``, none when something is missing)."""
    if not segments:
        yield event
        return
    head, rest = segments[0], segments[1:]
    if head == STAR:
        children = event.values() if isinstance(event, Mapping) else event if isinstance(event, list) else ()
        for child in children:
            yield from values(child, rest)
        return
    if isinstance(event, Mapping):
        if head in event:
            yield from values(event[head], rest)
    elif isinstance(event, list) and head.isdigit() and int(head) < len(event):
        yield from values(event[int(head)], rest)


def first(event: Any, segments: tuple[str, ...]) -> Any:
    """The value a star-free path names, or None when any part of it is missing."""
    return next(values(event, segments), None)


def as_text(value: Any) -> str:
    """How a field looks in a template or to a pattern: JSON spelling for non-strings (``true``, ``3``)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
