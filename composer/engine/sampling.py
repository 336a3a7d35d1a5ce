"""Sampling for the fast loop: decided once per batch on the CPU, then tensor operations only.

Guidance, temperature, top-k and top-p in transformers' order and with its semantics (tested against
its logits processors), with no data-dependent branch and no host sync, so the sampler can run inside
a captured CUDA graph; each row draws from its own pre-drawn uniforms, so its codes never depend on
the other rows of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from composer.engine.types import Sampling

if TYPE_CHECKING:
    import torch

CANDIDATE_BUCKET = 64  # top-k candidate lists are this many long (rounded up)


@dataclass(frozen=True)
class Row:
    """One segment window in a batch."""

    text: str
    prompt: np.ndarray  # (codebooks, prompt_frames), may have 0 frames
    new_frames: int
    seed: int
    sampling: Sampling = field(default_factory=Sampling)
    chroma: np.ndarray | None = None  # melody models: (frames, 12) one-hot chroma for this window


@dataclass(frozen=True)
class SamplingPlan:
    """What a batch's sampling needs, decided once per batch on the CPU (no device sync per step)."""

    guidance: bool  # any row uses classifier-free guidance (cfg > 1): rows are doubled
    candidates: int  # tokens kept by top-k: the largest top-k in the batch, or the vocabulary
    nucleus: bool  # any row uses top-p


def plan_sampling(rows: list[Row], vocab: int) -> SamplingPlan:
    """The batch-wide sampling plan for ``rows``."""
    top_ks = [min(r.sampling.top_k, vocab) if r.sampling.top_k > 0 else vocab for r in rows]
    # rounded up so that a candidate's numbers come from the same vectorised path whatever the batch
    candidates = min(vocab, round_up(max(top_ks), CANDIDATE_BUCKET))
    return SamplingPlan(any(r.sampling.cfg > 1 for r in rows), candidates, any(0 < r.sampling.top_p < 1 for r in rows))


def sampling_tensors(rows: list[Row], vocab: int, device: Any) -> dict[str, torch.Tensor]:
    """Per-row sampling settings as (B, 1, 1) tensors on ``device``."""
    import torch

    def col(values: list[float], dtype: Any = torch.float32) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype, device=device)[:, None, None]

    s = [r.sampling for r in rows]
    return {
        "cfg": col([x.cfg for x in s]),
        "guided": col([float(x.cfg > 1) for x in s]),
        "temperature": col([x.temperature for x in s]),
        "top_k": col([min(x.top_k, vocab) if x.top_k > 0 else vocab for x in s], torch.long),
        "top_p": col([x.top_p if 0 < x.top_p < 1 else 2.0 for x in s]),  # 2: nothing is cut
        "greedy": col([float(x.greedy) for x in s]),
    }


def sample_next(
    logits: torch.Tensor, params: dict[str, torch.Tensor], uniforms: torch.Tensor, plan: SamplingPlan
) -> torch.Tensor:
    """Next codes (B, K) from logits (rows, K, V): guidance, temperature, top-k, top-p, inverse CDF.

    The same order and semantics as transformers' processors (guidance, then temperature, then
    top-k, then top-p). No data-dependent branch and no host sync: safe inside a captured graph.

    Args:
        logits: float32 logits; with ``plan.guidance`` the conditional rows first, then the unconditional.
        params: from :func:`sampling_tensors`.
        uniforms: (B, K) draws in [0, 1).
        plan: from :func:`plan_sampling`.
    """
    import torch
    import torch.nn.functional as F

    b = uniforms.shape[0]
    if plan.guidance:
        cond, uncond = logits[:b], logits[b:]
        guided = uncond + (cond - uncond) * params["cfg"]
        logits = torch.where(params["guided"] > 0, guided, cond)  # cfg <= 1: exactly the conditional logits
    greedy = logits.argmax(-1)
    scores = logits / params["temperature"]
    top, index = scores.topk(plan.candidates, dim=-1)  # (B, K, C), sorted descending
    # Equal scores are common (fp16 logits): order ties by code so the order never depends on how
    # many candidates the batch carries, then keep every candidate scoring at least the k-th (as
    # transformers' top-k does).
    index, order = index.sort(-1)
    top, order = top.gather(-1, order).sort(dim=-1, descending=True, stable=True)
    index = index.gather(-1, order)
    kth = top.gather(-1, params["top_k"].expand(-1, top.shape[1], 1) - 1)
    top = top.masked_fill(top < kth, -float("inf"))
    # Unnormalised weights relative to the best token and prefix sums only: a row's numbers do not
    # depend on how many (masked) candidates the batch carries, so its draws are batch-independent.
    weights = (top - top[..., :1]).exp()
    cdf = weights.cumsum(-1)
    if plan.nucleus:  # keep a token while the mass of the more likely ones is below top_p
        before = F.pad(cdf[..., :-1], (1, 0))
        weights = weights.masked_fill(before >= params["top_p"] * cdf[..., -1:], 0.0)
        cdf = weights.cumsum(-1)
    pick = (cdf < uniforms[:, :, None] * cdf[..., -1:]).sum(-1, keepdim=True).clamp(max=plan.candidates - 1)
    sampled = index.gather(-1, pick)[..., 0]
    return torch.where(params["greedy"][:, :, 0] > 0, greedy, sampled)


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
