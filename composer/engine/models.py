"""The only door to MusicGen weights: :func:`load_model`.

Weights are loaded with ``from_pretrained`` from the Hugging Face cache layout under the model
cache (``<cache>/hub``). With ``HF_HUB_OFFLINE=1`` (or tiny models) nothing touches the network.
"""

from __future__ import annotations

import gc
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from composer.engine import audiocraft, local_folder
from composer.engine.catalog import MODELS, RANDOM_REPOS, TINY_REPOS, alias_of, is_known_model, is_path_model
from composer.engine.hf import hub_snapshot, quiet_transformers, repo_folder
from composer.engine.kernels import activation_dtype
from composer.engine.tiny import ensure_synthetic_model
from composer.engine.tune import TUNING_FILE, Choice, choose_kernel, isa_tag, shape_of_config, stamp
from composer.engine.types import ModelSpec
from composer.errors import ModelLoadingError
from composer.settings import Settings

if TYPE_CHECKING:
    import torch

    from composer.engine.tune import Choice, DecoderShape

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
    dtype: torch.dtype  # the LM decoder's hidden states and KV cache
    kernel: str = ""  # how its products run (composer.engine.kernels): "plain" on CUDA, else the CPU kernel
    pad: str = "whole"  # CPU kernels: how row chunks are padded (kernels.PADDINGS; composer.engine.tune probes)
    rows: int = 16  # CPU kernels: rows per chunk (composer.engine.kernels.CHUNKS)
    numerics: str = ""  # what decides its tokens besides the request: part of every cache key
    kernel_choice: dict[str, Any] = field(default_factory=dict)  # how the CPU kernel was chosen (for records)

    @property
    def tokenizer(self) -> Any:
        """The T5 tokenizer (melody checkpoints are loaded with the tokenizer alone)."""
        return getattr(self.processor, "tokenizer", self.processor)

    spec: ModelSpec = field(init=False)

    def __post_init__(self) -> None:
        self.spec = model_spec(self.model)
        if not self.kernel:
            self.kernel = "plain" if self.device.type == "cuda" else str(self.dtype).replace("torch.", "")
        if not self.numerics:
            self.numerics = f"{self.device.type}-{str(self.dtype).replace('torch.', '')}"

    @property
    def itemsize(self) -> int:
        """Bytes per element of the decoder's weights (and so of its KV cache)."""
        return 2 if str(self.dtype) in ("torch.float16", "torch.bfloat16") else 4

    def weight_bytes(self) -> int:
        """Bytes of weights resident on the model's device (each storage counted once, packed ones too)."""
        seen: dict[int, int] = {}
        for p in self.model.parameters():
            if p.device == self.device:
                storage = p.untyped_storage()
                seen[storage.data_ptr()] = storage.nbytes()
        packed = self.model.decoder.model.decoder.__dict__.get("_composer_weights", {})
        return sum(seen.values()) + sum(w.nbytes() for k, w in packed.items() if k != "plain")

    def unload(self) -> None:
        """Drop the weights and give memory back to the device."""
        self.model = None
        self.processor = None
        free_device_memory()


def model_spec(model: Any) -> ModelSpec:
    """Read a loaded MusicGen's facts from its config."""
    decoder = model.decoder.config
    codec = model.config.audio_encoder
    vocab = int(decoder.vocab_size)
    return ModelSpec(
        kind="melody" if "Melody" in type(model).__name__ else "text",
        codebooks=int(decoder.num_codebooks),
        vocab=vocab,
        pad=int(decoder.pad_token_id) if decoder.pad_token_id is not None else vocab,
        channels=int(getattr(decoder, "audio_channels", 1) or 1),
        sample_rate=int(codec.sampling_rate),
        frame_rate=int(codec.frame_rate),
        layers=int(decoder.num_hidden_layers),
        hidden=int(decoder.hidden_size),
        heads=int(decoder.num_attention_heads),
        max_positions=int(decoder.max_position_embeddings),
        chroma_length=int(getattr(model.config, "chroma_length", 0) or 0),
    )


