"""Build tiny MusicGen models with audiocraft itself and record what audiocraft computes with them.

This runs in a separate environment (audiocraft 1.3 pins torch 2.1, which composer cannot use), once;
its output is committed beside it and read by tests/engine/test_audiocraft.py:

    python3.11 -m venv /tmp/acenv
    /tmp/acenv/bin/pip install torch==2.1.0 torchaudio==2.1.0 'numpy<2' 'transformers==4.44.2' \
        omegaconf einops julius sentencepiece hydra-core flashy num2words 'huggingface_hub<0.25' \
        soundfile av spacy librosa torchmetrics protobuf
    /tmp/acenv/bin/pip install --no-deps audiocraft==1.3.0
    PYTHONPATH=tests/data/audiocraft/stub /tmp/acenv/bin/python tests/data/audiocraft/make_data.py

``stub/xformers`` stands in for xformers, which audiocraft imports at module level: the models built
here use audiocraft's own attention (``custom: true``, ``memory_efficient: false``), which calls
only ``xformers.ops.unbind`` (the stand-in is ``torch.unbind``, which it wraps).

Written (into this folder):
    t5-base/           a tiny random T5 encoder saved under the name audiocraft asks for ("t5-base":
                       768 wide, as audiocraft's T5Conditioner requires), with a sentencepiece vocabulary
    mono/              state_dict.bin, compression_state_dict.bin (export_lm / export_encodec)
    stereo/            state_dict.bin (8 interleaved codebooks), compression_state_dict.bin (a pointer
                       to a pretrained EnCodec, export_pretrained_compression_model)
    reference.pt       what audiocraft computed (see ``main``)
    melody/            state_dict.bin of a melody model (chroma and text prepended; its EnCodec a
                       pointer), and reference.pt: audiocraft's chroma of a fixed signal, its logits for
                       fixed codes, chroma and text states, and its greedy codes with guidance

Every file comes out byte-identical on a rerun except ``t5-base/spiece.model``, in which sentencepiece
records the temporary folder it was trained in (the vocabulary and so the tokens are the same).

``stub/demucs`` stands in for demucs, which audiocraft's chroma conditioner loads when it is built to
split drums and bass off a melody reference; the separation is not part of the model and is replaced
here by the identity, so the chroma recorded is audiocraft's ChromaExtractor on the signal itself.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

HERE = Path(__file__).resolve().parent
TEXT = "industrial techno with a driving kick and distorted bass"
WORDS = """industrial ebm techno house deep acid minimal dub jazz ambient drone kick snare bass synth pad
lead driving distorted dark warm slow fast with and a the of in no drums piano strings""".split()  # noqa: SIM905


def lm_cfg(n_q: int, delays: list[int], stereo: bool) -> dict:
    """An xp.cfg as MusicGen's training writes it (the fields the builders read), at a tiny size."""
    return {
        "device": "cpu",
        "dtype": "float32",
        "lm_model": "transformer_lm",
        "sample_rate": 32000,
        "channels": 2 if stereo else 1,
        "compression_model_checkpoint": "//pretrained/facebook/encodec_32khz",
        "interleave_stereo_codebooks": {"use": stereo, "per_timestep": False},
        "codebooks_pattern": {"modeling": "delay", "delay": {"delays": delays, "flatten_first": 0, "empty_initial": 0}},
        "transformer_lm": {
            "dim": 32,
            "num_heads": 4,
            "num_layers": 2,
            "hidden_scale": 4,
            "n_q": n_q,
            "card": 2048,
            "dropout": 0.0,
            "emb_lr": None,
            "activation": "gelu",
            "norm_first": True,
            "bias_ff": False,
            "bias_attn": False,
            "bias_proj": False,
            "past_context": None,
            "causal": True,
            "custom": True,
            "memory_efficient": False,
            "attention_as_float32": False,
            "layer_scale": None,
            "positional_embedding": "sin",
            "xpos": False,
            "checkpointing": "none",
            "weight_init": "gaussian",
            "depthwise_init": "current",
            "zero_bias_init": True,
            "norm": "layer_norm",
            "cross_attention": False,
            "qk_layer_norm": False,
            "qk_layer_norm_cross": False,
            "attention_dropout": None,
            "kv_repeat": 1,
            "two_step_cfg": False,
        },
        "classifier_free_guidance": {"training_dropout": 0.2, "inference_coef": 3.0},
        "attribute_dropout": {},
        "fuser": {
            "cross_attention_pos_emb": False,
            "cross_attention_pos_emb_scale": 1,
            "sum": [],
            "prepend": [],
            "cross": ["description"],
            "input_interpolate": [],
        },
        "conditioners": {
            "description": {
                "model": "t5",
                "t5": {"name": "t5-base", "finetune": False, "word_dropout": 0.3, "normalize_text": False},
            }
        },
        "dataset": {"segment_duration": 30},
    }


