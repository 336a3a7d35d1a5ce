"""Seam scores on synthetic music: a smooth join against a loudness step and a tempo jump (issue: #12, item 5)."""

from __future__ import annotations

import numpy as np
import pytest

from composer.assembly.beats import Alignment, track
from composer.assembly.crossfade import fade_curves
from composer.assembly.seams import REROLL_ABOVE, score_seams
from composer.plan import Placement
from tests.assembly.test_beats import RATE, clicks


def music(bpm: float, seconds: float, seed: int, chord: tuple[float, ...] = (220.0, 261.63, 329.63)) -> np.ndarray:
    """Clicks on the beat, a steady chord and a little noise: enough for every measure to have a value."""
    t = np.arange(int(seconds * RATE)) / RATE
    tone = sum(np.sin(2 * np.pi * f * t + k) for k, f in enumerate(chord)) * 0.05
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.01
    return (clicks(bpm, 0.2, seconds, seed=seed)[0] + tone + noise).astype(np.float32)[None]


def joined(a: np.ndarray, b: np.ndarray, overlap_s: float = 2.0) -> tuple[np.ndarray, list[Placement]]:
    n = int(overlap_s * RATE)
    fade_out, fade_in = fade_curves(n, "equal_power")
    mix = np.zeros((1, a.shape[1] + b.shape[1] - n), np.float32)
    mix[:, : a.shape[1]] += a * np.concatenate([np.ones(a.shape[1] - n), fade_out])
    mix[:, a.shape[1] - n :] += b * np.concatenate([fade_in, np.ones(b.shape[1] - n)])
    end_a = a.shape[1] / RATE
    places = [
        Placement("a", 0.0, end_a, "start", 0.0),
        Placement("b", end_a - overlap_s, mix.shape[1] / RATE, "crossfade", overlap_s),
    ]
    return mix, places


def seam_of(a: np.ndarray, b: np.ndarray):  # type: ignore[no-untyped-def]
    mix, places = joined(a, b)
    beats = Alignment({"a": track(a, RATE, 128), "b": track(b, RATE, 128)}, {"a": 0.0, "b": 0.0})
    (seam,) = score_seams(mix, RATE, places, beats, 128)
    return seam


def test_a_smooth_join_scores_low_and_jumps_score_high() -> None:
    a = music(128, 20, seed=1)
    smooth = seam_of(a, music(128, 20, seed=2))
    step = seam_of(a, music(128, 20, seed=2) * np.float32(10 ** (6 / 20)))
    tempo = seam_of(a, music(136, 20, seed=2))
    harmony = seam_of(a, music(128, 20, seed=2, chord=(185.0, 233.08, 277.18)))
    assert smooth.score < REROLL_ABOVE, smooth
    assert step.loudness_lu == pytest.approx(6.0, abs=0.7) and step.score > REROLL_ABOVE > smooth.score
    assert tempo.tempo_percent == pytest.approx(100 * 8 / 128, abs=0.3) and tempo.score > REROLL_ABOVE
    assert harmony.ratios["harmony"] > 3 * max(smooth.ratios["harmony"], 0.3) and harmony.score > smooth.score
    assert smooth.at_s == pytest.approx(19.0)
