"""Matrix products whose result for a row depends on nothing but that row and the weights.

BLAS libraries and oneDNN choose their blocking, their micro-kernels and whether to split a reduction
across threads from the shape of the product and the number of threads. A row multiplied alone (a
matrix-vector product) therefore rounds differently from the same row inside a batch of four, and
a product on two threads can round differently from the same product on one. For sampled decoding
that is enough to give a segment other music in other company, or on another machine size.

So on the CPU every product of the decoder runs through a :class:`Linear`:

- on chunks of a fixed number of rows (the last one padded with zeros): one shape per weight,
  whatever the batch, the prompt length or the number of segments. The chunk size is part of the
  kernel's numerics: 16 rows (:data:`ROWS`) serve up to eight segments with guidance in one pass
  over the weights; 2 rows (one segment with guidance) cost less arithmetic at batch 1, which is
  what matters where float32 is the only fast type (:mod:`composer.engine.tune` measures both).
  Where the probe finds that a kernel gives a row the same bits in chunks of 2, 4, 8 and 16 rows,
  the last chunk is padded only to the next of those sizes (``pad="pow2"``): batch 1 runs at the
  2-row cost and a render's batch in one pass, with the 16-row chunk's numerics; where it gives
  the same bits at every row count, not padded at all (``pad="none"``);
- with the weight packed once into oneDNN's blocked layout (what ``torch.compile``'s CPU backend
  does with frozen weights): no per-call repacking, and one fixed kernel per weight;
- whose result does not depend on the thread count: checked for each kernel on the machine by
  :func:`probe`, which :mod:`composer.engine.tune` runs before a kernel may be a default.

Kernels: ``float32``, ``bfloat16``, ``float16`` (oneDNN packed weights, activations in that type) and
``int8`` (weight-only int8 with one scale per output channel, bfloat16 activations,
``torch._weight_int8pack_mm``). ``plain`` is ``F.linear`` on the weight as it is: CUDA (where the
step is captured in a graph with fixed shapes) and CPUs where oneDNN packing is unavailable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# bumped when a kernel would round differently (part of every cache key): 2 attention(), 3 float32 KV cache,
# 4 keys x query in a decoding step and float32 cross-attention on the CPU
KERNEL_VERSION = 4
ROWS = 16  # the default chunk: every CPU product runs on row chunks of exactly this many rows
CHUNKS: tuple[int, ...] = (2, 16)  # chunk sizes the tuner compares: 2 = one segment with guidance
CPU_KERNELS: tuple[str, ...] = ("float32", "bfloat16", "float16", "int8")
PADDINGS: tuple[str, ...] = ("whole", "pow2", "none")  # how a Linear pads its last chunk (see Linear)


def activation_dtype(kernel: str) -> torch.dtype:
    """The type of the hidden states (and the KV cache) with ``kernel``'s weights."""
    import torch

    return torch.bfloat16 if kernel == "int8" else getattr(torch, kernel)


def packing_available(kernel: str) -> bool:
    """Can this torch build pack weights for ``kernel`` on this CPU (oneDNN, or the int8 kernel)?"""
    import torch

    try:
        weight = torch.zeros(ROWS, 32)
        Linear(weight, kernel)(torch.zeros(1, 32))
    except (RuntimeError, AttributeError, NotImplementedError):
        return False
    return True


