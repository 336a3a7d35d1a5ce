"""The user's files are safe from composer's output tree: no writing or deleting through links,
only composer's own temp files swept, outputs readable by others (umask), unambiguous names."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from composer.cli import app
from composer.job.local import render
from composer.settings import Settings
from tests.conftest import REPO

SHORT = REPO / "tests" / "data" / "short.yaml"
runner = CliRunner()


def test_a_symlinked_lock_is_not_followed(tiny_env: Path, tmp_path: Path) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("the user's words")
    folder = tmp_path / "out" / "short"
    folder.mkdir(parents=True)
    (folder / ".render.lock").symlink_to(victim)
    result = runner.invoke(app, ["render", str(SHORT), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert ".render.lock is a symbolic link" in result.output.strip().splitlines()[-1]
    assert victim.read_text() == "the user's words"


@pytest.mark.parametrize("linked", ["stems/raw", "stems", "cache/segments"])
def test_a_symlinked_output_folder_is_refused_and_its_target_untouched(
    tiny_env: Path, tmp_path: Path, linked: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.wav").write_bytes(b"user audio")
    out = tmp_path / "out"
    link = out / (linked if linked.startswith("cache") else f"short/{linked}")
    link.parent.mkdir(parents=True)
    link.symlink_to(elsewhere, target_is_directory=True)
    result = runner.invoke(app, ["render", str(SHORT), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "is a symbolic link" in result.output.strip().splitlines()[-1]
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.wav"], "nothing written or deleted there"


def test_the_sweep_removes_only_composers_own_temp_files(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "short"
    folder.mkdir()
    mine = folder / ".composer-mix.wav.abc123.tmp"
    mine.write_bytes(b"left by a killed render")
    users = [folder / ".notes.tmp", folder / "stems.tmp"]
    for path in users:
        path.write_text("mine, not composer's")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".composer-x.tmp").write_text("behind a link")
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    render(SHORT, settings, tmp_path)
    assert not mine.exists()
    assert all(p.read_text() == "mine, not composer's" for p in users)
    assert (elsewhere / ".composer-x.tmp").exists(), "the sweep does not walk through links"


def test_outputs_follow_the_umask(settings: Settings, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        result = render(SHORT, settings, tmp_path)
    finally:
        os.umask(old)
    written = [result.folder / "mix.wav", result.folder / "manifest.json", *result.folder.glob("stems/*/*.wav")]
    written += list((tmp_path / "cache" / "segments").rglob("*.npz"))
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_two_arrangements_cannot_share_an_output_folder(settings: Settings, tmp_path: Path) -> None:
    """'fa st.yaml' and 'fa_st.yaml' both map to fa_st/: the second is refused, the first keeps its files."""
    from composer.job.prepare import FolderTakenError

    first, second = tmp_path / "fa st.yaml", tmp_path / "fa_st.yaml"
    first.write_text(SHORT.read_text())
    second.write_text(SHORT.read_text().replace("seed: 99", "seed: 100"))
    done = render(first, settings, tmp_path / "out")
    before = (done.folder / "mix.wav").read_bytes()
    with pytest.raises(FolderTakenError, match="fa st.yaml, and .*fa_st.yaml maps to the same folder"):
        render(second, settings, tmp_path / "out")
    assert (done.folder / "mix.wav").read_bytes() == before
    render(first, settings, tmp_path / "out")  # its own folder: fine
    first.unlink()
    render(second, settings, tmp_path / "out")  # the old owner is gone: the folder is adopted


@pytest.mark.parametrize("what", ["link", "file"])
def test_a_link_or_file_at_stems_is_refused_before_anything_is_rewritten(
    tiny_env: Path, tmp_path: Path, what: str
) -> None:
    """#19 item 22: a link at stems/ was refused only after mix.wav was rewritten and the manifest deleted."""
    out = tmp_path / "out"
    assert runner.invoke(app, ["render", str(SHORT), "--out", str(out)]).exit_code == 0
    folder = out / "short"
    before = {name: (folder / name).read_bytes() for name in ("mix.wav", "manifest.json")}
    shutil.rmtree(folder / "stems")
    if what == "link":
        (tmp_path / "elsewhere").mkdir()
        (folder / "stems").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    else:
        (folder / "stems").write_bytes(b"not a folder")
    result = runner.invoke(app, ["render", str(SHORT), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"{folder / 'stems'} is " in result.output.strip().splitlines()[-1]
    assert {name: (folder / name).read_bytes() for name in before} == before, "nothing rewritten or deleted"
    assert not (folder / "journal.json").exists()
