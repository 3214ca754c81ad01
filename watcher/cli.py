"""Command line, logging, signals and the wiring of config → client → informer → reconciler → plugins.

The only module that calls ``sys.exit``: every ``errors.WatcherError`` becomes one line on stderr and
its documented exit code (README, "Exit codes"); nothing the user can get wrong ends in a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn, Optional

import watcher
from watcher import config, dispatch, errors, health, leader, logsetup
from watcher.client import Client, ResourceInfo, api_path_target
from watcher.informer import Backoff, Informer, Tuning
from watcher.metrics import Metrics
from watcher.reconciler import Reconciler
from watcher.recorder import EventRecorder

logger = logging.getLogger("watcher")

STOP_GRACE = 2.0  # seconds SIGTERM waits for the informer to leave its stream


class App:
    """One watcher: discovery, plugins and the informer, started and stopped as a unit."""

    def __init__(
        self, settings: config.Settings, *, tuning: Optional[Tuning] = None, metrics: Optional[Metrics] = None
    ):
        self.settings = settings
        self.tuning = tuning if tuning is not None else Tuning(watch_timeout=settings.watch_timeout)
        self.metrics = metrics if metrics is not None else Metrics()
        self.client = Client(settings)
        self.stop_event = threading.Event()
        self.informer: Optional[Informer] = None
        self.plugins: list[dispatch.Plugin] = []
        self.reconciler: Optional[Reconciler] = None
        self.probes = health.Probes(health.stale_after(self.tuning.watch_timeout, self.tuning.read_margin))
        self.runner: Optional[leader.Runner] = None
        self.recorder: Optional[EventRecorder] = None

    def start(self) -> None:
        """Everything that can fail on bad configuration, before the first event: fail fast, cleanly."""
        try:
            info = self._discover()
            if info is None:  # stopped while waiting for the API server
                return
            s = self.settings
            namespaced = info.namespaced and s.namespaced is not False
            if namespaced and not s.namespace:
                raise errors.ConfigError(
                    f"{info.display} is namespaced: set K8S_NAMESPACE (k8s_namespace), "
                    "or K8S_NAMESPACED=false to watch all namespaces",
                    exit_code=errors.EXIT_NAMESPACE,
                )
            plugins = dispatch.load(s)
            if s.record_events:
                self.recorder = EventRecorder(
                    self.client, socket.gethostname(), self.metrics.registry, dry_run=s.dry_run
                )
                self.recorder.start()
            contexts = dispatch.start(plugins, s, dispatch.PluginAPI(self.client, info), self.recorder)
            self.plugins = plugins
            self.reconciler = Reconciler(list(zip(plugins, contexts)), self.metrics)
            self.reconciler.start()
            self.probes.check(self.reconciler.stuck)
            self.informer = Informer(
                self.client,
                info,
                s.namespace if namespaced else None,
                self.reconciler,
                metrics=self.metrics,
                label_selector=s.label_selector,
                field_selector=s.field_selector,
                resync_period=s.resync_period,
                keep_managed_fields=s.keep_managed_fields,
                tuning=self.tuning,
            )
            self.reconciler.sweep_over(self.informer.objects, self.informer.ready)
            self.runner = leader.Runner.for_settings(
                s, self.client, self.informer, self.reconciler, self.stop_event, self.probes, self.metrics
            )
            scope = f"namespace {s.namespace}" if namespaced else "all namespaces"
            logger.info(
                "Watching %s (%s, kind %s) in %s on %s with plugins %s.",
                info.display,
                info.api_version,
                info.kind,
                scope,
                s.endpoint,
                ", ".join(s.plugins),
            )
        except BaseException:
            self.close()
            raise

    def _discover(self) -> Optional[ResourceInfo]:
        """Find the resource; wait out an unreachable API server (pods often start before it answers)."""
        s = self.settings
        group, version, openshift_only = s.api_group, s.api_version, s.legacy_oapi
        if s.api_path:
            group, version, openshift_only = api_path_target(s.api_path)
        backoff = Backoff(self.tuning.backoff_initial, self.tuning.backoff_cap)
        failing = ""
        attempt = 0
        while not self.stop_event.is_set():
            try:
                return self.client.discover(s.resource, group, version, openshift_only=openshift_only)
            except errors.Unauthorized as e:
                if not s.token_file:
                    raise errors.ConfigError(
                        f"{e}; check {s.credentials()}", exit_code=errors.EXIT_TOKEN
                    ) from None
                message = f"{e}."
            except (errors.TransportError, errors.ServerError, errors.Throttled) as e:
                message = f"{e}."
            attempt += 1
            # A mistake that never fixes itself stays visible, at a slowing rate: attempts 1, 2, 4, 8, ...
            if message != failing or attempt & (attempt - 1) == 0:
                logger.warning("%s Retrying with backoff (attempt %d).", message, attempt)
                failing = message
            self.probes.failing(f"{message.rstrip('.')} (attempt {attempt})")
            self.stop_event.wait(backoff.next())
        return None

    def run(self) -> None:
        """Watch until ``stop()`` (with leader election: only while holding the Lease)."""
        if self.runner is not None:
            self.runner.run()

    def stop(self) -> None:
        self.stop_event.set()
        if self.informer is not None:
            self.informer.interrupt()

    def close(self) -> None:
        """Stop the plugins' workers (the calls in flight get ``shutdown_grace``), then close them."""
        if self.reconciler is not None:
            busy = self.reconciler.stop(self.settings.shutdown_grace)
            if busy:
                logger.warning(
                    "Plugin %s still busy after %.0f s; closing anyway.",
                    ", ".join(busy),
                    self.settings.shutdown_grace,
                )
            self.reconciler = None
        dispatch.close_all(self.plugins)
        self.plugins = []
        if self.recorder is not None:
            self.recorder.stop()  # what the plugins recorded last is still posted
            self.recorder = None
        self.client.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="event-watcher",
        description="Watch one Kubernetes/OpenShift resource and hand every change to a chain of plugins. "
        "Settings come from environment variables, the ini file, the in-cluster serviceaccount and the "
        "current kubeconfig context, in that order (every key: --print-sample-config).",
        epilog="Exit codes: 0 clean stop, 1 the API server refused something needed at start, "
        "2 usage or bad configuration, 31 resource missing or unknown, "
        "32 namespace missing, 33 endpoint missing or invalid, 34 token missing or rejected, 35 plugin "
        "missing or refused to start.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="ini file with [global] and [plugin_<name>] sections (default: $CONFIG_FILE)",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="print the effective settings and where each came from, secrets redacted, and exit; on a bad "
        "configuration, what resolved and then the problems, with their exit code",
    )
    parser.add_argument(
        "--print-sample-config",
        action="store_true",
        help="print the sample ini file (every key, commented, with its env var) and exit",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run against an embedded local API server that keeps changing a few routes",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="watch, queue and let plugins read and decide, but change nothing: log what would be done",
    )
    parser.add_argument(
        "--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR (overrides LOG_LEVEL)"
    )
    parser.add_argument("--version", action="version", version=f"event-watcher {watcher.__version__}")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> NoReturn:
    args = build_parser().parse_args(argv)
    sys.exit(_main(args))


