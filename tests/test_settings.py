from pathlib import Path

import pytest

from composer.settings import load_settings


def test_defaults_use_model_cache_under_cwd(tmp_path: Path) -> None:
    s = load_settings(env={}, cwd=tmp_path)
    assert s.cache_dir == tmp_path / "model-cache"
    assert s.hub_cache == tmp_path / "model-cache" / "hub"
    assert s.model_source == "hub" and not s.offline and s.device == "auto"
    assert s.output_dir == tmp_path / "output"


def test_hf_home_then_audiocraft_cache_dir(tmp_path: Path) -> None:
    assert load_settings(env={"HF_HOME": "/cache"}, cwd=tmp_path).hub_cache == Path("/cache/hub")
    assert load_settings(env={"AUDIOCRAFT_CACHE_DIR": "/ac"}, cwd=tmp_path).cache_dir == Path("/ac")
    both = load_settings(env={"HF_HOME": "/hf", "AUDIOCRAFT_CACHE_DIR": "/ac"}, cwd=tmp_path)
    assert both.cache_dir == Path("/hf")
    ours = load_settings(env={"HF_HOME": "/hf", "COMPOSER_CACHE_DIR": "/c"}, cwd=tmp_path)
    assert ours.cache_dir == Path("/c")
    hub = load_settings(env={"HF_HOME": "/hf", "HF_HUB_CACHE": "/elsewhere"}, cwd=tmp_path)
    assert hub.hub_cache == Path("/elsewhere")


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("0", False), ("", False)])
def test_offline_flag(tmp_path: Path, value: str, expected: bool) -> None:
    assert load_settings(env={"HF_HUB_OFFLINE": value}, cwd=tmp_path).offline is expected


def test_model_source(tmp_path: Path) -> None:
    assert load_settings(env={"COMPOSER_MODELS": "tiny"}, cwd=tmp_path).model_source == "tiny"
    with pytest.raises(ValueError, match="COMPOSER_MODELS"):
        load_settings(env={"COMPOSER_MODELS": "huge"}, cwd=tmp_path)


def test_with_ignores_none(tmp_path: Path) -> None:
    s = load_settings(env={}, cwd=tmp_path)
    assert s.with_(device=None, model_source="tiny").model_source == "tiny"
    assert s.with_(device=None).device == "auto"


def test_engine_batch_and_cpu_dtype(tmp_path: Path) -> None:
    s = load_settings(env={}, cwd=tmp_path)
    assert (s.engine, s.batch_size, s.cpu_dtype) == ("fast", 4, "auto")
    s = load_settings(env={"COMPOSER_ENGINE": "transformers", "COMPOSER_BATCH": "8", "COMPOSER_CPU_DTYPE": "float32"},
                      cwd=tmp_path)  # fmt: skip
    assert (s.engine, s.batch_size, s.cpu_dtype) == ("transformers", 8, "float32")
    for bad in ({"COMPOSER_ENGINE": "turbo"}, {"COMPOSER_BATCH": "lots"}, {"COMPOSER_BATCH": "0"},
                {"COMPOSER_CPU_DTYPE": "int4"}):  # fmt: skip
        with pytest.raises(ValueError):
            load_settings(env=bad, cwd=tmp_path)
