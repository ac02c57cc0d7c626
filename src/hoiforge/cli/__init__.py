"""The ``hoiforge`` command line (entry point ``hoiforge = "hoiforge.cli:app"``)."""

from hoiforge.cli.build import app

__all__ = ["app"]
