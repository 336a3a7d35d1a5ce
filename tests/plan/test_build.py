"""Plan building: segments, dependencies, hashes and timeline arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.arrangement import load_arrangement
from composer.errors import ArrangementError
from composer.plan import build_plan
from composer.plan.build import SEAM_S, derive_seed
from composer.settings import Settings
from composer.styles import StyleLibrary
from tests.conftest import STYLES

HERE = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(scope="module")
def styles() -> StyleLibrary:
    return StyleLibrary.load(STYLES)


def plan_for(text: str, tmp_path: Path, styles: StyleLibrary, settings: Settings, **kw):  # type: ignore[no-untyped-def]
    path = tmp_path / "a.yaml"
    path.write_text(text)
    return build_plan(load_arrangement(path, styles), "a", styles, settings, **kw)


BASE = """\
title: T
bpm: 120
key: A minor
transitions: {duration_s: 10, prompt_s: 5, crossfade_s: 2}
sections:
  - {name: a, style: industrial-ebm, duration_s: 20}
  - {name: b, prompt: techno, duration_s: 30}
  - {name: c, prompt: drone, duration_s: 25}
"""


def test_segments_dependencies_and_timeline(tmp_path: Path, styles: StyleLibrary, tiny_settings: Settings) -> None:
    plan = plan_for(BASE, tmp_path, styles, tiny_settings)
    assert [s.id for s in plan.segments] == ["a", "a--b", "b", "b--c", "c"]
    assert [s.kind for s in plan.segments] == ["stem", "transition", "stem", "transition", "stem"]
    trans = plan.segment("a--b")
    assert trans.prompt_from == "a" and trans.prompt_s == 5 and trans.model == "medium"
    assert trans.repo_id == "composer-tiny/musicgen-medium" and plan.segment("a").model == "small"
    assert trans.text.startswith("Techno. A transition") and trans.text.endswith("120 BPM, in A minor.")
    assert "at 120 BPM" in plan.segment("a").text and plan.segment("a").text.endswith("In A minor.")
    starts = [(p.segment, p.start_s, p.end_s, p.join) for p in plan.timeline]
    assert starts == [
        ("a", 0, 20, "start"), ("a--b", 20, 30, "seam"), ("b", 28, 58, "crossfade"),
        ("b--c", 58, 68, "seam"), ("c", 66, 91, "crossfade"),
    ]  # fmt: skip
    assert plan.timeline[1].crossfade_s == SEAM_S
    assert plan.length_s == 91
    assert plan.warnings == []
    assert [s.id for s in plan.segments if s.prompt_from == "a"] == ["a--b"]
    assert not [s for s in plan.segments if s.prompt_from == "b--c"]


def test_none_and_chained_boundaries(tmp_path: Path, styles: StyleLibrary, tiny_settings: Settings) -> None:
    text = BASE.replace("duration_s: 20}", "duration_s: 20, transition: none}")
    text = text.replace("{name: c, prompt: drone,", "{name: c, prompt: drone, continue_from: previous,")
    plan = plan_for(text, tmp_path, styles, tiny_settings)
    assert [s.id for s in plan.segments] == ["a", "b", "c"]
    assert plan.segment("c").prompt_from == "b" and plan.segment("c").prompt_s == 5
    assert [p.join for p in plan.timeline] == ["start", "crossfade", "seam"]
    assert plan.length_s == 20 + 30 - 2 + 25
    assert [s.id for s in plan.segments if s.prompt_from == "b"] == ["c"]


def test_length_warning_and_bars(tmp_path: Path, styles: StyleLibrary, tiny_settings: Settings) -> None:
    text = BASE.replace("crossfade_s: 2}", "crossfade_bars: 2}")
    plan = plan_for(text, tmp_path, styles, tiny_settings)
    assert plan.timeline[2].start_s == pytest.approx(30 - 4.0)  # 2 bars of 4/4 at 120 bpm = 4 s
    assert plan.warnings == [f"the track is {plan.length_s:.1f} s long; composer aims for 90-180 s"]


def test_crossfade_longer_than_segment_refused(tmp_path: Path, styles: StyleLibrary, tiny_settings: Settings) -> None:
    text = BASE.replace("crossfade_s: 2}", "crossfade_s: 12}")
    with pytest.raises(ArrangementError, match="crossfade of 12 s into 'b' is longer than the audio it joins"):
        plan_for(text, tmp_path, styles, tiny_settings)


def test_keys_change_exactly_for_dependents(tmp_path: Path, styles: StyleLibrary, tiny_settings: Settings) -> None:
    before = plan_for(BASE, tmp_path, styles, tiny_settings)
    again = plan_for(BASE, tmp_path, styles, tiny_settings)
    assert [s.key for s in before.segments] == [s.key for s in again.segments]
    after = plan_for(BASE, tmp_path, styles, tiny_settings, seeds={"b": 1234})
    changed = {s.id for s, t in zip(before.segments, after.segments, strict=True) if s.key != t.key}
    assert changed == {"b", "b--c"}
    text_changed = plan_for(BASE.replace("prompt: drone", "prompt: noise"), tmp_path, styles, tiny_settings)
    changed = {s.id for s, t in zip(before.segments, text_changed.segments, strict=True) if s.key != t.key}
    assert changed == {"b--c", "c"}  # the transition into c leads into c's text
    take = plan_for(BASE, tmp_path, styles, tiny_settings, takes={"a": 1})
    assert take.segment("a").seed == derive_seed(before.segment("a").seed, "take", 1)
    assert take.segment("a").key != before.segment("a").key


def test_seeds_are_stable_and_overridable(tmp_path: Path, styles: StyleLibrary, tiny_settings: Settings) -> None:
    assert derive_seed(1, "stem", "a") == derive_seed(1, "stem", "a") != derive_seed(2, "stem", "a")
    assert 0 <= derive_seed(5, "x") < 2**31
    plan = plan_for(BASE.replace("duration_s: 30}", "duration_s: 30, seed: 77}"), tmp_path, styles, tiny_settings)
    assert plan.segment("b").seed == 77
    assert plan_for(BASE, tmp_path, styles, tiny_settings, seeds={"b": 5}).segment("b").seed == 5


def test_examples_plan_within_target_length(styles: StyleLibrary, tiny_settings: Settings) -> None:
    root = HERE.parent.parent / "arrangements"
    for file in sorted(root.glob("*.yaml")):
        plan = build_plan(load_arrangement(file, styles), file.stem, styles, tiny_settings)
        assert 90 <= plan.length_s <= 180, (file.name, plan.length_s)
        assert not plan.warnings, (file.name, plan.warnings)


def test_keys_name_the_numerics(tmp_path: Path, styles: StyleLibrary, tiny_settings: Settings) -> None:
    """Tokens from another CPU kernel (or device, or type) are other music: never the same cache entry."""
    fp32 = plan_for(BASE, tmp_path, styles, tiny_settings.with_(cpu_dtype="float32"))
    bf16 = plan_for(BASE, tmp_path, styles, tiny_settings.with_(cpu_dtype="bfloat16"))
    assert {s.numerics.split("-r")[0] for s in fp32.segments} == {"cpu-float32"}
    assert {s.numerics.split("-r")[0] for s in bf16.segments} == {"cpu-bfloat16"}
    assert not {s.key for s in fp32.segments} & {s.key for s in bf16.segments}
    reference = plan_for(BASE, tmp_path, styles, tiny_settings.with_(cpu_dtype="float32", engine="transformers"))
    assert all(s.numerics.startswith("cpu-float32-reference-t") for s in reference.segments)
    assert not {s.key for s in fp32.segments} & {s.key for s in reference.segments}
