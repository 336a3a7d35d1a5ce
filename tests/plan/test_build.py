"""Plan building: segments, dependencies, hashes and timeline arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.arrangement import load_arrangement
from composer.arrangement.styles import StyleLibrary
from composer.errors import ArrangementError
from composer.plan import build_plan
from composer.plan.build import SEAM_S, derive_seed
from composer.settings import Settings
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
    assert all(s.numerics.startswith("cpu-float32-reference-") for s in reference.segments)
    assert not {s.key for s in fp32.segments} & {s.key for s in reference.segments}


GRID = """\
title: T
bpm: {bpm}
beats_per_bar: {beats}
grid: bars
transitions: {{duration_s: {transition}, prompt_s: 2, crossfade_s: 1}}
sections:
  - {{name: a, prompt: p, duration_s: {first}{long}}}
  - {{name: b, prompt: p, duration_s: 20}}
"""


@pytest.mark.parametrize(
    ("bpm", "beats", "first", "long", "transition", "limit"),
    [(22, 4, 60, "", 20, 60.0), (22, 4, 300, ", allow_long: true", 20, 300.0), (28, 4, 20, "", 30, 30.0)],
)
def test_the_bar_grid_never_rounds_past_a_limit(
    tmp_path: Path, styles: StyleLibrary, tiny_settings: Settings,
    bpm: int, beats: int, first: int, long: str, transition: int, limit: float,
) -> None:  # fmt: skip
    """#19 item 3: 60 s at 22 bpm became 65.45 s (over the 60 s limit) with only a warning."""
    text = GRID.format(bpm=bpm, beats=beats, first=first, long=long, transition=transition)
    plan = plan_for(text, tmp_path, styles, tiny_settings)
    bar = beats * 60.0 / bpm
    for seg in plan.segments:
        assert seg.duration_s <= (limit if seg.id in ("a", "a--b") else 60.0) + 1e-9, (seg.id, seg.duration_s)
        assert abs(seg.duration_s / bar - round(seg.duration_s / bar)) < 1e-9, "still whole bars"
    rounded = plan.segment("a--b" if transition == 30 else "a")
    assert rounded.duration_s == pytest.approx((limit // bar) * bar) and rounded.duration_s < limit
    assert any("on the bar grid it is" in w for w in plan.warnings)


def test_a_bar_longer_than_a_limit_is_refused(tmp_path: Path, styles: StyleLibrary, tiny_settings: Settings) -> None:
    text = GRID.format(bpm=21, beats=16, first=50, long="", transition=30)  # one bar: 45.7 s > 30 s transitions
    with pytest.raises(ArrangementError, match=r"transitions.duration_s: one bar at 21 bpm is 45.71 s, longer than"):
        plan_for(text, tmp_path, styles, tiny_settings)


def test_impossible_loudness_and_fades_are_refused(
    tmp_path: Path, styles: StyleLibrary, tiny_settings: Settings
) -> None:
    """#19 item 4: -5 LUFS under a -9 dBTP ceiling came out at -13.96 LUFS without a word; fades of
    30 s and 60 s on a 1 s track gave a silent mix."""
    loud = BASE.replace("key: A minor", "key: A minor\nloudness: {target_lufs: -5, true_peak_dbtp: -9}")
    with pytest.raises(ArrangementError, match=r"loudness.target_lufs: -5 LUFS cannot be reached with peaks held"):
        plan_for(loud, tmp_path, styles, tiny_settings)
    short = "title: T\nbpm: 120\nfade_in_s: 30\nfade_out_s: 60\nsections:\n  - {name: a, prompt: p, duration_s: 1}\n"
    with pytest.raises(ArrangementError, match=r"fade_out_s: a fade-in of 30 s and a fade-out of 60 s are longer"):
        plan_for(short, tmp_path, styles, tiny_settings)
    fine = short.replace("fade_in_s: 30", "fade_in_s: 0.2").replace("fade_out_s: 60", "fade_out_s: 0.5")
    assert plan_for(fine, tmp_path, styles, tiny_settings).length_s == pytest.approx(1.0)


def test_a_prompt_longer_than_the_limit_after_filling_is_refused(
    tmp_path: Path, styles: StyleLibrary, tiny_settings: Settings
) -> None:
    """#19 item 15: a style's text plus a section's prompt and extra is capped like a section prompt
    alone, before any text reaches T5 (20 kB of prompt took 7.3 GB)."""
    from composer.prompt import PROMPT_MAX_CHARS

    long = "word " * 790  # 3950 characters: under the field's own limit
    fields = f"prompt: '{long}', extra: '{long[:1990]}'"
    text = BASE.replace("style: industrial-ebm, duration_s: 20}", f"style: industrial-ebm, duration_s: 20, {fields}}}")
    with pytest.raises(ArrangementError, match=rf"sections\[0\]: the prompt of 'a' is \d+ characters with its style "
                                               rf"\(limit {PROMPT_MAX_CHARS}\)"):  # fmt: skip
        plan_for(text, tmp_path, styles, tiny_settings)
    fine = text.replace(f", extra: '{long[:1990]}'", "")
    assert len(plan_for(fine, tmp_path, styles, tiny_settings).segments[0].text) <= PROMPT_MAX_CHARS
