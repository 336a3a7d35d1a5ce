"""GPU checks (run with `pytest -m gpu` on a CUDA machine; bench/gpu_check.sh runs them first).

Random weights at the real musicgen-small shapes, built into a temporary cache and loaded through the
normal path on the GPU in composer's dtype (bf16 on Ampere and newer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from composer.engine.factory import wrap
from composer.engine.fastloop import FastDecoder, Row
from composer.engine.models import LoadedModel, load_model
from composer.engine.types import Request, Sampling
from composer.settings import load_settings

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
TEXT = "dark industrial ebm, 128 bpm, analog bass sequence"


def load(cache: Path, dtype: str = "auto") -> LoadedModel:
    env = {"COMPOSER_CACHE_DIR": str(cache), "COMPOSER_MODELS": "random", "COMPOSER_DEVICE": "cuda",
           "HF_HUB_OFFLINE": "1", "COMPOSER_CUDA_DTYPE": dtype}  # fmt: skip
    return load_model("small", load_settings(env=env))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gpu-models")


@pytest.fixture(scope="module")
def small(cache: Path) -> LoadedModel:
    return load(cache)


def mixed_rows(greedy: bool) -> list[Row]:
    rng = np.random.default_rng(1)
    s = Sampling(greedy=greedy)
    return [Row(TEXT, np.zeros((4, 0), np.int64), 200, 1, s),
            Row("calm ambient drone", rng.integers(0, 2048, (4, 37)), 150, 2, s),
            Row(TEXT, rng.integers(0, 2048, (4, 5)), 90, 3, s)]  # fmt: skip


def test_dtype_follows_the_gpu(small: LoadedModel) -> None:
    major, _ = torch.cuda.get_device_capability()
    assert small.dtype == (torch.bfloat16 if major >= 8 else torch.float16)


@pytest.mark.parametrize("greedy", [True, False])
def test_captured_step_gives_the_eager_tokens(small: LoadedModel, greedy: bool) -> None:
    """A CUDA graph replays the eager kernels: the same tokens, greedy or sampled."""
    decoder = FastDecoder(small)
    eager = decoder.generate(mixed_rows(greedy), mode="eager")
    graph = decoder.generate(mixed_rows(greedy), mode="graph")
    for e, g in zip(eager, graph, strict=True):
        assert np.array_equal(e, g)


def test_a_segment_does_not_change_with_its_batch(small: LoadedModel) -> None:
    """If this fails on a GPU, docs/engine.md must stop claiming batch invariance there."""
    decoder = FastDecoder(small)
    rows = mixed_rows(greedy=False)
    batch = decoder.generate(rows, mode="graph")
    for r, got in zip(rows, batch, strict=True):
        assert np.array_equal(got, decoder.generate([r], mode="graph")[0])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_no_nan_over_a_30_s_generation(cache: Path, dtype: str) -> None:
    lm = load(cache, dtype)
    take = wrap("fast", lm, "graph").generate([Request(TEXT, 30.0, 7)])[0]
    assert take.tokens.shape == (4, 1500) and take.tokens.min() >= 0 and take.tokens.max() < 2048
    assert np.isfinite(take.audio).all() and np.abs(take.audio).max() > 0
    assert len(np.unique(take.tokens[0])) > 50, "sampling did not collapse to one code"
    lm.unload()


def test_memory_estimate_covers_the_measured_peak(small: LoadedModel) -> None:
    """What a generation adds to the memory already held (weights, earlier graphs) is within the estimate.

    The estimate leaves out the weights (``MemoryNeed.weights`` is 0 for a loaded model), so the peak is
    measured above what was allocated before the call. On an H200 (2026-12-04) batch 1/3/5 at 30 s
    grew 251/827/1403 MiB against estimates of 713/1337/1961 MiB.
    """
    engine = wrap("fast", small, "graph")
    requests = [Request(TEXT, 30.0, i) for i in range(3)]
    engine.generate(requests[:1])  # kernels and workspaces that any later call reuses
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    engine.generate(requests)
    growth = torch.cuda.max_memory_allocated() - before
    need = engine.memory(requests)
    assert need.weights == 0
    assert growth <= need.total, (growth / 2**30, need)
    assert need.total <= 2.5 * growth, "the estimate is not wildly pessimistic"
