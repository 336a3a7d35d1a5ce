"""A transformers checkpoint in a folder (``--model ./my-finetune``, ``model: ./my-finetune``), used in place."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from composer.engine import local_folder
from composer.engine.hf import hub_snapshot
from composer.engine.models import ensure_available, load_model
from composer.errors import ModelLoadingError
from composer.settings import Settings, load_settings


def settings_in(tmp_path: Path, tiny_cache: Path | None = None) -> Settings:
    env = {"COMPOSER_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "COMPOSER_DEVICE": "cpu",
           "COMPOSER_CPU_DTYPE": "float32"}  # fmt: skip
    if tiny_cache is not None:
        env |= {"COMPOSER_CACHE_DIR": str(tiny_cache), "COMPOSER_MODELS": "tiny"}
    return load_settings(env=env)


@pytest.fixture()
def fine_tune(tiny_cache: Path, tmp_path: Path) -> Path:
    """What ``save_pretrained`` writes for a model and its processor: the tiny small checkpoint's files."""
    snapshot = hub_snapshot(tiny_cache / "hub", "composer-tiny/musicgen-small")
    assert snapshot is not None
    return Path(shutil.copytree(snapshot, tmp_path / "project" / "my-finetune", symlinks=False))


def test_a_transformers_folder_is_loaded_in_place(
    fine_tune: Path, tiny_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_in(tmp_path)
    monkeypatch.chdir(fine_tune.parent)
    lm = load_model("./my-finetune", settings)
    assert lm.repo_id == str(fine_tune.resolve()) and lm.revision.startswith("folder-")
    same = load_model("small", settings_in(tmp_path, tiny_cache))  # the same weights from the hub cache
    theirs = same.model.state_dict()
    ours = lm.model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not (settings.cache_dir / "composer-converted").exists(), "nothing is copied or converted"


def test_its_revision_follows_its_content(fine_tune: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_in(tmp_path)
    first = ensure_available(str(fine_tune), settings)
    assert local_folder.known_revision(fine_tune, settings) == first, "remembered: the next plan does not hash"
    hashed: list[Path] = []
    monkeypatch.setattr(local_folder, "file_hash", lambda p: hashed.append(p) or "x")
    assert ensure_available(str(fine_tune), settings) == first and hashed == []
    monkeypatch.undo()
    moved = Path(shutil.move(fine_tune, tmp_path / "elsewhere"))
    assert ensure_available(str(moved), settings) == first, "the same files elsewhere: the same revision"
    config = moved / "generation_config.json"
    config.write_text(config.read_text().replace("}", ', "comment": "edited"}', 1))
    assert local_folder.known_revision(moved, settings) is None
    assert ensure_available(str(moved), settings) not in (first, None), "an edited checkpoint is a new revision"


def test_a_folder_without_its_processor_is_one_line(fine_tune: Path, tmp_path: Path) -> None:
    model_only = {"config.json", "generation_config.json", "model.safetensors"}  # model.save_pretrained alone
    for path in [p for p in fine_tune.iterdir() if p.name not in model_only]:
        path.unlink()
    with pytest.raises(ModelLoadingError, match="a model folder needs what save_pretrained writes") as caught:
        load_model(str(fine_tune), settings_in(tmp_path))
    assert "\n" not in str(caught.value) and str(fine_tune) in str(caught.value)
