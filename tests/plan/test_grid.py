"""The bar grid and sample-exact placement (issue: #12, item 3)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from composer.arrangement import load_arrangement
from composer.arrangement.styles import StyleLibrary
from composer.assembly.mix import assemble
from composer.engine.types import Take
from composer.errors import ArrangementError
from composer.export.markers import audacity_labels
from composer.plan import build_plan
from composer.settings import Settings
from tests.conftest import STYLES

BARS = """\
title: Bars
bpm: 128
key: A minor
transitions: {{duration_s: 12, prompt_s: 4, crossfade_s: 2}}
sections:
  - {{name: intro, style: industrial-ebm, duration_bars: 8}}
  - {{name: drive, style: industrial-ebm, duration_bars: 16}}
  - {{name: peak, style: industrial-techno, duration_s: 20{peak}}}
  - {{name: outro, style: ebm-dark-body, duration_bars: 4, continue_from: previous}}
"""


@pytest.fixture(scope="module")
def styles() -> StyleLibrary:
    return StyleLibrary.load(STYLES)


def plan_for(text: str, tmp_path: Path, styles: StyleLibrary, settings: Settings):  # type: ignore[no-untyped-def]
    path = tmp_path / "a.yaml"
    path.write_text(text)
    arr = load_arrangement(path, styles)
    return arr, build_plan(arr, "a", styles, settings, file=str(path))


def test_sections_in_bars_start_on_bar_lines(tmp_path: Path, styles: StyleLibrary, settings: Settings) -> None:
    arr, plan = plan_for(BARS.format(peak=""), tmp_path, styles, settings)
    bar = Fraction(4 * 60, 128)  # exact seconds per bar
    lengths = {s.id: s.duration_s for s in plan.segments}
    assert lengths["intro"] == pytest.approx(8 * 1.875) and lengths["drive"] == pytest.approx(16 * 1.875)
    assert lengths["peak"] == pytest.approx(11 * 1.875), "20 s is 10.67 bars: whole bars on the grid"
    assert lengths["intro--drive"] == pytest.approx(6 * 1.875), "the 12 s transition is 6.4 bars: 6"
    for place in plan.timeline:
        bars = Fraction(place.start_s).limit_denominator(10**6) / bar
        if place.join == "seam":  # a continuation starts where its prompt's tokens end: on the 20 ms grid
            assert abs(place.start_s - round(float(bars)) * float(bar)) < 0.02 + 1e-9, place
        else:
            assert abs(place.start_s - round(float(bars)) * float(bar)) < 1e-9, place
        if place.join == "crossfade":
            assert place.crossfade_s == pytest.approx(1.875), "a 2 s crossfade is one bar on the grid"
    # what follows a seam is back on the grid: the last section ends on a bar line
    assert plan.timeline[-1].end_s / float(bar) == pytest.approx(round(plan.timeline[-1].end_s / float(bar)))
    assert any("peak: 20 s is 10.67 bars" in w for w in plan.warnings)
    assert any("12 s is 6.40 bars" in w for w in plan.warnings)


def test_seconds_grid_keeps_lengths_as_written(tmp_path: Path, styles: StyleLibrary, settings: Settings) -> None:
    _, plan = plan_for(BARS.format(peak="") + "grid: seconds\n", tmp_path, styles, settings)
    assert {s.id: s.duration_s for s in plan.segments}["peak"] == 20.0
    assert not any("bars at" in w for w in plan.warnings)


def test_bars_and_seconds_that_disagree_are_refused(tmp_path: Path, styles: StyleLibrary, settings: Settings) -> None:
    with pytest.raises(ArrangementError, match=r"sections\[2\]\.duration_bars.*not both"):
        plan_for(BARS.format(peak=", duration_bars: 8"), tmp_path, styles, settings)


def takes_for(plan, rate: int = 32000) -> dict[str, Take]:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    out = {}
    for seg in plan.segments:
        frames = seg.prompt_frames + seg.frames
        audio = (rng.standard_normal((1, frames * 640)) * 0.1).astype(np.float32)
        out[seg.id] = Take(np.zeros((4, frames), np.int64), seg.prompt_frames, audio, rate, 50, key=seg.key)
    return out


ODD = """\
title: Odd lengths
bpm: 120
align_beats: false
transitions: {duration_s: 3.007, prompt_s: 1, crossfade_s: 0.5}
sections:
  - {name: a, prompt: techno, duration_s: 6.013}
  - {name: b, prompt: techno, duration_s: 4.431}
"""


@pytest.mark.parametrize("rate", [32000, 44100, 48000])
def test_any_duration_is_placed_to_the_sample(
    tmp_path: Path, styles: StyleLibrary, settings: Settings, rate: int
) -> None:
    """Frames cover each length; a track ends where its placement does, and markers agree, to the sample.

    Section a (6.013 s, 301 frames = 6.02 s) is continued by the transition, which picks up where
    its tokens end (6.02 s); the transition (3.007 s, 151 frames) is crossfaded into b and trimmed
    to 3.007 s, so the fades of both sides cover the same samples.
    """
    arr, plan = plan_for(ODD, tmp_path, styles, settings)
    assert [s.frames for s in plan.segments] == [301, 151, 222], "frames cover each length (ceil)"
    assert [p.end_s for p in plan.timeline][:2] == [pytest.approx(6.02), pytest.approx(6.02 + 3.007)]
    assembly = assemble(plan, arr, takes_for(plan), rate)
    labels = [line.split("\t") for line in audacity_labels(plan).splitlines()]
    for track, place, label in zip(assembly.tracks, plan.timeline, labels, strict=True):
        first, last = round(place.start_s * rate), round(place.end_s * rate)
        lead = round(place.crossfade_s * rate) if place.join == "seam" else 0  # a seam reaches back over the prompt
        assert track.start == first - lead, "each track starts at its placement"
        assert track.start + track.audio.shape[1] == last, f"{track.segment} ends at its placement, to the sample"
        assert round(float(label[0]) * rate) == first and round(float(label[1]) * rate) == last
    # the fade-out of one track and the fade-in of the next cover the same samples
    for before, after in zip(assembly.tracks, assembly.tracks[1:], strict=False):
        end = before.start + before.audio.shape[1]
        assert np.abs(before.audio[:, -1]).max() < 1e-3, "faded out by its last sample"
        assert np.abs(after.audio[:, 0]).max() < 1e-3, "faded in from its first sample"
        assert after.start < end and np.abs(after.audio[:, end - after.start]).max() > 1e-3


def test_room_for_alignment_only_where_it_can_be_used(tmp_path: Path, styles: StyleLibrary, settings: Settings) -> None:
    """Half a bar more is generated for a segment that can be aligned: not before a seam, not for a drone."""
    song = """\
title: Room
bpm: 120
transitions: {duration_s: 4, prompt_s: 1, crossfade_s: 0.5}
sections:
  - {name: a, prompt: techno, duration_s: 6, transition: none}
  - {name: b, style: ambient-drone, duration_s: 6, transition: none}
  - {name: c, prompt: techno, duration_s: 6}
  - {name: d, prompt: techno, duration_s: 6}
"""
    _, plan = plan_for(song, tmp_path, styles, settings)
    frames = {s.id: s.frames for s in plan.segments}
    assert frames == {"a": 350, "b": 300, "c": 300, "c--d": 250, "d": 350}, "half a bar at 120 bpm is 50 frames"
