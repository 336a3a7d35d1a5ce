"""Drive ``compose studio`` in a real browser: a studio server in a thread and Debian's Chromium through
Playwright. Used by the browser tests (tests/studio/test_browser.py) and the studio benchmark
(bench/studio.py), so the README's screenshot and the reported timings come from the tested code."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from composer.settings import Settings
from composer.studio import serve, server

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str | None:
    """The system's Chromium (Playwright's own browser download is not needed)."""
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def missing() -> str | None:
    """Why a browser run cannot happen here (None: it can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install 'musicgen-composer[dev]')"
    if chromium() is None:
        return "no Chromium on PATH (Debian: apt-get install chromium; scripts/run_tests.sh does it as root)"
    return None


@contextlib.contextmanager
def studio_server(files: list[Path], out: Path, settings: Settings) -> Iterator[str]:
    """A studio on a free local port, in a thread; yields its URL with the token. Stopped on exit."""
    import uvicorn

    token = server.new_token()
    app = server.create_app(server.Studio(files=files, out=out, settings=settings, token=token))
    sock = serve.bind("127.0.0.1", 0)
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))  # type: ignore[arg-type]
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    started = threading.Event()
    while not uv.started and thread.is_alive():
        started.wait(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/?token={token}"
    finally:
        uv.should_exit = True
        thread.join(120)
        sock.close()


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 900) -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page and the list its console errors and uncaught exceptions go to."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium(), args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
        )
        try:
            # Playwright's waits evaluate strings in the page, which the studio's CSP forbids (no eval)
            page = browser.new_page(viewport={"width": width, "height": height}, bypass_csp=True)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, errors
        finally:
            browser.close()


def open_studio(page: Any, url: str, name: str) -> dict[str, float]:
    """Open the studio at ``url`` on arrangement ``name``, muted; returns the page's own timings (ms):
    ``interactive`` (arrangements listed, render drawn, handlers attached) from navigation start."""
    page.goto(url + "#" + name)
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    page.evaluate("document.getElementById('player').muted = true")
    return {"interactive": page.evaluate("studio.interactiveMs")}


def wait_for_jobs(page: Any, timeout_ms: int = 600_000) -> None:
    """Until the page shows no queued or running job (and has reloaded what the job changed)."""
    page.wait_for_function(
        "studio.jobs.length > 0 && studio.jobs.every(j => j.status !== 'queued' && j.status !== 'running')",
        timeout=timeout_ms,
    )


def play_until(page: Any, seconds: float) -> float:
    """Press Play; returns the audio element's currentTime once it passed ``seconds``."""
    page.click("#play")
    page.wait_for_function(f"document.getElementById('player').currentTime > {seconds}", timeout=60_000)
    return float(page.evaluate("document.getElementById('player').currentTime"))
