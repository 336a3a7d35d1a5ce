"""Loudness measurement against EBU Tech 3341-style reference signals, and gain helpers."""

import numpy as np
import pytest

from composer.assembly.limiter import REACH, limit, oversampled_peaks, true_peak_db
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


def tones(*parts: tuple[float, float], rate: int = 48000) -> np.ndarray:
    """Stereo 1 kHz tone in (dBFS, seconds) stretches, as EBU Tech 3341's test sequences are built."""
    return np.concatenate(
        [sine(1000, db, s, rate, 2) if db > -200 else np.zeros((2, int(s * rate)), np.float32) for db, s in parts],
        axis=1,
    )


@pytest.mark.parametrize(
    ("case", "parts"),
    [
        (2, [(-33, 20)]),  # I = -33 LUFS
        (3, [(-36, 10), (-23, 60), (-36, 10)]),  # relative gate removes the quiet parts
        (4, [(-72, 10), (-36, 10), (-23, 60), (-36, 10), (-72, 10)]),  # absolute and relative gates
        (5, [(-26, 20.1), (-20, 20.0), (-26, 20.1)]),  # nothing gated: the power mean
    ],
)
def test_tech_3341_gating_cases(case: int, parts: list[tuple[float, float]]) -> None:
    expected = -33.0 if case == 2 else -23.0
    assert integrated_lufs(tones(*parts), 48000) == pytest.approx(expected, abs=0.1)


@pytest.mark.parametrize("rate", [32000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_integrated_loudness_agrees_with_pyloudnorm(rate: int, channels: int) -> None:
    """composer's block integration against pyloudnorm's own meter (an independent implementation)."""
    import pyloudnorm

    rng = np.random.default_rng(rate * channels)
    x = rng.standard_normal((channels, int(13.37 * rate))).astype(np.float32) * 0.1
    x[:, : 3 * rate] *= 0.05  # quiet enough for the relative gate
    x[:, 5 * rate : 6 * rate] = 0.0  # silence for the absolute gate
    x[:, 8 * rate :] *= np.linspace(0.2, 1.5, x.shape[1] - 8 * rate, dtype=np.float32)
    ours = integrated_lufs(x, rate)
    reference = pyloudnorm.Meter(rate).integrated_loudness(x.T if channels > 1 else x[0])
    assert ours == pytest.approx(reference, abs=0.01)


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


def tech_3341_true_peak_signal(fraction: int, phase_deg: float, amplitude: float, rate: int = 48000) -> np.ndarray:
    """A sine at fs/``fraction`` with the given sample phase: its samples miss its peak (Tech 3341 cases 15-19).

    One second, with 20 ms raised-cosine ends: a sine switched on at full level is not band-limited
    and its interpolation rings over the peak at the switch (+0.7 dB for case 18), which is the
    meter measuring the edge, not the tone.
    """
    n = np.arange(rate)
    x = amplitude * np.sin(2 * np.pi * n / fraction + np.deg2rad(phase_deg))
    ramp = int(0.02 * rate)
    edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    x[:ramp] *= edge
    x[-ramp:] *= edge[::-1]
    return x[None].repeat(2, 0).astype(np.float32)


@pytest.mark.parametrize(
    ("case", "fraction", "phase", "amplitude", "expected"),
    [
        (15, 4, 0.0, 0.5, -6.0),
        (16, 4, 45.0, 0.5, -6.0),
        (17, 6, 60.0, 0.5, -6.0),
        (18, 8, 67.5, 0.5, -6.0),
        (19, 4, 45.0, 1.41, 3.0),
    ],
)
def test_tech_3341_true_peak_cases(case: int, fraction: int, phase: float, amplitude: float, expected: float) -> None:
    """Both meters read each case within Tech 3341's +0.2/-0.4 dB, and the limiter holds it under -1 dBTP."""
    x = tech_3341_true_peak_signal(fraction, phase, amplitude)
    for meter in (true_peak_db, independent_true_peak_db):
        assert expected - 0.4 <= meter(x) <= expected + 0.2, (case, meter.__module__)
    assert 20 * np.log10(np.abs(x).max()) < expected - 0.4 or case == 15, "the samples alone read low"
    out, _, _ = limit(x, 48000, -1.0)
    assert independent_true_peak_db(out) <= -1.0 + 1e-3


def test_peaks_measured_in_stretches_equal_the_whole_measurement() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 20 * 48000)).astype(np.float32) * 0.2
    base = oversampled_peaks(x)
    changed = x.copy()
    stretches = [(48000, 52000), (300000, 300100), (len(x[0]) - 500, len(x[0]))]
    affected = []
    for start, stop in stretches:
        changed[:, start:stop] *= np.linspace(1.0, 0.3, stop - start, dtype=np.float32)
        affected.append((max(0, start - REACH), min(x.shape[1], stop + REACH)))
    assert np.allclose(oversampled_peaks(changed, affected, base), oversampled_peaks(changed), atol=1e-5)


