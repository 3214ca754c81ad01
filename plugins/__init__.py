"""Built-in plugins, one directory each, loaded by ``watcher.dispatch`` exactly like a user's plugin."""
