"""compose plan / render / regen / pick / export-stems through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from composer.assembly.loudness import integrated_lufs
from composer.cli import app
from tests.conftest import REPO

runner = CliRunner()
SHORT = str(REPO / "tests" / "data" / "short.yaml")


def test_plan_prints_segments_without_generating(tiny_env: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", SHORT, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for token in ("intro--drive", "coda", "final length: 8.50 s", "composer aims for 90-180 s"):
        assert token in result.output
    assert not (tmp_path / "cache").exists()


def test_render_regen_pick_export_cycle(tiny_env: Path, tmp_path: Path) -> None:
    out = ["--out", str(tmp_path)]
    first = runner.invoke(app, ["render", SHORT, *out, "--takes", "2"])
    assert first.exit_code == 0, first.output
    assert "7 generated, 0 from cache" in first.output
    assert (tmp_path / "short" / "stems" / "takes" / "drive.take1.wav").is_file()

    regen = runner.invoke(app, ["regen", SHORT, "intro", "--seed", "3", *out])
    assert regen.exit_code == 0 and "2 generated" in regen.output
    assert "intro: seed 3" in regen.output
    drawn = runner.invoke(app, ["regen", SHORT, "drive", *out])  # a random seed: said, and recorded
    assert drawn.exit_code == 0, drawn.output
    seed = json.loads((tmp_path / "short" / "manifest.json").read_text())["choices"]["seeds"]["drive"]
    assert f"drive: seed {seed} " in drawn.output
    assert runner.invoke(app, ["regen", SHORT, "drive", "--reset", *out]).exit_code == 0
    pick = runner.invoke(app, ["pick", SHORT, "drive", "1", *out])
    # coda continues drive, and so does coda's kept take 1
    assert pick.exit_code == 0 and "2 generated" in pick.output and "generated coda.take1" in pick.output
    manifest = json.loads((tmp_path / "short" / "manifest.json").read_text())
    assert manifest["choices"] == {"seeds": {"intro": 3}, "takes": {"drive": 1}}

    export = runner.invoke(app, ["export-stems", SHORT, *out])
    assert export.exit_code == 0 and "0 generated" in export.output
    bad = runner.invoke(app, ["pick", SHORT, "drive", "9", *out])
    assert bad.exit_code == 2 and "never rendered" in bad.output


def test_render_bad_arrangement_writes_nothing(tiny_env: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("title: x\nbpm: 120\nsections:\n  - name: a\n    prompt: p\n    duration_s: 0\n")
    result = runner.invoke(app, ["render", str(broken), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"{broken}:6: sections[0].duration_s: must be greater than or equal to 0.1" in result.output
    assert not (tmp_path / "out").exists()


def test_ebm_set_renders_to_a_full_length_track(tiny_env: Path, tmp_path: Path) -> None:
    """The flagship example with tiny models: 90-180 s at the target loudness."""
    result = runner.invoke(app, ["render", str(REPO / "arrangements" / "ebm_set.yaml"), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "ebm_set"
    audio, rate = sf.read(str(folder / "mix.wav"), always_2d=True)
    assert 90 <= audio.shape[0] / rate <= 180
    loudness = integrated_lufs(audio.T, rate)
    assert loudness is not None and abs(loudness + 14) <= 0.5
    assert len(list((folder / "stems" / "aligned").iterdir())) == 9
    for name in ("manifest.json", "markers.txt", "markers.cue", "timeline.png"):
        assert (folder / name).is_file()


def test_several_files_render_one_after_another(tiny_env: Path, tmp_path: Path) -> None:
    short = Path(SHORT).read_text()
    (tmp_path / "songs").mkdir()
    (tmp_path / "songs" / "a.yaml").write_text(short)
    (tmp_path / "songs" / "b.yaml").write_text(short.replace("seed: 99", "seed: 5"))
    out = tmp_path / "out"
    result = runner.invoke(app, ["render", str(tmp_path / "songs"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "a" / "mix.wav").is_file() and (out / "b" / "mix.wav").is_file()
    assert (out / "a" / "mix.wav").read_bytes() != (out / "b" / "mix.wav").read_bytes()


def test_a_bad_file_among_several_does_not_stop_the_others(tiny_env: Path, tmp_path: Path) -> None:
    """#19 item 24: a bad first file stopped the batch without a word about the files after it."""
    short = Path(SHORT).read_text()
    songs = tmp_path / "songs"
    songs.mkdir()
    (songs / "a.yaml").write_text(short.replace("bpm: 120", "bpm: 0"))
    (songs / "b.yaml").write_text(short)
    out = tmp_path / "out"
    result = runner.invoke(app, ["render", str(songs), "--out", str(out)])
    assert result.exit_code == 2
    assert f"{songs / 'a.yaml'}:3: bpm" in result.output and (out / "b" / "mix.wav").is_file()
    assert f"1 of 2 arrangements rendered; failed: {songs / 'a.yaml'}" in result.output
    assert not (out / "a").exists()


def test_a_folder_without_arrangements_is_an_error(tiny_env: Path, tmp_path: Path) -> None:
    """#19 item 24: `render EMPTY_DIR` exited 0 and printed nothing."""
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["render", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "no arrangement files" in result.output
    assert str(tmp_path / "empty") in result.output


def test_export_stems_says_the_folder_was_rendered_with_other_models(
    tiny_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#19 item 26: export-stems after a --models tiny render, without the flag, said "not rendered yet"."""
    out = ["--out", str(tmp_path)]
    assert runner.invoke(app, ["render", SHORT, *out]).exit_code == 0
    monkeypatch.delenv("COMPOSER_MODELS")
    result = runner.invoke(app, ["export-stems", SHORT, *out])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert "was rendered with --models tiny" in line and f"compose export-stems {SHORT} --models tiny" in line, line
    assert runner.invoke(app, ["export-stems", SHORT, *out, "--models", "tiny"]).exit_code == 0
