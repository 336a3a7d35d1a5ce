from pathlib import Path

import pytest

from composer.settings import load_settings


def test_where_models_styles_and_outputs_live(tmp_path: Path) -> None:
    """#19 item 27: the model cache followed the working folder (`models list` elsewhere said "No models",
    which with real weights means downloading GBs again) while styles resolved from the checkout.
    One rule: a project's model-cache/ and styles/ are found upwards from the working folder, as git
    finds its repository; without a model-cache/ the Hugging Face user cache is used; outputs go to
    ./output where the command runs."""
    from composer.settings import SHIPPED_STYLES

    project = tmp_path / "project"
    (project / "model-cache").mkdir(parents=True)
    (project / "styles").mkdir()
    deep = project / "arrangements" / "live"
    deep.mkdir(parents=True)
    for cwd in (project, deep):
        s = load_settings(env={"HOME": str(tmp_path / "home")}, cwd=cwd)
        assert s.cache_dir == project / "model-cache" and s.hub_cache == project / "model-cache" / "hub"
        assert s.styles_dir == project / "styles"
        assert s.output_dir == cwd / "output"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    s = load_settings(env={"HOME": str(tmp_path / "home")}, cwd=elsewhere)
    assert s.cache_dir == tmp_path / "home" / ".cache" / "huggingface", "the Hugging Face default, shared by tools"
    assert s.styles_dir == SHIPPED_STYLES and s.output_dir == elsewhere / "output"
    xdg = load_settings(env={"HOME": "/h", "XDG_CACHE_HOME": str(tmp_path / "xdg")}, cwd=elsewhere)
    assert xdg.cache_dir == tmp_path / "xdg" / "huggingface"
    assert s.model_source == "hub" and not s.offline and s.device == "auto"


def test_models_list_from_a_subfolder_sees_the_projects_models(
    tmp_path: Path, tiny_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from typer.testing import CliRunner

    from composer.cli import app

    project = tmp_path / "project"
    shutil.copytree(tiny_cache, project / "model-cache")
    (project / "arrangements").mkdir()
    monkeypatch.chdir(project / "arrangements")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 0 and "composer-tiny/musicgen-small" in result.output, result.output


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
