"""One writer per output directory: an exclusive ``flock`` on ``OUT/_work/lock`` while writing.

A build holds it from before its start-up cleanup until finalize has written the manifest, so a
second build into the same OUT cannot overwrite shards or delete the first one's uncommitted
work; ``stats`` holds it while writing the report. The lock file says who holds it (pid, host,
since when), and the kernel drops the lock when that process dies, so a killed build never
leaves a stale lock behind: its text is just overwritten by the next holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hoiforge.errors import OutputError


def lock_path(out: str | Path) -> Path:
    return Path(out) / "_work" / "lock"


def _holder(path: Path) -> str:
    try:
        who = json.loads(path.read_text() or "{}")
        return f"pid {who['pid']} on {who['host']} since {who['since']}"
    except (OSError, ValueError, KeyError):
        return "another process (it has not written its name yet)"


def _busy(out: Path, path: Path, what: str) -> OutputError:
    return OutputError(f"{out} is being written by {_holder(path)}; {what} waits until that run ends (or use another --out)")


@contextmanager
def exclusive(out: str | Path, what: str = "this build") -> Iterator[None]:
    """Hold the output's lock for the block; OutputError at once when another process holds it."""
    out = Path(out)
    path = lock_path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
        raise OutputError(f"output directory {out} is not writable: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(out, path, what) from None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def check_not_busy(out: str | Path, what: str) -> None:
    """OutputError when a build is writing ``out`` now (readers such as validate call this; it writes nothing)."""
    out = Path(out)
    path = lock_path(out)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return  # no lock file: nobody has ever built here with locking, or a read-only copy
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(out, path, what) from None
    finally:
        os.close(fd)
