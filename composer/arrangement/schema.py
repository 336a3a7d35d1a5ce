"""The arrangement: what a track is made of, as the user writes it in YAML.

Every model is strict (unknown keys are errors), frozen, and documents each field; the JSON Schema
that ``compose schema`` prints is generated from these classes, so editors can autocomplete.
Cross-field rules that need precise locations (unique names, per-model limits, ...) live in
:func:`semantic_problems`, which the loader maps to file lines.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from composer.engine.catalog import (
    COMFORTABLE_S,
    DEFAULT_STRIDE_S,
    LONG_FORM_MAX_S,
    MODELS,
    WINDOW_S,
    info_of,
    is_known_model,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
KEY_PATTERN = re.compile(r"^[A-G][#b]?(\s*(major|minor|maj|min|m))?$", re.IGNORECASE)

# said where a transition on the last section is refused: a section's transition is the join after it
LAST_TRANSITION = (
    "the last section has no following boundary (a section's transition is the join after it; "
    "for the join into this section, set it on the section before; with loop: true it is the wrap)"
)
WRAP_CROSSFADE = "in a loop the wrap into the first section crossfades over loop_crossfade_bars; set that instead"


RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
# What may not appear in one line of text that reaches a file (titles, CUE and label text): C0 and C1
# controls (U+0085 is a line break), the line and paragraph separators, and bidirectional controls
# (U+202E turns the rest of a line around). One definition for every check and every cleaning.
NOT_IN_A_LINE = "\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"


def one_line(text: str) -> str:
    """``text`` with every character of :data:`NOT_IN_A_LINE` replaced by a space."""
    return re.sub(f"[{NOT_IN_A_LINE}]", " ", text)


MIN_SEGMENT_S = 0.1  # five codec frames: anything shorter is a typo (1e-300 s broke the fades downstream)
MAX_TRACK_S = 1200.0  # 20 minutes of generated audio: beyond that an arrangement is a mistake, not a track


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False, allow_inf_nan=False)


class Loudness(_Strict):
    """Loudness targets for the finished mix."""

    target_lufs: float = Field(
        -14.0, ge=-40.0, le=-5.0, description="Integrated loudness of the mix, LUFS (BS.1770). Streaming: -14."
    )
    true_peak_dbtp: float = Field(
        -1.0, ge=-9.0, le=0.0, description="True-peak ceiling of the mix, dBTP (oversampled peaks)."
    )


class Output(_Strict):
    """File format of the mix and the stems."""

    format: Literal["wav", "flac", "mp3", "ogg"] = Field(
        "wav", description="wav or flac (lossless), mp3 (constant bitrate) or ogg (Vorbis)."
    )
    bit_depth: Literal[16, 24, "float"] = Field(
        24, description="wav and flac: 16 or 24-bit PCM, or 32-bit float (wav only)."
    )
    quality: Literal["high", "standard", "small"] = Field(
        "high", description="mp3 and ogg: high (mp3 320 kbit/s), standard (160) or small (96); Vorbis about alike."
    )
    sample_rate: Literal[32000, 44100, 48000] = Field(
        44100, description="MusicGen renders at 32000 Hz; 44100/48000 are resampled with soxr (VHQ)."
    )


class Sampling(_Strict):
    """Sampling parameters; unset fields inherit from the level above."""

    cfg: float | None = Field(
        None, ge=1.0, le=20.0, description="Classifier-free guidance scale (1 = off). MusicGen default 3."
    )
    top_k: int | None = Field(None, ge=0, le=2048, description="Sample among the k most likely codes (0 = off).")
    top_p: float | None = Field(None, ge=0.0, le=1.0, description="Nucleus sampling mass (0 = off).")
    temperature: float | None = Field(None, gt=0.0, le=5.0, description="Softmax temperature.")


class GenerationDefaults(_Strict):
    """Defaults for every section stem."""

    model: str = Field("small", description="small, medium, large, or a MusicGen hub repo id (ORG/NAME).")
    cfg: float = Field(3.0, ge=1.0, le=20.0, description="Classifier-free guidance scale (1 = off).")
    top_k: int = Field(250, ge=0, le=2048, description="Sample among the k most likely codes (0 = off).")
    top_p: float = Field(0.0, ge=0.0, le=1.0, description="Nucleus sampling mass (0 = off).")
    temperature: float = Field(1.0, gt=0.0, le=5.0, description="Softmax temperature.")
    window_s: float = Field(
        WINDOW_S, gt=5.0, le=WINDOW_S, description="Longest single MusicGen window, s (the model knows 30 s)."
    )
    stride_s: float = Field(
        DEFAULT_STRIDE_S,
        gt=0.0,
        le=WINDOW_S,
        description="New audio per extra window, s; the rest of the window is the continuation prompt.",
    )


DEFAULT_CROSSFADE_S = 2.0


class Crossfade(_Strict):
    """A crossfade length in seconds or in bars (at the arrangement's bpm); give at most one."""

    crossfade_s: float | None = Field(
        None, ge=0.0, le=30.0, description=f"Crossfade length, seconds (default {DEFAULT_CROSSFADE_S:g})."
    )
    crossfade_bars: float | None = Field(None, ge=0.0, le=32.0, description="Crossfade length, bars.")


class TransitionDefaults(Crossfade):
    """Defaults for the generated transition at every section boundary."""

    model: str = Field("medium", description="Model for transitions: small, medium, large or a repo id.")
    style: str | None = Field(
        None, description="A style for every transition (e.g. riser-transition); default: the next section's words."
    )
    duration_s: float = Field(30.0, ge=MIN_SEGMENT_S, le=WINDOW_S, description="Length of each transition, s.")
    prompt_s: float = Field(
        10.0, gt=0.0, le=20.0, description="Seconds of the previous section's tail used as continuation prompt."
    )


class TransitionSpec(Crossfade):
    """Override for the boundary after one section. ``transition: none`` means a plain crossfade."""

    type: Literal["generated", "crossfade"] = Field(
        "generated", description="generated: a MusicGen continuation; crossfade: no transition segment."
    )
    model: str | None = Field(None, description="Model for this transition.")
    style: str | None = Field(None, description="A style for this transition (overrides transitions.style).")
    duration_s: float | None = Field(None, ge=MIN_SEGMENT_S, le=WINDOW_S, description="Length of this transition, s.")
    prompt_s: float | None = Field(None, gt=0.0, le=20.0, description="Continuation prompt length, s.")
    prompt: str | None = Field(None, max_length=2000, description="Extra text for the transition's prompt.")


class Section(_Strict):
    """One section of the track; rendered as one stem."""

    name: str = Field(description="Unique name; used in file names (letters, digits, - and _).", pattern=NAME_PATTERN)
    style: str | None = Field(None, description="A style from the style library (compose styles list).")
    prompt: str | None = Field(None, max_length=4000, description="Prompt text; used alone or after the style.")
    extra: str | None = Field(None, max_length=2000, description="Extra text appended to the style/prompt.")
    duration_s: float = Field(
        ge=MIN_SEGMENT_S, description="Length of the section's stem, seconds (or give duration_bars instead)."
    )
    duration_bars: int | None = Field(
        None, ge=1, le=256, description="Length in bars at the arrangement's bpm; puts the track on the bar grid."
    )

    @field_validator("duration_bars", mode="before")
    @classmethod
    def _not_a_flag(cls, value: Any) -> Any:
        if isinstance(value, bool):  # pydantic would read true as 1 bar
            raise ValueError("expected a whole number of bars, not true/false")
        return value

    model: str | None = Field(None, description="Model override for this stem.")
    seed: int | None = Field(None, ge=0, lt=2**31, description="Seed override (default: derived from the track seed).")
    generation: Sampling = Field(default_factory=Sampling, description="Sampling overrides for this stem.")
    loudness_offset_lu: float = Field(0.0, ge=-20.0, le=6.0, description="Loudness relative to the track target, LU.")
    allow_long: bool = Field(
        False, description=f"Allow more than {COMFORTABLE_S:.0f} s (windowed continuation; expect drift)."
    )
    transition: TransitionSpec | None = Field(
        None, description="Override for the boundary after this section; 'none' for a plain crossfade."
    )
    continue_from: Literal["previous"] | None = Field(
        None,
        description="'previous': this stem continues the previous section's audio (no transition between them).",
    )
    melody: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="Reference audio (WAV/FLAC) whose melody (chroma) conditions this stem, relative to the "
        "arrangement file and inside its folder; needs a melody model (melody, stereo-melody...).",
    )

    @field_validator("transition", mode="before")
    @classmethod
    def _none_means_crossfade(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "none":
            return {"type": "crossfade"}
        return value


class Arrangement(_Strict):
    """A track: global settings plus an ordered list of sections."""

    title: str = Field(
        min_length=1,
        max_length=200,
        pattern=f"^[^{NOT_IN_A_LINE}]+$",
        description="Title, written into the manifest and markers (one line: no control characters).",
    )
    artist: str | None = Field(
        None, min_length=1, max_length=200, pattern=f"^[^{NOT_IN_A_LINE}]+$",
        description="Artist, written into every file's tags (optional; one line).",
    )  # fmt: skip
    bpm: float = Field(gt=20.0, le=300.0, description="Tempo; woven into every prompt and used for bar lengths.")
    beats_per_bar: int = Field(4, ge=1, le=16, description="Beats per bar, for lengths given in bars.")
    key: str | None = Field(None, description="Musical key, e.g. 'A minor', 'F#m'; woven into every prompt.")
    seed: int = Field(0, ge=0, lt=2**31, description="Track seed; each segment's seed is derived from it.")
    loudness: Loudness = Field(default_factory=Loudness, description="Loudness targets.")
    output: Output = Field(default_factory=Output, description="Output format.")
    generation: GenerationDefaults = Field(default_factory=GenerationDefaults, description="Stem defaults.")
    transitions: TransitionDefaults = Field(default_factory=TransitionDefaults, description="Transition defaults.")
    grid: Literal["auto", "bars", "seconds"] = Field(
        "auto",
        description="bars: every section, transition and crossfade is a whole number of bars and starts on a bar "
        "line; seconds: lengths as written; auto: bars when any section gives duration_bars.",
    )
    align_beats: bool = Field(
        True,
        description="Shift each segment (by at most half a bar) so its first downbeat lands on a bar line of the "
        "track; beatless audio is left as it is.",
    )
    fade_in_s: float = Field(0.01, ge=0.0, le=30.0, description="Fade-in at the start of the track, s (no click).")
    fade_out_s: float = Field(1.0, ge=0.0, le=60.0, description="Fade-out at the end of the track, s.")
    loop: bool = Field(
        False, description="Make the track a seamless loop: its end crossfades into its beginning, and its "
        "length is a whole number of bars (no fades).",
    )  # fmt: skip
    loop_crossfade_bars: int = Field(
        1, ge=1, le=8, description="With loop: bars over which the end crossfades into the start."
    )
    sections: list[Section] = Field(min_length=1, description="The sections, in order.")

    @model_validator(mode="before")
    @classmethod
    def _bars_to_seconds(cls, data: Any) -> Any:
        """A section given in bars gets its seconds from the tempo (before validation, so every later
        step reads duration_s); a section giving both is checked in ``semantic_problems``."""
        if not isinstance(data, dict) or not isinstance(data.get("sections"), list):
            return data
        bpm, beats = _number(data.get("bpm")), _number(data.get("beats_per_bar", 4))
        sections = []
        for sec in data["sections"]:
            if isinstance(sec, dict) and "duration_bars" in sec and "duration_s" not in sec:
                bars = _number(sec["duration_bars"])
                if bars is not None and bars == int(bars) and bpm is not None and beats is not None:
                    sec = {**sec, "duration_s": bars * beats * 60.0 / bpm}
                else:  # the bars or the tempo are wrong and say so themselves: not "duration_s is missing"
                    sec = {**sec, "duration_s": 1.0}
            sections.append(sec)
        return {**data, "sections": sections}

    @property
    def on_bars(self) -> bool:
        """Is the track laid on the bar grid (``grid: bars``, or ``auto`` with a section in bars)?"""
        if self.grid == "auto":
            return any(s.duration_bars is not None for s in self.sections)
        return self.grid == "bars"

    @property
    def bar_s(self) -> float:
        """One bar at this tempo, seconds."""
        return self.beats_per_bar * 60.0 / self.bpm

    def bars_to_s(self, bars: float) -> float:
        """Length of ``bars`` bars at this arrangement's tempo, seconds."""
        return bars * self.beats_per_bar * 60.0 / self.bpm

    def crossfade_s(self, spec: Crossfade | None) -> float:
        """Crossfade length for a boundary: the override's, else the transition defaults', else 2 s."""
        for source in (spec, self.transitions):
            if source is None:
                continue
            if source.crossfade_s is not None:
                return source.crossfade_s
            if source.crossfade_bars is not None:
                return self.bars_to_s(source.crossfade_bars)
        return DEFAULT_CROSSFADE_S


Path_ = tuple[str | int, ...]


def _number(value: Any) -> float | None:
    """A finite positive number as validation will read it (``120``, ``120.0``, ``"120"``), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if 0 < number < float("inf") else None


def _crossfade_problems(spec: Crossfade, path: Path_) -> list[tuple[Path_, str]]:
    if spec.crossfade_s is not None and spec.crossfade_bars is not None:
        return [(path + ("crossfade_bars",), "give crossfade_s or crossfade_bars, not both")]
    return []


def _model_problems(model: Any, path: Path_) -> list[tuple[Path_, str]]:
    if not isinstance(model, str) or is_known_model(model):
        return []
    guess = difflib.get_close_matches(model, list(MODELS), n=1, cutoff=0.6)
    hint = f"did you mean {guess[0]!r}? " if guess else ""
    return [(path, f"unknown model {model!r}; {hint}use {', '.join(MODELS)} or a hub repo id (ORG/NAME)")]


def raw_reference_problems(data: Any) -> list[tuple[Path_, str]]:
    """Model names checked on the parsed YAML itself, so they are reported even beside schema errors."""
    problems: list[tuple[Path_, str]] = []
    if not isinstance(data, dict):
        return problems
    for block in ("generation", "transitions"):
        if isinstance(data.get(block), dict):
            problems += _model_problems(data[block].get("model"), (block, "model"))
    sections = data.get("sections")
    for i, sec in enumerate(sections if isinstance(sections, list) else []):
        if isinstance(sec, dict):
            problems += _model_problems(sec.get("model"), ("sections", i, "model"))
            if isinstance(sec.get("transition"), dict):
                problems += _model_problems(sec["transition"].get("model"), ("sections", i, "transition", "model"))
    return problems


def _name_problems(name: str, seen: dict[str, str]) -> list[str]:
    """What is wrong with a section's name (``seen``: the names before it, case-folded; updated)."""
    problems = []
    folded = name.lower()  # case-insensitive file systems would merge these
    if folded in RESERVED_NAMES:
        problems.append(f"{name!r} is a reserved file name on Windows; pick another name")
    if "--" in name:  # the separator of transition ids: "a", "b" and "a--b" would collide
        problems.append(f"{name!r} contains '--', which composer keeps for transitions (intro--drive); "
                        "use a single '-' or '_'")  # fmt: skip
    if folded in seen:
        problems.append(f"duplicate section name {name!r} (clashes with {seen[folded]!r})")
    seen.setdefault(folded, name)
    return problems


def _duration_problem(duration_s: float, allow_long: bool) -> str | None:
    limit = LONG_FORM_MAX_S if allow_long else COMFORTABLE_S
    if duration_s <= limit:
        return None
    hint = (
        "split it into sections"
        if allow_long
        else "split it into sections, or set allow_long: true for windowed generation"
    )
    return f"{duration_s:g} s is above the {limit:.0f} s limit; {hint}"


def raw_section_problems(data: Any) -> list[tuple[Path_, str]]:
    """Section names and lengths checked on the parsed YAML itself, so that ``validate`` reports them in
    the same pass as schema errors elsewhere in the file (the same rules as :func:`semantic_problems`)."""
    problems: list[tuple[Path_, str]] = []
    sections = data.get("sections") if isinstance(data, dict) else None
    seen: dict[str, str] = {}
    for i, sec in enumerate(sections if isinstance(sections, list) else []):
        if not isinstance(sec, dict):
            continue
        if isinstance(sec.get("name"), str):
            problems += [(("sections", i, "name"), problem) for problem in _name_problems(sec["name"], seen)]
        duration, allow_long = sec.get("duration_s"), sec.get("allow_long", False)
        seconds = float(duration) if isinstance(duration, int | float) and not isinstance(duration, bool) else None
        if seconds is not None and isinstance(allow_long, bool) and (problem := _duration_problem(seconds, allow_long)):
            problems.append((("sections", i, "duration_s"), problem))
    return problems


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a key composer can name in a prompt, or None (one rule for arrangements and options)."""
    if KEY_PATTERN.match(key.strip()):
        return None
    return f"unknown key {key!r}; write e.g. 'A minor', 'C major', 'F#m'"


LOSSY = ("mp3", "ogg")


def _output_problems(out: Output) -> list[tuple[Path_, str]]:
    """A format this libsndfile cannot write, and settings that do not apply to the format."""
    import soundfile as sf

    problems: list[tuple[Path_, str]] = []
    if out.format.upper() not in sf.available_formats():
        problems.append((("output", "format"), f"this machine's libsndfile ({sf.__libsndfile_version__}) cannot "
                         f"write {out.format}; use wav or flac (mp3 needs libsndfile 1.1 or newer)"))  # fmt: skip
    if out.format == "flac" and out.bit_depth == "float":
        problems.append((("output", "bit_depth"), "FLAC cannot store float samples; use 16 or 24, or format: wav"))
    if out.format in LOSSY and "bit_depth" in out.model_fields_set:
        problems.append((("output", "bit_depth"), f"{out.format} has no bit depth; set quality instead"))
    if out.format not in LOSSY and "quality" in out.model_fields_set:
        problems.append((("output", "quality"), f"{out.format} is lossless; quality is for mp3 and ogg"))
    return problems


def semantic_problems(arr: Arrangement) -> list[tuple[Path_, str]]:
    """Cross-field problems, each with the path of the field to blame."""
    problems: list[tuple[Path_, str]] = []
    if arr.key is not None and (problem := key_problem(arr.key)):
        problems.append((("key",), problem))
    problems += _model_problems(arr.generation.model, ("generation", "model"))
    problems += _model_problems(arr.transitions.model, ("transitions", "model"))
    problems += _crossfade_problems(arr.transitions, ("transitions",))
    if arr.generation.stride_s >= arr.generation.window_s:
        problems.append((("generation", "stride_s"), "stride_s must be shorter than window_s"))
    problems += _output_problems(arr.output)
    if arr.loop:
        problems += [((field,), f"a loop has no {field.replace('_s', '')}: its end flows into its start")
                     for field in ("fade_in_s", "fade_out_s") if field in arr.model_fields_set]  # fmt: skip
    loud = arr.loudness
    if loud.target_lufs > loud.true_peak_dbtp:  # a mix's loudness sits below its peaks: this cannot be met
        problems.append((("loudness", "target_lufs"), f"{loud.target_lufs:g} LUFS cannot be reached with peaks held "
                         f"under {loud.true_peak_dbtp:g} dBTP; lower target_lufs or raise true_peak_dbtp"))  # fmt: skip
    problems += _length_problems(arr)
    seen: dict[str, str] = {}
    last = len(arr.sections) - 1
    for i, sec in enumerate(arr.sections):
        at: Path_ = ("sections", i)
        problems += [(at + ("name",), problem) for problem in _name_problems(sec.name, seen)]
        if not (sec.style or sec.prompt):
            problems.append((at + ("style",), "give a style or a prompt (or both)"))
        problems += _model_problems(sec.model, at + ("model",))
        if sec.melody is not None:
            info = info_of(sec.model or arr.generation.model)
            if info is not None and not info.melody:
                problems.append((at + ("melody",), f"model {info.alias!r} does not take a melody; use model: melody, "
                                 "stereo-melody or stereo-melody-large for this section"))  # fmt: skip
        if sec.duration_bars is not None and abs(sec.duration_s - (in_s := arr.bars_to_s(sec.duration_bars))) > 1e-6:
            problems.append((at + ("duration_bars",), "give duration_s or duration_bars, not both "
                             f"({sec.duration_bars} bars at {arr.bpm:g} bpm are {in_s:.3f} s)"))  # fmt: skip
        if problem := _duration_problem(sec.duration_s, sec.allow_long):
            problems.append((at + ("duration_s",), problem))
        if sec.continue_from is not None:
            if i == 0:
                problems.append((at + ("continue_from",), "the first section has nothing to continue from"))
            elif (before := arr.sections[i - 1].transition) is not None and before.type == "generated":
                problems.append(
                    (at + ("continue_from",), "the previous section asks for a generated transition into this one")
                )
        if sec.transition is not None:
            if i == last and not arr.loop:
                problems.append((at + ("transition",), LAST_TRANSITION))
            elif i == last:
                problems += [(at + ("transition", name), WRAP_CROSSFADE) for name in ("crossfade_s", "crossfade_bars")
                             if getattr(sec.transition, name) is not None]  # fmt: skip
            problems += _model_problems(sec.transition.model, at + ("transition", "model"))
            problems += _crossfade_problems(sec.transition, at + ("transition",))
    return problems


def has_transition(arr: Arrangement, i: int) -> bool:
    """Is there a generated transition after section i: into section i + 1, or, in a loop, from the last
    section back into the first (the wrap)?"""
    spec = arr.sections[i].transition
    if i + 1 == len(arr.sections):
        if not arr.loop:
            return False
    elif arr.sections[i + 1].continue_from == "previous":
        return False
    return spec is None or spec.type == "generated"


def next_section(arr: Arrangement, i: int) -> Section:
    """The section after section i; in a loop, the first one follows the last."""
    return arr.sections[(i + 1) % len(arr.sections)]


def transition_duration_s(arr: Arrangement, i: int) -> float:
    spec = arr.sections[i].transition
    return (spec.duration_s if spec and spec.duration_s else None) or arr.transitions.duration_s


def _length_problems(arr: Arrangement) -> list[tuple[Path_, str]]:
    """Crossfades that do not fit the audio they join, and absurd total lengths."""
    problems: list[tuple[Path_, str]] = []
    total = 0.0
    for i, sec in enumerate(arr.sections):
        total += sec.duration_s
        if i + 1 == len(arr.sections) or arr.sections[i + 1].continue_from == "previous":
            continue
        generated = has_transition(arr, i)
        before = transition_duration_s(arr, i) if generated else sec.duration_s
        total += transition_duration_s(arr, i) if generated else 0.0
        overlap = arr.crossfade_s(sec.transition)
        shortest = min(before, arr.sections[i + 1].duration_s)
        if overlap > shortest:
            own = sec.transition is not None and (sec.transition.crossfade_s or sec.transition.crossfade_bars)
            loc: Path_ = ("sections", i, "transition") if own else ("transitions",)
            problems.append(
                (
                    loc,
                    f"crossfade of {overlap:g} s into {arr.sections[i + 1].name!r} is longer than the audio it "
                    f"joins ({shortest:g} s)",
                )  # fmt: skip
            )
    last = len(arr.sections) - 1
    if arr.loop and has_transition(arr, last):  # the wrap: from the last section back into the first
        wrap, fold = transition_duration_s(arr, last), arr.bars_to_s(arr.loop_crossfade_bars)
        total += wrap
        if wrap < fold - 1e-9:
            spec = arr.sections[last].transition
            own = spec is not None and spec.duration_s is not None
            loc = ("sections", last, "transition", "duration_s") if own else ("loop_crossfade_bars",)
            problems.append((loc, f"the wrap transition ({wrap:g} s) is shorter than the {arr.loop_crossfade_bars}"
                             f"-bar crossfade ({fold:.3g} s) into the first section"))  # fmt: skip
    if arr.loop and total < (arr.loop_crossfade_bars + 1) * arr.bar_s:
        problems.append((("loop_crossfade_bars",), f"a loop needs more than {arr.loop_crossfade_bars + 1} bars "
                         f"({(arr.loop_crossfade_bars + 1) * arr.bar_s:.3g} s) of music to wrap"))  # fmt: skip
    if total > MAX_TRACK_S:
        problems.append(
            (("sections",), f"{total:.4g} s of generated audio is absurdly long (limit {MAX_TRACK_S:.0f} s); split it")
        )
    return problems


def arrangement_json_schema() -> dict[str, Any]:
    """JSON Schema for arrangement files (``compose schema``)."""
    schema = Arrangement.model_json_schema()
    transition = schema["$defs"]["Section"]["properties"]["transition"]
    transition.setdefault("anyOf", []).insert(0, {"const": "none", "type": "string"})
    schema["title"] = "composer arrangement"
    return schema
