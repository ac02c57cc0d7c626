"""The command line every weights converter shares: ``python -m hoiforge.models.weights.convert_X SRC DST``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from hoiforge.errors import HoiforgeError


def converter_main(convert: Callable[[Path, Path], Path], usage: str, argv: list[str] | None = None) -> int:
    """Run ``convert(SRC, DST)``; one error line and exit 2 (bad usage or a source it cannot convert: the CLI's rule)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(f"usage: {usage}", file=sys.stderr)
        return 2
    try:
        print(convert(Path(args[0]), Path(args[1])))
    except HoiforgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
