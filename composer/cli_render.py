"""Terminal front end for plan/render/regen/pick/export-stems: progress bars and summary tables."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from composer import api
from composer.job.local import RenderResult
from composer.job.view import FinishedRender
from composer.plan import Plan, Segment
from composer.render.run import RenderEvents
from composer.settings import Settings


class ProgressEvents:
    """Render callbacks drawn as rich progress bars (or plain lines when not on a terminal)."""

    def __init__(self, console: Any, bars: Any | None):
        self.console = console
        self.bars = bars
        self.tasks: dict[str, Any] = {}

    def phase(self, model: str, segments: list[Segment]) -> None:
        seconds = sum(s.duration_s for s in segments)
        self.console.print(f"[bold]{model}[/]: {len(segments)} segment(s), {seconds:g} s of audio")

    def segment_started(self, segment: Segment) -> None:
        if self.bars is not None:
            self.tasks[segment.id] = self.bars.add_task(f"  {segment.id}", total=segment.frames)

    def segment_progress(self, segment: Segment, done: int, total: int) -> None:
        """Every segment of a batch has its own bar (the engine reports frames per segment)."""
        if self.bars is not None and segment.id in self.tasks:
            self.bars.update(self.tasks[segment.id], completed=done, total=total)

    def segment_finished(self, segment: Segment, seconds: float, cached: bool) -> None:
        if self.bars is not None and segment.id in self.tasks:
            self.bars.remove_task(self.tasks.pop(segment.id))
        if not cached:
            self.console.print(f"  generated {segment.id} ({segment.duration_s:.2f} s) in {seconds:.1f} s")

    def finished(self) -> None:
        self.console.print("assembling, mastering and writing files")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # pipes and CI logs get a wide table instead of rich's 80-column default
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 150)


def print_plan(plan: Plan, settings: Settings, device: str) -> None:
    from rich.table import Table

    from composer.plan.estimate import DISK_WARN_BYTES, disk_need, estimate, vram_problem

    source = "tiny random models" if settings.model_source == "tiny" else "hub models"
    table = Table(title=f"{plan.title} — plan ({source}, estimates for {device})")
    for column in ("#", "segment", "kind", "model", "gen s", "continues", "timeline", "est. time", "est. VRAM"):
        table.add_column(column, justify="right" if column in ("#", "gen s", "est. time", "est. VRAM") else "left")
    total_time = 0.0
    peak_vram = 0.0
    for i, (seg, place) in enumerate(zip(plan.segments, plan.timeline, strict=True), start=1):
        est = estimate(seg, device, settings.model_source)
        total_time += est.seconds or 0.0
        peak_vram = max(peak_vram, est.vram_gb or 0.0)
        table.add_row(
            str(i), seg.id, seg.kind, seg.model, f"{seg.duration_s:.2f}",
            f"{seg.prompt_from} ({seg.prompt_s:g} s)" if seg.prompt_from else "",
            f"{place.start_s:7.2f}–{place.end_s:7.2f}",
            "-" if est.seconds is None else f"{est.seconds:.0f} s" + ("" if est.measured else " (formula)"),
            "-" if est.vram_gb is None else f"{est.vram_gb:.1f} GB",
        )  # fmt: skip
    console = _console()
    console.print(table)
    minutes, seconds = divmod(plan.length_s, 60)
    console.print(f"final length: {plan.length_s:.2f} s ({int(minutes)}:{seconds:05.2f})")
    if total_time:
        vram = f"; peak VRAM: {peak_vram:.1f} GB" if peak_vram else ""
        console.print(f"estimated generation time: {total_time / 60:.1f} min{vram}")
    disk = disk_need(plan)
    console.print(
        f"disk: about {disk.total / 1e9:.2f} GB (cache {disk.cache / 1e9:.2f}, mix {disk.mix / 1e9:.2f}, "
        f"raw stems {disk.raw_stems / 1e9:.2f}, aligned stems {disk.aligned_stems / 1e9:.2f} GB)"
    )
    transitions = [s for s in plan.segments if s.kind == "transition"]
    if transitions:
        share = sum(s.duration_s for s in transitions) / max(sum(s.duration_s for s in plan.segments), 1e-9)
        console.print(
            f"{len(transitions)} generated transition(s), {share:.0%} of the generated audio: shorten them with "
            "transitions.duration_s, or make a boundary a plain crossfade with `transition: none`"
        )
    warnings = list(plan.warnings)
    if disk.total > DISK_WARN_BYTES:
        warnings.append(
            f"this render writes about {disk.total / 1e9:.1f} GB; DAW-aligned stems span the whole track each "
            f"({disk.aligned_stems / 1e9:.1f} GB): fewer or longer sections, or 16-bit output, write less"
        )
    if problem := vram_problem(plan, settings.model_source, device):
        warnings.append(problem)
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print("\nprompts (tempo and key from the arrangement, as MusicGen reads them):")
    for seg in plan.segments:
        console.print(f"[bold]{seg.id}[/]: {seg.text}", markup=True, soft_wrap=False)


def run_render(
    file: Path, out_root: Path, start: Callable[[RenderEvents], RenderResult], regen: str | None = None
) -> None:
    """``compose render/regen/pick/export-stems`` of one file: live progress while ``start(events)`` runs
    (an :mod:`composer.api` call), then the summary table of the render it made."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    console = _console(stderr=True)
    try:
        if sys.stderr.isatty():
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, console=console, transient=True) as bars:
                result = start(ProgressEvents(console, bars))
        else:
            result = start(ProgressEvents(console, None))
    except KeyboardInterrupt:
        console.print(
            f"interrupted: finished segments are kept in {out_root / 'cache'}; run the same command again to resume"
        )
        raise typer.Exit(130) from None
    _summary(file, result, api.open_render(result.folder), regen)


