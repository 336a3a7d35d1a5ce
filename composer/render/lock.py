"""One render per output folder at a time; stale temp files from killed renders are swept up."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from composer.errors import ComposerError

STALE_TMP_S = 3600.0  # cache temp files older than this belong to no running render


class RenderBusyError(ComposerError):
    """Another render of the same arrangement into the same output folder is running."""

    exit_code = 75  # EX_TEMPFAIL: try again later


@contextlib.contextmanager
def render_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` for the duration of a render.

    Raises:
        RenderBusyError: another process holds it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".render.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise RenderBusyError(
                f"{folder}: another render is running (pid {holder}); wait for it to finish or use another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sweep_temp_files(folder: Path, cache: Path) -> int:
    """Remove temp files left by killed renders: all in ``folder`` (we hold its lock), old ones in ``cache``."""
    removed = 0
    now = time.time()
    for root, only_old in ((folder, False), (cache, True)):
        if not root.is_dir():
            continue
        for tmp in root.rglob(".*.tmp"):
            with contextlib.suppress(OSError):
                if not only_old or now - tmp.stat().st_mtime > STALE_TMP_S:
                    tmp.unlink()
                    removed += 1
    return removed
