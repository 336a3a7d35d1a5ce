"""Faults while rendering: busy folders, full disks, out-of-memory, Ctrl-C, odd audio."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from composer.cli import app
from composer.errors import EngineError
from composer.fsutil import DiskFullError
from composer.job.local import render
from composer.settings import Settings
from tests.conftest import REPO

SHORT = REPO / "tests" / "data" / "short.yaml"
runner = CliRunner()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reference(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    render(SHORT, settings, out)
    return out / "short" / "mix.wav"


def test_busy_folder_is_refused_with_a_message(tiny_env: Path, tmp_path: Path) -> None:
    folder = tmp_path / "short"
    folder.mkdir()
    with open(folder / ".render.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242")
        held.flush()
        result = runner.invoke(app, ["render", str(SHORT), "--out", str(tmp_path)])
    assert result.exit_code == 75
    assert "another render is running (pid 4242)" in result.output
    assert not (folder / "mix.wav").exists()


def test_two_arrangements_share_the_cache_concurrently(tiny_env: Path, tmp_path: Path, reference: Path) -> None:
    twin = tmp_path / "twin.yaml"
    twin.write_text(SHORT.read_text().replace("title: Test Short", "title: Twin"))
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "composer", "render", str(f), "--out", str(out)],
            # one thread each: two processes spinning two threads each on a 2-core machine take 5x as long,
            # and the mix does not depend on the thread count (tests/render/test_threads.py)
            env=dict(os.environ) | {"OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for f in (SHORT, twin)
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stdout.read() if proc.stdout else ""
    assert sha(out / "short" / "mix.wav") == sha(reference)
    for stem in (out / "short" / "stems" / "raw").iterdir():  # the same audio (the files' tags name their titles)
        assert np.array_equal(sf.read(str(stem))[0], sf.read(str(out / "twin" / "stems" / "raw" / stem.name))[0])
    from composer.render.cache import SegmentCache

    cache = SegmentCache(out / "cache" / "segments")
    entries = list(cache.root.rglob("*.npz"))
    assert len(entries) == 4 and all(cache.load(p.stem) is not None for p in entries)


def test_disk_full_keeps_finished_segments_and_resumes(
    settings: Settings, tmp_path: Path, reference: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import composer.render.cache as cache_module

    real = cache_module.atomic_write_bytes
    calls = {"n": 0}

    def flaky(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr(cache_module, "atomic_write_bytes", flaky)
    with pytest.raises(DiskFullError, match="disk full while writing .*run the same command again"):
        render(SHORT, settings, tmp_path)
    kept = list((tmp_path / "cache" / "segments").rglob("*.npz"))
    assert len(kept) == 2
    assert not list(tmp_path.rglob(".*.tmp"))
    monkeypatch.setattr(cache_module, "atomic_write_bytes", real)
    resumed = render(SHORT, settings, tmp_path)
    assert len(resumed.stats.generated) == 2 and len(resumed.stats.cached) == 2
    assert sha(tmp_path / "short" / "mix.wav") == sha(reference)


def test_disk_full_through_the_cli_is_one_line(tiny_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import composer.export.write as write_module

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "short" / "mix.wav"))

    monkeypatch.setattr(write_module, "write_audio", full)
    result = runner.invoke(app, ["render", str(SHORT), "--out", str(tmp_path)])
    assert result.exit_code == 74
    assert (
        result.output.strip().splitlines()[-1].startswith(f"disk full while writing {tmp_path / 'short' / 'mix.wav'}")
    )


def test_out_of_memory_retries_then_names_the_segment(
    settings: Settings,
    tmp_path: Path,
    reference: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import torch

    from composer.engine.fast import FastEngine

    real = FastEngine._tokens
    state = {"failures": 1}

    def sometimes(self, plans, progress):  # type: ignore[no-untyped-def]
        if len(plans) > 1 and state["failures"] > 0:
            state["failures"] -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, plans, progress)

    monkeypatch.setattr(FastEngine, "_tokens", sometimes)
    with caplog.at_level(logging.WARNING):
        render(SHORT, settings, tmp_path / "a")
    assert "out of memory with 2 segment(s)" in caplog.text
    assert sha(tmp_path / "a" / "short" / "mix.wav") == sha(reference), "retrying one at a time changes nothing"

    def always(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(FastEngine, "_tokens", always)
    with pytest.raises(EngineError, match=r"intro: out of GPU memory generating 2.5 s .* COMPOSER_BATCH=1"):
        render(SHORT, settings, tmp_path / "b")


def test_other_errors_are_not_taken_for_out_of_memory(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Detection is by exception type: a RuntimeError that merely says "out of memory" is not retried."""
    from composer.engine.fast import FastEngine

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("out of memory (but not torch's)")

    monkeypatch.setattr(FastEngine, "_tokens", broken)
    with pytest.raises(RuntimeError, match="not torch's"):
        render(SHORT, settings, tmp_path)


