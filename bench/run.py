"""composer's benchmark: decoding speed, EnCodec decode, assembly DSP and a full render, side by side.

    python -m bench.run                 # everything at the default sizes for this device
    python -m bench.run --quick         # fewer frames (a smoke run, ~2 min on 2 CPU cores)
    python -m bench.run --only decoding --device cuda
    python -m bench.run --only assembly --baseline 9962601   # before/after, side by side

Models are random weights at the real musicgen-small/-medium shapes (nothing to download); the full
render uses the tiny models on CPU and the random real-shape ones on CUDA. Results go to
bench/results/<machine>-<date>.json and a Markdown table is printed (paste it into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import platform
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
GRAPH_ENGINE = "composer fast loop, CUDA graph"
TEXT = "dark industrial ebm, 128 bpm, analog bass sequence, hard machine drums"
PAD_LABELS = {"whole": "", "none": " unpadded", "pow2": " pow2"}  # how a variant pads its last row chunk


# -- measurement helpers ----------------------------------------------------------------------
def reset_peaks(device: str) -> None:
    gc.collect()
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux)
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peaks(device: str) -> dict[str, float | None]:
    rss = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                rss = int(line.split()[1]) / 1024
    except OSError:
        pass
    vram = None
    if device == "cuda":
        import torch

        vram = torch.cuda.max_memory_allocated() / 2**20
    return {
        "peak_rss_mb": None if rss is None else round(rss, 1),
        "peak_vram_mb": None if vram is None else round(vram, 1),
    }


def timed(device: str, fn: Callable[[], Any]) -> tuple[float, Any]:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


# -- decoding ---------------------------------------------------------------------------------
def load_random(alias: str, device: str, dtype: str) -> Any:
    import torch

    from composer.engine.models import LoadedModel, quiet_transformers
    from composer.engine.tiny import build_model

    quiet_transformers()
    model, processor = build_model("random", alias)
    from composer.engine.models import _keep_text_encoder_on_cpu

    torch_dtype = getattr(torch, dtype)
    model.decoder.to(device=device, dtype=torch_dtype)
    model.audio_encoder.to(device=device, dtype=torch_dtype if device == "cuda" else torch.float32)
    if hasattr(model, "enc_to_dec_proj"):
        model.enc_to_dec_proj.to(device=device, dtype=torch_dtype)
    _keep_text_encoder_on_cpu(model, torch.device(device))
    return LoadedModel(
        alias, f"random/{alias}", "random", "random", model, processor, torch.device(device), torch_dtype
    )


def bench_decoding(alias: str, device: str, frames: int, batches: list[int], dtypes: list[str]) -> list[dict[str, Any]]:
    """transformers generate vs composer's loop, one segment and batched, for each weight dtype."""
    rows_out: list[dict[str, Any]] = []
    for dtype in dtypes:
        lm = load_random(alias, device, dtype)
        rows_out += _decode_rows(lm, alias, device, dtype, frames, batches)
        lm.unload()
        gc.collect()
    return rows_out


def _decode_rows(lm: Any, alias: str, device: str, dtype: str, frames: int, batches: list[int]) -> list[dict[str, Any]]:
    import torch

    from composer.engine.fastloop import FastDecoder, Row, StepMode
    from composer.engine.reference import capture_codes

    steps = frames + 3
    decoder = FastDecoder(lm)

    def transformers(batch: int) -> None:
        inputs = lm.processor(text=[TEXT] * batch, padding=True, return_tensors="pt").to(lm.device)
        with capture_codes(lm), torch.inference_mode():
            lm.model.generate(**inputs, do_sample=True, guidance_scale=3.0, top_k=250, max_new_tokens=steps)

    def fast(batch: int, mode: StepMode = "eager") -> None:
        empty = np.zeros((4, 0), np.int64)
        decoder.generate([Row(TEXT, empty, frames, i) for i in range(batch)], mode=mode)

    def graph(batch: int) -> None:
        fast(batch, "graph")

    transformers(1)  # warm-up: allocator, kernels, lazy init
    fast(1)
    out = []
    plans: list[tuple[str, Callable[[int], None], list[int]]] = [("composer fast loop", fast, batches)]
    if device == "cuda":  # what `auto` runs there: the step captured once in a CUDA graph, replayed
        graph(1)
        plans.append((GRAPH_ENGINE, graph, batches))
    if dtype in ("float32", "float16"):  # the baseline is what users run: fp32 on CPU, fp16 on CUDA
        plans.insert(0, ("transformers generate", transformers, [b for b in batches if b <= 5]))
    for name, fn, batch_list in plans:
        for batch in batch_list:
            reset_peaks(device)
            seconds, _ = timed(device, lambda fn=fn, batch=batch: fn(batch))
            per_stream = steps / seconds
            row = {
                "model": alias,
                "engine": name,
                "dtype": dtype,
                "batch": batch,
                "frames": frames,
                "seconds": round(seconds, 3),
                "steps_per_s": round(per_stream, 2),
                "aggregate_steps_per_s": round(per_stream * batch, 2),
                "s_per_10s_audio": round(500 / (per_stream * batch), 2),
                "s_per_30s_audio": round(1500 / (per_stream * batch), 2),
                "real_time_factor": round((per_stream * batch) / 50, 3),
            } | peaks(device)
            print(f"  decoding {alias} {dtype} {name} x{batch}: {row['aggregate_steps_per_s']} steps/s", flush=True)
            out.append(row)
    return out


