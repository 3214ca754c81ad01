"""The local Kubernetes API server, over real HTTPS with ``requests``, as the watcher will talk to it.

Every request passes ``verify=api.ca_file`` explicitly: REQUESTS_CA_BUNDLE in the environment would
otherwise override a Session's ``verify``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Optional

import certifi
import orjson
import pytest
import requests

from tests.harness import SECRETS, wait_until
from tests.wire import BUSY_EVENTS, Wire, load_backlog, read_wire
from watcher import errors
from watcher.localapi import Fault, LocalAPI, sample_route
from watcher.localapi import watch as watch_module
from watcher.transform import LAST_APPLIED

ROUTES = "/apis/route.openshift.io/v1/namespaces/demo/routes"
ALL_ROUTES = "/apis/route.openshift.io/v1/routes"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/demo/leases"


def _start(**kwargs: Any) -> LocalAPI:
    api = LocalAPI(**{"bookmark_interval": 0.3, **kwargs}).start()
    SECRETS.add(api.token)
    return api


@pytest.fixture
def api() -> Iterator[LocalAPI]:
    server = _start()
    try:
        yield server
    finally:
        server.stop()


def call(
    api: LocalAPI,
    method: str,
    path: str,
    *,
    token: Optional[str] = "",
    params: Optional[dict[str, str]] = None,
    body: Any = None,
    content_type: str = "application/json",
    stream: bool = False,
    read_timeout: float = 15.0,
) -> requests.Response:
    """One request with the server's CA; ``token=""`` means the current token, None means no header."""
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token or api.token}"
    data = None
    if body is not None:
        data = orjson.dumps(body)
        headers["Content-Type"] = content_type
    return requests.request(
        method,
        api.url + path,
        params=params,
        data=data,
        headers=headers,
        verify=api.ca_file,
        stream=stream,
        timeout=(10, read_timeout),
    )


def watch(api: LocalAPI, path: str = ROUTES, read_timeout: float = 15.0, **params: str) -> requests.Response:
    response = call(
        api, "GET", path, params={"watch": "true", **params}, stream=True, read_timeout=read_timeout
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Transfer-Encoding"] == "chunked"
    return response


def read_raw(response: requests.Response) -> tuple[bytes, Optional[Exception]]:
    """Everything the stream delivered, and the error that ended it (None for a clean end)."""
    received = b""
    try:
        for data in response.iter_content(chunk_size=None):
            received += data
    except requests.RequestException as exc:
        return received, exc
    return received, None


def events(
    response: requests.Response, count: Optional[int] = None, out: Optional[list[dict[str, Any]]] = None
) -> list[dict[str, Any]]:
    """Parse whole lines into ``out`` until the stream ends cleanly, or until ``count`` events."""
    out = [] if out is None else out
    buffer = b""
    for data in response.iter_content(chunk_size=None):
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            out.append(orjson.loads(line))
            if count is not None and len(out) >= count:
                response.close()
                return out
    assert buffer == b"", "the stream ended inside a line"
    return out


def summary(items: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (e["type"], e["object"]["metadata"].get("name", ""), e["object"]["metadata"]["resourceVersion"])
        for e in items
    ]


def make(
    api: LocalAPI, name: str, namespace: str = "demo", labels: Optional[dict[str, str]] = None
) -> dict[str, Any]:
    obj = sample_route(name, namespace, f"{name}.apps.example.test")
    obj["metadata"]["labels"] = dict(labels or {})
    return api.create("routes", obj)


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


# --- auth ---------------------------------------------------------------------------------------------


def test_every_request_needs_the_current_bearer_token(api: LocalAPI) -> None:
    for token in (None, "wrong"):
        response = call(api, "GET", "/api", token=token)
        assert response.status_code == 401
        assert response.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }
    assert call(api, "GET", "/api").status_code == 200
    old = api.token
    new = api.rotate_token()
    SECRETS.add(new)
    assert new != old and api.token == new
    assert call(api, "GET", "/api", token=old).status_code == 401
    assert call(api, "GET", "/api", token=new).status_code == 200
    assert api.rotate_token("chosen-token") == "chosen-token"
    SECRETS.add("chosen-token")
    assert call(api, "GET", "/api", token="chosen-token").status_code == 200
    seen = api.requests_seen()
    assert [r.auth_ok for r in seen] == [False, False, True, False, True, True]
    assert [r.status for r in seen] == [401, 401, 200, 401, 200, 200]
    assert api.stats.unauthorized == 3
    for record in seen:
        assert all(old not in v and new not in v for v in record.headers.values())
        assert record.headers.get("Authorization") in (None, "<redacted>")


def test_the_server_certificate_verifies_only_against_its_own_ca(api: LocalAPI) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(api.url + "/api", verify=certifi.where(), timeout=10)
    assert api.url.startswith("https://127.0.0.1:") and api.host_port == api.url[len("https://") :]
    assert (
        requests.get(
            api.url + "/version",
            headers={"Authorization": f"Bearer {api.token}"},
            verify=api.ca_file,
            timeout=10,
        ).json()["major"]
        == "1"
    )


def test_stop_removes_the_certificate_directory() -> None:
    import os

    server = _start()
    ca_file = server.ca_file
    assert os.path.exists(ca_file)
    server.stop()
    assert not os.path.exists(ca_file)
    server.stop()  # idempotent


# --- discovery ----------------------------------------------------------------------------------------


