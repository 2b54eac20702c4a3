"""The command line: `app.py` builds the parser and runs `run` and `graph`; `commands.py` holds
`export` and `hook`, `cache.py` the `cache` command. `main` is the `parapipe` entry point."""

from parapipe.cli.app import main

__all__ = ["main"]
