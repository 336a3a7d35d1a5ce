"""Build the render plan from a validated arrangement.

Segments: one stem per section and one generated transition per boundary (unless the boundary is
a plain crossfade or the next section continues the previous one; a loop's wrap, from the last
section back into the first, is a boundary too). Each segment gets a content hash over everything
that determines its tokens, so unchanged segments are reused from the cache and a change reaches
exactly the segments that depend on it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from composer.arrangement.schema import (
    MAX_TRACK_S,
    Arrangement,
    Section,
    has_transition,
    next_section,
    transition_duration_s,
)
from composer.arrangement.styles import StyleLibrary
from composer.engine.catalog import (
    COMFORTABLE_S,
    ENGINE_VERSIONS,
    FRAME_RATE_HZ,
    LONG_FORM_MAX_S,
    WINDOW_S,
    is_path_model,
)
from composer.engine.types import Sampling
from composer.errors import ArrangementError, Problem
from composer.prompt import PROMPT_MAX_CHARS, compose
from composer.settings import Settings

PLAN_VERSION = 1  # bump when the meaning of a cached segment changes
SEAM_S = 0.08  # crossfade at a continuation seam (the signals there are nearly identical)
TRANSITION_TEXT = "A transition that grows out of the previous section and leads into this one."


@dataclass(frozen=True)
class Segment:
    """One generation: a section's stem or a transition."""

    id: str  # "intro" for stems, "intro--drive" for transitions; used in file names
    kind: Literal["stem", "transition"]
    section: str  # the section (for transitions: the one it leaves)
    model: str  # as written: small / medium / large / repo id; a folder as its absolute path
    repo_id: str  # what the model source loads
    revision: str  # cached snapshot revision, or "not-cached"
    text: str
    seed: int
    take: int
    sampling: Sampling
    duration_s: float  # new audio
    frames: int
    window_s: float
    stride_s: float
    prompt_from: str | None  # id of the segment whose tail primes this one
    prompt_s: float  # seconds of that tail
    key: str = ""  # content hash; depends on prompt_from's key
    melody: str | None = None  # reference audio whose chroma conditions this stem (melody models)
    melody_sha256: str | None = None  # its content hash: part of the key, the path is not
    numerics: str = ""  # device, type and kernel its tokens come from (composer.engine.models.numerics_for)

    @property
    def prompt_frames(self) -> int:
        return round(self.prompt_s * FRAME_RATE_HZ) if self.prompt_from else 0


@dataclass(frozen=True)
class Placement:
    """Where a segment's new audio lands on the timeline."""

    segment: str
    start_s: float
    end_s: float
    join: Literal["start", "seam", "crossfade"]  # how it joins what comes before
    crossfade_s: float  # overlap with what comes before (seam or crossfade)


@dataclass
class Plan:
    """Everything needed to render, in dependency order."""

    title: str
    name: str  # arrangement file stem: output/<name>/
    segments: list[Segment]
    timeline: list[Placement]
    length_s: float
    warnings: list[str] = field(default_factory=list)
    output_rate: int = 44100  # the files' sample rate
    output_bytes: float = 3.0  # bytes per sample in the files (FLAC: an estimate of its compression)

    def segment(self, segment_id: str) -> Segment:
        for seg in self.segments:
            if seg.id == segment_id:
                return seg
        raise KeyError(segment_id)


def frames_for(duration_s: float) -> int:
    """Frames generated for a duration: enough to cover it (assembly trims the audio to the sample)."""
    return max(1, math.ceil(duration_s * FRAME_RATE_HZ - 1e-6))


