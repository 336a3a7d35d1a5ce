"""Which CPU kernel runs the LM decoder on this machine: measured here, cached, overridable.

What is fastest depends on the processor (AVX2, AVX-512, bf16 and fp16 instructions, AMX), the
memory bandwidth and the torch build, so composer does not guess: at the first use of a model shape
on a machine it times the products of a decode step for each candidate kernel (float32, bfloat16,
float16 weights; :mod:`composer.engine.kernels`) and chunk size at batch 1 and at the batch renders
use (in three rounds, each candidate once a round, its best round counting, so that a spell of other
work on the machine does not decide), checks with :func:`composer.engine.kernels.probe` that each
gives every row the same bits in any batch and on any thread count, and keeps the invariant one
with the least time per segment, batch 1 and batched counted alike (one ``compose generate``
matters as much as a render's batches). The
result is cached in the model cache (``composer-tuning.json``), keyed by processor, instruction set,
torch version and model shape, so each machine measures once. ``COMPOSER_CPU_DTYPE`` overrides the
choice; ``compose models tune`` measures again.

int8 weight-only is never chosen here: it is an explicit choice (``COMPOSER_CPU_DTYPE=int8``);
docs/benchmarks.md gives its measured fidelity against float32.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.engine.kernels import CHUNKS, KERNEL_VERSION, ROWS, Linear, packing_available, probe, probe_attention
from composer.fsutil import atomic_write_text, json_text

if TYPE_CHECKING:
    from composer.settings import Settings

log = logging.getLogger(__name__)

CANDIDATES: tuple[str, ...] = ("float32", "bfloat16", "float16")
TUNE_VERSION = 4  # bumped when a tuning recorded before would be wrong (3: the probe kept its chunk size, 4: paddings)
TUNE_BATCH = 4  # segments per batch the kernels are compared at (with batch 1): what renders run
TUNING_FILE = "composer-tuning.json"
WORKING_SET_BYTES = 1 << 29  # weights cycled through while timing: past the caches, like a real step
TIMING_ROUNDS = 3  # each variant is timed once a round, the rounds in turn; its best round counts


@dataclass(frozen=True)
class DecoderShape:
    """What decides a decode step's products: widths, depth, vocabulary."""

    hidden: int
    ffn: int
    layers: int
    codebooks: int
    vocab: int
    cross: bool = True  # cross-attention to the text (melody models prepend it instead)

    def products(self) -> list[tuple[int, int]]:
        """(out, in) of the products one layer runs per step (cross k/v run once per segment)."""
        d = self.hidden
        per_layer = [(3 * d, d), (d, d), (self.ffn, d), (d, self.ffn)]
        return per_layer + ([(d, d), (d, d)] if self.cross else [])

    @property
    def label(self) -> str:
        return f"{self.hidden}x{self.layers} ffn {self.ffn} {self.codebooks}x{self.vocab}"


@dataclass(frozen=True)
class Choice:
    """The kernel for one model shape on this machine, and why."""

    kernel: str
    invariant: bool  # every row's bits independent of batch and thread count (probed)
    pad: str  # how the last row chunk is padded (kernels.PADDINGS): "whole" unless the probe showed no need
    rows: int  # rows per chunk
    how: str  # "tuned", "cached" or "set" (COMPOSER_CPU_DTYPE)
    measured: dict[str, Any]  # the timings and probes behind it (empty when set explicitly)

    @property
    def numerics(self) -> str:
        """What decides the tokens, for cache keys and records: the kernel, its chunk, the kernels'
        version, the class of instruction set oneDNN dispatches to and the oneDNN build, e.g.
        ``cpu-bfloat16-r16-k1-amx-dnnl3.12`` (another CPU class or torch build may round otherwise)."""
        base = f"cpu-{self.kernel}-r{self.rows}-k{KERNEL_VERSION}-{isa_tag()}-dnnl{machine()['onednn'] or 'none'}"
        return base if self.invariant else f"{base}-t{_threads()}"  # then the thread count decides too


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


# -- the machine ----------------------------------------------------------------------------------
@functools.cache
def machine() -> dict[str, str]:
    """Processor model, a digest of its instruction-set flags, and the torch build."""
    import torch

    model, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.processor(), platform.machine()):
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    found = re.search(r"(?:oneDNN|MKL-DNN) v([\d.]+)", torch.__config__.show())  # the build's own report
    onednn = found.group(1) if found else ""
    return {"cpu": model, "flags": hashlib.sha1(flags.encode()).hexdigest()[:12], "torch": torch.__version__,
            "onednn": str(onednn)}  # fmt: skip


@functools.cache
def isa_summary() -> str:
    """The vector and matrix extensions of this CPU that matter here (for records and benchmarks)."""
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_int8", "avx_vnni")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return " ".join(f for f in wanted if f in flags)


