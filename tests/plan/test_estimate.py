"""Plan estimates a user acts on: disk space (checked against a real render) and the GPU memory guard."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from composer.cli import app
from composer.job.local import render
from composer.plan.estimate import disk_need
from composer.settings import Settings
from tests.conftest import REPO

SHORT = REPO / "tests" / "data" / "short.yaml"
runner = CliRunner()


def test_disk_estimate_matches_what_a_render_writes(settings: Settings, tmp_path: Path) -> None:
    result = render(SHORT, settings, tmp_path)
    need = disk_need(result.plan)

    def size(pattern: str, root: Path = result.folder) -> int:
        return sum(p.stat().st_size for p in root.glob(pattern))

    assert size("mix.wav") == pytest.approx(need.mix, rel=0.05)
    assert size("stems/aligned/*") == pytest.approx(need.aligned_stems, rel=0.05)
    assert size("stems/raw/*") == pytest.approx(need.raw_stems, rel=0.15)
    assert size("cache/segments/*/*.npz", tmp_path) == pytest.approx(need.cache, rel=0.15)


def test_plan_warns_past_the_disk_threshold(tiny_env: Path, tmp_path: Path) -> None:
    rows = [f"  - {{name: s{i}, prompt: p, duration_s: 20, transition: none}}\n" for i in range(54)]
    rows.append("  - {name: last, prompt: p, duration_s: 20}\n")  # no boundary after the last section
    song = tmp_path / "long.yaml"
    song.write_text("title: Long\nbpm: 120\noutput: {bit_depth: float}\nsections:\n" + "".join(rows))
    result = runner.invoke(app, ["plan", str(song)])
    assert result.exit_code == 0, result.output
    assert "this render writes about" in result.output and "aligned stems span the whole track" in result.output


def test_a_model_too_large_for_the_gpu_is_refused_before_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """musicgen-large (~9 GB) on a GPU with 2 GB free: plan warns, render refuses (exit 4) unless allowed."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2_000_000_000, 10_000_000_000))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    song = tmp_path / "big.yaml"
    song.write_text(
        "title: Big\nbpm: 120\ngeneration: {model: large}\nsections:\n  - {name: a, prompt: p, duration_s: 20}\n"
    )
    env = {"COMPOSER_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "COMPOSER_DEVICE": "cuda",
           "COMPOSER_STYLES_DIR": str(REPO / "styles")}  # fmt: skip
    plan = runner.invoke(app, ["plan", str(song)], env=env)
    assert plan.exit_code == 0 and "needs about" in plan.output and "2.0 GB is free on Test GPU" in plan.output
    refused = runner.invoke(app, ["render", str(song), "--out", str(tmp_path / "out")], env=env)
    assert refused.exit_code == 4 and "--allow-large" in refused.output.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists(), "nothing written, nothing fetched"
    allowed = runner.invoke(app, ["render", str(song), "--out", str(tmp_path / "out"), "--allow-large"], env=env)
    assert allowed.exit_code == 3 and "HF_HUB_OFFLINE" in allowed.output, "allowed: it goes on to fetch the weights"
