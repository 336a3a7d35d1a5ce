"""Runtime settings: where models, styles and outputs live, which device to use.

This is the only module that reads environment variables. Settings are separate from the
arrangement: an arrangement says *what* to make, settings say *where and how* to run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

ModelSource = Literal["hub", "tiny"]
MODEL_SOURCES: tuple[str, ...] = ("hub", "tiny")

# The repository root when composer runs from a checkout (editable install or Docker /app).
_REPO_ROOT = Path(__file__).resolve().parent.parent


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Where and how composer runs."""

    cache_dir: Path  # model cache root, laid out like HF_HOME (weights under hub/)
    hub_cache: Path  # the huggingface_hub cache folder (models--ORG--NAME/...)
    offline: bool  # never touch the network; load weights from the cache only
    model_source: ModelSource  # "hub": real weights; "tiny": tiny random models for pipeline checks
    device: str  # "auto", "cpu", "cuda" or "cuda:N"
    styles_dir: Path  # the style library
    output_dir: Path  # root for render outputs

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


def _default_styles_dir(env: Mapping[str, str], cwd: Path) -> Path:
    if env.get("COMPOSER_STYLES_DIR"):
        return Path(env["COMPOSER_STYLES_DIR"])
    for candidate in (cwd / "styles", _REPO_ROOT / "styles"):
        if candidate.is_dir():
            return candidate
    return cwd / "styles"


def load_settings(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Build settings from the environment.

    Precedence for the model cache: ``COMPOSER_CACHE_DIR``, then ``HF_HOME``, then
    ``AUDIOCRAFT_CACHE_DIR`` (the Docker image sets both to ``/cache``), then ``./model-cache``.
    ``HF_HUB_CACHE`` overrides the hub folder inside it. ``HF_HUB_OFFLINE=1`` forbids downloads.
    ``COMPOSER_MODELS`` picks the model source (``hub`` or ``tiny``), ``COMPOSER_DEVICE`` the device.

    Raises:
        ValueError: if COMPOSER_MODELS names an unknown source.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    cache_dir = Path(
        env.get("COMPOSER_CACHE_DIR") or env.get("HF_HOME") or env.get("AUDIOCRAFT_CACHE_DIR") or cwd / "model-cache"
    )
    hub_cache = Path(env["HF_HUB_CACHE"]) if env.get("HF_HUB_CACHE") else cache_dir / "hub"
    source = (env.get("COMPOSER_MODELS") or "hub").strip().lower()
    if source not in MODEL_SOURCES:
        raise ValueError(f"COMPOSER_MODELS={source!r}: expected one of {', '.join(MODEL_SOURCES)}")
    return Settings(
        cache_dir=cache_dir,
        hub_cache=hub_cache,
        offline=_truthy(env.get("HF_HUB_OFFLINE")) or _truthy(env.get("TRANSFORMERS_OFFLINE")),
        model_source=source,  # type: ignore[arg-type]
        device=(env.get("COMPOSER_DEVICE") or "auto").strip(),
        styles_dir=_default_styles_dir(env, cwd),
        output_dir=Path(env.get("COMPOSER_OUTPUT_DIR") or cwd / "output"),
    )
