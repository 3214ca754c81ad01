"""The plugins: find them by name, check their contract at load time, start and close them.

A plugin is a directory with ``__init__.py`` defining ``handle_event(watcher, event, config)``; it may
define ``init(watcher, config)``, ``close()``, ``sweep(watcher, objects, config)`` (repair what it owns
outside against the current objects; see ``watcher.reconciler``), ``WORKERS``, how many objects it
can handle at once unless its section says ``workers``, ``KEYS``, every option its section may hold
(the core names any other with "did you mean"), and ``SECRET_KEYS``, those whose values are secrets.
Plugins are searched in ``plugin_path``, then in the built-in ``plugins/``, then among installed
distributions' ``event_watcher.plugins`` entry points. Calling them is the reconciler's job
(``watcher.reconciler``): a work queue per plugin.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

from watcher import config, configvalues, errors
from watcher.client import Client, ResourceInfo
from watcher.config import Settings
from watcher.recorder import EventRecorder

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "event_watcher.plugins"
_PACKAGE_DIR = Path(__file__).resolve().parent


def builtin_dirs() -> list[Path]:
    """``plugins/`` beside the package in a source checkout; ``watcher/builtin_plugins`` when installed."""
    checkout = _PACKAGE_DIR.parent
    dirs = []
    if (checkout / "watch.py").is_file() and (checkout / "plugins").is_dir():
        dirs.append(checkout / "plugins")
    if (_PACKAGE_DIR / "builtin_plugins").is_dir():
        dirs.append(_PACKAGE_DIR / "builtin_plugins")
    return dirs


class PluginAPI:
    """What plugins use to read and change the watched resource, through the daemon's own session."""

    def __init__(self, client: Client, info: ResourceInfo) -> None:
        self._client = client
        self.resource = info

    def get(self, namespace: Optional[str], name: str) -> dict[str, Any]:
        return self._client.get(self.resource, namespace, name)

    def patch(self, namespace: Optional[str], name: str, merge_patch: Mapping[str, Any]) -> dict[str, Any]:
        """JSON merge patch (RFC 7386) of one object of the watched resource."""
        return self._client.patch(self.resource, namespace, name, merge_patch)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, str]] = None,
        json: Any = None,
        content_type: Optional[str] = None,
    ) -> dict[str, Any]:
        """Any other API call, for plugins that touch more than the watched resource."""
        return self._client.request(method, path, params=params, json=json, content_type=content_type)


