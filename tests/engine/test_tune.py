"""The CPU tuner (issue #18): which kernel it keeps from measurements, what it caches, what records say.

The decision is tested on made-up timings (it must not depend on how fast this machine is); the
measuring and caching run for real at a small shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from composer.engine import tune
from composer.engine.kernels import CHUNKS, KERNEL_VERSION
from composer.engine.tune import TUNING_FILE, Choice, DecoderShape, choose_kernel, decide, score, stamp
from composer.settings import Settings


def m(batch1_ms: float, batch_ms: float, invariant: bool = True, available: bool = True) -> dict[str, object]:
    """One variant's measurement: step times at batch 1 and for 4 segments (ms)."""
    return {"available": available, "invariant": invariant, "pad": "whole", "batch1_s": batch1_ms / 1000,
            "batch_s": batch_ms / 1000, "batch": 4}  # fmt: skip


def test_the_least_time_per_segment_wins() -> None:
    # the AMX Xeon of docs/benchmarks.md: bf16/16 is as fast at batch 1 as bf16/2 and far faster batched
    xeon = {"float32/2": m(67.2, 188.8), "float32/16": m(99.9, 101.0), "bfloat16/2": m(35.8, 99.1),
            "bfloat16/16": m(36.2, 36.2), "float16/2": m(56.3, 169.7), "float16/16": m(83.7, 83.0)}  # fmt: skip
    assert decide(xeon) == ("bfloat16", 16, True)
    assert score(xeon["bfloat16/16"]) == pytest.approx(0.0362 + 0.0362 / 4)
    # no bf16 or fp16 instructions: fp32 in 2-row chunks, 70 + 190 / 4 = 117.5 ms against 100 + 110 / 4
    avx2 = {"float32/2": m(70, 190), "float32/16": m(100, 110), "bfloat16/2": m(150, 500),
            "bfloat16/16": m(160, 170), "float16/2": m(0, 0, available=False),
            "float16/16": m(0, 0, available=False)}  # fmt: skip
    assert decide(avx2) == ("float32", 2, True)


def test_a_faster_kernel_that_varies_is_not_chosen() -> None:
    measured = {"float32/16": m(100, 110), "float16/16": m(40, 45, invariant=False), "bfloat16/16": m(90, 95)}
    assert decide(measured) == ("bfloat16", 16, True)
    # none invariant: the fastest, and the choice says so (its numerics then name the thread count)
    varying = {k: m(v["batch1_s"] * 1000, v["batch_s"] * 1000, invariant=False) for k, v in measured.items()}  # type: ignore[operator]
    assert decide(varying) == ("float16", 16, False)
    assert decide({}) == ("float32", 16, False) and decide({"float16/16": m(1, 1, available=False)})[0] == "float32"


def test_ties_go_to_the_faster_one_alone_then_the_candidate_order() -> None:
    within_3_percent = {"float16/16": m(50, 116), "bfloat16/16": m(52, 100)}  # 79 and 77 ms per segment
    assert decide(within_3_percent) == ("float16", 16, True)  # 77 * 1.03 > 79: faster at batch 1 wins
    apart = {"float16/16": m(50, 140), "bfloat16/16": m(52, 100)}  # 85 against 77: more than 3%
    assert decide(apart) == ("bfloat16", 16, True)
    equal = {"float16/2": m(50, 100), "bfloat16/2": m(50, 100), "bfloat16/16": m(50, 100)}
    assert decide(equal) == ("bfloat16", 16, True)  # bf16 before fp16, the larger chunk before the smaller


