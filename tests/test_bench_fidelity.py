"""The int8/bf16/fp16 fidelity measurement (bench/fidelity.py, issue #18): its metrics and its teacher forcing."""

from __future__ import annotations

import numpy as np
import pytest

from bench.fidelity import compare, guided_logits, log_softmax


def test_metrics_on_known_distributions() -> None:
    same = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    assert compare(same, same + 7.0, top_k=2) == {  # logits shifted by a constant: the same distribution
        "kl_mean": pytest.approx(0.0, abs=1e-12), "kl_p99": pytest.approx(0.0, abs=1e-12),
        "kl_max": pytest.approx(0.0, abs=1e-12), "top2_overlap": 1.0, "greedy_agreement": 1.0, "positions": 1,
    }  # fmt: skip
    p, q = np.array([0.5, 0.3, 0.15, 0.05]), np.array([0.3, 0.5, 0.05, 0.15])
    expected = float((p * np.log(p / q)).sum())  # by hand, independently of log_softmax
    got = compare(np.log(p)[None], np.log(q)[None], top_k=2)
    assert got["kl_mean"] == pytest.approx(expected) and got["greedy_agreement"] == 0.0
    assert got["top2_overlap"] == 1.0  # {0, 1} both times, in another order
    assert compare(np.log(p)[None], np.log(q)[None], top_k=3)["top3_overlap"] == pytest.approx(2 / 3)
    assert np.allclose(np.exp(log_softmax(np.array([1000.0, 1000.0]))), 0.5), "stable for large logits"


@pytest.fixture(scope="module")
def tiny_pair():  # type: ignore[no-untyped-def]
    """The tiny small model with float32 and with bfloat16 kernels (same seeded weights, one tokenizer)."""
    import torch

    from composer.engine.kernels import activation_dtype
    from composer.engine.models import LoadedModel
    from composer.engine.tiny import build_model

    models = []
    for kernel in ("float32", "bfloat16"):
        model, processor = build_model("tiny", "small")
        model.decoder.to(activation_dtype(kernel))  # the tiny text encoder is as wide: no projection
        processor = models[0].processor if models else processor
        models.append(LoadedModel("small", "tiny/small", "tiny", "tiny", model, processor, torch.device("cpu"),
                                  activation_dtype(kernel), kernel))  # fmt: skip
    return models


def test_teacher_forcing_feeds_the_reference_codes(tiny_pair) -> None:  # type: ignore[no-untyped-def]
    fp32, bf16 = tiny_pair
    reference, codes = guided_logits(fp32, 40, seed=3)
    assert reference.shape == (37, 4, 2048)  # 40 steps less the 3 that sample delayed codebooks' pads
    again, again_codes = guided_logits(fp32, 40, seed=3, forced=codes)
    assert np.array_equal(again, reference), "the same kernel on the same codes: the same logits"
    other, forced = guided_logits(bf16, 40, seed=3, forced=codes)
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(forced, codes, strict=True))
    result = compare(reference, other)
    assert 0 < result["kl_mean"] < 1e-2 and result["top250_overlap"] > 0.9, result
    _free, own = guided_logits(bf16, 40, seed=3)  # without forcing bf16 samples its own codes
    assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(own, codes, strict=True))
