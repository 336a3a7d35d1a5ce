"""Rough time and VRAM estimates for plan display.

Basis: CPU speed measured on a 2-core machine (transformers generate, real musicgen-small shapes,
CFG batch 2: 0.205 s/step) scaled by decoder size; GPU figures are conservative guesses for eager
PyTorch on an RTX 3080-class card until the benchmark (bench/) measures them. VRAM: fp16 decoder
weights + T5 in fp32 (0.44 GB) + EnCodec (0.12 GB) + KV cache + one-shot EnCodec decode
activations (about 1 GB per 30 s).
"""

from __future__ import annotations

from dataclasses import dataclass

from composer.engine.catalog import MODELS, alias_of
from composer.plan.build import Segment

CPU_S_PER_STEP_SMALL = 0.205
GPU_STEPS_PER_S = {"small": 40.0, "medium": 15.0, "large": 10.0}
KV_GB_PER_30S = {"small": 0.3, "medium": 0.9, "large": 1.6}
DELAY_STEPS = 3


@dataclass(frozen=True)
class Estimate:
    seconds: float | None
    vram_gb: float | None


def estimate(segment: Segment, device: str, source: str) -> Estimate:
    """Time to generate ``segment`` and its peak VRAM (None where composer cannot guess)."""
    alias = alias_of(segment.model)
    if source == "tiny" or alias is None:
        return Estimate(None, None)
    info = MODELS[alias]
    windows = max(1, -(-(segment.frames + segment.prompt_frames) // int(segment.window_s * 50)))
    steps = segment.frames + DELAY_STEPS * windows
    if device == "cpu":
        seconds = steps * CPU_S_PER_STEP_SMALL * info.decoder_params_m / MODELS["small"].decoder_params_m
    else:
        seconds = steps / GPU_STEPS_PER_S[alias]
    window_frames = min(segment.frames + segment.prompt_frames, int(segment.window_s * 50))
    kv = KV_GB_PER_30S[alias] * window_frames / 1500
    decode = 1.0 * (segment.frames + segment.prompt_frames) / 1500
    vram = info.fp16_weights_gb + 0.44 + 0.12 + kv + decode
    return Estimate(seconds, vram if device != "cpu" else None)
