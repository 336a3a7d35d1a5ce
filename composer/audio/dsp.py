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


def highpass(audio: np.ndarray, sample_rate: int, cutoff_hz: float = 20.0) -> np.ndarray:
    """Zero-phase 2nd-order Butterworth high-pass: removes DC offset and sub-sonic rumble.

    Generated audio can carry a DC offset; left in, it eats headroom (the limiter would duck the
    music to make room for it) while adding no loudness.
    """
    from scipy.signal import butter, sosfiltfilt

    audio = np.asarray(audio, dtype=np.float32)
    if audio.shape[1] < 64:  # too short to filter meaningfully: just remove the mean
        return audio - audio.mean(axis=1, keepdims=True)
    sos = butter(2, cutoff_hz, btype="highpass", fs=sample_rate, output="sos")
    return np.ascontiguousarray(sosfiltfilt(sos, audio, axis=1), dtype=np.float32)
