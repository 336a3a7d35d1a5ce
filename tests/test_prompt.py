"""One tempo, one key, one coherent prompt (issue: #12, item 2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from composer.arrangement import load_arrangement
from composer.arrangement.styles import StyleLibrary
from composer.cli import app
from composer.errors import ArrangementError
from composer.plan import build_plan
from composer.prompt import compose, conform, key_phrase, sentence
from composer.settings import Settings
from tests.conftest import REPO, STYLES

TEMPO_NUMBERS = re.compile(r"(\d{2,3})(?:\s*(?:-|–|to)\s*(\d{2,3}))?\s*bpm", re.IGNORECASE)


def tempos(text: str) -> set[str]:
    """Every tempo a text names (independent of composer's own pattern: any number before 'bpm')."""
    return {n for match in TEMPO_NUMBERS.finditer(text) for n in match.groups() if n}


def contradicts_itself(text: str) -> bool:
    lower = text.lower()
    beatless = "beatless" in lower or "no pulse" in lower or "no fixed tempo" in lower
    pulsed = bool(tempos(text)) or bool(re.search(r"(?<!no )\bpulse\b", lower.replace("no pulse", "")))
    return beatless and pulsed


@pytest.mark.parametrize("arrangement", sorted((REPO / "arrangements").glob("*.yaml")), ids=lambda p: p.stem)
def test_no_shipped_prompt_names_two_tempos_or_a_beatless_pulse(arrangement: Path, settings: Settings) -> None:
    styles = StyleLibrary.load(STYLES)
    arr = load_arrangement(arrangement, styles)
    plan = build_plan(arr, arrangement.stem, styles, settings, file=str(arrangement))
    for seg in plan.segments:
        named = tempos(seg.text)
        assert named <= {f"{arr.bpm:g}"}, f"{seg.id}: {named}"
        assert not contradicts_itself(seg.text), f"{seg.id}: {seg.text}"
        assert ".." not in seg.text and " ." not in seg.text, "sentences joined as sentences"
        if arr.key:
            assert seg.text.count(key_phrase(arr.key)) == 1, f"{seg.id} names its key once"


def test_every_style_with_any_tempo_and_key_is_coherent() -> None:
    styles = StyleLibrary.load(STYLES)
    for name in styles.names():
        for bpm in (70, 128, 174):
            text = styles.get(name).render(bpm, "F# minor")
            assert tempos(text) <= {str(bpm)} and not contradicts_itself(text), (name, bpm, text)


def test_tempo_and_key_mentions_are_replaced() -> None:
    assert conform("Deep house, 120-124 BPM swung groove in C major", 128, "Am") == (
        "Deep house, 128 BPM swung groove in A minor"
    )
    assert conform("a slow pulse around 70 bpm, in {key}", 90, None) == "a slow pulse 90 BPM, in its key"
    assert conform("Drone at {bpm}, evolving", None, "D") == "Drone, evolving", "a free tempo names none"
    assert compose(["Acid house at 126 BPM", "sparse intro, drums filtered"], 128, "A minor") == (
        "Acid house at 128 BPM. Sparse intro, drums filtered. In A minor."
    )
    assert compose(["techno"], 128, "A minor") == "Techno. 128 BPM, in A minor."
    assert sentence("  ends already!  ") == "Ends already!"


STYLED = """\
title: T
bpm: 128
key: A minor
transitions: {{duration_s: 10, prompt_s: 5, crossfade_s: 2{style}}}
sections:
  - {{name: a, style: industrial-ebm, duration_s: 20}}
  - {{name: b, style: ambient-drone, duration_s: 20{own}}}
  - {{name: c, prompt: techno, duration_s: 20}}
"""


def test_transitions_may_name_a_style(tmp_path: Path, settings: Settings) -> None:
    styles = StyleLibrary.load(STYLES)
    path = tmp_path / "t.yaml"
    path.write_text(STYLED.format(style=", style: riser-transition", own=", transition: {style: acid-house}"))
    plan = build_plan(load_arrangement(path, styles), "t", styles, settings)
    riser = plan.segment("a--b").text
    assert riser.startswith("A transitional build") and "At 128 BPM" in riser
    assert riser.endswith("leads into this one. No vocals, no sudden stops. In A minor."), "exclusions close it"
    assert plan.segment("b--c").text.startswith("Acid house"), "a transition's own style wins"
    assert "BPM" not in plan.segment("b").text, "a beatless style names no tempo"
    path.write_text(STYLED.format(style="", own=""))
    plain = build_plan(load_arrangement(path, styles), "t", styles, settings)
    assert plain.segment("a--b").text.startswith("Beatless ambient drone music"), "default: the next section's words"
    assert "BPM" not in plain.segment("a--b").text


def test_an_unknown_transition_style_is_located(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(STYLED.format(style=", style: riser", own=""))
    with pytest.raises(ArrangementError, match=r"t\.yaml:4: transitions\.style: unknown style 'riser'"):
        load_arrangement(path, StyleLibrary.load(STYLES))


def test_styles_show_fills_tempo_and_key() -> None:
    result = CliRunner().invoke(app, ["styles", "show", "industrial-techno", "--bpm", "128", "--key", "A minor"])
    assert result.exit_code == 0, result.output
    assert "at 128 BPM" in result.output and result.output.rstrip().endswith("In A minor.")
    assert "{bpm}" in CliRunner().invoke(app, ["styles", "show", "industrial-techno"]).output


ANY_TEMPO = re.compile(r"(\d+(?:[.,]\d+)?)\s*(?:bpm|beats (?:per|a) minute)", re.IGNORECASE)


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (["At 1000 bpm and 85.5 BPM and 128 beats per minute, drums"], "At 128 BPM, drums. In A minor."),
        (["Pulse at {bpm}, 120 BPM"], "Pulse at 128 BPM. In A minor."),
        (["House at {bpm}", "At 124 BPM, bass"], "House at 128 BPM. Bass. In A minor."),
        (["a groove of 7 bpm", "{key}"], "A groove of 128 BPM. A minor."),
    ],
)
def test_the_tempo_is_named_once_whatever_the_text_calls_it(parts: list[str], expected: str) -> None:
    """#19 item 6: "1000 bpm", "85.5 BPM" and "128 beats per minute" were left in; "Pulse at 128 BPM,
    128 BPM." named it twice. Checked with a pattern of its own: any number before bpm / beats per minute."""
    text = compose(parts, 128, "A minor")
    assert text == expected
    assert [m.group(1) for m in ANY_TEMPO.finditer(text)] == ["128"]


@pytest.mark.parametrize("command", [["styles", "show", "deep-house"], ["generate", "--style", "deep-house", "-d", "1",
                                                                        "-o", "x.wav"]])  # fmt: skip
def test_a_key_the_arrangement_would_refuse_is_refused_everywhere(command: list[str], tmp_path: Path) -> None:
    """#19 item 6: `--key banana` gave "In banana." where an arrangement's `key: banana` is refused."""
    result = CliRunner().invoke(app, [*command, "--key", "banana"])
    assert result.exit_code == 2 and "--key 'banana'" in result.output and "In banana" not in result.output, (
        result.output
    )


def test_no_style_says_slow_at_any_tempo() -> None:
    """#19 item 6: jazz-noir read "A slow swing at 128 BPM": a style's tempo words must fit any tempo."""
    styles = StyleLibrary.load(STYLES)
    for name in styles.names():
        feel = styles.get(name).parts.get("feel", "")
        assert not re.search(r"\b(slow|fast|rapid|brisk|languid)\b[^.]*\{bpm\}", feel, re.IGNORECASE), (name, feel)
