"""Write every output of a render: mix, stems (raw, DAW-aligned, takes), manifest, markers, picture."""

from __future__ import annotations

import dataclasses
import logging
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from composer import __version__
from composer.arrangement import Arrangement
from composer.arrangement.schema import LOSSY
from composer.assembly.limiter import true_peak_db
from composer.assembly.loudness import db_to_gain, integrated_lufs, short_term_lufs
from composer.assembly.mix import (
    STEM_HEADROOM_DB,
    Assembly,
    Master,
    Mixdown,
    aligned_stem,
    generated_audio,
    mixdown,
    section_targets,
    take_stem,
)
from composer.assembly.seams import REROLL_ABOVE, Rerolls, Seam
from composer.audio.io import read_audio, write_audio
from composer.engine.types import Take
from composer.export.markers import audacity_labels, cue_sheet
from composer.export.picture import draw_timeline
from composer.export.tags import Tags, tagger
from composer.fsutil import atomic_write_text, json_text, remove_file
from composer.plan import Placement, Plan, Segment
from composer.render.run import RunStats
from composer.settings import Settings

if TYPE_CHECKING:
    from composer.render.state import State

log = logging.getLogger(__name__)


def export_all(
    plan: Plan,
    arr: Arrangement,
    file: Path,
    folder: Path,
    segments: dict[str, Take],
    *,
    stats: RunStats,
    state: State,
    settings: Settings,
    variants: list[Segment],
    rerolls: Rerolls | None = None,
) -> dict[str, Any]:
    """Assemble, master and write everything into ``folder``; returns the manifest.

    Args:
        rerolls: what ``--reroll`` tried, recorded in the manifest.
    """
    out = arr.output
    ext = out.format
    mixed = mixdown(plan, arr, segments)
    assembly, mastered, seams = mixed.assembly, mixed.mastered, mixed.seams
    # where the segments really landed (beat alignment moves the seams of a shifted chain): markers,
    # CUE, picture and manifest describe the mix as it is
    plan = dataclasses.replace(plan, timeline=assembly.placements)
    shown = dataclasses.replace(plan, timeline=_in_file(assembly))  # markers and picture: within the file

    write = _audio_writer(plan, arr, mastered)
    mix_name = f"mix.{ext}"
    aim = Loudness(out.sample_rate, arr.loudness.target_lufs, arr.loudness.true_peak_dbtp)
    encoded = write_mix(folder / mix_name, mastered.audio, aim, write, lossy=ext in LOSSY)
    for other in {"wav", "flac", *LOSSY} - {ext}:  # after a format change, only the current format's files remain
        remove_file(folder / f"mix.{other}")  # the stems' and takes' files: _remove_stale
    stems = folder / "stems"
    keep: set[Path] = set()
    files: dict[str, dict[str, str]] = {}
    for index, track in enumerate(assembly.tracks, start=1):
        raw_path = stems / "raw" / f"{track.segment}.{ext}"
        aligned_path = stems / "aligned" / f"{index:02d}-{track.segment}.{ext}"
        # as generated (continuation prompt trimmed, DC removed as in the mix), at the output rate
        write(raw_path, _clipped(generated_audio(segments[track.segment], out.sample_rate), raw_path.name),
              track.segment)  # fmt: skip
        write(aligned_path, _clipped(aligned_stem(assembly, track), aligned_path.name), track.segment)
        keep |= {raw_path, aligned_path}
        files[track.segment] = {
            "raw": str(raw_path.relative_to(folder)),
            "aligned": str(aligned_path.relative_to(folder)),
        }
    takes_written = []
    targets = section_targets(arr)
    for variant in variants:
        take_path = stems / "takes" / f"{variant.id}.{ext}"
        audio, gain_db = take_stem(segments[variant.id], targets[variant.section], out.sample_rate, assembly.channels,
                                   variant.id)  # fmt: skip
        write(take_path, _clipped(audio, take_path.name), f"{variant.section} take {variant.take}")
        keep.add(take_path)
        takes_written.append({"section": variant.section, "take": variant.take, "seed": variant.seed,
                              "key": variant.key, "file": str(take_path.relative_to(folder)),
                              "gain_db": round(gain_db, 2)})  # fmt: skip
    _remove_stale(stems, keep)

    loudness = short_term_lufs(mastered.audio, mastered.sample_rate)
    atomic_write_text(folder / "markers.txt", audacity_labels(shown))
    atomic_write_text(folder / "markers.cue", cue_sheet(shown, mix_name))
    draw_timeline(folder / "timeline.png", shown, mastered.audio, mastered.sample_rate, loudness,
                  target_lufs=arr.loudness.target_lufs, bpm=arr.bpm, beats_per_bar=arr.beats_per_bar,
                  seams=seams, seam_limit=REROLL_ABOVE if rerolls is None else rerolls.limit)  # fmt: skip

    manifest = _manifest(plan, arr, file, mixed, segments, stats=stats, state=state, settings=settings, files=files,
                         takes=takes_written)  # fmt: skip
    manifest["seams"] = [_seam_entry(seam) for seam in seams]
    _add_encoding_and_loop(manifest, mixed, encoded, arr)
    if rerolls is not None:
        manifest["rerolls"] = {"limit": rerolls.limit, "tries": rerolls.tries}
    atomic_write_text(folder / "manifest.json", json_text(manifest) + "\n")
    return manifest


