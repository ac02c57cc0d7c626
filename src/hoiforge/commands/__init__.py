"""Sub-command apps of the ``hoiforge`` CLI (the top layer: they may import every package)."""
