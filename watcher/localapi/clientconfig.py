"""A kubeconfig for the local API, so that ``kubectl`` (and ``oc``) can look at what the watcher sees.

JSON is YAML, and kubectl reads either: no YAML writer needed. The file holds the bearer token, so it
is created 0600, like the one ``oc login`` writes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from watcher.localapi.api import LocalAPI

CONTEXT = "localapi"


def write(api: LocalAPI, path: str, namespace: str = "default") -> str:
    """Write a kubeconfig whose current context is the running ``api`` (server, CA, token, namespace)."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": api.url, "certificate-authority": api.ca_file}}],
        "users": [{"name": CONTEXT, "user": {"token": api.token}}],
        "contexts": [
            {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return path
