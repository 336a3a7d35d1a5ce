"""Audio file I/O. Files are written atomically: temp file in the same folder, fsync, rename."""

from __future__ import annotations

import errno
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np

from composer.errors import ComposerError
from composer.fsutil import atomic_path

SUBTYPES = {16: "PCM_16", 24: "PCM_24", "float": "FLOAT"}
LOSSY_SUBTYPES = {"MP3": "MPEG_LAYER_III", "OGG": "VORBIS"}
# libsndfile's compression level per format and quality, measured with libsndfile 1.2.2 on 44.1 kHz
# stereo noise: mp3 at a constant 320, 160 and 96 kbit/s; Vorbis (whose rate varies with the music:
# noise is its densest case) about 310, 175 and 115 kbit/s
COMPRESSION = {"MP3": {"high": 0.0, "standard": 0.5, "small": 0.75},
               "OGG": {"high": 0.15, "standard": 0.5, "small": 0.7}}  # fmt: skip


def write_audio(
    path: Path, audio: np.ndarray, sample_rate: int, bit_depth: int | str = 16, fmt: str | None = None, *,
    quality: str = "high", tag: Callable[[Path, str], None] | None = None,
) -> None:  # fmt: skip
    """Write (channels, samples) float audio as WAV or FLAC (``bit_depth``), or MP3 or Ogg Vorbis
    (``quality``: high, standard or small), atomically. ``tag(path, format)`` adds tags to the
    written file before it takes its name.

    Raises:
        ValueError: bad shape, non-finite samples, or a format that cannot hold ``bit_depth``.
    """
    import soundfile as sf

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2:
        raise ValueError(f"audio must be (channels, samples), got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    fmt = (fmt or path.suffix.lstrip(".") or "wav").upper()
    if fmt == "FLAC" and bit_depth == "float":
        raise ValueError("FLAC cannot store float samples; use 16 or 24-bit")
    with atomic_path(path) as tmp:
        try:
            if fmt in LOSSY_SUBTYPES:
                sf.write(str(tmp), audio.T, sample_rate, subtype=LOSSY_SUBTYPES[fmt], format=fmt,
                         compression_level=COMPRESSION[fmt][quality],
                         bitrate_mode="CONSTANT" if fmt == "MP3" else None)  # fmt: skip
            else:
                sf.write(str(tmp), audio.T, sample_rate, subtype=SUBTYPES[bit_depth], format=fmt)
            if tag is not None:
                tag(tmp, fmt)
        except sf.LibsndfileError as exc:  # libsndfile says "System error": find out which
            full = shutil.disk_usage(tmp.parent).free < 1 << 20
            raise OSError(errno.ENOSPC if full else errno.EIO, f"libsndfile: {exc}", str(path)) from None


class AudioFileError(ComposerError):
    """An input audio file is missing, unreadable or empty."""

    exit_code = 2


def read_audio(path: Path, max_seconds: float | None = None, tail: bool = False) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 (channels, samples) and its sample rate.

    Args:
        max_seconds: read no more than this (the start, or with ``tail`` the end): a reference for a
            10 s section needs 10 s of it, however long the file is.

    Raises:
        AudioFileError: missing, not a regular file (a FIFO would block forever), not audio soundfile
            can read, empty, or holding NaN/inf.
    """

    import soundfile as sf

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise AudioFileError(f"{path}: not a readable audio file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise AudioFileError(f"{path}: {kind}, not an audio file")
    try:
        with sf.SoundFile(str(path)) as f:
            rate, total = int(f.samplerate), int(f.frames)
            want = total if max_seconds is None else min(total, int(np.ceil(max_seconds * rate)) + 1)
            if tail and want < total:
                f.seek(total - want)
            data = f.read(want, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AudioFileError(f"{path}: not a readable audio file ({first})") from None
    if data.shape[0] == 0 or not np.isfinite(data).all():
        raise AudioFileError(f"{path}: {'no samples' if data.shape[0] == 0 else 'NaN or infinite samples'}")
    return np.ascontiguousarray(data.T), int(rate)