def test_discovery_documents_match_the_real_shapes(api: LocalAPI) -> None:
    versions = call(api, "GET", "/api").json()
    assert versions["kind"] == "APIVersions" and versions["versions"] == ["v1"]
    core = call(api, "GET", "/api/v1").json()
    assert core["kind"] == "APIResourceList" and core["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in core["resources"]}
    assert {"namespaces", "pods", "services", "events", "configmaps", "secrets", "endpoints"} <= set(by_name)
    assert by_name["namespaces"]["namespaced"] is False
    assert by_name["pods"] == {
        "name": "pods",
        "singularName": "pod",
        "namespaced": True,
        "kind": "Pod",
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        "shortNames": ["po"],
    }
    assert by_name["pods/status"]["verbs"] == ["get", "patch", "update"]
    groups = call(api, "GET", "/apis").json()
    assert groups["kind"] == "APIGroupList"
    route_group = next(g for g in groups["groups"] if g["name"] == "route.openshift.io")
    assert route_group["preferredVersion"] == {"groupVersion": "route.openshift.io/v1", "version": "v1"}
    assert {g["name"] for g in groups["groups"]} == {"route.openshift.io", "coordination.k8s.io"}
    routes = call(api, "GET", "/apis/route.openshift.io/v1").json()
    route = next(r for r in routes["resources"] if r["name"] == "routes")
    assert route["kind"] == "Route" and route["namespaced"] is True and "watch" in route["verbs"]
    leases = call(api, "GET", "/apis/coordination.k8s.io/v1").json()
    assert [r["name"] for r in leases["resources"]] == ["leases"]
    assert call(api, "GET", "/apis/route.openshift.io").json()["kind"] == "APIGroup"


@pytest.mark.parametrize(
    "path",
    [
        "/apis/nothing.example.com/v1",
        "/apis/route.openshift.io/v1/namespaces/demo/widgets",
        "/api/v2",
        "/nope",
        "/api/v1/namespaces/demo/namespaces",
        "/api/v1/pods/lonely",
    ],
)
def test_unknown_groups_and_resources_answer_404_status(api: LocalAPI, path: str) -> None:
    response = call(api, "GET", path)
    assert response.status_code == 404
    body = response.json()
    assert (body["kind"], body["status"], body["reason"], body["code"]) == (
        "Status",
        "Failure",
        "NotFound",
        404,
    )


# --- single objects -----------------------------------------------------------------------------------


def test_python_create_sets_metadata_and_rejects_duplicates(api: LocalAPI) -> None:
    before = api.resource_version
    created = make(api, "web")
    meta = created["metadata"]
    assert created["kind"] == "Route" and created["apiVersion"] == "route.openshift.io/v1"
    assert rv(created) == before + 1 == api.resource_version
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["generation"] == 1
    with pytest.raises(errors.Conflict) as info:
        make(api, "web")
    assert (
        info.value.reason == "AlreadyExists"
        and str(info.value) == 'routes.route.openshift.io "web" already exists'
    )
    with pytest.raises(errors.NotFound):
        api.get("routes", "demo", "missing")
    assert (
        api.create("configmaps", {"metadata": {"name": "c"}, "data": {}})["metadata"]["namespace"]
        == "default"
    )
    namespace = api.create("namespaces", {"metadata": {"name": "demo", "namespace": "ignored"}})
    assert "namespace" not in namespace["metadata"] and namespace["kind"] == "Namespace"
    created["spec"]["host"] = "mutated"
    assert api.get("routes", "demo", "web")["spec"]["host"] == "web.apps.example.test", "callers get copies"


def test_http_object_lifecycle_post_get_put_delete(api: LocalAPI) -> None:
    route = sample_route("web", "demo", "web.apps.example.test")
    created = call(api, "POST", ROUTES, body=route)
    assert created.status_code == 201
    assert call(api, "POST", ROUTES, body=route).json()["reason"] == "AlreadyExists"
    wrong_ns = sample_route("x", "other", "x.example")
    assert call(api, "POST", ROUTES, body=wrong_ns).status_code == 400
    got = call(api, "GET", f"{ROUTES}/web").json()
    assert got == created.json()
    got["spec"]["host"] = "new.apps.example.test"
    updated = call(api, "PUT", f"{ROUTES}/web", body=got)
    assert updated.status_code == 200
    assert rv(updated.json()) > rv(got) and updated.json()["metadata"]["generation"] == 2
    stale = call(api, "PUT", f"{ROUTES}/web", body=got)
    assert stale.status_code == 409
    assert stale.json()["reason"] == "Conflict"
    assert stale.json()["message"].startswith(
        'Operation cannot be fulfilled on routes.route.openshift.io "web"'
    )
    deleted = call(api, "DELETE", f"{ROUTES}/web")
    assert deleted.status_code == 200 and deleted.json()["status"] == "Success"
    assert deleted.json()["details"]["uid"] == got["metadata"]["uid"]
    missing = call(api, "GET", f"{ROUTES}/web")
    assert missing.status_code == 404
    assert missing.json()["message"] == 'routes.route.openshift.io "web" not found'
    assert call(api, "DELETE", f"{ROUTES}/web").status_code == 404


def test_an_update_that_changes_nothing_gets_no_new_version_and_no_event(api: LocalAPI) -> None:
    created = make(api, "web")
    same = api.update("routes", created)
    assert rv(same) == rv(created) == api.resource_version
    patched = api.patch("routes", "demo", "web", {"spec": {"host": created["spec"]["host"]}})
    assert rv(patched) == rv(created)
    labelled = api.patch("routes", "demo", "web", {"metadata": {"labels": {"tier": "front"}}})
    assert rv(labelled) == rv(created) + 1 and labelled["metadata"]["generation"] == 1, "metadata is not spec"


def test_python_update_with_a_stale_version_conflicts(api: LocalAPI) -> None:
    created = make(api, "web")
    api.patch("routes", "demo", "web", {"spec": {"host": "b.example"}})
    created["spec"]["host"] = "c.example"
    with pytest.raises(errors.Conflict):
        api.update("routes", created)
    del created["metadata"]["resourceVersion"]
    assert api.update("routes", created)["spec"]["host"] == "c.example", "no resourceVersion: unconditional"


def test_merge_patch_over_http(api: LocalAPI) -> None:
    obj = sample_route("web", "demo", "web.apps.example.test")
    obj["metadata"]["annotations"] = {"keep": "1", "drop": "2"}
    api.create("routes", obj)
    response = call(
        api,
        "PATCH",
        f"{ROUTES}/web",
        body={"metadata": {"annotations": {"drop": None, "new": "3"}}, "spec": {"port": None}},
        content_type="application/merge-patch+json",
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["metadata"]["annotations"] == {"keep": "1", "new": "3"}
    assert "port" not in patched["spec"] and patched["spec"]["to"]["name"] == "web"
    strategic = call(
        api,
        "PATCH",
        f"{ROUTES}/web",
        body={"spec": {"host": "s.example"}},
        content_type="application/strategic-merge-patch+json",
    )
    assert strategic.json()["spec"]["host"] == "s.example"
    json_patch = call(
        api,
        "PATCH",
        f"{ROUTES}/web",
        body=[{"op": "replace", "path": "/spec/host", "value": "j.example"}],
        content_type="application/json-patch+json",
    )
    assert json_patch.json()["spec"]["host"] == "j.example"
    unsupported = call(api, "PATCH", f"{ROUTES}/web", body={"spec": {}}, content_type="application/json")
    assert unsupported.status_code == 415 and unsupported.json()["reason"] == "UnsupportedMediaType"
    stale = call(
        api,
        "PATCH",
        f"{ROUTES}/web",
        body={"metadata": {"resourceVersion": "1"}, "spec": {"host": "z"}},
        content_type="application/merge-patch+json",
    )
    assert stale.status_code == 409, "a resourceVersion in a patch is a precondition"
    status_only = call(
        api,
        "PATCH",
        f"{ROUTES}/web/status",
        body={"status": {"ingress": []}, "spec": {"host": "no"}},
        content_type="application/merge-patch+json",
    )
    assert (
        status_only.json()["status"] == {"ingress": []} and status_only.json()["spec"]["host"] == "j.example"
    )


def test_leases_support_leader_election_optimistic_concurrency(api: LocalAPI) -> None:
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "event-watcher"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    }
    created = call(api, "POST", LEASES, body=lease)
    assert created.status_code == 201, created.text
    duplicate = call(api, "POST", LEASES, body=lease)
    assert duplicate.status_code == 409 and duplicate.json()["reason"] == "AlreadyExists"
    current = call(api, "GET", f"{LEASES}/event-watcher").json()
    assert current["metadata"]["namespace"] == "demo" and current["kind"] == "Lease"
    mine = dict(current, spec={**current["spec"], "holderIdentity": "b"})
    theirs = dict(current, spec={**current["spec"], "holderIdentity": "c"})
    assert call(api, "PUT", f"{LEASES}/event-watcher", body=mine).status_code == 200
    lost = call(api, "PUT", f"{LEASES}/event-watcher", body=theirs)
    assert lost.status_code == 409 and lost.json()["reason"] == "Conflict"
    assert api.get("leases", "demo", "event-watcher")["spec"]["holderIdentity"] == "b"
    assert call(api, "DELETE", f"{LEASES}/event-watcher").status_code == 200
    assert call(api, "GET", f"{LEASES}/event-watcher").status_code == 404


def test_forbidden_verbs_answer_403_like_rbac(api: LocalAPI) -> None:
    api.forbid("list", "routes")
    response = call(api, "GET", ROUTES)
    assert response.status_code == 403
    body = response.json()
    assert body["reason"] == "Forbidden" and body["code"] == 403
    assert body["message"] == (
        'routes.route.openshift.io is forbidden: User "system:serviceaccount:demo:event-watcher" cannot list '
        'resource "routes" in API group "route.openshift.io" in the namespace "demo"'
    )
    assert body["details"] == {"group": "route.openshift.io", "kind": "routes"}
    assert call(api, "GET", ALL_ROUTES).json()["message"].endswith("at the cluster scope")
    assert call(api, "GET", ROUTES, params={"watch": "true", "timeoutSeconds": "1"}).status_code == 200
    api.forbid("watch", "routes")
    assert "cannot watch resource" in call(api, "GET", ROUTES, params={"watch": "true"}).json()["message"]
    api.allow("list", "routes")
    assert call(api, "GET", ROUTES).status_code == 200
    api.forbid("patch", "routes")
    make(api, "web")
    denied = call(api, "PATCH", f"{ROUTES}/web", body={}, content_type="application/merge-patch+json")
    assert denied.json()["message"].startswith('routes.route.openshift.io "web" is forbidden')


# --- list ---------------------------------------------------------------------------------------------


def test_list_items_carry_no_kind_and_the_list_carries_the_version(api: LocalAPI) -> None:
    make(api, "b")
    make(api, "a")
    make(api, "c", namespace="other")
    body = call(api, "GET", ROUTES).json()
    assert (body["kind"], body["apiVersion"]) == ("RouteList", "route.openshift.io/v1")
    assert body["metadata"] == {"resourceVersion": str(api.resource_version)}
    assert [i["metadata"]["name"] for i in body["items"]] == ["a", "b"]
    assert all("kind" not in i and "apiVersion" not in i for i in body["items"])
    everywhere = call(api, "GET", ALL_ROUTES).json()
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere["items"]] == [
        ("demo", "a"),
        ("demo", "b"),
        ("other", "c"),
    ]
    api.create("namespaces", {"metadata": {"name": "demo"}})
    assert call(api, "GET", "/api/v1/namespaces").json()["kind"] == "NamespaceList"
    assert call(api, "GET", "/api/v1/namespaces/demo").json()["metadata"]["name"] == "demo"
    assert api.stats.lists_served == 3


