"""Filesystem faults end in one line naming the path, a documented exit code and no traceback.

Read-only and full file systems are real: small tmpfs mounts (the tests run as root; they are
skipped elsewhere with the reason)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from composer.cli import app
from tests.conftest import REPO

SHORT = REPO / "tests" / "data" / "short.yaml"
runner = CliRunner()
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


@needs_root
def test_read_only_output_folder(tiny_env: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "ro,size=1m") as out:
        result = runner.invoke(app, ["render", str(SHORT), "--out", str(out)])
    assert result.exit_code == 73, result.output
    assert last_line(result.output).startswith(f"cannot write {out}") and "read-only" in result.output
    assert "Traceback" not in result.output


@needs_root
def test_disk_full_for_real(tiny_env: Path, tmp_path: Path) -> None:
    """A 600 kB tmpfs holds a few cache entries, not the stems: exit 74, what was finished is kept."""
    with tmpfs(tmp_path / "small", "size=600k") as out:
        result = runner.invoke(app, ["render", str(SHORT), "--out", str(out)])
        assert result.exit_code == 74, result.output
        assert last_line(result.output).startswith("disk full while writing ")
        assert not [p for p in out.rglob("*.tmp")], "no half-written temp file left behind"


@needs_root
def test_unwritable_model_cache_with_tiny_models(
    tiny_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tmpfs(tmp_path / "cache", "ro,size=1m") as cache:
        monkeypatch.setenv("COMPOSER_CACHE_DIR", str(cache))
        result = runner.invoke(app, ["render", str(SHORT), "--out", str(tmp_path / "out")])
    assert result.exit_code == 73, result.output
    assert f"cannot write {cache}" in last_line(result.output) and "read-only" in last_line(result.output)


def test_out_naming_a_file(tiny_env: Path, tmp_path: Path) -> None:
    target = tmp_path / "not-a-folder"
    target.write_text("x")
    result = runner.invoke(app, ["render", str(SHORT), "--out", str(target)])
    assert result.exit_code in (2, 73), result.output
    assert str(target) in last_line(result.output) and "Traceback" not in result.output
    assert target.read_text() == "x"


def test_lock_path_a_folder(tiny_env: Path, tmp_path: Path) -> None:
    (tmp_path / "short" / ".render.lock").mkdir(parents=True)
    result = runner.invoke(app, ["render", str(SHORT), "--out", str(tmp_path)])
    assert result.exit_code == 73, result.output
    assert last_line(result.output).startswith(f"cannot write {tmp_path / 'short' / '.render.lock'}")


@pytest.mark.parametrize("kind", ["folder", "under-a-file"])
def test_generate_output_checked_before_generating(
    tiny_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    import composer.engine.factory as base

    monkeypatch.setattr(base, "open_engine", lambda *a, **k: pytest.fail("generated before checking -o"))
    if kind == "folder":
        out = tmp_path / "clip.wav"
        out.mkdir()
    else:
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "clip.wav"
    result = runner.invoke(app, ["generate", "--prompt", "p", "-d", "1", "-o", str(out)])
    assert result.exit_code == 2 and str(out) in result.output, result.output


def test_a_folder_where_the_mix_goes_is_named_not_the_temp_file(tiny_env: Path, tmp_path: Path) -> None:
    """#19 item 20: exit 73 named composer's temp file (.composer-mix.wav.....tmp) instead of mix.wav."""
    (tmp_path / "short" / "mix.wav").mkdir(parents=True)
    result = runner.invoke(app, ["render", str(SHORT), "--out", str(tmp_path)])
    assert result.exit_code == 73, result.output
    line = last_line(result.output)
    assert line.startswith(f"cannot write {tmp_path / 'short' / 'mix.wav'}: ") and ".composer-" not in line, line


@needs_root
def test_building_a_tiny_model_on_a_full_disk(tiny_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """#19 item 17: a tiny model (4 MB) built into a 1 MB cache raised SafetensorError with a traceback."""
    with tmpfs(tmp_path / "cache", "size=1m") as cache:
        monkeypatch.setenv("COMPOSER_CACHE_DIR", str(cache))
        for args in (["models", "pull", "small"], ["render", str(SHORT), "--out", str(tmp_path / "out")]):
            result = runner.invoke(app, args)
            assert result.exit_code == 74, result.output
            assert last_line(result.output).startswith(f"disk full while writing {cache}"), result.output
            assert isinstance(result.exception, SystemExit), result.exception
            assert not list(cache.rglob(".build-*")) and not list(cache.rglob("snapshots/*")), "nothing half-built"


def test_a_folder_where_a_cache_entry_goes(tiny_env: Path, tmp_path: Path) -> None:
    """#19 item 20: a folder at a cache entry's name was regenerated on every retry and never stored.
    An empty one is taken away and the entry stored; anything else is named before generating."""
    import json

    assert runner.invoke(app, ["render", str(SHORT), "--out", str(tmp_path)]).exit_code == 0
    keys = [s["cache_key"] for s in json.loads((tmp_path / "short" / "manifest.json").read_text())["segments"]]
    entry = [tmp_path / "cache" / "segments" / k[:2] / f"{k}.npz" for k in keys[:2]]
    for path in entry:
        path.unlink()
    entry[0].mkdir()
    (entry[0] / "notes.txt").write_text("someone's file")
    result = runner.invoke(app, ["render", str(SHORT), "--out", str(tmp_path)])
    assert result.exit_code == 73, result.output
    assert last_line(result.output).startswith(f"cannot write {entry[0]}: a folder stands where a file should be")
    assert not entry[1].exists(), "refused before generating anything"
    (entry[0] / "notes.txt").unlink()  # an empty folder: removed, the segment generated and stored once
    assert runner.invoke(app, ["render", str(SHORT), "--out", str(tmp_path)]).exit_code == 0
    assert entry[0].is_file() and entry[1].is_file()
    again = runner.invoke(app, ["render", str(SHORT), "--out", str(tmp_path)])
    assert again.exit_code == 0 and "0 generated" in again.output, again.output
