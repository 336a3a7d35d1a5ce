"""Loudness measurement against EBU Tech 3341-style reference signals, and gain helpers."""

import numpy as np
import pytest

from composer.assembly.limiter import limit, true_peak_db
from composer.assembly.loudness import integrated_lufs, short_term_lufs
from tests.meters import true_peak_db as independent_true_peak_db


def sine(freq: float, dbfs: float, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)
    return np.tile(x, (channels, 1)).astype(np.float32)


@pytest.mark.parametrize("rate", [32000, 44100, 48000])
def test_1k_sine_at_minus_23_dbfs_reads_minus_23_lufs_stereo(rate: int) -> None:
    # EBU Tech 3341 case 1: stereo 1 kHz sine at -23 dBFS per channel -> -23 LUFS
    assert integrated_lufs(sine(1000, -23, 20, rate, channels=2), rate) == pytest.approx(-23.0, abs=0.1)


def test_mono_sine_reads_three_lu_lower() -> None:
    # a mono channel counts once: same sine in one channel is 3 dB below the stereo pair
    assert integrated_lufs(sine(1000, -23, 10, 48000), 48000) == pytest.approx(-26.0, abs=0.1)


def test_level_steps_track_one_to_one() -> None:
    a = integrated_lufs(sine(1000, -20, 10, 44100, 2), 44100)
    b = integrated_lufs(sine(1000, -30, 10, 44100, 2), 44100)
    assert a is not None and b is not None and a - b == pytest.approx(10.0, abs=0.05)


def test_undefined_loudness() -> None:
    assert integrated_lufs(np.zeros((1, 48000), np.float32), 48000) is None
    assert integrated_lufs(sine(1000, -20, 0.2, 48000), 48000) is None  # shorter than one 400 ms block
    with pytest.raises(ValueError, match="NaN"):
        integrated_lufs(np.full((1, 48000), np.nan, np.float32), 48000)


@pytest.mark.parametrize("channels", [1, 2])
def test_short_term_curve(channels: int) -> None:
    rate = 32000
    x = np.concatenate([sine(1000, -30, 6, rate, channels), sine(1000, -15, 6, rate, channels)], axis=1)
    times, values = short_term_lufs(x, rate)
    mono_offset = 3.0 if channels == 1 else 0.0
    assert values[0] == pytest.approx(-30 - mono_offset, abs=0.1)
    assert values[-1] == pytest.approx(-15 - mono_offset, abs=0.1)
    assert np.all(np.diff(times) > 0) and times[0] == pytest.approx(1.5)
    # agrees with pyloudnorm's ungated measurement of the same 3 s window
    window = x[:, int(6.5 * rate) : int(9.5 * rate)]
    index = int(np.argmin(np.abs(times - 8.0)))
    import pyloudnorm

    ref = pyloudnorm.Meter(rate).integrated_loudness(window.T if channels > 1 else window[0])
    assert values[index] == pytest.approx(ref, abs=0.05)  # a steady window: gating removes nothing
    silent = short_term_lufs(np.zeros((1, 5 * rate), np.float32), rate)
    assert np.isnan(silent[1]).all()


@pytest.mark.parametrize("rate", [32000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_limiter_holds_true_peak_without_clipping(rate: int, channels: int) -> None:
    rng = np.random.default_rng(channels)
    x = sine(220, -6, 3, rate, channels) + rng.standard_normal((channels, 3 * rate)).astype(np.float32) * 0.05
    x[:, rate : rate + 200] *= 4.0  # a loud burst
    out, gain, peak = limit(x, rate, -1.0)
    assert independent_true_peak_db(out) <= -1.0 + 1e-3, "an 8x meter of its own, not the limiter's"
    assert peak == pytest.approx(true_peak_db(out), abs=1e-3), "the reported peak is the limiter's own reading"
    assert np.all(gain <= 1.0) and np.all(gain > 0)
    assert out.shape == x.shape
    # no hard clipping: the output is the input times a smooth gain
    assert np.max(np.abs(np.diff(gain))) < 0.05
    # quiet parts far from the burst are untouched
    assert np.allclose(gain[: rate // 2], gain[0]) and gain[0] == pytest.approx(gain[-1], abs=1e-6)


def test_limiter_leaves_quiet_audio_alone() -> None:
    x = sine(1000, -20, 1, 48000)
    out, gain, _ = limit(x, 48000, -1.0)
    assert np.array_equal(out, x) and np.all(gain == 1.0)


def test_true_peak_sees_intersample_peaks() -> None:
    # a sine at fs/4 sampled at 45 degrees: samples at 0.707, true peak 1.0
    rate = 48000
    n = np.arange(4800)
    x = np.sin(2 * np.pi * (rate / 4) * n / rate + np.pi / 4)[None].astype(np.float32)
    assert np.abs(x).max() == pytest.approx(0.7071, abs=1e-3)
    assert true_peak_db(x) == pytest.approx(0.0, abs=0.3)
    assert independent_true_peak_db(x) == pytest.approx(true_peak_db(x), abs=0.3)