def _audio_writer(plan: Plan, arr: Arrangement, mastered: Master) -> Callable[..., None]:
    """``write(path, audio, section=None)``: a file in the arrangement's format, tagged (a stem or take with
    its section; the mix with its loudness)."""
    out = arr.output
    tags = Tags(title=plan.title, bpm=arr.bpm, beats_per_bar=arr.beats_per_bar, key=arr.key, artist=arr.artist,
                loudness_lufs=mastered.integrated_lufs,
                true_peak_dbtp=mastered.true_peak_dbtp)  # fmt: skip

    def write(path: Path, audio: np.ndarray, section: str | None = None) -> None:
        these = tags if section is None else dataclasses.replace(tags, section=section, loudness_lufs=None,
                                                                 true_peak_dbtp=None)  # fmt: skip
        write_audio(path, audio, out.sample_rate, bit_depth=out.bit_depth, fmt=out.format, quality=out.quality,
                    tag=tagger(these))  # fmt: skip

    return write


def _add_encoding_and_loop(manifest: dict[str, Any], mixed: Mixdown, encoded: Encoded | None, arr: Arrangement) -> None:
    """A lossy mix's loudness as measured on its decoded samples, and a looping track's wrap."""
    rate = arr.output.sample_rate
    if encoded is not None:
        lufs = encoded.integrated_lufs
        manifest["loudness"] |= {"integrated_lufs": None if lufs is None else round(lufs, 2),
                                 "true_peak_dbtp": round(encoded.true_peak_dbtp, 2),
                                 "encoding_gain_db": round(encoded.gain_db, 2),
                                 "measured": f"on the decoded {arr.output.format}"}  # fmt: skip
    loop = mixed.assembly.loop
    if loop is not None and mixed.wrap is not None:
        manifest["loop"] = {"bars": loop.bars, "length_s": round(loop.length / rate, 6), "samples": loop.length,
                            "crossfade_s": round(loop.overlap / rate, 6),
                            "wrap_seam": _seam_entry(mixed.wrap)}  # fmt: skip


def _in_file(assembly: Assembly) -> list[Placement]:
    """Where the segments landed, as far as the file goes (a loop's file ends at its whole bars)."""
    if assembly.loop is None:
        return list(assembly.placements)
    end = assembly.loop.length / assembly.sample_rate
    return [dataclasses.replace(p, end_s=min(p.end_s, end)) for p in assembly.placements_in_file()]


ENCODE_TRIES = 4


