"""The 20 Hz high-pass (forward-backward from the steady state) against scipy's sosfiltfilt."""

import numpy as np
import pytest

from composer.audio.dsp import highpass, map_channels


@pytest.mark.parametrize("rate", [32000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_highpass_removes_an_offset_and_keeps_the_music(rate: int, channels: int) -> None:
    from scipy.signal import butter, sosfiltfilt

    rng = np.random.default_rng(rate + channels)
    t = np.arange(3 * rate) / rate
    music = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal((channels, t.size))).astype(np.float32)
    out = highpass(music - 0.21, rate)  # like the tiny models' outro: a large DC offset
    assert out.shape == music.shape and out.dtype == np.float32
    settle = int(0.25 * rate)  # a 20 Hz filter settles within a quarter second of either end
    assert np.abs(out.mean(axis=1)).max() < 1e-3
    assert np.abs(out[:, settle:-settle] - music[:, settle:-settle]).max() < 0.02, "440 Hz and noise pass"
    edges = np.concatenate([out[:, :480] - music[:, :480], out[:, -480:] - music[:, -480:]], axis=1)
    assert np.abs(edges).max() < 0.06, "no step at either end (0.11 at the start from a resting filter)"
    reference = sosfiltfilt(butter(2, 20.0, btype="highpass", fs=rate, output="sos"), music - 0.21, axis=1)
    assert np.abs(out[:, settle:-settle] - reference[:, settle:-settle]).max() < 1e-4


def test_map_channels_keeps_order_in_threads() -> None:
    audio = np.stack([np.full(1 << 17, c, np.float32) for c in range(3)])
    out = map_channels(lambda x: x * 2, audio)
    assert [float(row[0]) for row in out] == [0.0, 2.0, 4.0]
