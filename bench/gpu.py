"""The prepared GPU check: everything composer claims for a GPU, measured side by side in one run.

    bench/gpu_check.sh                      # on a bare GPU machine: wheels, pytest -m gpu, then this
    python -m bench.gpu --device cuda       # this part alone
    python -m bench.gpu --quick --device cpu --out /tmp/x   # the same code paths at tiny sizes (tested)

Measured (random weights at the real shapes; nothing to download):

1. decoding, 30 s (1500 frames), musicgen-small and -medium, batch 1 and 5: composer's loop with the
   CUDA-graph step and eager, then transformers' ``generate`` with the checkpoint's fp32 weights (its
   default) and in fp16; wall seconds, steps/s, peak VRAM allocated and reserved;
2. EnCodec decode of 30/60/120 s, one-shot against chunked: seconds and peak VRAM;
3. a full ``compose render arrangements/ebm_set.yaml --models random`` with the process held to
   10 GiB of the card (an RTX 3080's memory): it must complete; peak VRAM and seconds per phase;
4. where a target is missed, a profile of 30 eager steps says where a step's time goes.

Every section is written to the results file as soon as it is measured, so a run cut short still
leaves what it measured. Work is ordered by what matters most when time runs out (``--budget-s``):
composer's rows, the render under the cap, the codec, then the transformers baselines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.run import TEXT, peaks, reset_peaks, timed

RESULTS = Path(__file__).resolve().parent / "results"
CAP_GIB = 10.0  # an RTX 3080
TARGETS = {
    "small_graph_b1_30s_s": 1.5,
    "small_graph_vs_transformers_default_b1": 8.0,
    "medium_graph_b1_30s_s": 4.0,
    "render_peak_vram_gb": 6.0,
    "chunked_decode_vram_growth_120s_vs_30s": 0.10,
}


class Run:
    """The results of one check, saved after every section."""

    def __init__(self, path: Path, started: float, budget_s: float):
        self.path = path
        self.started = started
        self.budget_s = budget_s
        self.data: dict[str, Any] = {}

    def left_s(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    def save(self, section: str, value: Any) -> None:
        self.data[section] = value
        self.data["elapsed_s"] = round(time.perf_counter() - self.started, 1)
        self.path.write_text(json.dumps(self.data, indent=2) + "\n")


def vram(device: str) -> dict[str, float | None]:
    """Peak RSS and VRAM (allocated and reserved) since the last reset."""
    out: dict[str, float | None] = dict(peaks(device))
    if device == "cuda":
        import torch

        out["peak_vram_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    return out


def settings_for(source: str, device: str, cache: Path) -> Any:
    from composer.settings import load_settings

    env = {"COMPOSER_MODELS": source, "COMPOSER_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1",
           "COMPOSER_DEVICE": device, "COMPOSER_STYLES_DIR": str(Path("styles").resolve())}  # fmt: skip
    return load_settings(env=env)


# -- decoding ---------------------------------------------------------------------------------
SLOWER_THAN_GRAPH = {"composer eager": 8.0, "transformers generate": 10.0}  # per row, from the H200 run


def decode_rows(alias: str, settings: Any, frames: int, batches: list[int], run: Run, engines: list[str]) -> None:
    """Time ``engines`` ("composer graph", "composer eager", "transformers generate") on one model.

    Each row is saved as soon as it is measured (into ``decoding_<alias>``, after the rows of earlier
    calls); a row whose expected time (from this model's graph row) exceeds the time left is recorded
    as skipped, so a run cut short by its budget still says what it left out.
    """
    import torch

    from composer.engine.factory import wrap
    from composer.engine.models import load_model
    from composer.engine.reference import capture_codes
    from composer.engine.types import Request

    device = settings.device
    lm = load_model(alias, settings)
    rows: list[dict[str, Any]] = run.data.setdefault(f"decoding_{alias}", [])
    graph_s = next((r["seconds"] for r in rows if r.get("engine") == "composer graph" and "seconds" in r), None)

    def fits(engine: str, dtype: str, batch: int) -> bool:
        expected = graph_s * SLOWER_THAN_GRAPH[engine] if graph_s and engine in SLOWER_THAN_GRAPH else 0.0
        if run.left_s() >= expected + 20:
            return True
        rows.append({"model": alias, "engine": engine, "dtype": dtype, "batch": batch,
                     "skipped": f"budget: {run.left_s():.0f} s left, about {expected:.0f} s expected"})  # fmt: skip
        run.save(f"decoding_{alias}", rows)
        return False

    def record(engine: str, dtype: str, batch: int, seconds: float) -> None:
        steps = frames + lm.spec.codebooks // lm.spec.channels - 1
        row = {"model": alias, "engine": engine, "dtype": dtype, "batch": batch, "frames": frames,
               "seconds": round(seconds, 3), "steps_per_s": round(steps / seconds, 2),
               "s_per_30s_audio_per_segment": round(seconds / batch * 1500 / frames, 3)} | vram(device)  # fmt: skip
        rows.append(row)
        run.save(f"decoding_{alias}", rows)
        print(f"  {alias} {engine} {dtype} x{batch}: {row['seconds']} s ({row['steps_per_s']} steps/s)", flush=True)

    def composer(mode: str, batch: int) -> float:
        engine = wrap("fast", lm, mode)
        requests = [Request(TEXT, frames / 50, seed=i) for i in range(batch)]
        engine.generate(requests[:1])  # warm-up: kernels, graph pool, workspace
        reset_peaks(device)
        seconds, _ = timed(device, lambda: engine.generate_tokens(requests))
        return seconds

    dtype = str(lm.dtype).replace("torch.", "")
    for engine in (e for e in engines if e.startswith("composer")):
        mode = engine.split()[1]
        for batch in batches:
            if fits(engine, dtype, batch):
                record(engine, dtype, batch, composer(mode, batch))
                rows[-1]["numerics"] = lm.numerics
                run.save(f"decoding_{alias}", rows)

    def transformers(batch: int) -> float:
        inputs = lm.tokenizer(text=[TEXT] * batch, padding=True, return_tensors="pt").to(lm.device)
        steps = frames + 3
        with capture_codes(lm), torch.inference_mode():
            lm.model.generate(**inputs, max_new_tokens=4)  # warm-up
            reset_peaks(device)
            return timed(device, lambda: lm.model.generate(**inputs, max_new_tokens=steps))[0]

    if "transformers generate" in engines:
        for weights in ("float32", "float16"):  # fp32: what the checkpoint loads as by default
            lm.model.decoder.to(getattr(torch, weights))
            for projection in ("enc_to_dec_proj", "audio_enc_to_dec_proj"):
                if hasattr(lm.model, projection):
                    getattr(lm.model, projection).to(getattr(torch, weights))
            for batch in batches if alias == "small" else batches[:1]:
                if fits("transformers generate", weights, batch):
                    record("transformers generate", weights, batch, transformers(batch))
    lm.unload()


# -- codec ------------------------------------------------------------------------------------
def codec_rows(settings: Any, durations: list[float]) -> list[dict[str, Any]]:
    from composer.engine.codec import decode_tokens
    from composer.engine.models import load_model

    lm = load_model("small", settings)
    lm.model.decoder.to("cpu")  # only the codec is measured
    device = settings.device
    decode_tokens(lm, np.zeros((4, 50), np.int64), chunk_s=None)
    out = []
    for seconds in durations:
        codes = np.random.default_rng(0).integers(0, 2048, (4, int(seconds * 50)))
        for mode, chunk in (("one-shot", None), ("chunked", 10.0)):
            reset_peaks(device)
            took, _ = timed(device, lambda chunk=chunk, codes=codes: decode_tokens(lm, codes, chunk_s=chunk))
            out.append({"seconds_of_audio": seconds, "mode": mode, "seconds": round(took, 3)} | vram(device))
            print(f"  codec {seconds:g} s {mode}: {out[-1]['seconds']} s, {out[-1]['peak_vram_mb']} MB", flush=True)
    lm.unload()
    return out


# -- render under the cap ---------------------------------------------------------------------
def render_capped(settings: Any, cap_gib: float, out_dir: Path, arrangement: Path) -> dict[str, Any]:
    import torch

    from bench.run import bench_render_with

    capped = settings.device == "cuda"
    if capped:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gib * 2**30 / total))
    try:
        result = bench_render_with(settings, out_dir, arrangement)
    finally:
        if capped:
            torch.cuda.set_per_process_memory_fraction(1.0)
    phases = result["phases"]
    result["cap_gib"] = cap_gib if capped else None
    vrams = [p["peak_vram_mb"] for p in phases if p.get("peak_vram_mb") is not None]
    result["peak_vram_mb"] = max(vrams) if vrams else None
    return result


# -- profile ----------------------------------------------------------------------------------
def profile_step(alias: str, settings: Any, steps: int = 30) -> list[dict[str, Any]]:
    """Where one eager decode step's time goes: the top operators over ``steps`` steps."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from composer.engine.factory import wrap
    from composer.engine.models import load_model
    from composer.engine.types import Request

    lm = load_model(alias, settings)
    engine = wrap("fast", lm, "eager")
    request = Request(TEXT, steps / 50, seed=1)
    engine.generate([request])
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if settings.device == "cuda" else [])
    with profile(activities=activities) as prof:
        engine.generate([request])
        if settings.device == "cuda":
            torch.cuda.synchronize()
    events = prof.key_averages()
    key = "self_cpu_time_total"
    if settings.device == "cuda":  # renamed from self_cuda_time_total in newer torch
        key = "self_device_time_total" if hasattr(events[0], "self_device_time_total") else "self_cuda_time_total"
    table = []
    for event in sorted(events, key=lambda e: getattr(e, key, 0), reverse=True)[:15]:
        table.append({"op": event.key, "calls": event.count, "self_ms": round(getattr(event, key, 0) / 1000, 3)})
    lm.unload()
    return table


