"""Shared fixtures: an isolated environment and tiny MusicGen models built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
STYLES = REPO / "styles"
ENV_VARS = (
    "COMPOSER_CACHE_DIR", "HF_HOME", "AUDIOCRAFT_CACHE_DIR", "HF_HUB_CACHE", "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE", "COMPOSER_MODELS", "COMPOSER_DEVICE", "COMPOSER_STYLES_DIR", "COMPOSER_OUTPUT_DIR",
)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache holding the tiny models, built once through the real build path."""
    from composer.engine.tiny import ensure_synthetic_model

    cache = tmp_path_factory.mktemp("model-cache")
    for alias in ("small", "medium", "stereo-small", "melody"):
        ensure_synthetic_model("tiny", alias, cache / "hub")
    return cache


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # tests never touch the network


@pytest.fixture
def tiny_env(monkeypatch: pytest.MonkeyPatch, tiny_cache: Path) -> Path:
    """Environment variables pointing composer at the tiny models; returns the cache folder."""
    monkeypatch.setenv("COMPOSER_CACHE_DIR", str(tiny_cache))
    monkeypatch.setenv("COMPOSER_MODELS", "tiny")
    monkeypatch.setenv("COMPOSER_DEVICE", "cpu")
    monkeypatch.setenv("COMPOSER_STYLES_DIR", str(STYLES))
    return tiny_cache


@pytest.fixture
def tiny_settings(tiny_env: Path) -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def tiny_small(tiny_cache: Path):  # type: ignore[no-untyped-def]
    """The tiny 'small' model, loaded once (generation does not mutate it)."""
    from composer.engine.models import load_model

    env = {"COMPOSER_CACHE_DIR": str(tiny_cache), "COMPOSER_MODELS": "tiny", "COMPOSER_DEVICE": "cpu",
           "HF_HUB_OFFLINE": "1"}  # fmt: skip
    return load_model("small", load_settings(env=env))


@pytest.fixture(scope="session")
def tiny_small_fp32(tiny_cache: Path):  # type: ignore[no-untyped-def]
    """The tiny 'small' model with fp32 weights: for comparing tokens with transformers exactly.

    In fp16 the two implementations round guidance differently (transformers in fp16, composer in
    fp32), so a near-tie can flip a greedy choice; in fp32 they agree.
    """
    from composer.engine.models import load_model

    env = {"COMPOSER_CACHE_DIR": str(tiny_cache), "COMPOSER_MODELS": "tiny", "COMPOSER_DEVICE": "cpu",
           "HF_HUB_OFFLINE": "1", "COMPOSER_CPU_DTYPE": "float32"}  # fmt: skip
    return load_model("small", load_settings(env=env))


@pytest.fixture(scope="session")
def settings(tiny_cache: Path) -> Settings:
    """Settings for in-process renders with the tiny models (the shipped style library, CPU, offline)."""
    env = {"COMPOSER_CACHE_DIR": str(tiny_cache), "COMPOSER_MODELS": "tiny", "COMPOSER_DEVICE": "cpu",
           "HF_HUB_OFFLINE": "1", "COMPOSER_STYLES_DIR": str(STYLES)}  # fmt: skip
    return load_settings(env=env)