def test_pagination_is_a_consistent_snapshot_while_objects_change(api: LocalAPI) -> None:
    originals = {name: make(api, name) for name in ("a", "b", "c", "d", "e")}
    first = call(api, "GET", ROUTES, params={"limit": "2"}).json()
    snapshot = first["metadata"]["resourceVersion"]
    assert [i["metadata"]["name"] for i in first["items"]] == ["a", "b"]
    assert first["metadata"]["remainingItemCount"] == 3
    api.delete("routes", "demo", "d")
    api.patch("routes", "demo", "c", {"spec": {"host": "changed.example"}})
    make(api, "bb")
    names, pages, token = [], 1, first["metadata"]["continue"]
    items = list(first["items"])
    while token:
        page = call(api, "GET", ROUTES, params={"limit": "2", "continue": token}).json()
        assert page["metadata"]["resourceVersion"] == snapshot
        items += page["items"]
        token = page["metadata"].get("continue", "")
        pages += 1
    names = [i["metadata"]["name"] for i in items]
    assert names == ["a", "b", "c", "d", "e"] and pages == 3
    for item in items:
        expected = {
            k: v for k, v in originals[item["metadata"]["name"]].items() if k not in ("kind", "apiVersion")
        }
        assert item == expected
    fresh = call(api, "GET", ROUTES).json()
    assert [i["metadata"]["name"] for i in fresh["items"]] == ["a", "b", "bb", "c", "e"]


