"""Time and VRAM estimates for plan display.

Time uses the footprints measured by the benchmark (``composer/plan/footprints.json``, written by
``python -m bench.run``) for the device and model when there are some: composer's decoding loop,
one segment at a time, plus the EnCodec decode. Where nothing was measured it falls back to a
formula: CPU speed scaled by decoder size from musicgen-small, conservative GPU guesses. VRAM is a
formula: fp16 decoder weights + EnCodec (0.12 GB) + KV cache + one 10 s decode chunk (T5 stays on
the CPU).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from composer.engine.catalog import FRAME_RATE_HZ, MODELS, SAMPLE_RATE_HZ, alias_of, info_of
from composer.plan.build import Plan, Segment

FOOTPRINTS = Path(__file__).with_name("footprints.json")
CPU_STEPS_PER_S_SMALL = 5.0  # transformers generate, fp32, 2 cores: the floor we never do worse than
GPU_STEPS_PER_S = {"small": 40.0, "medium": 15.0, "large": 10.0}
KV_GB_PER_30S = {"small": 0.3, "medium": 0.9, "large": 1.6}
DECODE_CHUNK_GB = 0.4  # 10 s chunk + 2 s context each side, fp16
DELAY_STEPS = 3


@dataclass(frozen=True)
class Estimate:
    seconds: float | None
    vram_gb: float | None
    measured: bool  # time from benchmark footprints rather than the formula


@lru_cache(maxsize=1)
def footprints() -> dict[str, Any]:
    """Measured footprints, or {} when none were recorded."""
    try:
        return dict(json.loads(FOOTPRINTS.read_text()))
    except (OSError, ValueError):
        return {}


def estimate(segment: Segment, device: str, source: str) -> Estimate:
    """Time to generate ``segment`` and its peak VRAM (None where composer cannot guess)."""
    alias = alias_of(segment.model)
    if source == "tiny" or alias is None:
        return Estimate(None, None, False)
    info = MODELS[alias]
    windows = max(1, -(-(segment.frames + segment.prompt_frames) // int(segment.window_s * FRAME_RATE_HZ)))
    steps = segment.frames + DELAY_STEPS * windows
    measured = footprints().get(device, {}).get(info.size, {})
    if measured.get("steps_per_s"):
        decode = measured.get("decode_s_per_30s", 0.0) * (segment.frames + segment.prompt_frames) / 1500
        return Estimate(steps / measured["steps_per_s"] + decode, _vram(segment, alias, device), True)
    if device == "cpu":
        seconds = steps / CPU_STEPS_PER_S_SMALL * info.decoder_params_m / MODELS["small"].decoder_params_m
    else:
        seconds = steps / GPU_STEPS_PER_S[info.size]
    return Estimate(seconds, _vram(segment, alias, device), False)


def _vram(segment: Segment, alias: str, device: str) -> float | None:
    if device == "cpu":
        return None
    window_frames = min(segment.frames + segment.prompt_frames, int(segment.window_s * FRAME_RATE_HZ))
    info = MODELS[alias]  # stereo: the same sequence (8 codebooks summed per step), channels decoded in turn
    kv = KV_GB_PER_30S[info.size] * window_frames / 1500
    return info.fp16_weights_gb + 0.12 + kv + DECODE_CHUNK_GB


DISK_WARN_BYTES = 2 * 10**9


@dataclass(frozen=True)
class DiskNeed:
    """Bytes a render writes: the segment cache, the mix, raw and DAW-aligned stems."""

    cache: float
    mix: float
    raw_stems: float
    aligned_stems: float

    @property
    def total(self) -> float:
        return self.cache + self.mix + self.raw_stems + self.aligned_stems


def disk_need(plan: Plan) -> DiskNeed:
    """What a full render of ``plan`` writes (without takes), from its lengths and output format."""
    infos = [info_of(s.model) for s in plan.segments]
    channels = 2 if any(i is not None and i.channels == 2 for i in infos) else 1
    per_s = plan.output_rate * plan.output_bytes * channels
    generated = [s.frames / FRAME_RATE_HZ for s in plan.segments]  # what is generated: room for alignment too
    cache = sum((s.prompt_s + g) * SAMPLE_RATE_HZ * 4 * channels for s, g in zip(plan.segments, generated, strict=True))
    return DiskNeed(
        cache=cache,
        mix=plan.length_s * per_s,
        raw_stems=sum(generated) * per_s,
        aligned_stems=len(plan.segments) * plan.length_s * per_s,  # each spans the whole track
    )


def vram_problem(plan: Plan, source: str, device: str = "cuda") -> str | None:
    """Why ``plan`` will not fit the free memory of this machine's GPU, or None (also without CUDA)."""
    if device != "cuda" or source == "tiny":
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    needs = [(estimate(s, device, source).vram_gb or 0.0, s) for s in plan.segments]
    need, seg = max(needs, key=lambda item: item[0])
    free = torch.cuda.mem_get_info()[0] / 1e9
    if need <= free:
        return None
    return (
        f"{seg.id} ({seg.model}) needs about {need:.1f} GB of GPU memory and {free:.1f} GB is free on "
        f"{torch.cuda.get_device_name()}: use a smaller model, close other GPU programs, or pass --allow-large"
    )