@dataclass(frozen=True)
class PluginContext:
    """The ``watcher`` argument plugins receive: the seed's ``.config`` plus ``.logger``, ``.api`` and
    ``.record``."""

    name: str
    config: Settings
    logger: logging.Logger
    api: Optional[PluginAPI]
    recorder: Optional[EventRecorder] = None  # None: record_events is off

    def record(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Post a Kubernetes Event (``type_`` Normal or Warning) on ``obj``, e.g. ``watcher.record(route,
        "Normal", "DNSRecordCreated", "A shop.apps.example.com -> 10.0.0.1")``. Returns at once: the
        Event is posted in the background, aggregated and rate-limited (``watcher.recorder``); a
        failure to post never reaches the plugin. The message must not hold a secret."""
        if self.recorder is not None:
            self.recorder.record(obj, type_, reason, message)

    @property
    def dry_run(self) -> bool:
        """True under ``--dry-run``: read and decide as usual, but change nothing outside the watcher
        (no DNS update, no certificate, no POST); log what would have been done, at INFO."""
        return self.config.dry_run


@dataclass(frozen=True)
class WorkSettings:
    """How the reconciler runs one plugin: keys of its ``[plugin_<name>]`` section that the core reads
    (and takes out of the section the plugin gets), with the defaults the README documents."""

    workers: int = 1  # objects handled at once; a plugin's WORKERS changes this default
    retry_max: float = 300.0  # the longest wait between two retries of a failing object
    stuck_after: float = 600.0  # a call running longer than this fails /healthz
    # A plugin's sweep runs after the initial list and then this often: leftovers of a downtime are
    # repaired at start, drift within ten minutes, and listing a whole zone or CA stays rare. 0: never.
    sweep_period: float = 600.0


# (key, parser) of the settings in WorkSettings, as a [plugin_<name>] section spells them.
WORK_KEYS: tuple[tuple[str, Callable[[str, str], Any]], ...] = (
    ("workers", configvalues.positive_int),
    ("retry_max", configvalues.duration),
    ("stuck_after", configvalues.duration),
    ("sweep_period", configvalues.duration),
)


@dataclass
class Plugin:
    name: str
    module: ModuleType
    origin: str
    config: Mapping[str, str]  # its section, without the WORK_KEYS
    work: WorkSettings = WorkSettings()
    notes: tuple[str, ...] = ()  # unknown keys of its section, each with its likely intended spelling
    handle: Callable[..., Any] = field(init=False)
    sweep: Optional[Callable[..., Any]] = field(init=False)  # None: it has none, or sweep_period is 0

    def __post_init__(self) -> None:
        self.handle = self.module.handle_event
        self.sweep = getattr(self.module, "sweep", None) if self.work.sweep_period > 0 else None


def work_settings(name: str, module: ModuleType, section: Mapping[str, str]) -> WorkSettings:
    """The section's WORK_KEYS, on top of the plugin's ``WORKERS``; ``ConfigError`` naming them all."""
    values: dict[str, Any] = {}
    default_workers = getattr(module, "WORKERS", 1)
    if not isinstance(default_workers, int) or isinstance(default_workers, bool) or default_workers < 1:
        raise errors.PluginError(f"plugin {name!r}: WORKERS must be a whole number >= 1")
    values["workers"] = default_workers
    problems = []
    for key, parse in WORK_KEYS:
        if key in section:
            try:
                values[key] = parse(section[key], f"[plugin_{name}] {key}")
            except ValueError as e:
                problems.append((errors.EXIT_USAGE, str(e)))
    if problems:
        raise errors.ConfigError(problems)
    if values.get("retry_max", 1.0) < 1.0:
        raise errors.ConfigError(f"[plugin_{name}] retry_max: expected at least 1 s")
    return WorkSettings(**values)


def _load_from_dir(name: str, directory: Path) -> ModuleType:
    """Import ``directory`` as a package under a private name, so relative imports inside it work."""
    module_name = f"event_watcher_plugin_{name}"
    spec = importlib.util.spec_from_file_location(
        module_name, directory / "__init__.py", submodule_search_locations=[str(directory)]
    )
    if spec is None or spec.loader is None:
        raise errors.PluginError(f"plugin {name!r}: cannot import {directory}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[module_name]
        raise errors.PluginError(
            f"plugin {name!r} failed to import from {directory}: {type(e).__name__}: {e}"
        ) from e
    return module


def _entry_points(group: str) -> Sequence[importlib.metadata.EntryPoint]:
    """Installed entry points in ``group``; Python 3.9 has no ``group=`` and 3.12 dropped the dict form."""
    if sys.version_info >= (3, 10):
        return importlib.metadata.entry_points(group=group)
    return importlib.metadata.entry_points().get(group, ())  # type: ignore[no-any-return, attr-defined, unused-ignore]


def find(name: str, plugin_path: Sequence[str]) -> tuple[ModuleType, str]:
    """The plugin's module and where it came from; ``PluginError`` listing every place looked."""
    looked: list[str] = []
    for base in [Path(p) for p in plugin_path] + builtin_dirs():
        for dirname in (name, f"plugin_{name}"):
            candidate = base / dirname
            looked.append(str(candidate))
            if (candidate / "__init__.py").is_file():
                return _load_from_dir(name, candidate), str(candidate)
    for entry in _entry_points(ENTRY_POINT_GROUP):
        if entry.name == name:
            try:
                return entry.load(), f"entry point {entry.value}"
            except Exception as e:
                raise errors.PluginError(
                    f"plugin {name!r}: entry point {entry.value} failed to load: {e}"
                ) from e
    looked.append(f"entry points in group {ENTRY_POINT_GROUP!r}")
    raise errors.PluginError(f"plugin {name!r} not found; looked in: {', '.join(looked)}")


def _check_contract(name: str, module: ModuleType, origin: str) -> None:
    """Refuse a plugin at load time, not at its first event (pluggy's lesson)."""
    handle = getattr(module, "handle_event", None)
    if not callable(handle):
        raise errors.PluginError(
            f"plugin {name!r} ({origin}) has no callable handle_event(watcher, event, config)"
        )
    try:
        inspect.signature(handle).bind(None, None, None)
    except TypeError:
        raise errors.PluginError(
            f"plugin {name!r} ({origin}): handle_event{inspect.signature(handle)} cannot be called as "
            "handle_event(watcher, event, config)"
        ) from None
    for optional, args in (("init", 2), ("close", 0), ("sweep", 3)):
        hook = getattr(module, optional, None)
        if hook is None:
            continue
        try:
            inspect.signature(hook).bind(*([None] * args))
        except (TypeError, ValueError):
            raise errors.PluginError(
                f"plugin {name!r} ({origin}): {optional}() must take {args} arguments"
            ) from None


def declared_secrets(module: ModuleType) -> Optional[frozenset[str]]:
    """The plugin's ``SECRET_KEYS``: the options of its section whose values are secrets (shown as
    <redacted> by --check-config); None when it declares none."""
    declared = getattr(module, "SECRET_KEYS", None)
    if declared is None:
        return None
    if isinstance(declared, str) or not all(isinstance(key, str) for key in declared):
        raise errors.PluginError("SECRET_KEYS must be a sequence of option names")
    return frozenset(declared)


def declared_keys(name: str, module: ModuleType) -> Optional[frozenset[str]]:
    """The plugin's ``KEYS`` (every option it reads) plus the core's WORK_KEYS; None: it declares none,
    and then nothing in its section can be called unknown."""
    declared = getattr(module, "KEYS", None)
    if declared is None:
        return None
    if isinstance(declared, str) or not all(isinstance(key, str) for key in declared):
        raise errors.PluginError(f"plugin {name!r}: KEYS must be a sequence of option names")
    return frozenset(declared) | {key for key, _ in WORK_KEYS}


def unknown_key_notes(name: str, module: ModuleType, section: Mapping[str, str]) -> tuple[str, ...]:
    """``unknown key dns_zonee in [plugin_dns] (did you mean dns_zone?)`` for each option the plugin does
    not declare: a typo is named here, before the plugin's init says the key it spoils is missing."""
    known = declared_keys(name, module)
    if known is None:
        return ()
    section_name = name if name.startswith("plugin_") else f"plugin_{name}"
    return tuple(
        f"unknown key {key} in [{section_name}]{config.did_you_mean(key, sorted(known))}"
        for key in sorted(section)
        if key not in known
    )


def key_notes(settings: Settings) -> list[str]:
    """The unknown keys of every plugin section of the chain, for --check-config (which starts nothing);
    a plugin that cannot be imported is the start's error to report, not this check's."""
    notes: list[str] = []
    for name in settings.plugins:
        try:
            notes += unknown_key_notes(
                name, find(name, settings.plugin_path)[0], settings.plugin_config(name)
            )
        except errors.PluginError:
            continue
    return notes


def secret_keys(settings: Settings) -> dict[str, Optional[frozenset[str]]]:
    """Per plugin of the chain (by section name), what it declares secret; a plugin that cannot be
    imported declares nothing, and --check-config then guesses by option names."""
    found: dict[str, Optional[frozenset[str]]] = {}
    for name in settings.plugins:
        section = name[len("plugin_") :] if name.startswith("plugin_") else name
        try:
            found[section] = declared_secrets(find(name, settings.plugin_path)[0])
        except errors.PluginError:
            found[section] = None
    return found


def load(settings: Settings) -> list[Plugin]:
    plugins = []
    for name in settings.plugins:
        module, origin = find(name, settings.plugin_path)
        _check_contract(name, module, origin)
        section = settings.plugin_config(name)
        work = work_settings(name, module, section)
        own = {key: value for key, value in section.items() if key not in dict(WORK_KEYS)}
        notes = unknown_key_notes(name, module, section)
        for note in notes:
            logger.warning("Ignoring %s.", note)
        plugins.append(Plugin(name, module, origin, own, work, notes))
        logger.info("Loaded plugin %s from %s (%d workers).", name, origin, work.workers)
    return plugins


def start(
    plugins: Sequence[Plugin],
    settings: Settings,
    api: Optional[PluginAPI],
    recorder: Optional[EventRecorder] = None,
) -> list[PluginContext]:
    """Give each plugin its context and run its ``init``; a refusal is a clean startup error (and the
    plugins already started are closed)."""
    contexts = []
    started: list[Plugin] = []
    for plugin in plugins:
        logger_ = logging.getLogger(f"plugins.{plugin.name}")
        context = PluginContext(plugin.name, settings, logger_, api, recorder)
        init = getattr(plugin.module, "init", None)
        if init is not None:
            try:
                init(context, plugin.config)
            except Exception as e:
                close_all(started)
                detail = "; ".join((*plugin.notes, str(e) or type(e).__name__))
                raise errors.PluginError(f"plugin {plugin.name!r} refused to start: {detail}") from e
        started.append(plugin)
        contexts.append(context)
    return contexts


def close_all(plugins: Iterable[Plugin]) -> None:
    """Every plugin's ``close``, each isolated from the others' failures."""
    for plugin in plugins:
        close = getattr(plugin.module, "close", None)
        if close is None:
            continue
        try:
            close()
        except Exception:
            logger.exception("Plugin %s failed to close.", plugin.name)


def identity(obj: Any) -> str:
    """``Route demo/web``: enough to find the object, without logging it (routes carry private keys)."""
    if not isinstance(obj, dict):
        return "<no object>"
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    name = meta.get("name", "?")
    where = f"{namespace}/{name}" if namespace else name
    return f"{obj.get('kind', '?')} {where} (resourceVersion {meta.get('resourceVersion')})"


def log_result(plugin_logger: logging.Logger, name: str, result: Any) -> None:
    """Plugins return ``(message, level)`` as in the seed; the level may be a name or a number."""
    try:
        message, level = result
    except (TypeError, ValueError):
        plugin_logger.warning(
            "Plugin %s returned %r, not (message, level) or None.", name, type(result).__name__
        )
        return
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    if not isinstance(level, int):
        level = logging.INFO
    if plugin_logger.isEnabledFor(level):
        plugin_logger.log(level, "%s", message)