@dataclass(frozen=True)
class Loudness:
    """What a mix file must hold: its integrated loudness target and true-peak ceiling."""

    sample_rate: int
    target_lufs: float
    true_peak_dbtp: float


@dataclass(frozen=True)
class Encoded:
    """A lossy mix as written: the gain applied before its last encoding, and what its decoded samples
    measure."""

    gain_db: float
    integrated_lufs: float | None
    true_peak_dbtp: float


def write_mix(
    path: Path, audio: np.ndarray, loudness: Loudness, write: Callable[[Path, np.ndarray], None], *, lossy: bool
) -> Encoded | None:
    """Write the mix. A lossy encoder does not keep what it was given: it overshoots the peaks (MP3 by
    up to a few dB) and its low-pass can take some loudness. So an mp3 or ogg mix is decoded and encoded
    again with a gain that brings its true peak under the ceiling (plus 0.1 dB) and, where the peaks
    allow, its loudness to the target (within 0.1 LU), up to :data:`ENCODE_TRIES` times.

    Returns:
        For a lossy mix, what the file holds (measured once per decoding); else None.
    """
    write(path, audio)
    if not lossy:
        return None
    gain_db = 0.0
    for tries in range(ENCODE_TRIES + 1):
        decoded, _ = read_audio(path)
        peak, lufs = true_peak_db(decoded), integrated_lufs(decoded, loudness.sample_rate)
        over = peak - loudness.true_peak_dbtp
        short = 0.0 if lufs is None else min(loudness.target_lufs - lufs, -over - 0.1)
        if (over <= 0 and short <= 0.1) or tries == ENCODE_TRIES:
            break
        gain_db += -(over + 0.1) if over > 0 else short
        log.info("%s: after encoding, true peak %.2f dBTP and %.2f LUFS; encoding again at %+.2f dB",
                 path.name, peak, lufs if lufs is not None else float("nan"), gain_db)  # fmt: skip
        write(path, (audio * db_to_gain(gain_db)).astype(np.float32))
    if over > 0:
        log.warning("%s: true peak %.2f dBTP after encoding, above the %.1f dBTP ceiling",
                    path.name, peak, loudness.true_peak_dbtp)  # fmt: skip
    return Encoded(gain_db, lufs, peak)


def _clipped(audio: np.ndarray, name: str) -> np.ndarray:
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 1.0:
        log.warning("%s peaks at %+.1f dBFS even with headroom; clipped in the file", name, 20 * np.log10(peak))
    return np.clip(audio, -1.0, 1.0)


def _seam_entry(seam: Seam) -> dict[str, Any]:
    return {
        "before": seam.before, "after": seam.after, "at_s": round(seam.at_s, 3), "score": round(seam.score, 2),
        "loudness_lu": round(seam.loudness_lu, 2), "spectrum_db": round(seam.spectrum_db, 2),
        "tempo_percent": None if seam.tempo_percent is None else round(seam.tempo_percent, 2),
        "harmony": round(seam.harmony, 4), "ratios": seam.ratios,
    }  # fmt: skip


def _beats_entry(assembly: Any, segment: str, bpm: float) -> dict[str, Any] | None:
    """The segment's tempo, drift and first downbeat as tracked, and the alignment shift applied."""
    alignment = assembly.alignment
    found = alignment.beats.get(segment) if alignment else None
    if found is None:
        return None
    return {
        "tempo_bpm": round(found.tempo_bpm, 2), "drift_percent": round(found.drift_percent(bpm), 2),
        "first_downbeat_s": round(found.first_downbeat_s, 4), "confidence": round(found.confidence, 1),
        "shift_s": round(alignment.shift_s[segment], 4),
    }  # fmt: skip


def _remove_stale(stems: Path, keep: set[Path]) -> None:
    """Delete stem files of segments no longer in the plan (renamed or removed sections), and takes
    no longer kept (a regenerated section's, or the one now picked)."""
    for sub in ("raw", "aligned", "takes"):
        if (stems / sub).is_dir() and not (stems / sub).is_symlink():
            for path in (stems / sub).iterdir():
                if path not in keep:
                    remove_file(path)  # regular files only: never a link's target


