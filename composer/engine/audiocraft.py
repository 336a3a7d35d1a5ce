"""MusicGen weights as audiocraft saves them, found where audiocraft puts them and converted once.

audiocraft keeps a model as two pickled files: ``state_dict.bin`` (the language model, its training
config as YAML under ``xp.cfg``) and ``compression_state_dict.bin`` (EnCodec, or only the name of a
pretrained one). It downloads them into ``AUDIOCRAFT_CACHE_DIR`` laid out as a Hugging Face hub cache
(or the hub cache itself), and a fine-tune exported by ``export_lm``/``export_encodec`` is a folder
holding the same two files. The text encoder is not in them: audiocraft loads the T5 that ``xp.cfg``
names (``t5-base``) from the hub cache, and so does composer.

:func:`convert` reads them with ``torch.load(weights_only=True)`` (nothing but tensors and plain
data), maps every tensor to the transformers MusicGen layout composer's engine runs (the fused
attention projections split into q/k/v, audiocraft's names renamed, EnCodec's SEANet and residual
quantizer keys, weight norm kept as weight norm), takes every shape from ``xp.cfg`` and the tensors,
and writes a transformers checkpoint into ``<cache>/composer-converted/<hash>/`` keyed by the source
files' contents: later loads are ordinary ``from_pretrained`` loads, and a changed fine-tune is
converted again. A setting composer cannot honour is refused naming its ``xp.cfg`` field.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pickle
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.engine.content_index import file_hash, lookup, remember
from composer.engine.hf import hub_snapshot, quiet_transformers, repo_folder
from composer.errors import ModelLoadingError
from composer.fsutil import atomic_write_text, json_text

if TYPE_CHECKING:
    import torch

    from composer.settings import Settings

log = logging.getLogger(__name__)

LM_FILE = "state_dict.bin"
CODEC_FILE = "compression_state_dict.bin"
CONVERTED = "composer-converted"  # folder in the model cache holding converted checkpoints
CONVERT_VERSION = 1  # bumped when a conversion written before would now be written otherwise
T5_DIMS = {"t5-small": 512, "t5-base": 768, "t5-large": 1024, "t5-3b": 1024, "t5-11b": 1024,
           "google/flan-t5-small": 512, "google/flan-t5-base": 768, "google/flan-t5-large": 1024}  # fmt: skip


@dataclass(frozen=True)
class Found:
    """An audiocraft model on disk."""

    folder: Path  # holds state_dict.bin and compression_state_dict.bin
    where: str  # how it was found: "AUDIOCRAFT_CACHE_DIR", "hub cache" or "folder"


# -- finding ---------------------------------------------------------------------------------------
def _snapshot(cache: Path, repo_id: str) -> Path | None:
    """The snapshot folder of ``repo_id`` in a hub-layout cache holding an audiocraft LM, or None."""
    repo = repo_folder(cache, repo_id)
    named = hub_snapshot(cache, repo_id)
    candidates = [named] if named is not None else []
    if (repo / "snapshots").is_dir():  # hf_hub_download by revision leaves no ref: any complete snapshot
        candidates += sorted((repo / "snapshots").iterdir())
    return next((c for c in candidates if (c / LM_FILE).is_file()), None)


def _places(settings: Settings) -> list[tuple[Path, str]]:
    """The hub-layout caches audiocraft's files are looked for in, in order, with their names."""
    places = [(settings.audiocraft_cache, "AUDIOCRAFT_CACHE_DIR"), (settings.hub_cache, "hub cache")]
    return [(cache, where) for cache, where in places if cache is not None]


def find(repo_id: str, settings: Settings) -> Found | None:
    """Where audiocraft keeps ``repo_id``: ``AUDIOCRAFT_CACHE_DIR`` (hub layout), then the hub cache."""
    for cache, where in _places(settings):
        if (snapshot := _snapshot(cache, repo_id)) is not None:
            return Found(snapshot, where)
    return None


def find_folder(path: Path) -> Found:
    """A local folder holding an audiocraft model (a fine-tune).

    Raises:
        ModelLoadingError: the folder or its language model file is missing.
    """
    if not path.is_dir():
        raise ModelLoadingError(f"{path}: no such model folder")
    if not (path / LM_FILE).is_file():
        raise ModelLoadingError(f"{path}: no {LM_FILE} in this folder (an audiocraft model has {LM_FILE} and "
                                f"{CODEC_FILE}; a transformers one has config.json)")  # fmt: skip
    return Found(path.resolve(), "folder")


