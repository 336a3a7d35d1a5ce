"""Loudness (ITU-R BS.1770 via pyloudnorm) and gain helpers."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)
BLOCK_S = 0.4  # BS.1770 gating block
SILENCE_LUFS = -70.0  # the absolute gate: anything quieter has no defined loudness


def db_to_gain(db: float | np.ndarray) -> np.ndarray:
    """Decibels to linear gain (works elementwise)."""
    return np.power(10.0, np.asarray(db, dtype=np.float64) / 20.0)


def integrated_lufs(audio: np.ndarray, sample_rate: int) -> float | None:
    """Integrated loudness in LUFS, or None when undefined (shorter than 400 ms, or silent).

    Raises:
        ValueError: audio is not (channels, samples) or holds NaN/inf.
    """
    import pyloudnorm

    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 2:
        raise ValueError(f"audio must be (channels, samples), got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    if audio.shape[1] < int(BLOCK_S * sample_rate) + 1:
        return None
    meter = pyloudnorm.Meter(sample_rate)
    value = float(meter.integrated_loudness(audio.T if audio.shape[0] > 1 else audio[0]))
    if not np.isfinite(value) or value < SILENCE_LUFS:
        return None
    return value


def short_term_lufs(audio: np.ndarray, sample_rate: int, hop_s: float = 0.5, window_s: float = 3.0) -> np.ndarray:
    """Short-term loudness (ungated, 3 s window) every ``hop_s`` seconds; NaN where undefined.

    The K-weighting (pyloudnorm's BS.1770 filters) runs once over the whole signal and the window
    means come from a cumulative sum, so a 3-minute mix takes a fraction of a second.

    Returns:
        (2, n) array: window centre times in seconds, and LUFS.
    """
    import pyloudnorm
    from scipy.signal import lfilter

    audio = np.asarray(audio, dtype=np.float64)
    n = audio.shape[1]
    win = min(int(window_s * sample_rate), n)
    hop = int(hop_s * sample_rate)
    if win == 0:
        return np.zeros((2, 0))
    weighted = audio
    for stage in pyloudnorm.Meter(sample_rate)._filters.values():
        weighted = lfilter(stage.b, stage.a, weighted, axis=1)
    power = np.concatenate([np.zeros(1), np.cumsum((weighted**2).sum(axis=0))])  # channel gains are 1 (L, R)
    starts = np.arange(0, n - win + 1, hop)
    mean = (power[starts + win] - power[starts]) / win
    with np.errstate(divide="ignore"):
        lufs = -0.691 + 10 * np.log10(mean)
    lufs[~np.isfinite(lufs) | (lufs < SILENCE_LUFS)] = np.nan
    return np.stack([(starts + win / 2) / sample_rate, lufs])