def codec_cfg() -> dict:
    return {
        "device": "cpu",
        "dtype": "float32",
        "compression_model": "encodec",
        "sample_rate": 32000,
        "channels": 1,
        "encodec": {
            "autoencoder": "seanet",
            "quantizer": "rvq",
            "sample_rate": 32000,
            "channels": 1,
            "causal": False,
            "renormalize": False,
        },
        "seanet": {
            "dimension": 16,
            "channels": 1,
            "causal": False,
            "n_filters": 4,
            "n_residual_layers": 1,
            "ratios": [8, 5, 4, 4],
            "activation": "ELU",
            "activation_params": {"alpha": 1.0},
            "norm": "weight_norm",
            "norm_params": {},
            "kernel_size": 7,
            "residual_kernel_size": 3,
            "last_kernel_size": 7,
            "dilation_base": 2,
            "pad_mode": "constant",
            "true_skip": True,
            "compress": 2,
            "lstm": 1,
            "disable_norm_outer_blocks": 0,
            "encoder": {},
            "decoder": {"trim_right_ratio": 1.0, "final_activation": None, "final_activation_params": None},
        },
        "rvq": {
            "n_q": 4,
            "q_dropout": False,
            "bins": 2048,
            "decay": 0.99,
            "kmeans_init": True,
            "kmeans_iters": 50,
            "threshold_ema_dead_code": 2,
            "orthogonal_reg_weight": 0.0,
            "orthogonal_reg_active_codes_only": False,
            "orthogonal_reg_max_codes": None,
        },
    }


