"""The engine contract: a loaded model that turns requests into takes.

:func:`composer.engine.factory.open_engine` loads a model (through
:func:`composer.engine.models.load_model`, the only door to weights) behind one of two engines with
the same contract:

- ``fast`` (:class:`composer.engine.fast.FastEngine`): composer's static decoding loop, batched;
- ``transformers`` (:class:`composer.engine.reference.TransformersEngine`): transformers' ``generate``,
  one request at a time, the reference.

Everything model-specific lives behind the contract: codebooks, pad code, channels and frame
rate from the checkpoint's config (:class:`~composer.engine.types.ModelSpec`), memory sizing,
out-of-memory detection, window seeding, codec decoding. The render layer only schedules.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from composer.engine.codec import DECODE_CHUNK_S, channel_codes, decode_many, decode_tokens, encode_audio, interleave
from composer.engine.types import ModelSpec, ProgressFn, Request, Take
from composer.engine.windows import Window, plan_windows
from composer.errors import EngineError

if TYPE_CHECKING:
    from composer.engine.models import LoadedModel

log = logging.getLogger(__name__)

MEMORY_HEADROOM = 0.6  # share of the free GPU memory a batch's working memory may take
DECODE_CHUNK_BYTES_PER_S = 30e6  # EnCodec activations (fp16) per second of a decode chunk incl. context


class OutOfMemory(EngineError):
    """The device ran out of memory; the runner may retry with less at once."""


@dataclass(frozen=True)
class MemoryNeed:
    """Device memory a batch needs, in bytes."""

    weights: int  # decoder + codec (+ projection) resident on the device
    kv_cache: int  # self-attention keys/values for the batch
    cross: int  # cross-attention keys/values for the batch
    decode: int  # one EnCodec decode chunk

    @property
    def working(self) -> int:
        """What the batch adds on top of the resident weights."""
        return self.kv_cache + self.cross + self.decode

    @property
    def total(self) -> int:
        return self.weights + self.working


class Engine(Protocol):
    """A loaded model that turns requests into takes."""

    name: str
    lm: LoadedModel

    @property
    def spec(self) -> ModelSpec: ...

    def memory(self, requests: list[Request]) -> MemoryNeed: ...

    def max_batch(self, requests: list[Request], limit: int) -> int: ...

    def generate(
        self, requests: list[Request], progress: ProgressFn | None = None, decode_chunk_s: float | None = DECODE_CHUNK_S
    ) -> list[Take]: ...

    def unload(self) -> None: ...


def derive_window_seed(seed: int, window: int) -> int:
    """The seed for one window of a segment (window 0 uses the segment seed)."""
    if window == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:window:{window}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass
class Planned:
    """A request with its windows and the tokens made so far (prompt first)."""

    request: Request
    windows: list[Window]
    tokens: np.ndarray
    prompt_frames: int
    frames: int  # new frames wanted
    chroma: np.ndarray | None = None  # melody models: the reference's one-hot chroma (frames, 12)

    def window_chroma(self, window: Window, frame_rate: int, length: int) -> np.ndarray | None:
        """The chroma conditioning ``window``: the reference from the window's start, ``length`` frames."""
        if self.chroma is None:
            return None
        from composer.engine.chroma import window_chroma

        start_s = max(0, window.start_frame - window.context_frames) / frame_rate
        return window_chroma(self.chroma, start_s, length)


