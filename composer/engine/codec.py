"""EnCodec: codes to audio (chunked, so memory stays flat) and audio to codes (for continuations).

Stereo checkpoints interleave the codebooks of the two channels (left 0, right 0, left 1, ...);
the codec decodes each channel's codebooks as one stream.

On the CPU the codec's convolutions round differently with the number of threads that share one
of them (by about 1e-7, which changes a 24-bit mix), so every chunk is decoded on one thread, and
the chunks (of all segments and channels of a batch) run side by side, one per thread: the same
bits on any thread count, at the speed of a multi-threaded decode.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from composer.engine.kernels import threads
from composer.errors import EngineError

if TYPE_CHECKING:
    from composer.engine.models import LoadedModel

DECODE_CHUNK_S = 10.0  # EnCodec decodes in chunks of this length, so memory does not grow with duration
DECODE_CONTEXT_S = 2.0  # decoded on each side of a chunk and thrown away (the decoder's LSTM needs history)
MAX_DECODE_WORKERS = 8  # chunks decoded at once on the CPU (each holds its own activations)


def channel_codes(tokens: np.ndarray, channels: int) -> list[np.ndarray]:
    """Split (codebooks, frames) codes into one (codebooks / channels, frames) array per channel."""
    return [tokens[c::channels] for c in range(channels)]


def interleave(per_channel: list[np.ndarray]) -> np.ndarray:
    """The inverse of :func:`channel_codes`."""
    channels = len(per_channel)
    out = np.empty((per_channel[0].shape[0] * channels, per_channel[0].shape[1]), dtype=per_channel[0].dtype)
    for c, codes in enumerate(per_channel):
        out[c::channels] = codes
    return out


def decode_tokens(
    lm: LoadedModel, tokens: np.ndarray, chunk_s: float | None = DECODE_CHUNK_S, context_s: float = DECODE_CONTEXT_S
) -> np.ndarray:
    """EnCodec-decode (codebooks, frames) codes to float32 audio (channels, frames * hop).

    With ``chunk_s``, the codes are decoded in chunks, each with ``context_s`` of codes decoded on
    both sides and discarded, so peak memory stays flat however long the segment is.
    """
    return decode_many(lm, [tokens], chunk_s, context_s)[0]


def decode_many(
    lm: LoadedModel,
    tokens: list[np.ndarray],
    chunk_s: float | None = DECODE_CHUNK_S,
    context_s: float = DECODE_CONTEXT_S,
) -> list[np.ndarray]:
    """:func:`decode_tokens` for several segments; on the CPU their chunks run side by side, each on
    one thread, so the audio does not depend on the thread count (nor on what else is decoded)."""
    import torch

    spec = lm.spec
    context = int(round(context_s * spec.frame_rate))
    jobs: list[tuple[int, int, np.ndarray, int, int, int, int]] = []  # (segment, channel, codes, lo, hi, start, end)
    for i, codes in enumerate(tokens):
        for c, mono in enumerate(channel_codes(codes, spec.channels)):
            frames = mono.shape[1]
            chunk = frames if chunk_s is None else max(1, int(round(chunk_s * spec.frame_rate)))
            for start in range(0, frames, chunk):
                end = min(frames, start + chunk)
                lo, hi = (start, end) if chunk >= frames else (max(0, start - context), min(frames, end + context))
                jobs.append((i, c, mono, lo, hi, start, end))

    def run(job: tuple[int, int, np.ndarray, int, int, int, int]) -> np.ndarray:
        _i, _c, mono, lo, hi, start, end = job
        with torch.inference_mode():
            codes = torch.as_tensor(mono[:, lo:hi], device=lm.device)[None, None]  # (1 chunk, batch 1, k, n)
            audio = lm.model.audio_encoder.decode(codes, audio_scales=[None]).audio_values[0].float().cpu().numpy()
        return audio[:1, (start - lo) * spec.hop : (end - lo) * spec.hop]

    if lm.device.type == "cpu":
        workers = max(1, min(torch.get_num_threads(), MAX_DECODE_WORKERS, len(jobs)))
        # one thread per chunk: set here for this thread's pool and in each worker (OpenMP counts per thread)
        with threads(1), ThreadPoolExecutor(workers, "composer-decode", torch.set_num_threads, (1,)) as pool:
            pieces = list(pool.map(run, jobs))
    else:
        pieces = [run(job) for job in jobs]
    out = []
    for i in range(len(tokens)):
        channels = [
            np.concatenate([p for (s, c, *_), p in zip(jobs, pieces, strict=True) if s == i and c == ch], axis=1)
            for ch in range(spec.channels)
        ]
        out.append(np.ascontiguousarray(np.concatenate(channels), dtype=np.float32))
    return out


def encode_audio(lm: LoadedModel, audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """EnCodec-encode audio (channels, samples) at any rate to codes (codebooks, frames).

    A mono model gets the channels averaged; a stereo model gets each channel encoded (a mono
    input is used for both).

    Raises:
        EngineError: the audio is shorter than one codec frame.
    """
    import torch

    from composer.audio.dsp import resample, to_mono

    spec = lm.spec
    if spec.channels == 1:
        sources = [to_mono(audio)]
    else:
        sources = [audio[c : c + 1] if audio.shape[0] > 1 else audio[:1] for c in range(spec.channels)]
    per_channel = []
    for source in sources:
        mono = resample(source, sample_rate, spec.sample_rate)
        mono = mono[:, : mono.shape[1] // spec.hop * spec.hop]
        if mono.shape[1] == 0:
            raise EngineError("continuation audio is shorter than one codec frame (20 ms)")
        with torch.inference_mode(), threads(1 if lm.device.type == "cpu" else torch.get_num_threads()):
            codec_dtype = next(lm.model.audio_encoder.parameters()).dtype
            x = torch.as_tensor(mono, device=lm.device, dtype=codec_dtype)[None]  # (1, 1, samples)
            codes = lm.model.audio_encoder.encode(x, bandwidth=None).audio_codes  # (1, 1, k, frames)
        per_channel.append(codes[0, 0].cpu().numpy().astype(np.int64))
    return interleave(per_channel) if len(per_channel) > 1 else per_channel[0]
