"""The fast loop's sampler against transformers' logits processors: same distribution, not just greedy."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pytest
from scipy.stats import chisquare

from composer.engine.sampling import Row, plan_sampling, sample_next, sampling_tensors
from composer.engine.types import Sampling

VOCAB = 48
DRAWS = 40_000


def row(**kw: Any) -> Row:
    sampling = {"cfg": 1.0, "top_k": 0, "top_p": 0.0, "temperature": 1.0} | kw
    return Row("", np.zeros((1, 0), np.int64), 1, 0, Sampling(**sampling))


def transformers_probs(logits: np.ndarray, r: Row) -> np.ndarray:
    """The distribution transformers samples from after its processors (CFG, temperature, top-k, top-p)."""
    import torch
    from transformers import (
        ClassifierFreeGuidanceLogitsProcessor,
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    s = r.sampling
    if s.cfg > 1:
        processors.append(ClassifierFreeGuidanceLogitsProcessor(s.cfg))
    processors.append(TemperatureLogitsWarper(s.temperature))
    if s.top_k > 0:
        processors.append(TopKLogitsWarper(s.top_k))
    if 0 < s.top_p < 1:
        processors.append(TopPLogitsWarper(s.top_p))
    scores = processors(torch.zeros(1, 1, dtype=torch.long), torch.as_tensor(logits))
    return scores.softmax(-1)[0].double().numpy()


def our_draws(logits: np.ndarray, r: Row) -> np.ndarray:
    """DRAWS codes from composer's sampler, one per uniform (a batch of DRAWS identical rows)."""
    import torch

    rows = [r] * DRAWS
    plan = plan_sampling(rows, VOCAB)
    params = sampling_tensors(rows, VOCAB, "cpu")
    stacked = torch.as_tensor(logits)[:, None, :]  # (rows, K=1, V): conditional row(s) first
    if plan.guidance:
        stacked = torch.cat([stacked[:1].expand(DRAWS, 1, VOCAB), stacked[1:].expand(DRAWS, 1, VOCAB)])
    else:
        stacked = stacked.expand(DRAWS, 1, VOCAB)
    uniforms = torch.rand(DRAWS, 1, generator=torch.Generator().manual_seed(123))
    return sample_next(stacked.contiguous(), params, uniforms, plan)[:, 0].numpy()


CASES = {
    "plain": row(),
    "temperature 0.6": row(temperature=0.6),
    "temperature 1.7": row(temperature=1.7),
    "top-k 10": row(top_k=10),
    "top-p 0.7": row(top_p=0.7),
    "top-k 20, top-p 0.8, temperature 0.8": row(top_k=20, top_p=0.8, temperature=0.8),
    "guidance 3, top-k 12": row(cfg=3.0, top_k=12),
}


@pytest.mark.parametrize("name", list(CASES))
def test_sampled_codes_follow_transformers_distribution(name: str) -> None:
    r = CASES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    logits = (rng.standard_normal((2 if r.sampling.cfg > 1 else 1, VOCAB)) * 1.5).astype(np.float32)
    expected = transformers_probs(logits, r)
    counts = np.bincount(our_draws(logits, r), minlength=VOCAB)
    assert counts[expected == 0].sum() == 0, "a code transformers never samples was drawn"
    keep = expected > 0
    result = chisquare(counts[keep], expected[keep] / expected[keep].sum() * DRAWS)
    assert result.pvalue > 1e-4, (name, result)


def test_temperature_divides_the_logits() -> None:
    """At T=0.5 the best code's share is that of softmax(logits / 0.5), not of softmax(logits * 0.5)."""
    logits = np.linspace(0, 3, VOCAB, dtype=np.float32)[None]
    draws = our_draws(logits, row(temperature=0.5))
    share = float(np.mean(draws == VOCAB - 1))
    divided = np.exp(logits[0] / 0.5) / np.exp(logits[0] / 0.5).sum()
    multiplied = np.exp(logits[0] * 0.5) / np.exp(logits[0] * 0.5).sum()
    assert abs(share - divided[-1]) < 0.01 and abs(share - multiplied[-1]) > 0.05, (share, divided[-1])
