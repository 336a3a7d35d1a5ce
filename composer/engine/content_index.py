"""Content keys remembered by the files' signatures (paths, sizes, modification times).

A model's cache key is the hash of its files' contents; hashing gigabytes on every plan would cost
seconds, so a key, once computed, is kept in a small JSON index under its files' signature and
looked up by it until the files change. Used for converted audiocraft files and for model folders.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from composer.fsutil import atomic_write_text, json_text


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes (streamed)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _read(index: Path) -> dict[str, str]:
    try:
        data = json.loads(index.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def lookup(index: Path, signature: str) -> str | None:
    """The key remembered in ``index`` for files with ``signature``, else None (an unreadable index is empty)."""
    return _read(index).get(signature)


def remember(index: Path, signature: str, key: str) -> None:
    """Keep ``key`` for ``signature`` in ``index`` (written atomically).

    Raises:
        OSError: the index cannot be written.
    """
    atomic_write_text(index, json_text(_read(index) | {signature: key}, sort_keys=True) + "\n")