def isa_tag() -> str:
    """The class of vector/matrix instructions oneDNN's kernels use here, in one word: ``amx``,
    ``avx512fp16``, ``avx512bf16``, ``avx512``, ``avx2``, or the architecture name (ARM, older x86)."""
    flags = set(isa_summary().split())
    for flag, tag in (("amx_bf16", "amx"), ("avx512_fp16", "avx512fp16"), ("avx512_bf16", "avx512bf16"),
                      ("avx512f", "avx512"), ("avx2", "avx2")):  # fmt: skip
        if flag in flags:
            return tag
    return platform.machine().lower() or "cpu"


# -- the decision (pure) --------------------------------------------------------------------------
def variant(kernel: str, rows: int) -> str:
    """The name of a (kernel, chunk size) pair in measurements: ``bfloat16/16``."""
    return f"{kernel}/{rows}"


def score(m: dict[str, Any]) -> float:
    """Seconds of decoding per segment-step: batch 1 and the render batch weighed alike."""
    return float(m["batch1_s"] + m["batch_s"] / m["batch"])


def decide(measured: dict[str, dict[str, Any]]) -> tuple[str, int, bool]:
    """The kernel and chunk size to use from measurements: the least :func:`score` among those the
    probe found invariant (any, if none is); ties within 3% go to the faster one at batch 1.

    Args:
        measured: ``kernel/rows`` -> {"available": bool, "invariant": bool, "batch1_s": s,
            "batch_s": s, "batch": B}, step times in seconds for the whole step (the batch one for
            all B segments).

    Returns:
        (kernel, rows, invariant).
    """
    usable = {k: m for k, m in measured.items() if m.get("available") and m.get("batch_s")}
    if not usable:
        return "float32", ROWS, False
    pool = {k: m for k, m in usable.items() if m.get("invariant")} or usable
    best = min(score(m) for m in pool.values())
    close = [k for k, m in pool.items() if score(m) <= best * 1.03]

    def order(k: str) -> tuple[float, int, int]:
        kernel, rows = k.split("/")
        return pool[k]["batch1_s"], CANDIDATES.index(kernel) if kernel in CANDIDATES else 99, -int(rows)

    chosen = min(close, key=order)
    kernel, rows = chosen.split("/")
    return kernel, int(rows), bool(pool[chosen].get("invariant"))


