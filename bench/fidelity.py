"""How far each CPU kernel's next-code distributions are from float32's, on the same codes.

    python -m bench.fidelity                  # musicgen-small shapes (random weights) and the tiny model
    python -m bench.fidelity --steps 100      # shorter

The float32 kernel samples a segment (guidance 3, top-k 250); every other kernel is then fed exactly
those codes (teacher forcing: its own samples are replaced by float32's), so the two see the same
history at every step and their distributions can be compared where they matter:

- KL(float32 || kernel) of the guided next-code distribution, mean and 99th percentile over steps and
  codebooks (nats);
- top-250 overlap: the share of float32's 250 most likely codes that are also the kernel's (what
  top-k sampling draws from);
- greedy agreement: how often the most likely code is the same.

bfloat16 against float32 is the yardstick: the issue's rule is that int8 may only be a default if it
is as close to float32 as bfloat16 is. Weights are random (nothing to download), so these are
numbers about the arithmetic, not about music; results go to bench/results/fidelity-<cpu>-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
TEXT = "dark industrial ebm, 128 bpm, analog bass sequence, hard machine drums"
TOP_K = 250


# -- the metrics (pure; tested) -----------------------------------------------------------------
def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def compare(reference: np.ndarray, other: np.ndarray, top_k: int = TOP_K) -> dict[str, float]:
    """KL(reference || other), top-k overlap and greedy agreement of logits (..., vocab), over all
    leading positions."""
    ref = log_softmax(reference.astype(np.float64)).reshape(-1, reference.shape[-1])
    oth = log_softmax(other.astype(np.float64)).reshape(-1, other.shape[-1])
    kl = (np.exp(ref) * (ref - oth)).sum(axis=-1).clip(min=0.0)
    k = min(top_k, ref.shape[-1])
    top_ref = np.argpartition(-ref, k - 1, axis=-1)[:, :k]
    top_oth = np.argpartition(-oth, k - 1, axis=-1)[:, :k]
    overlap = np.array([np.intersect1d(a, b).size / k for a, b in zip(top_ref, top_oth, strict=True)])
    greedy = ref.argmax(-1) == oth.argmax(-1)
    return {"kl_mean": float(kl.mean()), "kl_p99": float(np.percentile(kl, 99)), "kl_max": float(kl.max()),
            f"top{k}_overlap": float(overlap.mean()), "greedy_agreement": float(greedy.mean()),
            "positions": int(kl.size)}  # fmt: skip


# -- teacher-forced logits from composer's own step ------------------------------------------------
def guided_logits(lm: Any, steps: int, seed: int, forced: list[Any] | None = None) -> tuple[np.ndarray, list[Any]]:
    """(steps, codebooks, vocab) guided logits of one segment from ``lm``'s fast loop, and the codes
    it sampled each step; with ``forced``, those codes are used instead of its own samples."""
    import torch

    from composer.engine import fastloop
    from composer.engine.fastloop import FastDecoder, Row
    from composer.engine.sampling import sample_next

    seen: list[np.ndarray] = []
    codes: list[Any] = []

    def recording(logits: torch.Tensor, params: dict[str, torch.Tensor], uniforms: torch.Tensor, plan: Any) -> Any:
        b = uniforms.shape[0]
        cond, uncond = logits[:b], logits[b:]
        seen.append((uncond + (cond - uncond) * params["cfg"])[0].double().numpy())  # what sampling starts from
        picked = sample_next(logits, params, uniforms, plan) if forced is None else forced[len(codes)]
        codes.append(picked.clone())
        return picked

    decoder = FastDecoder(lm)
    original = fastloop.sample_next
    fastloop.sample_next = recording
    try:
        decoder.generate([Row(TEXT, np.zeros((lm.spec.codebooks, 0), np.int64), steps, seed)])
    finally:
        fastloop.sample_next = original
    delay = lm.spec.codebooks // lm.spec.channels - 1  # the first steps sample the delayed codebooks' pads
    return np.stack(seen)[delay:steps], codes


def measure(alias: str, kind: str, steps: int, kernels: list[str], seed: int = 3) -> dict[str, Any]:
    """Every kernel in ``kernels`` against float32 on float32's codes, for one model."""
    from bench.run import cpu_model
    from composer.engine.kernels import packing_available

    def model(kernel: str) -> Any:
        if kind == "random":
            return cpu_model(alias, kernel)
        import torch

        from composer.engine.kernels import activation_dtype
        from composer.engine.models import LoadedModel
        from composer.engine.tiny import build_model

        m, processor = build_model("tiny", alias)
        dtype = activation_dtype(kernel)
        m.decoder.to(dtype)
        if hasattr(m, "enc_to_dec_proj"):
            m.enc_to_dec_proj.to(dtype)
        return LoadedModel(alias, f"tiny/{alias}", "tiny", "tiny", m.eval(), processor, torch.device("cpu"), dtype,
                           kernel)  # fmt: skip

    first = model("float32")
    reference, codes = guided_logits(first, steps, seed)
    out: dict[str, Any] = {"model": f"{kind} {alias}", "steps": steps, "kernels": {}}
    for kernel in kernels:
        if not packing_available(kernel):
            out["kernels"][kernel] = {"available": False}
            continue
        lm = model(kernel)
        lm.processor = first.processor  # the weights are seeded; the random models' tokenizers are not
        logits, _ = guided_logits(lm, steps, seed, forced=codes)
        out["kernels"][kernel] = compare(reference, logits)
        print(f"  {kind} {alias} {kernel}: {out['kernels'][kernel]}", flush=True)
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = [f"Next-code fidelity against float32 on float32's codes ({results['cpu']}, {results['date']}):", "",
             "| model | kernel | KL mean (nats) | KL p99 | top-250 overlap | greedy agreement |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for part in results["models"]:
        for kernel, r in part["kernels"].items():
            if not r.get("available", True):
                lines.append(f"| {part['model']} | {kernel} | not available here | | | |")
                continue
            lines.append(f"| {part['model']} | {kernel} | {r['kl_mean']:.2e} | {r['kl_p99']:.2e} | "
                         f"{r['top250_overlap']:.4f} | {r['greedy_agreement']:.4f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from composer.engine.tune import isa_summary, machine

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    kernels = ["float32", "bfloat16", "float16", "int8"]  # float32 against itself: 0 by construction
    models = [measure("small", "random", args.steps, kernels), measure("small", "tiny", args.steps, kernels)]
    results = {"cpu": f"{machine()['cpu']} ({isa_summary()})", "date": dt.date.today().isoformat(), "models": models}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"fidelity-{results['date']}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path}\n\n{markdown(results)}")


if __name__ == "__main__":
    main()
