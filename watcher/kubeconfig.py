"""The current context of a kubeconfig: what ``oc login`` and ``kubectl config`` write.

Running against a real cluster from a laptop should need nothing more than ``oc login``: this module
reads ``$KUBECONFIG`` (several files, merged the way kubectl merges them) or ``~/.kube/config`` and
returns the server, CA, credentials and namespace of the current context. It is the lowest layer
of the settings; ``watcher.config`` decides what wins.

Only what kubectl itself does is done here: for every name (cluster, user, context) and for
``current-context`` the first file that sets it wins; relative paths are resolved against the
directory of the file that defined the entry; ``*-data`` fields win over their file counterparts.
Credential plugins (``exec``, ``auth-provider``) are not run: the daemon runs for weeks and cannot
answer a browser login, so it reports how to hand it a token instead.

Nothing read from the file is ever put into an error message except names and paths: a kubeconfig
holds tokens and private keys, and PyYAML's own error text quotes the offending line.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from watcher import errors

DEFAULT_RELATIVE_PATH = os.path.join(".kube", "config")


@dataclass(frozen=True)
class KubeContext:
    """What the current context says about where and who we are; secrets stay out of ``repr``."""

    path: str  # the file whose current-context was used (named in messages)
    context: str
    cluster: Optional[str]
    user: Optional[str]
    server: Optional[str] = None
    cluster_path: Optional[str] = None  # the file that defined the cluster
    ca_file: Optional[str] = None
    ca_data: Optional[bytes] = field(default=None, repr=False)
    insecure_skip_tls_verify: bool = False
    token: Optional[str] = field(default=None, repr=False)
    token_file: Optional[str] = None
    client_cert_file: Optional[str] = None
    client_cert_data: Optional[bytes] = field(default=None, repr=False)
    client_key_file: Optional[str] = None
    client_key_data: Optional[bytes] = field(default=None, repr=False)
    namespace: Optional[str] = None
    # A sentence saying why the user's credentials cannot be used (exec plugin, auth-provider,
    # basic auth), so config can explain a missing token; None when there is nothing to say.
    unsupported_auth: Optional[str] = None

    @property
    def has_credentials(self) -> bool:
        return bool(
            self.token
            or self.token_file
            or self.client_cert_file
            or self.client_cert_data
            or self.client_key_file
            or self.client_key_data
        )


def paths(environ: Mapping[str, str], home: Optional[str]) -> list[str]:
    """The files kubectl would read: ``$KUBECONFIG`` (os.pathsep-separated) else ``<home>/.kube/config``."""
    listed = environ.get("KUBECONFIG", "")
    if listed.strip():
        seen: list[str] = []
        for entry in listed.split(os.pathsep):
            entry = entry.strip()
            if entry and entry not in seen:  # kubectl ignores empty and repeated entries
                seen.append(entry)
        return seen
    if home:
        return [os.path.join(home, DEFAULT_RELATIVE_PATH)]
    return []


def why_no_context(files: Sequence[str], from_env: bool) -> Optional[str]:
    """Why ``files`` gave no context, naming them (a user who set $KUBECONFIG or ran ``oc login``
    expects it to be used), or None when nothing pointed at a kubeconfig."""
    existing = [path for path in files if os.path.isfile(path)]
    if not existing:
        if not from_env:
            return None
        return f"$KUBECONFIG names {', '.join(files)}, which {'does' if len(files) == 1 else 'do'} not exist"
    return (
        f"the kubeconfig {', '.join(existing)} has no current-context "
        "(run `kubectl config use-context NAME` or `oc login`)"
    )


@dataclass
class _Entry:
    """One named cluster/user/context with the file that defined it (relative paths resolve there)."""

    body: Mapping[str, Any]
    path: str


def load(files: Sequence[str]) -> Optional[KubeContext]:
    """Merge ``files`` as kubectl does and return the current context, or None when there is none.

    Files that do not exist are skipped, as kubectl skips them. Raises ``errors.ConfigError`` (exit 2)
    listing every problem, each naming its file, when a file cannot be read or parsed or the current
    context cannot be resolved.
    """
    problems: list[tuple[int, str]] = []
    current: Optional[tuple[str, str]] = None  # (context name, file that set it)
    tables: dict[str, dict[str, _Entry]] = {"clusters": {}, "users": {}, "contexts": {}}
    for path in files:
        document = _read(path, problems)
        if document is None:
            continue
        name = document.get("current-context")
        if current is None and isinstance(name, str) and name:
            current = (name, path)
        for table, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            _merge(tables[table], document.get(table), inner, path, problems)
    if problems:
        raise errors.ConfigError(problems)
    if current is None:
        return None
    return _resolve(current[0], current[1], tables)


def _read(path: str, problems: list[tuple[int, str]]) -> Optional[Mapping[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        problems.append((errors.EXIT_USAGE, f"cannot read kubeconfig {path}: it is a directory."))
        return None
    except UnicodeDecodeError:
        problems.append((errors.EXIT_USAGE, f"cannot read kubeconfig {path}: it is not UTF-8 text."))
        return None
    except (OSError, ValueError) as e:  # ValueError: a path with a NUL byte
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "invalid path"
        problems.append((errors.EXIT_USAGE, f"cannot read kubeconfig {path}: {reason}."))
        return None
    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        # str(e) quotes the offending line, which may hold a token: build the message from parts.
        where = (
            f" at line {e.problem_mark.line + 1}, column {e.problem_mark.column + 1}"
            if e.problem_mark
            else ""
        )
        what = e.problem or e.context or "invalid YAML"
        problems.append((errors.EXIT_USAGE, f"cannot parse kubeconfig {path}: {what}{where}."))
        return None
    except yaml.YAMLError as e:
        problems.append((errors.EXIT_USAGE, f"cannot parse kubeconfig {path}: {type(e).__name__}."))
        return None
    if document is None:  # an empty file is an empty config, as for kubectl
        return None
    if not isinstance(document, dict):
        problems.append((errors.EXIT_USAGE, f"kubeconfig {path} is not a YAML mapping."))
        return None
    return document


def _merge(
    table: dict[str, _Entry], items: Any, inner: str, path: str, problems: list[tuple[int, str]]
) -> None:
    """First definition of a name wins, as in kubectl's merge of a KUBECONFIG list."""
    if items is None:
        return
    if not isinstance(items, list):
        problems.append((errors.EXIT_USAGE, f"kubeconfig {path}: {inner}s must be a list."))
        return
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            problems.append((errors.EXIT_USAGE, f"kubeconfig {path}: {inner}s[{index}] has no name."))
            continue
        body = item.get(inner)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            problems.append(
                (errors.EXIT_USAGE, f"kubeconfig {path}: {inner} {item['name']!r} is not a mapping.")
            )
            continue
        table.setdefault(item["name"], _Entry(body, path))


