"""Generation: text (and optionally a continuation prompt) in, tokens and audio out.

This is the reference path, built on transformers' ``generate``. Tokens are captured as they are
sampled so that later stages can continue at token level (no lossy re-encode). Generations longer
than one model window use windowed continuation (:mod:`composer.engine.windows`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from composer.engine.catalog import DEFAULT_STRIDE_S, WINDOW_S
from composer.engine.models import LoadedModel
from composer.engine.windows import plan_windows
from composer.errors import EngineError

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]  # (frames done, frames total)


@dataclass(frozen=True)
class SamplingParams:
    """How codes are sampled at each step."""

    guidance_scale: float = 3.0  # classifier-free guidance; 1 disables it
    top_k: int = 250  # 0 disables top-k
    top_p: float = 0.0  # 0 disables nucleus sampling
    temperature: float = 1.0


@dataclass(frozen=True)
class GenerationRequest:
    """One segment to generate."""

    text: str
    duration_s: float  # new audio, not counting the prompt
    seed: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    prompt_tokens: np.ndarray | None = None  # (codebooks, frames): continue from these codes
    window_s: float = WINDOW_S
    stride_s: float = DEFAULT_STRIDE_S


@dataclass
class GenerationResult:
    """Tokens and audio of one generation, continuation prompt included."""

    tokens: np.ndarray  # int64 (codebooks, frames), prompt frames first
    prompt_frames: int
    audio: np.ndarray  # float32 (1, frames * hop), the decode of all tokens
    sample_rate: int
    frame_rate: int

    @property
    def hop(self) -> int:
        return self.sample_rate // self.frame_rate

    @property
    def new_tokens(self) -> np.ndarray:
        return self.tokens[:, self.prompt_frames :]

    @property
    def new_audio(self) -> np.ndarray:
        """The audio after the prompt (the prompt's re-decode trimmed off)."""
        return self.audio[:, self.prompt_frames * self.hop :]


class _StepCounter:
    """A logits processor that only counts decoding steps (for progress); scores pass unchanged."""

    def __init__(self, on_step: Callable[[], None]):
        self.on_step = on_step

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.on_step()
        return scores


@contextlib.contextmanager
def _capture_codes(lm: LoadedModel) -> Iterator[list[Any]]:
    """Intercept the codec decode at the end of transformers' ``generate``.

    ``generate`` hands the finished, un-delayed codes (prompt included) to
    ``audio_encoder.decode`` and returns only audio. We keep the codes and skip that decode:
    composer decodes itself (and, for windowed generation, only once at the end).
    """
    captured: list[Any] = []
    encoder = lm.model.audio_encoder

    def fake_decode(audio_codes: Any, *args: Any, **kwargs: Any) -> Any:
        captured.append(audio_codes.detach().to("cpu"))
        return SimpleNamespace(audio_values=audio_codes.new_zeros((audio_codes.shape[1], 1, 1), dtype=lm.dtype))

    encoder.decode = fake_decode  # instance attribute shadows the method
    try:
        yield captured
    finally:
        del encoder.decode


def n_frames(duration_s: float, frame_rate: int) -> int:
    """Frames for a duration, at least one."""
    return max(1, round(duration_s * frame_rate))


def generate(lm: LoadedModel, request: GenerationRequest, progress: ProgressFn | None = None) -> GenerationResult:
    """Generate one segment, windowed when longer than one model window.

    Args:
        lm: a loaded model.
        request: text, length, seed, sampling, optional continuation prompt.
        progress: called with (frames done, frames total) after every decoding step.

    Returns:
        Tokens (prompt + new) and their decoded audio.

    Raises:
        EngineError: an impossible request (prompt longer than a window, bad shapes).
    """
    import torch

    fr = lm.frame_rate
    total = n_frames(request.duration_s, fr)
    window = int(round(request.window_s * fr))
    stride = int(round(request.stride_s * fr))
    prompt = _check_prompt(request.prompt_tokens, lm.num_codebooks)
    prompt_frames = 0 if prompt is None else prompt.shape[1]
    try:
        windows = plan_windows(total, prompt_frames, window, stride)
    except ValueError as exc:
        raise EngineError(f"cannot generate {request.duration_s:g} s: {exc}") from None

    tokens = prompt if prompt is not None else np.zeros((lm.num_codebooks, 0), dtype=np.int64)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(done, total), total)

    with torch.random.fork_rng(devices=[lm.device] if lm.device.type == "cuda" else []), torch.inference_mode():
        torch.manual_seed(request.seed)
        for win in windows:
            context = tokens[:, tokens.shape[1] - win.context_frames :] if win.context_frames else None
            new = _generate_window(lm, request.text, context, win.new_frames, request.sampling, step)
            tokens = np.concatenate([tokens, new], axis=1)
            done = win.start_frame + win.new_frames
    audio = decode_tokens(lm, tokens)
    return GenerationResult(tokens, prompt_frames, audio, lm.sample_rate, fr)