# -- decoding on the CPU: every kernel, the tuner's choice, transformers, cost along a segment -----
def cpu_model(alias: str, kernel: str, rows: int = 16, pad: str = "whole", numerics: str = "") -> Any:
    """A random-weight model at ``alias``'s real shape set up as ``load_model`` would for ``kernel``
    ("transformers" leaves it in float32 for transformers' own generate)."""
    import torch

    from composer.engine.kernels import activation_dtype
    from composer.engine.models import LoadedModel, _keep_text_encoder_on_cpu, quiet_transformers
    from composer.engine.tiny import build_model

    quiet_transformers()
    model, processor = build_model("random", alias)
    model = model.eval()
    dtype = torch.float32 if kernel == "transformers" else activation_dtype(kernel)
    model.decoder.to(dtype=dtype)
    if hasattr(model, "enc_to_dec_proj"):
        model.enc_to_dec_proj.to(dtype=dtype)
    _keep_text_encoder_on_cpu(model, torch.device("cpu"))
    plain = "float32" if kernel == "transformers" else kernel
    return LoadedModel(alias, f"random/{alias}", "random", "random", model, processor, torch.device("cpu"), dtype,
                       plain, pad, rows, numerics or f"cpu-{plain}-r{rows}")  # fmt: skip


def stream_bandwidth_gbs() -> float:
    """Memory read bandwidth with torch's threads (sum over 1 GiB of float32, best of 3): the bound
    a memory-bound step cannot beat."""
    import torch

    x = torch.ones(1 << 28)
    x.sum()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - start)
    return round(x.numel() * 4 / best / 1e9, 1)


def cpu_kind() -> str:
    """A short name for the CPU's class, for result file names: amx, avx512, avx2 or plain."""
    from composer.engine.tune import isa_summary

    isa = isa_summary().split()
    return next((name for flag, name in (("amx_bf16", "amx"), ("avx512f", "avx512"), ("avx2", "avx2")) if flag in isa),
                "plain")  # fmt: skip


