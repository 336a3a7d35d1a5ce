"""Many arrangements at once on a Ray cluster (``compose render A.yaml B.yaml --ray``).

What runs where:

- **Generation**: one :class:`SegmentWorker` actor per GPU (``--ray-actors`` on CPU clusters). An
  actor keeps the model it last used loaded — loading is the expensive part — and generates, in the
  engine's batches, every ready segment of that model from *all* arrangements handed to it. The
  driver schedules in waves: a segment is ready when the segment it continues is in the cache.
- **Results**: through the content-addressed segment cache, not Ray's object store. The cache is
  the single source of truth of a render already (resume, regen and export read it); an actor
  stores each segment the moment it is made, so nothing finished is lost when an actor, a machine
  or the driver dies; tokens (~12 KB per 30 s) would fit the object store, audio (MBs per segment)
  would only be copied twice. The price: on a multi-machine cluster ``--out`` must be a shared
  filesystem that every node sees at the same path.
- **Assembly and export**: one CPU task per arrangement (``num_cpus=1``), reading the cache.

A segment already in the cache is never generated again, whichever arrangement or machine made it;
identical segments of two arrangements (same key) are generated once. Every mix is byte-identical
to a single-process render of the same arrangement (tested).

Faults: an actor that dies mid-batch is restarted by Ray and its call retried
(``max_restarts``/``max_task_retries``); what it stored before dying comes from the cache. A
segment that fails for a reason retrying cannot fix (a composer error: bad input, out of memory at
the smallest batch) fails the arrangements that need it, with the same message as a single render,
and the other arrangements still finish. A killed driver resumes from the cache when the same
command is run again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from composer import faults
from composer.assembly.seams import Rerolls
from composer.errors import ComposerError
from composer.fsutil import filesystem_errors, output_tree
from composer.job.local import Known, render
from composer.job.options import RenderOptions
from composer.job.prepare import Prepared, ensure_models, from_cache, prepare
from composer.job.reroll import reroll_transitions
from composer.plan import Segment
from composer.render.cache import SegmentCache
from composer.render.lock import render_lock
from composer.render.run import KeptEngine, RunStats, ready_segments, render_segments
from composer.render.state import save_state
from composer.settings import Settings

MAX_RESTARTS = 3  # an actor that dies is started again this many times; its call is retried as often


@dataclass
class Job:
    """One arrangement of a cluster render."""

    file: Path
    name: str = ""
    segments: list[Segment] = field(default_factory=list)
    error: str | None = None  # why it failed (a one-line composer message), or None
    folder: Path | None = None
    mix: Path | None = None
    rerolls: Rerolls | None = None  # what --reroll tried
    prepared: Prepared | None = None  # loaded and planned by the driver (its re-rolls start from it)


@dataclass
class ClusterReport:
    """What a cluster render did."""

    jobs: list[Job]
    generated: list[str]  # cache keys generated in this run
    seconds: float
    worker_pids: set[int] = field(default_factory=set)  # every process that served a call (restarts add one)

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if j.error is not None]


class ClusterEvents:
    """Progress callbacks of a cluster render (the CLI draws one live view from them)."""

    def planned(self, jobs: list[Job], pending: dict[str, Segment]) -> None:
        pass

    def segments_done(self, keys: list[str]) -> None:
        pass

    def job_finished(self, job: Job) -> None:
        pass


class SegmentWorker:
    """A Ray actor: holds one model at a time and generates segments into the shared cache."""

    def __init__(self, settings: Settings, cache_root: str, threads: int, fault_marker: str | None = None):
        import torch

        # Ray starts a one-CPU worker with OMP_NUM_THREADS=1; the actor uses the driver's count (or
        # the one asked for) for speed. The tokens and audio do not depend on it: where the CPU kernel
        # is not thread-invariant, its numerics name the count and a mismatch is refused.
        torch.set_num_threads(threads)
        self.settings = settings
        self.cache = SegmentCache(Path(cache_root))
        self.engines = KeptEngine()
        # a test's fault fires once per cluster run: a restarted actor finds the marker and runs clean
        if fault_marker is not None:
            faults.arm_from(settings.fault_at, once_marker=fault_marker)

    def generate(self, segments: list[Segment]) -> dict[str, Any]:
        """Generate what is missing of ``segments`` (parents first; those are cache hits)."""
        _, stats = render_segments(segments, self.settings, self.cache, opener=self.engines)
        return {"generated": stats.generated, "seconds": stats.seconds, "pid": os.getpid()}

    def ping(self) -> int:
        return os.getpid()


def _export(file: str, settings: Settings, out_root: str, known: Known) -> str:
    """A CPU task: assemble and write one arrangement from the cache (as ``compose render`` would),
    with the choices the driver saved in its state.json."""
    result = render(Path(file), settings, Path(out_root), RenderOptions(generate=False), known=known)
    return str(result.folder)


def render_many(
    files: list[Path],
    settings: Settings,
    out_root: Path,
    options: RenderOptions | None = None,
    *,
    address: str | None = None,
    actors: int | None = None,
    events: ClusterEvents | None = None,
    fault_marker: Path | None = None,
    threads: int | None = None,
) -> ClusterReport:
    """Render every arrangement in ``files`` on a Ray cluster; see the module notes.

    Args:
        files: arrangement files (each renders into ``out_root/<name>/``, as alone).
        settings: runtime settings (the same for every arrangement).
        out_root: output root; its ``cache/`` is shared by all arrangements and all nodes.
        options: takes, regen (one file only) and re-rolls as for a single render; the re-roll tries
            are generated by an actor and scored on the driver. Pick and export-only are not
            cluster work.
        address: a running cluster's address; None starts a local one (or joins ``RAY_ADDRESS``).
        actors: generation actors; default one per GPU in the cluster, else one.
        events: progress callbacks.
        fault_marker: for tests: where an armed ``COMPOSER_FAULT_AT`` records that it fired.
        threads: CPU threads per generation actor; default the driver's count.

    Returns:
        A report; failed arrangements carry their error and the others their output folder.
    """
    import ray

    options = options or RenderOptions()
    if options.regen is not None and len(files) != 1:
        raise ValueError("regen on a cluster takes one arrangement")
    if options.pick is not None or not options.generate:
        raise ValueError("pick and export-stems run without a cluster")
    started = time.perf_counter()
    events = events or ClusterEvents()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)  # fmt: skip
    jobs = [_plan_job(file, settings, out_root, options) for file in files]
    cache = SegmentCache(out_root / "cache" / "segments")
    by_key: dict[str, Segment] = {}
    for job in jobs:
        ids = {s.id: s.key for s in job.segments}
        for seg in job.segments:  # the cache key is the identity: ids repeat across arrangements
            by_key.setdefault(seg.key, replace(seg, id=seg.key, prompt_from=ids.get(seg.prompt_from or "")))
    pending = {k: s for k, s in by_key.items() if not cache.path(k).is_file() or cache.load(k, s) is None}
    events.planned(jobs, pending)
    report = ClusterReport(jobs, [], 0.0)
    workers = _start_workers(settings, cache, actors, fault_marker, threads, report)
    failed, seconds = _generate(pending, by_key, workers, report, events)
    for job in jobs:
        if job.error is None:
            job.error = next((failed[s.key] for s in job.segments if s.key in failed), None)
        if job.error is None and options.reroll is not None and options.reroll.tries > 0:
            try:
                job.rerolls = _reroll_on(job, workers[0], out_root, cache, options, report=report,
                                         seconds=seconds)  # fmt: skip
            except (ComposerError, ray.exceptions.RayError) as exc:
                job.error = _reason(exc)
    _export_jobs(jobs, settings, out_root, report, seconds, events)
    for w in workers:
        ray.kill(w)
    report.seconds = time.perf_counter() - started
    return report


def _plan_job(file: Path, settings: Settings, out_root: Path, options: RenderOptions) -> Job:
    """Check and plan one arrangement before anything is generated; its choices (a regen's seed, the
    takes to keep) are saved in its state.json, where the export task finds them."""
    job = Job(file)
    try:
        job.prepared = prepared = prepare(file, settings, out_root)
        job.name, job.folder = prepared.name, prepared.folder
        extra = prepared.choose(options.takes, options.regen)
        with filesystem_errors(prepared.folder), output_tree(out_root), render_lock(prepared.folder):
            save_state(prepared.folder, prepared.state)
        # the picked takes and the others, as `compose render --takes` (or `regen --takes`) makes them
        job.segments = prepared.plan().segments + prepared.take_variants(extra)
        ensure_models(job.segments, settings)  # in the shared model cache
    except ComposerError as exc:
        job.error = str(exc)
    return job


def _start_workers(
    settings: Settings, cache: SegmentCache, actors: int | None, fault_marker: Path | None, threads: int | None,
    report: ClusterReport,
) -> list[Any]:  # fmt: skip
    import ray
    import torch

    gpus = int(ray.cluster_resources().get("GPU", 0))
    count = actors or max(1, gpus)
    options: dict[str, Any] = {"max_restarts": MAX_RESTARTS, "max_task_retries": MAX_RESTARTS}
    options |= {"num_gpus": 1} if gpus else {"num_cpus": 1}
    worker: Any = ray.remote(**options)(SegmentWorker)
    marker = str(fault_marker) if fault_marker else None
    threads = threads or torch.get_num_threads()
    workers: list[Any] = [worker.remote(settings, str(cache.root), threads, marker) for _ in range(count)]
    report.worker_pids |= set(ray.get([w.ping.remote() for w in workers]))  # a restart adds a process to these
    return workers


def _generate(
    pending: dict[str, Segment], by_key: dict[str, Segment], workers: list[Any], report: ClusterReport,
    events: ClusterEvents,
) -> tuple[dict[str, str], dict[str, float]]:  # fmt: skip
    """Generate every pending segment in waves of ready ones; returns the failures (key -> reason)
    and the seconds each generated segment took."""
    import ray

    failed: dict[str, str] = {}
    seconds: dict[str, float] = {}
    while pending:
        ready = ready_segments(pending.values(), finished={k for k in by_key if k not in pending and k not in failed})
        for seg in [s for s in pending.values() if s.prompt_from in failed]:  # what continues a failure fails
            failed[seg.key] = failed[seg.prompt_from or ""]
            del pending[seg.key]
        if not ready:
            break
        calls = {}
        for model in dict.fromkeys(s.repo_id for s in ready):  # one model at a time per actor: waves by model
            group = [s for s in ready if s.repo_id == model]
            share = -(-len(group) // len(workers))
            for i, w in enumerate(workers):
                part = group[i * share : (i + 1) * share]
                if part:
                    parents = [by_key[k] for k in dict.fromkeys(s.prompt_from for s in part if s.prompt_from)]
                    calls[w.generate.remote(parents + part)] = part
        while calls:
            done, _ = ray.wait(list(calls), num_returns=1)
            part = calls.pop(done[0])
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayError as exc:  # a composer error, or an actor dead past its restarts
                for seg in part:
                    failed[seg.key] = _reason(exc)
                    pending.pop(seg.key, None)
                continue
            report.worker_pids.add(result["pid"])
            report.generated += [k for k in result["generated"] if k not in report.generated]
            seconds |= result["seconds"]
            for seg in part:
                pending.pop(seg.key, None)
            events.segments_done([s.key for s in part])
    return failed, seconds


def _export_jobs(
    jobs: list[Job], settings: Settings, out_root: Path, report: ClusterReport, seconds: dict[str, float],
    events: ClusterEvents,
) -> None:  # fmt: skip
    """Assemble and write every arrangement that has all its segments, one CPU task each."""
    import ray

    export = ray.remote(num_cpus=1, max_retries=MAX_RESTARTS)(_export)
    tasks = {}
    for job in [j for j in jobs if j.error is None]:
        keys = {s.key for s in job.segments}
        mine = [k for k in report.generated if k in keys]
        ids = {s.key: s.id for s in job.segments}
        stats = RunStats([ids[k] for k in mine], [], {ids[k]: seconds[k] for k in mine if k in seconds})
        tasks[export.remote(str(job.file), settings, str(out_root), Known(stats=stats, rerolls=job.rerolls))] = job
    while tasks:
        done, _ = ray.wait(list(tasks), num_returns=1)
        job = tasks.pop(done[0])
        try:
            job.folder = Path(ray.get(done[0]))
            job.mix = next(job.folder.glob("mix.*"), None)
        except ray.exceptions.RayError as exc:
            job.error = _reason(exc)
        events.job_finished(job)


def _reason(exc: Exception) -> str:
    """What to tell the user about a failure: a composer error's own message (raised here or in a Ray
    task), else the first line of what Ray reported. (Ray raises a task's error as a class derived
    from both its own error and the task's, whose text is Ray's: the message is the cause's.)"""
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, ComposerError):
        return str(cause)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"failed on the cluster ({type(cause or exc).__name__}): {first}"


