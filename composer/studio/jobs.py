"""The studio's jobs: renders, new takes, picks and re-rolls, one at a time, in a queue.

One worker thread runs them through :mod:`composer.api` (the same operations as ``compose render``,
``regen --add-take``, ``pick`` and ``render --reroll``), with one :class:`~composer.api.KeptEngine` so a
model is loaded once and kept for the next job. Each job reports per-segment progress and an ETA
(from its own decoding speed so far); cancelling one stops it the way Ctrl-C stops a render (finished
segments stay in the cache). Nothing here is state of its own: what a job changes is composer's
state.json, cache and output folder, so a reloaded page (or a restarted studio) shows the same.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from composer import api
from composer.plan import Segment

log = logging.getLogger(__name__)

Kind = Literal["render", "new-take", "pick", "reroll"]
KINDS: tuple[Kind, ...] = ("render", "new-take", "pick", "reroll")
KEEP_FINISHED = 20  # finished jobs still listed


@dataclass
class Progress:
    done: int = 0  # decoding steps
    total: int = 0
    state: str = "waiting"  # waiting, generating, done, cached


@dataclass
class Job:
    """One queued operation and how far it got."""

    id: str
    kind: Kind
    name: str  # the arrangement's output folder name
    section: str | None = None
    take: int | None = None
    above: float | None = None  # reroll: joins scoring above this
    status: str = "queued"  # queued, running, done, failed, cancelled
    error: str | None = None
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    segments: dict[str, Progress] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    _first_step: float | None = None
    _steps_since: int = 0

    def view(self) -> dict[str, Any]:
        """As JSON for the page."""
        steps = sum(p.total for p in self.segments.values() if p.state != "cached")
        done = sum(p.done for p in self.segments.values() if p.state != "cached")
        return {
            "id": self.id, "kind": self.kind, "name": self.name, "section": self.section, "take": self.take,
            "above": self.above, "status": self.status, "error": self.error, "steps_done": done, "steps": steps,
            "eta_s": self._eta(done, steps), "queued_at": self.queued_at, "started_at": self.started_at,
            "finished_at": self.finished_at,
            "segments": [{"id": k, "done": p.done, "total": p.total, "state": p.state}
                         for k, p in self.segments.items()],
        }  # fmt: skip

    def _eta(self, done: int, steps: int) -> float | None:
        """Seconds left at this job's own speed so far (None until it has decoded something)."""
        if self.status != "running" or self._first_step is None or done <= self._steps_since:
            return None
        rate = (done - self._steps_since) / max(time.monotonic() - self._first_step, 1e-6)
        return round((steps - done) / rate, 1)


class _Events:
    """Render events written into the job (under the queue's lock)."""

    def __init__(self, job: Job, lock: threading.Lock):
        self.job, self.lock = job, lock

    def _entry(self, segment: Segment) -> Progress:
        return self.job.segments.setdefault(segment.id, Progress(total=segment.frames))

    def phase(self, model: str, segments: list[Segment]) -> None:
        with self.lock:
            for seg in segments:
                self._entry(seg)

    def segment_started(self, segment: Segment) -> None:
        with self.lock:
            self._entry(segment).state = "generating"

    def segment_progress(self, segment: Segment, done: int, total: int) -> None:
        with self.lock:
            entry = self._entry(segment)
            entry.done, entry.total, entry.state = done, total, "generating"
            job = self.job
            if job._first_step is None:
                job._first_step = time.monotonic()
                job._steps_since = sum(p.done for p in job.segments.values() if p.state != "cached")

    def segment_finished(self, segment: Segment, seconds: float, cached: bool) -> None:
        with self.lock:
            entry = self._entry(segment)
            entry.state = "cached" if cached else "done"
            entry.done = entry.total

    def finished(self) -> None:
        pass


Runner = Callable[[Job, Any, threading.Event], None]  # (job, render events, cancel) -> None; raises on failure


class Jobs:
    """The queue and its one worker thread."""

    def __init__(
        self, run: Runner, planned: Callable[[Job], list[Segment]] | None = None,
        close: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        """``run`` does a job; ``planned`` lists its segments up front (for the ETA); ``close`` is called
        by the worker when it stops (it releases the kept model)."""
        self._run, self._planned, self._close = run, planned, close
        self._lock = threading.Lock()
        self._jobs: list[Job] = []
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._thread = threading.Thread(target=self._work, name="composer-studio-jobs", daemon=True)
        self._thread.start()

    def submit(self, kind: Kind, name: str, **params: Any) -> Job:
        job = Job(id=str(next(self._ids)), kind=kind, name=name, **params)
        with self._lock:
            self._jobs.append(job)
            finished = [j for j in self._jobs if j.finished_at is not None]
            for old in finished[: max(0, len(finished) - KEEP_FINISHED)]:
                self._jobs.remove(old)
        self._queue.put(job)
        return job

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job (it never starts) or a running one (it stops at its next step)."""
        with self._lock:
            job = next((j for j in self._jobs if j.id == job_id), None)
            if job is not None and job.status in ("queued", "running"):
                job.cancel.set()
                if job.status == "queued":
                    job.status, job.finished_at = "cancelled", time.time()
        return job

    def views(self) -> list[dict[str, Any]]:
        with self._lock:
            return [j.view() for j in self._jobs]

    def busy(self) -> bool:
        with self._lock:
            return any(j.status in ("queued", "running") for j in self._jobs)

    def close(self, timeout: float | None = None) -> None:
        """Cancel what is queued or running and stop the worker (waits for the running job to stop)."""
        with self._lock:
            for job in self._jobs:
                job.cancel.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        try:
            while (job := self._queue.get()) is not None:
                if not job.cancel.is_set():
                    self._one(job)
        finally:
            if self._close is not None:
                self._close()

    def _one(self, job: Job) -> None:
        with self._lock:
            job.status, job.started_at = "running", time.time()
        if self._planned is not None:
            try:
                planned = self._planned(job)
            except Exception:  # the job itself reports the problem
                planned = []
            with self._lock:
                for seg in planned:
                    job.segments.setdefault(seg.id, Progress(total=seg.frames))
        status, error = "done", None
        try:
            self._run(job, _Events(job, self._lock), job.cancel)
        except api.Cancelled:
            status = "cancelled"
        except api.ComposerError as exc:
            status, error = "failed", str(exc)
        except Exception as exc:  # a bug: the studio keeps serving, the job says what happened
            log.exception("job %s failed", job.id)
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        with self._lock:
            job.status, job.error, job.finished_at = status, error, time.time()