def _resolve(name: str, path: str, tables: Mapping[str, Mapping[str, _Entry]]) -> KubeContext:
    problems: list[tuple[int, str]] = []
    context = tables["contexts"].get(name)
    if context is None:
        raise errors.ConfigError(
            f"kubeconfig {path}: current-context {name!r} names no context in "
            f"{_listed(tables['contexts'])} (run `oc login` or `kubectl config use-context`)"
        )
    fields: dict[str, Any] = {"path": path, "context": name}
    ctx = _Reader(context, "context", name, problems)
    fields["namespace"] = ctx.text("namespace")
    cluster_name = ctx.text("cluster")
    user_name = ctx.text("user")
    fields["cluster"] = cluster_name
    fields["user"] = user_name

    if cluster_name:
        cluster = tables["clusters"].get(cluster_name)
        if cluster is None:
            problems.append(
                (
                    errors.EXIT_USAGE,
                    f"kubeconfig {context.path}: context {name!r} names cluster "
                    f"{cluster_name!r}, which is not defined.",
                )
            )
        else:
            c = _Reader(cluster, "cluster", cluster_name, problems)
            fields["server"] = c.text("server")
            fields["cluster_path"] = cluster.path
            fields["ca_data"] = c.data("certificate-authority-data")
            # Inline data wins over the file, as in client-go.
            fields["ca_file"] = None if fields["ca_data"] else c.path("certificate-authority")
            fields["insecure_skip_tls_verify"] = c.flag("insecure-skip-tls-verify")

    if user_name:
        user = tables["users"].get(user_name)
        if user is None:
            problems.append(
                (
                    errors.EXIT_USAGE,
                    f"kubeconfig {context.path}: context {name!r} names user "
                    f"{user_name!r}, which is not defined.",
                )
            )
        else:
            u = _Reader(user, "user", user_name, problems)
            token = u.text("token")
            fields["token"] = token
            fields["token_file"] = None if token else u.path("tokenFile")
            fields["client_cert_data"] = u.data("client-certificate-data")
            fields["client_cert_file"] = None if fields["client_cert_data"] else u.path("client-certificate")
            fields["client_key_data"] = u.data("client-key-data")
            fields["client_key_file"] = None if fields["client_key_data"] else u.path("client-key")
            fields["unsupported_auth"] = _unsupported(user.body, user_name, user.path)
    if problems:
        raise errors.ConfigError(problems)
    return KubeContext(**fields)


