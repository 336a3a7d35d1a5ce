"""The whole render: arrangement file -> plan -> segments -> assembly -> files.

``compose render``, ``regen``, ``pick`` and ``export-stems`` are thin wrappers around
:func:`render`. Choices made after the arrangement was written (a regenerated section's new seed, a
picked take) live in ``<out>/<name>/state.json`` and are recorded in the manifest.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from composer.arrangement import Arrangement, load_arrangement
from composer.assembly.seams import REROLL_ABOVE, Rerolls
from composer.engine.types import Take
from composer.errors import ArrangementError, ComposerError, Problem
from composer.fsutil import (
    DiskFullError,
    atomic_write_text,
    filesystem_errors,
    json_text,
    output_tree,
    real_dir,
    remove_file,
)
from composer.plan import Plan, Segment, build_plan
from composer.render.cache import SegmentCache
from composer.render.lock import render_lock, sweep_temp_files
from composer.render.run import NoEvents, RenderEvents, RunStats, render_segments
from composer.render.state import State, load_state, save_state
from composer.settings import MODEL_SOURCES, Settings
from composer.styles import StyleLibrary

log = logging.getLogger(__name__)


class TooLargeError(ComposerError):
    """A model of the plan will not fit the GPU's free memory (refused unless --allow-large)."""

    exit_code = 4


class FolderTakenError(ComposerError):
    """Two arrangement files map to one output folder."""

    exit_code = 2


class NotRenderedError(ComposerError):
    """export-stems or pick needs segments that are not in the cache yet."""

    exit_code = 2


@dataclass
class RenderResult:
    plan: Plan
    folder: Path
    stats: RunStats
    manifest: dict[str, Any]
    seconds: float


def output_name(file: Path) -> str:
    """The output folder name for an arrangement file: its stem, made file-system safe."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", file.stem).strip("._") or "arrangement"
    return name[:80]


def prepare(file: Path, settings: Settings, out_root: Path) -> tuple[Arrangement, StyleLibrary, Path, State]:
    """Load and validate everything a render needs, before anything is written."""
    styles = StyleLibrary.load(settings.styles_dir)
    arr = load_arrangement(file, styles)
    folder = out_root / output_name(file)
    state = load_state(folder)
    this = str(file.resolve())
    if state.arrangement not in (None, this) and _is_file(Path(state.arrangement)):
        raise FolderTakenError(
            f"{folder} holds the render of {state.arrangement}, and {file} maps to the same folder: "
            "rename one of the two files or render this one with another --out"
        )
    state.arrangement = this  # a folder remembers its arrangement (adopted when the old file is gone)
    for section in arr.sections:  # an edit of the YAML seed after a regen wins over the regen's seed
        name = section.name
        if name in state.seeds and name in state.seed_from and state.seed_from[name] != section.seed:
            log.warning("%s: its seed was edited in %s after `regen` chose one; the arrangement's seed is used",
                        name, file.name)  # fmt: skip
            del state.seeds[name], state.seed_from[name]
    return arr, styles, folder, state


def check_section(arr: Arrangement, section: str, file: Path) -> None:
    import difflib

    names = [s.name for s in arr.sections]
    if section not in names:
        guess = difflib.get_close_matches(section, names, n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else f"; sections: {', '.join(names)}"
        raise ArrangementError([Problem(str(file), None, "sections", f"no section named {section!r}{hint}")])


def choose(
    arr: Arrangement, state: State, file: Path, takes: int, regen: str | None, regen_seed: int | None, reset: bool
) -> dict[str, int]:
    """Apply a regen's new seed (or its reset) to ``state``; returns the takes to keep in stems/takes/
    (section -> how many): those asked for now, and those of earlier renders (``state.take_counts``),
    so that pick, export-stems and later renders keep them. A regen drops its section's old takes."""
    import random

    names = [s.name for s in arr.sections]
    if regen is None:
        if takes > 1:
            state.take_counts = {name: takes for name in names}
        return {name: n for name, n in state.take_counts.items() if name in names}
    check_section(arr, regen, file)
    state.take_counts.pop(regen, None)  # they were takes of the old seed
    if takes > 1:
        state.take_counts[regen] = takes
    if reset:
        state.seeds.pop(regen, None)
        state.seed_from.pop(regen, None)
    else:
        state.seeds[regen] = regen_seed if regen_seed is not None else random.SystemRandom().randrange(2**31)
        state.seed_from[regen] = next(s.seed for s in arr.sections if s.name == regen)
    state.takes.pop(regen, None)
    return {name: n for name, n in state.take_counts.items() if name in names}