def free_device_memory() -> None:
    """Collect garbage and return PyTorch's cached GPU memory to the driver."""

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def cuda_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs that support it (compute capability 8.0 and newer), fp16 on older ones."""
    import torch

    major, _minor = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def resolve_repo_id(name: str, settings: Settings) -> str:
    """Map a model name to the repo id to load for the configured model source.

    Raises:
        ModelLoadingError: unknown name, or no tiny stand-in for it.
    """
    if not is_known_model(name):
        raise ModelLoadingError(
            f"unknown model {name!r}; use small, medium, large, a hub repo id (ORG/NAME) or a folder (./NAME)"
        )
    if is_path_model(name):  # a folder on disk: itself, whatever the model source
        return str(Path(name).expanduser().resolve())
    if settings.model_source in ("tiny", "random"):
        alias = alias_of(name)
        if alias is None:
            raise ModelLoadingError(
                f"no {settings.model_source} stand-in for {name!r}; they exist for {', '.join(TINY_REPOS)}"
            )
        return (TINY_REPOS if settings.model_source == "tiny" else RANDOM_REPOS)[alias]
    return MODELS[name].repo_id if name in MODELS else name


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
    snapshot = hub_snapshot(hub_cache, repo_id)
    return snapshot.name if snapshot is not None and (snapshot / "config.json").is_file() else None


def _audiocraft(repo_id: str, settings: Settings) -> audiocraft.Found | None:
    """Where audiocraft's files for ``repo_id`` (a repo id, or a folder's path) are, if anywhere."""
    if repo_id.startswith("/"):
        folder = Path(repo_id)
        return audiocraft.Found(folder, "folder") if (folder / audiocraft.LM_FILE).is_file() else None
    return audiocraft.find(repo_id, settings)


def model_revision(repo_id: str, settings: Settings) -> str | None:
    """The revision to load ``repo_id`` at: the transformers snapshot in the hub cache (for a folder: its
    checkpoint, ``folder-<key>`` once hashed), else the conversion of audiocraft's files
    (``audiocraft-<key>``, once converted); None when neither is here."""
    if repo_id.startswith("/") and local_folder.is_checkpoint(Path(repo_id)):
        return local_folder.known_revision(Path(repo_id), settings)
    if not repo_id.startswith("/") and (revision := cached_revision(repo_id, settings.hub_cache)) is not None:
        return revision
    found = _audiocraft(repo_id, settings)
    return audiocraft.converted_revision(found, settings) if found is not None else None


def snapshot_dir(repo_id: str, revision: str, settings: Settings) -> Path:
    """The folder holding the transformers files of ``repo_id`` at ``revision``."""
    if revision.startswith(local_folder.PREFIX):  # a checkpoint used where it is
        return Path(repo_id)
    if revision.startswith("audiocraft-"):
        return audiocraft.converted_path(revision, settings)
    return repo_folder(settings.hub_cache, repo_id) / "snapshots" / revision


def load_model(name: str, settings: Settings) -> LoadedModel:
    """Load a MusicGen checkpoint.

    On CUDA the LM decoder runs in bf16 where the GPU supports it (Ampere and newer, the RTX 3080
    included), else fp16; EnCodec in fp16; T5 stays in fp32 (it overflows in fp16). On the
    CPU the LM decoder runs with the kernel :mod:`composer.engine.tune` measured to be fastest on this
    machine (or ``COMPOSER_CPU_DTYPE``), and T5 and EnCodec stay in fp32.

    Args:
        name: small, medium, large or a hub repo id.
        settings: cache folder, offline flag, model source, device.

    Raises:
        ModelLoadingError: the weights are not cached and cannot be fetched, or are unreadable.
    """
    repo_id = resolve_repo_id(name, settings)
    revision = ensure_available(name, settings)
    kind = architecture(name, repo_id, revision, settings)

    import torch
    from transformers import (
        AutoTokenizer,
        MusicgenForConditionalGeneration,
        MusicgenMelodyForConditionalGeneration,
        MusicgenProcessor,
    )

    device = pick_device(settings.device)
    kernel, pad, rows, numerics, note = "plain", "whole", 16, "", {}
    if device.type == "cuda":
        dtype = cuda_dtype(device) if settings.cuda_dtype == "auto" else getattr(torch, settings.cuda_dtype)
        numerics = cuda_numerics(device, dtype)
    else:
        choice = cpu_choice(read_shape(repo_id, revision, settings), settings)
        if choice.kernel == "auto":  # an unreadable config: no shape to tune for
            log.warning("%s: no decoder shape in its config; running float32", repo_id)
            choice = replace(choice, kernel="float32")
        kernel, pad, rows, numerics = choice.kernel, choice.pad, choice.rows, choice.numerics
        note = stamp(choice)
        dtype = activation_dtype(kernel)
    quiet_transformers()
    where: dict[str, Any] = {"cache_dir": settings.hub_cache, "local_files_only": True, "revision": revision}
    source: str = repo_id
    if revision.startswith(("audiocraft-", local_folder.PREFIX)):  # converted audiocraft files, or a model's folder
        where, source = {"local_files_only": True}, str(snapshot_dir(repo_id, revision, settings))
    try:
        model_class = MusicgenMelodyForConditionalGeneration if kind == "melody" else MusicgenForConditionalGeneration
        model = model_class.from_pretrained(
            source,
            **where,
            attn_implementation="eager",  # SDPA + guidance gave NaNs (transformers#31189)
        )
        # melody checkpoints' processor needs torchaudio for its chroma: composer computes the chroma
        # itself (composer.engine.chroma) and only needs the tokenizer
        processor = (
            AutoTokenizer.from_pretrained(source, **where)
            if kind == "melody"
            else MusicgenProcessor.from_pretrained(source, **where)
        )
    except Exception as exc:  # OSError, SafetensorError, ValueError...: the user needs one line
        raise _unloadable(name, repo_id, revision, settings, exc) from exc
    model = cast(Any, model).eval()
    model.decoder.to(device=device, dtype=dtype)
    model.audio_encoder.to(device=device, dtype=torch.float16 if device.type == "cuda" else torch.float32)
    for projection in ("enc_to_dec_proj", "audio_enc_to_dec_proj"):
        if hasattr(model, projection):
            getattr(model, projection).to(device=device, dtype=dtype)
    # T5 stays in fp32 (it overflows in fp16) and, on a GPU, on the CPU: it runs once per segment,
    # and keeping its ~0.4 GB off the card leaves that memory to the decoder and EnCodec.
    _keep_text_encoder_on_cpu(model, device)
    log.info("loaded %s@%s on %s (%s)", repo_id, revision[:10], device, dtype)
    if settings.engine == "transformers":  # transformers' own products: other rounding, split across threads
        numerics = reference_numerics(device, dtype)
    return LoadedModel(name, repo_id, revision, settings.model_source, model, processor, device, dtype, kernel, pad,
                       rows, numerics, note)  # fmt: skip


def cuda_numerics(device: torch.device, dtype: torch.dtype) -> str:
    """The fast loop on a GPU: its type and the GPU's architecture, e.g. ``cuda-bfloat16-sm86`` (another
    architecture runs other kernels)."""
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return f"cuda-{str(dtype).replace('torch.', '')}-sm{major}{minor}"


def reference_numerics(device: torch.device, dtype: torch.dtype) -> str:
    """transformers' ``generate`` rounds with whatever BLAS picks for the CPU, its build and the
    thread count (CPU), e.g. ``cpu-float32-reference-amx-t2``."""
    import torch

    name = f"{device.type}-{str(dtype).replace('torch.', '')}-reference"
    return f"{name}-{isa_tag()}-t{torch.get_num_threads()}" if device.type == "cpu" else name


def read_shape(repo_id: str, revision: str | None, settings: Settings) -> DecoderShape | None:
    """The decoder shape of a cached checkpoint (None when it is not cached or unreadable)."""

    if revision is None:
        return None
    config = snapshot_dir(repo_id, revision, settings) / "config.json"
    try:
        return shape_of_config(json.loads(config.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


_CHOICES: dict[tuple[Any, ...], Choice] = {}


def cpu_choice(shape: DecoderShape | None, settings: Settings) -> Choice:
    """The CPU kernel for a decoder shape (tuned once per machine, see composer.engine.tune)."""

    if shape is None:  # not cached yet: only an explicit choice is known
        return Choice(settings.cpu_dtype, True, "whole", 16, "set", {})
    # The tuning file's identity is part of the key: a `compose models tune` here or in another process
    # (a cluster's actors read the file) replaces the choice for every later plan and load.
    try:
        st = (settings.cache_dir / TUNING_FILE).stat()
        written: tuple[int, ...] = (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        written = ()
    key = (shape, settings.cpu_dtype, str(settings.cache_dir), written)
    if key not in _CHOICES:
        _CHOICES[key] = choose_kernel(shape, settings)
    return _CHOICES[key]


def numerics_for(name: str, settings: Settings) -> str:
    """What decides a segment's tokens besides its request, for cache keys: device, type, kernel.

    On the CPU this is the tuned (or set) kernel, e.g. ``cpu-bfloat16-r16-k1-amx-dnnl3.12``; on CUDA
    the type and the GPU's architecture, ``cuda-bfloat16-sm86``.
    A kernel whose rounding depends on the thread count carries it (``-t8``), as does the reference
    engine on the CPU.
    """
    import torch

    device = pick_device(settings.device)
    if device.type == "cuda":
        try:
            dtype = cuda_dtype(device) if settings.cuda_dtype == "auto" else getattr(torch, settings.cuda_dtype)
            fast = cuda_numerics(device, dtype)
        except (RuntimeError, AssertionError):  # no usable CUDA here after all: the load will say so
            return "cuda-auto"
        return reference_numerics(device, dtype) if settings.engine == "transformers" else fast
    repo_id = resolve_repo_id(name, settings)
    choice = cpu_choice(read_shape(repo_id, model_revision(repo_id, settings), settings), settings)
    if choice.kernel == "auto":
        return "cpu-auto"  # the checkpoint is not here yet: its key changes once it is (as its revision does)
    if settings.engine == "transformers":
        return reference_numerics(device, activation_dtype(choice.kernel))
    return choice.numerics


ARCHITECTURES = {"musicgen": "text", "musicgen_melody": "melody"}  # config model_type -> what composer runs


def architecture(name: str, repo_id: str, revision: str, settings: Settings) -> str:
    """What kind of MusicGen a cached checkpoint is ("text" or "melody"), from its config.json.

    Raises:
        ModelLoadingError: the checkpoint is not a MusicGen composer can run.
    """

    config = snapshot_dir(repo_id, revision, settings) / "config.json"
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelLoadingError(f"{repo_id}: unreadable config ({config}): {exc}") from None
    if model_type not in ARCHITECTURES:
        raise ModelLoadingError(
            f"model {name!r} ({repo_id}) is a {model_type!r} checkpoint; composer runs MusicGen text models "
            f"(small, medium, large, stereo-*) and melody models (melody, stereo-melody, stereo-melody-large)"
        )
    return ARCHITECTURES[model_type]


def ensure_available(name: str, settings: Settings) -> str:
    """Make sure the weights for ``name`` are in the cache (build tiny ones, download real ones).

    Returns:
        The cached snapshot revision.

    Raises:
        ModelLoadingError: offline and not cached, or the download failed.
    """
    repo_id = resolve_repo_id(name, settings)
    if is_path_model(name) and local_folder.is_checkpoint(Path(repo_id)):  # save_pretrained's files: used in place
        return local_folder.revision(Path(repo_id), settings)
    if is_path_model(name):  # a fine-tune's folder: audiocraft's files, converted once
        return audiocraft.convert(audiocraft.find_folder(Path(repo_id)), settings)
    if settings.model_source in ("tiny", "random"):
        ensure_synthetic_model(settings.model_source, alias_of(name) or name, settings.hub_cache)
    revision = cached_revision(repo_id, settings.hub_cache)
    if revision is None and (found := audiocraft.find(repo_id, settings)) is not None:
        revision = audiocraft.convert(found, settings)  # audiocraft's files: converted once (later: looked up)
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


def _unloadable(name: str, repo_id: str, revision: str, settings: Settings, exc: Exception) -> ModelLoadingError:
    """One line for a checkpoint transformers could not load, with what to do about it."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if revision.startswith(local_folder.PREFIX):
        return ModelLoadingError(f"could not load the model in {repo_id}: {first}; a model folder needs what "
                                 "save_pretrained writes for the model and for its processor")  # fmt: skip
    return ModelLoadingError(f"could not load {repo_id} from {settings.hub_cache}: {first}; "
                             f"re-fetch it with `compose models pull {alias_of(name) or name}`")  # fmt: skip


