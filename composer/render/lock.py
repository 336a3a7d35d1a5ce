"""One render per output folder at a time; stale temp files from killed renders are swept up."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from composer.errors import ComposerError
from composer.fsutil import UnsafePathError, is_own_temp, real_dir, remove_file, umask_mode

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
    real_dir(folder)
    path = folder / ".render.lock"
    try:  # O_NOFOLLOW: a link planted at the lock's name must not let us truncate its target
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, umask_mode(0o666))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"{path} is a symbolic link; remove it and run the same command again") from None
        raise
    with os.fdopen(fd, "a+") as handle:
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
    """Remove composer's own temp files left by killed renders: all in ``folder`` (we hold its lock),
    old ones in ``cache`` (other renders may be writing there). Never through a link, never a
    user's file that merely looks temporary."""
    removed = 0
    now = time.time()
    for root, only_old in ((folder, False), (cache, True)):
        for parent, _dirs, names in os.walk(root):  # does not follow links to folders
            for name in names:
                tmp = Path(parent) / name
                with contextlib.suppress(OSError):
                    if is_own_temp(name) and (not only_old or now - tmp.lstat().st_mtime > STALE_TMP_S):
                        removed += remove_file(tmp)
    return removed
