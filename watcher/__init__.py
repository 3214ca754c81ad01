"""Event Watcher: watch one Kubernetes/OpenShift resource and hand every change to plugins.

The package is layered one way (see ARCHITECTURE in the README): ``cli`` wires ``config`` →
``client`` → ``stream`` → ``informer`` → ``reconciler`` (a work queue per plugin) → plugins. Import
modules, not names; the two exceptions plugins raise are the exception to that rule, so that a plugin
writes ``from watcher import TemporaryError`` as it would with kopf.
"""

from watcher.errors import PermanentError, TemporaryError

__version__ = "1.0.0"
__all__ = ["PermanentError", "TemporaryError", "__version__"]
