"""The studio's operations through its HTTP API: takes in context, pick, new take, re-roll, cancel.

Each operation must leave the output folder exactly as the CLI's operation would: after it, a plain
``compose render`` generates nothing and writes a byte-identical mix.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from starlette.testclient import TestClient

from composer import api
from composer.settings import Settings
from composer.studio.jobs import Jobs
from composer.studio.server import COOKIE, HEADER, Studio, create_app, make_runner
from tests.studio.test_server import BASE, TOKEN

WAIT_S = 600  # a safety net for a hung worker, never a speed limit


def studio_of(project: Path, settings: Settings) -> Studio:
    return Studio(files=[project / "short.yaml"], out=project / "output", settings=settings, token=TOKEN)


def client(project: Path, settings: Settings, jobs: Jobs | None = None) -> TestClient:
    c = TestClient(create_app(studio_of(project, settings), jobs), base_url=BASE)
    c.cookies.set(COOKIE, TOKEN)
    return c


def post(c: TestClient, url: str, body: dict[str, Any]) -> Any:
    return c.post(url, json=body, headers={HEADER: TOKEN, "origin": BASE})


def finish(c: TestClient, job: dict[str, Any]) -> dict[str, Any]:
    """Wait for the job to end (polling the API, as the page does) and return its last view."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        view = next(j for j in c.get("/api/jobs").json() if j["id"] == job["id"])
        if view["status"] not in ("queued", "running"):
            return view
        time.sleep(0.05)
    raise AssertionError(f"job {job} still running after {WAIT_S} s")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def render_again_generates_nothing(project: Path, settings: Settings) -> None:
    """The CLI's view of the state the studio left: nothing to generate, and the same mix bytes."""
    mix = project / "output" / "short" / "mix.wav"
    before = sha(mix)
    result = api.render(project / "short.yaml", out=project / "output", settings=settings)
    assert result.stats.generated == []
    assert sha(mix) == before


def test_the_page_carries_the_token_for_its_posts_and_runs_only_its_own_code(project: Path, settings: Settings) -> None:
    c = client(project, settings)
    page = c.get("/")
    assert page.status_code == 200 and f'content="{TOKEN}"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert c.get("/static/studio.js").status_code == 200
    assert c.get("/static/../server.py").status_code == 404
    assert TestClient(create_app(studio_of(project, settings)), base_url=BASE).get("/").status_code == 401


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"kind": "format-disk", "name": "short"}, "kind"),
        ({"kind": "render", "name": "../etc"}, "name"),
        ({"kind": "pick", "name": "short", "section": "drive"}, "take"),
        ({"kind": "pick", "name": "short", "section": "drive", "take": True}, "take"),
        ({"kind": "new-take", "name": "short"}, "section"),
        ({"kind": "reroll", "name": "short", "above": 0}, "above"),
    ],
)
def test_a_bad_job_is_refused_with_the_field_named(
    project: Path, settings: Settings, body: dict[str, Any], problem: str
) -> None:
    got = post(client(project, settings), "/api/jobs", body)
    assert got.status_code == 400 and got.text.startswith(problem)


def test_a_take_in_context_is_the_mix_with_that_take_at_the_mix_loudness(project: Path, settings: Settings) -> None:
    c = client(project, settings)
    mix, rate = sf.read(str(project / "output" / "short" / "mix.wav"), always_2d=True)
    picked = c.get("/audio/short/context/drive/0")
    assert picked.status_code == 200 and picked.headers["x-composer-borrowed"] == ""
    same, same_rate = sf.read(io.BytesIO(picked.content), always_2d=True)
    assert same_rate == rate and same.shape == mix.shape
    assert np.abs(same - mix).max() < 2 / 2**15  # the mix itself, at 16 bits
    other = c.get("/audio/short/context/drive/1")
    assert other.status_code == 200 and other.headers["x-composer-borrowed"] == "coda"  # coda continues drive
    audio, _ = sf.read(io.BytesIO(other.content), always_2d=True)
    assert np.abs(audio - mix).max() > 0.01  # another take is heard
    meter = pyloudnorm.Meter(rate)
    assert abs(meter.integrated_loudness(audio) - meter.integrated_loudness(mix)) < 0.5
    view = c.get("/api/renders/short").json()
    drive = next(s for s in view["sections"] if s["name"] == "drive")
    assert [(t["take"], t["picked"], t["audio"]) for t in drive["takes"]] == [
        (0, True, "mix"), (1, False, "context/drive/1")]  # fmt: skip
    assert c.get("/audio/short/context/drive/9").status_code == 404
    assert c.get("/audio/short/context/nothing/1").status_code == 404


def test_pick_in_the_studio_is_compose_pick(project: Path, settings: Settings) -> None:
    c = client(project, settings)
    mix = project / "output" / "short" / "mix.wav"
    before = sha(mix)
    job = finish(c, post(c, "/api/jobs", {"kind": "pick", "name": "short", "section": "drive", "take": 1}).json())
    assert job["status"] == "done", job
    assert sha(mix) != before
    view = c.get("/api/renders/short").json()
    assert view["picked"] == {"drive": 1}
    render_again_generates_nothing(project, settings)


