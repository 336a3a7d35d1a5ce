"""The prepared GPU check in its CPU mode: the same code paths at tiny sizes, so it cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_gpu_check_quick_cpu_mode_writes_every_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.gpu import TARGETS, main

    monkeypatch.chdir(REPO)
    data = main(["--quick", "--device", "cpu", "--out", str(tmp_path), "--budget-s", "600"])
    files = list(tmp_path.glob("gpu-cpu-*-quick.json"))
    assert len(files) == 1 and json.loads(files[0].read_text()) == data
    for alias in ("small", "medium"):
        engines = {(r["engine"], r["dtype"], r["batch"]) for r in data[f"decoding_{alias}"]}
        # composer's dtype on CPU is what the machine's tuner chose; the rows name it
        assert {("composer eager", 1), ("transformers generate", 1)} <= {(e, b) for e, _, b in engines}
        assert ("transformers generate", "float32", 1) in engines
        ours = [r for r in data[f"decoding_{alias}"] if r["engine"] == "composer eager"]
        assert all(r["numerics"].startswith("cpu-") for r in ours)
        assert all(r["steps_per_s"] > 0 for r in data[f"decoding_{alias}"] if "seconds" in r)
    assert data["render"]["length_s"] > 0 and sum(p["segments"] for p in data["render"]["phases"]) == 4
    assert [(c["seconds_of_audio"], c["mode"]) for c in data["codec"]][:2] == [(1.0, "one-shot"), (1.0, "chunked")]
    assert set(data["targets"]) == set(TARGETS)
    assert data["profile_small_eager"] and data["profile_small_eager"][0]["self_ms"] >= 0


def test_gpu_check_records_what_its_budget_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row that would not fit the time left is written as skipped, not run past the device's limit."""
    import time

    from bench.gpu import Run, decode_rows, settings_for

    monkeypatch.chdir(REPO)
    run = Run(tmp_path / "r.json", time.perf_counter(), budget_s=0.0)
    settings = settings_for("tiny", "cpu", tmp_path / "models")
    decode_rows("small", settings, 4, [1, 2], run, ["composer eager", "transformers generate"])
    rows = json.loads((tmp_path / "r.json").read_text())["decoding_small"]
    assert len(rows) == 6 and all(r["skipped"].startswith("budget") for r in rows)
