"""The settings: one frozen object, built once at start by the pure function ``load``.

Every value has exactly one source, highest first: environment variables, the ini file's
``[global]`` section, the in-cluster serviceaccount files, the current kubeconfig context, then the
defaults. ``KEYS`` is the single table of settings (env var, ini key, parser, default, doc); the
README and ``conf/config.ini.sample`` are checked against it by a test.

Two groups move together instead of key by key, because mixing layers there would be wrong:
- credentials (token, token file, client certificate/key): the highest layer that has any of them
  supplies all of them, so an explicit ``K8S_TOKEN`` is never sent alongside a kubeconfig client
  certificate that the API server would prefer;
- the CA (file or inline data): the highest layer that has one supplies it.
The kubeconfig's ``insecure-skip-tls-verify`` only applies when the endpoint also comes from that
kubeconfig: it was a decision about that server, not about whatever ``K8S_API_ENDPOINT`` says.

``load`` reports every problem at once (``errors.ConfigError`` with ``(exit_code, message)`` pairs,
the most specific first) so a user fixes a bad config in one go. No message ever contains a token.
"""

from __future__ import annotations

import configparser
import difflib
import os
import pathlib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Optional

from watcher import configvalues as parse
from watcher import errors, kubeconfig

# The public spellings: plugins call config.parse_bool(value, key).
parse_bool = parse.parse_bool
normalize_endpoint = parse.normalize_endpoint

SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CONFIG_FILE_ENV = "CONFIG_FILE"
GLOBAL_SECTION = "global"
PLUGIN_SECTION_PREFIX = "plugin_"
ENV_REFERENCE_PREFIX = "$env:"
REDACTED = "<redacted>"
SOURCES = ("env", "ini", "serviceaccount", "kubeconfig", "default")
# For a plugin that does not declare its SECRET_KEYS (or could not be imported to ask): option names
# that may hold a password, a TSIG secret, an API key, or a URL that is its own credential (a
# Slack-style webhook, a Sentry DSN). A plugin's declaration replaces the guess.
SECRET_WORDS = ("password", "secret", "token", "key", "url", "dsn", "credential")


# --- the table ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One setting: where it is read from, how it is parsed, what it defaults to, and why."""

    name: str  # the Settings field
    env: str
    ini: str
    parse: Callable[[str, str], Any]
    default: Any
    doc: str
    secret: bool = False
    exit_code: int = errors.EXIT_USAGE  # for an invalid value


# fmt: off
KEYS: tuple[Key, ...] = (
    Key("endpoint", "K8S_API_ENDPOINT", "k8s_api_endpoint", parse.endpoint, None,
        "API server, host:port or https://host:port; default: in a pod KUBERNETES_SERVICE_HOST/PORT, "
        "else the kubeconfig server", exit_code=errors.EXIT_ENDPOINT),
    Key("token", "K8S_TOKEN", "k8s_token", parse.token, None,
        "bearer token (oc whoami -t)", secret=True, exit_code=errors.EXIT_TOKEN),
    Key("token_file", "K8S_TOKEN_FILE", "k8s_token_file", parse.path, None,
        "token file, re-read on 401 and every minute; default: the serviceaccount token",
        exit_code=errors.EXIT_TOKEN),
    Key("ca_file", "K8S_CA", "k8s_ca", parse.path, None,
        "CA bundle; default: serviceaccount ca.crt, else the kubeconfig CA, else system trust"),
    Key("namespace", "K8S_NAMESPACE", "k8s_namespace", parse.namespace, None,
        "namespace to watch; default: the serviceaccount namespace, else the kubeconfig context's",
        exit_code=errors.EXIT_NAMESPACE),
    Key("namespaced", "K8S_NAMESPACED", "k8s_namespaced", parse.optional_flag, None,
        "false watches across all namespaces; default: from discovery"),
    Key("resource", "K8S_RESOURCE", "k8s_resource", parse.resource, None,
        "plural resource name such as routes, services, events; required",
        exit_code=errors.EXIT_RESOURCE),
    Key("api_group", "K8S_API_GROUP", "k8s_api_group", parse.api_group, None,
        "API group such as route.openshift.io; default: discovered (the legacy api and oapi work)"),
    Key("api_version", "K8S_API_VERSION", "k8s_api_version", parse.api_version, None,
        "API version such as v1; default: discovered"),
    Key("api_path", "K8S_API_PATH", "k8s_api_path", parse.api_path, None,
        "full API path override, as in the 2017 original"),
    Key("label_selector", "K8S_LABEL_SELECTOR", "k8s_label_selector", parse.text, None,
        "label selector passed to LIST and WATCH"),
    Key("field_selector", "K8S_FIELD_SELECTOR", "k8s_field_selector", parse.text, None,
        "field selector passed to LIST and WATCH"),
    Key("insecure_skip_tls_verify", "K8S_INSECURE_SKIP_TLS_VERIFY", "k8s_insecure_skip_tls_verify",
        parse.flag, False, "skip TLS verification: explicit opt-in only, never a fallback"),
    Key("plugins", "WATCHER_PLUGIN", "watcher_plugin", parse.plugins, ("simple",),
        "comma-separated plugin chain, run in order"),
    Key("plugin_path", "WATCHER_PLUGIN_PATH", "plugin_path", parse.plugin_path, (),
        "extra plugin directories (os.pathsep-separated), searched before the built-in plugins"),
    Key("resync_period", "WATCHER_RESYNC_PERIOD", "resync_period", parse.seconds, 0.0,
        "seconds; > 0 hands every cached object to the plugins again (as MODIFIED, unless it has work "
        "waiting) that often, to repair drift; 0 disables"),
    Key("keep_managed_fields", "WATCHER_KEEP_MANAGED_FIELDS", "keep_managed_fields", parse.flag, False,
        "true keeps metadata.managedFields and the kubectl last-applied-configuration annotation in "
        "the cache and in the events plugins get; by default both are dropped (most of an object)"),
    Key("watch_timeout", "WATCHER_WATCH_TIMEOUT", "watch_timeout", parse.positive_seconds, 300.0,
        "seconds each WATCH asks the server to stay open (jittered +-10 %); a stream silent 30 s "
        "longer is taken for dead and resumed; lower it behind proxies that cut idle streams sooner"),
    Key("log_level", "LOG_LEVEL", "log_level", parse.log_level, "INFO",
        "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    Key("log_format", "LOG_FORMAT", "log_format", parse.log_format, "text",
        "text, or json for one JSON object per line"),
    Key("metrics_port", "WATCHER_METRICS_PORT", "metrics_port", parse.port, 8080,
        "port of the /metrics and health endpoints; 0 disables"),
    Key("metrics_address", "WATCHER_METRICS_ADDRESS", "metrics_address", parse.address, "127.0.0.1",
        "address the /metrics and health endpoints listen on; default: 0.0.0.0 in a pod (where the "
        "kubelet probes the pod IP), else 127.0.0.1"),
    Key("leader_election", "WATCHER_LEADER_ELECTION", "leader_election", parse.flag, False,
        "true: only the replica holding the Lease watches"),
    Key("leader_election_name", "WATCHER_LEADER_ELECTION_NAME", "leader_election_name", parse.lease_name,
        "event-watcher", "name of the Lease used for leader election"),
    Key("shutdown_grace", "WATCHER_SHUTDOWN_GRACE", "shutdown_grace", parse.seconds, 20.0,
        "seconds plugin calls in flight may take to finish on SIGTERM; keep it below the pod's "
        "terminationGracePeriodSeconds"),
    Key("record_events", "WATCHER_RECORD_EVENTS", "record_events", parse.flag, True,
        "true: the built-in plugins post Kubernetes Events on the objects they act on (needs create and "
        "patch on events)"),
)
# fmt: on
_BY_NAME = {key.name: key for key in KEYS}
_BY_INI = {key.ini: key for key in KEYS}
# Fields that come in a group from one layer (see the module docstring).
_CREDENTIALS = (
    "token",
    "token_file",
    "client_cert_file",
    "client_cert_data",
    "client_key_file",
    "client_key_data",
)
_CA = ("ca_file", "ca_data")