def test_a_continue_token_from_before_compaction_answers_410(api: LocalAPI) -> None:
    for name in "abc":
        make(api, name)
    first = call(api, "GET", ROUTES, params={"limit": "1"}).json()
    make(api, "d")
    api.compact()
    response = call(api, "GET", ROUTES, params={"limit": "1", "continue": first["metadata"]["continue"]})
    assert response.status_code == 410
    body = response.json()
    assert body["reason"] == "Expired" and body["code"] == 410
    assert body["message"].startswith(
        "The provided continue parameter is too old to display a consistent list"
    )
    assert call(api, "GET", ROUTES, params={"continue": "garbage"}).status_code == 400


def test_a_list_at_an_exact_version_shows_the_past(api: LocalAPI) -> None:
    make(api, "a")
    then = api.resource_version
    make(api, "b")
    past = call(
        api, "GET", ROUTES, params={"resourceVersion": str(then), "resourceVersionMatch": "Exact"}
    ).json()
    assert [i["metadata"]["name"] for i in past["items"]] == ["a"] and past["metadata"][
        "resourceVersion"
    ] == str(then)
    assert call(api, "GET", ROUTES, params={"resourceVersion": "999999"}).status_code == 504


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["w1", "w2"]),
        ("app==web", ["w1", "w2"]),
        ("app!=web", ["db", "plain"]),
        ("app", ["db", "w1", "w2"]),
        ("!app", ["plain"]),
        ("app=web,tier=front", ["w1"]),
        ("app in (web, db)", ["db", "w1", "w2"]),
        ("app notin (web),tier", ["db"]),
        ("", ["db", "plain", "w1", "w2"]),
    ],
)
def test_label_selectors(api: LocalAPI, selector: str, expected: list[str]) -> None:
    make(api, "w1", labels={"app": "web", "tier": "front"})
    make(api, "w2", labels={"app": "web"})
    make(api, "db", labels={"app": "db", "tier": "back"})
    make(api, "plain")
    body = call(api, "GET", ROUTES, params={"labelSelector": selector}).json()
    assert [i["metadata"]["name"] for i in body["items"]] == expected


def test_field_selectors_and_bad_selectors(api: LocalAPI) -> None:
    make(api, "a")
    make(api, "b")
    make(api, "c", namespace="other")

    def names(path: str, selector: str) -> list[str]:
        return [
            i["metadata"]["name"]
            for i in call(api, "GET", path, params={"fieldSelector": selector}).json()["items"]
        ]

    assert names(ROUTES, "metadata.name=a") == ["a"]
    assert names(ROUTES, "metadata.name!=a") == ["b"]
    assert names(ALL_ROUTES, "metadata.namespace==other") == ["c"]
    assert names(ALL_ROUTES, "metadata.namespace!=other,metadata.name!=b") == ["a"]
    assert names(ROUTES, "spec.host=b.apps.example.test") == ["b"]
    unsupported = call(api, "GET", ROUTES, params={"fieldSelector": "spec.nothing=x"})
    assert (
        unsupported.status_code == 400
        and unsupported.json()["message"] == "field label not supported: spec.nothing"
    )
    assert call(api, "GET", ROUTES, params={"labelSelector": "a=(b"}).status_code == 400


# --- watch --------------------------------------------------------------------------------------------


def test_watch_from_a_version_sends_exactly_the_later_changes(api: LocalAPI) -> None:
    a = make(api, "a")
    start = rv(a)
    b = make(api, "b")
    make(api, "elsewhere", namespace="other")
    a2 = api.patch("routes", "demo", "a", {"spec": {"host": "a2.example"}})
    gone = api.delete("routes", "demo", "b")
    api.create("configmaps", {"metadata": {"name": "noise", "namespace": "demo"}})
    got = events(watch(api, resourceVersion=str(start), timeoutSeconds="1"))
    assert summary(got) == [
        ("ADDED", "b", str(rv(b))),
        ("MODIFIED", "a", str(rv(a2))),
        ("DELETED", "b", str(rv(gone))),
    ]
    assert rv(gone) > rv(a2) > rv(b)
    assert all(
        e["object"]["kind"] == "Route" and e["object"]["apiVersion"] == "route.openshift.io/v1" for e in got
    )
    assert got[1]["object"]["spec"]["host"] == "a2.example"
    assert got[2]["object"]["spec"] == b["spec"], "DELETED carries the last state"
    everywhere = events(watch(api, ALL_ROUTES, resourceVersion=str(start), timeoutSeconds="1"))
    assert [e["object"]["metadata"]["name"] for e in everywhere] == ["b", "elsewhere", "a", "b"]


@pytest.mark.parametrize("version", [None, "", "0"])
def test_watch_without_a_version_starts_with_current_objects_then_goes_live(
    api: LocalAPI, version: Optional[str]
) -> None:
    make(api, "b")
    make(api, "a")
    api.delete("routes", "demo", "b")
    params = {"timeoutSeconds": "10"}
    if version is not None:
        params["resourceVersion"] = version
    response = watch(api, **params)
    received: list[dict[str, Any]] = []
    reader = threading.Thread(target=events, args=(response, 2, received))
    reader.start()
    wait_until(lambda: len(received) >= 1, what="the synthetic ADDED for a")
    c = make(api, "c")
    reader.join(15)
    assert summary(received) == [
        ("ADDED", "a", received[0]["object"]["metadata"]["resourceVersion"]),
        ("ADDED", "c", str(rv(c))),
    ]


def test_bookmarks_carry_only_the_version_and_timeout_ends_cleanly(api: LocalAPI) -> None:
    make(api, "a")
    started = time.monotonic()
    got = events(
        watch(api, resourceVersion=str(api.resource_version), allowWatchBookmarks="true", timeoutSeconds="1")
    )
    assert time.monotonic() - started < 10
    assert got, "a bookmark every 0.3 s within a 1 s watch"
    for event in got:
        assert event == {
            "type": "BOOKMARK",
            "object": {
                "kind": "Route",
                "apiVersion": "route.openshift.io/v1",
                "metadata": {"resourceVersion": str(api.resource_version)},
            },
        }
    assert api.stats.bookmarks_sent >= len(got)
    assert events(watch(api, resourceVersion=str(api.resource_version), timeoutSeconds="1")) == []
    record = next(r for r in api.requests_seen() if r.verb == "watch")
    assert record.query["allowWatchBookmarks"] == "true" and record.query["resourceVersion"]