class StepClock:
    """Time stamps of every decoding step of the batch's first row (progress callbacks, or a logits
    processor for transformers): per-step cost where it happens, without the set-up."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def progress(self, row: int, done: int, total: int) -> None:
        if row == 0:
            self.stamps.append(time.perf_counter())

    def __call__(self, input_ids: Any, scores: Any) -> Any:  # a transformers LogitsProcessor
        self.stamps.append(time.perf_counter())
        return scores

    def ms_at(self, step: int, half: int = 10) -> float | None:
        """Median ms per step over the steps around ``step`` (None when the run was shorter)."""
        gaps = np.diff(self.stamps)
        lo, hi = max(0, step - half), min(len(gaps), step + half)
        return round(float(np.median(gaps[lo:hi])) * 1000, 1) if hi - lo >= 3 else None

    def ms_median(self, skip: int = 5) -> float:
        return round(float(np.median(np.diff(self.stamps)[skip:])) * 1000, 1)


def composer_run(lm: Any, batch: int, frames: int) -> tuple[float, StepClock]:
    from composer.engine.fastloop import FastDecoder, Row

    decoder = FastDecoder(lm)
    clock = StepClock()
    empty = np.zeros((4, 0), np.int64)
    start = time.perf_counter()
    decoder.generate([Row(TEXT, empty, frames, i) for i in range(batch)], progress=clock.progress)
    return time.perf_counter() - start, clock


def transformers_run(lm: Any, batch: int, frames: int) -> tuple[float, StepClock]:
    import torch
    from transformers import LogitsProcessorList

    from composer.engine.reference import capture_codes

    clock = StepClock()
    inputs = lm.processor(text=[TEXT] * batch, padding=True, return_tensors="pt")
    start = time.perf_counter()
    with capture_codes(lm), torch.inference_mode():
        lm.model.generate(**inputs, do_sample=True, guidance_scale=3.0, top_k=250, max_new_tokens=frames + 3,
                          logits_processor=LogitsProcessorList([clock]))  # fmt: skip
    return time.perf_counter() - start, clock


def bench_cpu_decoding(
    alias: str, frames: int, batches: list[int], long_frames: int, every_variant: bool = True
) -> dict[str, Any]:
    """Every CPU kernel and chunk size, the tuner's choice and transformers' float32 ``generate``, in one
    run: per-step cost and aggregate speed at each batch size (``frames`` frames from the start), and
    for the tuner's choice and transformers the per-step cost along a ``long_frames`` segment at batch 1."""
    import tempfile

    from composer.engine.kernels import CHUNKS, ROWS, packing_available
    from composer.engine.tune import CANDIDATES, choose_kernel, probe_variant, shape_of_config
    from composer.settings import load_settings

    out: dict[str, Any] = {"model": alias, "frames": frames, "long_frames": long_frames, "rows": [], "positions": []}
    positions = [p for p in (50, 500, 1500) if p <= long_frames]

    def record(engine: str, variant: str, invariant: bool | None, batch: int, seconds: float, clock: StepClock) -> None:
        step_ms = clock.ms_median()
        row = {"engine": engine, "variant": variant, "invariant": invariant, "batch": batch, "frames": frames,
               "seconds": round(seconds, 2), "ms_per_step": step_ms,
               "aggregate_steps_per_s": round(batch * 1000 / step_ms, 2)} | peaks("cpu")  # fmt: skip
        print(f"  {alias} {engine} {variant} x{batch}: {step_ms} ms/step, {row['aggregate_steps_per_s']} steps/s",
              flush=True)  # fmt: skip
        out["rows"].append(row)

    def along(engine: str, variant: str, run: Callable[[], tuple[float, StepClock]]) -> None:
        seconds, clock = run()
        at = {str(p): clock.ms_at(p) for p in positions}
        entry = {"engine": engine, "variant": variant, "batch": 1, "frames": long_frames,
                 "seconds": round(seconds, 2), "ms_per_step_at": at}  # fmt: skip
        print(f"  {alias} {engine} {variant} along {long_frames} frames: {entry['ms_per_step_at']}, "
              f"{entry['seconds']} s", flush=True)  # fmt: skip
        out["positions"].append(entry)

    # transformers first: its modules keep their weights (the fast loop's packing releases them)
    lm = cpu_model(alias, "transformers")
    transformers_run(lm, 1, 5)  # warm-up
    for batch in [b for b in batches if b <= 8]:
        reset_peaks("cpu")
        seconds, clock = transformers_run(lm, batch, frames)
        record("transformers generate", "float32", None, batch, seconds, clock)
    if long_frames:
        along("transformers generate", "float32", lambda lm=lm: transformers_run(lm, 1, long_frames))
    shape = shape_of_config(lm.model.config.to_dict())
    del lm
    gc.collect()

    with tempfile.TemporaryDirectory() as tmp:  # what the tuner picks here, measured afresh
        settings = load_settings(env={"COMPOSER_CACHE_DIR": tmp, "COMPOSER_DEVICE": "cpu"})
        started = time.perf_counter()
        choice = choose_kernel(shape, settings, force=True)
    out["tuner"] = {"kernel": choice.kernel, "rows": choice.rows, "pad": choice.pad, "numerics": choice.numerics,
                    "seconds": round(time.perf_counter() - started, 1), "measured": choice.measured}  # fmt: skip
    chosen = f"{choice.kernel}/{choice.rows}"
    print(f"  {alias}: the tuner chose {chosen} ({choice.numerics}) in {out['tuner']['seconds']} s", flush=True)

    products = sorted(set(shape.products()) | {(shape.codebooks * shape.vocab, shape.hidden)})
    variants = [(k, r) for k in CANDIDATES for r in CHUNKS] + [("int8", ROWS)]
    if not every_variant:
        variants = [(choice.kernel, choice.rows)]
    for kernel in dict.fromkeys(k for k, _ in variants):
        if not packing_available(kernel):
            out["rows"].append({"engine": "composer fast loop", "variant": f"{kernel}/-", "available": False})
            continue
        lm = cpu_model(alias, kernel)
        for k, rows in [v for v in variants if v[0] == kernel]:
            invariant, pad, _ = probe_variant(kernel, products, [1, 2, 3, 4], rows)
            lm.pad, lm.rows = pad, rows
            composer_run(lm, 1, 5)  # warm-up: packing, workspaces
            for batch in batches:
                reset_peaks("cpu")
                seconds, clock = composer_run(lm, batch, frames)
                record("composer fast loop", f"{k}/{rows}" + PAD_LABELS[pad], invariant, batch, seconds,
                       clock)  # fmt: skip
            if long_frames and (k, rows) == (choice.kernel, choice.rows):
                along(
                    "composer fast loop", f"{k}/{rows} (tuner's choice)", lambda lm=lm: composer_run(lm, 1, long_frames)
                )
                per_layer = sum(n * m for n, m in shape.products())
                elements = shape.layers * per_layer + shape.codebooks * shape.vocab * shape.hidden
                out["weight_bytes_per_step"] = elements * {"float32": 4, "int8": 1}.get(k, 2)
                # keys and values of every layer for both guidance rows, float32 on the CPU (fastloop.kv_dtype)
                out["cache_bytes_per_position"] = shape.layers * 2 * shape.hidden * 4 * 2
        del lm
        gc.collect()
    return out