# --- the settings object -----------------------------------------------------------------------------


SAMPLE_NAME = "config.ini.sample"
INVALID = "invalid"  # the source of a setting whose value did not parse (the problem says why)
_EMPTY: Mapping[str, str] = types.MappingProxyType({})
_NO_SECTIONS: Mapping[str, Mapping[str, str]] = types.MappingProxyType({})


@dataclass(frozen=True, repr=False)
class Settings:
    """Everything the daemon needs, validated; secrets are kept out of ``repr``."""

    endpoint: str
    resource: str
    token: Optional[str] = field(default=None, repr=False)
    token_file: Optional[str] = None
    ca_file: Optional[str] = None
    ca_data: Optional[bytes] = field(default=None, repr=False)
    client_cert_file: Optional[str] = None
    client_key_file: Optional[str] = None
    client_cert_data: Optional[bytes] = field(default=None, repr=False)
    client_key_data: Optional[bytes] = field(default=None, repr=False)
    insecure_skip_tls_verify: bool = False
    namespace: Optional[str] = None
    namespaced: Optional[bool] = None  # None: decided by discovery (which then requires a namespace)
    api_group: Optional[str] = None  # "": the core group; None: discovered
    api_version: Optional[str] = None
    api_path: Optional[str] = None
    legacy_oapi: bool = False  # the seed's "oapi": look among the *.openshift.io groups
    label_selector: Optional[str] = None
    field_selector: Optional[str] = None
    plugins: tuple[str, ...] = ("simple",)
    plugin_path: tuple[str, ...] = ()
    resync_period: float = 0.0
    keep_managed_fields: bool = False
    watch_timeout: float = 300.0
    log_level: str = "INFO"
    log_format: str = "text"
    metrics_port: int = 8080
    metrics_address: str = "127.0.0.1"
    leader_election: bool = False
    leader_election_name: str = "event-watcher"
    shutdown_grace: float = 20.0
    record_events: bool = True
    dry_run: bool = False  # --dry-run only: plugins read and decide but change nothing outside
    # Plugin sections hold passwords: out of repr.
    plugin_configs: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: _NO_SECTIONS, repr=False)
    sources: Mapping[str, str] = field(default_factory=lambda: _EMPTY, repr=False)
    config_file: Optional[str] = None
    kubeconfig_context: Optional[str] = None  # "context in file" when the kubeconfig layer was used
    unknown_keys: tuple[str, ...] = ()  # [global] keys nobody reads: cli logs a WARNING naming them
    unknown_sections: tuple[str, ...] = ()  # sections that are neither [global] nor [plugin_<name>]
    notes: tuple[str, ...] = ()  # those, and unused sections and env vars, as sentences with "did you mean"
    env_references: tuple[tuple[str, str, str], ...] = ()  # (section, key, env var) of `$env:` values
    plugin_env: tuple[
        tuple[str, str, str], ...
    ] = ()  # (section, key, env var) of WATCHER_PLUGIN_<NAME>_<KEY>

    def __repr__(self) -> str:
        """Like the dataclass repr (secret fields left out), and values pulled in with $env: hidden."""
        referenced = {key: var for section, key, var in self.env_references if section == GLOBAL_SECTION}
        parts = []
        for f in fields(self):
            if not f.repr:
                continue
            key = _BY_NAME.get(f.name)
            if key and self.sources.get(f.name) == "ini" and key.ini in referenced:
                parts.append(f"{f.name}=<from ${referenced[key.ini]}>")
            else:
                parts.append(f"{f.name}={getattr(self, f.name)!r}")
        return f"Settings({', '.join(parts)})"

    # The 2017 original's attribute names, kept for plugins written against it.
    @property
    def k8s_endpoint(self) -> str:
        return self.endpoint

    @property
    def k8s_namespace(self) -> Optional[str]:
        return self.namespace

    @property
    def k8s_resource(self) -> str:
        return self.resource

    @property
    def k8s_ca(self) -> Optional[str]:
        return self.ca_file

    @property
    def k8s_token(self) -> Optional[str]:
        """The token to use now: the fixed one, or the token file as it reads at this moment."""
        if self.token:
            return self.token
        if self.token_file:
            try:
                with open(self.token_file, encoding="utf-8") as f:
                    return f.read().strip() or None
            except (OSError, ValueError):
                return None
        return None

    def credentials(self) -> str:
        """What the API server was shown, for the message when it refuses it: telling a user of a
        kubeconfig client certificate to "check K8S_TOKEN" sends them the wrong way."""
        where = {"env": "K8S_TOKEN", "ini": f"k8s_token in {self.config_file}"}
        if self.token:
            source = self.sources.get("token", "")
            if source == "kubeconfig":
                return f"the token of kubeconfig context {self.kubeconfig_context} (log in again: `oc login`)"
            return f"the token from {where.get(source, source)}"
        if self.client_cert_file or self.client_cert_data:
            cert = self.client_cert_file or "client-certificate-data"
            context = f" of kubeconfig context {self.kubeconfig_context}" if self.kubeconfig_context else ""
            return (
                f"the client certificate {cert}{context}: is it signed by the cluster's client CA, unexpired?"
            )
        return "the credentials: none is configured (set K8S_TOKEN or K8S_TOKEN_FILE, or `oc login`)"

    def plugin_config(self, name: str) -> Mapping[str, str]:
        """The ``[plugin_<name>]`` section; the seed's directory names (``plugin_simple``) work too."""
        if name in self.plugin_configs:
            return self.plugin_configs[name]
        if name.startswith(PLUGIN_SECTION_PREFIX):
            return self.plugin_configs.get(name[len(PLUGIN_SECTION_PREFIX) :], _EMPTY)
        return _EMPTY


