"""MusicGen models with random weights: tiny ones for pipeline checks and tests, and ones at the real
musicgen-small/medium/large shapes for performance work.

They are built once into the model cache with ``save_pretrained`` in the Hugging Face cache layout
(``hub/models--composer-tiny--musicgen-small/snapshots/<rev>/`` plus ``refs/main``) and then loaded
through exactly the same ``from_pretrained`` path as real weights. Their output is noise.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from composer.engine.catalog import MODELS, RANDOM_REPOS, TINY_REPOS
from composer.engine.hf import quiet_transformers, repo_folder

# decoder (hidden, layers, heads, ffn) per size: "small" and "medium" differ so tests see two models
TINY_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "small": (32, 2, 4, 64),
    "medium": (64, 3, 4, 128),
    "large": (96, 4, 4, 192),
}
# real decoder shapes (hidden, layers, heads, ffn): see MUSICGEN_NOTES / the published configs
REAL_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "small": (1024, 24, 16, 4096),
    "medium": (1536, 48, 24, 6144),
    "large": (2048, 48, 32, 8192),
}
TINY_VERSION = "2"

_CORPUS_WORDS = """
industrial ebm techno house deep acid minimal dub jazz noir modal ambient drone glitch experimental
musique concrete tape collage bpm tempo beat kick snare hat hihat clap cymbal ride percussion drums
bass bassline sub synth synthesizer analog digital pad pads chord chords stab stabs lead melody
piano rhodes organ strings saxophone trumpet guitar upright walking brushed sequence sequenced
distorted dark warm cold bright slow fast driving hypnotic melancholic calm energetic ominous reverb
delay echo filter sweep riser noise texture field recording minor major key of in with and no the a
an vocals singing four floor swing groove club night evolving layered sparse dense transition
continue leading into section intro outro build drop break
""".split()  # noqa: SIM905 (a word list reads better as prose)


def _revision(kind: str, alias: str) -> str:
    return hashlib.sha1(f"composer-{kind}-{TINY_VERSION}-{alias}".encode()).hexdigest()


def ensure_synthetic_model(kind: str, alias: str, hub_cache: Path, rebuild: bool = False) -> str:
    """Build the ``kind`` ("tiny" or "random") model for ``alias`` unless it is cached; return its repo id.

    Args:
        rebuild: build it again even when it is there (``compose models pull`` repairs a damaged one).

    Raises:
        KeyError: unknown alias or kind.
    """
    repo_id = {"tiny": TINY_REPOS, "random": RANDOM_REPOS}[kind][alias]
    folder = repo_folder(hub_cache, repo_id)
    rev = _revision(kind, alias)
    snapshot = folder / "snapshots" / rev
    if rebuild and snapshot.is_dir() and not snapshot.is_symlink():
        shutil.rmtree(snapshot)
    if (snapshot / "config.json").is_file() and (folder / "refs" / "main").is_file():
        return repo_id
    (folder / "snapshots").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=folder / "snapshots"))
    try:
        model, processor = build_model(kind, alias)
        _save(model, processor, tmp)
        (tmp / "COMPOSER_RANDOM_WEIGHTS.txt").write_text("Random weights: output is noise, for checks only.\n")
        try:
            os.rename(tmp, snapshot)  # atomic: a half-built snapshot is never visible
        except OSError:
            if not (snapshot / "config.json").is_file():  # lost a race with another builder? fine if complete
                raise
        refs = folder / "refs"
        refs.mkdir(exist_ok=True)
        ref_tmp = refs / f".main.{os.getpid()}"
        ref_tmp.write_text(rev)
        os.replace(ref_tmp, refs / "main")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return repo_id


def _save(model: Any, processor: Any, folder: Path) -> None:
    """``save_pretrained`` both into ``folder``; safetensors' own error for a full or failing disk comes
    back as the OSError it wraps (so callers report it like any other write: one line, exit 73/74)."""
    from safetensors import SafetensorError

    try:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    except SafetensorError as exc:
        found = re.search(r"os error (\d+)", str(exc))
        code = int(found.group(1)) if found else errno.EIO
        raise OSError(code, os.strerror(code), str(folder.parent.parent)) from exc


def _tokenizer() -> Any:
    """A T5 tokenizer with a 300-piece unigram vocabulary trained on music words and tempo numbers."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    trainer_tok = Tokenizer(models.Unigram())
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    lines = [" ".join(_CORPUS_WORDS[i : i + 12]) for i in range(0, len(_CORPUS_WORDS), 3)]
    trainer_tok.train_from_iterator(lines + [str(n) for n in range(60, 200)], trainer)
    vocab = [(tok, score) for tok, score in json.loads(trainer_tok.to_str())["model"]["vocab"]]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


