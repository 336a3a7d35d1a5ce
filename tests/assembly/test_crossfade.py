import numpy as np
import pytest

from composer.assembly.crossfade import crossfade_join, fade_curves


@pytest.mark.parametrize("n", [1, 7, 441, 96000])
def test_equal_power_curves_sum_power_to_one(n: int) -> None:
    out, inn = fade_curves(n, "equal_power")
    assert np.allclose(out**2 + inn**2, 1.0, atol=1e-6)
    assert np.all(np.diff(out) <= 0) and np.all(np.diff(inn) >= 0)


def test_linear_curves_sum_to_one() -> None:
    out, inn = fade_curves(100, "linear")
    assert np.allclose(out + inn, 1.0, atol=1e-6)


@pytest.mark.parametrize("rate", [32000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_equal_power_keeps_power_on_uncorrelated_noise(rate: int, channels: int) -> None:
    rng = np.random.default_rng(rate + channels)
    a = rng.standard_normal((channels, 4 * rate)).astype(np.float32) * 0.1
    b = rng.standard_normal((channels, 4 * rate)).astype(np.float32) * 0.1
    overlap = 2 * rate
    joined = crossfade_join(a, b, overlap)
    assert joined.shape == (channels, 6 * rate)
    block = rate // 10
    powers = [np.mean(joined[:, i : i + block] ** 2) for i in range(0, joined.shape[1] - block, block)]
    ref = 0.01
    assert max(abs(10 * np.log10(p / ref)) for p in powers) < 0.6  # within 0.6 dB everywhere


def test_no_step_at_the_seams() -> None:
    rate = 32000
    t = np.arange(rate) / rate
    a = (0.5 * np.sin(2 * np.pi * 110 * t))[None].astype(np.float32)
    b = (0.5 * np.sin(2 * np.pi * 110 * t + 1.0))[None].astype(np.float32)
    joined = crossfade_join(a, b, rate // 2)
    # correlated inputs may add up to sqrt(2) in the middle, so the slope may grow that much, but a
    # step (a hard cut from one phase to the other) would jump by up to 0.48 in one sample
    max_slope = 0.5 * 2 * np.pi * 110 / rate
    assert np.max(np.abs(np.diff(joined[0]))) <= max_slope * np.sqrt(2) * 1.02
    hard_cut = np.concatenate([a[:, : rate // 2], b[:, rate // 2 :]], axis=1)
    assert np.max(np.abs(np.diff(hard_cut[0]))) > 10 * max_slope, "the check would see a step"


def test_zero_overlap_is_concatenation_and_bad_overlaps_refused() -> None:
    a = np.ones((1, 5), np.float32)
    b = np.zeros((1, 3), np.float32)
    assert np.array_equal(crossfade_join(a, b, 0), np.concatenate([a, b], axis=1))
    with pytest.raises(ValueError):
        crossfade_join(a, b, 4)
    with pytest.raises(ValueError):
        crossfade_join(a, np.zeros((2, 5), np.float32), 1)


def test_linear_seam_is_transparent_for_identical_signals() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 1000)).astype(np.float32)
    joined = crossfade_join(x[:, :600], x[:, 500:], 100, "linear")
    assert np.allclose(joined, x, atol=1e-6)