def _keep_text_encoder_on_cpu(model: Any, device: torch.device) -> None:
    """Run T5 in fp32 on the CPU whatever the device: inputs move to it, its output moves to ``device``
    in the dtype of what reads it next (the text projection), whatever that is cast to later."""
    import torch

    text_encoder = model.text_encoder
    text_encoder.to(device="cpu", dtype=torch.float32)
    reader = model.enc_to_dec_proj if hasattr(model, "enc_to_dec_proj") else model.decoder

    def to_cpu(value: Any) -> Any:
        return value.to("cpu") if isinstance(value, torch.Tensor) else value

    def before(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return tuple(to_cpu(a) for a in args), {k: to_cpu(v) for k, v in kwargs.items()}

    def after(_module: Any, _args: Any, _kwargs: Any, output: Any) -> Any:
        dtype = next(reader.parameters()).dtype
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
        raise ModelLoadingError(
            f"could not download {repo_id} into {settings.hub_cache} ({first}); where there is internet run "
            f"`compose models pull {alias_of(repo_id) or repo_id}` (and copy the model cache here), or try the "
            "pipeline without weights with --models tiny"
        ) from exc


@dataclass(frozen=True)
class CachedModel:
    """One model found in the cache."""

    repo_id: str
    revision: str
    size_bytes: int
    path: Path
    format: str = "transformers"  # or "audiocraft" (state_dict.bin + compression_state_dict.bin)


def list_cached(settings: Settings) -> list[CachedModel]:
    """MusicGen checkpoints present in the model cache, with their sizes on disk: transformers
    checkpoints in the hub cache, then audiocraft's files (``AUDIOCRAFT_CACHE_DIR``, the hub cache)
    for repos that have no transformers checkpoint."""
    found: list[CachedModel] = []
    for folder in sorted(settings.hub_cache.glob("models--*")) if settings.hub_cache.is_dir() else []:
        repo_id = folder.name[len("models--") :].replace("--", "/", 1)
        revision = cached_revision(repo_id, settings.hub_cache)
        if revision is None:
            continue
        # blobs hold the bytes for real downloads; tiny models are written straight into the snapshot
        files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
        found.append(CachedModel(repo_id, revision, sum(p.stat().st_size for p in files), folder))
    native = {m.repo_id for m in found}
    for repo_id, where in audiocraft.listed(settings):
        if repo_id not in native:
            size = sum((where.folder / f).stat().st_size for f in (audiocraft.LM_FILE, audiocraft.CODEC_FILE)
                       if (where.folder / f).is_file())  # fmt: skip
            revision = audiocraft.converted_revision(where, settings) or "not converted yet"
            found.append(CachedModel(repo_id, revision, size, where.folder, "audiocraft"))
    return found