def _take_variants(
    arr: Arrangement,
    name: str,
    styles: StyleLibrary,
    settings: Settings,
    state: State,
    takes: dict[str, int],
    file: Path,
) -> list[Segment]:
    """Stems for the extra takes asked for (section -> how many), other than the picked one."""
    variants: list[Segment] = []
    for section, count in takes.items():
        for take in range(count):
            if take == state.takes.get(section, 0):
                continue
            plan = build_plan(arr, name, styles, settings, state.seeds, state.takes | {section: take}, str(file))
            variants.append(replace(plan.segment(section), id=f"{section}.take{take}"))
    return variants


def plan_only(file: Path, settings: Settings, out_root: Path) -> tuple[Plan, str]:
    """The plan as ``render`` would build it now (with regen/pick choices), without generating.

    Returns:
        The plan and the device type the estimates are for ("cpu" or "cuda").
    """
    arr, styles, folder, state = prepare(file, settings, out_root)
    plan = build_plan(arr, folder.name, styles, settings, state.seeds, state.takes, str(file))
    device = settings.device
    if device == "auto":
        import importlib.util

        device = "cuda" if importlib.util.find_spec("torch") and _cuda_available() else "cpu"
    return plan, "cpu" if device.startswith("cpu") else "cuda"


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def render(
    file: Path,
    settings: Settings,
    out_root: Path,
    events: RenderEvents | None = None,
    takes: int = 1,
    regen: str | None = None,
    regen_seed: int | None = None,
    reset: bool = False,
    pick: tuple[str, int] | None = None,
    generate: bool = True,
    allow_large: bool = False,
    reroll: int = 0,
    reroll_above: float | None = None,
    known: RunStats | None = None,
    known_rerolls: Rerolls | None = None,
) -> RenderResult:
    """Render an arrangement (or re-export it) into ``out_root/<name>/``.

    Args:
        file: the arrangement YAML.
        settings: runtime settings.
        out_root: output root; the segment cache lives in ``out_root/cache``.
        events: progress callbacks.
        takes: number of takes per section (1 = just the picked one); with ``regen``, for that section only.
        regen: a section to regenerate with a new seed (``regen_seed`` or a random one).
        regen_seed: the new seed for ``regen``.
        reset: with ``regen``: forget its earlier seed and take, back to the arrangement's seed.
        pick: (section, take) to use from now on.
        generate: False for export-stems: use cached segments only.
        allow_large: render even when a segment's model will not fit the GPU's free memory.
        reroll: regenerate, with new seeds, each transition whose joins score above ``reroll_above``
            (default ``REROLL_ABOVE``), up to this many tries each, keeping the best; every try is
            recorded in the manifest and the kept seed in state.json.
        known: with ``generate=False``: what another process generated for this render (a cluster
            render's actors), recorded in the manifest as if generated here; ``known_rerolls``: the
            re-rolls it made, recorded likewise.

    Raises:
        ArrangementError: invalid arrangement or section name (nothing is written).
        NotRenderedError: generate=False and segments are missing, or a picked take was never rendered.
        EngineError / ModelLoadingError: from the engine.
    """
    from composer import faults
    from composer.engine.models import ensure_available

    started = time.perf_counter()
    faults.arm(faults.parse(settings.fault_at) if settings.fault_at else None)
    arr, styles, folder, state = prepare(file, settings, out_root)
    name = folder.name
    if generate:
        from composer.engine.models import pick_device

        pick_device(settings.device)  # "cuda" without CUDA fails here, before anything is written
        # before planning: cache keys include each model's revision. Only the models the
        # plan uses (an arrangement without generated transitions never needs the transition model)
        draft = build_plan(arr, name, styles, settings, state.seeds, state.takes, str(file))
        if not allow_large:  # before any download: a model that cannot fit the GPU is refused
            from composer.plan.estimate import vram_problem

            if problem := vram_problem(draft, settings.model_source, "cpu" if settings.device == "cpu" else "cuda"):
                raise TooLargeError(problem)
        with filesystem_errors(settings.hub_cache, "run the same command again"):
            for model in dict.fromkeys(s.model for s in draft.segments):
                ensure_available(model, settings)
    cache = SegmentCache(out_root / "cache" / "segments")
    extra_takes = choose(arr, state, file, takes, regen, regen_seed, reset)
    if pick is not None:
        section, take = pick
        check_section(arr, section, file)
        candidate = build_plan(arr, name, styles, settings, state.seeds, state.takes | {section: take}, str(file))
        if cache.load(candidate.segment(section).key, candidate.segment(section)) is None:
            raise NotRenderedError(
                f"take {take} of {section!r} was never rendered; run `compose render {file} --takes {take + 1}`"
            )
        state.takes[section] = take
    plan = build_plan(arr, name, styles, settings, state.seeds, state.takes, str(file))
    variants = _take_variants(arr, name, styles, settings, state, extra_takes, file)
    for warning in plan.warnings:
        log.warning("%s", warning)

    from composer.export.write import export_all

    with filesystem_errors(folder), output_tree(out_root), render_lock(folder):
        sweep_temp_files(folder, cache.root)
        for sub in ("raw", "aligned", "takes"):  # a link or file in the way is refused before anything is written
            if sub != "takes" or variants or os.path.lexists(folder / "stems" / sub):
                real_dir(folder / "stems" / sub)
        if regen is not None or pick is not None:  # recorded before generating: an interrupted regen
            save_state(folder, state)  # resumes with `compose render` and the seed it chose
        if generate:
            journal = Journal(folder / "journal.json", plan.segments + variants, events)
            segments, stats = render_segments(plan.segments + variants, settings, cache, journal)
        else:
            segments, stats = _from_cache(plan, cache, file, variants, folder, settings)
            if known is not None:
                stats = RunStats(known.generated, [i for i in stats.cached if i not in known.generated], known.seconds)
        rerolls = known_rerolls
        if generate and reroll > 0:
            rerolls = Rerolls(reroll_above if reroll_above is not None else REROLL_ABOVE)

            def make(wanted: list[Segment]) -> tuple[dict[str, Take], RunStats]:
                return render_segments(wanted, settings, cache, journal)

            plan = reroll_transitions(plan, arr, file, styles, settings, state, make, segments, stats, reroll, rerolls)
        save_state(folder, state)
        _mark_exporting(folder)  # until the new manifest is written, the journal says the outputs are mixed
        manifest = export_all(plan, arr, file, folder, segments, stats, state, settings, variants, rerolls)
        remove_file(folder / "journal.json")  # the manifest now says it all
    return RenderResult(plan, folder, stats, manifest, time.perf_counter() - started)


