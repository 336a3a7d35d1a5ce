"""Loudness (ITU-R BS.1770-4) and gain helpers.

The K-weighting filter is BS.1770's two biquads (their coefficients for any sample rate come from
pyloudnorm); the filtering and the 400 ms block powers are composer's own: one ``sosfilt`` pass per
channel, in parallel, and block sums from a cumulative sum. pyloudnorm's own meter loops over the
blocks in Python and takes ~0.3 s for a 3-minute stereo mix; this takes a fraction of that, and
tests hold the two within 0.01 LU.
"""

from __future__ import annotations

import logging

import numpy as np

from composer.audio.dsp import map_channels

log = logging.getLogger(__name__)
BLOCK_S = 0.4  # BS.1770 gating block
HOP_S = 0.1  # blocks overlap by 75%
SILENCE_LUFS = -70.0  # the absolute gate: anything quieter has no defined loudness
RELATIVE_GATE_LU = -10.0


def db_to_gain(db: float | np.ndarray) -> np.ndarray:
    """Decibels to linear gain (works elementwise)."""
    return np.power(10.0, np.asarray(db, dtype=np.float64) / 20.0)


def _check(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 2:
        raise ValueError(f"audio must be (channels, samples), got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    return audio


def _k_weighted_power(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The K-weighted signal's power summed over channels (channel gains 1: mono or stereo), float64."""
    import pyloudnorm
    from scipy.signal import sosfilt

    stages = pyloudnorm.Meter(sample_rate)._filters.values()
    sos = np.array([np.concatenate([s.b, s.a]) for s in stages])

    def weigh(channel: np.ndarray) -> np.ndarray:
        y = sosfilt(sos, np.asarray(channel, dtype=np.float64))
        return np.square(y, out=y)

    powers = map_channels(weigh, audio)
    return powers.sum(axis=0) if powers.shape[0] > 1 else powers[0]


def integrated_lufs(audio: np.ndarray, sample_rate: int) -> float | None:
    """Integrated (gated) loudness in LUFS, or None when undefined (shorter than 400 ms, or silent).

    Raises:
        ValueError: audio is not (channels, samples) or holds NaN/inf.
    """
    audio = _check(audio)
    n = audio.shape[1]
    block = int(BLOCK_S * sample_rate)
    if n < block + 1:
        return None
    power = np.concatenate([np.zeros(1), np.cumsum(_k_weighted_power(audio, sample_rate))])
    # BS.1770's block grid (and pyloudnorm's rounding of the block count, so the two agree)
    blocks = int(np.round((n / sample_rate - BLOCK_S) / HOP_S)) + 1
    j = np.arange(blocks)
    lower = (BLOCK_S * (j * 0.25) * sample_rate).astype(np.int64)
    upper = np.minimum((BLOCK_S * (j * 0.25 + 1) * sample_rate).astype(np.int64), n)
    z = (power[upper] - power[lower]) / (BLOCK_S * sample_rate)
    with np.errstate(divide="ignore"):
        loudness = -0.691 + 10 * np.log10(z)
    gated = z[loudness >= SILENCE_LUFS]
    if gated.size == 0:
        return None
    relative = -0.691 + 10 * np.log10(gated.mean()) + RELATIVE_GATE_LU
    kept = z[(loudness >= SILENCE_LUFS) & (loudness > relative)]
    value = float(-0.691 + 10 * np.log10(kept.mean())) if kept.size else float("-inf")
    if not np.isfinite(value) or value < SILENCE_LUFS:
        return None
    return value


def short_term_lufs(audio: np.ndarray, sample_rate: int, hop_s: float = 0.5, window_s: float = 3.0) -> np.ndarray:
    """Short-term loudness (ungated, 3 s window) every ``hop_s`` seconds; NaN where undefined.

    Returns:
        (2, n) array: window centre times in seconds, and LUFS.
    """
    audio = _check(audio)
    n = audio.shape[1]
    win = min(int(window_s * sample_rate), n)
    hop = int(hop_s * sample_rate)
    if win == 0:
        return np.zeros((2, 0))
    power = np.concatenate([np.zeros(1), np.cumsum(_k_weighted_power(audio, sample_rate))])
    starts = np.arange(0, n - win + 1, hop)
    mean = (power[starts + win] - power[starts]) / win
    with np.errstate(divide="ignore"):
        lufs = -0.691 + 10 * np.log10(mean)
    lufs[~np.isfinite(lufs) | (lufs < SILENCE_LUFS)] = np.nan
    return np.stack([(starts + win / 2) / sample_rate, lufs])
