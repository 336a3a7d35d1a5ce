"""The only door to MusicGen weights: :func:`load_model`.

Weights are loaded with ``from_pretrained`` from the Hugging Face cache layout under the model
cache (``<cache>/hub``). With ``HF_HUB_OFFLINE=1`` (or tiny models) nothing touches the network.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from composer.engine.catalog import MODELS, RANDOM_REPOS, TINY_REPOS, alias_of, is_known_model
from composer.errors import ModelLoadingError
from composer.settings import Settings

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A MusicGen checkpoint ready to generate."""

    name: str  # what the user asked for ("small", "facebook/musicgen-small", ...)
    repo_id: str  # what was loaded
    revision: str  # snapshot commit hash in the cache
    source: str  # "hub" or "tiny"
    model: Any  # transformers MusicgenForConditionalGeneration
    processor: Any  # transformers MusicgenProcessor
    device: torch.device
    dtype: torch.dtype
    derived: dict[str, Any] = field(default_factory=dict)  # per-model state engines build once (fused weights)

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.audio_encoder.sampling_rate)

    @property
    def frame_rate(self) -> int:
        return int(self.model.config.audio_encoder.frame_rate)

    @property
    def num_codebooks(self) -> int:
        return int(self.model.decoder.num_codebooks)

    def unload(self) -> None:
        """Drop the weights and give memory back to the device."""
        self.model = None
        self.processor = None
        self.derived.clear()
        free_device_memory()


