"""Loading goes through from_pretrained on the HF cache layout; tiny models are built into it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from composer.engine.catalog import TINY_REPOS
from composer.engine.kernels import CHUNKS, KERNEL_VERSION, activation_dtype
from composer.engine.models import cached_revision, list_cached, load_model, resolve_repo_id
from composer.engine.tiny import TINY_SHAPES
from composer.engine.tune import isa_tag, machine
from composer.errors import ModelLoadingError
from composer.settings import Settings, load_settings


def test_tiny_models_use_hf_cache_layout(tiny_cache: Path) -> None:
    folder = tiny_cache / "hub" / "models--composer-tiny--musicgen-small"
    rev = (folder / "refs" / "main").read_text()
    snapshot = folder / "snapshots" / rev
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json"):
        assert (snapshot / name).is_file(), name
    assert cached_revision("composer-tiny/musicgen-small", tiny_cache / "hub") == rev
    assert not list((folder / "snapshots").glob(".build-*")), "no half-built snapshot left behind"


def test_small_and_medium_differ(tiny_settings: Settings) -> None:
    small = load_model("small", tiny_settings)
    medium = load_model("medium", tiny_settings)
    assert small.repo_id == TINY_REPOS["small"] and medium.repo_id == TINY_REPOS["medium"]
    assert small.model.config.decoder.hidden_size == TINY_SHAPES["small"][0]
    assert medium.model.config.decoder.num_hidden_layers == TINY_SHAPES["medium"][1]
    assert small.spec.sample_rate == 32000 and small.spec.frame_rate == 50 and small.spec.codebooks == 4
    assert small.spec.channels == 1 and small.spec.pad == small.spec.vocab == 2048
    assert str(small.device) == "cpu" and small.kernel in ("float32", "bfloat16", "float16")  # tuned here
    assert small.dtype == activation_dtype(small.kernel) and small.rows in CHUNKS
    build = f"{isa_tag()}-dnnl{machine()['onednn']}"
    assert small.numerics == f"cpu-{small.kernel}-r{small.rows}-k{KERNEL_VERSION}-{build}"
    assert next(small.model.text_encoder.parameters()).dtype == torch.float32
    assert next(small.model.audio_encoder.parameters()).dtype == torch.float32
    full = load_model("small", tiny_settings.with_(cpu_dtype="float32"))
    assert next(full.model.decoder.parameters()).dtype == torch.float32


def test_resolve_repo_ids(tmp_path: Path) -> None:
    hub = load_settings(env={}, cwd=tmp_path)
    assert resolve_repo_id("small", hub) == "facebook/musicgen-small"
    assert resolve_repo_id("someone/musicgen-finetune", hub) == "someone/musicgen-finetune"
    tiny = hub.with_(model_source="tiny")
    assert resolve_repo_id("facebook/musicgen-medium", tiny) == TINY_REPOS["medium"]
    with pytest.raises(ModelLoadingError, match="no tiny stand-in"):
        resolve_repo_id("someone/other", tiny)
    with pytest.raises(ModelLoadingError, match="unknown model"):
        resolve_repo_id("huge", hub)


def test_offline_missing_weights_is_one_clear_line(tmp_path: Path) -> None:
    settings = load_settings(env={"HF_HUB_OFFLINE": "1", "COMPOSER_DEVICE": "cpu"}, cwd=tmp_path)
    with pytest.raises(ModelLoadingError) as info:
        load_model("medium", settings)
    message = str(info.value)
    assert "facebook/musicgen-medium" in message and "compose models pull medium" in message
    assert "\n" not in message


def test_corrupt_weights_reported(tmp_path: Path, tiny_cache: Path) -> None:
    import shutil

    hub = tmp_path / "hub"
    shutil.copytree(tiny_cache / "hub" / "models--composer-tiny--musicgen-small", hub / "models--x--broken")
    rev = (hub / "models--x--broken" / "refs" / "main").read_text()
    (hub / "models--x--broken" / "snapshots" / rev / "model.safetensors").write_bytes(b"garbage")
    settings = load_settings(env={"HF_HUB_OFFLINE": "1", "COMPOSER_CACHE_DIR": str(tmp_path)}, cwd=tmp_path)
    with pytest.raises(ModelLoadingError, match="could not load x/broken"):
        load_model("x/broken", settings)


def test_list_cached(tiny_settings: Settings) -> None:
    found = {m.repo_id: m for m in list_cached(tiny_settings)}
    assert set(TINY_REPOS.values()) >= set(found) >= {TINY_REPOS["small"], TINY_REPOS["medium"]}
    assert found[TINY_REPOS["medium"]].size_bytes > found[TINY_REPOS["small"]].size_bytes > 100_000


def test_an_unsupported_architecture_is_refused_before_generating(tmp_path: Path) -> None:
    """A cached checkpoint that is not a MusicGen fails `plan` and `render` with one line, exit 3."""
    import json

    from typer.testing import CliRunner

    from composer.cli import app
    from tests.conftest import STYLES

    snapshot = tmp_path / "cache" / "hub" / "models--acme--bark-small" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "bark"}))
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    song = tmp_path / "song.yaml"
    song.write_text("title: T\nbpm: 120\ngeneration: {model: acme/bark-small}\n"
                    "sections:\n  - {name: a, prompt: p, duration_s: 2}\n")  # fmt: skip
    env = {"COMPOSER_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "COMPOSER_STYLES_DIR": str(STYLES)}
    for command in (["plan", str(song)], ["render", str(song), "--out", str(tmp_path / "out")]):
        result = CliRunner().invoke(app, command, env=env)
        assert result.exit_code == 3, result.output
        line = result.output.strip().splitlines()[-1]
        assert "'acme/bark-small'" in line and "'bark' checkpoint" in line and "stereo-melody" in line, line
    assert not (tmp_path / "out" / "cache").exists(), "nothing was generated"


def test_models_pull_repairs_a_damaged_tiny_model(tmp_path: Path) -> None:
    """The load error says to run `compose models pull small`; with tiny models that must rebuild it."""
    from typer.testing import CliRunner

    from composer.cli import app

    env = {"COMPOSER_CACHE_DIR": str(tmp_path), "COMPOSER_MODELS": "tiny", "COMPOSER_DEVICE": "cpu",
           "HF_HUB_OFFLINE": "1"}  # fmt: skip
    settings = load_settings(env=env)
    load_model("small", settings)  # builds it
    weights = next((tmp_path / "hub").rglob("model.safetensors"))
    weights.write_bytes(b"truncated")
    with pytest.raises(ModelLoadingError, match="compose models pull small"):
        load_model("small", settings)
    result = CliRunner().invoke(app, ["models", "pull", "small", "--models", "tiny"], env=env)
    assert result.exit_code == 0, result.output
    assert load_model("small", settings).spec.codebooks == 4