def test_a_bookmark_moves_past_changes_the_watcher_does_not_see(api: LocalAPI) -> None:
    make(api, "a")
    response = watch(
        api, resourceVersion=str(api.resource_version), allowWatchBookmarks="true", timeoutSeconds="5"
    )
    api.create("configmaps", {"metadata": {"name": "noise", "namespace": "demo"}})
    target = str(api.resource_version)
    got = []
    buffer = b""
    for data in response.iter_content(chunk_size=None):
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        got += [orjson.loads(line) for line in lines]
        if any(e["object"]["metadata"]["resourceVersion"] == target for e in got):
            break
    response.close()
    assert got[-1]["type"] == "BOOKMARK"


def test_send_initial_events_ends_with_an_annotated_bookmark(api: LocalAPI) -> None:
    make(api, "a")
    got = events(
        watch(
            api,
            sendInitialEvents="true",
            allowWatchBookmarks="true",
            resourceVersionMatch="NotOlderThan",
            timeoutSeconds="1",
        )
    )
    assert got[0]["type"] == "ADDED"
    assert got[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_watch_with_a_selector_turns_transitions_into_added_and_deleted(api: LocalAPI) -> None:
    make(api, "a", labels={"app": "web"})
    start = api.resource_version
    moved_out = api.patch("routes", "demo", "a", {"metadata": {"labels": {"app": "db"}}})
    moved_in = api.patch("routes", "demo", "a", {"metadata": {"labels": {"app": "web"}}})
    api.patch("routes", "demo", "a", {"spec": {"host": "x.example"}})
    make(api, "other", labels={"app": "db"})
    gone = api.delete("routes", "demo", "a")
    got = events(watch(api, resourceVersion=str(start), labelSelector="app=web", timeoutSeconds="1"))
    assert [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in got] == [
        ("DELETED", str(rv(moved_out))),
        ("ADDED", str(rv(moved_in))),
        ("MODIFIED", str(rv(moved_in) + 1)),
        ("DELETED", str(rv(gone))),
    ]
    assert got[0]["object"]["metadata"]["labels"] == {"app": "web"}, "the last state that matched"
    by_name = events(
        watch(api, resourceVersion=str(start), fieldSelector="metadata.name=other", timeoutSeconds="1")
    )
    assert [e["type"] for e in by_name] == ["ADDED"]


def test_compaction_answers_410_in_stream_by_default(api: LocalAPI) -> None:
    make(api, "a")
    old = api.resource_version
    make(api, "b")
    api.compact()
    got = events(watch(api, resourceVersion=str(old - 1)))
    assert got == [
        {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: {old - 1} ({api.resource_version + 1})",
                "reason": "Expired",
                "code": 410,
            },
        }
    ]
    assert events(watch(api, resourceVersion=str(api.resource_version), timeoutSeconds="1")) == []


def test_compaction_answers_http_410_when_asked() -> None:
    server = _start(expired_as="http")
    try:
        make(server, "a")
        old = server.resource_version
        make(server, "b")
        server.compact()
        response = call(server, "GET", ROUTES, params={"watch": "true", "resourceVersion": str(old)})
        assert response.status_code == 410
        assert response.json()["reason"] == "Expired"
        assert response.json()["message"].startswith(f"too old resource version: {old} (")
    finally:
        server.stop()


def test_history_limit_forgets_old_versions() -> None:
    server = _start(history_limit=3)
    try:
        first = make(server, "a")
        for i in range(4):
            server.patch("routes", "demo", "a", {"spec": {"host": f"h{i}.example"}})
        assert events(watch(server, resourceVersion=str(rv(first))))[0]["type"] == "ERROR"
        recent = server.resource_version - 3
        got = events(watch(server, resourceVersion=str(recent), timeoutSeconds="1"))
        assert [e["object"]["metadata"]["resourceVersion"] for e in got] == [
            str(recent + 1),
            str(recent + 2),
            str(recent + 3),
        ]
        assert server.stats.watches_opened == 2
    finally:
        server.stop()


def test_a_backlog_streams_in_order_and_a_caught_up_watch_gets_new_events(api: LocalAPI) -> None:
    start = api.resource_version
    for i in range(3000):
        make(api, f"r{i:05d}")
    response = watch(api, resourceVersion=str(start), timeoutSeconds="30")
    got = events(response, count=3000)
    assert [int(e["object"]["metadata"]["resourceVersion"]) for e in got] == list(
        range(start + 1, start + 3001)
    )


# --- faults -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (429, "TooManyRequests"),
        (500, "InternalError"),
        (503, "ServiceUnavailable"),
        (401, "Unauthorized"),
        (410, "Expired"),
    ],
)
def test_status_faults_answer_a_proper_status(api: LocalAPI, code: int, reason: str) -> None:
    api.inject(Fault("status", status=code, match="list", retry_after=2 if code == 429 else None, count=2))
    for _ in range(2):
        response = call(api, "GET", ROUTES)
        assert response.status_code == code
        body = response.json()
        assert (body["kind"], body["status"], body["code"], body["reason"]) == (
            "Status",
            "Failure",
            code,
            reason,
        )
    if code == 429:
        assert response.headers["Retry-After"] == "2" and body["details"]["retryAfterSeconds"] == 2
    else:
        assert "Retry-After" not in response.headers
    assert call(api, "GET", ROUTES).status_code == 200, "count=2 is used up"
    assert call(api, "GET", ROUTES, params={"watch": "true", "timeoutSeconds": "1"}).status_code == 200
    assert api.stats.faults_fired == 2
    assert [r.fault for r in api.requests_seen()] == ["status", "status", None, None]


def test_fault_match_selects_the_request(api: LocalAPI) -> None:
    api.inject(Fault("status", status=500, match="watch"))
    assert call(api, "GET", ROUTES).status_code == 200
    assert call(api, "GET", "/api").status_code == 200
    assert call(api, "GET", ROUTES, params={"watch": "1"}).status_code == 500
    api.inject(Fault("status", status=503, match="any"))
    assert call(api, "GET", "/apis").status_code == 503
    with pytest.raises(ValueError):
        Fault("nonsense")


