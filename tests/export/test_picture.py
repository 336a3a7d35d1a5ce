"""timeline.png: neighbours in different colours, the loudness target, a time axis in seconds and bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from composer.export.picture import (
    AXIS_TOP,
    LOUD_BOTTOM,
    LOUD_TOP,
    LUFS_RANGE,
    TARGET_COLOUR,
    WAVE_TOP,
    WIDTH,
    nice_step,
)
from composer.job.local import render
from composer.settings import Settings
from tests.conftest import REPO

SHORT = REPO / "tests" / "data" / "short.yaml"


def test_timeline_picture(settings: Settings, tmp_path: Path) -> None:
    from PIL import Image

    song = tmp_path / "short.yaml"  # no generated transitions: sections touch each other
    song.write_text(
        SHORT.read_text().replace("    loudness_offset_lu: -3\n", "    loudness_offset_lu: -3\n    transition: none\n")
    )
    result = render(song, settings, tmp_path / "out")
    image = np.asarray(Image.open(result.folder / "timeline.png").convert("RGB")).astype(int)
    length = result.plan.length_s

    def x_of(seconds: float) -> int:
        return int(round(seconds / length * (WIDTH - 1)))

    stems = [p for p in result.plan.timeline if result.plan.segment(p.segment).kind == "stem"]
    colours = [tuple(image[WAVE_TOP + 2, x_of((p.start_s + p.end_s) / 2)]) for p in stems]
    assert all(a != b for a, b in zip(colours, colours[1:], strict=False)), colours

    lo, hi = LUFS_RANGE
    target_y = int(round(LOUD_BOTTOM - (-16 - lo) / (hi - lo) * (LOUD_BOTTOM - LOUD_TOP)))
    dashes = (np.abs(image[target_y] - np.array(TARGET_COLOUR)).sum(axis=1) < 30).sum()
    assert dashes > WIDTH // 3, "the target line runs across the loudness panel"

    step = nice_step(length)
    for k in range(1, int(length / step) + 1):
        column = image[AXIS_TOP + 2 : AXIS_TOP + 8, x_of(k * step)]
        assert (column.sum(axis=1) < 300).all(), f"no tick at {k * step} s"
    bar_s = 60 / 120 * 4  # 120 BPM in 4/4
    every = max(1, int(nice_step(length / bar_s)))
    for bar in range(every, int(length / bar_s) + 1, every):
        assert (image[AXIS_TOP - 3 : AXIS_TOP, x_of(bar * bar_s)].sum(axis=1) < 600).all(), f"no tick at bar {bar + 1}"


def test_seam_scores_are_marked(tmp_path: Path) -> None:
    from PIL import Image

    from composer.assembly.seams import Seam
    from composer.export.picture import SEAM_BAD, SEAM_OK, WAVE_BOTTOM, draw_timeline
    from composer.plan import Placement, Plan

    plan = Plan("t", "t", [], [Placement("a", 0.0, 10.0, "start", 0.0)], 20.0)
    plan.segment = lambda _id: type("S", (), {"kind": "stem", "id": _id})()  # type: ignore[method-assign]
    seams = [Seam("a", "b", 5.0, 0, 0, None, 0, {}, 1.1), Seam("b", "c", 15.0, 6, 0, None, 0, {}, 4.0)]
    audio = np.zeros((1, 20 * 1000), np.float32)
    draw_timeline(tmp_path / "t.png", plan, audio, 1000, np.zeros((2, 0)), seams=seams, seam_limit=2.5)
    image = np.asarray(Image.open(tmp_path / "t.png").convert("RGB")).astype(int)
    x = lambda s: int(round(s / 20.0 * (WIDTH - 1)))  # noqa: E731
    assert tuple(image[WAVE_BOTTOM - 8, x(5.0)]) == SEAM_OK
    assert tuple(image[WAVE_BOTTOM - 8, x(15.0)]) == SEAM_BAD
