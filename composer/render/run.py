"""Generate a plan's missing segments, one model resident at a time: scheduling only.

What a model needs (memory, decoding, out-of-memory detection) is the engine's business
(:mod:`composer.engine.base`); this module decides what runs when.

Order: segments whose inputs are ready are generated grouped by model (all stems of the loaded
model, then the next model), and the previous model is released before the next loads, so a set of
small stems and medium transitions fits a 10 GB card. Each finished segment goes to the cache at
once: an interrupted render loses at most the batch in progress (up to COMPOSER_BATCH segments).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from composer import faults
from composer.engine.catalog import FRAME_RATE_HZ
from composer.engine.codec import DECODE_CHUNK_S
from composer.engine.types import Request, Take
from composer.errors import EngineError
from composer.plan import Segment
from composer.render.cache import SegmentCache
from composer.settings import Settings

if TYPE_CHECKING:
    from composer.engine.base import Engine

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


Opener = Callable[[str, str, Settings], "Engine"]  # (engine name, model, settings) -> a loaded engine


class KeptEngine:
    """An :data:`Opener` that keeps its model loaded between renders (a Ray actor, the studio's job
    worker): the same model again is not reloaded; another one replaces it (one resident at a time).
    ``close()`` releases it. Not thread-safe: one render at a time uses it."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._key: tuple[str, str] | None = None

    def __call__(self, engine_name: str, model: str, settings: Settings) -> Engine:
        from composer.engine.factory import open_engine  # torch

        if self.engine is None or self._key != (engine_name, model):
            self.close()
            self.engine = open_engine(engine_name, model, settings)
            self._key = (engine_name, model)
        return _Kept(self.engine)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.unload()
        self.engine, self._key = None, None


class _Kept:
    """The kept engine as ``render_segments`` sees it: its ``unload`` keeps the model for the next call."""

    def __init__(self, engine: Engine):
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def unload(self) -> None:
        pass


def check_numerics(segments: list[Segment], engine: Engine) -> None:
    """Refuse to store tokens under keys planned for other numerics (another kernel, device or type).

    Raises:
        EngineError: the loaded engine computes differently from what the plan's cache keys promise
            (e.g. a cluster node whose CPU tuned another kernel than the machine that planned).
    """
    numerics = getattr(engine.lm, "numerics", "")
    wrong = [s.id for s in segments if s.numerics and numerics and s.numerics != numerics]
    if wrong:
        planned = next(s.numerics for s in segments if s.id in wrong)
        same_but_threads = re.sub(r"-t\d+$", "", planned) == re.sub(r"-t\d+$", "", numerics)
        fix = ("run with the same thread count (OMP_NUM_THREADS)" if same_but_threads
               else "set COMPOSER_CPU_DTYPE (and COMPOSER_DEVICE) the same")  # fmt: skip
        raise EngineError(
            f"{', '.join(wrong)}: planned for {planned} but this machine's engine runs {numerics}; "
            f"{fix} where the plan is made and where it runs"
        )


def render_segments(
    segments: list[Segment],
    settings: Settings,
    cache: SegmentCache,
    events: RenderEvents | None = None,
    opener: Opener | None = None,
) -> tuple[dict[str, Take], RunStats]:
    """Make sure every segment is in the cache; generate what is missing.

    Args:
        segments: in dependency order (a segment's ``prompt_from`` comes earlier).
        settings: model source, device, cache, engine, batch size.
        cache: the segment cache.
        events: progress callbacks.
        opener: loads a model behind an engine (default :func:`composer.engine.factory.open_engine`).

    Returns:
        Every segment by id, and what was generated vs reused.

    Raises:
        EngineError: generation failed (e.g. out of memory twice), naming the segment.
    """
    from composer.engine.factory import open_engine

    events = events or NoEvents()
    opener = opener or open_engine
    done: dict[str, Take] = {}
    stats = RunStats([], [], {})
    pending: list[Segment] = []
    for seg in segments:
        hit = cache.load(seg.key, seg)
        if hit is None:
            pending.append(seg)
        else:
            done[seg.id] = hit
            stats.cached.append(seg.id)
            events.segment_finished(seg, 0.0, cached=True)

    engine: Engine | None = None
    try:
        while pending:
            ready = ready_segments(pending, finished=done)
            if not ready:  # cannot happen for a plan in dependency order
                raise EngineError(f"segments wait on each other: {', '.join(s.id for s in pending)}")
            if engine is None or not any(s.repo_id == engine.lm.repo_id for s in ready):
                if engine is not None:
                    engine.unload()  # one model resident at a time
                engine = opener(settings.engine, ready[0].model, settings)
            phase = [s for s in ready if s.repo_id == engine.lm.repo_id]
            check_numerics(phase, engine)
            events.phase(engine.lm.repo_id, phase)
            # built once per phase (a melody reference is read once): every prompt is ready by now
            requests = {s.id: request_for(s, done) for s in phase}
            size = engine.max_batch(list(requests.values()), settings.batch_size)
            for first in range(0, len(phase), size):
                batch = phase[first : first + size]
                for seg in batch:
                    events.segment_started(seg)
                results = _generate_with_retry(engine, batch, requests, events)
                for seg, result in zip(batch, results, strict=True):
                    cache.store(result)
                    faults.reached("segment-stored")
                    done[seg.id] = result
                    stats.generated.append(seg.id)
                    seconds = float(result.provenance.get("seconds", 0.0))
                    stats.seconds[seg.id] = seconds
                    events.segment_finished(seg, seconds, cached=False)
                    pending.remove(seg)
    finally:
        if engine is not None:
            engine.unload()
    events.finished()
    return done, stats


