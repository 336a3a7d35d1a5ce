"""Fade curves and overlap joins. Audio is float32 (channels, samples)."""

from __future__ import annotations

from typing import Literal

import numpy as np

Curve = Literal["equal_power", "linear"]


def fade_curves(n: int, curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    """(fade_out, fade_in) gains over ``n`` samples.

    ``equal_power`` (cos/sin) keeps the summed power constant for uncorrelated material (two
    different pieces of music); ``linear`` keeps the summed amplitude constant for correlated
    material (a continuation seam, where both sides are nearly the same signal).
    """
    if n <= 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    x = (np.arange(n, dtype=np.float64) + 0.5) / n
    if curve == "equal_power":
        out, inn = np.cos(0.5 * np.pi * x), np.sin(0.5 * np.pi * x)
    elif curve == "linear":
        out, inn = 1.0 - x, x
    else:
        raise ValueError(f"unknown curve {curve!r}")
    return out.astype(np.float32), inn.astype(np.float32)


def crossfade_join(a: np.ndarray, b: np.ndarray, overlap: int, curve: Curve = "equal_power") -> np.ndarray:
    """Join ``a`` then ``b`` with the last ``overlap`` samples of ``a`` faded into the first of ``b``.

    Raises:
        ValueError: channel counts differ or the overlap is longer than either side.
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"channel counts differ: {a.shape[0]} vs {b.shape[0]}")
    if not 0 <= overlap <= min(a.shape[1], b.shape[1]):
        raise ValueError(f"overlap of {overlap} samples is longer than the audio ({a.shape[1]}, {b.shape[1]})")
    fade_out, fade_in = fade_curves(overlap, curve)
    middle = a[:, a.shape[1] - overlap :] * fade_out + b[:, :overlap] * fade_in
    return np.concatenate([a[:, : a.shape[1] - overlap], middle, b[:, overlap:]], axis=1).astype(np.float32)