def listed(settings: Settings) -> list[tuple[str, Found]]:
    """Every audiocraft model in the audiocraft and hub caches: (repo id, where)."""
    out: list[tuple[str, Found]] = []
    for cache, where in _places(settings):
        for repo in sorted(cache.glob("models--*")) if cache.is_dir() else []:
            repo_id = repo.name[len("models--") :].replace("--", "/", 1)
            if (snapshot := _snapshot(cache, repo_id)) is not None and repo_id not in [r for r, _ in out]:
                out.append((repo_id, Found(snapshot, where)))
    return out


# -- reading ---------------------------------------------------------------------------------------
def read_package(path: Path) -> dict[str, Any]:
    """One of audiocraft's ``.bin`` files, loaded with ``weights_only=True`` (no code runs).

    Raises:
        ModelLoadingError: missing, truncated, not a torch file, or holding more than tensors and plain data.
    """
    import torch

    try:
        package = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelLoadingError(f"{path}: missing") from None
    except pickle.UnpicklingError as exc:  # weights_only refused a class (code would run), or not a pickle
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found:
            raise ModelLoadingError(f"{path}: refused: it holds more than tensors and plain data "
                                    f"(a {found.group(1)} object, which would run code to load)") from None  # fmt: skip
        raise ModelLoadingError(f"{path}: unreadable (truncated or damaged?): not a torch file") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:  # truncated zip, bad magic, short read
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadingError(f"{path}: unreadable (truncated or damaged?): {first[:200]}") from None
    if not isinstance(package, dict):
        raise ModelLoadingError(f"{path}: not an audiocraft model file (a {type(package).__name__}, not a dict)")
    return package


