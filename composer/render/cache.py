"""Content-addressed segment cache: ``<root>/<key[:2]>/<key>.npz`` holding tokens, audio and metadata.

Entries are written atomically (temp file, fsync, rename), so an interrupted render leaves either a
complete entry or none. A damaged entry is detected on load and treated as missing.
"""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from composer.engine.catalog import FRAME_RATE_HZ, SAMPLE_RATE_HZ
from composer.engine.types import Take
from composer.fsutil import CannotWriteError, atomic_write_bytes, json_text, remove_file

if TYPE_CHECKING:
    from composer.plan import Segment

log = logging.getLogger(__name__)

VOCAB = 2048  # EnCodec codes per codebook in every MusicGen checkpoint
MAX_ENTRY_BYTES = 512 * 2**20  # 300 s of stereo float32 audio and its tokens stay far below this
MAX_SAMPLE = 64.0  # EnCodec decodes to about [-1, 1]; a finite 1e37 is a damaged or crafted entry


class SegmentCache:
    """The render cache under one folder (shared by every arrangement rendered into the same --out)."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def load(self, key: str, segment: Segment | None = None) -> Take | None:
        """The entry for ``key``, or None when missing or damaged (a damaged entry is removed).

        Everything is checked before use, against ``segment`` (the plan's expectation) where given:
        the stored key, the metadata's types and ranges, token codes and shape, audio shape, length,
        rate and finiteness, and the unpacked size (a small crafted file must not inflate to gigabytes).
        """
        path = self.path(key)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(mode):  # a folder at an entry's name would make every retry regenerate, then fail
            try:
                path.rmdir()  # an empty one is nobody's: take it away so the entry can be stored
                log.warning("an empty folder stood at cached segment %s; removed", path.name)
            except OSError:
                raise CannotWriteError(f"cannot write {path}: a folder stands where a file should be; "
                                       "move it away and run the same command again") from None  # fmt: skip
            return None
        if not stat.S_ISREG(mode):  # a link is refused by the output tree's checks; a FIFO is never opened
            raise CannotWriteError(f"cannot write {path}: not a regular file; remove it and run the same command again")
        try:
            with zipfile.ZipFile(path) as archive:
                unpacked = sum(info.file_size for info in archive.infolist())
            if unpacked > MAX_ENTRY_BYTES:
                raise ValueError(f"unpacks to {unpacked / 2**20:.0f} MB, more than any segment needs")
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                tokens = data["tokens"]
                audio = data["audio"]
            take = _checked(key, meta, tokens, audio, segment)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as exc:
            log.warning("cached segment %s is damaged (%s); it will be regenerated", path.name, exc)
            remove_file(path)
            return None
        return take

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
            meta=np.array(json_text(meta, indent=None, sort_keys=True)),
        )
        atomic_write_bytes(self.path(segment.key), buffer.getvalue())


def _int(meta: dict[str, Any], name: str, low: int, high: int) -> int:
    value = meta.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number in {low}..{high}, got {value!r}")
    return value


def _checked(key: str, meta: Any, tokens: np.ndarray, audio: np.ndarray, segment: Segment | None) -> Take:
    """A Take from a cache entry's parts, or ValueError saying what is wrong with them."""
    if not isinstance(meta, dict):
        raise ValueError(f"metadata is a {type(meta).__name__}, not a mapping")
    if meta.get("key") != key:
        raise ValueError(f"entry holds key {meta.get('key')!r}")
    sample_rate = _int(meta, "sample_rate", 8000, 192000)
    frame_rate = _int(meta, "frame_rate", 1, 1000)
    prompt_frames = _int(meta, "prompt_frames", 0, 10**6)
    if sample_rate % frame_rate:
        raise ValueError(f"sample rate {sample_rate} is not a whole number of frames of {frame_rate} Hz")
    if tokens.ndim != 2 or tokens.shape[0] not in (4, 8) or tokens.dtype.kind not in "iu":
        raise ValueError(f"tokens must be (4 or 8, frames) codes, got {tokens.dtype} {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= VOCAB):
        raise ValueError(f"tokens hold codes outside 0..{VOCAB - 1}")
    channels = tokens.shape[0] // 4
    hop = sample_rate // frame_rate
    if audio.ndim != 2 or audio.dtype != np.float32 or audio.shape != (channels, tokens.shape[1] * hop):
        raise ValueError(f"audio {audio.dtype} {audio.shape} does not match {channels} channel(s) of the tokens")
    if prompt_frames > tokens.shape[1]:
        raise ValueError(f"{prompt_frames} prompt frames in {tokens.shape[1]}")
    if segment is not None:
        if sample_rate != SAMPLE_RATE_HZ or frame_rate != FRAME_RATE_HZ:
            raise ValueError(f"rates {sample_rate}/{frame_rate} Hz, expected {SAMPLE_RATE_HZ}/{FRAME_RATE_HZ}")
        if prompt_frames != segment.prompt_frames or tokens.shape[1] - prompt_frames != segment.frames:
            raise ValueError(
                f"{prompt_frames} + {tokens.shape[1] - prompt_frames} frames, the plan says "
                f"{segment.prompt_frames} + {segment.frames}"
            )
    if not np.isfinite(audio).all():
        raise ValueError("non-finite audio")
    if audio.size and (loudest := float(np.abs(audio).max())) > MAX_SAMPLE:
        raise ValueError(f"samples up to {loudest:.3g}, far outside what a codec decodes (|x| <= {MAX_SAMPLE:g})")
    return Take(tokens.astype(np.int64), prompt_frames, audio, sample_rate, frame_rate, key=key, provenance=meta)
