"""A finished (or interrupted) render as typed values: what manifest.json, state.json, journal.json
and the files on disk say, for programs that show or steer renders (the CLI's summary, the studio)."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.errors import ComposerError
from composer.render.state import State, load_state

MAX_MANIFEST_BYTES = 16 * 2**20


class NoRenderError(ComposerError):
    """The folder holds no render composer can read."""

    exit_code = 2


@dataclass(frozen=True)
class Loudness:
    target_lufs: float
    integrated_lufs: float | None  # None for a silent mix
    true_peak_dbtp: float | None
    true_peak_ceiling_dbtp: float
    master_gain_db: float


@dataclass(frozen=True)
class SegmentView:
    """One segment of the mix: a section's stem or a transition."""

    id: str
    kind: str  # "section" or "transition"
    section: str | None
    take: int
    seed: int
    repo_id: str
    start_s: float
    end_s: float
    duration_s: float
    cache_key: str
    cache_hit: bool
    generate_seconds: float | None
    measured_lufs: float | None
    gain_db: list[float]
    raw: Path | None  # the stem as generated
    aligned: Path | None  # the stem placed on the mix's timeline (for a DAW)


@dataclass(frozen=True)
class TakeView:
    """A kept take that is not the picked one (``compose pick`` makes it the one)."""

    section: str
    take: int
    seed: int
    file: Path
    gain_db: float


@dataclass(frozen=True)
class SeamView:
    before: str
    after: str
    at_s: float
    score: float


@dataclass(frozen=True)
class FinishedRender:
    """What one output folder holds.

    Attributes:
        complete: the manifest is there and no render is half done (no journal).
        pending: segments an interrupted render had still to make (from journal.json).
        state: the folder's choices (regen seeds, picked takes, takes kept).
        manifest: the whole manifest, for fields this view does not name.
    """

    folder: Path
    title: str
    mix: Path
    length_s: float
    sample_rate: int
    loudness: Loudness
    segments: list[SegmentView]
    takes: list[TakeView]
    seams: list[SeamView]
    state: State
    complete: bool
    pending: list[str]
    manifest: dict[str, Any]

    def segment(self, id: str) -> SegmentView:
        return next(s for s in self.segments if s.id == id)


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A regular file's JSON object (None when there is none); a damaged one raises NoRenderError."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_MANIFEST_BYTES:
        raise NoRenderError(f"{path}: not a regular file of at most 16 MB")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise NoRenderError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise NoRenderError(f"{path}: not a JSON object")
    return data


def open_render(folder: Path) -> FinishedRender:
    """Read the render in ``folder`` (``<out>/<arrangement name>``).

    Raises:
        NoRenderError: no manifest.json there (never finished: see ``pending``), or one composer
            cannot read.
    """
    manifest = read_json_object(folder / "manifest.json")
    journal = read_json_object(folder / "journal.json")
    if manifest is None:
        todo = ", ".join(str(p) for p in (journal or {}).get("pending", [])) or "nothing recorded"
        raise NoRenderError(f"{folder}: no finished render (manifest.json) there; still to render: {todo}")
    try:
        return _view(folder, manifest, journal, load_state(folder))
    except (KeyError, TypeError, ValueError) as exc:
        raise NoRenderError(f"{folder / 'manifest.json'}: not a manifest composer wrote ({exc!r})") from None


def _view(folder: Path, m: dict[str, Any], journal: dict[str, Any] | None, state: State) -> FinishedRender:
    loud = m["loudness"]

    def path(relative: str | None) -> Path | None:
        return folder / relative if relative else None

    segments = [
        SegmentView(
            id=s["id"],
            kind=s["kind"],
            section=s.get("section"),
            take=int(s.get("take") or 0),
            seed=int(s["seed"]),
            repo_id=s["repo_id"],
            start_s=float(s["start_s"]),
            end_s=float(s["end_s"]),
            duration_s=float(s["duration_s"]),
            cache_key=s["cache_key"],
            cache_hit=bool(s["cache_hit"]),
            generate_seconds=s.get("generate_seconds"),
            measured_lufs=s.get("measured_lufs"),
            gain_db=[float(g) for g in s.get("gain_db", [])],
            raw=path((s.get("files") or {}).get("raw")),
            aligned=path((s.get("files") or {}).get("aligned")),
        )  # fmt: skip
        for s in m["segments"]
    ]
    takes = [TakeView(t["section"], int(t["take"]), int(t["seed"]), folder / t["file"], float(t["gain_db"]))
             for t in m.get("takes", [])]  # fmt: skip
    seams = [SeamView(s["before"], s["after"], float(s["at_s"]), float(s["score"])) for s in m.get("seams", [])]
    return FinishedRender(
        folder=folder, title=m["title"], mix=folder / m["output"]["file"], length_s=float(m["length_s"]),
        sample_rate=int(m["output"]["sample_rate"]),
        loudness=Loudness(float(loud["target_lufs"]), loud.get("integrated_lufs"), loud.get("true_peak_dbtp"),
                          float(loud["true_peak_ceiling_dbtp"]), float(loud["master_gain_db"])),
        segments=segments, takes=takes, seams=seams, state=state, complete=journal is None,
        pending=[str(p) for p in (journal or {}).get("pending", [])], manifest=m,
    )  # fmt: skip
