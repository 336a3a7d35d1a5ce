"""The studio at a user's size: a 9-segment arrangement of about three minutes, in headless Chromium.

    python -m bench.studio            # renders bench/data/studio_180.yaml with the tiny models (2 takes)

Measures, in the browser: how soon the page is interactive after navigation starts (first load and a
reload), the size of the peaks JSON, and how long a switch to a take in context takes from the click
to the audio element's ``playing`` event: at once after opening (the studio may still be making that
take's mix ahead: assembled from the cache and mastered), and for every take once they are made.
Results go to bench/results/studio-<cpu class>-<date>.json and a Markdown table is printed
(docs/benchmarks.md quotes it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import RESULTS, cpu_kind
from bench.studio_browser import browser_page, missing, open_studio, studio_server

ROOT = Path(__file__).resolve().parent.parent
ARRANGEMENT = ROOT / "bench" / "data" / "studio_180.yaml"


def switch_ms(page: Any, source: str) -> float:
    page.evaluate("studio.lastSwitchMs = null")
    page.click(f"[data-listen='{source}']")
    page.wait_for_function(f"studio.source === '{source}' && studio.lastSwitchMs !== null", timeout=120_000)
    return float(page.evaluate("studio.lastSwitchMs"))


def main() -> None:
    from composer import api
    from composer.engine.tune import machine

    if missing():
        raise SystemExit(f"cannot run: {missing()}")
    work = Path(tempfile.mkdtemp(prefix="composer-bench-studio-"))
    os.environ.update({"COMPOSER_MODELS": "tiny", "COMPOSER_DEVICE": "cpu", "COMPOSER_CACHE_DIR": str(work / "cache")})
    settings = api.settings_from_env(models="tiny")
    file = work / ARRANGEMENT.name
    shutil.copy(ARRANGEMENT, file)
    started = time.perf_counter()
    result = api.render(file, out=work / "output", takes=2, settings=settings)
    render_s = time.perf_counter() - started
    name, sections = result.folder.name, [s.section for s in result.plan.segments if s.kind == "stem"]
    out: dict[str, Any] = {"machine": machine(), "cpu_class": cpu_kind(), "python": platform.python_version(),
                           "arrangement": ARRANGEMENT.name, "segments": len(result.plan.segments),
                           "length_s": result.manifest["length_s"], "render_s": round(render_s, 1)}  # fmt: skip
    with studio_server([file], work / "output", settings) as url, browser_page() as (page, errors):
        first = open_studio(page, url, name)["interactive"]
        peaks = page.evaluate(
            "performance.getEntriesByType('resource')"
            ".filter(e => e.name.includes('/peaks')).map(e => e.encodedBodySize)"
        )
        reloads = []
        for _ in range(3):
            page.reload()
            page.wait_for_selector("body[data-ready='1']")
            reloads.append(page.evaluate("studio.interactiveMs"))
        page.evaluate("document.getElementById('player').muted = true")
        page.click("#play")
        page.wait_for_function("document.getElementById('player').currentTime > 0.2")
        takes = [f"context/{s}/1" for s in sections]
        early = switch_ms(page, takes[-1])  # at once: its mix may still be being made ahead
        made = work / "output" / "cache" / "auditions"
        while len(list(made.glob("*.wav"))) < len(takes):  # the studio makes every take's mix ahead
            time.sleep(0.1)
        ready = [switch_ms(page, t) for t in takes * 2]
        out |= {"interactive_first_ms": round(first), "interactive_reload_ms": round(statistics.median(reloads)),
                "peaks_bytes": max(peaks), "switch_right_after_open_ms": round(early),
                "switch_ms": [round(v) for v in ready], "switch_median_ms": round(statistics.median(ready)),
                "console_errors": errors}  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"studio-{cpu_kind()}-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{out['machine']['cpu']} ({out['cpu_class']}), {out['segments']} segments, {out['length_s']:.0f} s:")
    print("| page interactive (first load / reload) | peaks JSON | take switch (median, max) | right after opening |")
    print("|---|---|---|---|")
    load = f"{out['interactive_first_ms']} ms / {out['interactive_reload_ms']} ms"
    switch = f"{out['switch_median_ms']} ms, {max(out['switch_ms'])} ms"
    print(f"| {load} | {out['peaks_bytes'] / 1000:.0f} kB | {switch} | {out['switch_right_after_open_ms']} ms |")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