def fault_env(spec: str) -> dict[str, str]:
    """The test environment plus a fault point: the render signals itself there (composer.faults)."""
    return dict(os.environ) | {"COMPOSER_FAULT_AT": spec}


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tiny_env: Path, tmp_path: Path) -> None:
    # SIGINT arrives right after the first segment reaches the cache, however fast this machine is
    # A shell that starts jobs in the background (as CI runners may) hands them SIGINT ignored, and
    # Python then never raises KeyboardInterrupt: give the render the default disposition, as a terminal does.
    proc = subprocess.run([sys.executable, "-m", "composer", "render", str(SHORT), "--out", str(tmp_path)],
                          env=fault_env("segment-stored#1:INT"), capture_output=True, timeout=300,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    output = (proc.stdout + proc.stderr).decode()
    assert proc.returncode == 130, output
    assert "run the same command again to resume" in output
    assert "Traceback" not in output
    assert len(list((tmp_path / "cache" / "segments").rglob("*.npz"))) == 1
    assert not (tmp_path / "short" / "mix.wav").exists()


def test_nan_from_the_codec_becomes_silence(tiny_small, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    import composer.engine.base as engine
    from composer.engine.factory import wrap
    from composer.engine.types import Request

    real = engine.decode_many

    def poisoned(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = real(*args, **kwargs)
        for audio in out:
            audio[:, 100:200] = np.nan
            audio[:, 300] = np.inf
        return out

    monkeypatch.setattr(engine, "decode_many", poisoned)
    with caplog.at_level(logging.WARNING):
        result = wrap("fast", tiny_small).generate([Request("x", 0.5, seed=1)])[0]
    assert np.isfinite(result.audio).all() and np.all(result.audio[:, 100:200] == 0)
    assert "NaN/inf" in caplog.text


def test_silent_and_very_short_segments_assemble(settings: Settings, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    from composer.arrangement import load_arrangement
    from composer.arrangement.styles import StyleLibrary
    from composer.assembly.mix import assemble, master
    from composer.engine.types import Take
    from composer.plan import build_plan

    text = (
        SHORT.read_text().replace("duration_s: 2.5", "duration_s: 0.3").replace("crossfade_s: 0.5", "crossfade_s: 0.1")
    )
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    styles = StyleLibrary.load(REPO / "styles")
    arr = load_arrangement(path, styles)
    plan = build_plan(arr, "tiny", styles, settings)
    segments = {}
    for seg in plan.segments:
        frames = seg.prompt_frames + seg.frames
        tokens = np.zeros((4, frames), np.int64)
        audio = np.zeros((1, frames * 640), np.float32)  # silence: loudness undefined
        segments[seg.id] = Take(tokens=tokens, prompt_frames=seg.prompt_frames, audio=audio,
                                sample_rate=32000, frame_rate=50, key=seg.key)  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assembly = assemble(plan, arr, segments, 44100)
        mastered = master(assembly.mix(), 44100, -16.0, -1.0)
    assert "loudness undefined" in caplog.text
    assert np.isfinite(mastered.audio).all() and mastered.integrated_lufs is None
    assert mastered.audio.shape[1] == pytest.approx(plan.length_s * 44100, abs=1)


def test_every_json_file_is_strict_json_even_for_a_silent_mix(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#19 item 7: a silent mix's true peak is -inf, which Python writes as the non-JSON -Infinity."""
    from composer.engine import base

    def silence(lm, tokens, chunk_s=None, context_s=2.0):  # type: ignore[no-untyped-def]
        return [np.zeros((lm.spec.channels, t.shape[1] * lm.spec.hop), np.float32) for t in tokens]

    monkeypatch.setattr(base, "decode_many", silence)
    result = render(SHORT, settings, tmp_path)

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    written = [p for p in tmp_path.rglob("*.json")]
    assert {p.name for p in written} >= {"manifest.json", "state.json"}
    for path in written:
        json.loads(path.read_text(), parse_constant=refuse)
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert manifest["loudness"]["true_peak_dbtp"] is None and manifest["loudness"]["integrated_lufs"] is None


def test_clipping_input_is_limited_not_clipped() -> None:
    from composer.assembly.mix import master
    from tests.meters import true_peak_db

    rate = 48000
    t = np.arange(5 * rate) / rate
    loud = (3.0 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32)  # +9.5 dBFS: "clipped" input
    out = master(loud, rate, -14.0, -1.0)
    assert true_peak_db(out.audio) <= -1.0 + 1e-3
    assert abs((out.integrated_lufs or 0) + 14) <= 0.5
    assert len(np.unique(np.round(out.audio[0, : rate // 10], 4))) > 50, "a sine, not a square wave"


# 20 moments: just before and just after the k-th file write of a run (cache entries, journal,
# state, stems, mix, markers, manifest, picture all pass through the same atomic write)
KILL_POINTS = [(point, k) for k in (1, 2, 3, 4, 5, 6, 8, 10, 13, 17) for point in ("file-temp", "file-written")]


def check_every_visible_file(out: Path) -> None:
    """Every file a user or a resumed render could read is whole: audio decodes fully, JSON parses."""
    import soundfile as sf

    from composer.render.cache import SegmentCache

    for entry in (out / "cache" / "segments").rglob("*.npz"):
        assert SegmentCache(entry.parent.parent).load(entry.stem) is not None, entry
    folder = out / "short"
    for path in folder.rglob("*") if folder.is_dir() else []:
        if path.name.startswith(".") or not path.is_file():
            continue  # temp files (swept by the next run) and the lock
        if path.suffix in (".wav", ".flac"):
            audio, _ = sf.read(str(path), dtype="float32")  # decodes every frame; raises on a torn file
            assert audio.size and np.isfinite(audio).all(), path
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".png":
            from PIL import Image

            Image.open(path).load()


@pytest.mark.slow
def test_killed_many_times_never_shows_a_broken_file(tiny_env: Path, tmp_path: Path, reference: Path) -> None:
    """SIGKILL at 20 deterministic moments; every visible file is whole; the end result is identical."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "composer", "render", str(SHORT), "--out", str(out)]
    killed = 0
    for point, k in KILL_POINTS:
        code = subprocess.run(cmd, env=fault_env(f"{point}#{k}:KILL"), capture_output=True, timeout=300).returncode
        assert code in (0, -signal.SIGKILL), code
        check_every_visible_file(out)
        # each run sweeps the temp files an earlier killed run left in its folder: at most this run's own
        left = list((out / "short").rglob("*.tmp")) if (out / "short").is_dir() else []
        assert len(left) <= (1 if point == "file-temp" and code else 0), left
        if code == 0:  # this run had fewer than k writes left: start again from scratch to keep killing mid-way
            shutil.rmtree(out)
        else:
            killed += 1
    assert killed >= 16, f"only {killed} of {len(KILL_POINTS)} runs were killed mid-way"
    assert subprocess.run(cmd, env=dict(os.environ), capture_output=True).returncode == 0
    assert sha(out / "short" / "mix.wav") == sha(reference)


def test_cache_entry_under_the_wrong_key_is_regenerated(settings: Settings, tmp_path: Path, reference: Path) -> None:
    render(SHORT, settings, tmp_path)
    entries = sorted((tmp_path / "cache" / "segments").rglob("*.npz"))
    first, second = entries[0], entries[1]
    shutil.copy(first, second)  # second now holds another segment's content: its stored key disagrees
    result = render(SHORT, settings, tmp_path)
    assert len(result.stats.generated) == 1
    assert sha(tmp_path / "short" / "mix.wav") == sha(reference)


def test_journal_tracks_a_render_in_progress(settings: Settings, tmp_path: Path) -> None:
    from composer.render.run import NoEvents

    seen: list[dict[str, object]] = []

    class Spy(NoEvents):
        def segment_finished(self, segment, seconds, cached):  # type: ignore[no-untyped-def]
            seen.append(json.loads((tmp_path / "short" / "journal.json").read_text()))

    render(SHORT, settings, tmp_path, events=Spy())
    assert [len(j["finished"]) for j in seen] == [1, 2, 3, 4]  # type: ignore[arg-type]
    assert seen[0]["pending"] and not seen[-1]["pending"]
    assert not (tmp_path / "short" / "journal.json").exists(), "the manifest replaces the journal"