def test_drop_mid_line_cuts_the_connection_and_the_event_is_still_there(api: LocalAPI) -> None:
    start = api.resource_version
    created = [make(api, name) for name in ("a", "b", "c")]
    api.inject(Fault("drop_mid_line", after_events=1))
    received, error = read_raw(watch(api, resourceVersion=str(start)))
    assert isinstance(error, requests.exceptions.ChunkedEncodingError)
    complete, _, partial = received.partition(b"\n")
    assert orjson.loads(complete)["object"]["metadata"]["name"] == "a"
    assert partial and b"\n" not in partial
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(partial)
    resumed = events(watch(api, resourceVersion=str(rv(created[0])), timeoutSeconds="1"))
    assert [e["object"]["metadata"]["name"] for e in resumed] == ["b", "c"]


def test_drop_mid_line_waits_for_live_events(api: LocalAPI) -> None:
    api.inject(Fault("drop_mid_line", after_events=0))
    response = watch(api, resourceVersion=str(api.resource_version))
    result: list[Any] = []
    reader = threading.Thread(target=lambda: result.append(read_raw(response)))
    reader.start()
    make(api, "late")
    reader.join(15)
    received, error = result[0]
    assert error is not None and received and b"\n" not in received


def test_close_ends_the_stream_cleanly_after_some_events(api: LocalAPI) -> None:
    start = api.resource_version
    for name in "abc":
        make(api, name)
    api.inject(Fault("close", after_events=2))
    received, error = read_raw(watch(api, resourceVersion=str(start)))
    assert error is None
    assert [orjson.loads(x)["object"]["metadata"]["name"] for x in received.splitlines()] == ["a", "b"]


def test_malformed_line_is_followed_by_normal_events(api: LocalAPI) -> None:
    start = api.resource_version
    for name in "abc":
        make(api, name)
    api.inject(Fault("malformed_line", after_events=1))
    received, error = read_raw(watch(api, resourceVersion=str(start), timeoutSeconds="1"))
    assert error is None
    lines = received.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 5
    assert b"\xff" in lines[1]
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(lines[1])
    assert [orjson.loads(x)["object"]["metadata"]["name"] for x in (lines[0], lines[2], lines[3])] == [
        "a",
        "b",
        "c",
    ]


def test_expired_faults_in_stream_and_as_http(api: LocalAPI) -> None:
    make(api, "a")
    api.inject(Fault("expired_event"))
    got = events(watch(api, resourceVersion=str(api.resource_version)))
    assert len(got) == 1 and got[0]["type"] == "ERROR"
    assert got[0]["object"]["code"] == 410 and got[0]["object"]["reason"] == "Expired"
    assert got[0]["object"]["message"].startswith(f"too old resource version: {api.resource_version} (")
    api.inject(Fault("expired_http"))
    response = call(api, "GET", ROUTES, params={"watch": "true", "resourceVersion": "2"})
    assert response.status_code == 410 and response.json()["code"] == 410


def test_silent_stream_trips_the_client_read_timeout(api: LocalAPI) -> None:
    api.inject(Fault("silent", seconds=30))
    make(api, "a")
    response = call(
        api,
        "GET",
        ROUTES,
        params={"watch": "true", "allowWatchBookmarks": "true"},
        stream=True,
        read_timeout=0.5,
    )
    assert response.status_code == 200
    _, error = read_raw(response)
    assert isinstance(error, requests.exceptions.ConnectionError) and "timed out" in str(error)


def test_empty_close_answers_no_events(api: LocalAPI) -> None:
    make(api, "a")
    api.inject(Fault("empty_close"))
    assert read_raw(watch(api)) == (b"", None)


def test_trickle_delivers_the_same_bytes_in_pieces(api: LocalAPI) -> None:
    start = api.resource_version
    make(api, "a")
    make(api, "b")
    expected = events(watch(api, resourceVersion=str(start), timeoutSeconds="1"))
    api.inject(Fault("trickle", seconds=0.0005))
    response = watch(api, resourceVersion=str(start), timeoutSeconds="1")
    pieces = []
    for data in response.iter_content(chunk_size=None):
        pieces.append(data)
    assert max(len(p) for p in pieces) <= 5 and len(pieces) > 100
    assert [orjson.loads(x) for x in b"".join(pieces).splitlines()] == expected


def test_refuse_fires_on_a_matching_request_closes_the_port_and_drops_open_watches(api: LocalAPI) -> None:
    port = api.port
    response = watch(api, resourceVersion=str(api.resource_version))
    result: list[Any] = []
    reader = threading.Thread(target=lambda: result.append(read_raw(response)))
    reader.start()
    api.inject(Fault("refuse", seconds=3.0, match="list"))
    assert call(api, "GET", "/api").status_code == 200, "discovery does not match"
    with pytest.raises(requests.exceptions.ConnectionError):
        call(api, "GET", ROUTES)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    reader.join(15)
    assert result and result[0][1] is not None, "the open watch was dropped"
    wait_until(lambda: _accepts(port), what="the port to listen again")
    assert api.port == port and call(api, "GET", ROUTES).status_code == 200
    assert [r.status for r in api.requests_seen() if r.fault == "refuse"] == [0]


def test_refuse_at_once(api: LocalAPI) -> None:
    api.refuse(2.0)
    with pytest.raises(requests.exceptions.ConnectionError):
        call(api, "GET", "/api")
    wait_until(lambda: _accepts(api.port), what="the port to listen again")
    assert call(api, "GET", "/api").status_code == 200


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return True
    except OSError:
        return False


def test_list_faults_shape_the_response_body(api: LocalAPI) -> None:
    make(api, "a")
    api.inject(Fault("drop_mid_line", match="list"))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        call(api, "GET", ROUTES).json()
    api.inject(Fault("malformed_line", match="list"))
    with pytest.raises(requests.exceptions.JSONDecodeError):
        call(api, "GET", ROUTES).json()
    assert call(api, "GET", ROUTES).status_code == 200


def test_keep_alive_connections_are_reused(api: LocalAPI) -> None:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {api.token}"
        for _ in range(5):
            assert session.get(api.url + ROUTES, verify=api.ca_file, timeout=10).status_code == 200
        assert len(api._connections) == 1