def _main(args: argparse.Namespace) -> int:
    if args.print_sample_config:
        print(config.sample_path().read_text(encoding="utf-8"), end="")
        return errors.EXIT_OK
    log_format = os.environ.get("LOG_FORMAT") or "text"
    try:  # provisional until the settings are checked: config.load reports a bad level as exit 2
        logsetup.configure(args.log_level or os.environ.get("LOG_LEVEL") or "INFO", log_format)
    except ValueError:
        logsetup.configure("INFO", log_format)
    demo = None
    try:
        environ: dict[str, str] = dict(os.environ)
        if args.log_level:
            environ["LOG_LEVEL"] = args.log_level
        places: dict[str, str] = {}
        if args.demo:
            from watcher import demo as demo_module  # the local API is only imported when asked for

            demo = demo_module.Demo().start()
            environ, places = demo.environ(environ), demo.places()
        settings = config.load(environ, args.config, **places)
        logsetup.configure(settings.log_level, settings.log_format, secrets=lambda: _secrets(settings))
        for note in settings.notes:
            logger.warning("Ignoring %s.", note)
        if args.dry_run:
            settings = dataclasses.replace(settings, dry_run=True)
        if args.check_config:
            _check_config(settings)
            return errors.EXIT_OK
        return serve(settings, demo=demo)
    except errors.WatcherError as e:
        partial = getattr(e, "partial", None)
        if args.check_config and partial is not None:  # what resolved, then the problems
            _check_config(partial)
        print(f"event-watcher: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return errors.EXIT_OK
    finally:
        if demo is not None:
            demo.stop()


def _check_config(settings: config.Settings) -> None:
    """The settings and their sources on stdout; typos in plugin sections as the daemon would log them."""
    print(config.render(settings, dispatch.secret_keys(settings)), flush=True)
    for note in dispatch.key_notes(settings):
        logger.warning("Ignoring %s.", note)


def serve(settings: config.Settings, *, demo: Any = None) -> int:
    """Run until SIGTERM/SIGINT: the plugin calls in flight finish (``shutdown_grace``), plugins close,
    exit 0; what was still queued is listed again at the next start."""
    app = App(settings)
    threading.current_thread().name = "main"

    def on_signal(signum: int, _frame: Any) -> None:
        logger.info("Received %s; stopping.", signal.Signals(signum).name)
        app.stop()
        if demo is not None:
            demo.stop_driver()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = None
    try:
        server = health.start(
            settings.metrics_port,
            app.probes,
            app.metrics.registry,
            host=settings.metrics_address,
            any_port_if_busy=demo is not None and settings.sources.get("metrics_port") == "default",
        )
        app.start()
        if demo is not None:
            demo.start_driver()
            demo.show_the_way(server.url if server is not None else None)
        worker = threading.Thread(target=app.run, name="informer", daemon=True)
        worker.start()
        while worker.is_alive() and not app.stop_event.is_set():
            worker.join(0.5)
        # With leader election it waits for the calls. A signal that came while the WATCH was being
        # opened found no stream to abort: interrupt again until the worker has left it.
        deadline = time.monotonic() + STOP_GRACE + settings.shutdown_grace
        while worker.is_alive() and time.monotonic() < deadline:
            app.stop()
            worker.join(0.5)
        return errors.EXIT_OK
    finally:
        app.close()
        if server is not None:
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _secrets(settings: config.Settings) -> list[str]:
    """Everything the log must never show, read fresh because token files rotate."""
    found = [settings.token] if settings.token else []
    found += config.plugin_secret_values(settings)
    if settings.token_file:
        try:
            with open(settings.token_file, encoding="utf-8") as f:
                found.append(f.read().strip())
        except OSError:
            pass
    return [s for s in found if s]