class EngineBase:
    """What both engines share: request checks, windows, decoding, memory sizing, takes."""

    name = "base"

    def __init__(self, lm: LoadedModel):
        self.lm = lm

    @property
    def spec(self) -> ModelSpec:
        return self.lm.spec

    # -- memory -------------------------------------------------------------------------------
    def memory(self, requests: list[Request]) -> MemoryNeed:
        """Device memory for generating ``requests`` as one batch (weights included)."""
        spec = self.spec
        itemsize = self.lm.itemsize
        rows = len(requests) * (2 if any(r.sampling.cfg > 1 for r in requests) else 1)
        window = max(self._window_frames(r) for r in requests)
        positions = -(-(window + spec.codebooks + 1) // 64) * 64
        kv = 2 * spec.layers * rows * positions * spec.hidden * itemsize
        cross = 2 * spec.layers * len(requests) * 256 * spec.hidden * itemsize  # long style prompts: ~256 tokens
        decode = int(DECODE_CHUNK_BYTES_PER_S * (DECODE_CHUNK_S + 4.0))  # stereo: channels decoded in turn
        return MemoryNeed(self.lm.weight_bytes(), kv, cross, decode)

    def max_batch(self, requests: list[Request], limit: int) -> int:
        """How many of ``requests`` to run at once: ``limit``, fewer when the GPU's free memory says so."""
        if self.lm.device.type != "cuda" or not requests:
            return max(1, limit)
        import torch

        free, _total = torch.cuda.mem_get_info(self.lm.device)
        one = self.memory(requests[:1])
        per_segment = one.kv_cache + one.cross  # the codec decodes one segment at a time after the batch
        return max(1, min(limit, int(free * MEMORY_HEADROOM - one.decode) // max(per_segment, 1)))

    def _window_frames(self, request: Request) -> int:
        prompt = 0 if request.prompt_tokens is None else request.prompt_tokens.shape[1]
        return min(prompt + self.spec.frames(request.duration_s), round(request.window_s * self.spec.frame_rate))

    # -- generation ---------------------------------------------------------------------------
    def generate(
        self, requests: list[Request], progress: ProgressFn | None = None, decode_chunk_s: float | None = DECODE_CHUNK_S
    ) -> list[Take]:
        """Generate ``requests``; a segment's tokens do not depend on the batch it ran in.

        Args:
            requests: the segments.
            progress: called with (request index, frames done, frames total) as decoding goes.
            decode_chunk_s: EnCodec decode chunk length (None: decode in one pass).

        Raises:
            EngineError: an impossible request (bad prompt, prompt longer than a window).
            OutOfMemory: the device ran out of memory.
        """
        import torch

        plans = [self._plan(r) for r in requests]
        try:
            self._tokens(plans, progress or (lambda i, d, t: None))
            started = time.perf_counter()
            audio = decode_many(self.lm, [p.tokens for p in plans], chunk_s=decode_chunk_s)
            seconds = (time.perf_counter() - started) / max(len(plans), 1)  # each segment's share of the decode
            takes = [self._take(p, a, seconds) for p, a in zip(plans, audio, strict=True)]
        except torch.OutOfMemoryError as exc:
            raise OutOfMemory(f"out of memory on {self.lm.device} generating {len(requests)} segment(s)") from exc
        return takes

    def generate_tokens(self, requests: list[Request], progress: ProgressFn | None = None) -> list[np.ndarray]:
        """Only the decoding loop: each request's codes (prompt first), no codec decode (benchmarks)."""
        plans = [self._plan(r) for r in requests]
        self._tokens(plans, progress or (lambda i, d, t: None))
        return [p.tokens for p in plans]

    def _tokens(self, plans: list[Planned], progress: ProgressFn) -> None:
        raise NotImplementedError

    def _plan(self, request: Request) -> Planned:
        spec = self.spec
        prompt = self._check_prompt(request.prompt_tokens)
        frames = spec.frames(request.duration_s)
        try:
            windows = plan_windows(
                frames, prompt.shape[1], round(request.window_s * spec.frame_rate),
                round(request.stride_s * spec.frame_rate),
            )  # fmt: skip
        except ValueError as exc:
            raise EngineError(f"cannot generate {request.duration_s:g} s: {exc}") from None
        melody = None
        if request.melody is not None:
            if spec.kind != "melody":
                raise EngineError(f"{self.lm.repo_id} is not a melody model; use melody or stereo-melody for a melody")
            from composer.engine.chroma import chroma

            try:
                melody = chroma(request.melody, request.melody_rate)
            except ValueError as exc:
                raise EngineError(f"melody: {exc}") from None
        return Planned(request, windows, prompt, prompt.shape[1], frames, melody)

    def _check_prompt(self, prompt: np.ndarray | None) -> np.ndarray:
        spec = self.spec
        if prompt is None:
            return np.zeros((spec.codebooks, 0), dtype=np.int64)
        prompt = np.asarray(prompt)
        per_channel = spec.codebooks // spec.channels
        if prompt.ndim != 2 or prompt.shape[0] not in (spec.codebooks, per_channel, 2 * per_channel):
            raise EngineError(f"prompt tokens must have shape ({spec.codebooks}, frames), got {prompt.shape}")
        if prompt.shape[1] and (prompt.min() < 0 or prompt.max() >= spec.vocab):
            raise EngineError(f"prompt tokens must be codes in 0..{spec.vocab - 1}")
        prompt = prompt.astype(np.int64)
        if prompt.shape[0] == spec.codebooks:
            return prompt
        if prompt.shape[0] == per_channel:  # a mono prompt for a stereo model: the same codes on both sides
            return interleave([prompt] * spec.channels)
        return self._downmix_prompt(prompt)

    def _downmix_prompt(self, prompt: np.ndarray) -> np.ndarray:
        """Stereo codes for a mono model: decode both channels, average, encode (the one lossy case)."""
        if prompt.shape[1] == 0:
            return prompt[: self.spec.codebooks]
        log.info("continuing stereo audio with a mono model: the prompt is re-encoded from its mid signal")
        left, right = (decode_tokens(self.lm, codes, chunk_s=None) for codes in channel_codes(prompt, 2))
        return encode_audio(self.lm, (left + right) / 2, self.spec.sample_rate)

    def _take(self, plan: Planned, audio: np.ndarray, decode_seconds: float) -> Take:
        if not np.isfinite(audio).all():  # fp16 overflow in the codec: never let NaN reach a file
            bad = int(np.size(audio) - np.isfinite(audio).sum())
            log.warning("decoded audio for %r had %d NaN/inf samples; set to silence", plan.request.text[:40], bad)
            audio = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
        return Take(plan.tokens, plan.prompt_frames, audio, self.spec.sample_rate, self.spec.frame_rate,
                    provenance=self.provenance() | {"decode_seconds": round(decode_seconds, 3)})  # fmt: skip

    def provenance(self) -> dict[str, Any]:
        """What made a take: model, revision, engine, device, dtype."""
        lm = self.lm
        return {"repo_id": lm.repo_id, "revision": lm.revision, "engine": self.name, "device": str(lm.device),
                "dtype": str(lm.dtype).replace("torch.", ""), "kernel": lm.kernel, "numerics": lm.numerics,
                "kernel_choice": lm.kernel_choice, "channels": self.spec.channels}  # fmt: skip

    def unload(self) -> None:
        """Drop the weights and give memory back to the device."""
        self.lm.unload()
