"""Generation: text (and optionally a continuation prompt) in, tokens and audio out.

This is the reference path, built on transformers' ``generate``. Tokens are captured as they are
sampled so that later stages can continue at token level (no lossy re-encode). Generations longer
than one model window use windowed continuation (:mod:`composer.engine.windows`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np

from composer.engine.catalog import DEFAULT_STRIDE_S, WINDOW_S
from composer.engine.models import LoadedModel
from composer.engine.windows import Window, plan_windows
from composer.errors import EngineError

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]  # (frames done, frames total)
Engine = Literal["fast", "transformers"]
DECODE_CHUNK_S = 10.0  # EnCodec decodes in chunks of this length, so memory does not grow with duration
DECODE_CONTEXT_S = 2.0  # decoded on each side of a chunk and thrown away (the decoder's LSTM needs history)


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


def generate(
    lm: LoadedModel, request: GenerationRequest, progress: ProgressFn | None = None, engine: Engine = "fast"
) -> GenerationResult:
    """Generate one segment, windowed when longer than one model window.

    Args:
        lm: a loaded model.
        request: text, length, seed, sampling, optional continuation prompt.
        progress: called with (frames done, frames total) as decoding goes.
        engine: "fast" (composer's decoding loop) or "transformers" (the reference ``generate``).

    Returns:
        Tokens (prompt + new) and their decoded audio.

    Raises:
        EngineError: an impossible request (prompt longer than a window, bad shapes).
    """
    return generate_batch(lm, [request], progress, engine)[0]


def generate_batch(
    lm: LoadedModel,
    requests: list[GenerationRequest],
    progress: ProgressFn | None = None,
    engine: Engine = "fast",
    decode_chunk_s: float | None = DECODE_CHUNK_S,
) -> list[GenerationResult]:
    """Generate several segments; with the fast engine, each model window runs as one batch.

    A segment's tokens do not depend on the batch it ran in: every window samples from its own
    generator seeded from (seed, window index). The transformers engine runs one request at a time.

    Args:
        lm: a loaded model.
        requests: the segments.
        progress: called with (frames done, frames total) summed over the batch.
        engine: "fast" or "transformers".
        decode_chunk_s: EnCodec decode chunk length (None: decode in one pass).

    Raises:
        EngineError: an impossible request.
    """
    fr = lm.frame_rate
    plans = []
    for request in requests:
        prompt = _check_prompt(request.prompt_tokens, lm.num_codebooks)
        total = n_frames(request.duration_s, fr)
        try:
            windows = plan_windows(
                total, 0 if prompt is None else prompt.shape[1], int(round(request.window_s * fr)),
                int(round(request.stride_s * fr)),
            )  # fmt: skip
        except ValueError as exc:
            raise EngineError(f"cannot generate {request.duration_s:g} s: {exc}") from None
        start = prompt if prompt is not None else np.zeros((lm.num_codebooks, 0), dtype=np.int64)
        plans.append((request, windows, start))
    grand_total = sum(n_frames(r.duration_s, fr) for r in requests)
    tokens = [start for _, _, start in plans]
    done_before = 0

    def report(done: int) -> None:
        if progress is not None:
            progress(min(done_before + done, grand_total), grand_total)

    if engine == "transformers":
        for i, (request, windows, _) in enumerate(plans):
            tokens[i] = _reference_windows(lm, request, windows, tokens[i], report)
            done_before += n_frames(request.duration_s, fr)
    elif engine == "fast":
        from composer.engine.fastloop import FastDecoder, Row

        decoder = lm.derived.get("fast_decoder")
        if decoder is None:  # fusing q/k/v and stacking heads copies weights: once per loaded model
            decoder = lm.derived["fast_decoder"] = FastDecoder(lm)
        for w in range(max(len(windows) for _, windows, _ in plans)):
            active = [i for i, (_, windows, _) in enumerate(plans) if w < len(windows)]
            rows = []
            for i in active:
                request, windows, _ = plans[i]
                win = windows[w]
                context = tokens[i][:, tokens[i].shape[1] - win.context_frames :]
                s = request.sampling
                rows.append(Row(request.text, context, win.new_frames, derive_window_seed(request.seed, w),
                                s.guidance_scale, s.top_k, s.top_p, s.temperature))  # fmt: skip
            window_frames = sum(r.new_frames for r in rows)

            def on_step(done: int, total: int, frames: int = window_frames) -> None:
                report(done * frames // total)

            new = decoder.generate(rows, on_step=on_step)
            for i, frames in zip(active, new, strict=True):
                tokens[i] = np.concatenate([tokens[i], frames], axis=1)
            done_before += window_frames
    else:
        raise EngineError(f"unknown engine {engine!r}; use fast or transformers")
    results = []
    for (request, _, start), codes in zip(plans, tokens, strict=True):
        audio = decode_tokens(lm, codes, chunk_s=decode_chunk_s)
        if not np.isfinite(audio).all():  # fp16 overflow in the codec: never let NaN reach a file
            bad = int(np.size(audio) - np.isfinite(audio).sum())
            log.warning("decoded audio for %r had %d NaN/inf samples; they were set to silence", request.text[:40], bad)
            audio = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
        results.append(GenerationResult(codes, start.shape[1], audio, lm.sample_rate, fr))
    return results


def derive_window_seed(seed: int, window: int) -> int:
    """The fast engine's seed for one window of a segment (window 0 uses the segment seed)."""
    if window == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:window:{window}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _reference_windows(
    lm: LoadedModel,
    request: GenerationRequest,
    windows: list[Window],
    tokens: np.ndarray,
    report: Callable[[int], None],
) -> np.ndarray:
    """transformers' generate, window by window, under one seeded global RNG (restored afterwards)."""
    import torch

    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        report(done)

    with torch.random.fork_rng(devices=[lm.device] if lm.device.type == "cuda" else []), torch.inference_mode():
        torch.manual_seed(request.seed)
        for win in windows:
            context = tokens[:, tokens.shape[1] - win.context_frames :] if win.context_frames else None
            new = _generate_window(lm, request.text, context, win.new_frames, request.sampling, step)
            tokens = np.concatenate([tokens, new], axis=1)
            done = win.start_frame + win.new_frames
    return tokens


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


def decode_tokens(
    lm: LoadedModel, tokens: np.ndarray, chunk_s: float | None = DECODE_CHUNK_S, context_s: float = DECODE_CONTEXT_S
) -> np.ndarray:
    """EnCodec-decode (codebooks, frames) codes to float32 audio (1, frames * hop).

    With ``chunk_s``, the codes are decoded in chunks, each with ``context_s`` of codes decoded on
    both sides and discarded, so peak memory stays flat however long the segment is.
    """
    import torch

    hop = lm.sample_rate // lm.frame_rate
    frames = tokens.shape[1]
    chunk = frames if chunk_s is None else max(1, int(round(chunk_s * lm.frame_rate)))
    context = int(round(context_s * lm.frame_rate))
    pieces = []
    with torch.inference_mode():
        for start in range(0, frames, chunk):
            end = min(frames, start + chunk)
            lo, hi = (start, end) if chunk >= frames else (max(0, start - context), min(frames, end + context))
            codes = torch.as_tensor(tokens[:, lo:hi], device=lm.device)[None, None]  # (1 chunk, batch 1, k, n)
            audio = lm.model.audio_encoder.decode(codes, audio_scales=[None]).audio_values[0].float().cpu().numpy()
            pieces.append(audio[:, (start - lo) * hop : (end - lo) * hop])
    return np.ascontiguousarray(np.concatenate(pieces, axis=1), dtype=np.float32)


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
        codec_dtype = next(lm.model.audio_encoder.parameters()).dtype
        x = torch.as_tensor(mono, device=lm.device, dtype=codec_dtype)[None]  # (1, 1, samples)
        codes = lm.model.audio_encoder.encode(x, bandwidth=None).audio_codes  # (1, 1, k, frames)
    return codes[0, 0].cpu().numpy().astype(np.int64)
