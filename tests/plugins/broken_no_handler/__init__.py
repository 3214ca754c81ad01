"""A plugin without handle_event: loading it must fail cleanly."""