def _manifest(
    plan: Plan, arr: Arrangement, file: Path, mixed: Mixdown, segments: dict[str, Take], *, stats: RunStats,
    state: State, settings: Settings, files: dict[str, dict[str, str]], takes: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    assembly, mastered = mixed.assembly, mixed.mastered
    tracks = {t.segment: t for t in assembly.tracks}
    entries = []
    for place in plan.timeline:
        seg = plan.segment(place.segment)
        cached = segments[seg.id]
        track = tracks[seg.id]
        entries.append({
            "id": seg.id, "kind": seg.kind, "section": seg.section, "model": seg.model,
            "repo_id": cached.provenance.get("repo_id", seg.repo_id),
            "revision": cached.provenance.get("revision", seg.revision),
            "prompt": seg.text, "seed": seg.seed, "take": seg.take,
            "parameters": {"cfg": seg.sampling.cfg, "top_k": seg.sampling.top_k, "top_p": seg.sampling.top_p,
                           "temperature": seg.sampling.temperature, "window_s": seg.window_s,
                           "stride_s": seg.stride_s},
            "duration_s": seg.duration_s, "frames": seg.frames,
            "continues": seg.prompt_from, "prompt_s": seg.prompt_s if seg.prompt_from else None,
            "start_s": round(place.start_s, 6), "end_s": round(place.end_s, 6), "join": place.join,
            "crossfade_s": round(place.crossfade_s, 6),
            "beats": _beats_entry(assembly, seg.id, arr.bpm),
            "measured_lufs": None if track.measured_lufs is None else round(track.measured_lufs, 2),
            "gain_db": [round(g, 2) for g in track.gain_db],
            "cache_key": seg.key, "cache_hit": seg.id in stats.cached,
            "generate_seconds": round(stats.seconds[seg.id], 3) if seg.id in stats.seconds else None,
            "engine": cached.provenance.get("engine"), "device": cached.provenance.get("device"),
            "dtype": cached.provenance.get("dtype"), "kernel": cached.provenance.get("kernel"),
            "numerics": seg.numerics or cached.provenance.get("numerics"),
            "kernel_choice": cached.provenance.get("kernel_choice"), "channels": cached.channels,
            "melody": seg.melody, "melody_sha256": seg.melody_sha256,
            "files": files.get(seg.id, {}),
        })  # fmt: skip
    measured = mastered.integrated_lufs  # measured by master() on this very audio
    return {
        "composer_version": __version__,
        "arrangement": str(file),
        "title": plan.title,
        "bpm": arr.bpm,
        "key": arr.key,
        "seed": arr.seed,
        "model_source": settings.model_source,
        "python": platform.python_version(),
        "output": {
            "file": f"mix.{arr.output.format}",
            "format": arr.output.format,
            "bit_depth": None if arr.output.format in LOSSY else arr.output.bit_depth,
            "quality": arr.output.quality if arr.output.format in LOSSY else None,
            "sample_rate": arr.output.sample_rate,
            "channels": int(mastered.audio.shape[0]),
        },  # fmt: skip
        "length_s": round(mastered.audio.shape[1] / mastered.sample_rate, 6),
        "loudness": {
            "target_lufs": arr.loudness.target_lufs,
            "integrated_lufs": None if measured is None else round(measured, 2),
            "true_peak_ceiling_dbtp": arr.loudness.true_peak_dbtp,
            "true_peak_dbtp": round(float(mastered.true_peak_dbtp), 2),
            "master_gain_db": round(mastered.master_gain_db, 2),
            "limiter_max_reduction_db": round(mastered.max_reduction_db, 2),
            "stem_headroom_db": STEM_HEADROOM_DB,
        },
        "choices": {"seeds": state.seeds, "takes": state.takes},
        "takes": takes,
        "warnings": plan.warnings,
        "segments": entries,
    }
