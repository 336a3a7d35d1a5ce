"""Arrangement loading: valid files pass, every problem is reported as FILE:LINE: field: message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from composer.arrangement import load_arrangement
from composer.arrangement.styles import StyleLibrary
from composer.errors import ArrangementError
from tests.conftest import REPO, STYLES

GOOD = """\
title: Test
bpm: 120
key: A minor
sections:
  - name: intro
    style: industrial-ebm
    duration_s: 20
  - name: main
    prompt: driving techno
    duration_s: 30
"""


@pytest.fixture(scope="module")
def library() -> StyleLibrary:
    return StyleLibrary.load(STYLES)


def write(tmp_path: Path, text: str | bytes, name: str = "a.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def problems(path: Path, library: StyleLibrary | None = None) -> list[str]:
    with pytest.raises(ArrangementError) as info:
        load_arrangement(path, library)
    return [str(p) for p in info.value.problems]


def test_good_file_loads_with_defaults(tmp_path: Path, library: StyleLibrary) -> None:
    arr = load_arrangement(write(tmp_path, GOOD), library)
    assert [s.name for s in arr.sections] == ["intro", "main"]
    assert arr.loudness.target_lufs == -14 and arr.loudness.true_peak_dbtp == -1
    assert arr.generation.model == "small" and arr.generation.cfg == 3.0 and arr.generation.top_k == 250
    assert arr.transitions.model == "medium" and arr.transitions.duration_s == 30
    assert arr.output.sample_rate == 44100


def test_examples_validate(library: StyleLibrary) -> None:
    files = sorted((REPO / "arrangements").glob("*.yaml"))
    assert files, "arrangements/ has example files"
    for file in files:
        load_arrangement(file, library)


def test_wrong_type_names_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("duration_s: 30", "duration_s: long"))
    [msg] = problems(path)
    assert msg.startswith(f"{path}:10: sections[1].duration_s: ")
    assert "number" in msg


def test_unknown_key_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    duration_s: 20", "    duraton_s: 20"))
    msgs = problems(path)
    assert f"{path}:7: sections[0].duraton_s: unknown field; did you mean 'duration_s'?" in msgs
    assert any(m.startswith(f"{path}:5: sections[0].duration_s: required field is missing") for m in msgs)


def test_every_problem_reported_sorted_by_line(tmp_path: Path) -> None:
    text = GOOD.replace("bpm: 120", "bpm: 900").replace("duration_s: 30", "duration_s: -1")
    text = text.replace("title: Test", "title: Test\ncolour: red")
    msgs = problems(write(tmp_path, text))
    lines = [int(m.split(":")[1]) for m in msgs]
    assert len(msgs) == 3 and lines == sorted(lines)
    assert any("bpm: must be less than or equal to 300" in m for m in msgs)


def test_semantic_problems(tmp_path: Path, library: StyleLibrary) -> None:
    text = """\
title: T
bpm: 120
sections:
  - name: a
    style: industrial-ebmm
    duration_s: 90
  - name: A
    duration_s: 10
    model: tiny-thing
    transition: none
