"""A render in this process: arrangement file -> plan -> segments -> re-rolls -> files on disk.

``compose render``, ``regen``, ``pick`` and ``export-stems`` are this one function with other
:class:`~composer.job.options.RenderOptions`. Choices made after the arrangement was written (a
regenerated section's new seed, a picked take) live in ``<out>/<name>/state.json`` and are recorded in
the manifest.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer import faults
from composer.assembly.seams import Rerolls
from composer.engine.types import Take
from composer.errors import ComposerError
from composer.export.write import export_all
from composer.fsutil import atomic_write_text, filesystem_errors, json_text, output_tree, real_dir, remove_file
from composer.job.options import RenderOptions
from composer.job.prepare import NotRenderedError, Prepared, ensure_models, from_cache, prepare
from composer.job.reroll import reroll_transitions
from composer.plan import Plan, Segment
from composer.plan.estimate import vram_problem
from composer.render.cache import SegmentCache
from composer.render.lock import render_lock, sweep_temp_files
from composer.render.run import NoEvents, Opener, RenderEvents, RunStats, render_segments
from composer.render.state import save_state
from composer.settings import Settings

log = logging.getLogger(__name__)


class Cancelled(ComposerError):
    """The caller cancelled the render (its ``cancel`` event was set)."""

    exit_code = 130


class Cancellable:
    """Render events passed on, raising :class:`Cancelled` at the next callback once ``cancel`` is set:
    between segments, and between decoding steps of a segment (the finished segments stay in the cache,
    so the same render resumes where this one stopped)."""

    def __init__(self, events: RenderEvents | None, cancel: threading.Event):
        self.events = events or NoEvents()
        self.cancel = cancel

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("render cancelled: finished segments are kept in the cache; render again to resume")

    def phase(self, model: str, segments: list[Segment]) -> None:
        self.check()
        self.events.phase(model, segments)

    def segment_started(self, segment: Segment) -> None:
        self.check()
        self.events.segment_started(segment)

    def segment_progress(self, segment: Segment, done: int, total: int) -> None:
        self.events.segment_progress(segment, done, total)
        self.check()

    def segment_finished(self, segment: Segment, seconds: float, cached: bool) -> None:
        self.events.segment_finished(segment, seconds, cached)
        self.check()

    def finished(self) -> None:
        self.events.finished()


class TooLargeError(ComposerError):
    """A model of the plan will not fit the GPU's free memory (refused unless --allow-large)."""

    exit_code = 4


@dataclass
class RenderResult:
    plan: Plan
    folder: Path
    stats: RunStats
    manifest: dict[str, Any]
    seconds: float


@dataclass(frozen=True, kw_only=True)
class Known:
    """What another process generated for a render that is exported here from the cache (a cluster
    render's actors): recorded in the manifest as if generated here."""

    stats: RunStats
    rerolls: Rerolls | None = None


def render(
    file: Path,
    settings: Settings,
    out_root: Path,
    options: RenderOptions | None = None,
    *,
    events: RenderEvents | None = None,
    cancel: threading.Event | None = None,
    known: Known | None = None,
    engines: Opener | None = None,
) -> RenderResult:
    """Render an arrangement (or re-export it) into ``out_root/<name>/``.

    Args:
        file: the arrangement YAML.
        settings: runtime settings.
        out_root: output root; the segment cache lives in ``out_root/cache``.
        options: what to do (takes, regen, pick, re-roll, export only); default a plain render.
        events: progress callbacks.
        cancel: set it (from another thread, or a callback) to stop at the next segment or decoding
            step: raises :class:`Cancelled`, and nothing is exported.
        known: with ``options.generate`` False: what another process generated for this render.
        engines: how models are opened (a :class:`~composer.render.run.KeptEngine` keeps one loaded
            between renders); default: loaded for this render and released after it.

    Raises:
        ArrangementError: invalid arrangement or section name (nothing is written).
        NotRenderedError: generate=False and segments are missing, or a picked take was never rendered.
        TooLargeError: a model will not fit the GPU (unless ``options.allow_large``).
        EngineError / ModelLoadingError: from the engine.
        Cancelled: ``cancel`` was set.
    """
    options = options or RenderOptions()
    if cancel is not None:
        events = Cancellable(events, cancel)
    started = time.perf_counter()
    faults.arm_from(settings.fault_at)
    prepared = prepare(file, settings, out_root)
    if options.generate:
        _check_models(prepared, options.allow_large)
    cache = SegmentCache(out_root / "cache" / "segments")
    extra_takes = prepared.choose(options.takes, options.regen)
    if options.pick is not None:
        _pick(prepared, cache, options.pick.section, options.pick.take)
    plan = prepared.plan()
    variants = prepared.take_variants(extra_takes)
    for warning in plan.warnings:
        log.warning("%s", warning)
    folder = prepared.folder
    with filesystem_errors(folder), output_tree(out_root), render_lock(folder):
        sweep_temp_files(folder, cache.root)
        for sub in ("raw", "aligned", "takes"):  # a link or file in the way is refused before anything is written
            if sub != "takes" or variants or os.path.lexists(folder / "stems" / sub):
                real_dir(folder / "stems" / sub)
        if options.regen is not None or options.pick is not None:  # recorded before generating: an interrupted
            save_state(folder, prepared.state)  # regen resumes with `compose render` and the seed it chose
        plan, segments, stats, rerolls = _segments(prepared, plan, variants, cache, options, events=events, known=known,
                                                   engines=engines)  # fmt: skip
        if isinstance(events, Cancellable):
            events.check()  # a cancel during the last segment: nothing is exported
        save_state(folder, prepared.state)
        _mark_exporting(folder)  # until the new manifest is written, the journal says the outputs are mixed
        manifest = export_all(plan, prepared.arrangement, file, folder, segments, stats=stats, state=prepared.state,
                              settings=settings, variants=variants, rerolls=rerolls)  # fmt: skip
        remove_file(folder / "journal.json")  # the manifest now says it all
    return RenderResult(plan, folder, stats, manifest, time.perf_counter() - started)