# -- EnCodec decode ---------------------------------------------------------------------------
def bench_codec(device: str, durations: list[float]) -> list[dict[str, Any]]:
    from composer.engine.codec import decode_tokens

    lm = load_random("small", device, "float16" if device == "cuda" else "float32")
    lm.model.decoder.to("cpu")  # only the codec is needed on the device
    decode_tokens(lm, np.zeros((4, 50), np.int64), chunk_s=None)  # warm-up
    out = []
    for seconds in durations:
        codes = np.random.default_rng(0).integers(0, 2048, (4, int(seconds * 50)))
        results = {}
        for mode, chunk in (("one-shot", None), ("chunked", 10.0)):
            reset_peaks(device)
            took, audio = timed(device, lambda chunk=chunk, codes=codes: decode_tokens(lm, codes, chunk_s=chunk))
            results[mode] = audio
            out.append({"seconds_of_audio": seconds, "mode": mode, "seconds": round(took, 3)} | peaks(device))
        diff = results["chunked"] - results["one-shot"]
        error = 10 * np.log10(np.mean(diff**2) / max(np.mean(results["one-shot"] ** 2), 1e-20))
        out[-1]["error_db_vs_one_shot"] = round(float(error), 1)
        print(
            f"  codec {seconds:g} s: one-shot {out[-2]['seconds']} s, chunked {out[-1]['seconds']} s, "
            f"error {error:.1f} dB",
            flush=True,
        )
    lm.unload()
    return out


# -- assembly DSP -----------------------------------------------------------------------------
ASSEMBLY_STEPS = {  # what each row times; the limiter row is a worst case (7 dB over, everywhere)
    "place and sum 6 tracks": "Assembly.mix over six 32 s tracks overlapping by 2 s",
    "high-pass 20 Hz": "zero-phase, the whole mix",
    "integrated loudness": "BS.1770 gated",
    "short-term loudness curve": "3 s windows every 0.5 s",
    "true-peak limiter": "noise 7 dB over the ceiling throughout",
    "resample 32 kHz -> 48 kHz": "soxr VHQ, the whole mix",
}