def test_a_new_take_in_the_studio_keeps_the_others_and_shows_its_progress(project: Path, settings: Settings) -> None:
    c = client(project, settings)
    job = finish(c, post(c, "/api/jobs", {"kind": "new-take", "name": "short", "section": "drive"}).json())
    assert job["status"] == "done", job
    made = [s for s in job["segments"] if s["state"] == "done"]
    assert [s["id"] for s in made] == ["drive.take2"] and made[0]["done"] == made[0]["total"] > 0
    drive = next(s for s in c.get("/api/renders/short").json()["sections"] if s["name"] == "drive")
    assert [t["take"] for t in drive["takes"]] == [0, 1, 2]
    render_again_generates_nothing(project, settings)


def test_a_reroll_in_the_studio_is_compose_render_reroll(project: Path, settings: Settings) -> None:
    c = client(project, settings)
    job = finish(c, post(c, "/api/jobs", {"kind": "reroll", "name": "short", "above": 0.5}).json())
    assert job["status"] == "done", job
    manifest = json.loads((project / "output" / "short" / "manifest.json").read_text())
    assert manifest["rerolls"]["limit"] == 0.5 and manifest["rerolls"]["tries"]
    render_again_generates_nothing(project, settings)


class CancelAt:
    """Render events that cancel the job at a fixed decoding step of a fixed segment."""

    def __init__(self, events: Any, segment: str, step: int, cancel: Any):
        self.events, self.segment, self.step, self.cancel = events, segment, step, cancel

    def __getattr__(self, name: str) -> Any:
        return getattr(self.events, name)

    def segment_progress(self, segment: Any, done: int, total: int) -> None:
        self.events.segment_progress(segment, done, total)
        if segment.id == self.segment and done >= self.step:
            self.cancel()


def test_a_cancelled_job_leaves_what_an_interrupted_render_leaves(
    project: Path, settings: Settings, tmp_path: Path
) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(project, twin, symlinks=True)
    studio = studio_of(project, settings)
    run = make_runner(studio, api.KeptEngine())
    holder: dict[str, Jobs] = {}

    def cancelled_at_step_3(job: Any, events: Any, cancel: threading.Event) -> None:
        run(job, CancelAt(events, "drive.take2", 3, lambda: holder["jobs"].cancel(job.id)), cancel)

    jobs = holder["jobs"] = Jobs(cancelled_at_step_3)
    c = client(project, settings, jobs)
    job = finish(c, post(c, "/api/jobs", {"kind": "new-take", "name": "short", "section": "drive"}).json())
    assert job["status"] == "cancelled", job
    jobs.close()

    stop = threading.Event()  # the same operation through the API, interrupted at the same step
    with pytest.raises(api.Cancelled):
        api.regen(twin / "short.yaml", "drive", add_take=True, out=twin / "output", settings=settings,
                  events=CancelAt(api.NoEvents(), "drive.take2", 3, stop.set), cancel=stop)  # fmt: skip
    for name in ("manifest.json", "mix.wav"):
        assert (project / "output/short" / name).read_bytes() == (twin / "output/short" / name).read_bytes(), name
    state, twin_state = (json.loads((p / "output/short/state.json").read_text()) for p in (project, twin))
    assert state.pop("arrangement") != twin_state.pop("arrangement")  # each folder names its own file
    assert state == twin_state and state["take_counts"]["drive"] == 3
    assert not (project / "output/short/journal.json").exists()  # no segment finished: nothing to record
    assert not (twin / "output/short/journal.json").exists()
    assert sorted(p.name for p in (project / "output/cache/segments").iterdir()) == sorted(
        p.name for p in (twin / "output/cache/segments").iterdir()
    )
    result = api.render(project / "short.yaml", out=project / "output", settings=settings)  # resumes
    assert result.stats.generated == ["drive.take2"]


def test_a_queued_job_can_be_cancelled_before_it_starts(project: Path, settings: Settings) -> None:
    release = threading.Event()
    ran: list[str] = []

    def held(job: Any, events: Any, cancel: threading.Event) -> None:
        ran.append(job.id)
        release.wait(WAIT_S)

    jobs = Jobs(held)
    c = client(project, settings, jobs)
    first = post(c, "/api/jobs", {"kind": "render", "name": "short"}).json()
    second = post(c, "/api/jobs", {"kind": "render", "name": "short"}).json()
    cancelled = c.post(f"/api/jobs/{second['id']}/cancel", headers={HEADER: TOKEN}).json()
    assert cancelled["status"] == "cancelled"
    assert c.post("/api/jobs/999/cancel", headers={HEADER: TOKEN}).status_code == 404
    assert c.post(f"/api/jobs/{first['id']}/cancel").status_code == 403  # no token header: not from the page
    third = post(c, "/api/jobs", {"kind": "render", "name": "short"}).json()
    release.set()
    assert finish(c, third)["status"] == "done"  # the worker went past the cancelled job before closing
    jobs.close()
    assert ran == [first["id"], third["id"]]


def test_showing_a_render_makes_its_takes_mixes_ahead(project: Path, settings: Settings) -> None:
    """A/B switching must only serve a file: the takes' mixes are made when the render is shown."""
    auditions = project / "output" / "cache" / "auditions"
    with TestClient(create_app(studio_of(project, settings)), base_url=BASE) as c:
        c.cookies.set(COOKIE, TOKEN)
        assert not auditions.exists()
        assert c.get("/api/renders/short").status_code == 200
    # leaving the client shuts the app down, which waits for the mixes being made
    assert len(list(auditions.glob("*.wav"))) == 3  # take 1 of intro, drive and coda
    again = api.audition(project / "short.yaml", "drive", 1, out=project / "output", settings=settings)
    assert again.cached