def test_numerics_name_what_decides_the_tokens() -> None:
    import torch

    build = f"{tune.isa_tag()}-dnnl{tune.machine()['onednn']}"  # the CPU class and the oneDNN build
    assert tune.isa_tag() in ("amx", "avx512fp16", "avx512bf16", "avx512", "avx2") or "avx2" not in tune.isa_summary()
    invariant = Choice("bfloat16", True, False, 16, "tuned", {})
    assert invariant.numerics == f"cpu-bfloat16-r16-k{KERNEL_VERSION}-{build}"
    varying = Choice("float16", False, True, 2, "set", {})
    assert varying.numerics == f"cpu-float16-r2-k{KERNEL_VERSION}-{build}-t{torch.get_num_threads()}"
    note = stamp(Choice("float32", True, True, 16, "tuned", {"float32/16": m(10, 20), "int8/16": {"available": False}}))
    assert note == {"kernel": "float32", "rows": 16, "numerics": f"cpu-float32-r16-k{KERNEL_VERSION}-{build}",
                    "chosen": "tuned", "ms_per_step": {"float32/16": {"batch_1": 10.0, "batch_4": 20.0}}}  # fmt: skip


SHAPE = DecoderShape(hidden=64, ffn=128, layers=2, codebooks=4, vocab=64)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    from composer.settings import load_settings

    return load_settings(env={"COMPOSER_CACHE_DIR": str(tmp_path), "COMPOSER_DEVICE": "cpu"})


