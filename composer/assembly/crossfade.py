"""Fade curves for crossfades and seams (assembly.mix applies them). Audio is float32 (channels, samples)."""

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
