#!/usr/bin/env python3
"""The seed's entry point, kept: ``python3 watch.py --config conf/config.ini``."""

from watcher.cli import main

if __name__ == "__main__":
    main()
