"""Meters for tests, independent of the code under test."""

from __future__ import annotations

import numpy as np


def true_peak_db(audio: np.ndarray, oversample: int = 16) -> float:
    """True peak in dBTP by band-limited (FFT) interpolation, refined to 256 points per sample at its crests.

    Not composer's method (a windowed-sinc FIR at 4x and a sinusoid through each crest): the signal,
    with silence either side as a player starts and ends it, is interpolated through its whole
    spectrum up to the Nyquist frequency, 16 points per sample. A tone near Nyquist can still fall
    0.04 dB between those points, so the highest crests are interpolated 16 times further (their
    content is at a sixteenth of that grid's Nyquist, where scipy's polyphase FIR is exact).
    """
    from scipy.fft import irfft, rfft
    from scipy.signal import resample_poly

    x = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    if x.shape[-1] == 0:
        return float("-inf")
    pad = 8192  # silence after the signal: the circular transform's wrap-around stays out of it
    n = x.shape[-1] + pad
    spectrum = rfft(x, n=n, axis=-1)
    if n % 2 == 0:  # split the Nyquist bin between its two images, as the real signal has it
        spectrum[..., -1] *= 0.5
    signed = irfft(spectrum, n=n * oversample, axis=-1) * oversample
    up = np.abs(signed)
    best = max(float(up.max()), float(np.abs(x).max()))
    if best == 0:
        return float("-inf")
    flat = up.reshape(-1)
    near = np.flatnonzero(flat >= best * 10 ** (-0.1 / 20))  # every point within 0.1 dB of the top ...
    near = near[np.argsort(flat[near])[::-1][:300]]  # ... the 300 highest of them
    reach, keep = 256, 32  # points of context either side; the middle +-keep points are read
    for index in near:
        channel, at = divmod(int(index), up.shape[-1])
        lo, hi = max(0, at - reach), min(up.shape[-1], at + reach)
        fine = np.abs(resample_poly(signed[channel, lo:hi], 16, 1, window=("kaiser", 10.0)))
        middle = fine[16 * max(0, at - lo - keep) : 16 * (at - lo + keep)]
        best = max(best, float(middle.max()))
    return 20 * np.log10(best)
