"""A full disk while a trainer saves: one sentence (where, how much is free, what survived, rerun with --resume).

torch.save reports a full disk as "[enforce fail at inline_container.cc:672] unexpected pos ..."
or "file write failed", safetensors as SafetensorError "... No space left on device (os error 28)",
plain writes as OSError ENOSPC (or EDQUOT, a quota).
Any of these during a save becomes an OutputError; the half-written temp folder is removed so
the space it took is free again and nothing looks like a checkpoint.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hoiforge.errors import OutputError

_WRITE_FAILED = ("unexpected pos", "file write failed", os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT), "os error 28")


def is_disk_full(e: BaseException) -> bool:
    for err in (e, e.__cause__, e.__context__):
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if err is not None and not isinstance(err, OSError) and any(s in str(err) for s in _WRITE_FAILED):
            return True
    return False


def _free(folder: Path) -> str:
    for p in (folder, *folder.parents):
        if p.exists():
            try:
                free = shutil.disk_usage(p).free
                return f"{free / 1e9:.1f} GB free" if free >= 1e8 else f"{free / 1e6:.1f} MB free"
            except OSError:
                break
    return "free space unknown"


@contextmanager
def saving(what: str, folder: Path, survived: str, cleanup: Path | None = None) -> Iterator[None]:
    """Turn a full disk while writing ``folder`` into one OutputError; remove ``cleanup`` first."""
    try:
        yield
    except Exception as e:  # safetensors' SafetensorError is neither OSError nor RuntimeError
        if not is_disk_full(e):
            raise
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
        raise OutputError(
            f"the disk holding {folder} is full ({_free(folder)}) while saving {what}; {survived}: "
            "free space there (or lower checkpoints_keep), then rerun the same command with --resume"
        ) from None