# -- targets ----------------------------------------------------------------------------------
def verdicts(data: dict[str, Any]) -> dict[str, Any]:
    """Each target with the measured value (None where it was not measured)."""

    def row(alias: str, engine: str, batch: int, dtype: str | None = None) -> dict[str, Any] | None:
        for r in data.get(f"decoding_{alias}", []):
            if r.get("engine") == engine and r.get("batch") == batch and (dtype is None or r.get("dtype") == dtype):
                return r if "seconds" in r else None
        return None

    small = row("small", "composer graph", 1)
    medium = row("medium", "composer graph", 1)
    default = row("small", "transformers generate", 1, "float32")
    codec = {(c["seconds_of_audio"], c["mode"]): c for c in data.get("codec", [])}
    growth = None
    if (30.0, "chunked") in codec and (120.0, "chunked") in codec:
        a, b = codec[(30.0, "chunked")]["peak_vram_mb"], codec[(120.0, "chunked")]["peak_vram_mb"]
        growth = None if not a or b is None else round(b / a - 1, 3)
    measured = {
        "small_graph_b1_30s_s": small and small["s_per_30s_audio_per_segment"],
        "small_graph_vs_transformers_default_b1": small and default and round(default["seconds"] / small["seconds"], 2),
        "medium_graph_b1_30s_s": medium and medium["s_per_30s_audio_per_segment"],
        "render_peak_vram_gb": (data.get("render") or {}).get("peak_vram_mb") and data["render"]["peak_vram_mb"] / 1024,
        "chunked_decode_vram_growth_120s_vs_30s": growth,
    }
    out = {}
    for name, target in TARGETS.items():
        value = measured[name]
        higher_is_better = name.endswith("_b1") and "vs" in name
        met = None if value is None else (value >= target if higher_is_better else value <= target)
        out[name] = {"target": target, "measured": value, "met": met}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny models and few frames: the code paths, fast")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or RESULTS))
    parser.add_argument("--budget-s", type=float, default=300.0, help="skip what would not fit in this time")
    parser.add_argument("--cache", type=Path, help="model cache (default: a temporary folder)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cuda = args.device == "cuda"
    name = torch.cuda.get_device_name().replace(" ", "-").lower() if cuda else "cpu"
    date = dt.date.today().isoformat()
    args.out.mkdir(parents=True, exist_ok=True)
    run = Run(args.out / f"gpu-{name}-{date}{'-quick' if args.quick else ''}.json", started, args.budget_s)
    source = "tiny" if args.quick else "random"
    frames = 20 if args.quick else 1500
    batches = [1, 2] if args.quick else [1, 5]
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp) / "models"
        settings = settings_for(source, args.device, cache)
        info: dict[str, Any] = {"device": name, "date": date, "torch": torch.__version__, "quick": args.quick,
                                "source": source, "frames": frames}  # fmt: skip
        if cuda:
            props = torch.cuda.get_device_properties(0)
            info |= {"capability": f"{props.major}.{props.minor}", "total_gb": round(props.total_memory / 1e9, 1)}
        run.save("machine", info)
        # Most telling first, so that a run cut short still has it: composer's own step on both models,
        # the render under the 10 GiB cap, the codec; then the slower rows it is compared with.
        first = ["composer graph"] if cuda else ["composer eager"]
        later = (["composer eager"] if cuda else []) + ["transformers generate"]
        for alias in ("small", "medium"):
            print(f"== decoding {alias}: {', '.join(first)}", flush=True)
            decode_rows(alias, settings, frames, batches, run, first)
        print("== render under the cap", flush=True)
        # quick: a 3-section arrangement of the test suite, the same code path in seconds
        arrangement = Path("tests/data/short.yaml" if args.quick else "arrangements/ebm_set.yaml")
        run.save("render", render_capped(settings, CAP_GIB, Path(tmp) / "render", arrangement))
        if run.left_s() > 45:
            print("== codec", flush=True)
            run.save("codec", codec_rows(settings, [1.0, 2.0, 4.0] if args.quick else [30.0, 60.0, 120.0]))
        for alias in ("small", "medium"):
            print(f"== decoding {alias}: {', '.join(later)}", flush=True)
            decode_rows(alias, settings, frames, batches, run, later)
        run.save("targets", verdicts(run.data))
        missed = [k for k, v in run.data["targets"].items() if v["met"] is False]
        if (missed or args.quick) and run.left_s() > 30:
            print("== profile (targets missed: %s)" % (", ".join(missed) or "none, quick mode"), flush=True)
            run.save("profile_small_eager", profile_step("small", settings, 10 if args.quick else 30))
    print(json.dumps(run.data["targets"], indent=2))
    print(f"wrote {run.path} in {time.perf_counter() - started:.0f} s")
    return run.data


if __name__ == "__main__":
    main()
