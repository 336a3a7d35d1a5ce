"""Meters for tests, independent of the code under test."""

from __future__ import annotations

import numpy as np


def true_peak_db(audio: np.ndarray, oversample: int = 8) -> float:
    """True peak in dBTP by 8x polyphase oversampling (scipy's Kaiser FIR), not composer's 4x soxr meter."""
    from scipy.signal import resample_poly

    x = np.asarray(audio, dtype=np.float64)
    if x.shape[-1] == 0:
        return float("-inf")
    up = resample_poly(x, oversample, 1, axis=-1, window=("kaiser", 10.0))
    peak = max(float(np.abs(up).max()), float(np.abs(x).max()))
    return 20 * np.log10(peak) if peak > 0 else float("-inf")
