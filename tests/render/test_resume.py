"""A render killed mid-way resumes to exactly the result of an uninterrupted render."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SHORT = REPO / "tests" / "data" / "short.yaml"


def run(out: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "composer", "render", str(SHORT), "--out", str(out)],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def tiny_process_env(tiny_cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env |= {"COMPOSER_CACHE_DIR": str(tiny_cache), "COMPOSER_MODELS": "tiny", "COMPOSER_DEVICE": "cpu",
            "HF_HUB_OFFLINE": "1", "COMPOSER_STYLES_DIR": str(REPO / "styles")}  # fmt: skip
    return env


@pytest.fixture(scope="module")
def reference(tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted render to compare against."""
    out = tmp_path_factory.mktemp("reference")
    assert run(out, tiny_process_env(tiny_cache)).wait(timeout=300) == 0
    return out


@pytest.mark.parametrize("kill_after_segments", [1, 3])
def test_killed_render_resumes_identically(
    tiny_cache: Path, reference: Path, tmp_path: Path, kill_after_segments: int
) -> None:
    env = tiny_process_env(tiny_cache)

    out = tmp_path / "interrupted"
    # killed right after the N-th segment reached the cache (composer.faults): no race with the clock
    killed = run(out, env | {"COMPOSER_FAULT_AT": f"segment-stored#{kill_after_segments}:KILL"})
    assert killed.wait(timeout=300) == -signal.SIGKILL
    cache = out / "cache" / "segments"
    assert not (out / "short" / "mix.wav").exists()
    leftovers = [p for p in out.rglob("*") if p.is_file() and not p.name.endswith(".npz") and ".tmp" not in p.name]
    assert {p.name for p in leftovers} <= {".render.lock", "journal.json"}, "only finished segments, lock, journal"
    journal = out / "short" / "journal.json"
    if journal.exists():
        assert len(json.loads(journal.read_text())["finished"]) >= 1
    kept = len(list(cache.rglob("*.npz")))
    assert kept == kill_after_segments

    assert run(out, env).wait(timeout=300) == 0
    manifest = json.loads((out / "short" / "manifest.json").read_text())
    hits = [s["id"] for s in manifest["segments"] if s["cache_hit"]]
    assert len(hits) == kept, f"the resumed render must reuse the {kept} kept segment(s), reused {hits}"
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(out / "short" / "mix.wav") == digest(reference / "short" / "mix.wav")
    for stem in (reference / "short" / "stems" / "raw").iterdir():
        assert digest(out / "short" / "stems" / "raw" / stem.name) == digest(stem)


def test_an_interrupted_regen_keeps_its_seed(tiny_cache: Path, tmp_path: Path) -> None:
    """regen without --seed picks one at random: it is in state.json before anything is generated."""
    env = tiny_process_env(tiny_cache)
    out = tmp_path / "out"
    assert run(out, env).wait(timeout=300) == 0
    cmd = [sys.executable, "-m", "composer", "regen", str(SHORT), "drive", "--out", str(out)]
    killed = subprocess.run(cmd, env=env | {"COMPOSER_FAULT_AT": "segment-stored#1:KILL"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    seed = json.loads((out / "short" / "state.json").read_text())["seeds"]["drive"]
    assert run(out, env).wait(timeout=300) == 0  # `compose render` finishes the interrupted regen
    manifest = json.loads((out / "short" / "manifest.json").read_text())
    drive = next(s for s in manifest["segments"] if s["id"] == "drive")
    assert drive["seed"] == seed and drive["cache_hit"], "the regenerated stem was kept, not made again"


def test_a_render_killed_while_exporting_says_its_outputs_are_stale(tiny_cache: Path, tmp_path: Path) -> None:
    """Re-rendering at a new loudness, killed after the new mix: no old manifest beside it, the journal says so."""
    env = tiny_process_env(tiny_cache)
    song = tmp_path / "short.yaml"
    song.write_text(SHORT.read_text())
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "composer", "render", str(song), "--out", str(out)]
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    song.write_text(SHORT.read_text().replace("target_lufs: -16", "target_lufs: -20"))
    # all segments are cached: the writes are state.json, journal.json, then the mix: kill right after it
    killed = subprocess.run(cmd, env=env | {"COMPOSER_FAULT_AT": "file-written#3:KILL"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    folder = out / "short"
    assert not (folder / "manifest.json").exists(), "an old manifest must not describe the new mix"
    assert json.loads((folder / "journal.json").read_text())["status"] == "exporting"
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    assert not (folder / "journal.json").exists()
    assert json.loads((folder / "manifest.json").read_text())["loudness"]["target_lufs"] == -20
