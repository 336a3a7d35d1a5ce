"""Each section as a bar-exact loop with its own wrap join (``compose export-loops``).

A section's stem (the picked take, at the level its aligned stem has in the mix) is folded like a
looping track (:func:`composer.assembly.mix.fold`): the longest whole number of bars that leaves the
arrangement's ``loop_crossfade_bars`` after it, with that remainder crossfaded over its start. Its
wrap is scored by the seam scorer on the loop played twice. Sections too short for that are skipped
and named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from composer.arrangement import Arrangement
from composer.assembly.mix import fold, loop_of, score_wrap, section_targets, take_stem
from composer.audio.io import write_audio
from composer.engine.types import Take
from composer.export.tags import Tags, tagger
from composer.fsutil import atomic_write_text, json_text, remove_file
from composer.plan import Plan


def write_loops(plan: Plan, arr: Arrangement, folder: Path, segments: dict[str, Take]) -> dict[str, Any]:
    """Write ``folder/loops/<section>.<format>`` and ``loops.json``; returns what loops.json says."""
    out = arr.output
    rate, targets = out.sample_rate, section_targets(arr)
    stems = [s for s in plan.segments if s.kind == "stem" and s.section is not None]
    channels = max(segments[s.id].channels for s in stems)
    written: list[dict[str, Any]] = []
    skipped: list[str] = []
    keep: set[Path] = set()
    for seg in stems:
        section = str(seg.section)
        audio, gain_db = take_stem(segments[seg.id], targets[section], rate, channels, seg.id)
        try:
            loop = loop_of(audio.shape[1], rate, arr.bar_s, arr.loop_crossfade_bars)
        except ValueError:
            skipped.append(section)
            continue
        looped = fold(audio, loop)
        wrap = score_wrap(looped, rate, loop, (section, section), arr.bpm)
        path = folder / "loops" / f"{section}.{out.format}"
        tags = Tags(title=plan.title, bpm=arr.bpm, beats_per_bar=arr.beats_per_bar, key=arr.key, artist=arr.artist,
                    section=f"{section} loop")  # fmt: skip
        write_audio(path, looped.clip(-1.0, 1.0), rate, bit_depth=out.bit_depth, fmt=out.format, quality=out.quality,
                    tag=tagger(tags))  # fmt: skip
        keep.add(path)
        written.append({"section": section, "take": seg.take, "file": str(path.relative_to(folder)), "bars": loop.bars,
                        "samples": loop.length, "length_s": round(loop.length / rate, 6),
                        "crossfade_s": round(loop.overlap / rate, 6), "gain_db": round(gain_db, 2),
                        "wrap_score": round(wrap.score, 2)})  # fmt: skip
    loops_dir = folder / "loops"
    for old in (p for p in loops_dir.iterdir() if p.is_file() and p not in keep and p.name != "loops.json"):
        remove_file(old)  # sections renamed or now too short; regular files only, never through a link
    record = {"bpm": arr.bpm, "beats_per_bar": arr.beats_per_bar, "crossfade_bars": arr.loop_crossfade_bars,
              "loops": written, "skipped": skipped}  # fmt: skip
    atomic_write_text(loops_dir / "loops.json", json_text(record) + "\n")
    return record
