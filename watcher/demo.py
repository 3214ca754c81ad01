"""``--demo``: the daemon against an embedded local API server that keeps changing a few routes.

A newcomer sees the plugin chain at work within seconds, without a cluster. Only the connection
settings are replaced (endpoint, token, CA, namespace, resource); the plugin chain and its sections
still come from the environment and ``--config``.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import tempfile
import threading
from collections.abc import Mapping
from typing import Optional

from watcher import localapi
from watcher.localapi import clientconfig

logger = logging.getLogger(__name__)

NAMESPACE = "demo"
DOMAIN = "apps.example.test"
CONNECTION_KEYS = ("K8S_", "KUBECONFIG", "KUBERNETES_SERVICE_")


class Demo:
    def __init__(self, interval: float = 1.5, initial_routes: int = 3) -> None:
        self.interval = interval
        self.initial_routes = initial_routes
        self.api = localapi.LocalAPI()
        self._tmp = tempfile.TemporaryDirectory(prefix="event-watcher-demo-")
        self.home = self._tmp.name
        self.kubeconfig = ""  # written by start()
        self._stop = threading.Event()
        self._driver: Optional[threading.Thread] = None
        self._names = (f"app{i}" for i in itertools.count(1))
        self._random = random.Random()

    def start(self) -> Demo:
        self.api.start()
        for _ in range(self.initial_routes):
            self._create()
        self.kubeconfig = clientconfig.write(self.api, os.path.join(self.home, "kubeconfig"), NAMESPACE)
        logger.info(
            "Demo: a local API server runs at %s with %d routes in namespace %s",
            self.api.url,
            self.initial_routes,
            NAMESPACE,
        )
        return self

    def show_the_way(self, metrics_url: Optional[str]) -> None:
        """Once everything listens: how to look at the demo from outside, one copyable line each (no
        full stop glued to a URL or a path: kubectl and shells would take it as part of it)."""
        logger.info("Demo: to watch the same routes with kubectl, in another shell run")
        logger.info("    export KUBECONFIG=%s", self.kubeconfig)
        logger.info("    kubectl get routes -A -w")
        if metrics_url:
            logger.info("Demo: metrics at %s/metrics and readiness at %s/readyz", metrics_url, metrics_url)
        logger.info("Demo: Ctrl-C to stop")

    def environ(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The caller's environment with the connection pointed at the local API server."""
        token_file = os.path.join(self.home, "token")
        with open(token_file, "w", encoding="utf-8") as f:
            f.write(self.api.token)
        env = {k: v for k, v in environ.items() if not k.startswith(CONNECTION_KEYS)}
        env.update(
            K8S_API_ENDPOINT=self.api.url,
            K8S_TOKEN_FILE=token_file,
            K8S_CA=self.api.ca_file,
            K8S_NAMESPACE=NAMESPACE,
            K8S_RESOURCE="routes",
        )
        return env

    def places(self) -> dict[str, str]:
        """No serviceaccount and no kubeconfig of the user's leak into the demo."""
        return {"serviceaccount_dir": os.path.join(self.home, "no-serviceaccount"), "home": self.home}

    def start_driver(self) -> None:
        self._driver = threading.Thread(target=self._drive, name="demo-driver", daemon=True)
        self._driver.start()

    def stop_driver(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        self.stop_driver()
        if self._driver is not None:
            self._driver.join(5)
        self.api.stop()
        self._tmp.cleanup()

    # --- the changes --------------------------------------------------------------------------------

    def _drive(self) -> None:
        while not self._stop.wait(self.interval):
            existing = [r["metadata"]["name"] for r in self.api.list("routes", NAMESPACE)]
            action = self._random.choice(["create", "modify", "modify", "delete"] if existing else ["create"])
            if action == "create" or len(existing) < 2:
                self._create()
            elif action == "modify":
                name = self._random.choice(existing)
                self.api.patch(
                    "routes",
                    NAMESPACE,
                    name,
                    {"spec": {"host": f"{name}-v{self._random.randint(2, 99)}.{DOMAIN}"}},
                    manager="kubectl-patch",
                )
            else:
                self.api.delete("routes", NAMESPACE, self._random.choice(existing))

    def _create(self) -> None:
        """As on a cluster: ``oc apply`` of the manifest, then the router admitting the route, so the
        demo's objects carry managedFields and the last-applied annotation as real ones do."""
        name = next(self._names)
        localapi.apply_route(self.api, localapi.sample_route(name, NAMESPACE, f"{name}.{DOMAIN}"))
