"""What every backend shares: its library is checked without importing it.

Backends import their library in ``__init__`` (so a missing package fails in ``setup()`` with a
clear message) and offer ``check()``, a cheap classmethod the driver calls before work starts.
The task protocols they implement live in ``models.tasks``.
"""

from __future__ import annotations

import importlib
import importlib.util

from hoiforge.errors import BackendUnavailable


def require(package: str, install_hint: str) -> None:
    """BackendUnavailable unless ``package`` is importable (checked without importing it)."""
    if importlib.util.find_spec(package) is None:
        raise BackendUnavailable(f"python package '{package}' is not installed: {install_hint}")
