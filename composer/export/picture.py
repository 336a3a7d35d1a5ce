"""timeline.png: waveform, section boundaries and names, short-term loudness."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from composer.fsutil import atomic_path
from composer.plan import Plan

WIDTH, HEIGHT = 1600, 420
WAVE_TOP, WAVE_BOTTOM = 60, 300
LOUD_TOP, LOUD_BOTTOM = 310, 400
LUFS_RANGE = (-40.0, 0.0)


def draw_timeline(path: Path, plan: Plan, audio: np.ndarray, sample_rate: int, loudness: np.ndarray) -> None:
    """Draw the picture and write it atomically.

    Args:
        path: the PNG to write.
        plan: for section names and boundaries.
        audio: the final mix (channels, samples).
        sample_rate: of ``audio``.
        loudness: (2, n) array of times (s) and short-term LUFS (NaN where undefined).
    """
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (WIDTH, HEIGHT), (250, 250, 247))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    length_s = max(audio.shape[1] / sample_rate, 1e-6)

    def x_of(seconds: float) -> int:
        return int(round(seconds / length_s * (WIDTH - 1)))

    palette = [(222, 235, 247), (229, 245, 224), (254, 237, 222), (239, 237, 245), (255, 247, 188)]
    for i, place in enumerate(plan.timeline):
        seg = plan.segment(place.segment)
        x0, x1 = x_of(place.start_s), x_of(place.end_s)
        if seg.kind == "stem":
            draw.rectangle([x0, WAVE_TOP, x1, WAVE_BOTTOM], fill=palette[i // 2 % len(palette)])
            draw.text((x0 + 4, 8), seg.id, fill=(20, 20, 20), font=font)
            draw.text((x0 + 4, 24), f"{place.start_s:.1f} s", fill=(90, 90, 90), font=font)
        else:
            for x in range(x0, x1, 6):  # hatch transitions
                draw.line([x, WAVE_TOP, x, WAVE_TOP + 8], fill=(160, 160, 160))
            draw.text((x0 + 4, 40), "transition", fill=(120, 120, 120), font=font)
        draw.line([x0, WAVE_TOP - 4, x0, LOUD_BOTTOM], fill=(120, 120, 120))

    mono = np.abs(audio).max(axis=0) if audio.size else np.zeros(1)
    columns = np.array_split(mono, WIDTH) if mono.size >= WIDTH else [mono]
    mid = (WAVE_TOP + WAVE_BOTTOM) / 2
    half = (WAVE_BOTTOM - WAVE_TOP) / 2
    for x, column in enumerate(columns):
        peak = float(column.max()) if column.size else 0.0
        draw.line([x, mid - peak * half, x, mid + peak * half], fill=(50, 90, 140))

    draw.rectangle([0, LOUD_TOP, WIDTH - 1, LOUD_BOTTOM], outline=(200, 200, 200))
    lo, hi = LUFS_RANGE
    points = []
    for t, value in loudness.T:
        if np.isfinite(value):
            y = LOUD_BOTTOM - (min(max(value, lo), hi) - lo) / (hi - lo) * (LOUD_BOTTOM - LOUD_TOP)
            points.append((x_of(float(t)), float(y)))
    if len(points) > 1:
        draw.line(points, fill=(200, 40, 40), width=2)
    draw.text((4, LOUD_TOP + 2), f"short-term loudness, {lo:.0f}..{hi:.0f} LUFS", fill=(200, 40, 40), font=font)
    draw.text((4, HEIGHT - 16), f"{plan.title}: {length_s:.1f} s", fill=(20, 20, 20), font=font)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