def test_stale_lists_are_served_as_of_an_older_revision(api: LocalAPI) -> None:
    make(api, "a")
    then = api.resource_version
    make(api, "b")
    api.serve_stale_lists(then)
    stale = call(api, "GET", ROUTES).json()
    assert stale["metadata"]["resourceVersion"] == str(then)
    assert [i["metadata"]["name"] for i in stale["items"]] == ["a"]
    api.serve_stale_lists(None)
    assert len(call(api, "GET", ROUTES).json()["items"]) == 2


def test_generate_name_and_delete_preconditions(api: LocalAPI) -> None:
    created = call(
        api, "POST", ROUTES, body={"metadata": {"generateName": "web-"}, "spec": {"host": "h"}}
    ).json()
    name = created["metadata"]["name"]
    assert name.startswith("web-") and len(name) == len("web-") + 5
    unnamed = call(api, "POST", ROUTES, body={"metadata": {}, "spec": {}})
    assert unnamed.status_code == 422 and unnamed.json()["reason"] == "Invalid"
    wrong = call(api, "DELETE", f"{ROUTES}/{name}", body={"preconditions": {"resourceVersion": "1"}})
    assert wrong.status_code == 409
    right = call(
        api, "DELETE", f"{ROUTES}/{name}", body={"preconditions": {"uid": created["metadata"]["uid"]}}
    )
    assert right.status_code == 200


def test_sample_route_is_an_admitted_route() -> None:
    route = sample_route("web", "demo", "web.apps.example.test")
    assert route["kind"] == "Route" and route["metadata"] == {
        "name": "web",
        "namespace": "demo",
        "labels": {"app": "web"},
    }
    assert route["spec"]["to"] == {"kind": "Service", "name": "web", "weight": 100}
    ingress = route["status"]["ingress"][0]
    assert ingress["routerName"] == "default" and ingress["host"] == "web.apps.example.test"
    assert ingress["routerCanonicalHostname"] == "router-default.apps.example.test"
    assert ingress["conditions"][0]["type"] == "Admitted" and ingress["conditions"][0]["status"] == "True"


def test_fault_payloads_put_arbitrary_bytes_into_the_stream(api: LocalAPI) -> None:
    start = api.resource_version
    make(api, "a")
    make(api, "b")
    api.inject(Fault("malformed_line", after_events=1, payload=b"not json\n"))
    received, error = read_raw(watch(api, resourceVersion=str(start), timeoutSeconds="1"))
    assert error is None and received.split(b"\n")[1] == b"not json"
    api.inject(Fault("close", after_events=1, payload=b'{"type":"ADD'))
    received, error = read_raw(watch(api, resourceVersion=str(start)))
    assert error is None and received.endswith(b'\n{"type":"ADD')


# --- framing on the wire, as kube-apiserver's (watcher/localapi/watch.py) ------------------------------


def test_a_busy_watch_is_2_kib_chunks_with_events_cut_across_them_and_4_kib_records(api: LocalAPI) -> None:
    start = api.resource_version
    made = load_backlog(api, "demo")
    got = read_wire(api, ROUTES, resourceVersion=str(start), timeoutSeconds="1")
    assert got.ended
    lines = got.body.split(b"\n")
    assert lines.pop() == b""
    assert [orjson.loads(line)["object"]["metadata"]["name"] for line in lines] == [
        o["metadata"]["name"] for o in made
    ]
    # Nothing was flushed until the backlog ran out: every chunk but the last is a full buffer.
    assert set(got.sizes[:-1]) == {watch_module.CHUNKING_BUFFER}
    assert 0 < got.sizes[-1] <= watch_module.CHUNKING_BUFFER
    assert got.events_cut_by_chunks() > BUSY_EVENTS // 2
    # One recv is one TLS record; the connection's 4 KiB buffer makes them all that size or less.
    assert max(map(len, got.reads)) <= watch_module.CONN_BUFFER
    assert got.size_lines_cut_by_reads() >= 1


def test_a_caught_up_watch_sends_one_chunk_per_event(api: LocalAPI) -> None:
    start = api.resource_version
    result: list[Wire] = []
    reader = threading.Thread(
        target=lambda: result.append(read_wire(api, ROUTES, resourceVersion=str(start), timeoutSeconds="2"))
    )
    reader.start()
    wait_until(lambda: api.stats.watches_opened >= 1, what="the watch to open")
    for i in range(4):
        make(api, f"quiet-{i}")
        time.sleep(0.2)
    reader.join(10)
    (got,) = result
    assert len(got.chunks) == 4
    assert all(chunk.count(b"\n") == 1 and chunk.endswith(b"\n") for chunk in got.chunks)


def test_an_event_larger_than_the_buffer_goes_out_as_one_chunk_of_its_own(api: LocalAPI) -> None:
    start = api.resource_version
    small = make(api, "small-1")
    big = sample_route("big", "demo", "big.apps.example.test")
    big["metadata"]["annotations"] = {"example.test/pad": "y" * 6000}
    big = api.create("routes", big)
    make(api, "small-2")
    got = read_wire(api, ROUTES, resourceVersion=str(start), timeoutSeconds="1")
    first, second = (len(orjson.dumps({"type": "ADDED", "object": o})) + 1 for o in (small, big))
    # bufio.Writer: the big write tops the buffer up to 2,048 bytes and flushes it, then the rest of
    # it does not fit the empty buffer and goes straight through as one chunk.
    assert got.sizes[:2] == [watch_module.CHUNKING_BUFFER, second - (watch_module.CHUNKING_BUFFER - first)]


# --- managedFields, as kube-apiserver's field manager records them (issue 20) -------------------------