def _listed(table: Mapping[str, _Entry]) -> str:
    return ("contexts " + ", ".join(sorted(table))) if table else "no contexts at all"


def _unsupported(body: Mapping[str, Any], user: str, path: str) -> Optional[str]:
    """Why this user's credentials cannot be used, as a clause; None when they can (or there are none)."""
    advice = (
        "event-watcher does not run credential plugins (it runs unattended for weeks), "
        "so give it a token instead: K8S_TOKEN=$(oc whoami -t), or K8S_TOKEN_FILE"
    )
    exec_ = body.get("exec")
    provider = body.get("auth-provider")
    if exec_:
        command = exec_.get("command") if isinstance(exec_, dict) else None
        what = "an exec credential plugin"
        if isinstance(command, str) and command.strip():
            what += f" ({os.path.basename(command.strip())})"
    elif provider:
        kind = provider.get("name") if isinstance(provider, dict) else None
        what = f"the {kind!r} auth-provider" if isinstance(kind, str) else "an auth-provider"
    elif body.get("username") or body.get("password"):
        what = "basic auth (username/password), which API servers no longer accept"
    else:
        return None
    return f"kubeconfig user {user!r} in {path} authenticates with {what}: {advice}"


class _Reader:
    """Typed access to one entry's fields; wrong types become problems naming the entry, never values."""

    def __init__(self, entry: _Entry, kind: str, name: str, problems: list[tuple[int, str]]) -> None:
        self.entry = entry
        self.kind = kind
        self.name = name
        self.problems = problems

    def _problem(self, key: str, expected: str) -> None:
        self.problems.append(
            (
                errors.EXIT_USAGE,
                f"kubeconfig {self.entry.path}: {key} of {self.kind} {self.name!r} must be {expected}.",
            )
        )

    def text(self, key: str) -> Optional[str]:
        value = self.entry.body.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            self._problem(key, "a string")
            return None
        return value.strip() or None

    def path(self, key: str) -> Optional[str]:
        value = self.text(key)
        if value is None:
            return None
        # client-go resolves paths against the directory of the file that defined the entry.
        return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(self.entry.path)), value))

    def data(self, key: str) -> Optional[bytes]:
        value = self.text(key)
        if value is None:
            return None
        try:
            decoded = base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            self._problem(key, "base64")
            return None
        if not decoded:
            return None
        return decoded

    def flag(self, key: str) -> bool:
        value = self.entry.body.get(key)
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self._problem(key, "true or false")
        return False