def _reroll_on(
    job: Job, worker: Any, out_root: Path, cache: SegmentCache, options: RenderOptions, *,
    report: ClusterReport, seconds: dict[str, float],
) -> Rerolls:  # fmt: skip
    """``--reroll`` for one arrangement: scored here, tries generated by ``worker``, kept seeds saved."""
    import ray

    assert options.reroll is not None and job.prepared is not None
    prepared = job.prepared  # with the choices _plan_job applied and saved
    plan = prepared.plan()
    segments, stats = from_cache(prepared, plan, cache, [])

    def make(wanted: list[Segment]) -> tuple[dict[str, Any], RunStats]:
        keys = {s.id: s.key for s in wanted}
        renamed = [replace(s, id=s.key, prompt_from=keys.get(s.prompt_from or "")) for s in wanted]
        result = ray.get(worker.generate.remote(renamed))
        report.generated += [k for k in result["generated"] if k not in report.generated]
        seconds.update(result["seconds"])
        made = {s.id: cache.load(s.key, s) for s in wanted}
        ids = {s.key: s.id for s in wanted}
        return made, RunStats(
            [ids[k] for k in result["generated"]], [], {ids[k]: v for k, v in result["seconds"].items()}
        )

    record = options.reroll.record()
    plan = reroll_transitions(prepared, plan, make, segments=segments, stats=stats, tries=options.reroll.tries,
                              record=record)  # fmt: skip
    with filesystem_errors(prepared.folder), output_tree(out_root), render_lock(prepared.folder):
        save_state(prepared.folder, prepared.state)  # the kept seeds: the export task plans with them
    job.segments = plan.segments
    return record