def xp_config(package: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The training config (``xp.cfg``, YAML) of a package.

    Raises:
        ModelLoadingError: absent or not YAML.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    text = package.get("xp.cfg")
    if isinstance(text, dict):
        return text
    if not isinstance(text, str):
        raise ModelLoadingError(f"{path}: no xp.cfg in this file (not an exported audiocraft model)")
    try:
        data = YAML(typ="safe", pure=True).load(StringIO(text))
    except YAMLError as exc:
        raise ModelLoadingError(f"{path}: xp.cfg is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ModelLoadingError(f"{path}: xp.cfg is not a mapping")
    return data


def _get(cfg: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _require(cfg: Mapping[str, Any], path: Path, dotted: str, ok: Any, what: str) -> Any:
    """``xp.cfg``'s value at ``dotted``; refused (naming the field) unless ``ok(value)``."""
    value = _get(cfg, dotted)
    if not ok(value):
        raise ModelLoadingError(f"{path}: xp.cfg {dotted}: {value!r} is not supported ({what})")
    return value


# -- the language model ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LMFacts:
    """What the conversion takes from ``xp.cfg`` and the tensors."""

    hidden: int
    heads: int
    layers: int
    ffn: int
    codebooks: int
    card: int
    channels: int
    guidance: float
    t5: str
    sample_rate: int
    chroma_length: int = 0  # melody models: chroma frames prepended before the text (235 for 30 s); 0: text only


def lm_facts(cfg: Mapping[str, Any], state: Mapping[str, Any], path: Path) -> LMFacts:
    """Check that composer can run this LM exactly and read its shape (``xp.cfg`` and the tensors).

    Raises:
        ModelLoadingError: a setting composer cannot honour, naming its ``xp.cfg`` field.
    """
    req = lambda dotted, ok, what: _require(cfg, path, dotted, ok, what)  # noqa: E731
    req("lm_model", lambda v: v == "transformer_lm", "composer runs MusicGen's transformer_lm")
    t5, chroma_length = _conditioning(cfg, path)
    lm = "transformer_lm."
    for field, ok, what in (
        ("norm_first", lambda v: v is True, "pre-norm layers"),
        ("norm", lambda v: v in (None, "layer_norm"), "LayerNorm"),
        ("activation", lambda v: v in (None, "gelu"), "GELU"), ("positional_embedding", lambda v: v in (None, "sin"),
        "sinusoidal positions"), ("positional_scale", lambda v: v in (None, 1, 1.0), "positions at scale 1"),
        ("bias_ff", lambda v: not v, "no bias"), ("bias_attn", lambda v: not v, "no bias"),
        ("bias_proj", lambda v: not v, "no bias"), ("layer_scale", lambda v: v is None, "no layer scale"),
        ("qk_layer_norm", lambda v: not v, "no q/k norm"), ("qk_layer_norm_cross", lambda v: not v, "no q/k norm"),
        ("kv_repeat", lambda v: v in (None, 1), "one key/value head per head"), ("xpos", lambda v: not v, "no xpos"),
        ("past_context", lambda v: v is None, "attention over the whole past"),
        ("causal", lambda v: v in (None, True), "a causal LM"),
    ):  # fmt: skip
        req(lm + field, ok, what)
    rate = req("sample_rate", lambda v: v == 32000, "MusicGen's 32 kHz EnCodec")
    channels = req("channels", lambda v: v in (None, 1, 2), "mono or stereo")
    channels = int(channels or 1)
    n_q = int(req(lm + "n_q", lambda v: isinstance(v, int) and v > 0, "a number of codebooks"))
    delays = [0, 1, 2, 3] if channels == 1 else [0, 0, 1, 1, 2, 2, 3, 3]
    req("codebooks_pattern.modeling", lambda v: v == "delay", "MusicGen's delay pattern")
    req("codebooks_pattern.delay.delays", lambda v: list(v or []) == delays, f"the delays {delays}")
    for field in ("codebooks_pattern.delay.flatten_first", "codebooks_pattern.delay.empty_initial"):
        req(field, lambda v: not v, "0")
    if channels == 2:
        req("interleave_stereo_codebooks.use", lambda v: v is True, "stereo as interleaved codebooks")
        req("interleave_stereo_codebooks.per_timestep", lambda v: not v, "per codebook")
    req(lm + "n_q", lambda v: v == len(delays), f"{len(delays)} codebooks for {channels} channel(s)")
    numbered = (re.match(r"transformer\.layers\.(\d+)\.", k) for k in state)
    layers = 1 + max((int(m.group(1)) for m in numbered if m), default=-1)
    try:
        card, hidden = (int(n) for n in state["emb.0.weight"].shape)
        ffn = int(state["transformer.layers.0.linear1.weight"].shape[0])
        t5_dim = int(state["condition_provider.conditioners.description.output_proj.weight"].shape[1])
        if chroma_length and tuple(state[f"{CHROMA_PROJ}.weight"].shape) != (hidden, CHROMA_BINS):
            raise ModelLoadingError(f"{path}: {CHROMA_PROJ}.weight is {tuple(state[f'{CHROMA_PROJ}.weight'].shape)}, "
                                    f"not ({hidden}, {CHROMA_BINS})")  # fmt: skip
    except KeyError as exc:
        raise ModelLoadingError(f"{path}: no tensor {exc.args[0]} (not a MusicGen language model?)") from None
    heads = int(req(lm + "num_heads", lambda v: isinstance(v, int) and v > 0 and hidden % v == 0, "dividing dim"))
    if layers != _get(cfg, lm + "num_layers") or card - 1 != _get(cfg, lm + "card") or t5_dim != T5_DIMS[t5]:
        raise ModelLoadingError(f"{path}: the tensors ({layers} layers, {card - 1} codes, text {t5_dim} wide) do "
                                f"not match xp.cfg transformer_lm.num_layers/card or {t5}")  # fmt: skip
    guidance = float(_get(cfg, "classifier_free_guidance.inference_coef", 3.0))
    return LMFacts(hidden, heads, layers, ffn, n_q, card - 1, channels, guidance, t5, int(rate), chroma_length)


CHROMA_PROJ = "condition_provider.conditioners.self_wav.output_proj"
CHROMA_BINS = 12


def _conditioning(cfg: Mapping[str, Any], path: Path) -> tuple[str, int]:
    """The T5 the text conditioner names and, for a melody model, its chroma length (else 0).

    A text model cross-attends to the text; a melody model prepends the chroma of its reference and the
    text (audiocraft's provider fuses the text first, so the chroma ends up in front, as transformers
    builds it). The chroma must be the one composer computes: 12 one-hot pitch classes from a
    16384-point FFT every 4096 samples at 32 kHz (:mod:`composer.engine.chroma`).

    Raises:
        ModelLoadingError: a conditioning composer cannot honour, naming its ``xp.cfg`` field.
    """
    req = lambda dotted, ok, what: _require(cfg, path, dotted, ok, what)  # noqa: E731
    conditioners = req("conditioners", lambda v: isinstance(v, Mapping) and set(v) in ({"description"},
                       {"description", "self_wav"}), "text (description), and for a melody model self_wav")  # fmt: skip
    req("conditioners.description.model", lambda v: v == "t5", "composer's text conditioner is T5")
    t5 = req("conditioners.description.t5.name", lambda v: v in T5_DIMS, f"one of {', '.join(T5_DIMS)}")
    req("fuser.cross_attention_pos_emb", lambda v: not v, "no positional embedding on the text")
    for field in ("fuser.sum", "fuser.input_interpolate"):
        req(field, lambda v: not v, "conditions prepended or cross-attended")
    if "self_wav" not in conditioners:
        req("fuser.cross", lambda v: list(v or []) == ["description"], "text through cross-attention")
        req("fuser.prepend", lambda v: not v, "text through cross-attention only")
        return str(t5), 0
    req("fuser.cross", lambda v: not v, "a melody model prepends its conditions")
    req("fuser.prepend", lambda v: sorted(v or []) == ["description", "self_wav"], "chroma and text prepended")
    stem = "conditioners.self_wav."
    req(stem + "model", lambda v: v == "chroma_stem", "a melody's chroma (chroma_stem)")
    req(stem + "chroma_stem.n_chroma", lambda v: v == CHROMA_BINS, f"{CHROMA_BINS} pitch classes")
    req(stem + "chroma_stem.radix2_exp", lambda v: v == 14, "a 16384-point FFT, as composer's chroma")
    req(stem + "chroma_stem.argmax", lambda v: v is True, "one-hot chroma")
    for field in ("nfft", "winlen", "winhop"):
        req(stem + "chroma_stem." + field, lambda v: v is None, "the FFT and hop radix2_exp gives")
    req(stem + "chroma_stem.sample_rate", lambda v: v in (None, 32000, "${sample_rate}"), "32 kHz")
    duration = req("dataset.segment_duration", lambda v: isinstance(v, int | float) and v > 0, "the training length")
    return str(t5), int(duration * 32000) // 4096 + 1  # chroma frames of the training length (centred STFT)


LM_RENAMES = (  # audiocraft name -> transformers name (as transformers' own conversion script renames)
    (r"^emb\.(\d+)\.", r"decoder.model.decoder.embed_tokens.\1."),
    (r"^transformer\.layers\.", "decoder.model.decoder.layers."),
    (r"\.cross_attention\.", ".encoder_attn."), (r"\.linear1\.", ".fc1."), (r"\.linear2\.", ".fc2."),
    (r"\.norm1\.", ".self_attn_layer_norm."), (r"\.norm_cross\.", ".encoder_attn_layer_norm."),
    (r"\.norm2\.", ".final_layer_norm."), (r"^out_norm\.", "decoder.model.decoder.layer_norm."),
    (r"^linears\.(\d+)\.", r"decoder.lm_heads.\1."),
    (r"^condition_provider\.conditioners\.description\.output_proj\.", "enc_to_dec_proj."),
    (r"^condition_provider\.conditioners\.self_wav\.output_proj\.", "audio_enc_to_dec_proj."),
)  # fmt: skip
LM_DROPPED = ("condition_provider.conditioners.self_wav.chroma.",)  # buffers of audiocraft's chroma extractor


def lm_weights(state: Mapping[str, torch.Tensor], hidden: int) -> dict[str, torch.Tensor]:
    """The LM's tensors under transformers' names: fused ``in_proj_weight`` split into q, k and v."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(LM_DROPPED):
            continue
        name = key
        for pattern, repl in LM_RENAMES:
            name = re.sub(pattern, repl, name)
        if name.endswith(".in_proj_weight"):
            stem = name[: -len("in_proj_weight")]
            for i, part in enumerate(("q_proj", "k_proj", "v_proj")):
                out[f"{stem}{part}.weight"] = value[i * hidden : (i + 1) * hidden].contiguous()
        else:
            out[name] = value
    return out


# -- EnCodec -----------------------------------------------------------------------------------------
def codec_config(cfg: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """transformers ``EncodecConfig`` arguments from an EnCodec ``xp.cfg``.

    Raises:
        ModelLoadingError: a setting transformers' EnCodec cannot run, naming its field.
    """
    req = lambda dotted, ok, what: _require(cfg, path, dotted, ok, what)  # noqa: E731
    req("compression_model", lambda v: v == "encodec", "an EnCodec model")
    req("encodec.autoencoder", lambda v: v == "seanet", "a SEANet autoencoder")
    req("encodec.quantizer", lambda v: v == "rvq", "a residual vector quantizer")
    req("seanet.activation", lambda v: v in (None, "ELU"), "ELU")
    req("seanet.activation_params.alpha", lambda v: v in (None, 1, 1.0), "ELU alpha 1")
    req("seanet.disable_norm_outer_blocks", lambda v: not v, "normalised outer blocks")
    req("seanet.decoder.final_activation", lambda v: v is None, "no final activation")
    norm = req("seanet.norm", lambda v: v in ("weight_norm", "time_group_norm"), "weight_norm or time_group_norm")
    rate = int(req("encodec.sample_rate", lambda v: v == 32000, "MusicGen's 32 kHz"))
    channels = int(req("encodec.channels", lambda v: v in (1, 2), "mono or stereo"))
    ratios = [int(r) for r in req("seanet.ratios", lambda v: isinstance(v, list) and v, "a list of ratios")]
    bins, n_q = int(_get(cfg, "rvq.bins", 1024)), int(_get(cfg, "rvq.n_q", 8))
    frame_rate = math.ceil(rate / math.prod(ratios))
    dimension = int(_get(cfg, "seanet.dimension", 128))
    return {
        "sampling_rate": rate, "audio_channels": channels, "normalize": bool(_get(cfg, "encodec.renormalize")),
        "chunk_length_s": None, "overlap": None, "hidden_size": dimension, "codebook_dim": dimension,
        "num_filters": int(_get(cfg, "seanet.n_filters", 32)),
        "num_residual_layers": int(_get(cfg, "seanet.n_residual_layers", 1)),
        "upsampling_ratios": ratios, "norm_type": norm, "kernel_size": int(_get(cfg, "seanet.kernel_size", 7)),
        "last_kernel_size": int(_get(cfg, "seanet.last_kernel_size", 7)),
        "residual_kernel_size": int(_get(cfg, "seanet.residual_kernel_size", 3)),
        "dilation_growth_rate": int(_get(cfg, "seanet.dilation_base", 2)),
        "use_causal_conv": bool(_get(cfg, "seanet.causal") or _get(cfg, "encodec.causal")),
        "pad_mode": str(_get(cfg, "seanet.pad_mode", "reflect")), "compress": int(_get(cfg, "seanet.compress", 2)),
        "num_lstm_layers": int(_get(cfg, "seanet.lstm", 2)),
        "trim_right_ratio": float(_get(cfg, "seanet.decoder.trim_right_ratio", 1.0)),
        "codebook_size": bins, "use_conv_shortcut": not _get(cfg, "seanet.true_skip", True),
        "target_bandwidths": [n_q * math.log2(bins) * frame_rate / 1000],
    }  # fmt: skip


CODEC_RENAMES = (
    (r"^(encoder|decoder)\.model\.", r"\1.layers."), (r"\.conv\.conv\.", ".conv."), (r"\.convtr\.convtr\.", ".conv."),
    (r"^quantizer\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.layers.\1.codebook."),
)  # fmt: skip


def codec_weights(state: Mapping[str, torch.Tensor], names: set[str]) -> dict[str, torch.Tensor]:
    """EnCodec's tensors under transformers' names; weight norm's ``weight_g``/``weight_v`` under whichever
    names this transformers' EnCodec uses (``names``: its state dict's keys)."""
    parametrized = any(".parametrizations.weight.original0" in n for n in names)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key
        for pattern, repl in CODEC_RENAMES:
            name = re.sub(pattern, repl, name)
        if parametrized:
            name = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", name)
            name = re.sub(r"\.weight_v$", ".parametrizations.weight.original1", name)
        out[name] = value
    return out


# -- converting --------------------------------------------------------------------------------------
def conversion_key(found: Found) -> str:
    """What a conversion is keyed by: the two files' contents (and the converter's version)."""
    parts = [f"v{CONVERT_VERSION}"]
    for name in (LM_FILE, CODEC_FILE):
        path = found.folder / name
        parts.append(file_hash(path) if path.is_file() else "-")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def t5_folder(name: str, settings: Settings) -> Path:
    """The cached snapshot of the T5 ``xp.cfg`` names, as audiocraft itself loads it (offline).

    Raises:
        ModelLoadingError: not cached, with the command that fetches it.
    """
    ids = [name] + ([f"google-t5/{name}"] if "/" not in name else [])
    for repo_id in ids:
        snapshot = hub_snapshot(settings.hub_cache, repo_id)
        if snapshot is not None and (snapshot / "config.json").is_file():
            return snapshot
    raise ModelLoadingError(f"the text encoder {name} is not in {settings.hub_cache}; fetch it with "
                            f"`compose models pull {name}` (audiocraft loads the same files)")  # fmt: skip


def _signature(found: Found) -> str:
    """The two files' paths, sizes and modification times: a conversion is looked up by this before
    their contents are hashed (hashing gigabytes on every plan would cost seconds)."""
    parts = [str(found.folder)]
    for name in (LM_FILE, CODEC_FILE):
        try:
            st = (found.folder / name).stat()
            parts.append(f"{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append("-")
    return "|".join(parts)


def _index(settings: Settings) -> Path:
    return settings.cache_dir / CONVERTED / "index.json"


def converted_revision(found: Found, settings: Settings) -> str | None:
    """``audiocraft-<key>`` when ``found`` is converted already (files unchanged since), else None."""
    key = lookup(_index(settings), _signature(found))
    done = key is not None and (settings.cache_dir / CONVERTED / key / "composer-source.json").is_file()
    return f"audiocraft-{key}" if done else None


def converted_path(revision: str, settings: Settings) -> Path:
    """The folder of a converted checkpoint from its revision (``audiocraft-<key>``)."""
    return settings.cache_dir / CONVERTED / revision.removeprefix("audiocraft-")


def convert(found: Found, settings: Settings) -> str:
    """Convert ``found`` unless it is converted already; its revision (``audiocraft-<key>``).

    Raises:
        ModelLoadingError: unreadable files, a refused setting, a missing T5 or pretrained EnCodec.
    """
    if (known := converted_revision(found, settings)) is not None:
        return known
    key = conversion_key(found)
    out = settings.cache_dir / CONVERTED / key
    if not (out / "composer-source.json").is_file():
        started = time.perf_counter()
        out.parent.mkdir(parents=True, exist_ok=True)
        work = out.parent / f".{key}.partial"
        shutil.rmtree(work, ignore_errors=True)
        try:
            _write_checkpoint(found, settings, work)
            atomic_write_text(work / "composer-source.json", json_text({
                "format": "audiocraft", "folder": str(found.folder), "where": found.where, "key": key,
                "converter": CONVERT_VERSION, "seconds": round(time.perf_counter() - started, 2)}) + "\n")  # fmt: skip
            work.rename(out)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        log.info("converted the audiocraft model in %s (%.1f s)", found.folder, time.perf_counter() - started)
    remember(_index(settings), _signature(found), key)
    return f"audiocraft-{key}"


def _write_checkpoint(found: Found, settings: Settings, out: Path) -> None:
    """Write the transformers checkpoint (config, safetensors, tokenizer, generation config) into ``out``."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, EncodecFeatureExtractor, GenerationConfig, MusicgenProcessor

    quiet_transformers()
    lm_path = found.folder / LM_FILE
    package = read_package(lm_path)
    state = package.get("best_state")
    if not isinstance(state, dict):
        raise ModelLoadingError(f"{lm_path}: no best_state in this file (not an exported audiocraft model)")
    facts = lm_facts(xp_config(package, lm_path), state, lm_path)
    weights = lm_weights(state, facts.hidden)
    codec_args, codec_state = _codec(found, settings)
    t5 = t5_folder(facts.t5, settings)
    weights.update(_t5_weights(t5))
    config, model_class = _model_config(facts, t5, codec_args)
    with torch.device("meta"):  # the names and shapes transformers expects, without building the weights
        expected = {k: tuple(v.shape) for k, v in model_class(config).state_dict().items()}
    codec_names = {k.removeprefix("audio_encoder.") for k in expected if k.startswith("audio_encoder.")}
    weights.update({f"audio_encoder.{k}": v for k, v in codec_weights(codec_state, codec_names).items()})
    _check(weights, expected, found.folder)
    out.mkdir(parents=True)
    save_file({k: v.detach().to(torch.float32).contiguous().clone() for k, v in weights.items()},
              str(out / "model.safetensors"), metadata={"format": "pt"})  # fmt: skip
    config.save_pretrained(out)
    GenerationConfig(do_sample=True, guidance_scale=facts.guidance, top_k=250, max_length=1503,
                     pad_token_id=facts.card, decoder_start_token_id=facts.card).save_pretrained(out)  # fmt: skip
    if facts.chroma_length:  # composer loads a melody model's tokenizer alone (it computes the chroma itself)
        AutoTokenizer.from_pretrained(t5).save_pretrained(out)
        return
    extractor = EncodecFeatureExtractor(feature_size=codec_args["audio_channels"], sampling_rate=facts.sample_rate)
    MusicgenProcessor(extractor, AutoTokenizer.from_pretrained(t5)).save_pretrained(out)


def _model_config(facts: LMFacts, t5: Path, codec_args: dict[str, Any]) -> tuple[Any, Any]:
    """The transformers config of the converted model and its class: MusicGen, or MusicGen Melody (the
    chroma and the text prepended instead of cross-attended)."""
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        MusicgenMelodyConfig,
        MusicgenMelodyDecoderConfig,
        MusicgenMelodyForConditionalGeneration,
        T5Config,
    )

    melody = facts.chroma_length > 0
    decoder = (MusicgenMelodyDecoderConfig if melody else MusicgenDecoderConfig)(
        vocab_size=facts.card, hidden_size=facts.hidden, num_hidden_layers=facts.layers,
        num_attention_heads=facts.heads, ffn_dim=facts.ffn, num_codebooks=facts.codebooks,
        audio_channels=facts.channels, max_position_embeddings=2048, pad_token_id=facts.card,
        bos_token_id=facts.card, activation_function="gelu", tie_word_embeddings=False,
    )  # fmt: skip
    text, codec = T5Config.from_pretrained(t5), EncodecConfig(**codec_args)
    if melody:
        config = MusicgenMelodyConfig(text_encoder=text, audio_encoder=codec, decoder=decoder, num_chroma=CHROMA_BINS,
                                      chroma_length=facts.chroma_length)  # fmt: skip
        return config, MusicgenMelodyForConditionalGeneration
    return MusicgenConfig(text_encoder=text, audio_encoder=codec, decoder=decoder), MusicgenForConditionalGeneration


