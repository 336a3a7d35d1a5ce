"""timeline.png: waveform, section boundaries and names, seam scores, short-term loudness against its
target, and a time axis in seconds and bars."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from composer.audio.dsp import peak_columns
from composer.fsutil import atomic_path
from composer.plan import Plan

if TYPE_CHECKING:
    from composer.assembly.seams import Seam

WIDTH, HEIGHT = 1600, 470
WAVE_TOP, WAVE_BOTTOM = 60, 300
LOUD_TOP, LOUD_BOTTOM = 310, 400
AXIS_TOP = 404  # seconds below the line, bars above it
LUFS_RANGE = (-40.0, 0.0)
TARGET_COLOUR = (40, 140, 60)
SEAM_OK, SEAM_BAD = (40, 140, 60), (200, 40, 40)
PALETTE = [(222, 235, 247), (229, 245, 224), (254, 237, 222), (239, 237, 245), (255, 247, 188)]


def nice_step(span: float, ticks: int = 12) -> float:
    """A round tick spacing (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks over ``span``."""
    raw = max(span / ticks, 1e-9)
    power = 10 ** np.floor(np.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def draw_timeline(
    path: Path,
    plan: Plan,
    audio: np.ndarray,
    sample_rate: int,
    loudness: np.ndarray,
    *,
    target_lufs: float | None = None,
    bpm: float | None = None,
    beats_per_bar: int = 4,
    seams: list[Seam] | None = None,
    seam_limit: float | None = None,
) -> None:
    """Draw the picture and write it atomically.

    Args:
        path: the PNG to write.
        plan: for section names and boundaries.
        audio: the final mix (channels, samples).
        sample_rate: of ``audio``.
        loudness: (2, n) array of times (s) and short-term LUFS (NaN where undefined).
        target_lufs: drawn as a line in the loudness panel.
        bpm, beats_per_bar: for the bar numbers on the time axis.
        seams: each join's score, marked at the join (red above ``seam_limit``).
    """
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (WIDTH, HEIGHT), (250, 250, 247))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    length_s = max(audio.shape[1] / sample_rate, 1e-6)

    def x_of(seconds: float) -> int:
        return int(round(seconds / length_s * (WIDTH - 1)))

    _sections(draw, font, plan, x_of)
    _waveform(draw, audio)
    _seams(draw, font, seams or [], seam_limit, x_of)
    _loudness(draw, font, loudness, target_lufs, x_of)
    _time_axis(draw, font, length_s, x_of, bpm, beats_per_bar)
    draw.text((4, HEIGHT - 16), f"{plan.title}: {length_s:.1f} s", fill=(20, 20, 20), font=font)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def _sections(draw: Any, font: Any, plan: Plan, x_of: Callable[[float], int]) -> None:
    """Each section's colour band with its name and start, transitions hatched, boundaries as lines."""
    stems = 0  # sections counted on their own: neighbours never share a colour, with or without transitions
    for place in plan.timeline:
        seg = plan.segment(place.segment)
        x0, x1 = x_of(place.start_s), x_of(place.end_s)
        if seg.kind == "stem":
            draw.rectangle([x0, WAVE_TOP, x1, WAVE_BOTTOM], fill=PALETTE[stems % len(PALETTE)])
            stems += 1
            draw.text((x0 + 4, 8), seg.id, fill=(20, 20, 20), font=font)
            draw.text((x0 + 4, 24), f"{place.start_s:.1f} s", fill=(90, 90, 90), font=font)
        else:
            for x in range(x0, x1, 6):  # hatch transitions
                draw.line([x, WAVE_TOP, x, WAVE_TOP + 8], fill=(160, 160, 160))
            draw.text((x0 + 4, 40), "transition", fill=(120, 120, 120), font=font)
        draw.line([x0, WAVE_TOP - 4, x0, LOUD_BOTTOM], fill=(120, 120, 120))


def _waveform(draw: Any, audio: np.ndarray) -> None:
    """The mix's peak envelope, one column per pixel."""
    mono = np.abs(audio).max(axis=0) if audio.size else np.zeros(1)
    mid = (WAVE_TOP + WAVE_BOTTOM) / 2
    half = (WAVE_BOTTOM - WAVE_TOP) / 2
    for x, peak in enumerate(peak_columns(mono, WIDTH if mono.size >= WIDTH else 1)):
        draw.line([x, mid - peak * half, x, mid + peak * half], fill=(50, 90, 140))


def _seams(draw: Any, font: Any, seams: list[Seam], limit: float | None, x_of: Callable[[float], int]) -> None:
    """A diamond at each join with its score beside it (red above ``limit``)."""
    for seam in seams:
        x = x_of(seam.at_s)
        colour = SEAM_BAD if limit is not None and seam.score > limit else SEAM_OK
        draw.polygon([(x, WAVE_BOTTOM - 14), (x + 6, WAVE_BOTTOM - 8), (x, WAVE_BOTTOM - 2), (x - 6, WAVE_BOTTOM - 8)],
                     fill=colour)  # fmt: skip
        draw.text((x + 8, WAVE_BOTTOM - 16), f"seam {seam.score:.1f}", fill=colour, font=font)


def _loudness(
    draw: Any, font: Any, loudness: np.ndarray, target_lufs: float | None, x_of: Callable[[float], int]
) -> None:
    """The short-term loudness curve in its panel, with the target as a dashed line."""
    draw.rectangle([0, LOUD_TOP, WIDTH - 1, LOUD_BOTTOM], outline=(200, 200, 200))
    lo, hi = LUFS_RANGE
    points = []
    for t, value in loudness.T:
        if np.isfinite(value):
            y = LOUD_BOTTOM - (min(max(value, lo), hi) - lo) / (hi - lo) * (LOUD_BOTTOM - LOUD_TOP)
            points.append((x_of(float(t)), float(y)))
    if target_lufs is not None and lo <= target_lufs <= hi:
        y = int(round(LOUD_BOTTOM - (target_lufs - lo) / (hi - lo) * (LOUD_BOTTOM - LOUD_TOP)))
        for x in range(0, WIDTH, 12):  # dashed
            draw.line([x, y, min(x + 7, WIDTH - 1), y], fill=TARGET_COLOUR)
        draw.text((WIDTH - 130, y - 12), f"target {target_lufs:g} LUFS", fill=TARGET_COLOUR, font=font)
    if len(points) > 1:
        draw.line(points, fill=(200, 40, 40), width=2)
    draw.text((4, LOUD_TOP + 2), f"short-term loudness, {lo:.0f}..{hi:.0f} LUFS", fill=(200, 40, 40), font=font)


def _time_axis(draw: Any, font: Any, length_s: float, x_of: Any, bpm: float | None, beats_per_bar: int) -> None:
    """Seconds (ticks down, labels below) and, given a tempo, bar numbers (ticks up, labels above)."""
    draw.line([0, AXIS_TOP, WIDTH - 1, AXIS_TOP], fill=(60, 60, 60))
    step = nice_step(length_s)
    for k in range(int(length_s / step) + 1):
        x = x_of(k * step)
        draw.line([x, AXIS_TOP, x, AXIS_TOP + 8], fill=(60, 60, 60))
        draw.text((x + 2, AXIS_TOP + 9), f"{k * step:g} s", fill=(60, 60, 60), font=font)
    if bpm:
        bar_s = 60.0 / bpm * beats_per_bar
        every = max(1, int(nice_step(length_s / bar_s)))
        for bar in range(0, int(length_s / bar_s) + 1, every):
            x = x_of(bar * bar_s)
            draw.line([x, AXIS_TOP - 5, x, AXIS_TOP], fill=(150, 90, 20))
            draw.text((x + 2, AXIS_TOP + 24), f"bar {bar + 1}", fill=(150, 90, 20), font=font)
