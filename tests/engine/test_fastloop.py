"""composer's decoding loop against transformers' generate, and its batching/sampling guarantees."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from composer.engine.codec import decode_tokens
from composer.engine.fastloop import FastDecoder, Row
from composer.engine.models import LoadedModel
from composer.engine.reference import capture_codes, captured_tokens
from composer.engine.types import Sampling
from composer.engine.weights import restore_weights

TEXT = "dark industrial ebm with an analog bass sequence"


def reference_greedy(lm: LoadedModel, text: str, prompt: np.ndarray, new_frames: int, cfg: float) -> np.ndarray:
    """transformers' generate, greedy, returning the new codes."""
    import torch

    k, channels = lm.spec.codebooks, lm.spec.channels
    inputs = lm.processor(text=[text], padding=True, return_tensors="pt").to(lm.device)
    extra: dict[str, Any] = {}
    if prompt.shape[1]:
        extra["decoder_input_ids"] = torch.as_tensor(prompt).reshape(k, -1)
    with capture_codes(lm) as captured, torch.inference_mode():
        lm.model.generate(**inputs, **extra, do_sample=False, guidance_scale=cfg if cfg > 1 else None,
                          max_new_tokens=new_frames + k // channels - 1)  # fmt: skip
    return captured_tokens(lm, captured)[:, prompt.shape[1] :]


def row(prompt: np.ndarray, frames: int, text: str = TEXT, seed: int = 1, **sampling: Any) -> Row:
    return Row(text, prompt, frames, seed, Sampling(**sampling))


@pytest.mark.parametrize("prompt_frames", [0, 1, 9])
@pytest.mark.parametrize("cfg", [3.0, 1.0])
def test_greedy_matches_transformers_tiny(tiny_small_fp32: LoadedModel, prompt_frames: int, cfg: float) -> None:
    prompt = np.random.default_rng(prompt_frames).integers(0, 2048, (4, prompt_frames))
    expected = reference_greedy(tiny_small_fp32, TEXT, prompt, 40, cfg)
    got = FastDecoder(tiny_small_fp32).generate([row(prompt, 40, cfg=cfg, greedy=True)])[0]
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
    seen: list[tuple[int, int, int]] = []
    FastDecoder(tiny_small).generate([row(np.zeros((4, 0), np.int64), 10)], lambda *a: seen.append(a))
    assert len(seen) == 10 + 3, "one report per decoding step (frames + delay steps)"
    assert seen[-1] == (0, 10, 10) and [d for _, d, _ in seen] == sorted(d for _, d, _ in seen)


@pytest.mark.parametrize("seconds", [3.0, 7.3])
def test_chunked_decode_matches_one_shot(tiny_small: LoadedModel, seconds: float) -> None:
    frames = int(seconds * 50)
    codes = np.random.default_rng(1).integers(0, 2048, (4, frames))
    whole = decode_tokens(tiny_small, codes, chunk_s=None)
    chunked = decode_tokens(tiny_small, codes, chunk_s=1.0, context_s=0.5)
    assert chunked.shape == whole.shape == (1, frames * 640)
    error_db = 10 * np.log10(np.mean((chunked - whole) ** 2) / np.mean(whole**2))
    assert error_db < -60, error_db


def test_mixed_prompts_and_lengths_in_one_batch_match_transformers(tiny_small_fp32: LoadedModel) -> None:
    """Every row steps at its own position: each equals transformers' greedy output for it alone."""
    rng = np.random.default_rng(7)
    specs = [(0, 30), (1, 12), (9, 25), (23, 6)]  # (prompt frames, new frames)
    rows = [row(rng.integers(0, 2048, (4, p)), n, text=f"{TEXT} {i}", greedy=True) for i, (p, n) in enumerate(specs)]
    got = FastDecoder(tiny_small_fp32).generate(rows)
    for r, codes in zip(rows, got, strict=True):
        assert np.array_equal(codes, reference_greedy(tiny_small_fp32, r.text, r.prompt, r.new_frames, 3.0))


def test_mixed_batch_matches_transformers_at_small_shapes(random_small: LoadedModel) -> None:
    rng = np.random.default_rng(5)
    rows = [row(np.zeros((4, 0), np.int64), 6, greedy=True), row(rng.integers(0, 2048, (4, 4)), 3, greedy=True)]
    got = FastDecoder(random_small).generate(rows)
    for r, codes in zip(rows, got, strict=True):
        assert np.array_equal(codes, reference_greedy(random_small, r.text, r.prompt, r.new_frames, 3.0))


@pytest.mark.slow
def test_compiled_step_is_one_graph_and_gives_the_eager_tokens(tiny_small_fp32: LoadedModel) -> None:
    """torch.compile(fullgraph=True): no graph break, one compilation for a 300+-step generation."""
    import torch
    from torch._dynamo.utils import counters

    rng = np.random.default_rng(2)
    rows = [row(np.zeros((4, 0), np.int64), 300, greedy=True), row(rng.integers(0, 2048, (4, 7)), 280, greedy=True)]
    decoder = FastDecoder(tiny_small_fp32)
    eager = decoder.generate(rows)
    torch._dynamo.reset()
    counters.clear()
    decoder.compile_step()  # inductor
    steps: list[int] = []
    compiled = decoder.generate(rows, lambda i, d, t: steps.append(d) if i == 0 else None, mode="compile")
    assert len(steps) >= 300
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert not counters["graph_break"], dict(counters["graph_break"])
    again = decoder.generate(rows[::-1], mode="compile")  # same batch size and bucket: no recompilation
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    for e, c, a in zip(eager, compiled, again[::-1], strict=True):
        assert np.array_equal(e, c) and np.array_equal(e, a)
    assert np.array_equal(eager[1], reference_greedy(tiny_small_fp32, TEXT, rows[1].prompt, 280, 3.0))


def test_weights_are_held_once_and_given_back(random_small: LoadedModel) -> None:
    """On the CPU the products' weights are packed once and the modules' copies released, so the decoder
    holds the checkpoint's bytes, not twice them; transformers' forward gets them back bit for bit."""
    model = random_small.model.decoder
    checkpoint = sum(p.numel() * p.element_size() for p in model.parameters())
    sums = {n: p.double().sum().item() for n, p in model.named_parameters()}
    whole = sum(p.numel() * p.element_size() for p in random_small.model.parameters())  # T5 and EnCodec too
    FastDecoder(random_small)
    decoder = FastDecoder(random_small)  # a second build shares the first's packed weights
    assert decoder.w.kernel == "float32" and decoder.w.heads.kernel == "float32"
    resident = sum(p.numel() * p.element_size() for p in model.parameters()) + decoder.w.nbytes()
    assert abs(resident - checkpoint) <= 0.05 * checkpoint, (resident, checkpoint)
    assert abs(random_small.weight_bytes() - whole) <= 0.05 * checkpoint  # packed bytes are counted
    restore_weights(model)  # what a forward of transformers' decoder triggers first (a hook)
    assert {n: p.double().sum().item() for n, p in model.named_parameters()} == sums


@pytest.fixture(scope="module")
def tiny_stereo_fp32(tiny_cache):  # type: ignore[no-untyped-def]
    from composer.engine.models import load_model
    from composer.settings import load_settings

    env = {"COMPOSER_CACHE_DIR": str(tiny_cache), "COMPOSER_MODELS": "tiny", "COMPOSER_DEVICE": "cpu",
           "HF_HUB_OFFLINE": "1", "COMPOSER_CPU_DTYPE": "float32"}  # fmt: skip
    return load_model("stereo-small", load_settings(env=env))


@pytest.mark.parametrize("prompt_frames", [0, 6])
def test_stereo_greedy_matches_transformers(tiny_stereo_fp32: LoadedModel, prompt_frames: int) -> None:
    """8 interleaved codebooks, each channel with its own delay pattern."""
    assert tiny_stereo_fp32.spec.codebooks == 8 and tiny_stereo_fp32.spec.channels == 2
    prompt = np.random.default_rng(prompt_frames).integers(0, 2048, (8, prompt_frames))
    expected = reference_greedy(tiny_stereo_fp32, TEXT, prompt, 30, 3.0)
    got = FastDecoder(tiny_stereo_fp32).generate([row(prompt, 30, greedy=True)])[0]
    assert got.shape == (8, 30) and np.array_equal(got, expected)


def test_stereo_codes_decode_to_two_channels(tiny_stereo_fp32: LoadedModel) -> None:
    from composer.engine.codec import channel_codes, encode_audio

    rng = np.random.default_rng(3)
    codes = rng.integers(0, 2048, (8, 40))
    audio = decode_tokens(tiny_stereo_fp32, codes)
    assert audio.shape == (2, 40 * 640)
    left = decode_tokens(tiny_stereo_fp32, np.repeat(channel_codes(codes, 2)[0], 2, axis=0))
    assert np.array_equal(audio[0], left[0]), "left codebooks are 0, 2, 4, 6"
    stereo = rng.standard_normal((2, 32000)).astype(np.float32) * 0.2
    assert encode_audio(tiny_stereo_fp32, stereo, 32000).shape == (8, 50)


def test_cpu_decoding_steps_attend_over_float32(tiny_cache, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With bfloat16 weights a CPU decoding step still attends over float32 keys and values (the cache and
    the text's) in the unfused form, never through torch's fused kernel, which took 2-4x longer over 64
    text tokens in bfloat16 (docs/benchmarks.md). The prefill may use it; the tokens stay seeded."""
    import torch
    import torch.nn.functional as F

    from composer.engine.models import load_model
    from composer.settings import load_settings

    env = {"COMPOSER_CACHE_DIR": str(tiny_cache), "COMPOSER_MODELS": "tiny", "COMPOSER_DEVICE": "cpu",
           "HF_HUB_OFFLINE": "1", "COMPOSER_CPU_DTYPE": "bfloat16"}  # fmt: skip
    lm = load_model("small", load_settings(env=env))
    decoder = FastDecoder(lm)
    assert decoder.dtype == torch.bfloat16
    fused, stepping, states = [], [False], []
    sdpa, step = F.scaled_dot_product_attention, FastDecoder.step

    def spy(*args: Any, **kwargs: Any) -> Any:
        if stepping[0]:
            fused.append(args[0].dtype)
        return sdpa(*args, **kwargs)

    def watched(self: FastDecoder, state: Any, windows: Any = None) -> None:
        states.append(state)
        stepping[0] = True
        try:
            step(self, state, windows)
        finally:
            stepping[0] = False

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    monkeypatch.setattr(FastDecoder, "step", watched)
    first = decoder.generate([row(np.zeros((4, 3), np.int64), 20), row(np.zeros((4, 0), np.int64), 12, seed=2)])
    assert states and fused == []
    assert states[0].cache_k.dtype == states[0].cross_k.dtype == states[0].cross_v.dtype == torch.float32
    again = decoder.generate([row(np.zeros((4, 3), np.int64), 20)])
    assert np.array_equal(first[0], again[0])
