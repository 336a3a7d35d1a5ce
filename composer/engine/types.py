"""The values that cross the engine's boundary (no torch here).

A :class:`Request` goes in, a :class:`Take` comes out; the cache stores takes, assembly and export
read them. :class:`Sampling` is the one shape of sampling settings from the plan down to the
decoding step, and :class:`ModelSpec` holds the facts about a checkpoint that the rest of the
engine needs, read from its config.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from composer.engine.catalog import DEFAULT_STRIDE_S, WINDOW_S

# (index of the request in its batch, frames done, frames total)
ProgressFn = Callable[[int, int, int], None]


@dataclass(frozen=True)
class Sampling:
    """How codes are sampled at each step."""

    cfg: float = 3.0  # classifier-free guidance scale; 1 disables it
    top_k: int = 250  # sample among the k most likely codes; 0 disables top-k
    top_p: float = 0.0  # nucleus mass; 0 (or 1) disables it
    temperature: float = 1.0  # logits are divided by it
    greedy: bool = False  # take the most likely code (tests and checks; ignores the rest)


@dataclass(frozen=True)
class Request:
    """One segment to generate."""

    text: str
    duration_s: float  # new audio, not counting the prompt
    seed: int
    sampling: Sampling = field(default_factory=Sampling)
    prompt_tokens: np.ndarray | None = None  # (codebooks, frames): continue from these codes
    window_s: float = WINDOW_S
    stride_s: float = DEFAULT_STRIDE_S
    melody: np.ndarray | None = None  # (channels, samples) reference audio for melody models
    melody_rate: int = 0  # sample rate of ``melody``


@dataclass
class Take:
    """A finished segment: tokens and audio (continuation prompt included) with where they came from."""

    tokens: np.ndarray  # int64 (codebooks, frames), prompt frames first
    prompt_frames: int
    audio: np.ndarray  # float32 (channels, frames * hop), the decode of all tokens
    sample_rate: int
    frame_rate: int
    key: str = ""  # the cache key (empty until the runner files it)
    provenance: dict[str, Any] = field(default_factory=dict)  # model, revision, engine, device, dtype, batch...

    @property
    def hop(self) -> int:
        return self.sample_rate // self.frame_rate

    @property
    def channels(self) -> int:
        return int(self.audio.shape[0])

    @property
    def new_tokens(self) -> np.ndarray:
        return self.tokens[:, self.prompt_frames :]

    @property
    def new_audio(self) -> np.ndarray:
        """The audio after the prompt (the prompt's re-decode trimmed off)."""
        return self.audio[:, self.prompt_frames * self.hop :]


@dataclass(frozen=True)
class ModelSpec:
    """Facts about a loaded checkpoint, read from its config."""

    kind: str  # "text" (MusicgenForConditionalGeneration) or "melody" (MusicgenMelody...)
    codebooks: int  # codes per frame: 4 mono, 8 stereo (left/right interleaved)
    vocab: int  # real codes per codebook (2048); the pad/bos code is ``pad``
    pad: int
    channels: int  # audio channels the codec produces
    sample_rate: int
    frame_rate: int
    layers: int
    hidden: int
    heads: int
    max_positions: int  # the decoder's position table
    chroma_length: int = 0  # melody models: chroma frames prepended to the text (235 = 30 s)

    @property
    def hop(self) -> int:
        return self.sample_rate // self.frame_rate

    def frames(self, duration_s: float) -> int:
        """Frames for a duration, at least one: enough to cover it (assembly trims to the sample)."""
        return max(1, math.ceil(duration_s * self.frame_rate - 1e-6))