# -- measuring ------------------------------------------------------------------------------------
def time_products(
    kernel: str, shape: DecoderShape, rows: list[int], pad: str = "whole", repeats: int = 3, chunk: int = ROWS
) -> dict[int, float]:
    """Seconds for the products of one decode step (all layers and the LM heads) at each row count.

    Random weights at ``shape``; when all layers would exceed :data:`WORKING_SET_BYTES`, as many
    layers as fit are cycled and the time scaled to the full depth. Best of ``repeats`` after a warm-up.
    """
    import torch

    gen = torch.Generator().manual_seed(0)
    per_layer = sum(n * k for n, k in shape.products()) * 4
    layers = max(1, min(shape.layers, WORKING_SET_BYTES // per_layer))
    built = []
    for _ in range(layers):
        built.append(
            [Linear(torch.randn(n, k, generator=gen) * k**-0.5, kernel, pad, chunk) for n, k in shape.products()]
        )
    heads = Linear(torch.randn(shape.codebooks * shape.vocab, shape.hidden, generator=gen), kernel, pad, chunk)
    dtype = heads.dtype
    out: dict[int, float] = {}

    def best_of(fn: Any) -> float:
        fn()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return best

    for count in rows:
        x = {w: torch.randn(count, w, generator=gen).to(dtype) for w in {shape.hidden, shape.ffn}}
        stack = best_of(lambda x=x: [lin(x[lin.in_features]) for layer in built for lin in layer])
        out[count] = stack * shape.layers / layers + best_of(lambda x=x: heads(x[shape.hidden]))
    return out


def probe_variant(
    kernel: str, shapes: list[tuple[int, int]], counts: list[int], rows: int
) -> tuple[bool, str, list[str]]:
    """(invariant, padding, failures) of a kernel and chunk size: chunks padded whole are probed first;
    where they are invariant, unpadded ones, then (chunks over 2 rows) ones padded to a power of two:
    the first of those that is invariant too gives the same bits with fewer rows computed."""
    failures = probe(kernel, shapes, counts, pad="whole", rows=rows)["failures"] + probe_attention(kernel, counts)
    if failures:
        return False, "whole", failures
    for pad in ("none", "pow2") if rows > 2 else ("none",):
        if probe(kernel, shapes, counts, pad=pad, rows=rows)["invariant"]:
            return True, pad, []
    return True, "whole", []


def measure(
    shape: DecoderShape, batch: int, candidates: tuple[str, ...] = CANDIDATES, chunks: tuple[int, ...] = CHUNKS
) -> dict[str, dict[str, Any]]:
    """Time and probe every candidate kernel and chunk size at ``shape`` (batch 1 and ``batch``
    segments, with guidance), keyed by :func:`variant`."""
    counts = sorted({1, 2, 3, 4, _threads()})
    shapes = sorted(set(shape.products()) | {(shape.codebooks * shape.vocab, shape.hidden)})
    results: dict[str, dict[str, Any]] = {}
    timed: list[tuple[str, str, int, str]] = []
    for kernel in candidates:
        for rows in chunks:
            name = variant(kernel, rows)
            if not packing_available(kernel):
                results[name] = {"available": False}
                continue
            invariant, pad, failures = probe_variant(kernel, shapes, counts, rows)
            results[name] = {"available": True, "invariant": invariant, "pad": pad, "failures": failures[:5],
                             "batch": batch}  # fmt: skip
            timed.append((name, kernel, rows, pad))
    for _ in range(TIMING_ROUNDS):  # round-robin: a busy spell slows one round of each, not every round of one
        for name, kernel, rows, pad in timed:
            times = time_products(kernel, shape, [2, 2 * batch], pad=pad, repeats=2, chunk=rows)
            for key, count in (("batch1_s", 2), ("batch_s", 2 * batch)):
                results[name][key] = round(min(results[name].get(key, float("inf")), times[count]), 5)
    for name, *_ in timed:
        log.info("tuning %s: %s", name, results[name])
    return results


# -- the cache ------------------------------------------------------------------------------------
def tuning_key(shape: DecoderShape, batch: int) -> str:
    m = machine()
    build = f"torch {m['torch']}|onednn {m['onednn']}|k{KERNEL_VERSION}"
    return f"{m['cpu']}|{m['flags']}|{build}|{shape.label}|batch {batch}"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("version") == TUNE_VERSION else {}


def _write(path: Path, data: dict[str, Any]) -> None:

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json_text(data, sort_keys=True) + "\n")


def choose_kernel(shape: DecoderShape, settings: Settings, force: bool = False) -> Choice:
    """The CPU kernel for ``shape``: ``COMPOSER_CPU_DTYPE`` when set, else the cached or a new tuning."""
    if settings.cpu_dtype != "auto":
        kernel = settings.cpu_dtype
        known = _read(settings.cache_dir / TUNING_FILE).get("entries", {}).get(tuning_key(shape, TUNE_BATCH))
        tried = {k: m for k, m in (known or {}).get("measured", {}).items() if k.startswith(f"{kernel}/")}
        tried = {k: m for k, m in tried.items() if m.get("available") and m.get("batch_s")}
        if tried:  # measured here: its better chunk size
            name = min(tried, key=lambda k: score(tried[k]))
            facts, rows = tried[name], int(name.split("/")[1])
        else:  # not measured here: probe it at the default chunk (fast), so the record says what it guarantees
            shapes = sorted(set(shape.products()) | {(shape.codebooks * shape.vocab, shape.hidden)})
            counts = sorted({1, 2, 3, 4, _threads()})
            facts = {"invariant": packing_available(kernel) and probe(kernel, shapes, counts)["invariant"],
                     "pad": "whole"}  # fmt: skip
            rows = ROWS
        return Choice(kernel, bool(facts.get("invariant")), str(facts.get("pad", "whole")), rows, "set", {})
    path = settings.cache_dir / TUNING_FILE
    data = _read(path) or {"version": TUNE_VERSION, "entries": {}}
    key = tuning_key(shape, TUNE_BATCH)
    entry = data["entries"].get(key)
    if entry is None or force:
        started = time.perf_counter()
        measured = measure(shape, TUNE_BATCH)
        kernel, rows, invariant = decide(measured)
        entry = {"kernel": kernel, "rows": rows, "invariant": invariant,
                 "pad": measured[variant(kernel, rows)].get("pad", "whole"),
                 "measured": measured, "threads": _threads(), "isa": isa_summary(),
                 "date": dt.date.today().isoformat(), "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
        data["entries"][key] = entry
        try:
            _write(path, data)
        except OSError as exc:  # a read-only cache: tune again next time rather than fail the render
            log.warning("could not save the CPU tuning to %s: %s", path, exc)
        how = "tuned"
    else:
        how = "cached"
    return Choice(entry["kernel"], bool(entry["invariant"]), str(entry.get("pad", "whole")), int(entry["rows"]), how,
                  entry["measured"])  # fmt: skip


def shape_of_config(config: dict[str, Any]) -> DecoderShape:
    """The decoder shape from a MusicGen checkpoint's config.json."""
    d = config.get("decoder", config)
    return DecoderShape(int(d["hidden_size"]), int(d["ffn_dim"]), int(d["num_hidden_layers"]),
                        int(d["num_codebooks"]), int(d["vocab_size"]),
                        cross=config.get("model_type") != "musicgen_melody")  # fmt: skip


def stamp(choice: Choice) -> dict[str, Any]:
    """What a record (manifest, generate's JSON) says about the kernel."""
    note: dict[str, Any] = {"kernel": choice.kernel, "rows": choice.rows, "numerics": choice.numerics,
                            "chosen": choice.how}  # fmt: skip
    if choice.measured:
        note["ms_per_step"] = {
            k: {"batch_1": round(m["batch1_s"] * 1000, 1), f"batch_{m['batch']}": round(m["batch_s"] * 1000, 1)}
            for k, m in choice.measured.items()
            if m.get("available")
        }
    return note