# --- loading -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    """One layer's offer for a setting: a raw string still to parse (env, ini) or a ready value."""

    source: str
    label: str
    raw: Optional[str] = field(default=None, repr=False)
    value: Any = field(default=None, repr=False)
    hidden: bool = False  # the raw value came from another env var through $env: and may be a secret


class _Problems:
    """Collected (exit code, one-line message) pairs, ordered most specific first when raised."""

    _RANK: ClassVar[dict[int, int]] = {
        errors.EXIT_RESOURCE: 0,
        errors.EXIT_NAMESPACE: 1,
        errors.EXIT_ENDPOINT: 2,
        errors.EXIT_TOKEN: 3,
    }

    def __init__(self) -> None:
        self.items: list[tuple[int, str]] = []
        self.failed: set[str] = set()  # settings whose value was bad: no "missing" problem for them

    def add(self, code: int, message: str, setting: Optional[str] = None) -> None:
        # No trailing full stop: ConfigError joins the messages with "; ".
        self.items.append((code, _one_line(message).rstrip(".")))
        if setting:
            self.failed.add(setting)

    def raise_if_any(
        self,
        cls: type[errors.ConfigError] = errors.ConfigError,
        hints: tuple[str, ...] = (),
        partial: Optional[Callable[[], Settings]] = None,
    ) -> None:
        """``hints`` (typos that likely caused the problems) come first, with the exit code of the
        most specific problem, so a missing k8s_resource is explained by the k8s_resourse next to it.
        ``partial`` builds the settings as far as they resolved, carried by the error."""
        if self.items:
            ordered = sorted(self.items, key=lambda item: self._RANK.get(item[0], len(self._RANK)))
            raise cls([(ordered[0][0], hint) for hint in hints] + ordered, partial=partial and partial())


def _hide_value(message: str, raw: str, label: str) -> str:
    """A value pulled in with ``$env:NAME`` may be a secret put in the wrong key: never quote it."""
    for form in (parse.shown(raw), parse.shown(raw.strip())):
        message = message.replace(form, "the value")
    if raw.strip() and raw.strip() in message:
        return f"{label}: invalid value"
    return message