def build_model(
    kind: str, alias: str, decoder: tuple[int, int, int, int] | None = None, seed: int = 0
) -> tuple[Any, Any]:
    """A random-weight MusicGen (transformers model, processor) of the ``kind`` and ``alias`` shape.

    Args:
        decoder: (hidden, layers, heads, ffn) instead of the alias's decoder shape (tests: the real
            widths of musicgen-small with two layers, beside the tiny text encoder and codec).
        seed: added to the weights' seed.
    """
    import torch
    from transformers import (
        EncodecConfig,
        EncodecFeatureExtractor,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        MusicgenMelodyConfig,
        MusicgenMelodyDecoderConfig,
        MusicgenMelodyForConditionalGeneration,
        MusicgenProcessor,
        T5Config,
    )

    quiet_transformers()
    tokenizer = _tokenizer()
    vocab_size = tokenizer.vocab_size

    tiny = kind == "tiny"
    info = MODELS[alias]
    hidden, layers, heads, ffn = decoder or (TINY_SHAPES if tiny else REAL_SHAPES)[info.size]
    # random kind: T5-base text encoder and the 32 kHz EnCodec of the published musicgen-* checkpoints
    t5: dict[str, Any] = {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4}
    codec_shape: dict[str, Any] = {"num_filters": 4, "hidden_size": 16, "codebook_dim": 16, "num_lstm_layers": 1}
    if not tiny:
        t5 = {"d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12, "num_heads": 12}
        codec_shape = {"num_filters": 64, "hidden_size": 128, "codebook_dim": 128, "num_lstm_layers": 2}
    text = T5Config(  # type: ignore[call-arg]
        vocab_size=vocab_size, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **t5
    )
    codec = EncodecConfig(
        sampling_rate=32000, audio_channels=1, upsampling_ratios=[8, 5, 4, 4], codebook_size=2048,
        target_bandwidths=[2.2], normalize=False, chunk_length_s=None, overlap=None, **codec_shape,
    )  # fmt: skip
    shape: dict[str, Any] = {
        "vocab_size": 2048, "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "ffn_dim": ffn, "num_codebooks": info.codebooks, "audio_channels": info.channels,
        "max_position_embeddings": 2048,
    }  # fmt: skip
    if info.melody:  # the chroma (235 frames) and the text are prepended to the codes: no cross-attention
        config: Any = MusicgenMelodyConfig(
            text_encoder=text, audio_encoder=codec, decoder=MusicgenMelodyDecoderConfig(**shape),
            num_chroma=12, chroma_length=235,
        )  # fmt: skip
        model_class: Any = MusicgenMelodyForConditionalGeneration
    else:
        config = MusicgenConfig(text_encoder=text, audio_encoder=codec, decoder=MusicgenDecoderConfig(**shape))
        model_class = MusicgenForConditionalGeneration
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234 + len(alias) + seed)
        model = model_class(config).eval()
        # EnCodec codebooks start as zero buffers (real ones are learned by k-means): give them
        # random entries, or every code would decode to the same sound.
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
        if info.melody:  # at the default init the chroma barely moves a small model: make it matter
            model.audio_enc_to_dec_proj.weight.data.normal_(0.0, 1.0)
    model.generation_config.do_sample = True
    model.generation_config.guidance_scale = 3.0
    model.generation_config.top_k = 250
    model.generation_config.max_length = 1503
    if info.melody:  # saved as the tokenizer alone: the melody processor needs torchaudio (see engine.chroma)
        return model, tokenizer
    processor = MusicgenProcessor(EncodecFeatureExtractor(feature_size=1, sampling_rate=32000), tokenizer)
    return model, processor
