"""Event Watcher: watch one Kubernetes/OpenShift resource and hand every change to plugins.

The package is layered one way (see ARCHITECTURE in the README): ``cli`` wires ``config`` →
``client`` → ``stream`` → ``informer`` → ``dispatch`` → plugins. Import modules, not names.
"""

__version__ = "1.0.0"
__all__ = ["__version__"]
