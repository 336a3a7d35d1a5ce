"""Melody models: the chroma composer computes, and the fast loop's prefix conditioning against transformers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from composer.engine.chroma import FRAMES_PER_S, chroma, window_chroma
from composer.engine.factory import wrap
from composer.engine.fastloop import FastDecoder, Row
from composer.engine.models import LoadedModel
from composer.engine.types import Request, Sampling
from composer.errors import EngineError

TEXT = "dark industrial ebm with an analog bass sequence"


def sine(hz: float, seconds: float = 3.0, rate: int = 44100) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)[None]


@pytest.mark.parametrize(("hz", "pitch_class"), [(440.0, 9), (261.63, 0), (392.0, 7), (155.56, 3)])
def test_chroma_names_the_pitch_class_of_a_tone(hz: float, pitch_class: int) -> None:
    """One-hot per frame on the tone's pitch class (C = 0 ... A = 9), at any input rate."""
    frames = chroma(sine(hz), 44100)
    assert frames.shape == (int(3.0 * 32000) // 4096 + 1, 12)
    assert np.all(frames.sum(1) == 1) and np.all(frames.argmax(1) == pitch_class)


def test_window_chroma_loops_a_short_reference_and_follows_the_window() -> None:
    full = np.eye(12, dtype=np.float32)[[0, 1, 2]]  # three frames: C, C#, D
    assert window_chroma(full, 0.0, 7).argmax(1).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert window_chroma(full, 1 / FRAMES_PER_S, 4).argmax(1).tolist() == [1, 2, 0, 1]


@pytest.fixture(scope="module")
def tiny_melody(tiny_cache: Path) -> LoadedModel:
    from composer.engine.models import load_model
    from composer.settings import load_settings

    env = {"COMPOSER_CACHE_DIR": str(tiny_cache), "COMPOSER_MODELS": "tiny", "COMPOSER_DEVICE": "cpu",
           "HF_HUB_OFFLINE": "1", "COMPOSER_CPU_DTYPE": "float32"}  # fmt: skip
    return load_model("melody", load_settings(env=env))


@pytest.mark.parametrize("with_melody", [False, True])
@pytest.mark.parametrize("prompt_frames", [0, 6])
def test_melody_greedy_matches_transformers(tiny_melody: LoadedModel, with_melody: bool, prompt_frames: int) -> None:
    assert tiny_melody.spec.kind == "melody" and tiny_melody.spec.chroma_length == 235
    prompt = np.random.default_rng(prompt_frames).integers(0, 2048, (4, prompt_frames))
    request = Request(TEXT, 0.6, 1, Sampling(greedy=True), prompt_tokens=prompt,
                      melody=sine(440.0) if with_melody else None, melody_rate=44100)  # fmt: skip
    fast = wrap("fast", tiny_melody).generate([request])[0]
    reference = wrap("transformers", tiny_melody).generate([request])[0]
    assert fast.tokens.shape == (4, prompt_frames + 30)
    assert np.array_equal(fast.tokens, reference.tokens)


def test_melody_conditions_and_batches_independently(tiny_melody: LoadedModel) -> None:
    """The melody changes the tokens; a row with a melody and one without batch as they run alone."""
    g = Sampling(greedy=True)
    a4 = np.eye(12, dtype=np.float32)[[9] * 20]
    c4 = np.eye(12, dtype=np.float32)[[0] * 20]
    decoder = FastDecoder(tiny_melody)
    rows = [Row(TEXT, np.zeros((4, 0), np.int64), 20, 1, g, a4), Row("calm drone", np.zeros((4, 4), np.int64), 12, 2)]
    batch = decoder.generate(rows)
    for r, got in zip(rows, batch, strict=True):
        assert np.array_equal(got, decoder.generate([r])[0])
    other = decoder.generate([Row(TEXT, np.zeros((4, 0), np.int64), 20, 1, g, c4)])[0]
    assert not np.array_equal(batch[0], other), "a different melody gives different codes"


def test_a_melody_for_a_text_model_is_refused(tiny_small: LoadedModel) -> None:
    with pytest.raises(EngineError, match="not a melody model"):
        wrap("fast", tiny_small).generate([Request(TEXT, 0.5, 1, melody=sine(440.0), melody_rate=44100)])
