"""Alert plugin: turn matching watch events (typically Warning Events) into alerts for Alertmanager and
webhooks, without spamming them. See README.md in this directory for the keys and the rule syntax."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Callable, Optional

from watcher import errors

from . import engine, memory, paths, rules, settings, sinks

__all__ = ["close", "handle_event", "init", "state", "sweep"]

# What the core reads: every key of [plugin_alert] (any other is named as a typo), and the secret ones
# (--check-config shows them as <redacted>: a Slack-style webhook URL is its own credential).
KEYS = tuple(sorted(settings.KNOWN_KEYS))
SECRET_KEYS = ("webhook_url", "alertmanager_url")

logger = logging.getLogger(__name__)

# The running engine, for tests and operators: ``state.failures`` counts sends that failed.
state: Optional[engine.AlertEngine] = None
_writer: Optional[memory.Writer] = None
_store: Optional[memory.ConfigMapState] = None  # read at the first call: this replica leads by then


def init(watcher: Any, config: Mapping[str, str]) -> None:
    """Check the keys and the whole rules file now, so that a typo stops the daemon at start-up."""
    global state, _store
    close()
    options = settings.load(config)
    resource = getattr(getattr(watcher, "api", None), "resource", None)
    kind = getattr(resource, "kind", None)
    watching_core_events = resource is not None and resource.group == "" and resource.plural == "events"
    schema = paths.EVENT_SCHEMA if watching_core_events else None
    rule_set = rules.load_file(options.rules_file, kind=kind, schema=schema)
    active = [rule for rule in rule_set if kind is None or rule.accepts_kind(kind)]
    if not active:
        raise errors.PluginError(
            f"[plugin_alert] none of the {len(rule_set)} rules in {options.rules_file} can match kind {kind} "
            "(their object.kind excludes it): point rules_file at rules for this resource"
        )
    for rule in rule_set:
        if rule not in active:
            logger.info(
                "Alert rule %s is inactive: its object.kind does not match the watched kind %s.",
                rule.name,
                kind,
            )
    generator = _generator_url(watcher, options, resource)
    sink_list = sinks.build(options)
    state = engine.AlertEngine(active, sink_list, generator)
    _store = _state_store(watcher, options)
    logger.info(
        "Alert plugin ready: %d rules from %s, sending to %s, repeat_interval %g s.",
        len(active),
        options.rules_file,
        " and ".join(str(sink) for sink in sink_list),
        options.repeat_interval,
    )


def handle_event(
    watcher: Any, event: Mapping[str, Any], config: Mapping[str, str]
) -> Optional[tuple[str, str]]:
    if state is None:
        raise errors.PluginError("the alert plugin's init() has not run")
    _restore(state)
    return state.handle(event)


def sweep(watcher: Any, objects: list[dict[str, Any]], config: Mapping[str, str]) -> dict[str, int]:
    """Resolve alerts whose objects vanished unseen (Events that expired while the watcher was down)."""
    if state is None:
        raise errors.PluginError("the alert plugin's init() has not run")
    _restore(state)
    return state.sweep(objects)


def _restore(running: engine.AlertEngine) -> None:
    """Take back what the last run sent, then keep it: at the first call, not in ``init``, so that a
    leader-election standby reads the state as it was when it took over, not when it started."""
    global _store, _writer
    if _store is None:
        return
    store, _store = _store, None
    restored = running.restore(store.load())
    _writer = memory.Writer(store, running.export, lambda: running.changes)
    logger.info(
        "Alert state is kept in ConfigMap %s; %d firing alerts taken back from it.", store.where, restored
    )


def close() -> None:
    global state, _writer, _store
    _store = None
    if _writer is not None:
        _writer.close()
        _writer = None
    if state is not None:
        state.close()
        state = None


def _state_store(watcher: Any, options: settings.AlertSettings) -> Optional[memory.ConfigMapState]:
    """The ConfigMap to keep the state in, or None (``state_configmap = none``, or no API or namespace)."""
    if options.state_configmap is None:
        return None
    api = getattr(watcher, "api", None)
    namespace = getattr(getattr(watcher, "config", None), "namespace", None)
    if api is None or not namespace:
        logger.warning(
            "The alert state is kept in memory only (no namespace for ConfigMap %s): after a restart, "
            "webhooks may get again what they were sent before it.",
            options.state_configmap,
        )
        return None
    return memory.ConfigMapState(api, str(namespace), options.state_configmap)


def _generator_url(
    watcher: Any, options: settings.AlertSettings, resource: Any
) -> Callable[[Mapping[str, Any]], str]:
    """``generatorURL``: the configured template, or else the watched object's URL on the API server."""
    if options.generator_url is not None:
        try:
            template = rules.Template.parse(options.generator_url)
        except rules.RuleError as e:
            raise errors.PluginError(f"[plugin_alert] generator_url: {e}") from None
        return template.render
    endpoint = str(getattr(getattr(watcher, "config", None), "k8s_endpoint", "") or "").rstrip("/")
    if not endpoint or resource is None:
        return lambda event: ""

    def api_url(event: Mapping[str, Any]) -> str:
        meta = (event.get("object") or {}).get("metadata") or {}
        name = meta.get("name")
        return f"{endpoint}{resource.object_path(meta.get('namespace'), name)}" if name else ""

    return api_url