"""
    path = write(tmp_path, text)
    msgs = problems(path, library)
    assert msgs[0].startswith(
        f"{path}:5: sections[0].style: unknown style 'industrial-ebmm'; did you mean industrial-ebm"
    )
    assert msgs[1].startswith(f"{path}:6: sections[0].duration_s: 90 s is above the 60 s limit")
    assert "allow_long" in msgs[1]
    assert f"{path}:7: sections[1].name: duplicate section name 'A' (clashes with 'a')" in msgs
    assert any(m.startswith(f"{path}:7: sections[1].style: give a style or a prompt") for m in msgs)
    assert any(m.startswith(f"{path}:9: sections[1].model: unknown model 'tiny-thing'") for m in msgs)
    assert (
        f"{path}:10: sections[1].transition: the last section has no following boundary (a section's transition "
        "is the join after it; for the join into this section, set it on the section before; with loop: true it "
        "is the wrap)"
    ) in msgs, "the message says where a transition belongs (a new user set it on the section after the join)"


def test_allow_long_opts_in(tmp_path: Path) -> None:
    text = GOOD.replace("    duration_s: 20", "    duration_s: 90\n    allow_long: true")
    assert load_arrangement(write(tmp_path, text)).sections[0].duration_s == 90
    too_long = GOOD.replace("    duration_s: 20", "    duration_s: 400\n    allow_long: true")
    assert any("above the 300 s limit" in m for m in problems(write(tmp_path, too_long)))


def test_transition_none_and_override(tmp_path: Path) -> None:
    text = GOOD.replace("    duration_s: 20", "    duration_s: 20\n    transition: none")
    assert load_arrangement(write(tmp_path, text)).sections[0].transition.type == "crossfade"  # type: ignore[union-attr]
    text = GOOD.replace(
        "    duration_s: 20", "    duration_s: 20\n    transition:\n      model: large\n      crossfade_bars: 2"
    )
    arr = load_arrangement(write(tmp_path, text))
    spec = arr.sections[0].transition
    assert spec is not None and spec.type == "generated" and spec.model == "large"
    assert arr.bars_to_s(spec.crossfade_bars or 0) == pytest.approx(4.0)  # 2 bars of 4/4 at 120 bpm
    both = GOOD.replace(
        "    duration_s: 20", "    duration_s: 20\n    transition:\n      crossfade_s: 1\n      crossfade_bars: 2"
    )
    assert any("crossfade_s or crossfade_bars, not both" in m for m in problems(write(tmp_path, both)))


@pytest.mark.parametrize(
    "content,needle,line",
    [
        (b"", "file is empty", None),
        (b"title: [unclosed\n", "YAML syntax error", 2),
        (b"title: x\nbpm: 120\nsections:\n\t- name: a\n", "not tabs", 4),
        (b"title: x\nbpm: \xff\xfe\n", "not UTF-8", 2),
        (b"- a\n- b\n", "expected a mapping", 1),
        (b"title: x\nbpm: 120\nsections: []\n", "sections", 3),
    ],
)
def test_broken_files(tmp_path: Path, content: bytes, needle: str, line: int | None) -> None:
    path = write(tmp_path, content)
    [msg] = problems(path)
    assert needle in msg
    prefix = f"{path}:{line}:" if line else f"{path}:"
    assert msg.startswith(prefix)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: no such file"]
    assert "not a file" in problems(tmp_path)[0]


def test_oversized_file_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "#" * 1_100_000 + "\n")
    assert "limited to" in problems(path)[0]


@pytest.mark.parametrize("name", ["../evil", "a/b", "", "x" * 65, ".hidden", "with space"])
def test_unsafe_section_names_refused(tmp_path: Path, name: str) -> None:
    msgs = problems(write(tmp_path, GOOD.replace("name: intro", f"name: {name!r}")))
    assert any("sections[0].name" in m for m in msgs)


def test_bad_key_and_sample_rate(tmp_path: Path) -> None:
    text = GOOD.replace("key: A minor", "key: H minor\noutput:\n  sample_rate: 22050")
    msgs = problems(write(tmp_path, text))
    assert any(":5: output.sample_rate: must be 32000, 44100 or 48000" in m for m in msgs)
    text = GOOD.replace("key: A minor", "key: H minor")
    assert any(":3: key: unknown key 'H minor'" in m for m in problems(write(tmp_path, text)))


MELODY = """\
title: Test
bpm: 120
sections:
  - name: theme
    prompt: a lead line
    duration_s: 10
    model: {model}
    melody: {melody}
