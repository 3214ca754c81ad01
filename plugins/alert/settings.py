"""The ``[plugin_alert]`` section, parsed once into frozen settings; every problem is reported at once.

Connection keys (``ca_file``, ``bearer_token_file``, ``basic_auth_user``, ``basic_auth_password_file``,
``timeout``, ``retries``) apply to every sink; the same key prefixed with ``alertmanager_`` or ``webhook_``
overrides it for that sink alone, and the override ``none`` turns it off there (an empty ini value
counts as unset). That is how a token meant for Alertmanager stays away from a third-party webhook.

A Slack webhook URL is itself a secret, so ``webhook_url_file`` (and ``alertmanager_url_file``) read the
URL from a file, such as a mounted Secret, instead of the config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from watcher import configvalues, errors

DEFAULT_RULES = str(Path(__file__).resolve().parent / "rules.yaml")
SINKS = ("alertmanager", "webhook")
WEBHOOK_FORMATS = ("json", "slack")
CONNECTION_KEYS = (
    "ca_file",
    "bearer_token_file",
    "basic_auth_user",
    "basic_auth_password_file",
    "timeout",
    "retries",
)
TOP_KEYS = (
    "rules_file",
    "repeat_interval",
    "alertmanager_url",
    "alertmanager_url_file",
    "webhook_url",
    "webhook_url_file",
    "webhook_format",
    "generator_url",
    "state_configmap",
)
KNOWN_KEYS = frozenset(
    TOP_KEYS + CONNECTION_KEYS + tuple(f"{sink}_{key}" for sink in SINKS for key in CONNECTION_KEYS)
)

DEFAULT_REPEAT = (
    3600.0  # an Event lives an hour by default (kube-apiserver --event-ttl): one reminder per life
)
DEFAULT_TIMEOUT = 2.0  # per HTTP request; a whole send (all retries) is capped at twice this
DEFAULT_RETRIES = (
    2  # after the first attempt: enough for a restart of Alertmanager, not enough to stall the watch
)
MAX_RETRIES = 10
# Where what was sent is kept across restarts: a ConfigMap of this name in the watcher's namespace.
DEFAULT_STATE_CONFIGMAP = "event-watcher-alert-state"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Endpoint:
    """Where and how one sink posts. Secrets stay in their files and are read at each request."""

    url: str
    ca_file: Optional[str] = None
    bearer_token_file: Optional[str] = None
    basic_auth_user: Optional[str] = field(default=None, repr=False)
    basic_auth_password_file: Optional[str] = None
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES

    @property
    def display(self) -> str:
        """``https://hooks.example.com:443``: a Slack webhook's path *is* its secret, so it is never shown."""
        return display_url(self.url)


@dataclass(frozen=True)
class AlertSettings:
    rules_file: str = DEFAULT_RULES
    repeat_interval: float = DEFAULT_REPEAT
    alertmanager: Optional[Endpoint] = None
    webhook: Optional[Endpoint] = None
    webhook_format: str = "json"
    generator_url: Optional[str] = None  # a template; None: the watched object's API URL
    state_configmap: Optional[str] = DEFAULT_STATE_CONFIGMAP  # None: "none", kept in memory only


def display_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def parse_duration(value: str, key: str) -> float:
    """``90s``, ``15m``, ``1h``, ``1h30m``, ``500ms``, ``2d`` or plain seconds (``300``, ``1.5``)."""
    seconds = configvalues.duration(value, key)
    if not seconds > 0:
        raise ValueError(f"{key}: {value!r} must be more than zero")
    return seconds


