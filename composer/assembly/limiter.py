"""True-peak measurement and a look-ahead limiter working on oversampled peaks.

The limiter never clips: it computes, from 4x-oversampled peaks, the gain each sample needs to stay
under the ceiling, spreads every reduction over a look-ahead window before the peak (so the gain is
already down when the peak arrives) and releases smoothly after it.

Only the stretches that need gain reduction are filtered and re-measured: elsewhere the output is the
input, sample for sample, and so are its peaks. On a mastered mix those stretches are a small part of
the track, which is what keeps the limiter well under a second for three minutes of stereo.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from composer.audio.dsp import map_channels

OVERSAMPLE = 4
# how far (input samples) one sample's change moves the 4x interpolation: soxr's HQ filter reaches
# under 128 samples either side (a measured chunk equals the whole-signal result from 128 on); 8x margin
REACH = 1024
CHUNK = 1 << 15  # input samples per streamed interpolation step (0.5 MB of 4x output)
PIECE = 1 << 21  # samples per gain-smoothing piece (44 s at 48 kHz), two pieces at a time


def _channel_peaks(channel: np.ndarray) -> np.ndarray:
    """Per-sample peak of one channel: max(|x[i]|, the interpolated points after it). Shape (n,).

    The 4x interpolation is soxr's (high quality, linear phase, delay-compensated), streamed in
    chunks that stay in cache: the same numbers as one call, without a 4x copy of the track in memory.
    """
    import soxr

    channel = np.ascontiguousarray(channel, dtype=np.float32)
    n = channel.shape[0]
    peak = np.abs(channel)
    stream = soxr.ResampleStream(1, OVERSAMPLE, 1, dtype="float32", quality="HQ")
    pending = np.zeros(0, np.float32)  # interpolated points not yet grouped by input sample
    done = 0  # input samples whose interpolated points are all in
    for start in range(0, n, CHUNK):
        up = np.abs(stream.resample_chunk(channel[start : start + CHUNK], last=start + CHUNK >= n))
        up = np.concatenate([pending, up]) if pending.size else up
        whole = min(up.shape[0] // OVERSAMPLE, n - done)
        for phase in range(OVERSAMPLE):
            np.maximum(
                peak[done : done + whole], up[phase : whole * OVERSAMPLE : OVERSAMPLE], out=peak[done : done + whole]
            )
        pending = up[whole * OVERSAMPLE :]
        done += whole
    if pending.size and done < n:  # the last sample's remaining points
        np.maximum(peak[done : done + 1], pending.max(keepdims=True), out=peak[done : done + 1])
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
    """Per-sample peak magnitude across channels, including 4x inter-sample peaks. Shape (samples,).

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
    """True peak (4x oversampled, BS.1770-style) in dBTP; -inf for silence."""
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
    # margin: the 4x soxr peak meter reads broadband peaks up to ~0.1 dB lower than an 8x polyphase
    # FIR (tests/meters.py), so aim 0.15 dB under the ceiling
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
