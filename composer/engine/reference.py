"""The reference engine: transformers' ``generate``, one request at a time.

Tokens are captured as ``generate`` hands them to the codec, so later stages continue at token
level (no lossy re-encode). Each request samples from torch's global RNG seeded with the request's
seed inside a fork that restores it afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from composer.engine.base import EngineBase, Planned
from composer.engine.codec import interleave
from composer.engine.types import ProgressFn, Sampling
from composer.errors import EngineError

if TYPE_CHECKING:
    from composer.engine.models import LoadedModel


class TransformersEngine(EngineBase):
    """transformers' ``generate`` behind the engine contract (eager attention, one request at a time)."""

    name = "transformers"

    def max_batch(self, requests: list[Any], limit: int) -> int:
        return 1

    def _tokens(self, plans: list[Planned], progress: ProgressFn) -> None:
        import torch

        lm = self.lm
        for index, plan in enumerate(plans):
            done = 0

            def step(index: int = index, plan: Planned = plan) -> None:
                nonlocal done
                done = min(done + 1, plan.frames)
                progress(index, done, plan.frames)

            forked = [lm.device] if lm.device.type == "cuda" else []
            with torch.random.fork_rng(devices=forked), torch.inference_mode():
                torch.manual_seed(plan.request.seed)
                for win in plan.windows:
                    context = (
                        plan.tokens[:, plan.tokens.shape[1] - win.context_frames :] if win.context_frames else None
                    )
                    chroma = plan.window_chroma(win, self.spec.frame_rate, self.spec.chroma_length)
                    new = generate_window(
                        lm,
                        plan.request.text,
                        context,
                        win.new_frames,
                        plan.request.sampling,
                        on_step=step,
                        chroma=chroma,
                    )
                    plan.tokens = np.concatenate([plan.tokens, new], axis=1)
                    done = win.start_frame + win.new_frames


class _StepCounter:
    """A logits processor that only counts decoding steps (for progress); scores pass unchanged."""

    def __init__(self, on_step: Callable[[], None]):
        self.on_step = on_step

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.on_step()
        return scores


@contextlib.contextmanager
def capture_codes(lm: LoadedModel) -> Iterator[list[Any]]:
    """Intercept the codec decode at the end of transformers' ``generate``.

    ``generate`` hands the finished, un-delayed codes (prompt included) to ``audio_encoder.decode``
    (twice for stereo: left codebooks, then right) and returns only audio. We keep the codes and
    skip that decode: composer decodes itself (and, for windowed generation, only once at the end).
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


def captured_tokens(lm: LoadedModel, captured: list[Any]) -> np.ndarray:
    """The (codebooks, frames) codes of the first batch row from what :func:`capture_codes` saw."""
    per_channel = [c[0, 0].numpy().astype(np.int64) for c in captured]  # (1 chunk, batch, k, frames)
    return interleave(per_channel) if len(per_channel) > 1 else per_channel[0]


def generate_window(
    lm: LoadedModel,
    text: str,
    context: np.ndarray | None,
    new_frames: int,
    sampling: Sampling,
    *,
    on_step: Callable[[], None],
    chroma: np.ndarray | None = None,
) -> np.ndarray:
    """One ``generate`` call; returns the new frames only, (codebooks, new_frames).

    ``chroma`` (frames, 12) conditions a melody model (None: the null melody).
    """
    import torch
    from transformers import LogitsProcessorList

    spec = lm.spec
    k = spec.codebooks
    inputs = lm.tokenizer(text=[text], padding=True, return_tensors="pt").to(lm.device)
    kwargs: dict[str, Any] = {}
    if chroma is not None:
        kwargs["input_features"] = torch.as_tensor(chroma, dtype=lm.dtype, device=lm.device)[None]
    p = 0
    if context is not None:
        p = context.shape[1]
        kwargs["decoder_input_ids"] = torch.as_tensor(context, device=lm.device).reshape(k, p)
    sample = {"do_sample": False} if sampling.greedy else {
        "do_sample": True, "top_k": sampling.top_k, "temperature": sampling.temperature,
        "top_p": sampling.top_p if 0 < sampling.top_p < 1 else 1.0,
    }  # fmt: skip
    with capture_codes(lm) as captured:
        lm.model.generate(
            **inputs,
            **kwargs,
            **sample,
            guidance_scale=sampling.cfg if sampling.cfg > 1 else None,
            max_new_tokens=new_frames + k // spec.channels - 1,  # the delay pattern costs extra steps
            logits_processor=LogitsProcessorList([_StepCounter(on_step)]),
        )
    codes = captured_tokens(lm, captured)
    if codes.shape != (k, p + new_frames):
        raise EngineError(f"generation returned codes of shape {tuple(codes.shape)}, expected {(k, p + new_frames)}")
    return codes[:, p:]
