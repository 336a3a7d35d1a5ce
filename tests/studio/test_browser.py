"""The studio in a real browser (Playwright driving Debian's Chromium) on a tiny 4-section render.

Screenshots of each state go to ``$COMPOSER_TEST_ARTEFACTS/studio`` (default ``test-artefacts/studio``);
with ``COMPOSER_DOCS_SCREENSHOT=1`` the first one also replaces docs/studio.png (the README's picture).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from bench.studio_browser import browser_page, missing, open_studio, play_until, studio_server, wait_for_jobs
from composer import api
from composer.settings import Settings

FOUR = Path(__file__).resolve().parent / "data" / "four.yaml"
ROOT = Path(__file__).resolve().parent.parent.parent
ARTEFACTS = Path(os.environ.get("COMPOSER_TEST_ARTEFACTS") or ROOT / "test-artefacts") / "studio"

pytestmark = pytest.mark.skipif(missing() is not None, reason=f"no browser here: {missing()}")


@pytest.fixture(scope="module")
def project(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("studio")
    shutil.copy(FOUR, root / "four.yaml")
    api.render(root / "four.yaml", out=root / "output", takes=2, settings=settings)
    return root


def shot(page: object, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_studio_in_a_browser(project: Path, settings: Settings) -> None:
    mix = project / "output" / "four" / "mix.wav"
    with studio_server([project / "four.yaml"], project / "output", settings) as url, browser_page() as (page, errors):
        timings = open_studio(page, url, "four")
        assert page.locator("#arrangement-list li").count() == 1
        assert "rendered" in page.locator("#arrangement-list li .state").inner_text()
        assert page.locator("#sections tbody tr").count() == 4
        seams = page.locator("#seams tbody tr")
        assert seams.count() == 6 and all(float(t) >= 0 for t in page.locator("#seams .score").all_inner_texts())
        first = shot(page, "1-loaded")
        if os.environ.get("COMPOSER_DOCS_SCREENSHOT") == "1":
            shutil.copy(first, ROOT / "docs" / "studio.png")

        assert play_until(page, 0.3) > 0.3  # the mix plays (muted)
        shot(page, "2-playing")

        position = page.evaluate("document.getElementById('player').currentTime")
        page.click("[data-listen='context/drive/1']")  # B: the mix with drive's take 1, from the same place
        page.wait_for_function("studio.source === 'context/drive/1' && studio.lastSwitchMs !== null")
        switched = page.evaluate("({t: document.getElementById('player').currentTime, ms: studio.lastSwitchMs})")
        assert switched["t"] >= position - 0.05  # it went on from the playhead, not from the start
        page.wait_for_function(f"document.getElementById('player').currentTime > {switched['t'] + 0.2}")
        assert "mix with drive take 1" in page.locator("#source").inner_text()
        shot(page, "3-take-b")
        page.click(".take[data-section='drive'][data-take='0'] [data-listen]")  # A again: the picked take, the mix
        page.wait_for_function("studio.source === 'mix' && !document.getElementById('player').paused")
        page.click("#play")  # pause

        before = sha(mix)
        page.click("[data-pick='drive/1']")
        wait_for_jobs(page)
        page.wait_for_selector(".take.picked[data-section='drive'][data-take='1']")
        assert sha(mix) != before  # the page's pick rewrote the mix
        assert api.open_render(project / "output" / "four").state.takes == {"drive": 1}
        shot(page, "4-picked")
        page.reload()  # nothing is page-only: a reload shows the same state, and the finished job
        page.wait_for_selector("body[data-ready='1']")
        page.wait_for_selector(".take.picked[data-section='drive'][data-take='1']")
        assert page.locator("#job-list li[data-status='done']").count() == 1
        page.evaluate("document.getElementById('player').muted = true")

        page.click("[data-new-take='build']")
        page.wait_for_selector("#job-list li[data-status='running']", timeout=120_000)
        shot(page, "5-new-take-running")
        wait_for_jobs(page)
        page.wait_for_selector(".take[data-section='build'][data-take='2']")
        assert page.locator("#job-list li[data-status='done']").count() == 2
        job = page.evaluate("studio.jobs.find(j => j.kind === 'new-take')")
        assert job["steps"] > 0 and job["steps_done"] == job["steps"]  # its progress went to the end
        assert [s["id"] for s in job["segments"] if s["state"] == "done"] == ["build.take2"]
        shot(page, "6-new-take-done")
        assert errors == [], errors
    print(f"\nstudio in Chromium: interactive after {timings['interactive']:.0f} ms, "
          f"take switch to playing {switched['ms']:.0f} ms, screenshots in {ARTEFACTS}")  # fmt: skip
    again = api.render(project / "four.yaml", out=project / "output", settings=settings)
    assert again.stats.generated == []  # the CLI finds the state the page left complete


@pytest.fixture(scope="module")
def looped(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four sections as a loop: the outro's transition carries it back into the intro."""
    root = tmp_path_factory.mktemp("studio-loop")
    text = FOUR.read_text().replace("seed: 7\n", "seed: 7\nloop: true\n") + "    transition: {duration_s: 2}\n"
    (root / "loop.yaml").write_text(text)
    api.render(root / "loop.yaml", out=root / "output", settings=settings)
    return root


def test_a_loops_wrap_in_the_browser(looped: Path, settings: Settings) -> None:
    """The wrap is a seam at the file's end with its score, the player loops, and "across" plays the end
    and then the start."""
    manifest = json.loads((looped / "output" / "loop" / "manifest.json").read_text())
    with studio_server([looped / "loop.yaml"], looped / "output", settings) as url, browser_page() as (page, errors):
        open_studio(page, url, "loop")
        wrap = page.locator("#seams tbody tr.wrap")
        assert wrap.count() == 1 and "outro--intro → intro (wrap" in wrap.inner_text()
        assert wrap.locator(".score").inner_text() == f"{manifest['loop']['wrap_seam']['score']:.2f}"
        assert page.evaluate("document.getElementById('player').loop") is True
        length = page.evaluate("studio.view.length_s")
        # what lies past the file's end is folded over its start: nothing is shown past the end
        assert page.evaluate("Math.max(...studio.view.segments.map(s => s.end_s))") == length
        page.click("tr.wrap [data-across]")
        page.wait_for_function(f"document.getElementById('player').currentTime > {length - 1.0}", timeout=30_000)
        shot(page, "7-loop-wrap")
        # round to the start, then it stops two bars (4 s at 120 BPM) in
        page.wait_for_function("studio.stopAt === null && document.getElementById('player').paused", timeout=30_000)
        stopped = page.evaluate("document.getElementById('player').currentTime")
        assert 4.0 <= stopped < 6.0, stopped
        assert errors == [], errors
