"""composer's decoding loop against transformers' generate, and its batching/sampling guarantees."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from composer.engine.fastloop import FastDecoder, Row
from composer.engine.generate import _capture_codes, decode_tokens
from composer.engine.models import LoadedModel

TEXT = "dark industrial ebm with an analog bass sequence"


def reference_greedy(lm: LoadedModel, text: str, prompt: np.ndarray, new_frames: int, cfg: float) -> np.ndarray:
    """transformers' generate, greedy, returning the new codes."""
    import torch

    inputs = lm.processor(text=[text], padding=True, return_tensors="pt").to(lm.device)
    extra: dict[str, Any] = {}
    if prompt.shape[1]:
        extra["decoder_input_ids"] = torch.as_tensor(prompt).reshape(4, -1)
    with _capture_codes(lm) as captured, torch.inference_mode():
        lm.model.generate(**inputs, **extra, do_sample=False, guidance_scale=cfg if cfg > 1 else None,
                          max_new_tokens=new_frames + 3)  # fmt: skip
    return captured[0][0, 0].numpy()[:, prompt.shape[1] :]


def row(prompt: np.ndarray, frames: int, **kw: Any) -> Row:
    base = {"text": TEXT, "prompt": prompt, "new_frames": frames, "seed": 1, "cfg": 3.0, "top_k": 250,
            "top_p": 0.0, "temperature": 1.0}  # fmt: skip
    return Row(**(base | kw))


@pytest.mark.parametrize("prompt_frames", [0, 1, 9])
@pytest.mark.parametrize("cfg", [3.0, 1.0])
def test_greedy_matches_transformers_tiny(tiny_small: LoadedModel, prompt_frames: int, cfg: float) -> None:
    prompt = np.random.default_rng(prompt_frames).integers(0, 2048, (4, prompt_frames))
    expected = reference_greedy(tiny_small, TEXT, prompt, 40, cfg)
    got = FastDecoder(tiny_small).generate([row(prompt, 40, cfg=cfg, greedy=True)])[0]
    assert got.shape == (4, 40)
    assert np.array_equal(got, expected)


@pytest.fixture(scope="module")
def random_small() -> LoadedModel:
    """Random weights at the real musicgen-small shapes (24 layers x 1024), built in memory."""
    import torch

    from composer.engine.tiny import build_model

    model, processor = build_model("random", "small")
    return LoadedModel("small", "in-memory", "none", "random", model, processor, torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("prompt_frames", [0, 6])
def test_greedy_matches_transformers_small_shapes(random_small: LoadedModel, prompt_frames: int) -> None:
    prompt = np.random.default_rng(3).integers(0, 2048, (4, prompt_frames))
    expected = reference_greedy(random_small, TEXT, prompt, 8, 3.0)
    got = FastDecoder(random_small).generate([row(prompt, 8, greedy=True)])[0]
    assert np.array_equal(got, expected)


def test_batch_does_not_change_a_segment(tiny_small: LoadedModel) -> None:
    rng = np.random.default_rng(0)
    rows = [
        row(np.zeros((4, 0), np.int64), 30, seed=11),
        row(rng.integers(0, 2048, (4, 5)), 17, seed=12, text="calm ambient drone", top_k=50, top_p=0.9),
        row(rng.integers(0, 2048, (4, 12)), 25, seed=13, cfg=1.0, temperature=0.7),
    ]
    decoder = FastDecoder(tiny_small)
    batch = decoder.generate(rows)
    for r, got in zip(rows, batch, strict=True):
        assert got.shape == (4, r.new_frames)
        assert np.array_equal(got, decoder.generate([r])[0])


def test_seeded_sampling_repeats_and_varies(tiny_small: LoadedModel) -> None:
    decoder = FastDecoder(tiny_small)
    empty = np.zeros((4, 0), np.int64)
    a = decoder.generate([row(empty, 30, seed=5)])[0]
    assert np.array_equal(a, decoder.generate([row(empty, 30, seed=5)])[0])
    assert not np.array_equal(a, decoder.generate([row(empty, 30, seed=6)])[0])


def test_top_k_one_is_greedy_and_top_p_narrows(tiny_small: LoadedModel) -> None:
    decoder = FastDecoder(tiny_small)
    empty = np.zeros((4, 0), np.int64)
    greedy = decoder.generate([row(empty, 20, greedy=True)])[0]
    assert np.array_equal(decoder.generate([row(empty, 20, top_k=1, seed=9)])[0], greedy)
    assert np.array_equal(decoder.generate([row(empty, 20, top_k=0, top_p=1e-6, seed=9)])[0], greedy)
    wide = decoder.generate([row(empty, 20, top_k=0, seed=9)])[0]
    assert not np.array_equal(wide, greedy)


def test_progress_callback(tiny_small: LoadedModel) -> None:
    seen: list[tuple[int, int]] = []
    FastDecoder(tiny_small).generate([row(np.zeros((4, 0), np.int64), 10)], on_step=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] and len(seen) == seen[-1][1]


@pytest.mark.parametrize("seconds", [3.0, 7.3])
def test_chunked_decode_matches_one_shot(tiny_small: LoadedModel, seconds: float) -> None:
    frames = int(seconds * 50)
    codes = np.random.default_rng(1).integers(0, 2048, (4, frames))
    whole = decode_tokens(tiny_small, codes, chunk_s=None)
    chunked = decode_tokens(tiny_small, codes, chunk_s=1.0, context_s=0.5)
    assert chunked.shape == whole.shape == (1, frames * 640)
    error_db = 10 * np.log10(np.mean((chunked - whole) ** 2) / np.mean(whole**2))
    assert error_db < -60, error_db
