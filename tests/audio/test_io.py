from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from composer.audio.dsp import resample, to_mono
from composer.audio.io import read_audio, write_audio


@pytest.mark.parametrize("rate", [32000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("fmt,depth", [("wav", 16), ("wav", 24), ("wav", "float"), ("flac", 16), ("flac", 24)])
def test_round_trip(tmp_path: Path, rate: int, channels: int, fmt: str, depth: int | str) -> None:
    t = np.arange(rate // 10) / rate
    audio = np.stack([0.5 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)]).astype(np.float32)
    path = tmp_path / f"x.{fmt}"
    write_audio(path, audio, rate, bit_depth=depth)
    back, back_rate = read_audio(path)
    assert back_rate == rate and back.shape == audio.shape
    tolerance = {16: 1e-4, 24: 1e-6, "float": 0}[depth]
    assert np.max(np.abs(back - audio)) <= tolerance
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no temp files left"


def test_refuses_nan_and_flac_float_without_touching_target(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    write_audio(path, np.zeros((1, 10), np.float32), 32000)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="NaN"):
        write_audio(path, np.full((1, 10), np.nan, np.float32), 32000)
    with pytest.raises(ValueError, match="FLAC"):
        write_audio(tmp_path / "y.flac", np.zeros((1, 10), np.float32), 32000, bit_depth="float")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.wav"]


def test_resample_length_and_tone() -> None:
    rate = 32000
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 1000 * t)[None].astype(np.float32)
    up = resample(tone, rate, 48000)
    assert up.shape == (1, 48000)
    spectrum = np.abs(np.fft.rfft(up[0]))
    assert np.argmax(spectrum) == pytest.approx(1000, abs=1)
    assert resample(tone, rate, rate) is tone or np.array_equal(resample(tone, rate, rate), tone)


def test_to_mono() -> None:
    stereo = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    assert np.allclose(to_mono(stereo), [[0.5, 0.5]])
    with pytest.raises(ValueError):
        to_mono(np.zeros(4, np.float32))
    assert sf.__version__
