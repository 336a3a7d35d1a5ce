"""Content-addressed segment cache: ``<root>/<key[:2]>/<key>.npz`` holding tokens, audio and metadata.

Entries are written atomically (temp file, fsync, rename), so an interrupted render leaves either a
complete entry or none. A damaged entry is detected on load and treated as missing.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from composer.engine.types import Take
from composer.fsutil import atomic_write_bytes, remove_file

log = logging.getLogger(__name__)


class SegmentCache:
    """The render cache under one folder (shared by every arrangement rendered into the same --out)."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def load(self, key: str) -> Take | None:
        """The entry for ``key``, or None when missing or damaged (a damaged file is removed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                tokens = data["tokens"].astype(np.int64)
                audio = data["audio"].astype(np.float32)
            if meta.get("key") != key:
                raise ValueError(f"entry holds key {meta.get('key')!r}")
            if tokens.ndim != 2 or audio.ndim != 2 or audio.shape[1] % max(tokens.shape[1], 1):
                raise ValueError("inconsistent shapes")
            if not np.isfinite(audio).all():
                raise ValueError("non-finite audio")
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            log.warning("cached segment %s is damaged (%s); it will be regenerated", path.name, exc)
            remove_file(path)
            return None
        return Take(
            tokens=tokens,
            prompt_frames=int(meta["prompt_frames"]),
            audio=audio,
            sample_rate=int(meta["sample_rate"]),
            frame_rate=int(meta["frame_rate"]),
            key=key,
            provenance=meta,
        )

    def store(self, segment: Take) -> None:
        """Write an entry atomically."""
        meta = dict(segment.provenance) | {
            "key": segment.key,
            "sample_rate": segment.sample_rate,
            "prompt_frames": segment.prompt_frames,
            "frame_rate": segment.frame_rate,
        }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            tokens=segment.tokens.astype(np.int16),
            audio=segment.audio.astype(np.float32),
            meta=np.array(json.dumps(meta, sort_keys=True)),
        )
        atomic_write_bytes(self.path(segment.key), buffer.getvalue())