"""


@pytest.mark.parametrize(
    ("melody", "model", "message"),
    [
        ("../outside.wav", "melody", "leads outside the arrangement's folder"),
        ("/etc/passwd", "melody", "is an absolute path"),
        ("missing.wav", "melody", "no such file next to the arrangement"),
        ("refs", "melody", "is not a file"),
        ("link.wav", "melody", "leads outside the arrangement's folder"),
        ("refs/theme.wav", "small", "does not take a melody"),
        ("x" * 300 + ".wav", "melody", "cannot be used as a path (File name too long)"),  # #19 item 10
        ('"a\\0b.wav"', "melody", "the path contains a NUL character"),
        ("loop.wav", "melody", "cannot be used as a path"),
        ("fifo.wav", "melody", "is not a file"),
    ],
)
def test_bad_melody_references_are_located(tmp_path: Path, melody: str, model: str, message: str) -> None:
    song = tmp_path / "song"
    (song / "refs").mkdir(parents=True)
    (song / "refs" / "theme.wav").write_bytes(b"RIFF")
    (tmp_path / "outside.wav").write_bytes(b"RIFF")
    (song / "link.wav").symlink_to(tmp_path / "outside.wav")
    (song / "loop.wav").symlink_to(song / "loop.wav")
    os.mkfifo(song / "fifo.wav")
    path = write(song, MELODY.format(melody=melody, model=model))
    with pytest.raises(ArrangementError) as info:
        load_arrangement(path)
    assert f"{path}:8: sections[0].melody: " in str(info.value) and message in str(info.value), str(info.value)
    assert len(str(info.value).splitlines()) == 1 and len(str(info.value)) < 400


def test_a_melody_inside_the_folder_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "theme.wav").write_bytes(b"RIFF")
    arr = load_arrangement(write(tmp_path, MELODY.format(melody="refs/theme.wav", model="stereo-melody")))
    assert arr.sections[0].melody == "refs/theme.wav"


def test_section_names_cannot_collide_with_transition_ids(tmp_path: Path) -> None:
    """Sections a, b and a--b would give the transition a->b the id of the third section."""
    text = GOOD + "  - name: intro--main\n    prompt: a third part\n    duration_s: 10\n"
    with pytest.raises(ArrangementError) as info:
        load_arrangement(write(tmp_path, text))
    assert ":11: sections[2].name: 'intro--main' contains '--'" in str(info.value)


def test_one_pass_reports_schema_errors_and_references_in_the_users_words(
    tmp_path: Path, library: StyleLibrary
) -> None:
    text = """\
title: t
bpm: 120
generation: {model: smal}
sections:
  - {name: a, style: industral-ebm, duration_s: 2, transition: 5}
  - {name: b, prompt: p, duration_s: -2}
"""
    path = write(tmp_path, text)
    with pytest.raises(ArrangementError) as info:
        load_arrangement(path, library)
    lines = str(info.value).splitlines()
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in lines] == ["3", "5", "5", "6"]
    assert "generation.model: unknown model 'smal'; did you mean 'small'?" in lines[0]
    assert (
        "unknown style 'industral-ebm'" in str(info.value)
        and "duration_s: must be greater than or equal to 0.1" in lines[3]
    )
    assert "TransitionSpec" not in str(info.value) and "must be a mapping of fields" in str(info.value)


@pytest.mark.parametrize("duration", ["1e-300", "0.00001", "0.09"])
def test_a_section_shorter_than_five_frames_is_refused_where_it_is_written(
    tmp_path: Path, library: StyleLibrary, duration: str
) -> None:
    """#19 item 14: 1e-300 s passed validation and raised a ValueError in the fades."""
    sections = f"  - {{name: a, prompt: p, duration_s: 4}}\n  - {{name: b, prompt: p, duration_s: {duration}}}\n"
    text = f"title: t\nbpm: 120\nsections:\n{sections}"
    with pytest.raises(ArrangementError) as info:
        load_arrangement(write(tmp_path, text), library)
    where = ":5: sections[1].duration_s: must be greater than or equal to 0.1"
    assert str(info.value).endswith(f"{where} (got {float(duration):g})")


@pytest.mark.parametrize("char", ["\u0085", "\u2028", "\u2029", "\u202e", "\u0007", "\u2066"])
def test_a_title_with_a_line_breaking_or_control_character_is_refused(
    tmp_path: Path, library: StyleLibrary, char: str
) -> None:
    """#19 item 9: U+0085, U+2028 and U+202E passed the title check and split markers.cue into lines."""
    path = tmp_path / "a.yaml"
    escaped = f"\\u{ord(char):04x}"  # YAML's own escape in a double-quoted string: the character itself
    path.write_text(f'title: "Night{escaped}Drive"\nbpm: 120\nsections:\n  - {{name: a, prompt: p, duration_s: 4}}\n')
    with pytest.raises(ArrangementError, match=r":1: title: one line of text, without control characters"):
        load_arrangement(path, library)


