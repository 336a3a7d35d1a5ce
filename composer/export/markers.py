"""Section markers as Audacity labels and as a CUE sheet."""

from __future__ import annotations

from composer.arrangement.schema import one_line
from composer.plan import Plan


def audacity_labels(plan: Plan) -> str:
    """One label per segment: ``start<TAB>end<TAB>name`` in seconds (Audacity: File > Import > Labels)."""
    lines = []
    for place in plan.timeline:
        seg = plan.segment(place.segment)
        label = seg.id if seg.kind == "stem" else seg.id.replace("--", " -> ")  # ids: letters, digits, - and _
        lines.append(f"{place.start_s:.6f}\t{place.end_s:.6f}\t{label}")
    return "\n".join(lines) + "\n"


def _cue_time(seconds: float) -> str:
    frames = int(seconds * 75 + 0.5)  # CUE frames: 75 per second, rounded half up
    return f"{frames // (75 * 60):02d}:{frames // 75 % 60:02d}:{frames % 75:02d}"


def cue_sheet(plan: Plan, audio_file: str) -> str:
    """A CUE sheet with one track per section (transitions belong to the section they leave)."""
    # WAVE is the CUE file type for any audio file players decode themselves (FLAC, Ogg), MP3 for MP3
    kind = "MP3" if audio_file.lower().endswith(".mp3") else "WAVE"
    lines = [f'TITLE "{_quote(plan.title)}"', f'FILE "{_quote(audio_file)}" {kind}']
    number = 0
    for place in plan.timeline:
        seg = plan.segment(place.segment)
        if seg.kind != "stem":
            continue
        number += 1
        lines += [
            f"  TRACK {number:02d} AUDIO",
            f'    TITLE "{_quote(seg.id)}"',
            f"    INDEX 01 {_cue_time(place.start_s)}",
        ]
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    """One CUE string: no double quotes, no control characters (a newline would start a new command)."""
    return one_line(text).replace('"', "'")
