"""A plugin whose init() refuses its configuration."""


def init(watcher, config):  # type: ignore[no-untyped-def]
    raise ValueError("api_url: required")


def handle_event(watcher, event, config):  # type: ignore[no-untyped-def]
    return None