def _check_models(prepared: Prepared, allow_large: bool) -> None:
    """Before anything is written: the device exists, the plan's models fit it, and they are in the cache."""
    from composer.engine.models import pick_device

    settings = prepared.settings
    pick_device(settings.device)  # "cuda" without CUDA fails here
    # before planning: cache keys include each model's revision. Only the models the plan uses (an
    # arrangement without generated transitions never needs the transition model)
    draft = prepared.plan()
    device_type = "cpu" if settings.device == "cpu" else "cuda"
    if not allow_large and (problem := vram_problem(draft, settings.model_source, device_type)):
        raise TooLargeError(problem)  # before any download: a model that cannot fit the GPU is refused
    ensure_models(draft.segments, settings)


def _pick(prepared: Prepared, cache: SegmentCache, section: str, take: int) -> None:
    prepared.check_section(section)
    candidate = prepared.plan(takes=prepared.state.takes | {section: take}).segment(section)
    if cache.load(candidate.key, candidate) is None:
        raise NotRenderedError(
            f"take {take} of {section!r} was never rendered; run `compose render {prepared.file} --takes {take + 1}`"
        )
    prepared.state.takes[section] = take


def _segments(
    prepared: Prepared, plan: Plan, variants: list[Segment], cache: SegmentCache, options: RenderOptions, *,
    events: RenderEvents | None, known: Known | None, engines: Opener | None,
) -> tuple[Plan, dict[str, Take], RunStats, Rerolls | None]:  # fmt: skip
    """Every segment the outputs need: generated (and re-rolled), or read from the cache."""
    if not options.generate:
        segments, stats = from_cache(prepared, plan, cache, variants)
        if known is None:
            return plan, segments, stats, None
        stats = RunStats(known.stats.generated, [i for i in stats.cached if i not in known.stats.generated],
                         known.stats.seconds)  # fmt: skip
        return plan, segments, stats, known.rerolls
    settings = prepared.settings
    journal = Journal(prepared.folder / "journal.json", plan.segments + variants, events)
    segments, stats = render_segments(plan.segments + variants, settings, cache, journal, engines)
    if options.reroll is None or options.reroll.tries <= 0:
        return plan, segments, stats, None
    rerolls = options.reroll.record()

    def make(wanted: list[Segment]) -> tuple[dict[str, Take], RunStats]:
        return render_segments(wanted, settings, cache, journal, engines)

    plan = reroll_transitions(prepared, plan, make, segments=segments, stats=stats, tries=options.reroll.tries,
                              record=rerolls)  # fmt: skip
    return plan, segments, stats, rerolls


def _mark_exporting(folder: Path) -> None:
    """Before export: the journal says every output may be stale, and the old manifest goes.

    A render killed while writing the mix, stems and markers leaves files of two renders side by
    side; the journal (and the missing manifest) say so until the same command is run again.
    """
    record = {"status": "exporting", "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "stale": "the mix, stems, markers and picture may be partly from the previous render: "
                       "run the same command again to finish"}  # fmt: skip
    atomic_write_text(folder / "journal.json", json_text(record) + "\n")
    remove_file(folder / "manifest.json")


class Journal:
    """Passes render events on, and keeps ``journal.json`` up to date after every finished segment.

    While a render runs (or after it was killed) the journal says which segments are done, with
    their cache keys and timings, and which are still to come; the manifest replaces it at the end.
    """

    def __init__(self, path: Path, segments: list[Segment], events: RenderEvents | None):
        self.path = path
        self.events = events or NoEvents()
        self.pending = [s.id for s in segments]
        self.done: list[dict[str, Any]] = []

    def _write(self) -> None:
        record = {"finished": self.done, "pending": self.pending, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_text(self.path, json_text(record) + "\n")

    def phase(self, model: str, segments: list[Segment]) -> None:
        self.events.phase(model, segments)

    def segment_started(self, segment: Segment) -> None:
        self.events.segment_started(segment)

    def segment_progress(self, segment: Segment, done: int, total: int) -> None:
        self.events.segment_progress(segment, done, total)

    def segment_finished(self, segment: Segment, seconds: float, cached: bool) -> None:
        if segment.id in self.pending:
            self.pending.remove(segment.id)
        self.done.append({"id": segment.id, "cache_key": segment.key, "cached": cached, "seconds": round(seconds, 3)})
        if not cached:
            self._write()
        self.events.segment_finished(segment, seconds, cached)

    def finished(self) -> None:
        self.events.finished()
