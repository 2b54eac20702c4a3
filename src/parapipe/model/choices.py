"""The names a user picks from: the engines (`--engine`) and the output modes (`--output`).

Listed once here; the CLI's choices, the engine registry and the reporter factory all use them.
"""

from typing import Final

AUTO: Final = "auto"  # for both: the engine that answers, the output that suits the terminal
ENGINE_NAMES: Final = ("docker", "podman", "dagger")
ENGINE_CHOICES: Final = (AUTO, *ENGINE_NAMES)
OUTPUT_MODES: Final = (AUTO, "tty", "plain", "quiet", "github")
