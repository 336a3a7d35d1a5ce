"""Clean edges: no end-of-track transient, DC-free mix and stems, fades at both ends (issue: #12, item 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from composer.arrangement import load_arrangement
from composer.arrangement.styles import StyleLibrary
from composer.assembly.mix import assemble, master
from composer.engine.types import Take
from composer.plan import build_plan
from composer.settings import Settings
from tests.conftest import REPO, STYLES
from tests.meters import true_peak_db

SHORT = REPO / "tests" / "data" / "short.yaml"


def stationary_mix(settings: Settings, rate: int, tmp_path: Path, extra: str = "") -> tuple[np.ndarray, float]:
    """The short arrangement assembled and mastered from noise segments with a large DC offset.

    Like the tiny models' outro (mean -0.21): mostly offset, a little signal.
    """
    song = tmp_path / "short.yaml"
    song.write_text(SHORT.read_text() + extra)
    styles = StyleLibrary.load(STYLES)
    arr = load_arrangement(song, styles)
    plan = build_plan(arr, "short", styles, settings)
    rng = np.random.default_rng(rate)
    takes = {}
    for seg in plan.segments:
        frames = seg.prompt_frames + seg.frames
        audio = (rng.standard_normal((1, frames * 640)) * 0.05 - 0.21).astype(np.float32)
        takes[seg.id] = Take(np.zeros((4, frames), np.int64), seg.prompt_frames, audio, 32000, 50, key=seg.key)
    mastered = master(assemble(plan, arr, takes, rate).mix(), rate, arr.loudness.target_lufs, -1.0)
    return mastered.audio, arr.loudness.true_peak_dbtp


def window_levels(audio: np.ndarray, rate: int, seconds: float = 0.4) -> np.ndarray:
    mono = audio.mean(axis=0)
    w = int(seconds * rate)
    return np.array([10 * np.log10(np.mean(mono[i : i + w] ** 2) + 1e-20) for i in range(0, mono.size - w, w // 2)])


@pytest.mark.parametrize("rate", [32000, 44100, 48000])
def test_no_end_transient_and_true_peak_under_the_ceiling(settings: Settings, tmp_path: Path, rate: int) -> None:
    audio, ceiling = stationary_mix(settings, rate, tmp_path)
    assert true_peak_db(audio) <= ceiling + 1e-3, "an independent 8x meter"
    levels = window_levels(audio, rate)
    assert levels.max() - np.median(levels) <= 1.0, "no 400 ms window stands out"
    n = int(0.02 * rate)
    assert np.abs(audio[:, -n:]).max() < np.abs(audio[:, :-n]).max(), "the last 20 ms are not the loudest"
    assert np.abs(audio[:, 0]).max() < 1e-3 and np.abs(audio[:, -1]).max() < 1e-3, "no click at either end"
    assert abs(float(audio.mean())) < 1e-3, "DC-free"


def test_the_track_fades_follow_the_arrangement(settings: Settings, tmp_path: Path) -> None:
    rate = 32000
    audio, _ = stationary_mix(settings, rate, tmp_path, "fade_in_s: 1.0\nfade_out_s: 2.0\n")
    mono = np.abs(audio.mean(axis=0))
    level = lambda a, b: float(np.sqrt(np.mean(mono[int(a * rate) : int(b * rate)] ** 2)))  # noqa: E731
    length = mono.size / rate
    middle = level(3.0, 4.0)
    assert level(0.0, 0.1) < 0.2 * middle and level(0.45, 0.55) < middle < 1.3 * level(1.2, 1.7)
    assert level(length - 0.1, length) < 0.2 * middle and level(length - 2.2, length - 2.0) > 0.8 * middle


def test_raw_stems_are_dc_free(settings: Settings, tmp_path: Path) -> None:
    import soundfile as sf

    from composer.job.local import render

    result = render(SHORT, settings, tmp_path)
    for stem in (result.folder / "stems" / "raw").iterdir():
        audio, _ = sf.read(str(stem))
        assert abs(float(audio.mean())) < 2e-3, stem.name
