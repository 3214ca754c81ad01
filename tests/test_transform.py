"""What the informer keeps of an object: ``watcher.transform.strip`` removes exactly two things."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from watcher import transform

LAST = "kubectl.kubernetes.io/last-applied-configuration"


def cluster_route() -> dict[str, Any]:
    return {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {
            "name": "web",
            "annotations": {LAST: '{"kind":"Route"}\n', "team": "a"},
            "managedFields": [{"manager": "oc", "operation": "Update", "fieldsV1": {"f:spec": {}}}],
            "labels": {"app": "web"},
        },
        "spec": {"host": "web.example.test", "note": "managedFields"},
    }


def test_strip_removes_managed_fields_and_the_last_applied_annotation_and_nothing_else() -> None:
    obj = cluster_route()
    expected = copy.deepcopy(obj)
    del expected["metadata"]["managedFields"]
    del expected["metadata"]["annotations"][LAST]
    assert transform.strip(obj) is True
    assert obj == expected
    assert list(obj["metadata"]) == ["name", "annotations", "labels"]  # order kept
    assert transform.strip(obj) is False  # nothing left to remove


@pytest.mark.parametrize(
    "obj",
    [
        {"metadata": {"name": "x"}},
        {"metadata": {"annotations": {"team": "a"}}},
        {"metadata": None},
        {"metadata": {"annotations": None}},
        {"kind": "Status"},
    ],
)
def test_strip_leaves_objects_without_them_alone(obj: dict[str, Any]) -> None:
    before = copy.deepcopy(obj)
    assert transform.strip(obj) is False and obj == before


def test_either_one_alone_counts_and_an_emptied_annotations_mapping_stays() -> None:
    only_annotation = {"metadata": {"annotations": {LAST: "{}"}}}
    assert transform.strip(only_annotation) is True and only_annotation == {"metadata": {"annotations": {}}}
    null_fields = {"metadata": {"managedFields": None}}
    assert transform.strip(null_fields) is True and null_fields == {"metadata": {}}


def test_the_byte_markers_are_how_the_keys_appear_in_json() -> None:
    line = orjson.dumps({"type": "ADDED", "object": cluster_route()})
    assert transform.MANAGED_FIELDS_KEY in line and transform.LAST_APPLIED_KEY in line
    stripped = cluster_route()
    transform.strip(stripped)
    data = orjson.dumps(stripped)
    assert transform.LAST_APPLIED_KEY not in data
    # The same bytes as a string value are a false hit of the cheap test: strip then finds nothing.
    assert transform.MANAGED_FIELDS_KEY in data and transform.strip(orjson.loads(data)) is False
