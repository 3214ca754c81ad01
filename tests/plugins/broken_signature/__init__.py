"""A plugin whose handle_event takes the wrong arguments: refused at load time."""


def handle_event(event):  # type: ignore[no-untyped-def]
    return None