def _summary(file: Path, result: RenderResult, done: FinishedRender, regen: str | None) -> None:
    from rich.table import Table

    table = Table(title=f"{done.title} → {done.folder}")
    for column in ("segment", "model", "s", "LUFS in", "gain dB", "cache", "gen time"):
        table.add_column(column)
    for seg in done.segments:
        table.add_row(
            seg.id, seg.repo_id, f"{seg.duration_s:g}",
            "-" if seg.measured_lufs is None else f"{seg.measured_lufs:.1f}",
            "/".join(f"{g:+.1f}" for g in dict.fromkeys(seg.gain_db)), "hit" if seg.cache_hit else "new",
            "" if seg.generate_seconds is None else f"{seg.generate_seconds:.1f} s",
        )  # fmt: skip
    out = _console()
    out.print(table)
    loud = done.loudness
    out.print(
        f"mix: {done.mix} — {done.length_s:.2f} s, {loud.integrated_lufs} LUFS (target {loud.target_lufs}), true peak "
        f"{loud.true_peak_dbtp} dBTP; {len(result.stats.generated)} generated, {len(result.stats.cached)} from cache"
        f"{_reroll_summary(done.manifest)}, {result.seconds:.1f} s",
        soft_wrap=True,
    )  # fmt: skip
    if loud.integrated_lufs is not None and abs(loud.integrated_lufs - loud.target_lufs) > 1.0:
        out.print(f"warning: the mix is {loud.integrated_lufs} LUFS, more than 1 LU from the target "
                  f"{loud.target_lufs} (the limiter could not hold {loud.true_peak_ceiling_dbtp} dBTP there)",
                  soft_wrap=True)  # fmt: skip
    if regen is not None:  # the seed it drew (or was given): what makes this version again
        seed = result.plan.segment(regen).seed
        out.print(f"{regen}: seed {seed} (recorded; `compose regen {file} {regen} --seed {seed}` remakes it)",
                  soft_wrap=True)  # fmt: skip


def _reroll_summary(manifest: dict[str, Any]) -> str:
    """ "; re-rolls: 3 tries (2 generated, 1 from cache)" for the tries --reroll made (the first seed is not one)."""
    tries = [t for per in manifest.get("rerolls", {}).get("tries", {}).values() for t in per[1:]]
    if not tries:
        return ""
    made = sum(bool(t.get("generated")) for t in tries)
    return f"; re-rolls: {len(tries)} tries ({made} generated, {len(tries) - made} from cache)"


def arrangement_files(paths: list[Path]) -> list[Path]:
    """The arrangement files named: files as given, folders by their ``*.yaml`` (sorted)."""
    files: list[Path] = []
    for path in paths:
        files += sorted(p for p in path.glob("*.y*ml") if p.is_file()) if path.is_dir() else [path]
    return list(dict.fromkeys(files))


def run_cluster(out_root: Path, start: Callable[[api.ClusterEvents], api.ClusterReport]) -> int:
    """``compose render ... --ray``: one live view of every arrangement while ``start(events)`` runs (an
    :func:`composer.api.render_cluster` call); returns the exit code."""

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from composer.job.cluster import Job

    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    console = _console(stderr=True)
    if importlib.util.find_spec("ray") is None:
        console.print("compose render --ray: Ray is not installed; pip install 'musicgen-composer[ray]'", markup=False)
        return 2

    class View(api.ClusterEvents):
        def __init__(self, bars: Progress):
            self.bars = bars
            self.tasks: dict[str, list[Any]] = {}

        def planned(self, jobs: list[Job], pending: dict[str, Any]) -> None:
            for job in jobs:
                if job.error is not None:
                    console.print(f"{job.file}: {job.error}", markup=False, style="red")
                    continue
                todo = [s.key for s in job.segments if s.key in pending]
                task = self.bars.add_task(
                    f"{job.name}", total=len(job.segments), completed=len(job.segments) - len(todo)
                )
                for key in todo:
                    self.tasks.setdefault(key, []).append(task)

        def segments_done(self, keys: list[str]) -> None:
            for key in keys:
                for task in self.tasks.pop(key, []):
                    self.bars.advance(task)

        def job_finished(self, job: Job) -> None:
            where = job.mix if job.error is None else f"failed: {job.error}"
            console.print(f"{job.name or job.file}: {where}", markup=False)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, transient=not sys.stderr.isatty()) as bars:
            report = start(View(bars))
    except KeyboardInterrupt:
        console.print(f"interrupted: finished segments are kept in {out_root / 'cache'}; run the same command again")
        return 130
    _console().print(
        f"{len(report.jobs) - len(report.failed)} of {len(report.jobs)} arrangements rendered, "
        f"{len(report.generated)} segments generated, {report.seconds:.1f} s"
    )
    return 2 if report.failed else 0