def bench_assembly(seconds: float = 180.0, rate: int = 48000) -> dict[str, Any]:
    """The assembly DSP on a ``seconds`` stereo mix, warm (imports and filter designs done first).

    Uses only functions whose signatures predate the 2026-11-26 speed-up, so ``--baseline REV`` can
    run this same code against an older checkout of the package in the same run.
    """
    from composer.assembly.crossfade import fade_curves
    from composer.assembly.limiter import limit
    from composer.assembly.loudness import integrated_lufs, short_term_lufs
    from composer.assembly.mix import Assembly, Track, master
    from composer.audio.dsp import highpass, resample

    rng = np.random.default_rng(0)
    part_s, overlap_s, parts = seconds / 6, 2.0, 6
    fade_out, fade_in = fade_curves(int(overlap_s * rate), "equal_power")
    tracks = []
    for i in range(parts):
        audio = rng.standard_normal((2, int((part_s + overlap_s) * rate))).astype(np.float32) * 0.1
        audio[:, : fade_in.size] *= fade_in if i else 1.0
        audio[:, -fade_out.size :] *= fade_out if i < parts - 1 else 1.0
        tracks.append(Track(f"s{i}", int(i * part_s * rate), audio, None, (0.0, 0.0)))
    assembly = Assembly(rate, tracks[-1].start + tracks[-1].audio.shape[1], tracks)

    def everything(mix: np.ndarray) -> None:
        highpass(mix, rate)
        integrated_lufs(mix, rate)
        short_term_lufs(mix, rate)
        limit(mix * 4, rate, -1.0)
        master(mix, rate, -14.0, -1.0)
        resample(mix, 32000, rate)

    start = time.perf_counter()
    everything(assembly.mix()[:, : 2 * rate])
    first_call = time.perf_counter() - start

    timings: dict[str, float] = {}
    reset_peaks("cpu")

    def step(name: str, fn: Callable[[], Any]) -> Any:  # the better of two runs: steadier side by side
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - start)
        timings[name] = round(best, 3)
        return out

    names = list(ASSEMBLY_STEPS)
    mix = step(names[0], assembly.mix)
    step(names[1], lambda: highpass(mix, rate))
    step(names[2], lambda: integrated_lufs(mix, rate))
    step(names[3], lambda: short_term_lufs(mix, rate))
    step(names[4], lambda: limit(mix * 4, rate, -1.0))
    small = resample(mix, rate, 32000)
    step(names[5], lambda: resample(small, 32000, rate))
    master_s = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        mastered = master(mix, rate, -14.0, -1.0)
        master_s = min(master_s, round(time.perf_counter() - start, 3))
    print(f"  assembly {seconds:g} s stereo: {timings}; master {master_s} s", flush=True)
    return {
        "seconds_of_audio": seconds,
        "sample_rate": rate,
        "channels": 2,
        "timings_s": timings,
        "total_s": round(sum(timings.values()), 3),
        "master_s": master_s,
        "master_reduction_db": round(mastered.max_reduction_db, 2),
        "first_call_on_2s_s": round(first_call, 3),
    } | peaks("cpu")


def bench_assembly_at(revision: str) -> dict[str, Any]:
    """``bench_assembly`` run against the package as it was at ``revision`` (a temporary git worktree)."""
    import subprocess
    import sys
    import tempfile

    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "add", "--detach", str(tree), revision],
            check=True,
            capture_output=True,
        )
        try:
            script = (
                "import json, runpy, sys; sys.path.insert(0, sys.argv[1]);"
                "bench = runpy.run_path(sys.argv[2]);"
                "print('RESULT ' + json.dumps(bench['bench_assembly']()))"
            )
            done = subprocess.run(
                [sys.executable, "-c", script, str(tree), str(Path(__file__).resolve())],
                cwd=tree,
                check=True,
                capture_output=True,
                text=True,
            )
        finally:
            subprocess.run(
                ["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)], check=False, capture_output=True
            )
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :]) | {"revision": revision}


# -- a whole render ---------------------------------------------------------------------------
def bench_render(device: str, source: str) -> dict[str, Any]:
    import tempfile

    from composer.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "COMPOSER_MODELS": source,
            "COMPOSER_CACHE_DIR": str(Path(tmp) / "models"),
            "HF_HUB_OFFLINE": "1",
            "COMPOSER_DEVICE": device,
        }
        return bench_render_with(load_settings(env=env), Path(tmp) / "out")


def bench_render_with(
    settings: Any, out_dir: Path, arrangement: Path = Path("arrangements/ebm_set.yaml")
) -> dict[str, Any]:
    """A full render of ``arrangement`` with ``settings``: seconds and peaks per phase."""
    from composer.job.local import render

    device = "cuda" if str(settings.device).startswith("cuda") else "cpu"
    source = settings.model_source

    class Phases:
        def __init__(self) -> None:
            self.phases: list[dict[str, Any]] = []
            self.start = time.perf_counter()

        def phase(self, model: str, segments: list[Any]) -> None:
            self._close()
            reset_peaks(device)
            self.phases.append({"model": model, "segments": len(segments), "start": time.perf_counter()})

        def _close(self) -> None:
            if self.phases and "seconds" not in self.phases[-1]:
                last = self.phases[-1]
                last["seconds"] = round(time.perf_counter() - last.pop("start"), 2)
                last |= peaks(device)

        def segment_started(self, segment: Any) -> None: ...
        def segment_progress(self, segment: Any, done: int, total: int) -> None: ...
        def segment_finished(self, segment: Any, seconds: float, cached: bool) -> None: ...

        def finished(self) -> None:
            self._close()

    events = Phases()
    start = time.perf_counter()
    result = render(arrangement, settings, out_dir, events=events)
    events._close()
    total = time.perf_counter() - start
    generation = sum(p["seconds"] for p in events.phases)
    out = {
        "arrangement": str(arrangement),
        "models": source,
        "length_s": result.manifest["length_s"],
        "total_s": round(total, 2),
        "generation_s": round(generation, 2),
        "assembly_and_export_s": round(total - generation, 2),
        "phases": events.phases,
    }
    print(f"  render ebm_set ({source}): {out['total_s']} s total", flush=True)
    return out


