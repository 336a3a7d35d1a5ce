"""Looping tracks: whole bars, a wrap with no click, and the wrap scored like any other join."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from composer import api
from composer.assembly.mix import fold, loop_of
from composer.assembly.seams import score_seams
from composer.errors import ArrangementError
from composer.plan import Placement
from composer.plan.build import TRANSITION_TEXT
from composer.settings import Settings
from tests.render.test_render import SHORT

RATE = 32000


def planted(seconds: float, bpm: float = 120.0) -> np.ndarray:
    """A tone whose cycle does not fit the bar, and a decaying pulse on every off-beat (an off-beat hi-hat):
    any jump at the wrap stands out against them (on a beat a pulse's own onset would be there)."""
    t = np.arange(int(seconds * RATE)) / RATE
    beat = 60.0 / bpm
    pulse = np.exp(-(((t - beat / 2) % beat) / 0.03)) * np.sin(2 * np.pi * 400 * t)
    return (0.4 * np.sin(2 * np.pi * 217.37 * t + 0.3) + 0.3 * pulse)[None]


def wrap_jump_ratio(looped: np.ndarray) -> float:
    """The largest sample-to-sample jump within 50 ms of the wrap (the file played twice), over the
    99.9th percentile of the jumps elsewhere."""
    twice = np.concatenate([looped, looped], axis=1)[0]
    jumps = np.abs(np.diff(twice))
    wrap, reach = looped.shape[1], int(0.05 * RATE)
    near = jumps[wrap - reach : wrap + reach]
    elsewhere = np.concatenate([jumps[: wrap - reach], jumps[wrap + reach :]])
    return float(near.max() / np.percentile(elsewhere, 99.9))


def test_the_wrap_has_no_click() -> None:
    audio = planted(9.3)  # not a whole number of bars: a plain cut lands mid-cycle
    loop = loop_of(audio.shape[1], RATE, bar_s=2.0, crossfade_bars=1)
    assert (loop.bars, loop.length, loop.overlap) == (3, 3 * 2 * RATE, audio.shape[1] - 3 * 2 * RATE)
    assert wrap_jump_ratio(fold(audio, loop)) <= 1.0
    assert wrap_jump_ratio(audio[:, : loop.length]) > 1.5, "the plant: cutting alone clicks"


def test_fold_is_linear_so_stems_still_sum_to_the_mix() -> None:
    a, b = planted(9.3), planted(9.3)[:, ::-1].copy()
    loop = loop_of(a.shape[1], RATE, 2.0, 1)
    assert np.allclose(fold(a, loop) + fold(b, loop), fold(a + b, loop))


def loop_arrangement(tmp_path: Path, extra: str = "", wrap: str = "    transition: {duration_s: 4.0}\n") -> Path:
    """SHORT as a loop; ``wrap`` is the last section's transition: the join from it into the first."""
    text = SHORT.read_text().replace("seed: 99\n", f"seed: 99\nloop: true\n{extra}") + wrap
    text = re.sub(r"output:\n(  .*\n)+", "output:\n  format: wav\n  bit_depth: 24\n  sample_rate: 44100\n", text)
    path = tmp_path / "looped.yaml"
    path.write_text(text)
    return path


def test_a_looping_track_is_whole_bars_and_its_wrap_is_scored(settings: Settings, tmp_path: Path) -> None:
    folder = api.render(loop_arrangement(tmp_path), out=tmp_path / "out", settings=settings).folder
    manifest = json.loads((folder / "manifest.json").read_text())
    audio, rate = sf.read(str(folder / "mix.wav"), always_2d=True)
    bar_s = 4 * 60 / 120
    loop = manifest["loop"]
    assert audio.shape[0] == loop["samples"] == round(loop["bars"] * bar_s * rate)  # sample-exact whole bars
    assert loop["bars"] >= 2 and loop["crossfade_s"] > 0
    # the wrap, scored by the same scorer on the file played twice end to start
    twice = np.concatenate([audio.T, audio.T], axis=1).astype(np.float32)
    length, overlap = audio.shape[0] / rate, loop["crossfade_s"]
    playing = [s["id"] for s in manifest["segments"] if s["start_s"] < length]  # what plays at the loop's end
    placements = [Placement(playing[-1], 0.0, length + overlap, "start", 0.0),
                  Placement(playing[0], length, 2 * length, "crossfade", overlap)]  # fmt: skip
    [seam] = score_seams(twice, rate, placements, None, 120.0)
    assert abs(seam.score - loop["wrap_seam"]["score"]) < 0.05
    assert loop["wrap_seam"]["before"] == manifest["segments"][-1]["id"] == "coda--intro"  # it fades into the start
    assert loop["wrap_seam"]["after"] == playing[0] == "intro"
    labels = (folder / "markers.txt").read_text().splitlines()
    assert all(float(line.split("\t")[1]) <= length + 1e-6 for line in labels)  # markers stay in the file
    for stem in (folder / "stems" / "aligned").iterdir():  # the stems are the loop too
        assert sf.info(str(stem)).frames == audio.shape[0]


def test_beat_alignment_and_the_loop_rule_together(settings: Settings, tmp_path: Path) -> None:
    """An arrangement on the bar grid (lengths in bars: beat alignment on) still loops in whole bars."""
    text = loop_arrangement(tmp_path).read_text()
    text = text.replace("duration_s: 2.5", "duration_bars: 2").replace("duration_s: 3", "duration_bars: 2")
    text = text.replace("duration_s: 2\n", "duration_bars: 1\n")
    (tmp_path / "looped.yaml").write_text(text)
    folder = api.render(tmp_path / "looped.yaml", out=tmp_path / "out", settings=settings).folder
    manifest = json.loads((folder / "manifest.json").read_text())
    frames = sf.info(str(folder / "mix.wav")).frames
    assert frames == round(manifest["loop"]["bars"] * 2.0 * 44100)


def test_the_wrap_is_a_generated_transition_from_the_last_section_into_the_first(
    settings: Settings, tmp_path: Path
) -> None:
    plan = api.plan(loop_arrangement(tmp_path), settings=settings)
    assert [s.id for s in plan.segments] == ["intro", "intro--drive", "drive", "coda", "coda--intro"]
    wrap = plan.segment("coda--intro")
    assert (wrap.kind, wrap.prompt_from, wrap.duration_s) == ("transition", "coda", 4.0)  # it continues the coda
    assert TRANSITION_TEXT in wrap.text and plan.segment("intro").text.split(".")[0] in wrap.text  # toward the intro
    assert [p.join for p in plan.timeline][-1] == "seam"
    # the same arrangement without a loop has no such transition, and `transition: none` asks for a crossfade
    assert "coda--intro" not in [s.id for s in api.plan(SHORT, settings=settings).segments]
    none = loop_arrangement(tmp_path, wrap="    transition: none\n")
    assert [s.id for s in api.plan(none, settings=settings).segments][-1] == "coda"


def test_a_plain_crossfade_wrap_still_loops(settings: Settings, tmp_path: Path) -> None:
    """``transition: none`` on the last section: the music's own continuation crossfades into the start."""
    path = loop_arrangement(tmp_path, wrap="    transition: none\n")
    folder = api.render(path, out=tmp_path / "out", settings=settings).folder
    manifest = json.loads((folder / "manifest.json").read_text())
    loop, frames = manifest["loop"], sf.info(str(folder / "mix.wav")).frames
    assert frames == round(loop["bars"] * 2.0 * 44100)
    assert "coda--intro" not in [s["id"] for s in manifest["segments"]]
    assert (loop["wrap_seam"]["before"], loop["wrap_seam"]["after"]) == ("coda", "intro")  # coda's end fades in


@pytest.mark.parametrize(
    ("extra", "wrap", "field"),
    [
        ("fade_out_s: 2\n", None, "fade_out_s"),
        ("fade_in_s: 0.5\n", None, "fade_in_s"),
        ("loop_crossfade_bars: 8\n", None, "loop_crossfade_bars"),
        ("", "    transition: {duration_s: 4.0, crossfade_s: 1}\n", r"sections\[2\]\.transition\.crossfade_s"),
        ("", "", "loop_crossfade_bars: the wrap transition \\(1.5 s\\) is shorter than the 1-bar crossfade"),
        ("", "    transition: {duration_s: 1.5}\n", r"sections\[2\]\.transition\.duration_s: the wrap transition"),
    ],
)
def test_what_a_loop_cannot_have_is_refused(
    settings: Settings, tmp_path: Path, extra: str, wrap: str | None, field: str
) -> None:
    path = loop_arrangement(tmp_path, extra) if wrap is None else loop_arrangement(tmp_path, extra, wrap)
    with pytest.raises(ArrangementError, match=field):
        api.load(path, settings=settings)