def entries(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(manager, operation, subresource) of each managedFields entry, in the object's order."""
    return [
        (e["manager"], e["operation"], e.get("subresource", "")) for e in obj["metadata"]["managedFields"]
    ]


def test_a_create_records_its_manager_fields_and_time(api: LocalAPI) -> None:
    route = sample_route("web", "demo", "web.apps.example.test")
    created = call(api, "POST", ROUTES, params={"fieldManager": "oc"}, body=route).json()
    (entry,) = created["metadata"]["managedFields"]
    assert list(entry) == ["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1"]
    assert entry["manager"] == "oc" and entry["operation"] == "Update"
    assert entry["apiVersion"] == "route.openshift.io/v1" and entry["fieldsType"] == "FieldsV1"
    assert entry["time"] == created["metadata"]["creationTimestamp"]
    fields = entry["fieldsV1"]
    # The server-set metadata is never owned; maps and optional structs are nodes of their own ("."),
    # and a list of objects without a name is owned whole, as a Route's status.ingress on a cluster.
    assert fields["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
    assert fields["f:spec"]["f:host"] == {} and fields["f:spec"]["f:port"] == {".": {}, "f:targetPort": {}}
    assert fields["f:status"] == {"f:ingress": {}}
    assert list(fields) == sorted(fields) and "f:apiVersion" not in fields and "f:kind" not in fields


@pytest.mark.parametrize(
    ("user_agent", "manager"),
    [
        ("kubectl/v1.30.2 (linux/amd64) kubernetes/39683505", "kubectl"),
        ("event-watcher/1.0", "event-watcher"),
        ("odd\x07agent", "oddagent"),  # non-printable characters are dropped
        ("x" * 200, "x" * 128),  # at most 128 bytes
        ("/nothing-before-the-slash", "unknown"),
    ],
)
def test_without_field_manager_the_user_agent_names_the_manager(
    api: LocalAPI, user_agent: str, manager: str
) -> None:
    route = sample_route("web", "demo", "web.apps.example.test")
    response = requests.post(
        api.url + ROUTES,
        data=orjson.dumps(route),
        headers={"Authorization": f"Bearer {api.token}", "User-Agent": user_agent},
        verify=api.ca_file,
        timeout=10,
    )
    assert entries(response.json()) == [(manager, "Update", "")]


def test_status_writes_and_other_managers_get_entries_of_their_own(api: LocalAPI) -> None:
    route = sample_route("web", "demo", "web.apps.example.test")
    status = route.pop("status")
    call(api, "POST", ROUTES, params={"fieldManager": "oc"}, body=route)
    routed = call(
        api,
        "PATCH",
        f"{ROUTES}/web/status",
        params={"fieldManager": "openshift-router"},
        body={"status": status},
        content_type="application/merge-patch+json",
    ).json()
    assert entries(routed) == [("oc", "Update", ""), ("openshift-router", "Update", "status")]
    assert routed["metadata"]["managedFields"][1]["fieldsV1"] == {"f:status": {"f:ingress": {}}}
    # Another manager changing a field takes it over; one it removes leaves every entry.
    patch = {"metadata": {"labels": {"app": "other"}}, "spec": {"port": None}}
    changed = api.patch("routes", "demo", "web", patch, manager="kubectl-edit")
    by_manager = {e["manager"]: e["fieldsV1"] for e in changed["metadata"]["managedFields"]}
    assert by_manager["kubectl-edit"] == {"f:metadata": {"f:labels": {"f:app": {}}}}
    assert by_manager["oc"]["f:metadata"] == {"f:labels": {".": {}}}
    assert "f:port" not in by_manager["oc"]["f:spec"]
    # A manager whose fields are all taken over loses its entry.
    moved = api.patch("routes", "demo", "web", {"status": {"ingress": []}}, manager="x", subresource="status")
    assert ("openshift-router", "Update", "status") not in entries(moved)
    assert ("x", "Update", "status") in entries(moved)


def test_a_write_that_changes_nothing_keeps_the_managed_fields_as_they_were(api: LocalAPI) -> None:
    created = make(api, "web")
    body = {k: v for k, v in created.items()}
    body["metadata"] = {k: v for k, v in created["metadata"].items() if k != "managedFields"}
    again = call(api, "PUT", f"{ROUTES}/web", params={"fieldManager": "someone"}, body=body).json()
    assert again == created  # no new revision, no entry for "someone", no new time
    given = [{**created["metadata"]["managedFields"][0], "manager": "renamed"}]
    body["metadata"]["managedFields"] = given
    renamed = call(api, "PUT", f"{ROUTES}/web", body=body).json()
    assert entries(renamed) == [("renamed", "Update", "")]  # set explicitly: taken as given


def test_apply_keeps_the_manifest_in_the_last_applied_annotation(api: LocalAPI) -> None:
    manifest = sample_route("web", "demo", "web.apps.example.test")
    del manifest["status"]
    manifest["metadata"]["annotations"] = {"team": "a"}
    created = api.apply("routes", manifest)
    annotations = created["metadata"]["annotations"]
    last = annotations[LAST_APPLIED]
    assert last.endswith("}\n") and orjson.loads(last) == manifest and annotations["team"] == "a"
    assert last.index('"apiVersion"') < last.index('"kind"') < last.index('"metadata"')  # keys sorted
    assert entries(created) == [("kubectl-client-side-apply", "Update", "")]
    manifest["spec"]["host"] = "new.apps.example.test"
    again = api.apply("routes", manifest)
    assert again["spec"]["host"] == "new.apps.example.test" and rv(again) == rv(created) + 1
    assert orjson.loads(again["metadata"]["annotations"][LAST_APPLIED]) == manifest
    labelled = api.patch("routes", "demo", "web", {"metadata": {"labels": {"x": "1"}}})
    assert labelled["metadata"]["annotations"] == again["metadata"]["annotations"]  # kept by other writes


def test_lists_of_named_objects_are_owned_item_by_item(api: LocalAPI) -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "demo", "finalizers": ["a/b"]},
        "spec": {"containers": [{"name": "web", "image": "nginx"}, {"name": "log", "image": "fluentd"}]},
    }
    created = api.create("pods", pod, manager="kubectl-create")
    (entry,) = created["metadata"]["managedFields"]
    assert entry["fieldsV1"]["f:spec"]["f:containers"] == {
        'k:{"name":"log"}': {".": {}, "f:image": {}, "f:name": {}},
        'k:{"name":"web"}': {".": {}, "f:image": {}, "f:name": {}},
    }
    assert entry["fieldsV1"]["f:metadata"] == {"f:finalizers": {}}  # other lists: owned whole
    image = {
        "spec": {"containers": [{"name": "web", "image": "nginx:2"}, {"name": "log", "image": "fluentd"}]}
    }
    changed = api.patch("pods", "demo", "p", image, manager="deployer")
    deployer = next(e for e in changed["metadata"]["managedFields"] if e["manager"] == "deployer")
    assert deployer["fieldsV1"] == {"f:spec": {"f:containers": {'k:{"name":"web"}': {"f:image": {}}}}}