# -- report -----------------------------------------------------------------------------------
def markdown_cpu(results: dict[str, Any]) -> list[str]:
    """The CPU decoding tables: every kernel against transformers float32, and cost along a segment."""
    lines = []
    for part in results.get("cpu_decoding", []):
        hf = {r["batch"]: r["aggregate_steps_per_s"] for r in part["rows"] if r["engine"].startswith("transformers")}
        tuner = part["tuner"]
        lines += [
            f"musicgen-{part['model']} shapes (random weights), {part['frames']} frames per segment, guidance 3, "
            f"sampling; the tuner chose **{tuner['kernel']}/{tuner['rows']}** ({tuner['numerics']}, measured in "
            f"{tuner['seconds']} s). x = aggregate steps/s against transformers float32 one segment at a time "
            "('alone') and at the same batch.",
            "",
            "| engine | kernel/chunk | invariant | batch | ms/step | steps/s (aggregate) | x alone | x same batch |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in part["rows"]:
            if r.get("available") is False:
                lines.append(f"| {r['engine']} | {r['variant']} | not available here | | | | | |")
                continue
            speed = r["aggregate_steps_per_s"]
            alone = f"{speed / hf[1]:.2f}" if 1 in hf else ""
            same = f"{speed / hf[r['batch']]:.2f}" if r["batch"] in hf else ""
            inv = "" if r["invariant"] is None else ("yes" if r["invariant"] else "**no**")
            lines.append(f"| {r['engine']} | {r['variant']} | {inv} | {r['batch']} | {r['ms_per_step']} | {speed} | "
                         f"{alone} | {same} |")  # fmt: skip
        if part["positions"]:
            marks = list(part["positions"][0]["ms_per_step_at"])
            lines += ["", f"Cost along one {part['long_frames']}-frame segment at batch 1 (ms per step near frame):",
                      "", "| engine | kernel | " + " | ".join(marks) + " | whole segment (s) |",
                      "|---|---|" + "---|" * len(marks) + "---|"]  # fmt: skip
            for e in part["positions"]:
                cells = [str(e["ms_per_step_at"][m]) for m in marks]
                lines.append(f"| {e['engine']} | {e['variant']} | " + " | ".join(cells) + f" | {e['seconds']} |")
            lines += position_floor(part, marks, results.get("memory_read_gbs"))
        if part.get("weight_bytes_per_step") and results.get("memory_read_gbs"):
            gbs = results["memory_read_gbs"] * 1e9
            floor = part["weight_bytes_per_step"] / gbs
            cache = part.get("cache_bytes_per_position", 0) * 1500 * 1501 / 2 / gbs  # the cache read over 1500 steps
            lines += ["", f"Bandwidth floor of the chosen kernel at batch 1: {part['weight_bytes_per_step'] / 1e9:.2f} "
                      f"GB of weights per step / {results['memory_read_gbs']} GB/s measured read bandwidth = "
                      f"{floor * 1000:.1f} ms per step; a 30 s segment (1500 steps) also reads its key/value "
                      f"cache, growing by {part.get('cache_bytes_per_position', 0) / 1e3:.0f} kB per position: "
                      f"{floor * 1500 + cache:.1f} s per 30 s."]  # fmt: skip
        lines.append("")
    return lines


def position_floor(part: dict[str, Any], marks: list[str], gbs: float | None) -> list[str]:
    """The chosen kernel's bandwidth floor near each frame: its weights plus the key/value cache a step
    reads there (it grows with the position, so the floor does too), over the measured read bandwidth."""
    weights, per_position = part.get("weight_bytes_per_step"), part.get("cache_bytes_per_position")
    if not (weights and per_position and gbs):
        return []
    floors = [(weights + per_position * int(m)) / (gbs * 1e9) * 1000 for m in marks]
    return ["| floor (weights + key/value cache read) | chosen kernel | " + " | ".join(f"{f:.1f}" for f in floors)
            + " | |"]  # fmt: skip


def markdown(results: dict[str, Any]) -> str:
    where = results["device"] + (f" ({results['isa']})" if results.get("isa") else "")
    lines = [f"Machine: {where}, {results.get('threads', '?')} threads, torch {results.get('torch')}, "
             f"{results['date']}", ""]  # fmt: skip
    lines += markdown_cpu(results)
    dec = results.get("decoding", [])
    if dec:
        baseline = "float16" if results.get("device_type", "cpu") == "cuda" else "float32"
        lines.append(
            f"Baseline: transformers `generate` in {baseline}, one segment at a time (what users' scripts do). "
            "'same batch' compares with transformers in the baseline dtype at the same batch size; "
            "'same dtype' with transformers using the same weights and batch size."
        )
        lines.append("")
        hf = {
            (r["model"], r["dtype"], r["batch"]): r["aggregate_steps_per_s"]
            for r in dec
            if r["engine"].startswith("transformers")
        }
        header = [
            "model",
            "engine",
            "dtype",
            "batch",
            "steps/s (aggregate)",
            "s per 30 s audio",
            "RTF",
            "x baseline",
            "x same batch",
            "x same dtype",
            "peak RSS MB",
            "peak VRAM MB",
        ]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in dec:
            speed = r["aggregate_steps_per_s"]

            def ratio(key: tuple[str, str, int], speed: float = speed) -> str:
                return f"{speed / hf[key]:.2f}" if key in hf else ""

            cells = [
                r["model"],
                r["engine"],
                r["dtype"],
                r["batch"],
                speed,
                r["s_per_30s_audio"],
                r["real_time_factor"],
                ratio((r["model"], baseline, 1)),
                ratio((r["model"], baseline, r["batch"])),
                ratio((r["model"], r["dtype"], r["batch"])),
                r["peak_rss_mb"],
                r["peak_vram_mb"] or "-",
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
    codec = results.get("codec", [])
    if codec:
        lines += [
            "| EnCodec decode | mode | seconds | peak RSS MB | peak VRAM MB | error vs one-shot |",
            "|---|---|---|---|---|---|",
        ]
        for r in codec:
            lines.append(
                f"| {r['seconds_of_audio']:g} s | {r['mode']} | {r['seconds']} | {r['peak_rss_mb']} | "
                f"{r['peak_vram_mb'] or '-'} | {r.get('error_db_vs_one_shot', '')} |"
            )
        lines.append("")
    if "assembly" in results:
        a = results["assembly"]
        base = results.get("assembly_baseline")
        title = f"Assembly DSP, {a['seconds_of_audio']:g} s stereo at {a['sample_rate']} Hz (warm"
        if base:
            lines += [
                f"{title}; this checkout and `{base['revision']}` in the same run):",
                "",
                f"| step | `{base['revision']}` (s) | now (s) |",
                "|---|---|---|",
            ]
            for k, v in a["timings_s"].items():
                lines.append(f"| {k} | {base['timings_s'].get(k, '-')} | {v} |")
            lines.append(f"| **total** | **{base['total_s']}** | **{a['total_s']}** |")
            if "master_s" in a:
                row = "master (normalise to -14 LUFS, limit to -1 dBTP)"
                lines.append(f"| {row} | {base.get('master_s', '-')} | {a['master_s']} |")
            lines.append("")
        else:
            lines += [
                f"{title}): {a['total_s']} s in all ("
                + ", ".join(f"{k} {v} s" for k, v in a["timings_s"].items())
                + f"); master {a.get('master_s', '-')} s",
                "",
            ]
    if "render" in results:
        r = results["render"]
        lines += [
            f"Full render of {r['arrangement']} ({r['models']} models, {r['length_s']} s track): {r['total_s']} s "
            f"(generation {r['generation_s']} s, assembly and export {r['assembly_and_export_s']} s)"
        ]
        for p in r["phases"]:
            lines.append(
                f"- phase {p['model']}: {p['segments']} segments, {p['seconds']} s, peak RSS {p['peak_rss_mb']} MB, "
                f"peak VRAM {p['peak_vram_mb'] or '-'} MB"
            )
    return "\n".join(lines)


def write_footprints(results: dict[str, Any], device: str, source: Path) -> None:
    """Record what `compose plan` should assume for this device (composer/plan/footprints.json)."""
    from composer.plan.estimate import FOOTPRINTS

    if not results.get("decoding") and not results.get("cpu_decoding") and not results.get("codec"):
        return
    data = json.loads(FOOTPRINTS.read_text()) if FOOTPRINTS.exists() else {}
    per_model = data.setdefault(device, {})
    for row in results.get("decoding", []):  # CUDA: the graph loop in float16
        if row["engine"] == GRAPH_ENGINE and row["batch"] == 1 and row["dtype"] == "float16":
            per_model.setdefault(row["model"], {})["steps_per_s"] = row["steps_per_s"]
    for part in results.get("cpu_decoding", []):  # CPU: the tuner's choice at batch 1
        tuner = part["tuner"]
        for row in part["rows"]:
            chosen = row.get("variant", "").split(" ")[0] == f"{tuner['kernel']}/{tuner['rows']}"
            if row["engine"] == "composer fast loop" and chosen and row["batch"] == 1:
                per_model.setdefault(part["model"], {})["steps_per_s"] = row["aggregate_steps_per_s"]
    one_shot_30 = [r for r in results.get("codec", []) if r["seconds_of_audio"] == 30.0 and r["mode"] == "chunked"]
    for entry in per_model.values():
        if one_shot_30:
            entry["decode_s_per_30s"] = one_shot_30[0]["seconds"]
    root = RESULTS.parent.parent
    where = str(source.relative_to(root)) if source.is_relative_to(root) else str(source)
    sources = data.setdefault("sources", {})
    if not isinstance(sources.get(device), dict):  # older files named one source per device
        sources[device] = {"decoding": sources[device], "codec": sources[device]} if device in sources else {}
    for section in ("decoding", "codec"):
        if results.get(section) or (section == "decoding" and results.get("cpu_decoding")):
            sources[device][section] = where
    FOOTPRINTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="fewer frames and shorter codec runs")
    parser.add_argument("--only", choices=["decoding", "codec", "assembly", "render"], action="append")
    parser.add_argument("--medium", action="store_true", help="also decode at medium shapes (slow on CPU)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--baseline", metavar="REV", help="also time the assembly DSP of git revision REV, same run")
    parser.add_argument("--report", type=Path, help="print the Markdown tables of a results file and exit")
    args = parser.parse_args(argv)
    if args.report:
        print(markdown(json.loads(args.report.read_text())))
        return
    cuda = args.device == "cuda"
    only = set(args.only or ["decoding", "codec", "assembly", "render"])
    machine = socket.gethostname().split(".")[0] if cuda else f"cpu{torch.get_num_threads()}-{cpu_kind()}"
    results: dict[str, Any] = {
        "machine": machine,
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "date": dt.date.today().isoformat(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
    }
    frames = (1500 if not args.quick else 250) if cuda else (100 if not args.quick else 20)
    if not cuda:
        from composer.engine.tune import isa_summary
        from composer.engine.tune import machine as cpu_facts

        facts = cpu_facts()
        results |= {"device": facts["cpu"], "isa": isa_summary(), "flags_sha1": facts["flags"],
                    "onednn": facts["onednn"], "memory_read_gbs": stream_bandwidth_gbs()}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{machine}-{results['date']}{'-quick' if args.quick else ''}.json"
    earlier = json.loads(path.read_text()) if path.exists() and args.only else {}

    def save() -> None:  # after every section: a crash late in a long run keeps what was measured
        path.write_text(json.dumps(earlier | results, indent=2) + "\n")

    if "decoding" in only and cuda:
        batches = [1, 4, 5, 8] if not args.quick else [1, 4]
        results["decoding"] = bench_decoding("small", args.device, frames, batches, ["float16"])
        results["decoding"] += bench_decoding("medium", args.device, frames, [1, 4], ["float16"])
    elif "decoding" in only:
        batches = [1, 4, 8] if not args.quick else [1, 4]
        long_frames = 1500 if not args.quick else 60
        results["cpu_decoding"] = [bench_cpu_decoding("small", frames, batches, long_frames)]
        if args.medium:
            results["cpu_decoding"].append(bench_cpu_decoding("medium", frames // 2, [1, 4], long_frames, False))
    save()
    if "codec" in only:
        results["codec"] = bench_codec(args.device, [30.0, 60.0, 120.0] if not args.quick else [30.0, 60.0])
        save()
    if "assembly" in only:
        if args.baseline:
            results["assembly_baseline"] = bench_assembly_at(args.baseline)
        results["assembly"] = bench_assembly()
        save()
    if "render" in only:
        results["render"] = bench_render(args.device, "random" if cuda else "tiny")
    save()
    results = earlier | results  # a partial rerun updates its sections of the day's file
    print(f"\nwrote {path}\n")
    if not args.quick:  # a smoke run's numbers are not what `compose plan` should assume
        write_footprints(results, args.device, path)
    print(markdown(results))


if __name__ == "__main__":
    main()
