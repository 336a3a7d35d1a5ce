from pathlib import Path

from composer.arrangement import load_arrangement
from composer.arrangement.styles import StyleLibrary
from composer.export.markers import audacity_labels, cue_sheet
from composer.plan import build_plan
from composer.settings import Settings
from tests.conftest import STYLES

SHORT = Path(__file__).resolve().parent.parent / "data" / "short.yaml"


def test_labels_and_cue(tiny_settings: Settings) -> None:
    styles = StyleLibrary.load(STYLES)
    plan = build_plan(load_arrangement(SHORT, styles), "short", styles, tiny_settings)
    labels = [line.split("\t") for line in audacity_labels(plan).splitlines()]
    assert [row[2] for row in labels] == ["intro", "intro -> drive", "drive", "coda"]
    assert float(labels[2][0]) == plan.timeline[2].start_s
    cue = cue_sheet(plan, "mix.wav").splitlines()
    assert cue[1] == 'FILE "mix.wav" WAVE'
    assert cue.count("  TRACK 01 AUDIO") == 1 and "  TRACK 03 AUDIO" in cue
    # drive starts at 2.5 + 1.5 - 0.5 = 3.5 s = 0:03 + 37.5 CUE frames (75 per second)
    assert "    INDEX 01 00:03:38" in cue
