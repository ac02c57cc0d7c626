"""How every command reports: one helper for errors, one for progress lines, one for the library logs.

Exit codes, one rule for every command (``hoiforge --help`` shows it):

- ``0``: done.
- ``1``: a check ran and found problems: ``validate`` (violations), ``models check`` (missing or
  corrupt weights), ``wear check`` (bad labels). The command lists them first.
- ``2``: the command could not do what was asked: bad usage (typer's own, too) or bad input,
  a missing model, package or file, a busy output. One line on stderr, from ``fail``.

Every text printed here may hold user data (paths, member names, reasons): it is escaped for
rich markup, so ``[/]`` in a file name prints as itself.
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

CHECK_FAILED = 1
USAGE = 2
EXIT_CODES = (
    "Exit codes: 0 done; 1 a check found problems (validate violations, models check missing or corrupt weights, "
    "wear check bad labels); 2 the command could not run as asked (bad usage or input, missing model, package or file, "
    "busy output), with one error line on stderr."
)

err = Console(stderr=True)


def fail(message: str) -> NoReturn:
    """One ``error:`` line on stderr (markup escaped), then exit 2."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(USAGE)


def check_failed() -> NoReturn:
    """Exit 1: the command has listed what its check found."""
    raise typer.Exit(CHECK_FAILED)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """A progress line of a long command on stderr; a ``warning: `` prefix is shown as a warning."""
    if message.startswith("warning: "):
        warn(message.removeprefix("warning: "))
    else:
        err.print(escape(message), highlight=False, soft_wrap=True)


class _Stderr(logging.Handler):
    """Writes to whatever sys.stderr is at the time (test runners swap it between commands)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def training_logs() -> None:
    """hoiforge.training / hoiforge.datasets messages on stderr, once."""
    for name in ("hoiforge.training", "hoiforge.datasets"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _Stderr) for h in logger.handlers):
            handler = _Stderr()
            handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False
