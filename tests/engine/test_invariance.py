"""A segment's tokens depend on its request alone: not on its batch, its place in the batch, or the thread count.

For every kernel the CPU tuner may choose by default, at the real widths of musicgen-small (hidden
1024, 16 heads, ffn 4096, 4 x 2048 codes; one layer to keep it quick: each product has its real
shape), with sampling, guidance, prompts of different lengths and 300 steps or more: the same rows
in batches of 8, 5, 3, 2 and 1, in other orders and on 1 to 4 threads must give identical tokens.
Any product that rounds with the batch size or the thread count changes some sampled code within a
few steps and the rest of the segment after it, so this cannot pass by luck.
"""

from __future__ import annotations

import numpy as np
import pytest

from composer.engine.fastloop import FastDecoder, Row
from composer.engine.kernels import CHUNKS, activation_dtype, packing_available, threads
from composer.engine.models import LoadedModel
from composer.engine.tune import CANDIDATES, probe_variant, shape_of_config
from composer.engine.types import Sampling

SMALL_WIDTHS = (1024, 1, 16, 4096)  # (hidden, layers, heads, ffn): musicgen-small's widths, one layer
STEPS = 300


def wide_model(kernel: str, rows: int) -> LoadedModel:
    """A one-layer model at small's widths, its kernel padded or not as the tuner's probe decides."""
    import torch

    from composer.engine.tiny import build_model

    model, processor = build_model("tiny", "small", decoder=SMALL_WIDTHS)
    dtype = activation_dtype(kernel)
    model.decoder.to(dtype)
    model.enc_to_dec_proj.to(dtype)
    shape = shape_of_config(model.config.to_dict())
    products = sorted(set(shape.products()) | {(shape.codebooks * shape.vocab, shape.hidden)})
    invariant, pad, failures = probe_variant(kernel, products, [1, 2, 3, 4], rows)
    assert invariant, f"{kernel}/{rows}: the probe finds it varies ({failures[:2]}), so the tuner would not pick it"
    return LoadedModel("small", "wide", "none", "tiny", model, processor, torch.device("cpu"), dtype, kernel, pad, rows)


def rows() -> list[Row]:
    rng = np.random.default_rng(2)
    prompts = [0, 0, 5, 37, 0, 150, 2, 0]
    texts = ["dark industrial ebm", "calm ambient drone", "deep house, warm chords", "a slow swing on brushed drums"]
    sampling = [Sampling(), Sampling(), Sampling(top_p=0.9, temperature=0.8), Sampling(cfg=1.0), Sampling(),
                Sampling(top_k=50), Sampling(), Sampling(cfg=5.0)]  # fmt: skip
    return [
        Row(texts[i % len(texts)], rng.integers(0, 2048, (4, p)), STEPS + 3 * i, 100 + i, sampling[i])
        for i, p in enumerate(prompts)
    ]


# (row indices in batch order, thread count): sizes 8, 8 (every row at another place), 5, 3, 2 and 1, on
# 1 to 4 threads; the thread counts above the machine's 2 cores go with the small batches, where
# oversubscribing costs the least time
CONFIGS = [
    ([0, 1, 2, 3, 4, 5, 6, 7], 2),
    ([1, 2, 3, 4, 5, 6, 7, 0], 2),
    ([7, 6, 5, 4, 3], 2),
    ([2, 1, 0], 3),
    ([0, 7], 4),
    ([0], 1),
]


@pytest.mark.slow
@pytest.mark.parametrize("kernel", CANDIDATES)
@pytest.mark.parametrize("chunk", CHUNKS)
def test_tokens_do_not_depend_on_batch_position_or_threads(kernel: str, chunk: int) -> None:
    if not packing_available(kernel):
        pytest.skip(f"this CPU or torch build has no {kernel} kernel, so the tuner cannot choose it here")
    decoder = FastDecoder(wide_model(kernel, chunk))
    every = rows()
    seen: dict[int, list[tuple[str, np.ndarray]]] = {i: [] for i in range(len(every))}
    for order, count in CONFIGS:
        with threads(count):
            out = decoder.generate([every[i] for i in order])
        for place, (i, codes) in enumerate(zip(order, out, strict=True)):
            assert codes.shape == (4, every[i].new_frames)
            seen[i].append((f"batch of {len(order)}, place {place}, {count} thread(s)", codes))
    for i, runs in seen.items():
        first_name, first = runs[0]
        assert len(np.unique(first[0])) > 50, "sampled, not collapsed to a few codes"
        for name, codes in runs[1:]:
            differ = np.nonzero((codes != first).any(axis=0))[0]
            assert not differ.size, f"row {i}: {name} differs from {first_name} from frame {differ[0]}"


@pytest.mark.slow
@pytest.mark.parametrize("kernel", CANDIDATES)
def test_lighter_padding_keeps_the_whole_chunks_tokens(kernel: str) -> None:
    """Where the probe lets 16-row chunks be padded less (to 2, 4 or 8 rows, or not at all), the tokens are
    those of whole 16-row chunks: the padding is speed only, so it is no part of the numerics (cache keys)."""
    if not packing_available(kernel):
        pytest.skip(f"this CPU or torch build has no {kernel} kernel, so the tuner cannot choose it here")
    lighter = wide_model(kernel, 16)
    batches = [[0, 1, 2, 3], [5], [3]]  # 8 rows with guidance, 2, and 1 (row 3 has none)
    got = [FastDecoder(lighter).generate([rows()[i] for i in batch]) for batch in batches]
    lighter.pad = "whole"
    want = [FastDecoder(lighter).generate([rows()[i] for i in batch]) for batch in batches]
    for batch, a, b in zip(batches, got, want, strict=True):
        for i, x, y in zip(batch, a, b, strict=True):
            assert np.array_equal(x, y), f"row {i} with {lighter.pad} padding"
