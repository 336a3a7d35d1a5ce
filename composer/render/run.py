"""Generate a plan's missing segments, one model resident at a time.

Order: segments whose inputs are ready are generated grouped by model (all stems of the loaded
model, then the next model), and the previous model is released before the next loads, so a set of
small stems and medium transitions fits a 10 GB card. Each finished segment goes to the cache at
once: an interrupted render loses at most the segment in progress.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from composer import faults
from composer.engine.models import free_device_memory
from composer.errors import EngineError
from composer.plan import Segment
from composer.render.cache import CachedSegment, SegmentCache
from composer.settings import Settings

log = logging.getLogger(__name__)


class RenderEvents(Protocol):
    """Progress callbacks (the CLI draws bars from these)."""

    def phase(self, model: str, segments: list[Segment]) -> None: ...
    def segment_started(self, segment: Segment) -> None: ...
    def segment_progress(self, segment: Segment, done: int, total: int) -> None: ...
    def segment_finished(self, segment: Segment, seconds: float, cached: bool) -> None: ...
    def finished(self) -> None: ...


class NoEvents:
    """Callbacks that do nothing."""

    def phase(self, model: str, segments: list[Segment]) -> None:
        pass

    def segment_started(self, segment: Segment) -> None:
        pass

    def segment_progress(self, segment: Segment, done: int, total: int) -> None:
        pass

    def segment_finished(self, segment: Segment, seconds: float, cached: bool) -> None:
        pass

    def finished(self) -> None:
        pass


@dataclass
class RunStats:
    generated: list[str]
    cached: list[str]
    seconds: dict[str, float]


Loader = Callable[[str, Settings], Any]


def render_segments(
    segments: list[Segment],
    settings: Settings,
    cache: SegmentCache,
    events: RenderEvents | None = None,
    loader: Loader | None = None,
) -> tuple[dict[str, CachedSegment], RunStats]:
    """Make sure every segment is in the cache; generate what is missing.

    Args:
        segments: in dependency order (a segment's ``prompt_from`` comes earlier).
        settings: model source, device, cache.
        cache: the segment cache.
        events: progress callbacks.
        loader: model loader (default :func:`composer.engine.models.load_model`).

    Returns:
        Every segment by id, and what was generated vs reused.

    Raises:
        EngineError: generation failed (e.g. out of memory twice), naming the segment.
    """
    from composer.engine.models import load_model

    events = events or NoEvents()
    loader = loader or load_model
    done: dict[str, CachedSegment] = {}
    stats = RunStats([], [], {})
    pending: list[Segment] = []
    for seg in segments:
        hit = cache.load(seg.key)
        if hit is None:
            pending.append(seg)
        else:
            done[seg.id] = hit
            stats.cached.append(seg.id)
            events.segment_finished(seg, 0.0, cached=True)

    loaded: Any = None
    try:
        while pending:
            ready = [s for s in pending if s.prompt_from is None or s.prompt_from in done]
            if not ready:  # cannot happen for a plan in dependency order
                raise EngineError(f"segments wait on each other: {', '.join(s.id for s in pending)}")
            want = loaded.repo_id if loaded is not None and any(s.repo_id == loaded.repo_id for s in ready) else None
            if want is None:
                if loaded is not None:
                    loaded.unload()  # one model resident at a time
                loaded = loader(ready[0].model, settings)
                want = loaded.repo_id
            phase = [s for s in ready if s.repo_id == want]
            events.phase(want, phase)
            size = batch_size(loaded, phase, settings)
            for first in range(0, len(phase), size):
                batch = phase[first : first + size]
                for seg in batch:
                    events.segment_started(seg)
                started = time.perf_counter()
                results = _generate_with_retry(loaded, batch, done, events, settings.engine)
                seconds = time.perf_counter() - started
                for seg, result in zip(batch, results, strict=True):
                    cache.store(result)
                    faults.reached("segment-stored")
                    done[seg.id] = result
                    stats.generated.append(seg.id)
                    stats.seconds[seg.id] = seconds / len(batch)
                    events.segment_finished(seg, seconds / len(batch), cached=False)
                    pending.remove(seg)
    finally:
        if loaded is not None:
            loaded.unload()
    events.finished()
    return done, stats


def kv_cache_bytes(lm: Any, frames: int) -> int:
    """Self-attention KV cache of one segment in the fast loop (conditional + unconditional rows)."""
    config = lm.model.decoder.config
    itemsize = 2 if str(lm.dtype) in ("torch.float16", "torch.bfloat16") else 4
    positions = frames + 4  # bos + frames + delay steps
    return 2 * 2 * int(config.num_hidden_layers) * int(config.hidden_size) * positions * itemsize


def fit_batch(free_bytes: int, per_segment_bytes: int, limit: int, headroom: float = 0.6) -> int:
    """How many segments fit in ``headroom`` of the free memory (at least 1, at most ``limit``)."""
    return max(1, min(limit, int(free_bytes * headroom) // max(per_segment_bytes, 1)))


def batch_size(lm: Any, segments: list[Segment], settings: Settings) -> int:
    """Segments to generate together: COMPOSER_BATCH, fewer when the GPU's free memory says so."""
    if settings.engine == "transformers":
        return 1
    if getattr(lm.device, "type", "cpu") != "cuda":
        return settings.batch_size
    import torch

    free, _total = torch.cuda.mem_get_info(lm.device)
    window = max(min(s.frames + s.prompt_frames, int(s.window_s * 50)) for s in segments)
    return fit_batch(free, kv_cache_bytes(lm, window), settings.batch_size)


def _generate_with_retry(
    lm: Any, batch: list[Segment], done: dict[str, CachedSegment], events: RenderEvents, engine: str
) -> list[CachedSegment]:
    """Generate a batch; on out-of-memory, free memory and retry one segment at a time."""
    try:
        return _generate(lm, batch, done, events, engine)
    except Exception as exc:
        if not _is_oom(exc):
            raise
        log.warning("out of memory with %d segment(s); freeing memory and retrying one at a time", len(batch))
        free_device_memory()
    results = []
    for seg in batch:
        try:
            results += _generate(lm, [seg], done, events, engine, decode_chunk_s=5.0)
        except Exception as again:
            if _is_oom(again):
                raise EngineError(
                    f"{seg.id}: out of GPU memory generating {seg.duration_s:g} s with {seg.repo_id}; "
                    "shorten the segment, use a smaller model, set COMPOSER_BATCH=1, or close other GPU programs"
                ) from again
            raise
    return results


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _generate(
    lm: Any,
    batch: list[Segment],
    done: dict[str, CachedSegment],
    events: RenderEvents,
    engine: str,
    decode_chunk_s: float = 10.0,
) -> list[CachedSegment]:
    from composer.engine.generate import GenerationRequest, SamplingParams, generate_batch

    requests = []
    for seg in batch:
        prompt = None
        if seg.prompt_from is not None:
            parent = done[seg.prompt_from].tokens
            prompt = parent[:, max(0, parent.shape[1] - seg.prompt_frames) :]
        requests.append(
            GenerationRequest(
                text=seg.text, duration_s=seg.duration_s, seed=seg.seed,
                sampling=SamplingParams(seg.sampling.cfg, seg.sampling.top_k, seg.sampling.top_p,
                                        seg.sampling.temperature),
                prompt_tokens=prompt, window_s=seg.window_s, stride_s=seg.stride_s,
            )
        )  # fmt: skip
    lead = batch[0]
    results = generate_batch(
        lm, requests, progress=lambda d, t: events.segment_progress(lead, d, t), engine=engine,  # type: ignore[arg-type]
        decode_chunk_s=decode_chunk_s,
    )  # fmt: skip
    out = []
    for seg, result in zip(batch, results, strict=True):
        meta = {"segment": seg.id, "repo_id": lm.repo_id, "revision": lm.revision, "engine": engine,
                "device": str(lm.device), "dtype": str(lm.dtype), "batch": [s.id for s in batch]}  # fmt: skip
        out.append(CachedSegment(**vars(result), key=seg.key, meta=meta))
    return out