def make_t5(hub: Path) -> None:
    """A tiny T5 encoder named t5-base in a hub cache (and a copy in ``HERE/t5-base``)."""
    import sentencepiece as spm
    from transformers import T5Config, T5EncoderModel, T5Tokenizer, T5TokenizerFast

    out = HERE / "t5-base"
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))))
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(Path(tmp) / "spiece"),
            vocab_size=60,
            model_type="unigram",
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
        )
        tokenizer = T5Tokenizer(str(Path(tmp) / "spiece.model"), extra_ids=0, legacy=True)
    torch.manual_seed(5)
    config = T5Config(
        vocab_size=tokenizer.vocab_size,
        d_model=768,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    T5EncoderModel(config).eval().save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    T5TokenizerFast.from_pretrained(out).save_pretrained(out)  # tokenizer.json too, as the hub's t5-base has
    snap = hub / "models--t5-base" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    for f in out.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (hub / "models--t5-base" / "refs").mkdir()
    (hub / "models--t5-base" / "refs" / "main").write_text("0" * 40)


def build_lm(cfg: dict, seed: int):
    from audiocraft.models import builders

    torch.manual_seed(seed)
    lm = builders.get_lm_model(OmegaConf.create(cfg)).eval()
    with torch.no_grad():  # audiocraft's init leaves biases and norms plain: move them off 0/1
        for name, p in lm.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return lm


def export_lm_file(lm, cfg: dict, folder: Path) -> None:
    from audiocraft.utils.export import export_lm

    folder.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "checkpoint.th"
        torch.save(
            {"fsdp_best_state": {}, "best_state": {"model": lm.state_dict()}, "xp.cfg": OmegaConf.create(cfg)}, ckpt
        )
        export_lm(ckpt, folder / "state_dict.bin")


def build_codec(seed: int):
    from audiocraft.models import builders

    torch.manual_seed(seed)
    cfg = codec_cfg()
    codec = builders.get_compression_model(OmegaConf.create(cfg)).eval()
    with torch.no_grad():  # k-means would fill the codebooks in training: random entries instead
        for layer in codec.quantizer.vq.layers:
            layer._codebook.embed.normal_()
            layer._codebook.embed_avg.copy_(layer._codebook.embed)
            layer._codebook.inited.fill_(1.0)
    return codec, cfg


def logits_of(lm, codes: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """audiocraft's LM logits for a code sequence (B, K, S) with fixed T5 states and their mask."""
    t5 = lm.condition_provider.conditioners["description"]
    with torch.no_grad():
        embeds = t5.output_proj(states) * mask.unsqueeze(-1)
        return lm(codes, conditions=[], condition_tensors={"description": (embeds, mask)})


def greedy(lm, compression, n: int) -> torch.Tensor:
    from audiocraft.modules.conditioners import ConditioningAttributes

    with torch.no_grad():
        return lm.generate(
            None,
            [ConditioningAttributes(text={"description": TEXT})],
            num_samples=1,
            max_gen_len=n,
            use_sampling=False,
            cfg_coef=3.0,
            remove_prompts=False,
        )


def main() -> None:
    hub = Path(tempfile.mkdtemp()) / "hub"
    os.environ.update(HF_HUB_CACHE=str(hub), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    make_t5(hub)
    ref: dict = {"text": TEXT, "torch": str(torch.__version__)}
    import audiocraft
    from audiocraft.utils.export import export_encodec, export_pretrained_compression_model

    ref["audiocraft"] = audiocraft.__version__
    gen = torch.Generator().manual_seed(7)
    for name, n_q, delays, stereo in (("mono", 4, [0, 1, 2, 3], False), ("stereo", 8, [0, 0, 1, 1, 2, 2, 3, 3], True)):
        cfg = lm_cfg(n_q, delays, stereo)
        lm = build_lm(cfg, seed=11 + n_q)
        export_lm_file(lm, cfg, HERE / name)
        codes = torch.randint(0, 2048, (2, n_q, 12), generator=gen)
        codes[:, :, 0] = 2048  # the special token where the delay pattern has no code yet
        states = torch.randn(2, 5, 768, generator=gen)
        full = torch.ones(2, 5, dtype=torch.long)
        padded = full.clone()
        padded[1, 3:] = 0
        ref[name] = {
            "codes": codes,
            "states": states,
            "mask_full": full,
            "mask_padded": padded,
            "logits_full": logits_of(lm, codes, states, full),
            "logits_padded": logits_of(lm, codes, states, padded),
            "greedy": greedy(lm, None, 24),
        }
    # EnCodec: exported whole (mono) and as a pointer to a pretrained one (stereo)
    codec, ccfg = build_codec(seed=3)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "codec.th"
        torch.save({"best_state": {"model": codec.state_dict()}, "xp.cfg": OmegaConf.create(ccfg)}, ckpt)
        export_encodec(ckpt, HERE / "mono" / "compression_state_dict.bin")
    export_pretrained_compression_model("facebook/encodec_32khz", HERE / "stereo" / "compression_state_dict.bin")
    t = torch.arange(32000) / 32000
    signal = (0.5 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(32000, generator=gen))[None, None]
    with torch.no_grad():
        encoded, scale = codec.encode(signal)
        ref["codec"] = {
            "signal": signal,
            "encoded": encoded,
            "decoded": codec.decode(ref["mono"]["greedy"]),
            "decoded_codes": ref["mono"]["greedy"],
        }
    torch.save(ref, HERE / "reference.pt")
    make_melody(HERE / "melody")
    print("written to", HERE, file=sys.stderr)


def melody_cfg() -> dict:
    """A melody model's xp.cfg: the chroma of a reference (self_wav) and the text both prepended."""
    cfg = lm_cfg(4, [0, 1, 2, 3], False)
    cfg["fuser"] |= {"prepend": ["self_wav", "description"], "cross": []}
    chroma = {"sample_rate": 32000, "n_chroma": 12, "radix2_exp": 14, "argmax": True, "match_len_on_eval": True,
              "eval_wavs": None, "n_eval_wavs": 0, "cache_path": None}  # fmt: skip
    cfg["conditioners"] = {"self_wav": {"model": "chroma_stem", "chroma_stem": chroma}} | cfg["conditioners"]
    return cfg


def melody_signal(seconds: float, gen: torch.Generator) -> torch.Tensor:
    """A reference melody (1, 1, T) at 32 kHz: a tone that steps through pitches, and a little noise."""
    t = torch.arange(int(seconds * 32000)) / 32000
    notes = torch.tensor([220.0, 246.94, 261.63, 293.66, 329.63, 349.23, 392.0])
    freq = notes[(t * 2).long() % len(notes)]
    phase = torch.cumsum(2 * torch.pi * freq / 32000, 0)
    return (0.5 * torch.sin(phase) + 0.02 * torch.randn(t.shape[0], generator=gen))[None, None]


def make_melody(folder: Path) -> None:
    """The melody model, exported, and what audiocraft computes with it."""
    from audiocraft.modules.conditioners import ConditioningAttributes, WavCondition
    from audiocraft.utils.export import export_pretrained_compression_model

    cfg = melody_cfg()
    lm = build_lm(cfg, seed=23)
    chroma_cond = lm.condition_provider.conditioners["self_wav"]
    chroma_cond._get_stemmed_wav = lambda wav, sample_rate: wav  # no demucs here: the signal is its own stem
    export_lm_file(lm, cfg, folder)
    export_pretrained_compression_model("facebook/encodec_32khz", folder / "compression_state_dict.bin")
    gen = torch.Generator().manual_seed(17)
    signal = melody_signal(6.0, gen)
    with torch.no_grad():
        chroma = chroma_cond.chroma(signal[:, 0])  # (1, frames, 12), one-hot
    codes = torch.randint(0, 2048, (1, 4, 12), generator=gen)
    codes[:, :, 0] = 2048
    states = torch.randn(1, 5, 768, generator=gen)
    long_chroma = chroma.repeat(1, -(-chroma_cond.chroma_len // chroma.shape[1]), 1)[:, : chroma_cond.chroma_len]
    t5 = lm.condition_provider.conditioners["description"]
    with torch.no_grad():
        text = t5.output_proj(states)
        ones = torch.ones(1, states.shape[1], dtype=torch.long)
        wav = chroma_cond.output_proj(long_chroma)
        tensors = {"description": (text, ones), "self_wav": (wav, torch.ones_like(wav[..., 0]))}  # text first, as
        logits = lm(codes, conditions=[], condition_tensors=tensors)  # audiocraft's provider orders them
        attributes = ConditioningAttributes(text={"description": TEXT},
                                            wav={"self_wav": WavCondition(signal, torch.tensor([signal.shape[-1]]),
                                                                          [32000], [None], [None])})  # fmt: skip
        greedy_codes = lm.generate(None, [attributes], num_samples=1, max_gen_len=24, use_sampling=False,
                                   cfg_coef=3.0, remove_prompts=False)  # fmt: skip
    torch.save({"signal": signal, "chroma": chroma, "chroma_len": chroma_cond.chroma_len, "codes": codes,
                "states": states, "long_chroma": long_chroma, "logits": logits.clone(), "greedy": greedy_codes},
               folder / "reference.pt")  # fmt: skip


if __name__ == "__main__":
    main()
