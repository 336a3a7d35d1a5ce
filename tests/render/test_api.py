"""The Python API's own promises: cancellation at a deterministic point, the typed view of a render."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from composer import api
from composer.job.view import NoRenderError
from composer.plan import Segment
from composer.settings import Settings
from tests.render.test_render import SHORT, sha


class CancelAt(api.NoEvents):
    """Sets ``cancel`` at one deterministic point: a frame of the n-th generated segment."""

    def __init__(self, cancel: threading.Event, segment: int, frame: int):
        self.cancel, self.segment, self.frame = cancel, segment, frame
        self.started: list[str] = []

    def segment_started(self, segment: Segment) -> None:
        self.started.append(segment.id)

    def segment_progress(self, segment: Segment, done: int, total: int) -> None:
        if len(self.started) == self.segment and done >= self.frame:
            self.cancel.set()


def test_a_cancelled_render_stops_mid_segment_exports_nothing_and_resumes(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_(batch_size=1)  # one segment at a time: "the second segment" is one point
    cancel = threading.Event()
    events = CancelAt(cancel, segment=2, frame=10)
    with pytest.raises(api.Cancelled, match="render cancelled"):
        api.render(SHORT, out=tmp_path / "out", settings=settings, events=events, cancel=cancel)
    folder = tmp_path / "out" / "short"
    assert not (folder / "manifest.json").exists() and not list(folder.glob("mix.*")), "nothing exported"
    journal = json.loads((folder / "journal.json").read_text())
    first = events.started[0]
    assert [f["id"] for f in journal["finished"]] == [first], "the first segment finished and is kept"
    assert events.started[1] in journal["pending"]
    resumed = api.render(SHORT, out=tmp_path / "out", settings=settings)
    assert first not in resumed.stats.generated and first in resumed.stats.cached
    fresh = api.render(SHORT, out=tmp_path / "fresh", settings=settings)
    assert sha(resumed.folder / "mix.wav") == sha(fresh.folder / "mix.wav"), "a resumed render is the same render"


def test_open_render_reads_what_the_files_say(settings: Settings, tmp_path: Path) -> None:
    result = api.render(SHORT, out=tmp_path, takes=2, settings=settings)
    done = api.open_render(result.folder)
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert done.complete and done.pending == [] and done.title == "Test Short"
    assert done.mix == result.folder / "mix.wav" and done.mix.is_file()
    assert [s.id for s in done.segments] == [s["id"] for s in manifest["segments"]]
    assert all(s.raw is not None and s.raw.is_file() and s.aligned is not None and s.aligned.is_file()
               for s in done.segments)  # fmt: skip
    assert {(t.section, t.take) for t in done.takes} == {("intro", 1), ("drive", 1), ("coda", 1)}
    assert all(t.file.is_file() for t in done.takes)
    assert done.state.take_counts == {"intro": 2, "drive": 2, "coda": 2}
    assert done.loudness.integrated_lufs == manifest["loudness"]["integrated_lufs"]


@pytest.mark.parametrize("case", ["empty", "interrupted", "damaged"])
def test_open_render_refuses_a_folder_without_a_finished_render(tmp_path: Path, case: str) -> None:
    folder = tmp_path / "song"
    folder.mkdir()
    if case == "interrupted":
        (folder / "journal.json").write_text(json.dumps({"finished": [], "pending": ["intro", "intro--drive"]}))
    if case == "damaged":
        (folder / "manifest.json").write_text('{"title": "x"}')
    expected: dict[str, Any] = {"empty": "nothing recorded", "interrupted": "intro, intro--drive",
                                "damaged": "not a manifest composer wrote"}  # fmt: skip
    with pytest.raises(NoRenderError, match=expected[case]):
        api.open_render(folder)


@pytest.mark.parametrize(
    ("env", "kwargs", "message"),
    [
        ({}, {"models": "huge"}, "models 'huge': expected one of hub, tiny, random"),
        (
            {},
            {"device": "gpu"},
            "device 'gpu': expected auto, cpu, cuda or cuda:N (composer runs MusicGen on NVIDIA GPUs or the CPU)",
        ),
        ({}, {"engine": "fastest"}, "engine 'fastest': expected one of fast, transformers"),
        ({"COMPOSER_BATCH": "lots"}, {}, "COMPOSER_BATCH='lots': expected a whole number"),
    ],
)
def test_settings_from_env_refuses_bad_values_in_one_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], kwargs: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(api.SettingsError) as caught:
        api.settings_from_env(**kwargs)
    assert str(caught.value) == message and caught.value.exit_code == 2
