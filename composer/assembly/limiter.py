"""True-peak measurement and a look-ahead limiter working on oversampled peaks.

The peak meter interpolates 4 points per sample with a long windowed-sinc filter (flat within
0.011 dB up to 99 % of the Nyquist frequency) and raises each sample's highest point to the crest of
the sinusoid through it and its neighbours, so a tone just under Nyquist reads its true level at any
sample rate: within 0.02 dB of band-limited interpolation at 16 points per sample.

The limiter never clips: it computes, from those peaks, the gain each sample needs to stay under the
ceiling, spreads every reduction over a look-ahead window before the peak (so the gain is already
down when the peak arrives) and releases smoothly after it.

Only the stretches that need gain reduction are filtered and re-measured: elsewhere the output is the
input, sample for sample, and so are its peaks. On a mastered mix those stretches are a small part of
the track (the worst case, three minutes of stereo 7 dB over the ceiling throughout, takes about 2 s).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np

from composer.audio.dsp import map_channels

OVERSAMPLE = 4
HALF = 192  # taps either side of an interpolated point
BETA = 6.0  # Kaiser window of the sinc: with HALF, interpolation error under 0.0013 up to 99 % of Nyquist
# how far (input samples) one sample's change moves a peak reading: the filter's half length, and
# one interpolated point either side for the crest fit
REACH = HALF + 2
# the largest cos(spacing) of 4 points per sample on a tone under Nyquist is cos(pi / 4): a sharper
# crest is not one tone's, and gets a parabola
TONE_COS = 0.7
CHUNK = 1 << 17  # input samples per streamed step
PIECE = 1 << 21  # samples per gain-smoothing piece (44 s at 48 kHz), two pieces at a time


@cache
def _phases() -> np.ndarray:
    """The interpolation filters, (OVERSAMPLE - 1, 2 * HALF): row p gives the point p / OVERSAMPLE past a sample.

    Point m + p/R is sum_d c_p[d] x[m - d] for d in -HALF+1..HALF, c_p[d] = sinc(d + p/R) w(d + p/R)
    with w a Kaiser window of half-width HALF. The sample points themselves (p = 0) are the samples.
    """
    from scipy.special import i0

    taps = np.arange(-HALF + 1, HALF + 1)
    t = taps[None, :] + np.arange(1, OVERSAMPLE)[:, None] / OVERSAMPLE
    window = i0(BETA * np.sqrt(np.clip(1.0 - (t / HALF) ** 2, 0.0, 1.0))) / i0(BETA)
    return (np.sinc(t) * window).astype(np.float32)


def _interpolated(x: np.ndarray, start: int, stop: int) -> np.ndarray:
    """|points| at samples start..stop-1 (row 0) and p / OVERSAMPLE after each (row p). Shape (OVERSAMPLE, stop-start).

    ``x`` is zero outside its length, as a player starts and ends it.
    """
    from scipy.signal import oaconvolve

    n = x.shape[0]
    lo, hi = max(0, start - HALF), min(n, stop + HALF)
    full = oaconvolve(x[None, lo:hi], _phases(), axes=1)  # point m + p/R at full[p - 1, m - lo + HALF - 1]
    offset = start - lo + HALF - 1
    points = np.empty((OVERSAMPLE, stop - start), np.float32)
    np.abs(x[start:stop], out=points[0])
    np.abs(full[:, offset : offset + stop - start], out=points[1:])
    return points


def _channel_peaks(channel: np.ndarray) -> np.ndarray:
    """Per-sample peak of one channel: max(|x[i]|, the interpolated points after it). Shape (n,).

    Each sample's highest point, where it is a crest, is raised to the crest of the sinusoid through it
    and its two neighbours (y[-1] + y[1] = 2 y[0] cos(w), amplitude^2 = y[0]^2 + ((y[1] - y[-1]) / 2 sin(w))^2):
    at 4 points per sample a tone near Nyquist falls up to 0.7 dB between points, and this is its
    exact crest (a parabola would read up to 0.07 dB low; it is used where the points are too close to
    tell a tone's curve, at low frequencies, where it is exact). The raise is capped at a quarter of
    the larger drop to a neighbour (a tone's is at most an eighth), so it cannot invent a peak.
    Streamed in chunks with context: the numbers of one pass (to float rounding).
    """
    channel = np.ascontiguousarray(channel, dtype=np.float32)
    n = channel.shape[0]
    peak = np.empty(n, np.float32)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        # one sample either side of the chunk for the neighbours (zero outside the signal)
        points = np.zeros((OVERSAMPLE, stop - start + 2), np.float32)
        lo, hi = max(0, start - 1), min(n, stop + 1)
        points[:, lo - start + 1 : hi - start + 1] = _interpolated(channel, lo, hi)
        rows = [points[OVERSAMPLE - 1, :-2]] + [row[1:-1] for row in points] + [points[0, 2:]]  # time order
        mid, left, right = rows[1], rows[0], rows[2]
        for phase in range(1, OVERSAMPLE):  # each sample's highest point and its neighbours
            higher = rows[phase + 1] > mid
            mid = np.where(higher, rows[phase + 1], mid)
            left = np.where(higher, rows[phase], left)
            right = np.where(higher, rows[phase + 2], right)
        bend = 2.0 * mid - left - right
        crest = (mid >= left) & (mid >= right) & (bend > 0)
        safe = np.where(crest, mid, np.float32(1.0))
        cos = np.where(crest, (left + right) / (2.0 * safe), np.float32(0.0))  # a tone's cos(point spacing)
        tone = (cos >= TONE_COS) & (cos <= np.float32(0.999))
        fit = np.sqrt(safe * safe + (right - left) ** 2 / (4.0 * np.where(tone, 1.0 - cos * cos, 1.0))) - safe
        parabola = (left - right) ** 2 / (8.0 * np.where(crest, bend, np.float32(1.0)))
        bound = np.maximum(mid - left, mid - right) / 4.0
        peak[start:stop] = mid + np.where(crest, np.minimum(np.where(tone, fit, parabola), bound), 0.0)
    return peak


def _peaks(audio: np.ndarray) -> np.ndarray:
    return map_channels(_channel_peaks, audio).max(axis=0)


def spans(mask: np.ndarray, reach: int) -> list[tuple[int, int]]:
    """The stretches where ``mask`` is true, widened by ``reach`` either side and merged: [(start, stop)]."""
    where = np.flatnonzero(mask)
    if where.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(where) > 2 * reach + 1)
    starts = np.concatenate([where[:1], where[breaks + 1]]) - reach
    stops = np.concatenate([where[breaks], where[-1:]]) + reach + 1
    n = mask.shape[0]
    return [(max(0, int(a)), min(n, int(b))) for a, b in zip(starts, stops, strict=True)]


def oversampled_peaks(
    audio: np.ndarray, within: list[tuple[int, int]] | None = None, base: np.ndarray | None = None
) -> np.ndarray:
    """Per-sample peak magnitude across channels, including inter-sample peaks. Shape (samples,).

    Args:
        audio: (channels, samples).
        within: measure only these stretches (with ``REACH`` samples of context) and take the rest
            from ``base``, the peaks of a signal that equals ``audio`` outside them.
        base: see ``within``.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if within is None or base is None:
        return _peaks(audio)
    out = base.copy()
    n = audio.shape[1]
    for start, stop in within:
        lo, hi = max(0, start - REACH), min(n, stop + REACH)
        out[start:stop] = _peaks(audio[:, lo:hi])[start - lo : stop - lo]
    return out


def _db(peak: float) -> float:
    return 20.0 * float(np.log10(peak)) if peak > 0 else float("-inf")


def true_peak_db(audio: np.ndarray) -> float:
    """True peak (oversampled, BS.1770-style, accurate to 99 % of Nyquist) in dBTP; -inf for silence."""
    if audio.shape[1] == 0:
        return float("-inf")
    return _db(float(oversampled_peaks(audio).max()))


def limit(
    audio: np.ndarray,
    sample_rate: int,
    ceiling_dbtp: float,
    lookahead_ms: float = 5.0,
    release_ms: float = 80.0,
    peaks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Keep the true peak under ``ceiling_dbtp``.

    Args:
        peaks: ``oversampled_peaks(audio)`` when the caller has it (mastering measures the mix once and
            scales the peaks with each gain it tries: the interpolation is linear).

    Returns:
        (limited audio, gain applied per sample, true peak of the result in dBTP).
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    audio = np.asarray(audio, dtype=np.float32)
    n = audio.shape[1]
    if n == 0:
        return audio, np.ones(0, np.float32), float("-inf")
    peaks = oversampled_peaks(audio) if peaks is None else peaks
    # margin: the meter reads within 0.02 dB of band-limited interpolation below 99 % of Nyquist; the
    # rest (energy in the last 1 % of the band, which the gain's own modulation can move there) is
    # covered by aiming 0.15 dB under the ceiling
    ceiling = np.float32(10.0 ** ((ceiling_dbtp - 0.15) / 20.0))
    need = np.minimum(np.float32(1.0), ceiling / np.maximum(peaks, np.float32(1e-12)))
    if need.min() >= 1.0:
        return audio, np.ones(n, np.float32), _db(float(peaks.max()))
    attack = max(1, int(lookahead_ms * 1e-3 * sample_rate))
    release = max(attack, int(release_ms * 1e-3 * sample_rate))
    size = attack + release + 1  # held[i] = min(need[i - release : i + attack + 1]) ...
    width = 2 * (min(attack, release) // 2) + 1  # ... smoothed by a box shorter than the hold
    gain = np.ones(n, np.float32)
    reach = attack + release + width

    def smooth(piece: tuple[int, int]) -> None:
        start, stop = piece
        lo, hi = max(0, start - reach), min(n, stop + reach)  # context: the same numbers as the whole signal
        held = minimum_filter1d(need[lo:hi], size=size, origin=release - size // 2, mode="nearest")
        # the average never exceeds the need at any sample
        smoothed = uniform_filter1d(held, size=width, mode="nearest")[start - lo : stop - lo]
        gain[start:stop] = np.minimum(smoothed, need[start:stop])

    # a reduction moves the gain at most `reach` samples away: outside those stretches the gain is
    # exactly 1, so only they are filtered, in pieces on two threads (scipy.ndimage frees the GIL)
    pieces = [(a, min(hi, a + PIECE)) for lo, hi in spans(need < 1.0, reach) for a in range(lo, hi, PIECE)]
    if len(pieces) > 1:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(smooth, pieces))
    else:
        for piece in pieces:
            smooth(piece)
    out = audio * gain
    # the gain varies slowly, so inter-sample peaks scale with it; re-measure where it moved and trim
    # any rounding excess
    final = _db(float(oversampled_peaks(out, spans(gain < 1.0, REACH), peaks).max()))
    excess = 10.0 ** ((final - ceiling_dbtp) / 20.0)
    if excess > 1.0:
        out = (out / excess).astype(np.float32)
        gain = gain / np.float32(excess)
        final -= 20.0 * np.log10(excess)
    return out, gain, final
