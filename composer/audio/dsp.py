"""Small pure DSP helpers. Audio is float32 (channels, samples); sample rates are explicit."""

from __future__ import annotations

import numpy as np


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels: (channels, samples) -> (1, samples)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2:
        raise ValueError(f"audio must be (channels, samples), got shape {audio.shape}")
    return audio.mean(axis=0, keepdims=True)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample (channels, samples) with soxr's very-high-quality filter."""
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    audio = np.asarray(audio, dtype=np.float32)
    if from_rate == to_rate or audio.shape[1] == 0:
        return audio
    import soxr

    out = soxr.resample(audio.T, from_rate, to_rate, quality="VHQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)
