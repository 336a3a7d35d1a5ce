"""True-peak measurement and a look-ahead limiter working on oversampled peaks.

The limiter never clips: it computes, from 4x-oversampled peaks, the gain each sample needs to stay
under the ceiling, spreads every reduction over a look-ahead window before the peak (so the gain is
already down when the peak arrives) and releases smoothly after it.
"""

from __future__ import annotations

import numpy as np

OVERSAMPLE = 4


def _oversampled_peaks(audio: np.ndarray) -> np.ndarray:
    """Per-sample peak magnitude across channels, including 4x inter-sample peaks. Shape (samples,).

    The 4x interpolation is soxr's (high quality, linear phase, delay-compensated): four times faster
    than a polyphase FIR in scipy for a 3-minute mix, and as exact for peak finding.
    """
    import soxr

    n = audio.shape[1]
    peaks: np.ndarray | None = None
    for channel in audio:  # one contiguous channel at a time: no strided copies of the 4x signal
        up = np.abs(soxr.resample(np.ascontiguousarray(channel, dtype=np.float32), 1, OVERSAMPLE, quality="HQ"))
        peaks = up if peaks is None else np.maximum(peaks, up[: peaks.shape[0]], out=peaks[: up.shape[0]])
    assert peaks is not None
    if peaks.shape[0] < n * OVERSAMPLE:
        peaks = np.pad(peaks, (0, n * OVERSAMPLE - peaks.shape[0]))
    grouped = np.abs(audio[0]).astype(np.float32)
    for channel in range(1, audio.shape[0]):
        np.maximum(grouped, np.abs(audio[channel]), out=grouped)
    for phase in range(OVERSAMPLE):
        np.maximum(grouped, peaks[phase : n * OVERSAMPLE : OVERSAMPLE], out=grouped)
    return grouped


def true_peak_db(audio: np.ndarray) -> float:
    """True peak (4x oversampled, BS.1770-style) in dBTP; -inf for silence."""
    if audio.shape[1] == 0:
        return float("-inf")
    peak = float(_oversampled_peaks(audio).max())
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")


def limit(
    audio: np.ndarray,
    sample_rate: int,
    ceiling_dbtp: float,
    lookahead_ms: float = 5.0,
    release_ms: float = 80.0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Keep the true peak under ``ceiling_dbtp``.

    Returns:
        (limited audio, gain applied per sample, true peak of the result in dBTP).
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    audio = np.asarray(audio, dtype=np.float32)
    n = audio.shape[1]
    if n == 0:
        return audio, np.ones(0, np.float32), float("-inf")
    # margin: the 4x soxr peak meter reads broadband peaks up to ~0.1 dB lower than an 8x polyphase
    # FIR (tests/meters.py), so aim 0.15 dB under the ceiling
    ceiling = 10.0 ** ((ceiling_dbtp - 0.15) / 20.0)
    peaks = _oversampled_peaks(audio)
    need = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12))
    if need.min() >= 1.0:
        peak = float(peaks.max())
        return audio, np.ones(n, np.float32), 20.0 * np.log10(peak) if peak > 0 else float("-inf")
    attack = max(1, int(lookahead_ms * 1e-3 * sample_rate))
    release = max(attack, int(release_ms * 1e-3 * sample_rate))
    # hold each reduction for `attack` samples before and `release` after the peak ...
    size = attack + release + 1  # held[i] = min(need[i - release : i + attack + 1])
    held = minimum_filter1d(need, size=size, origin=release - size // 2, mode="nearest")
    # ... then smooth with a box shorter than the hold: the average never exceeds the need at any sample
    width = 2 * (min(attack, release) // 2) + 1
    gain = np.minimum(uniform_filter1d(held, size=width, mode="nearest"), need)
    out = (audio * gain).astype(np.float32)
    # the gain varies slowly, so inter-sample peaks scale with it; trim any rounding excess
    final = true_peak_db(out)
    excess = 10.0 ** ((final - ceiling_dbtp) / 20.0)
    if excess > 1.0:
        out = (out / excess).astype(np.float32)
        gain = gain / excess
        final -= 20.0 * np.log10(excess)
    return out, gain.astype(np.float32), final
