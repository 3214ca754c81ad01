"""The certificates plugin: TLS for routes annotated ``openshift.io/managed.cert: "true"``.

It rebuilds the seed's ``plugin_ipa`` with three issuers (FreeIPA, ACME with DNS-01, a local CA): a
fresh key and CSR per issuance, the certificate checked against the key and the host before the route
is patched, renewal before expiry, and clean-up when the route is deleted. See README.md here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Optional

from watcher import errors

from . import issuer as issuers
from . import settings as cert_settings
from .controller import Controller

__all__ = ["close", "handle_event", "init", "sweep"]

# What the core reads: every key of [plugin_certs] (any other is named as a typo), and the secret ones
# (--check-config shows them as <redacted>).
KEYS = tuple(sorted(cert_settings.KNOWN_KEYS))
SECRET_KEYS = ("ipa_password", "dns_key_secret")

logger = logging.getLogger(__name__)

_controller: Optional[Controller] = None


def init(watcher: Any, config: Mapping[str, str]) -> None:
    """Parse the settings and build the issuer once, so a bad section stops the daemon at start."""
    global _controller
    close()
    if getattr(watcher, "api", None) is None:
        raise errors.PluginError("the certs plugin patches routes and needs the watcher's API access")
    resource = str(getattr(getattr(watcher, "config", None), "resource", None) or "routes")
    if resource.split(".")[0].lower() != "routes":
        raise errors.PluginError(
            "the certs plugin puts certificates into OpenShift routes "
            f"and cannot work on k8s_resource = {resource}"
        )
    settings = cert_settings.load(config)
    unused = cert_settings.unused_keys(config, settings.issuer)
    if unused:
        logger.warning(
            "Key(s) in [plugin_certs] that issuer %s does not use: %s.", settings.issuer, ", ".join(unused)
        )
    _warn_about_inline_password(watcher, config)
    issuer = issuers.create(settings.issuer, config)
    _controller = Controller(settings, issuer, watcher.api)
    logger.info(
        'Certificates for routes annotated %s: "true" come from issuer %s '
        "(%s keys, renewal %s before expiry).",
        settings.annotation,
        settings.issuer,
        settings.key_type,
        settings.renew_before,
    )


def handle_event(
    watcher: Any, event: Mapping[str, Any], config: Mapping[str, str]
) -> Optional[tuple[str, str]]:
    if _controller is None:
        init(watcher, config)
    assert _controller is not None
    return _controller.handle(event)


def sweep(watcher: Any, objects: list[dict[str, Any]], config: Mapping[str, str]) -> Optional[dict[str, int]]:
    """Leftovers at the issuer of routes that are gone (deleted while the watcher was down)."""
    if _controller is None:
        init(watcher, config)
    assert _controller is not None
    return _controller.sweep(objects)


def close() -> None:
    global _controller
    if _controller is not None:
        _controller.close()
        _controller = None


def _warn_about_inline_password(watcher: Any, config: Mapping[str, str]) -> None:
    """A password written into the ini file is only as secret as the file's permissions."""
    if not config.get("ipa_password"):
        return
    settings = getattr(watcher, "config", None)
    references = getattr(settings, "env_references", ())
    if any(key == "ipa_password" and section.startswith("plugin_") for section, key, _ in references):
        return  # "ipa_password = $env:IPA_PASSWORD": the file holds only the variable's name
    path = getattr(settings, "config_file", None)
    cert_settings.warn_if_readable_by_others(str(path) if path else None, "config file")
