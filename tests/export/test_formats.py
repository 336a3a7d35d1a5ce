"""Output formats: mp3 and ogg beside wav and flac, for the mix, stems and takes.

A lossy encoder does not keep the peaks it was given, so the ceiling is checked where a listener meets
it: on the decoded file, with the tests' own band-limited meter (not composer's), and the loudness with
pyloudnorm.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from composer import api
from composer.audio.io import write_audio
from composer.errors import ArrangementError
from composer.export.write import Loudness, write_mix
from composer.settings import Settings
from tests.meters import true_peak_db
from tests.render.test_render import SHORT


def arrangement(tmp_path: Path, output: str, name: str = "short") -> Path:
    text = re.sub(r"output:\n(  .*\n)+", f"output:\n{output}", SHORT.read_text())
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("fmt", ["mp3", "ogg"])
def test_a_lossy_mix_holds_its_ceiling_and_loudness_once_decoded(settings: Settings, tmp_path: Path, fmt: str) -> None:
    file = arrangement(tmp_path, f"  format: {fmt}\n  quality: standard\n  sample_rate: 44100\n")
    result = api.render(file, out=tmp_path / "out", takes=2, settings=settings)
    folder = result.folder
    audio, rate = sf.read(str(folder / f"mix.{fmt}"), always_2d=True)
    assert rate == 44100 and audio.shape[0] > rate * 8
    manifest = json.loads((folder / "manifest.json").read_text())
    loud = manifest["loudness"]
    peak = true_peak_db(audio.T)
    assert peak <= loud["true_peak_ceiling_dbtp"] + 0.05, f"{fmt}: {peak:.2f} dBTP decoded"
    assert abs(peak - loud["true_peak_dbtp"]) < 0.1  # the manifest says what the file holds
    measured = pyloudnorm.Meter(rate).integrated_loudness(audio)
    assert abs(measured - loud["integrated_lufs"]) < 0.3 and abs(measured - loud["target_lufs"]) < 0.3
    assert manifest["output"] == {"file": f"mix.{fmt}", "format": fmt, "bit_depth": None, "quality": "standard",
                                  "sample_rate": 44100, "channels": audio.shape[1]}  # fmt: skip
    stems = sorted(p.name for p in (folder / "stems").rglob("*") if p.is_file())
    assert stems and all(name.endswith(f".{fmt}") for name in stems), stems
    assert any("take1" in name for name in stems)
    for path in (folder / "stems").rglob(f"*.{fmt}"):
        assert sf.info(str(path)).frames > 0, path
    cue = (folder / "markers.cue").read_text()
    assert f'FILE "mix.{fmt}" {"MP3" if fmt == "mp3" else "WAVE"}' in cue


def test_the_encoder_overshoot_is_taken_back(tmp_path: Path) -> None:
    """Planted: a sawtooth whose true peak sits exactly at the ceiling; its mp3 overshoots it, and
    the mix writer encodes again quieter until the decoded file holds the ceiling."""
    rate = 44100
    t = np.arange(rate * 4) / rate
    harsh = (t * 110) % 1 * 2 - 1  # a sawtooth: at 96 kbit/s its mp3 peaks 0.7 dB higher
    audio = (harsh / 10 ** (true_peak_db(harsh[None]) / 20) * 10 ** (-1.0 / 20))[None].astype(np.float32)
    assert abs(true_peak_db(audio) + 1.0) < 0.02

    def write(path: Path, samples: np.ndarray) -> None:
        write_audio(path, samples, rate, fmt="MP3", quality="small")

    write(tmp_path / "plain.mp3", audio)
    plain, _ = sf.read(str(tmp_path / "plain.mp3"), always_2d=True)
    assert true_peak_db(plain.T) > -1.0 + 0.2, "the plant: the encoder overshoots"
    aim = Loudness(rate, target_lufs=-40.0, true_peak_dbtp=-1.0)  # loudness far below: only the peak matters
    encoded = write_mix(tmp_path / "mix.mp3", audio, aim, write, lossy=True)
    assert encoded is not None and encoded.gain_db < -0.2
    decoded, _ = sf.read(str(tmp_path / "mix.mp3"), always_2d=True)
    assert true_peak_db(decoded.T) <= -1.0 + 0.05


def test_changing_the_format_leaves_only_the_new_files(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "out"
    api.render(arrangement(tmp_path, "  format: flac\n  bit_depth: 16\n"), out=out, settings=settings)
    folder = api.render(arrangement(tmp_path, "  format: ogg\n"), out=out, settings=settings).folder
    names = {p.suffix for p in folder.rglob("*") if p.is_file() and p.parent.name in ("raw", "aligned", "short")}
    assert ".flac" not in names and ".ogg" in names


@pytest.mark.parametrize(
    ("output", "field", "words"),
    [
        ("  format: mp3\n  bit_depth: 16\n", "output.bit_depth", "mp3 has no bit depth"),
        ("  format: wav\n  quality: small\n", "output.quality", "lossless"),
        ("  format: aac\n", "output.format", "format"),
    ],
)
def test_settings_that_do_not_fit_the_format_are_refused(
    settings: Settings, tmp_path: Path, output: str, field: str, words: str
) -> None:
    with pytest.raises(ArrangementError) as refused:
        api.load(arrangement(tmp_path, output), settings=settings)
    message = str(refused.value)
    assert field in message and words in message and message.count("\n") == 0, message


def test_a_format_this_libsndfile_cannot_write_is_refused_before_rendering(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    formats = {k: v for k, v in sf.available_formats().items() if k != "MP3"}
    monkeypatch.setattr(sf, "available_formats", lambda: formats)  # as an older libsndfile (< 1.1) is
    with pytest.raises(ArrangementError, match=r"output\.format.*cannot write mp3; use wav or flac"):
        api.render(arrangement(tmp_path, "  format: mp3\n"), out=tmp_path / "out", settings=settings)
    assert not (tmp_path / "out" / "short").exists()


def test_the_cli_validates_a_lossy_arrangement(tiny_env: Path, tmp_path: Path) -> None:
    file = arrangement(tmp_path, "  format: ogg\n  quality: small\n")
    got = subprocess.run([sys.executable, "-m", "composer", "validate", str(file)], capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