class Linear:
    """``x @ weight.T`` (no bias) with the weight prepared for one kernel.

    Args:
        weight: (out_features, in_features), any float type; it is converted and packed (a copy on
            the CPU, so the caller may free it).
        kernel: one of :data:`CPU_KERNELS`, or "plain".
        pad: how the last chunk is padded (:data:`PADDINGS`): "whole" to ``rows`` rows, needed
            where the kernel's rounding depends on how many rows it is given; "pow2" to the next
            power of two from 2 up to ``rows``; "none" not at all. :func:`probe` finds where the
            last two give the same bits as "whole" (then the tokens are the same, and small
            batches are faster).
        rows: the chunk size (one of :data:`CHUNKS`).
    """

    def __init__(self, weight: torch.Tensor, kernel: str, pad: str = "whole", rows: int = ROWS):
        import torch

        if pad not in PADDINGS:
            raise ValueError(f"unknown padding {pad!r}")
        self.kernel = kernel
        self.pad = pad
        self.rows = rows
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        self.device = weight.device
        self.scales: torch.Tensor | None = None
        if kernel == "plain":
            self.weight = weight
        elif kernel == "int8":
            w = weight.detach().float()
            scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
            self.weight = (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
            self.scales = scale.to(torch.bfloat16)
        elif kernel in CPU_KERNELS:
            dense = weight.detach().to(getattr(torch, kernel)).contiguous()
            self.weight = torch.ops.mkldnn._reorder_linear_weight(dense, rows)
        else:
            raise ValueError(f"unknown kernel {kernel!r}")
        self.dtype = weight.dtype if kernel == "plain" else activation_dtype(kernel)

    @property
    def nbytes(self) -> int:
        """Bytes the prepared weight takes."""
        item = 1 if self.kernel == "int8" else (self.weight.element_size())
        extra = self.scales.numel() * 2 if self.scales is not None else 0
        return self.out_features * self.in_features * item + extra

    def dense(self) -> torch.Tensor:
        """The weight as a plain (out, in) tensor (int8: dequantised), to hand back to other code."""
        if self.kernel == "plain":
            return self.weight
        if self.kernel == "int8":
            assert self.scales is not None
            return self.weight.float() * self.scales.float()[:, None]
        return self.weight.to_dense()

    def padded(self, m: int) -> int:
        """How many rows the kernel is given for ``m`` rows (chunks of ``rows``, the last one padded)."""
        rest = m % self.rows
        if not rest or self.pad == "none":
            return m
        last = self.rows if self.pad == "whole" else min(self.rows, max(2, 1 << (rest - 1).bit_length()))
        return m - rest + last

    def _chunk(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        if self.scales is not None:  # int8
            return torch._weight_int8pack_mm(x, self.weight, self.scales)
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, None, "none", [], "")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        if self.kernel == "plain":
            return F.linear(x, self.weight)
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.in_features)
        if rows.dtype != self.dtype:
            rows = rows.to(self.dtype)
        m, chunk, size = rows.shape[0], self.rows, self.padded(rows.shape[0])
        if size > m:  # every call of the kernel has one of a few fixed shapes
            rows = torch.cat([rows, rows.new_zeros(size - m, self.in_features)])
        if rows.shape[0] <= chunk:
            out = self._chunk(rows)
        else:
            out = torch.cat([self._chunk(rows[i : i + chunk]) for i in range(0, rows.shape[0], chunk)])
        return out[:m].reshape(*lead, self.out_features)


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False
) -> torch.Tensor:
    """Scaled dot-product attention (rows, heads, L, d) whose result for a row depends on that row alone.

    torch's fused CPU kernel (flash attention) in float32 can round differently on each thread: on a
    2-core AMD EPYC with AVX-512 (torch 2.13), every row a second thread computed differed from the
    same row computed on one thread, so a segment's tokens changed with its place in the batch. The
    unfused form (two batched products with a fixed reduction per row, and a softmax along each row)
    does not, and was no slower there at decoding shapes (10 rows x 16 heads, 64 to 1536 positions).
    A single query (a decoding step) is multiplied as keys x query, which was 20-25% faster than
    query x keys over 256-1536 positions there. The decoder keeps its CPU key/value cache and the
    text's keys/values in float32 so decoding steps take this path. Other types (the prefill's
    self-attention in bfloat16/float16) keep the fused kernel, whose invariance :func:`probe_attention`
    checks per machine (the tuner refuses a kernel where it varies); so does CUDA.
    """
    import torch
    import torch.nn.functional as F

    if q.device.type != "cpu" or q.dtype != torch.float32:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    if q.shape[-2] == 1:  # a decoding step: keys times query, the faster matrix-vector form here
        scores = (k @ (q * q.shape[-1] ** -0.5).transpose(-1, -2)).transpose(-1, -2)
    else:
        scores = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    if causal:
        length, total = q.shape[-2], k.shape[-2]
        mask = torch.ones(length, total, dtype=torch.bool, device=q.device).tril(total - length)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def probe_attention(kernel: str, thread_counts: list[int], seed: int = 0) -> list[str]:
    """Where :func:`attention` gives a row other bits at another batch size, row position or thread count:
    in ``kernel``'s activation type (the prefill and the text) and in float32 (the decoding steps over
    the CPU's float32 key/value cache), over 64 and 300 positions and a causal prefill."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    failures: list[str] = []
    n = 10
    for dtype in dict.fromkeys([activation_dtype(kernel), torch.float32]):
        for queries, positions in ((1, 64), (1, 300), (24, 24)):
            q = torch.randn(n, 16, queries, 64, generator=gen).to(dtype)
            k, v = (torch.randn(n, 16, positions, 64, generator=gen).to(dtype) for _ in range(2))
            ends = torch.randint(positions // 2, positions, (n,), generator=gen)
            mask = None if queries > 1 else (torch.arange(positions) <= ends[:, None]).view(n, 1, 1, positions)
            label = f"{str(dtype).removeprefix('torch.')} attention {queries}x{positions}"
            failures += _attention_failures(q, k, v, mask, thread_counts, label)
    return failures


def _attention_failures(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, counts: list[int], label: str
) -> list[str]:
    import torch

    causal, n = mask is None, q.shape[0]

    def run(rows: slice | torch.Tensor) -> torch.Tensor:
        return attention(q[rows], k[rows], v[rows], None if mask is None else mask[rows], causal)

    with threads(1):
        alone = torch.cat([run(slice(i, i + 1)) for i in range(n)])
    failures = []
    for count in counts:
        with threads(count):
            checks = [("batched", run(slice(0, n))), ("reversed", run(torch.arange(n - 1, -1, -1)).flip(0)),
                      ("3 rows", torch.cat([run(slice(0, 3)), alone[3:]]))]  # fmt: skip
        for name, got in checks:
            if not torch.equal(got, alone):
                bad = int((got != alone).flatten(1).any(dim=1).sum())
                failures.append(f"{label} {name} on {count} thread(s): {bad} row(s) differ")
    return failures


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    if count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def probe(
    kernel: str,
    shapes: list[tuple[int, int]],
    thread_counts: list[int],
    pad: str = "whole",
    seed: int = 0,
    rows: int = ROWS,
) -> dict[str, Any]:
    """Check that ``kernel`` gives every row the same bits at every batch size, row position and thread count.

    For each (out_features, in_features) in ``shapes``: random weights and 2 * ROWS + 3 random rows
    (ROWS or ``rows``, the larger); the reference is every row computed alone on one thread; then all
    rows together, rows in reversed order, a row beside different rows, and (padded otherwise than to
    whole chunks) the first m rows for every m up to that size, at each of ``thread_counts``.

    Returns:
        {"invariant": bool, "failures": [descriptions]}.
    """
    import torch

    failures: list[str] = []
    gen = torch.Generator().manual_seed(seed)
    for n, k in shapes:
        weight = torch.randn(n, k, generator=gen) * k**-0.5
        lin = Linear(weight, kernel, pad=pad, rows=rows)
        x = torch.randn(2 * max(rows, ROWS) + 3, k, generator=gen).to(lin.dtype)
        with threads(1):
            alone = torch.cat([lin(x[i : i + 1]) for i in range(x.shape[0])])
        for count in thread_counts:
            with threads(count):
                others = torch.randn(4, k, generator=gen).to(lin.dtype)
                checks = [
                    ("batched", lin(x)),
                    ("reversed", lin(x.flip(0)).flip(0)),
                    ("beside others", lin(torch.cat([x[:1], others]))[:1]),
                ]
                if pad != "whole":
                    checks += [(f"{m} rows", lin(x[:m])) for m in range(2, max(rows, ROWS) + 1)]
            for name, got in checks:
                m = got.shape[0]
                if not torch.equal(got, alone[:m]):
                    bad = int((got != alone[:m]).any(dim=1).sum())
                    failures.append(f"{n}x{k} {name} on {count} thread(s): {bad} row(s) differ")
    return {"invariant": not failures, "failures": failures}