def test_limiter_gain_is_the_same_in_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Smoothing the gain in pieces on threads (long mixes) gives the whole signal's numbers."""
    import composer.assembly.limiter as limiter

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4 * 48000)).astype(np.float32) * 0.3
    x[:, 20000:90000] *= 3.0
    whole = limit(x, 48000, -1.0)
    monkeypatch.setattr(limiter, "PIECE", 7001)  # many pieces, boundaries inside reductions
    pieces = limit(x, 48000, -1.0)
    assert np.array_equal(whole[1], pieces[1]) and np.array_equal(whole[0], pieces[0])


def near_nyquist(rate: int, seconds: float, seed: int) -> np.ndarray:
    """Stereo noise with energy at -12 dB between 90 % and 99.5 % of Nyquist (14.5-16 kHz at 32 kHz) over a low band."""
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((2, int(seconds * rate)))
    nyquist = rate / 2
    high = sosfilt(butter(8, [0.9 * nyquist, 0.995 * nyquist], btype="band", fs=rate, output="sos"), noise, axis=1)
    low = sosfilt(butter(4, 2000, fs=rate, output="sos"), noise, axis=1)
    x = low / low.std() + 10 ** (-12 / 20) * high / high.std()
    return (0.9 * x / np.abs(x).max()).astype(np.float32)


def test_true_peak_reads_tones_up_to_99_percent_of_nyquist() -> None:
    """Tones whose samples miss their crests read their level (a 4x meter with a gentle filter misses 0.5-50 dB).

    The tones are set in fractions of Nyquist and neither meter takes a sample rate, so this holds at
    32, 44.1 and 48 kHz alike.
    """
    n = np.arange(20000)  # a long window: the crest nearest its middle is the tone's level
    for fraction in (0.5, 0.8, 0.9, 0.95, 0.97, 0.99):
        for phase in (0.0, 0.7, 1.9):
            x = (0.5 * np.sin(np.pi * fraction * n + phase) * np.hanning(n.size))[None].astype(np.float32)
            reference = independent_true_peak_db(x)
            assert reference == pytest.approx(-6.02, abs=0.02)
            assert true_peak_db(x) == pytest.approx(reference, abs=0.02), (fraction, phase)


@pytest.mark.parametrize("rate", [32000, 44100, 48000])
def test_limiter_holds_the_ceiling_with_energy_near_nyquist(rate: int) -> None:
    x = near_nyquist(rate, 4, seed=rate)
    out, _, peak = limit(x * 1.6, rate, -1.0)
    independent = independent_true_peak_db(out)
    assert independent <= -1.0 + 1e-3, "the ceiling holds by a band-limited 16x meter"
    # within 0.05 dB: the limiter's gain moves some of the top band's energy into the last 0.5 % under
    # Nyquist, which no finite filter reads exactly (both meters agree within 0.01 dB on the input)
    assert peak == pytest.approx(independent, abs=0.05), "and the reported true peak is what that meter reads"


def test_mastering_at_32_khz_holds_the_ceiling_with_energy_near_nyquist() -> None:
    """The reported case: sample_rate 32000, target -7 LUFS, ceiling -1 dBTP, energy at -12 dB in 14.5-16 kHz."""
    from composer.assembly.mix import master

    mastered = master(near_nyquist(32000, 8, seed=5) * 0.3, 32000, -7.0, -1.0)
    independent = independent_true_peak_db(mastered.audio)
    assert independent <= -1.0 + 1e-3
    assert mastered.true_peak_dbtp == pytest.approx(independent, abs=0.05)