def ready_segments(pending: Iterable[Segment], finished: Container[str]) -> list[Segment]:
    """The segments of ``pending`` that can be generated now: those that continue no other segment,
    or one in ``finished`` (ids, or cache keys where segments are named by key)."""
    return [s for s in pending if s.prompt_from is None or s.prompt_from in finished]


def request_for(seg: Segment, done: dict[str, Take]) -> Request:
    """The engine request for a planned segment (its prompt cut from the finished segment it continues)."""
    prompt = None
    if seg.prompt_from is not None:
        parent = done[seg.prompt_from].tokens
        prompt = parent[:, max(0, parent.shape[1] - seg.prompt_frames) :]
    melody, melody_rate = None, 0
    if seg.melody is not None:
        from composer.audio.io import read_audio

        # what the segment can use: its length (and a window's context), not a whole long file
        melody, melody_rate = read_audio(Path(seg.melody), max_seconds=seg.frames / FRAME_RATE_HZ + seg.window_s)
    # the frames the plan asks for: its length on the frame grid, plus room for beat alignment
    return Request(text=seg.text, duration_s=seg.frames / FRAME_RATE_HZ, seed=seg.seed, sampling=seg.sampling,
                   prompt_tokens=prompt, window_s=seg.window_s, stride_s=seg.stride_s,
                   melody=melody, melody_rate=melody_rate)  # fmt: skip


def _generate_with_retry(
    engine: Engine, batch: list[Segment], requests: dict[str, Request], events: RenderEvents
) -> list[Take]:
    """Generate a batch; on out-of-memory, free memory and retry one segment at a time."""
    from composer.engine.base import OutOfMemory
    from composer.engine.models import free_device_memory

    try:
        return _generate(engine, batch, requests, events)
    except OutOfMemory:
        log.warning("out of memory with %d segment(s); freeing memory and retrying one at a time", len(batch))
        free_device_memory()
    results = []
    for seg in batch:
        try:
            results += _generate(engine, [seg], requests, events, decode_chunk_s=DECODE_CHUNK_S / 2)
        except OutOfMemory as again:
            raise EngineError(
                f"{seg.id}: out of GPU memory generating {seg.duration_s:g} s with {seg.repo_id}; "
                "shorten the segment, use a smaller model, set COMPOSER_BATCH=1, or close other GPU programs"
            ) from again
    return results


def _generate(
    engine: Engine,
    batch: list[Segment],
    requests: dict[str, Request],
    events: RenderEvents,
    decode_chunk_s: float = DECODE_CHUNK_S,
) -> list[Take]:
    started = time.perf_counter()
    tokens_done = [started] * len(batch)

    def progress(i: int, frames: int, total: int) -> None:
        events.segment_progress(batch[i], frames, total)
        if frames >= total:
            tokens_done[i] = time.perf_counter()

    takes = engine.generate([requests[s.id] for s in batch], progress=progress, decode_chunk_s=decode_chunk_s)
    for i, (seg, take) in enumerate(zip(batch, takes, strict=True)):
        take.key = seg.key
        # a segment's own time: until its last frame was sampled (its batch ran alongside), plus its decode
        seconds = tokens_done[i] - started + float(take.provenance.get("decode_seconds", 0.0))
        take.provenance |= {"segment": seg.id, "batch": [s.id for s in batch], "seconds": round(seconds, 3)}
    return takes
