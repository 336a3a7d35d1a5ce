"""Safe file writes: atomic (readers see the old file or the complete new one), never through a link.

Inside an output tree (:func:`output_tree`, set by a render around everything it writes) every folder
between the tree's root and a written file must be a real folder: a symbolic link there is refused,
so composer never writes or deletes in a link's target. Files are written to a temp name of
composer's own (``.composer-<name>.<random>.tmp``), fsynced, given the permissions the umask allows
(not mkstemp's 0600) and renamed over the final name; renaming replaces a link at the final name
instead of following it.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from composer import faults
from composer.errors import ComposerError

TEMP_PREFIX = ".composer-"
TEMP_SUFFIX = ".tmp"

_tree: contextvars.ContextVar[Path | None] = contextvars.ContextVar("composer_output_tree", default=None)


class DiskFullError(ComposerError):
    """The disk filled up while writing; everything finished before that is kept."""

    exit_code = 74  # EX_IOERR


class CannotWriteError(ComposerError):
    """A file or folder composer must write cannot be written (read-only, permissions, a file in the way)."""

    exit_code = 73  # EX_CANTCREAT


_HINTS = {
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted (an immutable file, or a folder owned by another user)",
    errno.ENOTDIR: "a file stands where a folder should be",
    errno.EISDIR: "a folder stands where a file should be",
    errno.EEXIST: "a file stands where a folder should be",
    errno.ENAMETOOLONG: "the name is too long for the file system",
}


@contextlib.contextmanager
def filesystem_errors(
    where: Path, resume_hint: str = "run the same command again to resume", kept: str = "finished segments are kept"
) -> Iterator[None]:
    """Turn any OSError of the block into one line naming the path: disk full exit 74, else exit 73."""
    try:
        yield
    except OSError as exc:
        path = _user_path(exc.filename2 or exc.filename or where)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"disk full while writing {path}; {kept}: free some space and {resume_hint}") from exc
        reason = _HINTS.get(exc.errno or 0, exc.strerror or type(exc).__name__)
        raise CannotWriteError(
            f"cannot write {path}: {reason}; fix that (or choose another --out / -o) and {resume_hint}"
        ) from exc


def _user_path(path: str | os.PathLike[str]) -> str:
    """The file the user knows for one of composer's temp files (``.composer-mix.wav.x1y2.tmp`` ->
    ``mix.wav``): messages name what is being written, not how."""
    where = Path(path)
    if is_own_temp(where.name):
        return str(where.with_name(where.name[len(TEMP_PREFIX) : -len(TEMP_SUFFIX)].rsplit(".", 1)[0]))
    return str(path)


class UnsafePathError(ComposerError):
    """A symbolic link (or a file where a folder should be) inside composer's output tree."""

    exit_code = 2


@contextlib.contextmanager
def output_tree(root: Path) -> Iterator[None]:
    """Within this block, writes under ``root`` refuse symbolic links below it (the root may be one)."""
    token = _tree.set(Path(os.path.abspath(root)))
    try:
        yield
    finally:
        _tree.reset(token)


def real_dir(folder: Path) -> Path:
    """Make sure ``folder`` exists as a real folder; inside the output tree no part below its root may be a link.

    Raises:
        UnsafePathError: a link or a file on the way.
    """
    folder = Path(os.path.abspath(folder))
    root = _tree.get()
    if root is None or not folder.is_relative_to(root):
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    root.mkdir(parents=True, exist_ok=True)
    current = root
    for part in folder.relative_to(root).parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):
                os.mkdir(current)
            mode = os.lstat(current).st_mode
        if stat.S_ISLNK(mode):
            raise UnsafePathError(
                f"{current} is a symbolic link; composer does not write through links in its output folder: "
                "remove the link (or point --out somewhere else)"
            )
        if not stat.S_ISDIR(mode):
            raise UnsafePathError(f"{current} is not a folder; move it away so composer can write there")
    return folder


def umask_mode(base: int = 0o666) -> int:
    """``base`` less the process umask (what ``open`` would have given a new file)."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path in ``path``'s folder; on success fsync it, set its mode and rename it over ``path``."""
    path = Path(path)
    real_dir(path.parent)
    fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fchmod(fh.fileno(), umask_mode())
            os.fsync(fh.fileno())
        faults.reached("file-temp")
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        faults.reached("file-written")
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def json_text(data: object, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON (RFC 8259) for every file composer writes: NaN and infinities, which Python's json
    would write as the non-JSON ``NaN``/``-Infinity``, become null (e.g. the peak of a silent mix)."""

    def finite(value: object) -> object:
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(data), indent=indent, sort_keys=sort_keys, allow_nan=False)


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_file(path: Path) -> bool:
    """Delete a regular file (never a link's target, never a folder); True if one was removed."""
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.unlink(path)
            return True
    except FileNotFoundError:
        pass
    return False


def is_own_temp(name: str) -> bool:
    """A temp file name composer makes (and may sweep)."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