def test_tuned_once_per_machine_and_shape_then_cached(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    first = choose_kernel(SHAPE, settings)
    assert first.how == "tuned" and first.rows in CHUNKS and first.kernel in tune.CANDIDATES
    data = json.loads((settings.cache_dir / TUNING_FILE).read_text())
    [(key, entry)] = data["entries"].items()
    assert key == tune.tuning_key(SHAPE, tune.TUNE_BATCH) and tune.machine()["cpu"] in key and SHAPE.label in key
    assert entry["kernel"] == first.kernel and set(entry["measured"]) == {
        f"{k}/{r}" for k in tune.CANDIDATES for r in CHUNKS
    }

    def no_measuring(*args: object, **kw: object) -> None:
        raise AssertionError("measured again although the tuning is cached")

    monkeypatch.setattr(tune, "measure", no_measuring)
    again = choose_kernel(SHAPE, settings)
    assert (again.how, again.kernel, again.rows, again.numerics) == ("cached", first.kernel, first.rows, first.numerics)
    other = DecoderShape(hidden=32, ffn=64, layers=1, codebooks=4, vocab=64)
    with pytest.raises(AssertionError, match="measured again"):  # another shape is another entry
        choose_kernel(other, settings)


def test_a_damaged_or_unwritable_tuning_file_tunes_again(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = {f"{k}/{r}": m(10 + r, 20 + r) for k in tune.CANDIDATES for r in CHUNKS}  # float32/2 is fastest
    monkeypatch.setattr(tune, "measure", lambda shape, batch: fake)
    path = settings.cache_dir / TUNING_FILE
    path.write_text("{not json")
    choice = choose_kernel(SHAPE, settings)
    assert (choice.how, choice.kernel, choice.rows) == ("tuned", "float32", 2)
    assert json.loads(path.read_text())["version"] == tune.TUNE_VERSION
    path.unlink()
    path.mkdir()  # cannot be written as a file: a warning, and the choice is still made
    assert choose_kernel(SHAPE, settings).kernel == "float32"
    assert "could not save the CPU tuning" in caplog.text


def test_an_explicit_kernel_uses_its_measured_chunk(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = {f"{k}/{r}": m(10, 20) for k in tune.CANDIDATES for r in CHUNKS} | {"float16/2": m(30, 90)}
    monkeypatch.setattr(tune, "measure", lambda shape, batch: fake)
    choose_kernel(SHAPE, settings)  # tuned: everything measured
    chosen = choose_kernel(SHAPE, settings.with_(cpu_dtype="float16"))
    assert (chosen.kernel, chosen.rows, chosen.how, chosen.measured) == ("float16", 16, "set", {})
    fresh = choose_kernel(SHAPE, settings.with_(cpu_dtype="bfloat16", cache_dir=settings.cache_dir / "elsewhere"))
    assert (fresh.kernel, fresh.rows) == ("bfloat16", 16)  # not measured there: the default chunk, probed


def test_a_new_tuning_replaces_the_choice_in_a_running_process(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-lived process (a service, a cluster's driver) plans with the tuning in the file, also after
    `compose models tune` measured again here or elsewhere: otherwise its plans name other numerics
    than its cluster's actors, which read the file, and every segment is refused."""
    from composer.engine.models import cpu_choice

    fake = {f"{k}/{r}": m(10 + r, 20 + r) for k in tune.CANDIDATES for r in CHUNKS}  # float32/2 is fastest
    monkeypatch.setattr(tune, "measure", lambda shape, batch: fake)
    assert (cpu_choice(SHAPE, settings).kernel, cpu_choice(SHAPE, settings).rows) == ("float32", 2)
    fake["bfloat16/8"] = m(5, 5)  # measured again (another process, or `compose models tune`)
    choose_kernel(SHAPE, settings, force=True)
    again = cpu_choice(SHAPE, settings)
    assert (again.kernel, again.rows, again.how) == ("bfloat16", 8, "cached")


def test_the_probe_catches_a_product_that_rounds_with_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    from composer.engine import kernels

    shapes = [(48, 32), (32, 48), (64, 32)]
    assert kernels.probe("float32", shapes, [1, 2], pad="whole", rows=2)["invariant"]
    built: list[int] = []
    real_init, real_chunk = kernels.Linear.__init__, kernels.Linear._chunk

    def init(self: kernels.Linear, weight: object, kernel: str, pad: str = "whole", rows: int = kernels.ROWS) -> None:
        built.append(rows)
        real_init(self, weight, kernel, pad, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(kernels.Linear, "__init__", init)
    assert kernels.probe("float32", shapes, [1], pad="none", rows=2)["invariant"]
    assert built == [2, 2, 2], "every shape probed at the chunk size asked for"

    def rounds_with_rows(self: kernels.Linear, x: object) -> object:
        out = real_chunk(self, x)  # type: ignore[arg-type]
        return out + 1e-6 * out.shape[0]  # type: ignore[attr-defined]  # like a blocking chosen by row count

    monkeypatch.setattr(kernels.Linear, "_chunk", rounds_with_rows)
    unpadded = kernels.probe("float32", shapes, [1], pad="none", rows=16)
    assert not unpadded["invariant"] and any("rows" in f or "batched" in f for f in unpadded["failures"])
    assert kernels.probe("float32", shapes, [1], pad="whole", rows=16)["invariant"], "padded chunks all have 16 rows"


def test_attention_is_the_usual_attention_and_the_probe_catches_one_that_rounds_by_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """fp32 attention runs unfused on the CPU (the fused kernel rounded by thread on an AVX-512 EPYC):
    it must still be scaled dot-product attention, and the tuner's probe must refuse one that varies."""
    import torch
    import torch.nn.functional as F

    from composer.engine import kernels

    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(3, 4, n, 16, generator=gen) for n in (1, 40, 40))
    mask = (torch.arange(40) <= torch.tensor([10, 25, 39])[:, None]).view(3, 1, 1, 40)
    expected = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask).float()
    assert torch.allclose(kernels.attention(q, k, v, mask), expected, atol=1e-5)
    qc = torch.randn(3, 4, 40, 16, generator=gen)
    expected = F.scaled_dot_product_attention(qc.double(), k.double(), v.double(), is_causal=True).float()
    assert torch.allclose(kernels.attention(qc, k, v, causal=True), expected, atol=1e-5)

    assert kernels.probe_attention("float32", [1, 2]) == []
    real = kernels.attention

    def by_thread(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: object = None, causal: bool = False):  # type: ignore[no-untyped-def]
        return real(q, k, v, mask, causal) + 1e-6 * torch.get_num_threads()  # type: ignore[arg-type]

    monkeypatch.setattr(kernels, "attention", by_thread)
    failures = kernels.probe_attention("float32", [1, 2])
    assert failures and all("2 thread(s)" in f for f in failures)
    assert not tune.probe_variant("float32", [(32, 32)], [1, 2], rows=2)[0], "the tuner refuses such a kernel"


@pytest.mark.parametrize(
    ("pad", "sizes"),
    [("whole", [16, 16, 16, 16, 16, 32, 32]), ("pow2", [2, 2, 4, 8, 16, 18, 20]), ("none", [1, 2, 3, 5, 16, 17, 19])],
)
def test_the_last_chunk_is_padded_as_asked(monkeypatch: pytest.MonkeyPatch, pad: str, sizes: list[int]) -> None:
    """Rows 1, 2, 3, 5, 16, 17, 19 in 16-row chunks: what the kernel is given, and each row's result."""
    import torch

    from composer.engine import kernels

    given: list[int] = []
    real_chunk = kernels.Linear._chunk

    def spy(self: kernels.Linear, x: torch.Tensor) -> torch.Tensor:
        given.append(x.shape[0])
        return real_chunk(self, x)

    monkeypatch.setattr(kernels.Linear, "_chunk", spy)
    weight = torch.randn(24, 8)
    lin = kernels.Linear(weight, "float32", pad=pad, rows=16)
    for m, size in zip([1, 2, 3, 5, 16, 17, 19], sizes, strict=True):
        given.clear()
        x = torch.randn(m, 8)
        out = lin(x)
        assert out.shape == (m, 24) and sum(given) == size == lin.padded(m), (m, given)
        assert torch.allclose(out, x @ weight.T, atol=1e-5)
    with pytest.raises(ValueError, match="padding"):
        kernels.Linear(weight, "float32", pad="half")


def test_the_probe_pads_a_chunk_only_as_little_as_the_kernel_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that rounds one row alone otherwise (a matrix-vector path) gets power-of-two padding; one
    that rounds by every row count gets whole chunks; an exact one none; 2-row chunks never pow2."""
    from composer.engine import kernels

    shapes = [(48, 32), (32, 48)]

    def rounding(bias: Any) -> None:
        def chunk(self: kernels.Linear, x: Any) -> Any:  # each row on its own, then the kernel's quirk
            return (x[:, None, :] * self.dense()[None]).sum(-1) + bias(x.shape[0])

        monkeypatch.setattr(kernels.Linear, "_chunk", chunk)

    rounding(lambda m: 0.0)
    assert tune.probe_variant("float32", shapes, [1, 2], 16)[:2] == (True, "none")
    rounding(lambda m: 1e-3 * (m == 1))
    assert tune.probe_variant("float32", shapes, [1, 2], 16)[:2] == (True, "pow2")
    assert tune.probe_variant("float32", shapes, [1, 2], 2)[:2] == (True, "whole")
    rounding(lambda m: 1e-3 * m)
    assert tune.probe_variant("float32", shapes, [1, 2], 16)[:2] == (True, "whole")


def test_a_busy_spell_does_not_decide_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variants are timed in turns, each once a round, and each keeps its best round: a spell of other
    work on the machine that doubles the time taken for a while slows one round of the variant then
    running, not all of its timings (a medium tuning on a busy EPYC put bfloat16/2 ahead so)."""
    true_ms = {("bfloat16", 16): (20.0, 21.0), ("bfloat16", 2): (19.0, 43.0)}  # per segment 25.25 vs 29.75
    calls: list[tuple[str, int]] = []

    def timing(kernel: str, shape: DecoderShape, rows: list[int], pad: str = "whole", repeats: int = 3,
               chunk: int = 16) -> dict[int, float]:  # fmt: skip
        calls.append((kernel, chunk))
        busy = 2.0 if len(calls) == 1 else 1.0  # the first timing runs beside other work
        one, batched = true_ms[(kernel, chunk)]
        return {rows[0]: busy * one / 1000, rows[1]: busy * batched / 1000}

    monkeypatch.setattr(tune, "time_products", timing)
    monkeypatch.setattr(tune, "probe_variant", lambda kernel, shapes, counts, rows: (True, "whole", []))
    monkeypatch.setattr(tune, "packing_available", lambda kernel: True)
    measured = tune.measure(SHAPE, 4, candidates=("bfloat16",), chunks=(16, 2))
    assert calls == [("bfloat16", 16), ("bfloat16", 2)] * tune.TIMING_ROUNDS, "in turns, not one after the other"
    assert measured["bfloat16/16"]["batch1_s"] == 0.02 and measured["bfloat16/2"]["batch_s"] == 0.043
    assert decide(measured)[:2] == ("bfloat16", 16)
