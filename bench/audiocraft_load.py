"""First and later loads of an audiocraft-format musicgen-small (random weights at the real shapes).

    python -m bench.audiocraft_load [--out bench/results/audiocraft-load.json]

Writes audiocraft's two files for a random-weight model at musicgen-small's shapes (the LM's tensors
under audiocraft's names, q/k/v fused, with an xp.cfg like the published one; EnCodec as a pointer to
``facebook/encodec_32khz``; T5 in the hub cache), then times ``load_model`` three ways in one run: the
first load (conversion included), a later load (the converted checkpoint), and the same weights loaded
from a transformers checkpoint.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from bench.run import cpu_kind
from composer.engine.tune import isa_summary, machine

XP_CFG = """lm_model: transformer_lm
sample_rate: 32000
channels: 1
codebooks_pattern: {modeling: delay, delay: {delays: [0, 1, 2, 3], flatten_first: 0, empty_initial: 0}}
transformer_lm: {dim: 1024, num_heads: 16, num_layers: 24, hidden_scale: 4, n_q: 4, card: 2048, activation: gelu,
  norm_first: true, bias_ff: false, bias_attn: false, bias_proj: false, past_context: null, causal: true,
  custom: false, memory_efficient: true, layer_scale: null, positional_embedding: sin, xpos: false,
  norm: layer_norm, cross_attention: false, qk_layer_norm: false, qk_layer_norm_cross: false, kv_repeat: 1}
classifier_free_guidance: {training_dropout: 0.2, inference_coef: 3.0}
fuser: {cross_attention_pos_emb: false, cross_attention_pos_emb_scale: 1, sum: [], prepend: [],
  cross: [description], input_interpolate: []}
conditioners: {description: {model: t5, t5: {name: t5-base, finetune: false, word_dropout: 0.3,
  normalize_text: false}}}
"""
BACK = (  # transformers name -> audiocraft name (the converter's renames, reversed)
    (r"^decoder\.model\.decoder\.embed_tokens\.", "emb."), (r"^decoder\.model\.decoder\.layer_norm\.", "out_norm."),
    (r"^decoder\.model\.decoder\.layers\.", "transformer.layers."), (r"^decoder\.lm_heads\.", "linears."),
    (r"\.encoder_attn_layer_norm\.", ".norm_cross."), (r"\.encoder_attn\.", ".cross_attention."),
    (r"\.fc1\.", ".linear1."), (r"\.fc2\.", ".linear2."), (r"\.self_attn_layer_norm\.", ".norm1."),
    (r"\.final_layer_norm\.", ".norm2."),
    (r"^enc_to_dec_proj\.", "condition_provider.conditioners.description.output_proj."),
)  # fmt: skip


def hub(cache: Path, repo_id: str, source: Path) -> None:
    snapshot = cache / ("models--" + repo_id.replace("/", "--")) / "snapshots" / ("0" * 40)
    shutil.copytree(source, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)


def audiocraft_files(model: object, processor: object, cache: Path) -> None:
    import torch

    state: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():  # type: ignore[attr-defined]
        if key.startswith(("text_encoder.", "audio_encoder.")):
            continue
        for pattern, repl in BACK:
            key = re.sub(pattern, repl, key)
        state[key] = value
    fused: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = re.match(r"(.*)\.(q|k|v)_proj\.weight$", key)
        if m is None:
            fused[key] = value
        elif m.group(2) == "q":
            parts = [state[f"{m.group(1)}.{p}_proj.weight"] for p in "qkv"]
            fused[f"{m.group(1)}.in_proj_weight"] = torch.cat(parts)
    folder = cache / "models--facebook--musicgen-small" / "snapshots" / ("0" * 40)
    folder.mkdir(parents=True)
    torch.save({"best_state": fused, "xp.cfg": XP_CFG, "version": "1.3.0", "exported": True}, folder / "state_dict.bin")
    torch.save({"pretrained": "facebook/encodec_32khz", "exported": True, "version": "1.3.0"},
               folder / "compression_state_dict.bin")  # fmt: skip
    (folder.parent.parent / "refs").mkdir()
    (folder.parent.parent / "refs" / "main").write_text("0" * 40)
    with tempfile.TemporaryDirectory() as tmp:
        model.text_encoder.save_pretrained(Path(tmp) / "t5")  # type: ignore[attr-defined]
        processor.tokenizer.save_pretrained(Path(tmp) / "t5")  # type: ignore[attr-defined]
        hub(cache / "hub", "t5-base", Path(tmp) / "t5")
        model.audio_encoder.save_pretrained(Path(tmp) / "codec")  # type: ignore[attr-defined]
        hub(cache / "hub", "facebook/encodec_32khz", Path(tmp) / "codec")
        model.save_pretrained(Path(tmp) / "native")  # type: ignore[attr-defined]
        processor.save_pretrained(Path(tmp) / "native")  # type: ignore[attr-defined]
        hub(cache / "native" / "hub", "facebook/musicgen-small", Path(tmp) / "native")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(f"bench/results/audiocraft-load-{cpu_kind()}.json"))
    args = parser.parse_args(argv)
    from composer.engine.models import load_model
    from composer.engine.tiny import build_model
    from composer.settings import load_settings

    root = Path(tempfile.mkdtemp())
    model, processor = build_model("random", "small")
    audiocraft_files(model, processor, root / "cache")
    del model
    env = {"HF_HOME": str(root / "cache"), "AUDIOCRAFT_CACHE_DIR": str(root / "cache"), "HF_HUB_OFFLINE": "1",
           "COMPOSER_CPU_DTYPE": "float32"}  # fmt: skip
    settings = load_settings(env, cwd=root)
    native = load_settings(env | {"HF_HOME": str(root / "cache" / "native"), "AUDIOCRAFT_CACHE_DIR": ""}, cwd=root)
    timings = {}
    for name, s in (("first load (conversion included)", settings), ("later load (converted)", settings),
                    ("transformers checkpoint", native)):  # fmt: skip
        start = time.perf_counter()
        lm = load_model("small", s)
        timings[name] = round(time.perf_counter() - start, 2)
        print(f"{name}: {timings[name]} s ({lm.revision[:22]})", flush=True)
        del lm
    m = machine()
    result = {"model": "musicgen-small shapes, random weights", "cpu": m["cpu"], "isa": isa_summary(),
              "torch": m["torch"], "seconds": timings,
              "state_dict_bin_gb": round((root / "cache" / "models--facebook--musicgen-small" / "snapshots" / ("0" * 40)
                                          / "state_dict.bin").stat().st_size / 1e9, 2)}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
