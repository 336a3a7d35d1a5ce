"""compose export-loops: each section as a bar-exact loop with its own scored wrap."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from composer import api
from composer.assembly.mix import Loop, score_wrap
from composer.cli import app
from composer.settings import Settings
from tests.export.test_tags import chunks
from tests.render.test_render import SHORT


def sections_of(tmp_path: Path) -> Path:
    """SHORT with drive 7 s (3 bars loop, 1 bar of crossfade) and coda 6.5 s; intro stays 2.5 s (too short)."""
    text = (
        SHORT.read_text().replace("duration_s: 3\n", "duration_s: 7\n").replace("duration_s: 2\n", "duration_s: 6.5\n")
    )
    text = re.sub(r"output:\n(  .*\n)+", "output:\n  format: wav\n  bit_depth: 24\n  sample_rate: 44100\n", text)
    path = tmp_path / "parts.yaml"
    path.write_text(text)
    return path


def test_each_section_loops_in_whole_bars(settings: Settings, tiny_env: Path, tmp_path: Path) -> None:
    file = sections_of(tmp_path)
    api.render(file, out=tmp_path / "out", settings=settings)
    record = api.export_loops(file, out=tmp_path / "out", settings=settings)
    folder = tmp_path / "out" / "parts"
    assert record == json.loads((folder / "loops" / "loops.json").read_text())
    assert record["skipped"] == ["intro"]
    bar = 2.0  # 4/4 at 120 BPM
    by_section = {loop["section"]: loop for loop in record["loops"]}
    assert {k: v["bars"] for k, v in by_section.items()} == {"drive": 2, "coda": 2}
    for section, loop in by_section.items():
        audio, rate = sf.read(str(folder / loop["file"]), always_2d=True)
        assert audio.shape[0] == loop["samples"] == round(loop["bars"] * bar * rate)  # sample-exact bars
        wrap = score_wrap(audio.T.astype(np.float32), rate, Loop(audio.shape[0], round(loop["crossfade_s"] * rate),
                          loop["bars"]), (section, section), 120.0)  # fmt: skip
        assert abs(wrap.score - loop["wrap_score"]) < 0.05  # the seam scorer on the loop played twice
        acid = chunks(folder / loop["file"])[b"acid"]
        assert struct.unpack("<IHHfIHHf", acid)[4] == loop["bars"] * 4  # a DAW reads its beats
    again = CliRunner().invoke(app, ["export-loops", str(file), "--out", str(tmp_path / "out"), "--models", "tiny"])
    assert again.exit_code == 0, again.output
    assert "drive: 2 bars (4.000 s)" in again.output and "intro: too short to loop" in again.output


def test_export_loops_before_a_render_is_refused(tiny_env: Path, tmp_path: Path) -> None:
    got = CliRunner().invoke(app, ["export-loops", str(sections_of(tmp_path)), "--out", str(tmp_path / "out"),
                                   "--models", "tiny"])  # fmt: skip
    assert got.exit_code == 2 and "not rendered yet" in got.output
    assert not (tmp_path / "out" / "parts" / "loops").exists()