class Grid:
    """Lengths on the bar grid (``grid: bars``): whole bars, with a warning where one was rounded."""

    def __init__(self, arr: Arrangement, file: str = ""):
        self.arr = arr
        self.file = file
        self.on = arr.on_bars
        self.warnings: list[str] = []

    def length(self, seconds: float, what: str, minimum: int = 1, limit: float | None = None, field: str = "") -> float:
        """``seconds`` as whole bars on the grid (at least ``minimum``), else unchanged; never above
        ``limit`` (rounded down where rounding to the nearest bar would pass it).

        Raises:
            ArrangementError: even ``minimum`` bars are longer than ``limit`` (a very slow tempo).
        """
        if not self.on:
            return seconds
        bars = max(minimum, round(seconds / self.arr.bar_s))
        if limit is not None and bars * self.arr.bar_s > limit + 1e-9:
            bars = int(limit // self.arr.bar_s + 1e-9)
            if bars < minimum:
                raise ArrangementError([Problem(self.file, None, field or what,
                                                f"one bar at {self.arr.bpm:g} bpm is {self.arr.bar_s:.2f} s, "
                                                f"longer than the {limit:g} s limit for {what}")])  # fmt: skip
        if abs(bars * self.arr.bar_s - seconds) > 1e-3:
            self.warnings.append(
                f"{what}: {seconds:g} s is {seconds / self.arr.bar_s:.2f} bars at {self.arr.bpm:g} bpm; "
                f"on the bar grid it is {bars} bar{'s' if bars != 1 else ''} ({bars * self.arr.bar_s:.3f} s)"
            )
        return bars * self.arr.bar_s


def section_limit(section: Section) -> float:
    """The longest a section may be: 60 s, or 300 s with ``allow_long``."""
    return LONG_FORM_MAX_S if section.allow_long else COMFORTABLE_S


def derive_seed(base: int, *parts: object) -> int:
    """A stable 31-bit seed from a base seed and labels (independent of Python's hash seed)."""
    digest = hashlib.sha256(json.dumps([base, *parts]).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def section_parts(section: Section, styles: StyleLibrary) -> tuple[list[str], bool]:
    """A section's prompt pieces (its style's parts, then its prompt and extra) and whether its tempo is free."""
    style = styles.get(section.style) if section.style else None
    own = [p for p in (section.prompt, section.extra) if p and p.strip()]
    return (style.sentences(then=own) if style else own), bool(style and style.free_tempo)


def transition_text(arr: Arrangement, i: int, styles: StyleLibrary) -> str:
    """The prompt of the transition after section ``i``: its style (``transition.style``, else
    ``transitions.style``) or else the next section's words (in a loop, the first section follows the
    last), then what a transition does."""
    spec = arr.sections[i].transition
    name = (spec.style if spec else None) or arr.transitions.style
    own = [TRANSITION_TEXT, *([spec.prompt] if spec and spec.prompt else [])]
    if name:
        style = styles.get(name)
        parts, free = style.sentences(then=own), style.free_tempo
    else:
        parts, free = section_parts(next_section(arr, i), styles)
        parts = [*parts, *own]
    return compose(parts, arr.bpm, arr.key, free)


def _melody(melody: str | None, file: str) -> tuple[str | None, str | None]:
    """A section's melody reference: its path (relative to the arrangement file) and content hash."""
    if melody is None:
        return None, None
    path = Path(file).parent / melody
    digest = hashlib.sha256()
    with path.open("rb") as f:  # streamed: a reference file may be large
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return str(path), digest.hexdigest()


def _hash(payload: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def build_plan(
    arr: Arrangement,
    name: str,
    styles: StyleLibrary,
    settings: Settings,
    *,
    seeds: dict[str, int] | None = None,
    takes: dict[str, int] | None = None,
    file: str = "",
) -> Plan:
    """Turn an arrangement into a plan.

    Args:
        arr: the validated arrangement.
        name: output name (the arrangement file's stem).
        styles: the style library.
        settings: model source and cache (to resolve repo ids and revisions).
        seeds: seed overrides chosen by ``regen`` (per section) and ``--reroll`` (per transition id).
        takes: the picked take per section (default 0).
        file: the arrangement file, for error messages.

    Raises:
        ArrangementError: crossfades longer than the audio they join.
    """
    planner = _Planner(arr, styles, settings, seeds or {}, takes or {}, file)
    for i in range(len(arr.sections)):
        planner.stem(i)
        if has_transition(arr, i):  # in a loop, the last section's transition wraps into the first
            planner.transition(i)
    return planner.plan(name)


class _Planner:
    """The segments of one arrangement, each with its cache key, added in dependency order."""

    def __init__(
        self, arr: Arrangement, styles: StyleLibrary, settings: Settings, seeds: dict[str, int],
        takes: dict[str, int], file: str,
    ):  # fmt: skip
        self.arr, self.styles, self.settings, self.seeds, self.takes, self.file = (
            arr,
            styles,
            settings,
            seeds,
            takes,
            file,
        )
        self.grid = Grid(arr, file)
        self.segments: list[Segment] = []
        self.pieces = [section_parts(s, styles) for s in arr.sections]  # (prompt parts, free tempo) per section
        self.numerics: dict[str, str] = {}

    def continued(self, i: int) -> bool:
        """Is section i's stem continued at a seam (by a transition or by the next section)?"""
        arr = self.arr
        follows = i + 1 < len(arr.sections) and arr.sections[i + 1].continue_from == "previous"
        return has_transition(arr, i) or follows

    def spare(self, seamed: bool, beatless: bool = False) -> float:
        """Audio generated past a segment's length so beat alignment can pull it up to half a bar earlier
        (a segment continued at a seam hands its end to the continuation instead; a beatless one has
        no downbeat to align)."""
        return self.arr.bar_s / 2 if self.arr.align_beats and not seamed and not beatless else 0.0

    def model_name(self, model: str) -> str:
        """A model as the engine opens it: a folder written relative (``./my-finetune``) is relative to the
        arrangement file, like a melody reference, so the plan means the same from any working folder."""
        if is_path_model(model) and model.startswith(".") and self.file:
            return str((Path(self.file).parent / model).resolve())
        return model

    def model_fields(self, model: str) -> tuple[str, str]:
        from composer.engine.models import architecture, model_revision, resolve_repo_id

        settings = self.settings
        repo = resolve_repo_id(model, settings)
        revision = model_revision(repo, settings)
        if revision is not None:  # refuse what composer cannot run before anything is generated
            architecture(model, repo, revision, settings)
        return repo, revision or "not-cached"

    def add(self, seg: Segment) -> None:
        """Add ``seg`` with its numerics and its cache key: a hash of everything that determines it."""
        from composer.engine.models import numerics_for

        settings = self.settings
        if seg.model not in self.numerics:
            self.numerics[seg.model] = numerics_for(seg.model, settings)
        seg = replace(seg, numerics=self.numerics[seg.model])
        parent = next((s for s in self.segments if s.id == seg.prompt_from), None)
        payload = asdict(seg) | {"key": None, "id": None, "section": None, "take": None, "model": None}
        if is_path_model(seg.model) and seg.revision != "not-cached":  # its content's hash: it may move, same key
            payload["repo_id"] = None
        del payload["melody"]
        if seg.melody_sha256 is None:
            del payload["melody_sha256"]
        payload |= {"parent": parent.key if parent else None, "plan_version": PLAN_VERSION}
        payload |= {"source": settings.model_source, "engine": settings.engine}
        payload |= {"engine_version": ENGINE_VERSIONS[settings.engine]}
        if settings.step_mode == "compile":  # compiled kernels round differently from the eager ones
            payload |= {"step": "compile"}
        self.segments.append(Segment(**(asdict(seg) | {"sampling": seg.sampling, "key": _hash(payload)})))

    def stem(self, i: int) -> None:
        arr, sec, gen = self.arr, self.arr.sections[i], self.arr.generation
        model = self.model_name(sec.model or gen.model)
        repo, rev = self.model_fields(model)
        take = self.takes.get(sec.name, 0)
        base = self.seeds.get(sec.name, sec.seed if sec.seed is not None else derive_seed(arr.seed, "stem", sec.name))
        seed = base if take == 0 else derive_seed(base, "take", take)
        o = sec.generation
        melody, melody_sha256 = _melody(sec.melody, self.file)
        prompt_from = self.segments[-1].id if sec.continue_from == "previous" else None
        parts, free = self.pieces[i]
        length = self.grid.length(sec.duration_s, sec.name, limit=section_limit(sec), field=f"sections[{i}].duration_s")
        self.add(
            Segment(
                id=sec.name, kind="stem", section=sec.name, model=model, repo_id=repo, revision=rev,
                text=compose(parts, arr.bpm, arr.key, free), seed=seed, take=take,
                sampling=Sampling(
                    cfg=o.cfg if o.cfg is not None else gen.cfg,
                    top_k=o.top_k if o.top_k is not None else gen.top_k,
                    top_p=o.top_p if o.top_p is not None else gen.top_p,
                    temperature=o.temperature if o.temperature is not None else gen.temperature,
                ),
                duration_s=length, frames=frames_for(length + self.spare(self.continued(i), beatless=free)),
                window_s=gen.window_s, stride_s=gen.stride_s,
                prompt_from=prompt_from, prompt_s=arr.transitions.prompt_s if prompt_from else 0.0,
                melody=melody, melody_sha256=melody_sha256,
            )
        )  # fmt: skip

    def transition(self, i: int) -> None:
        arr, gen = self.arr, self.arr.generation
        sec, nxt, spec = arr.sections[i], next_section(arr, i), arr.sections[i].transition
        t_model = self.model_name((spec.model if spec and spec.model else None) or arr.transitions.model)
        t_repo, t_rev = self.model_fields(t_model)
        seg_id = f"{sec.name}--{nxt.name}"
        duration = self.grid.length(transition_duration_s(arr, i), seg_id, limit=WINDOW_S,
                                    field="transitions.duration_s")  # fmt: skip
        self.add(
            Segment(
                id=seg_id, kind="transition", section=sec.name, model=t_model,
                repo_id=t_repo, revision=t_rev, text=transition_text(arr, i, self.styles),
                seed=self.seeds.get(seg_id, derive_seed(arr.seed, "transition", sec.name, nxt.name)),
                take=0,
                sampling=Sampling(gen.cfg, gen.top_k, gen.top_p, gen.temperature),
                duration_s=duration, frames=frames_for(duration + self.spare(False)),
                window_s=gen.window_s, stride_s=gen.stride_s, prompt_from=sec.name,
                prompt_s=(spec.prompt_s if spec and spec.prompt_s else None) or arr.transitions.prompt_s,
            )
        )  # fmt: skip

    def problems(self) -> list[Problem]:
        """Prompts over the limit, and more generated audio than allowed once on the bar grid."""
        arr, file = self.arr, self.file
        problems = []
        for seg in self.segments:  # capped after filling in the style, before any text reaches T5
            if len(seg.text) > PROMPT_MAX_CHARS:
                where, what = (
                    (f"sections[{[s.name for s in arr.sections].index(seg.section)}]", "its style")
                    if seg.kind == "stem"
                    else ("transitions", "its style or the next section's words")
                )
                message = (f"the prompt of {seg.id!r} is {len(seg.text)} characters with {what} "
                           f"(limit {PROMPT_MAX_CHARS}); shorten prompt or extra")  # fmt: skip
                problems.append(Problem(file, None, where, message))
        generated = sum(seg.duration_s for seg in self.segments if seg.take == 0)
        if generated > MAX_TRACK_S + 1e-6:  # on the bar grid the lengths validated may have grown
            problems.append(Problem(file, None, "sections", f"on the bar grid {generated:.0f} s of audio is generated, "
                                    f"more than the {MAX_TRACK_S:.0f} s limit; shorten sections"))  # fmt: skip
        return problems

    def plan(self, name: str) -> Plan:
        arr, file, segments = self.arr, self.file, self.segments
        timeline, problems = _place(arr, segments, file, self.grid)
        problems += self.problems()
        if problems:
            raise ArrangementError(problems)
        length = timeline[-1].end_s
        if arr.fade_in_s + arr.fade_out_s > length:
            fades = f"a fade-in of {arr.fade_in_s:g} s and a fade-out of {arr.fade_out_s:g} s"
            raise ArrangementError(
                [Problem(file, None, "fade_out_s", f"{fades} are longer than the {length:.2f} s track")]
            )
        warnings = list(dict.fromkeys(self.grid.warnings))
        if not 90.0 <= length <= 180.0:
            warnings.append(f"the track is {length:.1f} s long; composer aims for 90-180 s")
        for seg in segments:
            if seg.prompt_from and seg.prompt_s > _segment(segments, seg.prompt_from).duration_s:
                warnings.append(
                    f"{seg.id}: prompt_s {seg.prompt_s:g} s is longer than {seg.prompt_from}; using all of it"
                )
        depth = {16: 2.0, 24: 3.0, "float": 4.0}[arr.output.bit_depth] * (0.6 if arr.output.format == "flac" else 1.0)
        return Plan(arr.title, name, segments, timeline, length, warnings, arr.output.sample_rate, depth)


def _segment(segments: list[Segment], segment_id: str) -> Segment:
    return next(s for s in segments if s.id == segment_id)


def _place(arr: Arrangement, segments: list[Segment], file: str, grid: Grid) -> tuple[list[Placement], list[Problem]]:
    """Lay segments end to end: seams where one continues the other, crossfades elsewhere.

    A segment ends at its nominal length (its audio, a little longer on the 20 ms frame grid, is
    trimmed there), except before a seam: the continuation picks up where the tokens end. On the bar
    grid every crossfade is whole bars, so every start lands on a bar line; a seam may sit up to one
    frame (20 ms) after one, and what follows it is back on the grid.
    """
    timeline: list[Placement] = []
    problems: list[Problem] = []
    section_index = {s.name: i for i, s in enumerate(arr.sections)}
    seamed = {seg.prompt_from for i, seg in enumerate(segments) if i and seg.prompt_from == segments[i - 1].id}
    nominal_end = 0.0  # where the previous segment ends musically (before a seam: its last token)

    def end_of(seg: Segment, start: float, nominal_start: float) -> float:
        if seg.id in seamed:
            return start + seg.frames / FRAME_RATE_HZ
        return nominal_start + seg.duration_s

    for seg in segments:
        if not timeline:
            timeline.append(Placement(seg.id, 0.0, end_of(seg, 0.0, 0.0), "start", 0.0))
            nominal_end = seg.duration_s
            continue
        prev = timeline[-1]
        if seg.prompt_from == prev.segment:  # continuation: the new audio starts where the prompt ended
            start, join, overlap = prev.end_s, "seam", min(SEAM_S, seg.duration_s, prev.end_s - prev.start_s)
            nominal_start = nominal_end if grid.on else start
        else:
            owner = arr.sections[section_index[_segment(segments, prev.segment).section]]
            overlap = grid.length(arr.crossfade_s(owner.transition), f"crossfade into {seg.id}", minimum=0)
            shortest = min(seg.duration_s, prev.end_s - prev.start_s)
            if overlap > shortest + 1e-9:
                field_path = f"sections[{section_index[owner.name]}].transition" if owner.transition else "transitions"
                problems.append(
                    Problem(
                        file, None, field_path,
                        f"crossfade of {overlap:g} s into {seg.id!r} is longer than the audio it joins "
                        f"({shortest:g} s)",
                    )
                )  # fmt: skip
                overlap = shortest
            start, join = prev.end_s - overlap, "crossfade"
            nominal_start = start
        end = end_of(seg, start, nominal_start)
        nominal_end = nominal_start + seg.duration_s
        timeline.append(Placement(seg.id, start, end, join, overlap))  # type: ignore[arg-type]
    return timeline, problems