def _one_line(message: str) -> str:
    """Paths and names from the outside can hold control characters: keep each message on one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def load(
    environ: Mapping[str, str],
    ini_path: Optional[str],
    *,
    serviceaccount_dir: str = SERVICEACCOUNT_DIR,
    home: Optional[str] = None,
) -> Settings:
    """Build the settings from ``environ``, the ini file and the files they name; nothing else.

    Raises ``errors.UsageError`` when the ini file or a kubeconfig cannot be read or parsed (other
    problems would only be consequences of that), else ``errors.ConfigError`` listing every problem.
    """
    env = {name: value for name, value in environ.items() if value.strip()}  # empty counts as unset
    if ini_path is None:
        ini_path = env.get(CONFIG_FILE_ENV)
    file_problems = _Problems()
    ini = _Ini.read(ini_path, file_problems)
    if home is None:
        home = env.get("HOME")
    kube: Optional[kubeconfig.KubeContext] = None
    kube_files = kubeconfig.paths(env, home)
    try:
        kube = kubeconfig.load(kube_files)
    except errors.ConfigError as e:
        for code, message in e.problems:
            file_problems.add(code, message)
    file_problems.raise_if_any(errors.UsageError)

    problems = _Problems()
    offers = _Offers()
    for key in KEYS:
        if key.env in env:
            offers.add(key.name, _Candidate("env", key.env, raw=env[key.env]))
    ini_global = ini.global_values(env, problems)
    for ini_key, value in ini_global.items():
        label = f"{ini_key} in [{GLOBAL_SECTION}] of {ini.path}"
        variable = ini.references.get((GLOBAL_SECTION, ini_key))
        if variable:
            label += f" ($env:{variable})"
        offers.add(_BY_INI[ini_key].name, _Candidate("ini", label, raw=value, hidden=bool(variable)))
    _serviceaccount(serviceaccount_dir, env, offers, problems)
    _pod_defaults(env, offers)
    if kube is not None:
        _kubeconfig(kube, offers)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def settle(name: str, candidate: Optional[_Candidate]) -> None:
        if candidate is None:
            key = _BY_NAME.get(name)
            values[name] = key.default if key else None
            sources[name] = "default"
            return
        sources[name] = candidate.source
        if candidate.raw is None:
            values[name] = candidate.value
            return
        key = _BY_NAME[name]
        try:
            values[name] = key.parse(candidate.raw, candidate.label)
        except ValueError as e:
            message = _hide_value(str(e), candidate.raw, candidate.label) if candidate.hidden else str(e)
            problems.add(key.exit_code, message, name)
            values[name] = key.default
            sources[name] = f"{INVALID}, {candidate.source}"  # only a partial Settings shows it

    grouped = set(_CREDENTIALS) | set(_CA) | {"insecure_skip_tls_verify"}
    for key in KEYS:
        if key.name not in grouped:
            settle(key.name, offers.best(key.name))
    for group in (_CREDENTIALS, _CA):
        source = offers.best_source(group)
        for name in group:
            settle(name, offers.get(name, source) if source else None)
    _check_same_layer_tokens(offers, sources, problems)
    insecure = offers.best("insecure_skip_tls_verify")
    if insecure is not None and insecure.source == "kubeconfig" and sources["endpoint"] != "kubeconfig":
        insecure = None
    settle("insecure_skip_tls_verify", insecure)

    legacy_oapi = _split_resource_and_group(values, sources, problems)
    no_context = None if kube else kubeconfig.why_no_context(kube_files, bool(env.get("KUBECONFIG")))
    _validate(values, sources, kube, offers, problems, no_context)
    plugin_configs, plugin_env = _plugin_env(
        env, values.get("plugins") or (), ini.plugin_sections(env, problems)
    )
    notes = _unknown_notes(ini, env, values.get("plugins") or ())
    _check_plugin_path(values.get("plugin_path") or (), sources, offers, problems)

    def settings() -> Settings:
        return Settings(
            **{name: values[name] for name in values if name in Settings.__dataclass_fields__},
            legacy_oapi=legacy_oapi,
            plugin_configs=plugin_configs,
            plugin_env=plugin_env,
            sources=types.MappingProxyType(dict(sources)),
            config_file=ini.path,
            kubeconfig_context=(
                f"{kube.context} in {kube.path}"
                if kube is not None and "kubeconfig" in sources.values()
                else None
            ),
            unknown_keys=ini.unknown_keys(),
            unknown_sections=ini.unknown_sections(),
            notes=notes,
            env_references=tuple(sorted((s, k, v) for (s, k), v in ini.references.items())),
        )

    problems.raise_if_any(hints=tuple(note for note in notes if "did you mean" in note), partial=settings)
    return settings()


class _Offers:
    """Per setting, what each layer offers, in precedence order."""

    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, _Candidate]] = {}

    def add(self, name: str, candidate: _Candidate) -> None:
        self._by_name.setdefault(name, {}).setdefault(candidate.source, candidate)

    def get(self, name: str, source: str) -> Optional[_Candidate]:
        return self._by_name.get(name, {}).get(source)

    def best(self, name: str) -> Optional[_Candidate]:
        offered = self._by_name.get(name, {})
        for source in SOURCES:
            if source in offered:
                return offered[source]
        return None

    def best_source(self, names: tuple[str, ...]) -> Optional[str]:
        for source in SOURCES:
            if any(self.get(name, source) for name in names):
                return source
        return None


class _Ini:
    """The ini file: ``[global]`` for the daemon, ``[plugin_<name>]`` for each plugin."""

    def __init__(self, path: Optional[str], parser: Optional[configparser.ConfigParser]) -> None:
        self.path = path
        self.parser = parser
        self.references: dict[tuple[str, str], str] = {}  # (section, key) -> env var of a $env: value

    @classmethod
    def read(cls, path: Optional[str], problems: _Problems) -> _Ini:
        if not path:
            return cls(None, None)
        # "#" after whitespace starts a comment, as the 2017 sample file assumed
        # (``dns_server=    # DNS server holding records``).
        parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#",))
        try:
            with open(path, encoding="utf-8") as f:
                parser.read_file(f, source=path)
        except UnicodeDecodeError:
            problems.add(errors.EXIT_USAGE, f"cannot read config file {path}: it is not UTF-8 text.")
            return cls(path, None)
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else "invalid path"
            problems.add(errors.EXIT_USAGE, f"cannot read config file {path}: {reason}.")
            return cls(path, None)
        except configparser.Error as e:
            problems.add(errors.EXIT_USAGE, f"cannot parse config file {path}: {_ini_error(e)}.")
            return cls(path, None)
        return cls(path, parser)

    def _section(self, name: str, env: Mapping[str, str], problems: _Problems) -> dict[str, str]:
        if self.parser is None or not self.parser.has_section(name):
            return {}
        resolved: dict[str, str] = {}
        for key, value in self.parser.items(name):
            value = value.strip()
            if value.startswith(ENV_REFERENCE_PREFIX):
                # Secrets stay out of the file: ``ipa_password = $env:IPA_PASSWORD``.
                variable = value[len(ENV_REFERENCE_PREFIX) :].strip()
                if variable not in env:
                    setting = _BY_INI[key].name if name == GLOBAL_SECTION and key in _BY_INI else None
                    code = _BY_INI[key].exit_code if setting else errors.EXIT_USAGE
                    problems.add(
                        code,
                        f"{key} in [{name}] of {self.path} refers to the environment variable {variable}, "
                        "which is not set",
                        setting,
                    )
                    continue
                value = env[variable]
                self.references[(name, key)] = variable
            if value:  # an empty value counts as unset, like an empty env var
                resolved[key] = value
        return resolved

    def global_values(self, env: Mapping[str, str], problems: _Problems) -> dict[str, str]:
        return {k: v for k, v in self._section(GLOBAL_SECTION, env, problems).items() if k in _BY_INI}

    def unknown_keys(self) -> tuple[str, ...]:
        if self.parser is None or not self.parser.has_section(GLOBAL_SECTION):
            return ()
        return tuple(key for key, _ in self.parser.items(GLOBAL_SECTION) if key not in _BY_INI)

    def unknown_sections(self) -> tuple[str, ...]:
        if self.parser is None:
            return ()
        return tuple(
            name
            for name in self.parser.sections()
            if name != GLOBAL_SECTION
            and not (name.startswith(PLUGIN_SECTION_PREFIX) and len(name) > len(PLUGIN_SECTION_PREFIX))
        )

    def plugin_sections(self, env: Mapping[str, str], problems: _Problems) -> Mapping[str, Mapping[str, str]]:
        sections: dict[str, Mapping[str, str]] = {}
        if self.parser is not None:
            for name in self.parser.sections():
                if name.startswith(PLUGIN_SECTION_PREFIX) and len(name) > len(PLUGIN_SECTION_PREFIX):
                    values = self._section(name, env, problems)
                    sections[name[len(PLUGIN_SECTION_PREFIX) :]] = types.MappingProxyType(values)
        return types.MappingProxyType(sections)


def _ini_error(e: configparser.Error) -> str:
    """configparser's own messages quote whole lines, which may hold a token: keep names and numbers."""
    if isinstance(e, configparser.MissingSectionHeaderError):
        return f"line {e.lineno} comes before any [section] header (start the file with [{GLOBAL_SECTION}])"
    if isinstance(e, configparser.DuplicateOptionError):
        return f"key {e.option!r} appears twice in [{e.section}] (line {e.lineno})"
    if isinstance(e, configparser.DuplicateSectionError):
        return f"section [{e.section}] appears twice (line {e.lineno})"
    if isinstance(e, configparser.ParsingError):
        lines = ", ".join(str(lineno) for lineno, _ in e.errors[:5])
        return f"cannot understand line {lines} (expected key = value)"
    return type(e).__name__


