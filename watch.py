#!/usr/bin/env python3
"""The seed's entry point, kept: ``python3 watch.py --config conf/config.ini``."""

from watcher import preflight

preflight.check_python()
try:
    from watcher.cli import main
except ModuleNotFoundError as e:
    preflight.missing_dependency(e)

if __name__ == "__main__":
    main()
