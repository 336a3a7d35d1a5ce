"""Engine behaviour on the tiny model: determinism, continuation, windowing, lengths."""

from __future__ import annotations

import numpy as np
import pytest

from composer.engine.codec import decode_tokens, encode_audio
from composer.engine.factory import wrap
from composer.engine.models import LoadedModel
from composer.engine.types import ProgressFn, Request, Take
from composer.errors import EngineError

TEXT = "dark industrial ebm, 128 bpm, analog bass sequence"


def generate(lm: LoadedModel, request: Request, progress: ProgressFn | None = None, engine: str = "fast") -> Take:
    return wrap(engine, lm).generate([request], progress)[0]


def test_same_seed_same_tokens_and_audio(tiny_small) -> None:  # type: ignore[no-untyped-def]
    a = generate(tiny_small, Request(TEXT, 1.0, seed=7))
    b = generate(tiny_small, Request(TEXT, 1.0, seed=7))
    assert a.tokens.shape == (4, 50)
    assert np.array_equal(a.tokens, b.tokens)
    assert np.array_equal(a.audio, b.audio)


def test_different_seed_or_text_differs(tiny_small) -> None:  # type: ignore[no-untyped-def]
    a = generate(tiny_small, Request(TEXT, 1.0, seed=7))
    b = generate(tiny_small, Request(TEXT, 1.0, seed=8))
    c = generate(tiny_small, Request("calm ambient drone", 1.0, seed=7))
    assert not np.array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)
    assert np.abs(a.audio - b.audio).max() > 1e-3, "different codes must decode to different audio"


def test_seed_does_not_leak_global_rng(tiny_small) -> None:  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generate(tiny_small, Request(TEXT, 0.2, seed=1))
    assert torch.equal(torch.rand(3), expected)


def test_audio_length_matches_frames(tiny_small) -> None:  # type: ignore[no-untyped-def]
    result = generate(tiny_small, Request(TEXT, 0.73, seed=1))
    frames = 37  # 0.73 s is 36.5 frames: whole frames cover it (assembly trims to the sample)
    assert result.tokens.shape == (4, frames)
    assert result.audio.shape == (1, frames * 640) and result.audio.dtype == np.float32
    assert np.isfinite(result.audio).all() and np.abs(result.audio).max() > 0


def test_continuation_starts_from_prompt(tiny_small) -> None:  # type: ignore[no-untyped-def]
    first = generate(tiny_small, Request(TEXT, 1.0, seed=3))
    prompt = first.tokens[:, -20:]
    cont = generate(tiny_small, Request(TEXT, 0.6, seed=4, prompt_tokens=prompt))
    assert cont.prompt_frames == 20
    assert np.array_equal(cont.tokens[:, :20], prompt)
    assert cont.new_tokens.shape == (4, 30)
    assert cont.new_audio.shape == (1, 30 * 640)
    # the prompt changes what comes next: same seed without the prompt differs
    plain = generate(tiny_small, Request(TEXT, 0.6, seed=4))
    assert not np.array_equal(plain.tokens, cont.new_tokens)


def test_windowed_generation_lengths_and_determinism(tiny_small) -> None:  # type: ignore[no-untyped-def]
    # a 1 s window with a 0.6 s stride stands in for 30 s / 18 s: 2.5 s needs 1 + 3 windows
    req = Request(TEXT, 2.5, seed=5, window_s=1.0, stride_s=0.6)
    a = generate(tiny_small, req)
    assert a.tokens.shape == (4, 125) and a.audio.shape == (1, 125 * 640)
    assert np.array_equal(a.tokens, generate(tiny_small, req).tokens)
    one_window = generate(tiny_small, Request(TEXT, 2.5, seed=5))
    # the first window is the same generation, except its last k-1 frames of the later codebooks: at a
    # window's end the delay pattern pads the finished codebooks (as transformers does)
    assert np.array_equal(a.tokens[:, :47], one_window.tokens[:, :47])
    assert not np.array_equal(a.tokens[:, 50:], one_window.tokens[:, 50:])


def test_progress_reports_every_frame(tiny_small) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[int, int]] = []
    generate(tiny_small, Request(TEXT, 0.5, seed=1), progress=lambda i, d, t: seen.append((d, t)))
    assert seen[-1] == (25, 25)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_encode_decode_round_trip_shapes(tiny_small) -> None:  # type: ignore[no-untyped-def]
    rate = 44100
    t = np.arange(rate) / rate
    stereo = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)]).astype(np.float32) * 0.3
    codes = encode_audio(tiny_small, stereo, rate)
    assert codes.shape == (4, 50) and codes.min() >= 0 and codes.max() < 2048
    noise = np.random.default_rng(0).standard_normal((1, rate)).astype(np.float32) * 0.3
    assert not np.array_equal(codes, encode_audio(tiny_small, noise, rate)), "codes depend on the audio"
    audio = decode_tokens(tiny_small, codes)
    assert audio.shape == (1, 32000)


def test_bad_prompts_rejected(tiny_small) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EngineError, match="shape"):
        generate(tiny_small, Request(TEXT, 1.0, seed=1, prompt_tokens=np.zeros((3, 5), dtype=np.int64)))
    with pytest.raises(EngineError, match="0..2047"):
        generate(tiny_small, Request(TEXT, 1.0, seed=1, prompt_tokens=np.full((4, 5), 2048)))
    with pytest.raises(EngineError, match="shorter than the window"):
        long_prompt = np.zeros((4, 1500), dtype=np.int64)
        generate(tiny_small, Request(TEXT, 1.0, seed=1, prompt_tokens=long_prompt))


@pytest.mark.parametrize("engine", ["fast", "transformers"])
def test_both_engines_keep_the_contract(tiny_small_fp32, engine: str) -> None:  # type: ignore[no-untyped-def]
    from composer.engine.types import Sampling

    lm = tiny_small_fp32
    greedy = Sampling(greedy=True)
    prompt = np.random.default_rng(4).integers(0, 2048, (4, 7))
    takes = wrap(engine, lm).generate([Request(TEXT, 0.4, seed=2, sampling=greedy, prompt_tokens=prompt)])
    take = takes[0]
    assert take.tokens.shape == (4, 27) and take.prompt_frames == 7 and take.channels == 1
    assert take.provenance["engine"] == engine and take.provenance["dtype"] == "float32"
    other = "transformers" if engine == "fast" else "fast"
    same = wrap(other, lm).generate([Request(TEXT, 0.4, seed=2, sampling=greedy, prompt_tokens=prompt)])[0]
    assert np.array_equal(take.tokens, same.tokens), "greedy: both engines give the same tokens"
