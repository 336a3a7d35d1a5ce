"""A transformers MusicGen checkpoint in a folder of its own (what ``save_pretrained`` writes: a fine-tune
made with transformers, a copy kept beside a project), used in place, never copied.

Its revision is ``folder-<key>``, the hash of every file in it: a segment's cache key follows the
weights, not where the folder is, and an edited checkpoint is a new revision. Hashing gigabytes on
every plan would cost seconds, so keys are remembered by the files' paths, sizes and modification
times (``model-folders.json`` in composer's cache, :mod:`composer.engine.content_index`), as for converted
audiocraft files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from composer.engine.content_index import file_hash, lookup, remember
from composer.errors import ModelLoadingError
from composer.settings import Settings

PREFIX = "folder-"
INDEX = "model-folders.json"
CONFIG = "config.json"


def is_checkpoint(folder: Path) -> bool:
    """Does ``folder`` hold a transformers checkpoint (its config.json)?"""
    return (folder / CONFIG).is_file()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _signature(folder: Path) -> str:
    parts = [str(folder)]
    for path in _files(folder):
        st = path.stat()
        parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def known_revision(folder: Path, settings: Settings) -> str | None:
    """``folder-<key>`` when the folder's files are unchanged since they were last hashed, else None."""
    try:
        key = lookup(settings.cache_dir / INDEX, _signature(folder))
    except OSError:
        return None
    return PREFIX + key if key else None


def revision(folder: Path, settings: Settings) -> str:
    """The folder's revision, hashing its files when they are new or changed (and remembering it).

    Raises:
        ModelLoadingError: the folder or a file in it cannot be read.
    """
    if (known := known_revision(folder, settings)) is not None:
        return known
    try:
        signature = _signature(folder)
        digest = hashlib.sha256()
        for path in _files(folder):
            digest.update(f"{path.name}\0{file_hash(path)}\0".encode())
    except OSError as exc:
        raise ModelLoadingError(f"{folder}: cannot read the checkpoint: {exc.strerror or exc}") from None
    key = digest.hexdigest()[:24]
    try:
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        remember(settings.cache_dir / INDEX, signature, key)
    except OSError:  # a read-only cache: the key is still right, only the next plan hashes again
        pass
    return PREFIX + key