def free_device_memory() -> None:
    """Collect garbage and return PyTorch's cached GPU memory to the driver."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def resolve_repo_id(name: str, settings: Settings) -> str:
    """Map a model name to the repo id to load for the configured model source.

    Raises:
        ModelLoadingError: unknown name, or no tiny stand-in for it.
    """
    if not is_known_model(name):
        raise ModelLoadingError(f"unknown model {name!r}; use small, medium, large or a hub repo id (ORG/NAME)")
    if settings.model_source in ("tiny", "random"):
        alias = alias_of(name)
        if alias is None:
            raise ModelLoadingError(
                f"no {settings.model_source} stand-in for {name!r}; they exist for {', '.join(TINY_REPOS)}"
            )
        return (TINY_REPOS if settings.model_source == "tiny" else RANDOM_REPOS)[alias]
    return MODELS[name].repo_id if name in MODELS else name


def quiet_transformers() -> None:
    """Silence transformers' progress bars and expected warnings (pad/bos id 2048 is the special token)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def pick_device(requested: str) -> torch.device:
    """'auto' means CUDA when available, else CPU."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadingError(f"device {requested!r} asked for, but CUDA is not available; use --device cpu")
    return device


def cached_revision(repo_id: str, hub_cache: Path) -> str | None:
    """The snapshot revision of ``repo_id`` in the cache, or None when it is not cached."""
    ref = hub_cache / ("models--" + repo_id.replace("/", "--")) / "refs" / "main"
    if not ref.is_file():
        return None
    rev = ref.read_text().strip()
    snapshot = ref.parent.parent / "snapshots" / rev
    return rev if (snapshot / "config.json").is_file() else None


def load_model(name: str, settings: Settings) -> LoadedModel:
    """Load a MusicGen checkpoint.

    On CUDA the LM decoder and EnCodec run in fp16 and T5 stays in fp32 (it overflows in fp16). On
    CPU the LM decoder uses ``settings.cpu_dtype`` (default fp16: decoding is memory-bound, half the
    bytes per step) and T5 and EnCodec stay in fp32.

    Args:
        name: small, medium, large or a hub repo id.
        settings: cache folder, offline flag, model source, device.

    Raises:
        ModelLoadingError: the weights are not cached and cannot be fetched, or are unreadable.
    """
    repo_id = resolve_repo_id(name, settings)
    revision = ensure_available(name, settings)

    import torch
    from transformers import MusicgenForConditionalGeneration, MusicgenProcessor

    device = pick_device(settings.device)
    dtype = torch.float16 if device.type == "cuda" else getattr(torch, settings.cpu_dtype)
    quiet_transformers()
    try:
        model = MusicgenForConditionalGeneration.from_pretrained(
            repo_id, cache_dir=settings.hub_cache, local_files_only=True, revision=revision,
            attn_implementation="eager",  # SDPA + guidance gave NaNs (transformers#31189)
        )  # fmt: skip
        processor = MusicgenProcessor.from_pretrained(
            repo_id, cache_dir=settings.hub_cache, local_files_only=True, revision=revision
        )
    except Exception as exc:  # OSError, SafetensorError, ValueError...: the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadingError(
            f"could not load {repo_id} from {settings.hub_cache}: {first}; "
            f"re-fetch it with `compose models pull {alias_of(name) or name}`"
        ) from exc
    model = cast(Any, model).eval()
    model.decoder.to(device=device, dtype=dtype)
    model.audio_encoder.to(device=device, dtype=dtype if device.type == "cuda" else torch.float32)
    if hasattr(model, "enc_to_dec_proj"):
        model.enc_to_dec_proj.to(device=device, dtype=dtype)
    # T5 stays in fp32 (it overflows in fp16) and, on a GPU, on the CPU: it runs once per segment,
    # and keeping its ~0.4 GB off the card leaves that memory to the decoder and EnCodec.
    _keep_text_encoder_on_cpu(model.text_encoder, device, dtype)
    log.info("loaded %s@%s on %s (%s)", repo_id, revision[:10], device, dtype)
    return LoadedModel(name, repo_id, revision, settings.model_source, model, processor, device, dtype)


def ensure_available(name: str, settings: Settings) -> str:
    """Make sure the weights for ``name`` are in the cache (build tiny ones, download real ones).

    Returns:
        The cached snapshot revision.

    Raises:
        ModelLoadingError: offline and not cached, or the download failed.
    """
    repo_id = resolve_repo_id(name, settings)
    if settings.model_source in ("tiny", "random"):
        from composer.engine.tiny import ensure_synthetic_model

        ensure_synthetic_model(settings.model_source, alias_of(name) or name, settings.hub_cache)
    revision = cached_revision(repo_id, settings.hub_cache)
    if revision is None:
        if settings.offline:
            raise ModelLoadingError(
                f"{repo_id} is not in {settings.hub_cache} and HF_HUB_OFFLINE is set; "
                f"run `compose models pull {alias_of(name) or name}` on a machine with internet"
            )
        pull_model(repo_id, settings)
        revision = cached_revision(repo_id, settings.hub_cache)
        if revision is None:
            raise ModelLoadingError(f"{repo_id} was downloaded but its snapshot is incomplete; pull it again")
    return revision


def _keep_text_encoder_on_cpu(text_encoder: Any, device: torch.device, dtype: torch.dtype) -> None:
    """Run T5 in fp32 on the CPU whatever the device: inputs move to it, its output moves to ``device``."""
    import torch

    text_encoder.to(device="cpu", dtype=torch.float32)

    def to_cpu(value: Any) -> Any:
        return value.to("cpu") if isinstance(value, torch.Tensor) else value

    def before(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return tuple(to_cpu(a) for a in args), {k: to_cpu(v) for k, v in kwargs.items()}

    def after(_module: Any, _args: Any, _kwargs: Any, output: Any) -> Any:
        output.last_hidden_state = output.last_hidden_state.to(device=device, dtype=dtype)
        return output

    text_encoder.register_forward_pre_hook(before, with_kwargs=True)
    text_encoder.register_forward_hook(after, with_kwargs=True)


def pull_model(repo_id: str, settings: Settings) -> Path:
    """Download a checkpoint into the model cache.

    Raises:
        ModelLoadingError: offline, no network, or the repo does not exist.
    """
    if settings.offline:
        raise ModelLoadingError(f"cannot download {repo_id}: HF_HUB_OFFLINE is set")
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id,
                cache_dir=settings.hub_cache,
                allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"],
            )
        )
    except Exception as exc:  # network errors come in many classes; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadingError(f"could not download {repo_id} (offline or no access?): {first}") from exc


@dataclass(frozen=True)
class CachedModel:
    """One model found in the cache."""

    repo_id: str
    revision: str
    size_bytes: int
    path: Path


def list_cached(settings: Settings) -> list[CachedModel]:
    """MusicGen checkpoints present in the model cache, with their sizes on disk."""
    found: list[CachedModel] = []
    if not settings.hub_cache.is_dir():
        return found
    for folder in sorted(settings.hub_cache.glob("models--*")):
        repo_id = folder.name[len("models--") :].replace("--", "/", 1)
        revision = cached_revision(repo_id, settings.hub_cache)
        if revision is None:
            continue
        # blobs hold the bytes for real downloads; tiny models are written straight into the snapshot
        files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
        found.append(CachedModel(repo_id, revision, sum(p.stat().st_size for p in files), folder))
    return found