def _serviceaccount(directory: str, env: Mapping[str, str], offers: _Offers, problems: _Problems) -> None:
    """In a pod: the mounted token, CA and namespace, and the endpoint kubelet puts in the environment."""
    try:
        present = os.path.isdir(directory)
    except ValueError:
        present = False
    if not present:
        return
    label = f"serviceaccount {directory}"
    token = os.path.join(directory, "token")
    if os.path.isfile(token):
        offers.add("token_file", _Candidate("serviceaccount", label, value=token))
    ca = os.path.join(directory, "ca.crt")
    if os.path.isfile(ca):
        offers.add("ca_file", _Candidate("serviceaccount", label, value=ca))
    namespace_file = os.path.join(directory, "namespace")
    if os.path.isfile(namespace_file):
        try:
            with open(namespace_file, encoding="utf-8") as f:
                namespace = f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else "not UTF-8 text"
            problems.add(errors.EXIT_NAMESPACE, f"cannot read {namespace_file}: {reason}.", "namespace")
        else:
            if namespace:
                offers.add("namespace", _Candidate("serviceaccount", namespace_file, raw=namespace))
    host = env.get("KUBERNETES_SERVICE_HOST", "").strip()
    if host:
        port = env.get("KUBERNETES_SERVICE_PORT", "").strip() or "443"
        address = f"[{host}]" if ":" in host and not host.startswith("[") else host
        offers.add(
            "endpoint",
            _Candidate(
                "serviceaccount", "KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT", raw=f"{address}:{port}"
            ),
        )


