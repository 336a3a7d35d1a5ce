"""Lay the segments on the timeline, match their loudness, and master the mix.

Every segment becomes one *track*: its audio (extended backwards over a continuation seam), a gain
envelope that brings it to its section's loudness, and fades where it overlaps its neighbours. The
mix is the sum of the tracks; the tracks themselves are the DAW-aligned stems.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from composer.arrangement.schema import Arrangement
from composer.assembly.beats import Alignment, align
from composer.assembly.crossfade import Curve, fade_curves
from composer.assembly.limiter import limit, oversampled_peaks
from composer.assembly.loudness import db_to_gain, integrated_lufs
from composer.assembly.seams import Seam, score_seams
from composer.audio.dsp import highpass, resample
from composer.engine.types import Take
from composer.plan import Placement, Plan

log = logging.getLogger(__name__)


@dataclass
class Track:
    """One segment placed on the timeline (at the engine's sample rate)."""

    segment: str
    start: int  # first sample on the timeline (a seam starts before the placement's start)
    audio: np.ndarray  # float32 (channels, n): gain and fades applied
    measured_lufs: float | None  # of the segment's new audio, before gain
    gain_db: tuple[float, float]  # gain at its start and end (equal unless it ramps between sections)


@dataclass
class Assembly:
    """The assembled, unmastered timeline."""

    sample_rate: int
    length: int  # samples
    tracks: list[Track]
    placements: list[Placement] = field(default_factory=list)  # where each segment really landed (after alignment)
    alignment: Alignment | None = None
    loop: Loop | None = None  # a looping track: the timeline folded (see :func:`fold`)

    @property
    def channels(self) -> int:
        """Stereo when any segment is stereo (mono segments are then up-mixed)."""
        return max((t.audio.shape[0] for t in self.tracks), default=1)

    def placements_in_file(self) -> list[Placement]:
        """The placements that start inside the file: all of them, or those before a loop's end (what
        lies after it is folded over the loop's start)."""
        if self.loop is None:
            return list(self.placements)
        return [p for p in self.placements if p.start_s * self.sample_rate < self.loop.length]

    def mix(self) -> np.ndarray:
        out = np.zeros((self.channels, self.length), np.float64)
        for track in self.tracks:
            out[:, track.start : track.start + track.audio.shape[1]] += track.audio
        return fold(out, self.loop).astype(np.float32)


@dataclass(frozen=True)
class Loop:
    """Where a looping track wraps: ``length`` samples (whole bars) play again and again; the
    ``overlap`` samples of the timeline after them crossfade into its first ``overlap`` samples."""

    length: int
    overlap: int
    bars: int


def loop_of(length: int, rate: int, bar_s: float, crossfade_bars: int) -> Loop:
    """The longest whole number of bars that leaves at least ``crossfade_bars`` of the timeline after it.

    Raises:
        ValueError: the timeline is too short (validation refuses such arrangements first).
    """
    bars = int(np.floor(length / rate / bar_s + 1e-9)) - crossfade_bars
    if bars < 1:
        raise ValueError(f"a loop needs more than {crossfade_bars + 1} bars of music")
    loop_length = int(round(bars * bar_s * rate))
    return Loop(loop_length, length - loop_length, bars)


def fold(audio: np.ndarray, loop: Loop | None) -> np.ndarray:
    """Fold the timeline into a loop: its first ``length`` samples, where the ``overlap`` after them
    fades out over the start while the start fades in (equal power). Played end to start, the loop's
    last sample is followed by what the music played next, fading into the beginning. Linear, so folded
    stems still sum to the folded mix."""
    if loop is None:
        return audio
    out = np.array(audio[:, : loop.length], dtype=np.float64)
    tail = audio[:, loop.length : loop.length + loop.overlap]
    fade_out, fade_in = fade_curves(tail.shape[1], "equal_power")
    out[:, : tail.shape[1]] = out[:, : tail.shape[1]] * fade_in + tail * fade_out
    return out


@dataclass
class Master:
    """The finished mix and what mastering did."""

    audio: np.ndarray  # float32 (channels, n) at the output rate
    sample_rate: int
    master_gain_db: float
    integrated_lufs: float | None
    true_peak_dbtp: float
    max_reduction_db: float  # deepest limiter gain reduction


def section_targets(arr: Arrangement) -> dict[str, float]:
    """Each section's loudness in the mix (LUFS): the target plus its ``loudness_offset_lu``."""
    return {s.name: arr.loudness.target_lufs + s.loudness_offset_lu for s in arr.sections}


def generated_audio(cached: Take, rate: int) -> np.ndarray:
    """A segment's new audio (continuation prompt trimmed), DC removed, at ``rate``."""
    return resample(highpass(cached.new_audio, cached.sample_rate), cached.sample_rate, rate)


def assemble(plan: Plan, arr: Arrangement, segments: dict[str, Take], rate: int) -> Assembly:
    """Place, loudness-match and fade every segment of the plan, at the output sample rate ``rate``.

    Segments are resampled first, so loudness is measured on what ends up in the file. The mix is
    stereo when any segment is stereo; mono segments are then up-mixed before they are measured.
    """
    order = [s.name for s in arr.sections]
    targets = section_targets(arr)
    placements = plan.timeline
    channels = max(segments[p.segment].channels for p in placements)
    alignment = align(plan, arr, segments)
    actual = _moved(placements, alignment)
    tracks: list[Track] = []
    for i, (place, moved) in enumerate(zip(placements, actual, strict=True)):
        seg = plan.segment(place.segment)
        cached = segments[seg.id]
        # the whole decode (prompt re-decode included), so the seam region is treated alike on both sides.
        # DC goes first, at the model's rate: resampling a signal with an offset makes a step at its
        # end (the resampler sees zeros beyond it), which became the loudest 20 ms of a mix.
        full = resample(highpass(cached.audio, cached.sample_rate), cached.sample_rate, rate)
        if full.shape[0] < channels:  # a mono segment in a stereo mix: the same signal on both sides,
            full = np.repeat(full, channels, axis=0)  # measured as it will sound (BS.1770 sums channels)
        hop_start = cached.prompt_frames * cached.hop * rate // cached.sample_rate
        new = full[:, hop_start:]
        measured = _measure(new, rate, seg.id)
        if seg.kind == "stem":
            start_target = end_target = targets[seg.section]
        else:  # a transition ramps from the section it leaves to the next one
            start_target = targets[seg.section]
            end_target = targets[order[(order.index(seg.section) + 1) % len(order)]]  # a loop's wrap: the first
        gains = (0.0, 0.0) if measured is None else (start_target - measured, end_target - measured)

        # every boundary in samples from the placements' seconds, rounded once: the mix, the stems, the
        # markers and the manifest agree to the sample
        first, last = _sample(moved.start_s, rate), _sample(moved.end_s, rate)
        curve_in: Curve = "linear" if place.join == "seam" else "equal_power"
        if place.join == "seam":  # extend back over the re-decoded prompt, which mirrors the previous tail
            overlap_in = min(_sample(place.crossfade_s, rate), hop_start)
            audio = full[:, hop_start - overlap_in :]
            start = first - overlap_in
        else:  # a crossfade: from this start (moved later by a negative shift) to the previous segment's end
            overlap_in = max(0, _sample(actual[i - 1].end_s, rate) - first) if i else 0
            shift = _sample(alignment.shift_s[place.segment], rate)  # > 0: trim lead-in
            audio = new[:, max(shift, 0) :]
            start = first
        if audio.shape[1] < last - start:  # never expected (frames cover the length, shifts are limited)
            log.warning("%s: %d samples short of its place; padded with silence", seg.id, last - start - audio.shape[1])
            audio = np.pad(audio, ((0, 0), (0, last - start - audio.shape[1])))
        audio = audio[:, : last - start].astype(np.float64)  # the frame grid's extra few ms go
        envelope = db_to_gain(np.linspace(gains[0], gains[1], audio.shape[1]))
        if overlap_in:
            envelope[:overlap_in] *= fade_curves(overlap_in, curve_in)[1]
        if i + 1 < len(placements):
            nxt = actual[i + 1]
            n_out = last - _sample(nxt.start_s, rate) if nxt.join == "crossfade" else _sample(nxt.crossfade_s, rate)
            if nxt.join == "seam":
                nxt_cached = segments[nxt.segment]
                n_out = min(n_out, nxt_cached.prompt_frames * nxt_cached.hop * rate // nxt_cached.sample_rate)
            if n_out:
                curve_out: Curve = "linear" if nxt.join == "seam" else "equal_power"
                envelope[audio.shape[1] - n_out :] *= fade_curves(n_out, curve_out)[0]
        tracks.append(Track(seg.id, start, (audio * envelope).astype(np.float32), measured, gains))
    length = max(t.start + t.audio.shape[1] for t in tracks)
    if arr.loop:  # no fades: the end flows into the start
        loop = loop_of(length, rate, arr.bar_s, arr.loop_crossfade_bars)
        return Assembly(rate, length, tracks, actual, alignment, loop)
    _fade_track_ends(tracks, length, _sample(arr.fade_in_s, rate), _sample(arr.fade_out_s, rate))
    return Assembly(rate, length, tracks, actual, alignment)


def _moved(placements: list[Placement], alignment: Alignment) -> list[Placement]:
    """The placements after alignment, where the audio really is: the seams inside a shifted chain move
    with it, and a chain moved later starts later (its crossfade shortens); one moved earlier keeps its
    start (its lead-in is trimmed)."""
    out = []
    for i, place in enumerate(placements):
        shift = alignment.shift_s[place.segment]
        seamed = i + 1 < len(placements) and placements[i + 1].join == "seam"
        start = place.start_s - shift if place.join == "seam" or shift < 0 else place.start_s
        out.append(Placement(place.segment, start, place.end_s - shift if seamed else place.end_s,
                             place.join, place.crossfade_s))  # fmt: skip
    return out


def _sample(seconds: float, rate: int) -> int:
    """A time on the timeline as a sample index (the one rounding every boundary goes through)."""
    return int(round(seconds * rate))


def _fade_track_ends(tracks: list[Track], length: int, fade_in: int, fade_out: int) -> None:
    """The track's fade-in and fade-out, applied to every segment where it lies (stems still sum to the mix)."""
    envelope = np.ones(length, np.float32)
    if fade_in:
        envelope[: min(fade_in, length)] = fade_curves(fade_in, "equal_power")[1][:length]
    if fade_out:
        envelope[max(0, length - fade_out) :] *= fade_curves(fade_out, "equal_power")[0][-length:]
    for track in tracks:
        track.audio = (track.audio * envelope[track.start : track.start + track.audio.shape[1]]).astype(np.float32)


def _measure(audio: np.ndarray, rate: int, name: str) -> float | None:
    value = integrated_lufs(audio, rate)
    if value is None:
        log.warning("%s: loudness undefined (silent or under 400 ms); its level is left as generated", name)
    return value


def master(mix: np.ndarray, rate: int, target_lufs: float, ceiling_dbtp: float, iterations: int = 4) -> Master:
    """Normalise to the integrated target and hold the true peak under the ceiling.

    The limiter lowers loudness a little where it works, so the gain is corrected and the limiter
    rerun (from the unlimited signal) until the result is within 0.1 LU or ``iterations`` runs out.
    """
    measured = integrated_lufs(mix, rate)
    gain_db = 0.0 if measured is None else float(np.clip(target_lufs - measured, -40.0, 40.0))
    peaks = oversampled_peaks(mix) if mix.shape[1] else None  # measured once: they scale with the gain
    best: Master | None = None
    for _ in range(iterations):
        scale = np.float32(db_to_gain(gain_db))
        limited, gain, peak = limit(mix * scale, rate, ceiling_dbtp, peaks=None if peaks is None else peaks * scale)
        final = integrated_lufs(limited, rate)
        reduction = float(-20 * np.log10(max(float(gain.min()), 1e-9))) if gain.size else 0.0
        best = Master(limited, rate, gain_db, final, peak, reduction)
        if final is None or abs(final - target_lufs) <= 0.1:
            break
        gain_db += target_lufs - final
    assert best is not None
    return best


STEM_HEADROOM_DB = 6.0


def aligned_stem(assembly: Assembly, track: Track) -> np.ndarray:
    """A DAW-aligned stem: the track padded to the whole timeline, ``STEM_HEADROOM_DB`` below its mix level.

    A stem depends only on its own segment (and the fixed crossfade lengths), so regenerating one
    section leaves every other stem byte-identical. Summed and raised by ``STEM_HEADROOM_DB`` plus the
    master gain, the stems give the mix before the limiter.
    """
    padded = np.zeros((assembly.channels, assembly.length), np.float32)
    padded[:, track.start : track.start + track.audio.shape[1]] = track.audio * db_to_gain(-STEM_HEADROOM_DB)
    return fold(padded, assembly.loop).astype(np.float32)


def take_stem(cached: Take, target_lufs: float, rate: int, channels: int, name: str) -> tuple[np.ndarray, float]:
    """An extra take of a section (its new audio, at the output rate) at the level its aligned stem has:
    loudness-matched to the section's target like the picked take in the mix, ``STEM_HEADROOM_DB`` below
    it. Takes of one section then sound alike loud and swap in for the aligned stem's audio as they are.

    Returns:
        The audio (channels, n) and the gain applied in dB.
    """
    audio = generated_audio(cached, rate)
    if audio.shape[0] < channels:  # measured as it would sound in a stereo mix
        audio = np.repeat(audio, channels, axis=0)
    measured = _measure(audio, rate, name)
    gain_db = (0.0 if measured is None else target_lufs - measured) - STEM_HEADROOM_DB
    return (audio * db_to_gain(gain_db)).astype(np.float32), gain_db


@dataclass
class Mixdown:
    """An arrangement's segments assembled, mastered, and its joins scored on the mastered mix (and a
    loop's wrap, scored on the mix played twice)."""

    assembly: Assembly
    mastered: Master
    seams: list[Seam]
    wrap: Seam | None = None


def wrap_seam(audio: np.ndarray, rate: int, assembly: Assembly, bpm: float) -> Seam | None:
    """A loop's own join, scored by :func:`score_seams` like any other: on the file played twice, end to
    start, where the end of the timeline (its last segment: a loop's wrap transition, or the last
    section's own continuation) crossfades into the first segment (None: not a loop). The last segment
    is named even where the file's end falls before it starts: it is what fades into the start."""
    loop = assembly.loop
    if loop is None:
        return None
    names = (assembly.placements[-1].segment, assembly.placements[0].segment)
    return score_wrap(audio, rate, loop, names, bpm)


def score_wrap(audio: np.ndarray, rate: int, loop: Loop, names: tuple[str, str], bpm: float) -> Seam:
    """The join of a folded loop ``audio``, scored by :func:`score_seams` on it played twice: ``names``
    are the segments before and after the wrap."""
    twice = np.concatenate([audio, audio], axis=1)
    length, overlap = loop.length / rate, loop.overlap / rate
    before = Placement(names[0], 0.0, length + overlap, "start", 0.0)
    after = Placement(names[1], length, 2 * length, "crossfade", overlap)
    return score_seams(twice, rate, [before, after], None, bpm)[0]


def mixdown(plan: Plan, arr: Arrangement, segments: dict[str, Take]) -> Mixdown:
    """Assemble at the output rate, master to the arrangement's loudness and ceiling, score every join:
    what export writes and what a re-roll judges a transition by (one definition for both)."""
    assembly, mastered = assemble_and_master(plan, arr, segments)
    rate = mastered.sample_rate
    seams = score_seams(mastered.audio, rate, assembly.placements_in_file(), assembly.alignment, arr.bpm)
    return Mixdown(assembly, mastered, seams, wrap_seam(mastered.audio, rate, assembly, arr.bpm))


def assemble_and_master(plan: Plan, arr: Arrangement, segments: dict[str, Take]) -> tuple[Assembly, Master]:
    """The mix at the output rate, mastered to the arrangement's loudness and ceiling (no seam scores):
    the mix itself, and a take heard in it (:mod:`composer.job.audition`)."""
    rate = arr.output.sample_rate
    assembly = assemble(plan, arr, segments, rate)
    return assembly, master(assembly.mix(), rate, arr.loudness.target_lufs, arr.loudness.true_peak_dbtp)