def _check_prompt(prompt: np.ndarray | None, codebooks: int) -> np.ndarray | None:
    if prompt is None:
        return None
    prompt = np.asarray(prompt)
    if prompt.ndim != 2 or prompt.shape[0] != codebooks:
        raise EngineError(f"prompt tokens must have shape ({codebooks}, frames), got {prompt.shape}")
    if prompt.shape[1] == 0:
        return None
    if prompt.min() < 0 or prompt.max() >= 2048:
        raise EngineError("prompt tokens must be codes in 0..2047")
    return prompt.astype(np.int64)


def _generate_window(
    lm: LoadedModel,
    text: str,
    context: np.ndarray | None,
    new_frames: int,
    sampling: SamplingParams,
    on_step: Callable[[], None],
) -> np.ndarray:
    """One ``generate`` call; returns the new frames only, (codebooks, new_frames)."""
    import torch
    from transformers import LogitsProcessorList

    k = lm.num_codebooks
    inputs = lm.processor(text=[text], padding=True, return_tensors="pt").to(lm.device)
    kwargs: dict[str, Any] = {}
    p = 0
    if context is not None:
        p = context.shape[1]
        kwargs["decoder_input_ids"] = torch.as_tensor(context, device=lm.device).reshape(k, p)
    with _capture_codes(lm) as captured:
        lm.model.generate(
            **inputs,
            **kwargs,
            do_sample=True,
            guidance_scale=sampling.guidance_scale if sampling.guidance_scale > 1 else None,
            top_k=sampling.top_k,
            top_p=sampling.top_p if 0 < sampling.top_p < 1 else 1.0,
            temperature=sampling.temperature,
            max_new_tokens=new_frames + k - 1,  # the delay pattern costs k-1 extra steps
            logits_processor=LogitsProcessorList([_StepCounter(on_step)]),
        )
    codes = captured[0][0, 0]  # (1 chunk, batch, k, prompt + new) -> (k, prompt + new)
    if codes.shape != (k, p + new_frames):
        raise EngineError(f"generation returned codes of shape {tuple(codes.shape)}, expected {(k, p + new_frames)}")
    return codes[:, p:].numpy().astype(np.int64)


def decode_tokens(lm: LoadedModel, tokens: np.ndarray) -> np.ndarray:
    """EnCodec-decode (codebooks, frames) codes to float32 audio (1, frames * hop)."""
    import torch

    with torch.inference_mode():
        codes = torch.as_tensor(tokens, device=lm.device)[None, None]  # (1 chunk, batch 1, k, frames)
        audio = lm.model.audio_encoder.decode(codes, audio_scales=[None]).audio_values
    out = audio[0].float().cpu().numpy()
    expected = tokens.shape[1] * (lm.sample_rate // lm.frame_rate)
    return np.ascontiguousarray(out[:, :expected], dtype=np.float32)


def encode_audio(lm: LoadedModel, audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """EnCodec-encode audio (channels, samples) at any rate to codes (codebooks, frames)."""
    import torch

    from composer.audio.dsp import resample, to_mono

    mono = resample(to_mono(audio), sample_rate, lm.sample_rate)
    hop = lm.sample_rate // lm.frame_rate
    mono = mono[:, : mono.shape[1] // hop * hop]
    if mono.shape[1] == 0:
        raise EngineError("continuation audio is shorter than one codec frame (20 ms)")
    with torch.inference_mode():
        x = torch.as_tensor(mono, device=lm.device, dtype=lm.dtype)[None]  # (1, 1, samples)
        codes = lm.model.audio_encoder.encode(x, bandwidth=None).audio_codes  # (1, 1, k, frames)
    return codes[0, 0].cpu().numpy().astype(np.int64)
