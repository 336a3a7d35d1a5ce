"""Small pure DSP helpers. Audio is float32 (channels, samples); sample rates are explicit."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

PARALLEL_MIN_SAMPLES = 1 << 16  # below this, a thread per channel costs more than it saves


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels: (channels, samples) -> (1, samples)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2:
        raise ValueError(f"audio must be (channels, samples), got shape {audio.shape}")
    return audio.mean(axis=0, keepdims=True)


def peak_columns(mono: np.ndarray, columns: int) -> list[float]:
    """The largest |sample| in each of ``columns`` near-equal runs of ``mono`` (a waveform's outline)."""
    return [float(np.abs(run).max()) if run.size else 0.0 for run in np.array_split(mono, columns)]


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample (channels, samples) with soxr's very-high-quality filter."""
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    audio = np.asarray(audio, dtype=np.float32)
    if from_rate == to_rate or audio.shape[1] == 0:
        return audio
    import soxr

    return np.ascontiguousarray(map_channels(lambda x: soxr.resample(x, from_rate, to_rate, quality="VHQ"), audio))


def map_channels(fn: Callable[[np.ndarray], np.ndarray], audio: np.ndarray) -> np.ndarray:
    """``fn`` applied to each channel of (channels, samples), one thread per channel on long audio.

    scipy's filters and soxr release the GIL, so a stereo mix filters in about half the time.
    """
    audio = np.asarray(audio)
    if audio.shape[0] == 1 or audio.shape[1] < PARALLEL_MIN_SAMPLES:
        return np.stack([fn(channel) for channel in audio])
    with ThreadPoolExecutor(max_workers=audio.shape[0]) as pool:
        return np.stack(list(pool.map(fn, audio)))


def frames(signal: np.ndarray, size: int, hop: int) -> np.ndarray:
    """Overlapping frames of a 1-D signal, a read-only view (count, size); none when shorter than one frame."""
    if signal.shape[0] < size:
        return np.zeros((0, size), signal.dtype)
    return np.lib.stride_tricks.sliding_window_view(signal, size)[::hop]


def highpass(audio: np.ndarray, sample_rate: int, cutoff_hz: float = 20.0) -> np.ndarray:
    """Zero-phase 2nd-order Butterworth high-pass: removes DC offset and sub-sonic rumble.

    Generated audio can carry a DC offset; left in, it eats headroom (the limiter would duck the
    music to make room for it) while adding no loudness. Forward then backward, each pass starting
    from the filter's steady state for the level it starts on, so a constant offset leaves no
    step at either end (what ``sosfiltfilt`` does with padding, in a seventh of the time).
    """
    from scipy.signal import butter, sosfilt, sosfilt_zi

    audio = np.asarray(audio, dtype=np.float32)
    if audio.shape[1] < 64:  # too short to filter meaningfully: just remove the mean
        return audio - audio.mean(axis=1, keepdims=True)
    sos = butter(2, cutoff_hz, btype="highpass", fs=sample_rate, output="sos")
    zi = sosfilt_zi(sos)
    settle = max(1, sample_rate // 200)  # the level each pass starts from: 5 ms of it, not one noisy sample

    def zero_phase(channel: np.ndarray) -> np.ndarray:
        x = channel.astype(np.float64)
        forward, _ = sosfilt(sos, x, zi=zi * x[:settle].mean())
        backward, _ = sosfilt(sos, forward[::-1], zi=zi * forward[-settle:].mean())
        return backward[::-1].astype(np.float32)

    return np.ascontiguousarray(map_channels(zero_phase, audio))