def test_cue_and_label_text_is_one_line_whatever_it_is_given() -> None:
    from composer.export.markers import _quote

    for char in ("\n", "\r", "\u0085", "\u2028", "\u2029", "\u202e", "\x7f", "\x9b"):
        quoted = _quote(f'A "b"{char}c')
        assert quoted == "A 'b' c" and len(quoted.splitlines()) == 1


BARS = "title: T\nbpm: {bpm}\nsections:\n  - {{name: a, prompt: p, duration_bars: {bars}}}\n"


@pytest.mark.parametrize(
    ("bpm", "bars", "field"),
    [("120", "true", "duration_bars"), ("120", "8.5", "duration_bars"), ("120", "x", "duration_bars"),
     ("120", "0", "duration_bars"), ("fast", "8", "bpm"), ("0", "8", "bpm")],
)  # fmt: skip
def test_a_bad_length_in_bars_is_named_not_a_missing_duration(tmp_path: Path, bpm: str, bars: str, field: str) -> None:
    """#19 item 23: `duration_bars: true` (or `bpm: fast` beside bars) reported only
    "duration_s: required field is missing"."""
    path = write(tmp_path, BARS.format(bpm=bpm, bars=bars))
    msgs = problems(path)
    assert not [m for m in msgs if "duration_s" in m], msgs
    assert [m for m in msgs if f": {field}: " in m or f"].{field}: " in m], msgs


def test_quoted_numbers_are_read_alike_in_seconds_and_bars(tmp_path: Path, library: StyleLibrary) -> None:
    """`bpm: "120"` is read as 120 everywhere (as pydantic reads it), so bars work with it too."""
    arr = load_arrangement(write(tmp_path, BARS.format(bpm='"120"', bars='"8"')), library)
    assert arr.sections[0].duration_s == pytest.approx(16.0)


def test_an_absurd_length_is_printed_short(tmp_path: Path) -> None:
    """#19 item 23: `duration_s: 1e308` printed a 309-digit number."""
    path = write(tmp_path, "title: T\nbpm: 120\nsections:\n  - {name: a, prompt: p, duration_s: 1e308}\n")
    msgs = problems(path)
    assert msgs and all(len(m) < 300 for m in msgs), msgs
    assert any("1e+308 s of generated audio" in m for m in msgs), msgs


def test_validate_reports_names_and_lengths_beside_field_errors(tmp_path: Path) -> None:
    """#19 item 23: one pass. A 90 s section and an `a--b` name used to appear only once the field
    errors elsewhere were fixed."""
    path = write(
        tmp_path,
        "title: t\nbpm: 120\nsections:\n"
        "  - {name: a--b, prompt: p, duration_s: 10}\n"
        "  - {name: long, prompt: p, duration_s: 90}\n"
        "  - {name: c, prompt: p, duration_s: 10, seed: banana}\n"
        "  - {name: A--B, prompt: p, duration_bars: 8}\n",
    )
    with pytest.raises(ArrangementError) as err:
        load_arrangement(path)
    text = str(err.value)
    assert f"{path}:4: sections[0].name: 'a--b' contains '--'" in text
    assert f"{path}:5: sections[1].duration_s: 90 s is above the 60 s limit" in text
    assert f"{path}:6: sections[2]" in text and "seed" in text, "the field error is still there"
    assert "duplicate section name 'A--B'" in text
    # once the field error is fixed, the same problems (and no others) are reported
    path.write_text(path.read_text().replace("seed: banana", "seed: 5"))
    with pytest.raises(ArrangementError) as fixed:
        load_arrangement(path)
    assert sorted(p.message for p in fixed.value.problems) == sorted(
        p.message for p in err.value.problems if "seed" not in p.field
    )
