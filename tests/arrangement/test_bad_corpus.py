"""Hostile arrangements: every file in tests/data/bad/ fails cleanly, and so does anything a fuzzer makes.

Each corpus file starts with ``# expect: <text>``; validation and render must exit 2, print only
``FILE[:LINE]: ...`` lines that include that text, show no traceback, and create nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from composer.arrangement import load_arrangement
from composer.arrangement.styles import StyleLibrary
from composer.cli import app
from composer.errors import ArrangementError
from tests.conftest import REPO, STYLES

BAD = REPO / "tests" / "data" / "bad"
FILES = sorted(BAD.iterdir())
runner = CliRunner()


def expectation(path: Path) -> str:
    head = path.read_bytes().split(b"\n", 1)[0].decode("utf-8", "replace")
    return head.removeprefix("# expect: ") if head.startswith("# expect: ") else "file is empty"


def assert_clean_failure(output: str, path: Path, expected: str) -> None:
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, "at least one message"
    shape = re.compile(rf"^{re.escape(str(path))}(:\d+)?: \S")
    for line in lines:
        assert shape.match(line), f"bad message shape: {line!r}"
    assert expected in output, f"{path.name}: expected {expected!r} in {output!r}"


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= 50


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_validate_refuses(path: Path) -> None:
    result = runner.invoke(app, ["validate", str(path), "--styles", str(STYLES)])
    assert result.exit_code == 2, result.output
    assert_clean_failure(result.output, path, expectation(path))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_render_refuses_and_writes_nothing(path: Path, tmp_path: Path, tiny_env: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["render", str(path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert_clean_failure(result.output, path, expectation(path))
    assert not out.exists()


@pytest.mark.parametrize("brk", ["\x85", "\u2028"])
def test_a_duplicate_keys_message_is_one_line(tmp_path: Path, brk: str) -> None:
    """ruamel quotes a duplicate key's value, line breaks and all (found by the fuzz test below)."""
    path = tmp_path / "dup.yaml"
    path.write_text(f"title: T\nbpm: 120\nkey: A minor\nkey: A minor\n{brk}0\n{brk}0\nsections: []\n", encoding="utf-8")
    with pytest.raises(ArrangementError) as caught:
        load_arrangement(path, LIBRARY)
    [problem] = caught.value.problems
    assert "duplicate key" in problem.message and len((problem.message + "x").splitlines()) == 1


def test_oversized_directory_and_missing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("title: x\n" + "# padding\n" * 120_000)
    for path, text in ((big, "limited to"), (tmp_path, "not a file"), (tmp_path / "nope.yaml", "no such file")):
        result = runner.invoke(app, ["validate", str(path)])
        assert result.exit_code == 2
        assert_clean_failure(result.output, path, text)


VALID = (REPO / "tests" / "data" / "short.yaml").read_text()
LIBRARY = StyleLibrary.load(STYLES)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A valid arrangement with lines deleted, duplicated, swapped or given random values."""
    lines = VALID.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "value", "garbage", "indent"]))
        if action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "value" and ":" in lines[i]:
            key = lines[i].split(":", 1)[0]
            numbers = st.one_of(st.integers(-(10**12), 10**12).map(str), st.floats(allow_nan=True).map(str))
            others = st.one_of(st.text(max_size=20).map(repr), st.sampled_from(["[]", "{}", "~", "*x", "&x 1"]))
            value = draw(st.one_of(numbers, others))
            lines[i] = f"{key}: {value}"
        elif action == "garbage":
            lines[i] = draw(st.text(max_size=30))
        else:
            lines[i] = draw(st.sampled_from(["\t", " ", "   "])) + lines[i]
        if not lines:
            break
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(mutated(), st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_fuzzed_files_load_or_fail_cleanly(text: str, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    try:
        load_arrangement(path, LIBRARY)
    except ArrangementError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert str(problem).startswith(str(path))
            assert "\n" not in problem.message