def sample_path() -> pathlib.Path:
    """``conf/config.ini.sample``: beside the package in a checkout, ``watcher/conf`` once installed."""
    package = pathlib.Path(__file__).resolve().parent
    for candidate in (package / "conf" / SAMPLE_NAME, package.parent / "conf" / SAMPLE_NAME):
        if candidate.is_file():
            return candidate
    raise errors.UsageError(f"{SAMPLE_NAME} is missing from this installation ({package})")


def did_you_mean(word: str, choices: Any) -> str:
    """`` (did you mean k8s_resource?)`` for the closest choice, or nothing when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.7)
    return f" (did you mean {close[0]}?)" if close else ""


def _unknown_notes(ini: _Ini, env: Mapping[str, str], chain: tuple[str, ...]) -> tuple[str, ...]:
    """Whatever nobody will read: unknown [global] keys, sections of plugins not in the chain, and
    K8S_*/WATCHER_* variables that are no setting; each named with its likely intended spelling."""
    notes = [
        f"unknown key {key} in [{GLOBAL_SECTION}] of {ini.path}{did_you_mean(key, _BY_INI)}"
        for key in ini.unknown_keys()
    ]
    sections = [PLUGIN_SECTION_PREFIX + p for p in chain]
    notes += [
        f"unknown section [{name}] in {ini.path}{did_you_mean(name, sections)}"
        for name in ini.unknown_sections()
    ]
    in_chain = {p[len(PLUGIN_SECTION_PREFIX) :] if p.startswith(PLUGIN_SECTION_PREFIX) else p for p in chain}
    if ini.parser is not None:
        for name in ini.parser.sections():
            plugin = name[len(PLUGIN_SECTION_PREFIX) :]
            if name.startswith(PLUGIN_SECTION_PREFIX) and plugin and plugin not in in_chain:
                hint = did_you_mean(name, [PLUGIN_SECTION_PREFIX + p for p in sorted(in_chain)])
                notes.append(
                    f"section [{name}] in {ini.path} is for plugin {plugin}, which is not in the chain "
                    f"(watcher_plugin = {', '.join(chain)}){hint}"
                )
    known_env = {key.env for key in KEYS} | {CONFIG_FILE_ENV}
    prefixes = tuple(plugin_env_prefix(p) for p in chain)
    for variable in sorted(env):
        ours = variable.startswith(("K8S_", "WATCHER_")) and not variable.startswith(prefixes)
        if ours and variable not in known_env:
            notes.append(f"unknown environment variable {variable}{did_you_mean(variable, known_env)}")
    return tuple(notes)


def _check_plugin_path(
    paths: tuple[str, ...], sources: Mapping[str, str], offers: _Offers, problems: _Problems
) -> None:
    """A plugin directory that does not exist is a typo, not an empty directory."""
    for directory in paths:
        if not os.path.isdir(directory):
            label = _label(offers, "plugin_path", sources)
            problems.add(
                errors.EXIT_USAGE, f"{label}: the plugin directory {directory} does not exist", "plugin_path"
            )


def plugin_env_prefix(plugin: str) -> str:
    """``WATCHER_PLUGIN_HELLO_`` for plugin ``hello`` (the seed's ``plugin_hello`` too)."""
    if plugin.startswith(PLUGIN_SECTION_PREFIX):
        plugin = plugin[len(PLUGIN_SECTION_PREFIX) :]
    return "WATCHER_PLUGIN_" + "".join(c if c.isalnum() else "_" for c in plugin.upper()) + "_"


def _plugin_env(
    env: Mapping[str, str], chain: tuple[str, ...], sections: Mapping[str, Mapping[str, str]]
) -> tuple[Mapping[str, Mapping[str, str]], tuple[tuple[str, str, str], ...]]:
    """``[plugin_<name>]`` keys from the environment, over the ini's: ``WATCHER_PLUGIN_HELLO_GREETING``
    sets ``greeting`` of plugin ``hello`` in the chain (a container is configured by env alone). Only
    plugins in the chain are looked for, so a plugin name with an underscore splits unambiguously."""
    merged = {name: dict(values) for name, values in sections.items()}
    found: list[tuple[str, str, str]] = []
    for plugin in chain:
        prefix = plugin_env_prefix(plugin)
        section = plugin[len(PLUGIN_SECTION_PREFIX) :] if plugin.startswith(PLUGIN_SECTION_PREFIX) else plugin
        for variable, value in sorted(env.items()):
            if variable.startswith(prefix) and len(variable) > len(prefix):
                key = variable[len(prefix) :].lower()
                merged.setdefault(section, {})[key] = value
                found.append((f"{PLUGIN_SECTION_PREFIX}{section}", key, variable))
    frozen = types.MappingProxyType({name: types.MappingProxyType(v) for name, v in merged.items()})
    return frozen, tuple(found)


def _pod_defaults(env: Mapping[str, str], offers: _Offers) -> None:
    """In a pod (the kubelet sets KUBERNETES_SERVICE_HOST in every one) the probes come from the node
    to the pod IP: listen on every interface. Elsewhere, a laptop: only on loopback."""
    if env.get("KUBERNETES_SERVICE_HOST", "").strip():
        everywhere = _Candidate("serviceaccount", "KUBERNETES_SERVICE_HOST", value="0.0.0.0")
        offers.add("metrics_address", everywhere)


def _kubeconfig(kube: kubeconfig.KubeContext, offers: _Offers) -> None:
    label = f"kubeconfig {kube.path} (context {kube.context!r})"

    def offer(name: str, value: Any, raw: bool = False) -> None:
        if value is None or value == "":
            return
        if raw:
            offers.add(name, _Candidate("kubeconfig", label, raw=value))
        else:
            offers.add(name, _Candidate("kubeconfig", label, value=value))

    offer("endpoint", kube.server, raw=True)
    offer("namespace", kube.namespace, raw=True)
    offer("ca_file", kube.ca_file)
    offer("ca_data", kube.ca_data)
    if kube.insecure_skip_tls_verify:
        offer("insecure_skip_tls_verify", True)
    for name in _CREDENTIALS:
        offer(name, getattr(kube, name))


def _check_same_layer_tokens(offers: _Offers, sources: Mapping[str, str], problems: _Problems) -> None:
    """K8S_TOKEN and K8S_TOKEN_FILE together in one layer: which one was meant is anyone's guess."""
    for source in ("env", "ini"):
        token, token_file = offers.get("token", source), offers.get("token_file", source)
        if token and token_file and sources.get("token") == source:
            problems.add(
                errors.EXIT_USAGE,
                f"{token.label} and {token_file.label} are both set: set only one of them",
                "token",
            )


def _split_resource_and_group(values: dict[str, Any], sources: dict[str, str], problems: _Problems) -> bool:
    """Apply the seed's legacy groups and kubectl's ``plural.group`` form; returns legacy_oapi."""
    legacy_oapi = False
    group = values.get("api_group")
    if group == "oapi":
        values["api_group"], legacy_oapi = None, True
    elif group in ("api", "core"):
        values["api_group"] = ""
    resource = values.get("resource")
    if isinstance(resource, str) and "." in resource:
        plural, named_group = resource.split(".", 1)
        values["resource"] = plural
        if values["api_group"] is None and not legacy_oapi:
            values["api_group"] = named_group
            sources["api_group"] = sources["resource"]
        elif values["api_group"] != named_group:
            problems.add(
                errors.EXIT_RESOURCE,
                f"{_BY_NAME['resource'].env} names the group {named_group!r} but "
                f"{_BY_NAME['api_group'].env} says {group!r}: keep one",
                "resource",
            )
    return legacy_oapi


def _validate(
    values: dict[str, Any],
    sources: Mapping[str, str],
    kube: Optional[kubeconfig.KubeContext],
    offers: _Offers,
    problems: _Problems,
    no_context: Optional[str] = None,  # why the kubeconfig gave nothing, when one was expected
) -> None:
    failed = problems.failed
    if not values.get("resource") and "resource" not in failed:
        problems.add(
            errors.EXIT_RESOURCE,
            "no resource to watch: set K8S_RESOURCE (or k8s_resource in [global] of the config file) to a "
            "plural resource name such as routes.",
        )
    # With k8s_namespaced unset, discovery decides whether a namespace is needed (cluster-scoped
    # resources have none), so only an explicit "namespaced = true" makes it required here.
    if not values.get("namespace") and values.get("namespaced") is True and not failed & {"namespace"}:
        problems.add(
            errors.EXIT_NAMESPACE,
            "no namespace: K8S_NAMESPACED says the resource is namespaced, but no namespace is set: set "
            "K8S_NAMESPACE (or k8s_namespace in [global]), run in a pod, or set K8S_NAMESPACED=false to "
            "watch all namespaces",
        )
    if not values.get("endpoint") and "endpoint" not in failed:
        problems.add(
            errors.EXIT_ENDPOINT,
            "no API endpoint: "
            + (f"{no_context}. Otherwise " if no_context else "")
            + "set K8S_API_ENDPOINT (or k8s_api_endpoint in [global]), run in a pod, "
            "or log in with `oc login`.",
        )
    _validate_credentials(values, sources, kube, offers, problems)
    ca_file = values.get("ca_file")
    if ca_file and "ca_file" not in failed:
        label, shown = _where(offers, "ca_file", sources, ca_file)
        reason = _unreadable(ca_file)
        if reason:
            problems.add(errors.EXIT_USAGE, f"{label}: cannot read the CA file{shown}: {reason}", "ca_file")


def _validate_credentials(
    values: dict[str, Any],
    sources: Mapping[str, str],
    kube: Optional[kubeconfig.KubeContext],
    offers: _Offers,
    problems: _Problems,
) -> None:
    if problems.failed & {"token", "token_file"}:
        return
    token_file = values.get("token_file")
    if token_file:
        label, shown = _where(offers, "token_file", sources, token_file)
        reason = _unreadable(token_file, must_have_content=True)
        if reason:
            message = f"{label}: cannot use the token file{shown}: {reason}"
            problems.add(errors.EXIT_TOKEN, message, "token_file")
        return
    if values.get("token"):
        return
    cert = values.get("client_cert_file") or values.get("client_cert_data")
    key = values.get("client_key_file") or values.get("client_key_data")
    if cert or key:
        label = _label(offers, "client_cert_file" if cert else "client_key_file", sources)
        if not (cert and key):
            missing = "client-key" if cert else "client-certificate"
            message = f"{label}: the user has no {missing} (a client certificate needs both)"
            problems.add(errors.EXIT_TOKEN, message, "token")
            return
        for name in ("client_cert_file", "client_key_file"):
            path = values.get(name)
            reason = _unreadable(path) if path else None
            if reason:
                problems.add(errors.EXIT_TOKEN, f"{label}: cannot read {path}: {reason}.", "token")
        return
    message = (
        "no credentials: set K8S_TOKEN or K8S_TOKEN_FILE (or k8s_token / k8s_token_file in [global]), "
        "run in a pod with a serviceaccount token, or log in with `oc login`."
    )
    if kube is not None and kube.unsupported_auth:
        message = f"no credentials: {kube.unsupported_auth}"
    problems.add(errors.EXIT_TOKEN, message)


def _label(offers: _Offers, name: str, sources: Mapping[str, str]) -> str:
    candidate = offers.get(name, sources.get(name, "default"))
    return candidate.label if candidate else name


def _where(offers: _Offers, name: str, sources: Mapping[str, str], path: str) -> tuple[str, str]:
    """The setting's label, and its file as shown in a message: not at all when it came via $env:."""
    candidate = offers.get(name, sources.get(name, "default"))
    hidden = candidate is not None and candidate.hidden
    return _label(offers, name, sources), "" if hidden else f" {path}"


def _unreadable(path: str, must_have_content: bool = False) -> Optional[str]:
    """Why ``path`` cannot be used, or None. Reads the file but never reports its content."""
    try:
        with open(path, "rb") as f:
            content = f.read(4096) if must_have_content else b""
    except IsADirectoryError:
        return "it is a directory"
    except OSError as e:
        return e.strerror or type(e).__name__
    except ValueError:
        return "invalid path"
    if must_have_content and not content.strip():
        return "it is empty"
    return None


# --- --check-config ---------------------------------------------------------------------------------


def is_secret_option(option: str, value: str, declared: Optional[frozenset[str]]) -> bool:
    """What a plugin option's value must never be shown as: a URL with user:password whatever its key,
    the keys the plugin declares secret (``SECRET_KEYS``), else those whose name suggests a secret."""
    if parse.has_userinfo(value):
        return True
    if declared is not None:
        return option in declared
    # *_file keys name a file that holds the secret: the path is not one.
    return not option.endswith("_file") and any(word in option.lower() for word in SECRET_WORDS)


def plugin_secret_values(settings: Settings) -> list[str]:
    """Plugin option values the log must never show (see ``is_secret_option``; no declarations here:
    the log filter is set up before the plugins are imported, and hiding too much there is harmless)."""
    return [
        value
        for section in settings.plugin_configs.values()
        for option, value in section.items()
        if value and is_secret_option(option, value, None)
    ]


def render(settings: Settings, secret_keys: Optional[Mapping[str, Optional[frozenset[str]]]] = None) -> str:
    """The effective settings, one ``key = value  (source)`` line each, secrets replaced by <redacted>.

    ``secret_keys``: per plugin (section name), the keys it declares secret, None when it declares
    none (or could not be imported to ask)."""
    secret_keys = secret_keys or {}
    lines = [f"# config file: {settings.config_file or '(none)'}"]
    if settings.kubeconfig_context:
        lines.append(f"# kubeconfig context: {settings.kubeconfig_context}")
    lines.append(f"[{GLOBAL_SECTION}]")
    # A value pulled in with $env: may be a secret in the wrong key: show the reference, not the value.
    referenced = {(section, key): variable for section, key, variable in settings.env_references}
    for key in KEYS:
        value = getattr(settings, key.name)
        source = settings.sources.get(key.name, "default")
        if source.startswith(INVALID):
            shown = "<invalid>"
        elif source == "ini" and (GLOBAL_SECTION, key.ini) in referenced:
            shown = f"<from ${referenced[(GLOBAL_SECTION, key.ini)]}>"
        elif key.name == "ca_file" and value is None and settings.ca_data:
            shown = "<certificate-authority-data>"
            source = settings.sources.get("ca_data", source)
        elif key.secret and value:
            shown = REDACTED
        elif key.name == "api_group":
            shown = _shown_group(settings)
        elif key.name == "namespaced" and value is None:
            shown = "<discover>"
        else:
            shown = _render_value(value)
        lines.append(f"{key.ini} = {shown}  ({source})")
    for prefix, label in (("client_cert", "client_certificate"), ("client_key", "client_key")):
        path, data = getattr(settings, f"{prefix}_file"), getattr(settings, f"{prefix}_data")
        if path or data:
            shown = path if path else (REDACTED if prefix == "client_key" else "<inline data>")
            source = settings.sources.get(f"{prefix}_file" if path else f"{prefix}_data", "kubeconfig")
            lines.append(f"{label} = {shown}  ({source})")
    for name, section in sorted(settings.plugin_configs.items()):
        lines.append(f"[{PLUGIN_SECTION_PREFIX}{name}]")
        section_name = f"{PLUGIN_SECTION_PREFIX}{name}"
        from_env = {(sec, key): var for sec, key, var in settings.plugin_env}
        for option, value in section.items():
            source = (
                f"env {from_env[(section_name, option)]}" if (section_name, option) in from_env else "ini"
            )
            if referenced.get((section_name, option)):
                shown = f"<from ${referenced[(section_name, option)]}>"
            elif is_secret_option(option, value, secret_keys.get(name)):
                shown = REDACTED
            else:
                shown = _one_line(value)
            lines.append(f"{option} = {shown}  ({source})")
    return "\n".join(lines)


def _shown_group(settings: Settings) -> str:
    if settings.legacy_oapi:
        return "<discover among *.openshift.io (legacy oapi)>"
    if settings.api_group is None:
        return "<discover>"
    return settings.api_group or "<core>"


def _render_value(value: Any) -> str:
    if value is None:
        return "<unset>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ", ".join(value) if value else "<none>"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return _one_line(str(value))
