"""Facts about MusicGen checkpoints that validation and planning need without loading torch."""

from __future__ import annotations

from dataclasses import dataclass

FRAME_RATE_HZ = 50  # EnCodec 32 kHz with hop 640: one decoding step = one frame = 20 ms
SAMPLE_RATE_HZ = 32_000
WINDOW_S = 30.0  # MusicGen was trained on 30 s windows; longer needs windowed continuation
DEFAULT_STRIDE_S = 18.0  # audiocraft's extend_stride: keep the last 12 s as the next prompt
COMFORTABLE_S = 60.0  # above this, VRAM (decode) and musical drift get uncomfortable
LONG_FORM_MAX_S = 300.0  # hard ceiling even when the user opts into long-form generation
# Bumped when an engine would give other tokens for the same request (part of every cache key).
# fast 2: static decode step, tie-ordered top-k candidates, float32 uniforms per segment.
# fast 3: products on fixed row chunks with packed CPU kernels, T5 on one thread.
ENGINE_VERSIONS: dict[str, int] = {"fast": 3, "transformers": 1}


@dataclass(frozen=True)
class ModelInfo:
    """A named MusicGen checkpoint."""

    alias: str
    repo_id: str
    decoder_params_m: int  # decoder parameters, millions
    fp16_weights_gb: float
    size: str = ""  # the decoder shape: small, medium or large
    channels: int = 1  # 2: stereo (8 interleaved codebooks)
    melody: bool = False  # conditioned on a reference's chromagram as well as text

    @property
    def codebooks(self) -> int:
        return 4 * self.channels


MODELS: dict[str, ModelInfo] = {
    "small": ModelInfo("small", "facebook/musicgen-small", 420, 0.84, "small"),
    "medium": ModelInfo("medium", "facebook/musicgen-medium", 1840, 3.7, "medium"),
    "large": ModelInfo("large", "facebook/musicgen-large", 3260, 6.5, "large"),
    "stereo-small": ModelInfo("stereo-small", "facebook/musicgen-stereo-small", 430, 0.86, "small", channels=2),
    "stereo-medium": ModelInfo("stereo-medium", "facebook/musicgen-stereo-medium", 1850, 3.7, "medium", channels=2),
    "stereo-large": ModelInfo("stereo-large", "facebook/musicgen-stereo-large", 3270, 6.5, "large", channels=2),
    "melody": ModelInfo("melody", "facebook/musicgen-melody", 1840, 3.7, "medium", melody=True),
    "stereo-melody": ModelInfo(
        "stereo-melody", "facebook/musicgen-stereo-melody", 1850, 3.7, "medium", channels=2, melody=True
    ),
    "stereo-melody-large": ModelInfo(
        "stereo-melody-large", "facebook/musicgen-stereo-melody-large", 3270, 6.5, "large", channels=2, melody=True
    ),
}

# Tiny random-weight stand-ins (see composer.engine.tiny); "small" and "medium" differ in size.
TINY_REPOS: dict[str, str] = {alias: f"composer-tiny/musicgen-{alias}" for alias in MODELS}
# Random weights at the real shapes, for benchmarks (nothing to download).
RANDOM_REPOS: dict[str, str] = {alias: f"composer-random/musicgen-{alias}" for alias in MODELS}


def is_path_model(name: str) -> bool:
    """A model given as a folder (``./my-finetune``, ``/models/x``, ``~/x``) rather than a name."""
    return name.startswith(("/", "./", "../", "~"))


def is_known_model(name: str) -> bool:
    """True for an alias (small/medium/large), something shaped like a hub repo id (ORG/NAME) or a
    folder path (see :func:`is_path_model`)."""
    if name in MODELS or is_path_model(name):
        return True
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and ".." not in name and " " not in name


def info_of(name: str) -> ModelInfo | None:
    """The catalogue entry for an alias or a known repo id, else None."""
    alias = alias_of(name)
    return MODELS[alias] if alias else None


def alias_of(name: str) -> str | None:
    """The alias for a name or a known repo id, else None."""
    if name in MODELS:
        return name
    for info in MODELS.values():
        if info.repo_id == name:
            return info.alias
    return None