def _transition_scores(plan: Plan, arr: Arrangement, segments: dict[str, Take]) -> dict[str, float]:
    """Each transition's worst join score in the mastered mix, as export will measure it."""
    from composer.assembly.mix import assemble, master
    from composer.assembly.seams import score_seams

    rate = arr.output.sample_rate
    assembly = assemble(plan, arr, segments, rate)
    mastered = master(assembly.mix(), rate, arr.loudness.target_lufs, arr.loudness.true_peak_dbtp)
    worst: dict[str, float] = {}
    for seam in score_seams(mastered.audio, rate, assembly.placements, assembly.alignment, arr.bpm):
        for side in (seam.before, seam.after):
            if plan.segment(side).kind == "transition":
                worst[side] = max(worst.get(side, 0.0), seam.score)
    return worst


Make = Callable[[list[Segment]], tuple[dict[str, Take], RunStats]]  # generate what is missing of segments


def reroll_transitions(
    plan: Plan, arr: Arrangement, file: Path, styles: StyleLibrary, settings: Settings, state: State,
    make: Make, segments: dict[str, Take], stats: RunStats, tries: int, record: Rerolls,
) -> Plan:  # fmt: skip
    """Regenerate the transitions whose joins score above the limit; returns the plan with the kept seeds.

    Tries are seeded from the transition's seed ("reroll", 1..tries), so a re-run tries the same
    seeds and finds them in the cache. ``make`` generates (here, or on a cluster's actor).
    ``segments``, ``stats``, ``state`` and ``record`` are updated.
    """
    from composer.plan.build import derive_seed

    name = plan.name
    scores = _transition_scores(plan, arr, segments)
    for seg in [s for s in plan.segments if s.kind == "transition"]:
        if scores.get(seg.id, 0.0) <= record.limit:
            continue
        original = state.seeds.get(seg.id)
        # (score, seed, take, seconds it took to generate in this run or None when it came from the cache)
        best = (
            scores[seg.id],
            original,
            segments[seg.id],
            stats.seconds.get(seg.id) if seg.id in stats.generated else None,
        )
        log.warning("%s: its joins score %.1f (above %.1f); trying new seeds", seg.id, scores[seg.id], record.limit)
        record.tries[seg.id] = [{"seed": seg.seed, "score": round(scores[seg.id], 2),
                                 "generated": seg.id in stats.generated}]  # fmt: skip
        for k in range(1, tries + 1):
            seed = derive_seed(seg.seed, "reroll", k)
            state.seeds[seg.id] = seed
            trial = build_plan(arr, name, styles, settings, state.seeds, state.takes, str(file))
            parent = trial.segment(seg.prompt_from) if seg.prompt_from else None
            made, more = make([*([parent] if parent else []), trial.segment(seg.id)])
            took = more.seconds.get(seg.id, 0.0) if seg.id in more.generated else None
            for other in [i for i in more.generated if i != seg.id and i not in stats.generated]:  # a lost parent
                _account(stats, other, more.seconds.get(other, 0.0))
            score = _transition_scores(trial, arr, segments | {seg.id: made[seg.id]})[seg.id]
            record.tries[seg.id].append({"seed": seed, "score": round(score, 2), "generated": took is not None})
            if score < best[0]:
                best = (score, seed, made[seg.id], took)
            if score <= record.limit:
                break
        if best[1] is None:
            state.seeds.pop(seg.id, None)
        else:
            state.seeds[seg.id] = best[1]
        segments[seg.id] = best[2]
        _account(stats, seg.id, best[3])
        kept_seed = best[1] if best[1] is not None else seg.seed
        for entry in record.tries[seg.id]:
            entry["kept"] = entry["seed"] == kept_seed
        if best[0] > record.limit:
            log.warning("%s: kept seed %d, whose joins still score %.1f (above %.1f) after %d tries; re-roll with more "
                        "tries (--reroll N) or change the transition", seg.id, kept_seed, best[0], record.limit,
                        len(record.tries[seg.id]) - 1)  # fmt: skip
    return build_plan(arr, name, styles, settings, state.seeds, state.takes, str(file))


