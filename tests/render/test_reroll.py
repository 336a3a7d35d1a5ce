"""Seam scores in the manifest and --reroll on a planted bad transition (issue: #12, item 5)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from composer.assembly.seams import REROLL_ABOVE
from composer.cli import app
from composer.engine.types import Take
from composer.job.local import render
from composer.job.options import RenderOptions, Reroll
from composer.plan import Segment
from composer.render.cache import SegmentCache
from composer.settings import Settings

SONG = """\
title: Two parts
bpm: 120
seed: 5
align_beats: false
transitions: {model: small, duration_s: 3, prompt_s: 1, crossfade_s: 0.5}
sections:
  - {name: a, prompt: techno, duration_s: 6}
  - {name: b, prompt: techno, duration_s: 6}
"""


def plant_tone(out: Path, transition: Segment, from_s: float = 0.0) -> None:
    """The transition's cache entry becomes a pure 1 kHz tone, nothing like the music around it (from
    ``from_s`` seconds into its audio; before that it keeps its own)."""
    cache = SegmentCache(out / "cache" / "segments")
    real = cache.load(transition.key, transition)
    assert real is not None
    t = np.arange(real.audio.shape[1]) / real.sample_rate
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None]
    keep = int(from_s * real.sample_rate)
    tone[:, :keep] = real.audio[:, :keep]
    cache.store(Take(real.tokens, real.prompt_frames, tone, real.sample_rate, real.frame_rate, key=real.key,
                     provenance=real.provenance))  # fmt: skip


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_planted_bad_transition_is_rerolled_and_nothing_else(settings: Settings, tmp_path: Path) -> None:
    song = tmp_path / "two.yaml"
    song.write_text(SONG)
    out = tmp_path / "out"
    first = render(song, settings, out)
    seams = first.manifest["seams"]
    assert [(s["before"], s["after"]) for s in seams] == [("a", "a--b"), ("a--b", "b")]
    assert all(set(s) >= {"score", "loudness_lu", "spectrum_db", "tempo_percent", "harmony", "ratios"} for s in seams)
    stems = {name: sha(first.folder / "stems" / "raw" / f"{name}.wav") for name in ("a", "b")}

    transition = first.plan.segment("a--b")
    plant_tone(out, transition)
    planted = render(song, settings, out)
    planted_score = max(s["score"] for s in planted.manifest["seams"])
    assert planted_score > REROLL_ABOVE, "the planted tone stands out"
    assert planted.stats.generated == []

    rerolled = render(song, settings, out, RenderOptions(reroll=Reroll(tries=2)))
    tries = rerolled.manifest["rerolls"]["tries"]
    assert list(tries) == ["a--b"], "only the transition with a bad join is re-rolled"
    assert tries["a--b"][0]["seed"] == transition.seed and tries["a--b"][0]["score"] == round(planted_score, 2)
    assert 2 <= len(tries["a--b"]) <= 3 and sum(t["kept"] for t in tries["a--b"]) == 1
    kept = next(t for t in tries["a--b"] if t["kept"])
    assert kept["seed"] != transition.seed and kept["score"] < planted_score
    assert set(rerolled.stats.generated) == {"a--b"}, "the stems come from the cache"
    assert {name: sha(rerolled.folder / "stems" / "raw" / f"{name}.wav") for name in ("a", "b")} == stems
    assert max(s["score"] for s in rerolled.manifest["seams"]) == kept["score"]
    state = json.loads((rerolled.folder / "state.json").read_text())
    assert state["seeds"]["a--b"] == kept["seed"], "the kept seed is remembered"
    again = render(song, settings, out)
    assert again.stats.generated == [] and again.plan.segment("a--b").seed == kept["seed"]


def test_reroll_options_are_documented() -> None:
    text = CliRunner().invoke(app, ["render", "--help"], terminal_width=200).output
    assert "--reroll" in text and "default 2.5" in text and REROLL_ABOVE == 2.5


def test_a_kept_reroll_is_recorded_as_generated_and_a_join_left_bad_is_named(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from composer.cli_render import _reroll_summary

    song = tmp_path / "two.yaml"
    song.write_text(SONG)
    out = tmp_path / "out"
    first = render(song, settings, out)
    plant_tone(out, first.plan.segment("a--b"))
    rerolled = render(song, settings, out, RenderOptions(reroll=Reroll(tries=2)))
    tries = rerolled.manifest["rerolls"]["tries"]["a--b"]
    assert [t["generated"] for t in tries] == [False] + [True] * (len(tries) - 1), "the planted one came from the cache"
    entry = next(e for e in rerolled.manifest["segments"] if e["id"] == "a--b")
    assert entry["cache_hit"] is False and entry["generate_seconds"] is not None, "the kept take was generated now"
    assert sorted(rerolled.stats.cached) == ["a", "b"] and rerolled.stats.generated == ["a--b"]
    n = len(tries) - 1
    assert _reroll_summary(rerolled.manifest) == f"; re-rolls: {n} tries ({n} generated, 0 from cache)"
    # the same command again: every try comes from the cache, and so does the kept take
    again = render(song, settings, out, RenderOptions(reroll=Reroll(tries=2)))
    entry = next(e for e in again.manifest["segments"] if e["id"] == "a--b")
    assert entry["cache_hit"] is True and entry["generate_seconds"] is None and again.stats.generated == []
    # a limit no join can meet: the kept join is still above it, and the render says so
    caplog.clear()
    render(song, settings, out, RenderOptions(reroll=Reroll(tries=1, above=0.0)))
    assert "still score" in caplog.text and "(above 0.0) after 1 tries" in caplog.text


def test_a_loops_wrap_transition_is_rerolled_for_its_wrap(settings: Settings, tmp_path: Path) -> None:
    """In a loop the last section's transition continues it and crossfades into the first section at the
    wrap: a bad wrap (a tone planted in the transition's second half, where the file wraps; its start,
    at the seam with b, is its own music) is re-rolled like any bad join."""
    song = tmp_path / "loop.yaml"
    last = "{name: b, prompt: techno, duration_s: 6"
    looped = SONG.replace("seed: 5\n", "seed: 5\nloop: true\n")
    song.write_text(looped.replace(last, last + ", transition: {duration_s: 8}"))
    out = tmp_path / "out"
    first = render(song, settings, out)
    wrap = first.plan.segment("b--a")
    assert wrap.prompt_from == "b" and first.manifest["loop"]["wrap_seam"]["before"] == "b--a"
    plant_tone(out, wrap, from_s=wrap.prompt_s + 4.0)
    planted = render(song, settings, out)
    wrap_score = planted.manifest["loop"]["wrap_seam"]["score"]
    into_wrap = next(s for s in planted.manifest["seams"] if (s["before"], s["after"]) == ("b", "b--a"))
    assert wrap_score > REROLL_ABOVE >= into_wrap["score"], "the plant: only the wrap itself is bad"

    rerolled = render(song, settings, out, RenderOptions(reroll=Reroll(tries=2)))
    tries = rerolled.manifest["rerolls"]["tries"]
    assert "b--a" in tries and tries["b--a"][0] == {"seed": wrap.seed, "score": round(wrap_score, 2),
                                                     "generated": False, "kept": False}  # fmt: skip
    kept = next(t for t in tries["b--a"] if t["kept"])
    into_wrap = next(s for s in rerolled.manifest["seams"] if (s["before"], s["after"]) == ("b", "b--a"))
    assert kept["score"] == max(rerolled.manifest["loop"]["wrap_seam"]["score"], into_wrap["score"]) < wrap_score
