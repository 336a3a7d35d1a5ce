"""Runtime settings: where models, styles and outputs live, which device to use.

This is the only module that reads environment variables. Settings are separate from the
arrangement: an arrangement says *what* to make, settings say *where and how* to run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from composer.faults import parse

ModelSource = Literal["hub", "tiny", "random"]
MODEL_SOURCES: tuple[str, ...] = ("hub", "tiny", "random")
ENGINES: tuple[str, ...] = ("fast", "transformers")
CPU_DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16", "int8")
STEP_MODES: tuple[str, ...] = ("auto", "eager", "graph", "compile")
CUDA_DTYPES: tuple[str, ...] = ("auto", "bfloat16", "float16")

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
    model_source: ModelSource  # "hub": real weights; "tiny": tiny random models; "random": real shapes, random weights
    device: str  # "auto", "cpu", "cuda" or "cuda:N"
    styles_dir: Path  # the style library
    output_dir: Path  # root for render outputs
    engine: str = "fast"  # decoding loop: "fast" (composer's) or "transformers" (reference generate)
    batch_size: int = 4  # segments of one model generated together (fast engine)
    cpu_dtype: str = "auto"  # LM decoder kernel on CPU: auto (measured once per machine) or float32/.../int8
    cuda_dtype: str = (
        "auto"  # LM decoder on CUDA: auto (bf16 from compute capability 8.0, else fp16), bfloat16, float16
    )
    step_mode: str = "auto"  # fast loop's decode step: auto (CUDA graph on CUDA, eager on CPU), eager, graph, compile
    fault_at: str | None = None  # tests only: deliver a signal at a named point (composer.faults)
    audiocraft_cache: Path | None = None  # AUDIOCRAFT_CACHE_DIR: where audiocraft keeps its model files

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d{1,2})?)$")


def device_problem(device: str) -> str | None:
    """Why ``device`` is not one composer runs on (auto, cpu, cuda, cuda:N), or None."""
    if DEVICE_PATTERN.match(device):
        return None
    return f"{device!r}: expected auto, cpu, cuda or cuda:N (composer runs MusicGen on NVIDIA GPUs or the CPU)"


SHIPPED_STYLES = _REPO_ROOT / "styles"  # the library that comes with composer


def _upwards(cwd: Path, name: str) -> Path | None:
    """The nearest folder ``name`` in ``cwd`` or a folder above it (as git finds its repository)."""
    for folder in (cwd, *cwd.parents):
        if (folder / name).is_dir():
            return folder / name
    return None


def _default_styles_dir(env: Mapping[str, str], cwd: Path) -> Path:
    if env.get("COMPOSER_STYLES_DIR"):
        return Path(env["COMPOSER_STYLES_DIR"])
    return _upwards(cwd, "styles") or SHIPPED_STYLES


def _default_cache_dir(env: Mapping[str, str], cwd: Path) -> Path:
    """A project's model-cache/ found upwards, else the Hugging Face user cache (shared by every folder
    and by other tools that use the Hugging Face default)."""
    found = _upwards(cwd, "model-cache")
    if found is not None:
        return found
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]) / "huggingface"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".cache" / "huggingface"


def load_settings(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Build settings from the environment.

    Precedence for the model cache: ``COMPOSER_CACHE_DIR``, then ``HF_HOME``, then
    ``AUDIOCRAFT_CACHE_DIR`` (the Docker image sets both to ``/cache``), then the nearest ``model-cache/``
    in the working folder or above it, then the Hugging Face user cache (``$XDG_CACHE_HOME/huggingface``
    or ``~/.cache/huggingface``). Styles: ``COMPOSER_STYLES_DIR``, the nearest ``styles/`` upwards, the
    shipped library. Outputs: ``COMPOSER_OUTPUT_DIR``, else ``./output``.
    ``HF_HUB_CACHE`` overrides the hub folder inside it. ``HF_HUB_OFFLINE=1`` forbids downloads.
    ``AUDIOCRAFT_CACHE_DIR`` is also where audiocraft's own model files are looked for (then the hub folder).
    ``COMPOSER_MODELS`` picks the model source (``hub``, ``tiny`` or ``random``), ``COMPOSER_DEVICE`` the
    device, ``COMPOSER_ENGINE`` the decoding loop, ``COMPOSER_BATCH`` how many segments run together and
    ``COMPOSER_CPU_DTYPE`` the LM decoder's kernel on CPU (``auto``: the fastest measured here),
    ``COMPOSER_STEP`` how the fast loop runs
    its decode step (``auto``, ``eager``, ``graph``, ``compile``), ``COMPOSER_CUDA_DTYPE`` the LM decoder's
    type on CUDA. ``COMPOSER_FAULT_AT`` is for tests:
    it makes a render signal itself at a named point (see :mod:`composer.faults`).

    Raises:
        ValueError: if a variable holds an unknown value.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    explicit = env.get("COMPOSER_CACHE_DIR") or env.get("HF_HOME") or env.get("AUDIOCRAFT_CACHE_DIR")
    cache_dir = Path(explicit) if explicit else _default_cache_dir(env, cwd)
    hub_cache = Path(env["HF_HUB_CACHE"]) if env.get("HF_HUB_CACHE") else cache_dir / "hub"
    source = (env.get("COMPOSER_MODELS") or "hub").strip().lower()
    if source not in MODEL_SOURCES:
        raise ValueError(f"COMPOSER_MODELS={source!r}: expected one of {', '.join(MODEL_SOURCES)}")
    engine = (env.get("COMPOSER_ENGINE") or "fast").strip().lower()
    if engine not in ENGINES:
        raise ValueError(f"COMPOSER_ENGINE={engine!r}: expected one of {', '.join(ENGINES)}")
    try:
        batch_size = int(env.get("COMPOSER_BATCH") or 4)
    except ValueError:
        raise ValueError(f"COMPOSER_BATCH={env.get('COMPOSER_BATCH')!r}: expected a whole number") from None
    if not 1 <= batch_size <= 64:
        raise ValueError(f"COMPOSER_BATCH={batch_size}: expected 1..64")
    cpu_dtype = (env.get("COMPOSER_CPU_DTYPE") or "auto").strip().lower()
    if cpu_dtype not in CPU_DTYPES:
        raise ValueError(f"COMPOSER_CPU_DTYPE={cpu_dtype!r}: expected one of {', '.join(CPU_DTYPES)}")
    cuda_dtype = (env.get("COMPOSER_CUDA_DTYPE") or "auto").strip().lower()
    if cuda_dtype not in CUDA_DTYPES:
        raise ValueError(f"COMPOSER_CUDA_DTYPE={cuda_dtype!r}: expected one of {', '.join(CUDA_DTYPES)}")
    device = (env.get("COMPOSER_DEVICE") or "auto").strip().lower()
    if problem := device_problem(device):
        raise ValueError(f"COMPOSER_DEVICE={problem}")
    step_mode = (env.get("COMPOSER_STEP") or "auto").strip().lower()
    if step_mode not in STEP_MODES:
        raise ValueError(f"COMPOSER_STEP={step_mode!r}: expected one of {', '.join(STEP_MODES)}")
    fault_at = (env.get("COMPOSER_FAULT_AT") or "").strip() or None
    if fault_at is not None:
        parse(fault_at)  # raises ValueError on a bad spec
    return Settings(
        cache_dir=cache_dir,
        hub_cache=hub_cache,
        audiocraft_cache=Path(env["AUDIOCRAFT_CACHE_DIR"]) if env.get("AUDIOCRAFT_CACHE_DIR") else None,
        offline=_truthy(env.get("HF_HUB_OFFLINE")) or _truthy(env.get("TRANSFORMERS_OFFLINE")),
        model_source=source,  # type: ignore[arg-type]
        device=device,
        styles_dir=_default_styles_dir(env, cwd),
        output_dir=Path(env.get("COMPOSER_OUTPUT_DIR") or cwd / "output"),
        engine=engine,
        batch_size=batch_size,
        cpu_dtype=cpu_dtype,
        cuda_dtype=cuda_dtype,
        step_mode=step_mode,
        fault_at=fault_at,
    )