def _account(stats: RunStats, seg_id: str, seconds: float | None) -> None:
    """Record how the kept take of ``seg_id`` came to be: generated in this run (in ``seconds``) or from the cache."""
    stats.generated[:] = [i for i in stats.generated if i != seg_id]
    stats.cached[:] = [i for i in stats.cached if i != seg_id]
    stats.seconds.pop(seg_id, None)
    if seconds is None:
        stats.cached.append(seg_id)
    else:
        stats.generated.append(seg_id)
        stats.seconds[seg_id] = seconds


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
        self.keys = {s.id: s.key for s in segments}
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


def _rendered_with(folder: Path) -> str | None:
    """The model source the folder's manifest records (None when there is no readable manifest)."""
    path = folder / "manifest.json"
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > 16 * 2**20:
            return None
        source = json.loads(path.read_text(encoding="utf-8")).get("model_source")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return source if source in MODEL_SOURCES else None


def _from_cache(
    plan: Plan,
    cache: SegmentCache,
    file: Path,
    variants: list[Segment],
    folder: Path,
    settings: Settings,
) -> tuple[dict[str, Take], RunStats]:
    found: dict[str, Take] = {}
    missing = []
    for seg in [*plan.segments, *variants]:
        hit = cache.load(seg.key, seg)
        if hit is None:
            missing.append(seg.id)
        else:
            found[seg.id] = hit
    if missing:
        source = _rendered_with(folder)
        if source is not None and source != settings.model_source:  # the same arrangement, other models' keys
            raise NotRenderedError(f"{folder} was rendered with --models {source}; run `compose export-stems {file} "
                                   f"--models {source}` (or render it with these models first)")  # fmt: skip
        raise NotRenderedError(f"not rendered yet: {', '.join(missing)}; run `compose render {file}` first")
    return found, RunStats([], list(found), {})


__all__ = ["DiskFullError", "RenderResult", "State", "render"]


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False where the name cannot even be looked up (a component over 255 bytes)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False
