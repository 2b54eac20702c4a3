"""The Dagger engine, through its Python SDK, and the probe that checks Dagger can connect.

Nothing here imports the SDK at package import: only `engine.py` does, when Dagger is chosen."""