def load(config: Mapping[str, str]) -> AlertSettings:
    """Build the settings or raise ``PluginError`` naming every bad key."""
    problems: list[str] = []

    def get(key: str) -> Optional[str]:
        value = config.get(key)
        return value.strip() if value is not None and value.strip() else None

    repeat = DEFAULT_REPEAT
    if get("repeat_interval"):
        try:
            repeat = parse_duration(config["repeat_interval"], "repeat_interval")
        except ValueError as e:
            problems.append(str(e))
    rules_file = get("rules_file") or DEFAULT_RULES
    webhook_format = (get("webhook_format") or "json").lower()
    if webhook_format not in WEBHOOK_FORMATS:
        problems.append(
            f"webhook_format: {config['webhook_format']!r} is not one of {', '.join(WEBHOOK_FORMATS)}"
        )
    state_configmap: Optional[str] = get("state_configmap") or DEFAULT_STATE_CONFIGMAP
    if state_configmap == "none":
        state_configmap = None
    elif state_configmap is not None and (
        len(state_configmap) > 253 or not _DNS_SUBDOMAIN.match(state_configmap)
    ):
        problems.append(f"state_configmap: {state_configmap!r} is not a valid ConfigMap name (or none)")
    endpoints = {sink: _endpoint(config, sink, problems) for sink in SINKS}
    if not any(endpoints.values()) and not problems:
        problems.append(
            "set alertmanager_url or webhook_url (or their _file forms): without a sink, alerts go nowhere"
        )
    if problems:
        raise errors.PluginError([(errors.EXIT_PLUGIN, f"[plugin_alert] {p}") for p in problems])
    return AlertSettings(
        rules_file=rules_file,
        repeat_interval=repeat,
        alertmanager=endpoints["alertmanager"],
        webhook=endpoints["webhook"],
        webhook_format=webhook_format,
        generator_url=get("generator_url"),
        state_configmap=state_configmap,
    )


def _url(config: Mapping[str, str], sink: str, problems: list[str]) -> Optional[str]:
    """``<sink>_url``, or the content of ``<sink>_url_file``; the URL itself never appears in a message."""
    key, file_key = f"{sink}_url", f"{sink}_url_file"
    url = config.get(key, "").strip()
    path = config.get(file_key, "").strip()
    if url and path:
        problems.append(f"{key} and {file_key} exclude each other, set only one")
        return None
    if path:
        problem = _check_file(file_key, path)
        if problem:
            problems.append(problem)
            return None
        key, url = file_key, read_secret(path)
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"{key}: must be an http:// or https:// URL with a host")
        return None
    return url


def _endpoint(config: Mapping[str, str], sink: str, problems: list[str]) -> Optional[Endpoint]:
    url = _url(config, sink, problems)
    if url is None:
        return None

    def setting(key: str) -> tuple[str, Optional[str]]:
        """The sink's own key wins over the shared one; its value ``none`` means: none for this sink."""
        own = f"{sink}_{key}"
        name = own if own in config else key
        value = config.get(name, "").strip()
        return name, None if not value or value.lower() == "none" else value

    values: dict[str, object] = {}
    for key in ("ca_file", "bearer_token_file", "basic_auth_password_file"):
        name, path = setting(key)
        if path is not None:
            problem = _check_file(name, path)
            if problem:
                problems.append(problem)
        values[key] = path
    _, values["basic_auth_user"] = setting("basic_auth_user")
    if values["bearer_token_file"] and (values["basic_auth_user"] or values["basic_auth_password_file"]):
        problems.append(f"{sink}: bearer_token_file and basic auth exclude each other, set only one")
    if bool(values["basic_auth_user"]) != bool(values["basic_auth_password_file"]):
        problems.append(f"{sink}: basic auth needs both basic_auth_user and basic_auth_password_file")
    name, timeout = setting("timeout")
    values["timeout"] = DEFAULT_TIMEOUT
    if timeout is not None:
        try:
            values["timeout"] = parse_duration(timeout, name)
        except ValueError as e:
            problems.append(str(e))
    name, retries = setting("retries")
    values["retries"] = DEFAULT_RETRIES
    if retries is not None:
        if retries.isdigit() and int(retries) <= MAX_RETRIES:
            values["retries"] = int(retries)
        else:
            problems.append(f"{name}: {retries!r} must be a whole number from 0 to {MAX_RETRIES}")
    if sink == "alertmanager" and not urlsplit(url).path.rstrip("/").endswith("/api/v2/alerts"):
        url = url.rstrip("/") + "/api/v2/alerts"
    return Endpoint(url=url, **values)  # type: ignore[arg-type]


def _check_file(key: str, path: str) -> Optional[str]:
    """Read it once now so that a wrong path fails at start-up, not at the first alert."""
    if not os.path.isfile(path):
        return f"{key}: {path} is not a file"
    try:
        with open(path, "rb") as f:
            content = f.read()
    except OSError as e:
        return f"{key}: cannot read {path}: {e.strerror or e}"
    if not content.strip():
        return f"{key}: {path} is empty"
    return None


def read_secret(path: str) -> str:
    """The file's content without the trailing newline editors and ``kubectl create secret`` leave."""
    with open(path, encoding="utf-8") as f:
        return f.read().strip()