def _codec(found: Found, settings: Settings) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(EncodecConfig arguments, weights) of the model's EnCodec; a pointer to a pretrained EnCodec
    (what export_pretrained_compression_model writes) is read from the transformers checkpoint it names."""
    from safetensors.torch import load_file

    path = found.folder / CODEC_FILE
    package = read_package(path)
    if "pretrained" in package:
        name = str(package["pretrained"]).removeprefix("//pretrained/")
        snapshot = hub_snapshot(settings.hub_cache, name)
        if snapshot is None or not (snapshot / "model.safetensors").is_file():
            raise ModelLoadingError(f"{path} names the pretrained EnCodec {name}, which is not in "
                                    f"{settings.hub_cache}; fetch it with `compose models pull {name}`")  # fmt: skip
        args = json.loads((snapshot / "config.json").read_text())
        keep = {k: v for k, v in args.items() if k not in ("architectures", "model_type", "transformers_version")}
        return keep, load_file(str(snapshot / "model.safetensors"))
    state = package.get("best_state")
    if not isinstance(state, dict):
        raise ModelLoadingError(f"{path}: no best_state and no pretrained name (not an exported EnCodec)")
    return codec_config(xp_config(package, path), path), state


def _t5_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The T5 encoder's tensors (``text_encoder.*``) from its cached checkpoint."""
    from transformers import T5EncoderModel

    encoder = T5EncoderModel.from_pretrained(folder, local_files_only=True)
    return {f"text_encoder.{k}": v for k, v in encoder.state_dict().items()}


def _check(weights: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], folder: Path) -> None:
    """Every tensor transformers expects is there with its shape, and nothing else is.

    Raises:
        ModelLoadingError: naming the first missing, unexpected or misshapen tensor.
    """
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if tuple(weights[k].shape) != expected[k])
    if missing or extra or wrong:
        first = (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}" if extra
                 else f"{wrong[0]} is {tuple(weights[wrong[0]].shape)}, expected {expected[wrong[0]]}")  # fmt: skip
        counts = f"{len(missing)} missing, {len(extra)} unexpected, {len(wrong)} misshapen"
        raise ModelLoadingError(f"{folder}: cannot map this audiocraft model onto MusicGen ({first}; {counts})")
