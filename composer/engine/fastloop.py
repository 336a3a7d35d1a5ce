"""composer's MusicGen decoding loop: a static, graph-capturable decode step.

What it does differently from transformers' ``generate``:

- one pre-allocated self-attention KV cache per (rows, length bucket), reused across batches; every
  step attends over the whole bucket with a mask and writes its keys/values at a position *tensor*,
  so every step has the same shapes (``torch.compile(fullgraph=True)`` compiles it once, a CUDA
  graph captures it once);
- cross-attention keys/values computed once per segment, over T5 states padded to a fixed length
  with a mask; the unconditional (guidance) rows skip cross-attention (their output is exactly 0);
- q/k/v projections fused into one matmul, the codebook embeddings and LM heads stacked, all as
  views of one tensor each, so the weights are held once (the transformers modules keep working);
- conditional and unconditional passes in one batched forward;
- prompts prefilled in groups of equal length, then every row steps at its own position, so a long
  audio prompt is not fed one step at a time beside a short one;
- sampling decided once per batch on the CPU (guidance, top-k size, nucleus), ``topk`` instead of
  full sorts, no device-to-host sync inside a step, uniforms pre-drawn from a per-segment seeded
  generator so a segment's tokens do not depend on what else is in the batch.

Greedy decoding gives the same tokens as transformers' ``generate`` on the same weights (tested);
seeded sampling draws from the same distribution as transformers' logits processors (tested) but
from its own random stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from composer.engine.kernels import attention, threads
from composer.engine.sampling import Row, SamplingPlan, plan_sampling, round_up, sample_next, sampling_tensors
from composer.engine.weights import decoder_weights, restore_weights
from composer.errors import EngineError

if TYPE_CHECKING:
    import torch

    from composer.engine.models import LoadedModel

StepMode = Literal["eager", "graph", "compile"]
Windows = list[tuple[Any, int]]  # (row indices, or None for all rows; cache positions they attend over)
RowProgress = Callable[[int, int, int], None]  # (row index, new frames done, new frames wanted)
POSITION_BUCKET = 64  # KV cache lengths are rounded up to this many positions
TEXT_BUCKET = 64  # T5 states are padded to a multiple of this many tokens
MIN_TEXT_LEN = 64
GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before a CUDA graph is captured


@dataclass
class StepState:
    """Everything a decode step reads and writes; fixed shapes for one (batch, bucket, text length)."""

    filled: torch.Tensor  # (B, K, Lb) codes; the delay pattern with sampled codes filled in
    pattern: torch.Tensor  # (B, K, Lb) prompt codes / PAD, -1 where a code is to be sampled
    pos: torch.Tensor  # (B,) the position each row feeds next
    uniforms: torch.Tensor  # (B, Lb, K) per-segment seeded draws
    cache_k: torch.Tensor  # (layers, rows, heads, Lb, head_dim)
    cache_v: torch.Tensor
    cross_k: torch.Tensor  # (layers, B, heads, S, head_dim): conditional rows only
    cross_v: torch.Tensor
    cross_mask: torch.Tensor  # (B, 1, 1, S) True where a text token is real
    params: dict[str, torch.Tensor]
    plan: SamplingPlan
    offset: torch.Tensor  # (B,) cache positions before a row's codes: its conditioning prefix (melody) or 0


class FastDecoder:
    """Decoding loop over the weights of a loaded transformers MusicGen model."""

    def __init__(self, lm: LoadedModel):
        import torch

        self.lm = lm
        model = lm.model
        config = model.decoder.config
        spec = lm.spec  # the checkpoint's facts, read once from its config
        self.k = spec.codebooks
        # stereo checkpoints interleave left/right codebooks; each channel has its own delay pattern
        self.delays = [c // spec.channels for c in range(self.k)]
        self.max_delay = self.k // spec.channels - 1
        self.vocab = spec.vocab
        self.pad = spec.pad
        self.device = lm.device
        self.w = decoder_weights(model, lm.kernel, lm.pad, lm.rows)  # packed for the CPU kernel, or views (CUDA)
        self.dtype = self.w.dtype
        # the key/value cache and the text's keys/values: float32 on the CPU, where attention over them in
        # bfloat16/float16 was 6x slower (2.2 vs 0.35 ms per layer at 1536 positions on an AVX-512 EPYC: the
        # step grew 3x along a segment) and torch's fused kernel over 64 text tokens 2-4x slower than the
        # unfused float32 form (62 vs 33 us per layer at batch 1, 234 vs 53 at batch 4, same machine)
        self.kv_dtype = torch.float32 if self.device.type == "cpu" else self.dtype
        self.layers = self.w.layers
        self.heads = spec.heads
        self.dim = spec.hidden
        self.head_dim = self.dim // self.heads
        projected = model.text_encoder.config.hidden_size != config.hidden_size
        cross_size = getattr(config, "cross_attention_hidden_size", None)
        self.project = model.enc_to_dec_proj if projected and cross_size is None else None
        # melody models prepend [chroma, text] to the codes instead of cross-attending to the text
        self.prefixed = spec.kind == "melody"
        self.chroma_length = spec.chroma_length
        self.audio_project = getattr(model, "audio_enc_to_dec_proj", None)
        self._workspaces: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.compiled: Callable[[StepState], None] | None = None  # set by compile_step

    # -- conditioning -------------------------------------------------------------------------
    def encode_text(self, text: str) -> torch.Tensor:
        """T5-encode and project one text: (S, D) in the decoder's dtype.

        Texts are encoded one at a time and never padded (T5 is cheap next to decoding), and on the
        CPU on one thread (a product split across threads can round differently), so a segment's
        conditioning is bit-identical whatever else is in the batch and however many cores run it.
        """
        import torch

        with torch.inference_mode(), threads(1 if self.device.type == "cpu" else torch.get_num_threads()):
            inputs = self.lm.tokenizer(text=[text], return_tensors="pt").to(self.device)
            states = self.lm.model.text_encoder(input_ids=inputs["input_ids"]).last_hidden_state.to(self.dtype)
            if self.project is not None:
                states = self.project(states)
            return states[0]

    def _cross(self, encoded: list[torch.Tensor], length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cross-attention keys/values (layers, B, H, S, hd) over states padded to ``length``, and the mask."""
        import torch

        b = len(encoded)
        states = torch.zeros(b, length, self.dim, dtype=self.dtype, device=self.device)
        mask = torch.zeros(b, 1, 1, length, dtype=torch.bool, device=self.device)
        for i, e in enumerate(encoded):
            states[i, : e.shape[0]] = e
            mask[i, ..., : e.shape[0]] = True
        keys = torch.stack([self._split(layer.cross_k(states)) for layer in self.layers])  # type: ignore[misc]
        values = torch.stack([self._split(layer.cross_v(states)) for layer in self.layers])  # type: ignore[misc]
        return keys.to(self.kv_dtype), values.to(self.kv_dtype), mask

    # -- the loop -----------------------------------------------------------------------------
    def generate(
        self, rows: list[Row], progress: RowProgress | None = None, mode: StepMode = "eager"
    ) -> list[np.ndarray]:
        """Generate every row; returns each row's new frames, (codebooks, new_frames) int64.

        Rows whose texts need different padded lengths run as separate batches, so a segment's
        tokens never depend on the texts beside it.

        Args:
            rows: the batch; texts, prompts, lengths and sampling settings may all differ.
            progress: called after each decoding step with (row index, new frames done, new frames
                wanted) for every row of the running group.
            mode: "eager" (the step as Python calls), "graph" (captured once in a CUDA graph and
                replayed; CUDA only, eager elsewhere) or "compile" (:meth:`compile_step`'s version).
        """
        import torch

        if not rows:
            return []
        for row in rows:
            if row.prompt.shape[0] != self.k:
                raise EngineError(f"prompt must have {self.k} codebooks, got {row.prompt.shape[0]}")
        with torch.inference_mode():
            encoded = [self.encode_text(r.text) for r in rows]
        groups: dict[int, list[int]] = {}
        for i, e in enumerate(encoded):  # prefixed (melody) models have no cross-attention to pad for
            groups.setdefault(0 if self.prefixed else text_bucket(e.shape[0]), []).append(i)
        out: list[np.ndarray] = [np.zeros(0)] * len(rows)
        for length, members in groups.items():
            sub = [rows[i] for i in members]

            def on_step(step: int, _steps: int, members: list[int] = members) -> None:
                if progress is not None:
                    for i in members:
                        progress(i, min(step, rows[i].new_frames), rows[i].new_frames)

            codes = self._generate_group(sub, [encoded[i] for i in members], length, on_step, mode)
            for i, c in zip(members, codes, strict=True):
                out[i] = c
        return out

    def steps_needed(self, rows: list[Row]) -> int:
        """Decode steps a batch of ``rows`` takes (each row steps from its last prompt position)."""
        return max(r.new_frames + self.max_delay for r in rows)

    def _generate_group(
        self,
        rows: list[Row],
        encoded: list[torch.Tensor],
        text_len: int,
        on_step: Callable[[int, int], None],
        mode: StepMode,
    ) -> list[np.ndarray]:
        import torch

        plan = plan_sampling(rows, self.vocab)
        with torch.inference_mode():
            pattern = self._delay_pattern(rows)  # (B, K, Lb) with -1 where to sample
            prefixes = [self._prefix(r, e) for r, e in zip(rows, encoded, strict=True)] if self.prefixed else None
            offsets = [p[0].shape[0] for p in prefixes] if prefixes else [0] * len(rows)
            state = self._state(rows, pattern, encoded, text_len, plan, offsets)
            starts = [r.prompt.shape[1] for r in rows]  # each row feeds its last prompt position first
            self._prefill(state, starts, offsets, prefixes)
            ends = [o + s for o, s in zip(offsets, starts, strict=True)]  # cache position fed by the first step
            steps = self.steps_needed(rows)
            if mode == "graph" and self.device.type == "cuda":
                self._run_graph(state, steps, on_step)
            elif mode == "compile":
                compiled = self.compiled or self.compile_step()
                for s in range(steps):
                    compiled(state)
                    on_step(s + 1, steps)
            else:
                for s in range(steps):  # eager: each row attends only as far as it has come
                    self.step(state, self._windows(state, ends, offsets, s))
                    on_step(s + 1, steps)
            filled = state.filled.cpu()
        out = []
        for i, row in enumerate(rows):
            p, frames = row.prompt.shape[1], row.prompt.shape[1] + row.new_frames
            codes = torch.stack([filled[i, c, 1 + d + p : 1 + d + frames] for c, d in enumerate(self.delays)])
            out.append(codes.numpy().astype(np.int64))
        return out

    def _state(
        self,
        rows: list[Row],
        pattern: torch.Tensor,
        encoded: list[torch.Tensor],
        text_len: int,
        plan: SamplingPlan,
        offsets: list[int],
    ) -> StepState:
        import torch

        b, bucket = len(rows), pattern.shape[2]
        n_rows = 2 * b if plan.guidance else b
        cache_k, cache_v = self._workspace(n_rows, round_up(max(offsets) + bucket, POSITION_BUCKET))
        if self.prefixed:  # nothing to cross-attend to
            cross_k = cross_v = torch.zeros(len(self.layers), b, self.heads, 0, self.head_dim, device=self.device)
            cross_mask = torch.zeros(b, 1, 1, 0, dtype=torch.bool, device=self.device)
        else:
            cross_k, cross_v, cross_mask = self._cross(encoded, text_len)
        pos = torch.tensor([r.prompt.shape[1] for r in rows], dtype=torch.long, device=self.device)
        filled = pattern.clone()
        filled[filled == -1] = self.pad  # not sampled yet; never read before it is written
        return StepState(
            filled, pattern, pos, self._uniforms(rows, bucket), cache_k, cache_v, cross_k, cross_v, cross_mask,
            sampling_tensors(rows, self.vocab, self.device), plan,
            torch.tensor(offsets, dtype=torch.long, device=self.device),
        )  # fmt: skip

    def _workspace(self, n_rows: int, bucket: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The KV cache for (rows, bucket): allocated once, zeroed for every batch."""
        import torch

        key = (n_rows, bucket)
        if key not in self._workspaces:
            self._workspaces.clear()  # one shape at a time: a new shape frees the last one's memory
            shape = (len(self.layers), n_rows, self.heads, bucket, self.head_dim)
            self._workspaces[key] = (
                torch.zeros(shape, dtype=self.kv_dtype, device=self.device),
                torch.zeros(shape, dtype=self.kv_dtype, device=self.device),
            )
        cache_k, cache_v = self._workspaces[key]
        cache_k.zero_()
        cache_v.zero_()
        return cache_k, cache_v

    def release(self) -> None:
        """Free the KV cache workspaces (the next batch allocates again)."""
        self._workspaces.clear()

    def _prefix(self, row: Row, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A melody model's conditioning prefix for one row: (conditional, unconditional), each (P, D).

        As transformers builds it: the projected chroma looped to ``chroma_length`` frames, then the
        projected text. The unconditional prefix has the null chroma (pitch class 0 everywhere)
        and zeros for the text.
        """
        import torch

        def project(chroma: torch.Tensor) -> torch.Tensor:
            states = self.audio_project(chroma) if self.audio_project is not None else chroma
            reps = -(-self.chroma_length // states.shape[0])
            return states.repeat(reps, 1)[: self.chroma_length]

        null = torch.zeros(1, 12, dtype=self.dtype, device=self.device)
        null[:, 0] = 1
        melody = null if row.chroma is None else torch.as_tensor(row.chroma, dtype=self.dtype, device=self.device)
        cond = torch.cat([project(melody), text])
        return cond, torch.cat([project(null), torch.zeros_like(text)])

    def _prefill(
        self,
        state: StepState,
        starts: list[int],
        offsets: list[int],
        prefixes: list[tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> None:
        """Fill the KV cache before every row's first step: its conditioning prefix (melody models)
        and its prompt codes [0, start); rows of equal lengths go together."""
        import torch

        b = len(starts)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (start, offset) in enumerate(zip(starts, offsets, strict=True)):
            if start + offset > 0:
                groups.setdefault((offset, start), []).append(i)
        for (_offset, start), members in groups.items():
            index = torch.tensor(members, device=self.device)
            rows = torch.cat([index, index + b]) if state.plan.guidance else index
            tokens = state.filled[index, :, :start]
            if state.plan.guidance:
                tokens = torch.cat([tokens, tokens])
            hidden = self._embed(tokens)
            if prefixes is not None:
                prefix = [prefixes[i][0] for i in members]
                if state.plan.guidance:
                    prefix += [prefixes[i][1] for i in members]
                hidden = torch.cat([torch.stack(prefix), hidden], dim=1)
            self._prefill_rows(hidden, rows, index, state)

    def _norm(self, x: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        import torch.nn.functional as F

        return F.layer_norm(x, (self.dim,), norm[0], norm[1], self.w.eps)

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Sum of the codebooks' embeddings of ``tokens`` (rows, K, T), added in codebook order."""
        hidden = self.w.embed[0][tokens[:, 0]]
        for c in range(1, tokens.shape[1]):
            hidden = hidden + self.w.embed[c][tokens[:, c]]
        return hidden

    def _prefill_rows(self, hidden: torch.Tensor, rows: torch.Tensor, index: torch.Tensor, state: StepState) -> None:
        """A causal multi-position forward over embeddings ``hidden`` (n, T, D) writing the cache of ``rows``."""
        n, steps, _ = hidden.shape
        cond = index.shape[0]
        hidden = hidden + self.w.positions[:steps].to(hidden.dtype)
        for i, layer in enumerate(self.layers):
            residual = hidden
            q, kk, v = layer.qkv(self._norm(hidden, layer.norm_self)).split(self.dim, dim=-1)
            q, kk, v = self._split(q), self._split(kk), self._split(v)
            state.cache_k[i, rows, :, :steps] = kk.to(self.kv_dtype)
            state.cache_v[i, rows, :, :steps] = v.to(self.kv_dtype)
            attn = attention(q, kk, v, causal=True)
            hidden = residual + layer.out(attn.transpose(1, 2).reshape(n, steps, self.dim))
            if layer.cross_q is not None and layer.cross_out is not None and layer.norm_cross is not None:
                hidden = hidden.clone()
                qc = self._split(layer.cross_q(self._norm(hidden[:cond], layer.norm_cross))).to(self.kv_dtype)
                attn = attention(qc, state.cross_k[i, index], state.cross_v[i, index], state.cross_mask[index])
                hidden[:cond] += layer.cross_out(attn.transpose(1, 2).reshape(cond, steps, self.dim))
            hidden = hidden + layer.fc2(self.w.activation(layer.fc1(self._norm(hidden, layer.norm_ffn))))

    def _windows(self, state: StepState, ends: list[int], offsets: list[int], s: int) -> Windows:
        """Which rows attend over how many cache positions at step ``s`` (eager steps).

        A row's window is its own position rounded up to :data:`POSITION_BUCKET`, never the batch's
        furthest row: attention over a longer, masked cache can round differently (fp16 on CPU
        does), and a row's numbers must not depend on its company.
        """
        import torch

        b, cache_len, bucket = len(ends), state.cache_k.shape[3], state.filled.shape[2]
        windows: dict[int, list[int]] = {}
        for i in range(b):
            position = min(ends[i] + s, offsets[i] + bucket - 1)
            windows.setdefault(min(cache_len, round_up(position + 1, POSITION_BUCKET)), []).append(i)
        if len(windows) == 1:
            return [(None, next(iter(windows)))]
        guidance = state.plan.guidance
        return [
            (torch.tensor(rows + [r + b for r in rows] if guidance else rows, device=self.device), w)
            for w, rows in windows.items()
        ]

    def step(self, state: StepState, windows: Windows | None = None) -> None:
        """One decoding step for every row: feed the code at ``pos``, sample ``pos + 1``, advance.

        Only tensor operations with fixed shapes (no ``.item()``, no Python branch on device values), so
        it can be compiled with ``fullgraph=True`` or captured in a CUDA graph.

        Args:
            state: the batch's buffers, updated in place.
            windows: (rows, positions) pairs: those rows (None: all) attend to the first ``positions``
                cache positions only (eager; from :meth:`_windows`); None: every row attends over
                the whole cache (fixed shapes: compiled and captured steps).
        """
        import torch

        b, k, bucket = state.filled.shape
        guidance = state.plan.guidance
        windows = windows or [(None, state.cache_k.shape[3])]
        pos = state.pos  # code positions; the cache position adds the row's conditioning prefix
        at_cache = pos + state.offset
        pos_rows = torch.cat([at_cache, at_cache]) if guidance else at_cache
        n = pos_rows.shape[0]
        tokens = state.filled.gather(2, pos.view(b, 1, 1).expand(b, k, 1))  # (B, K, 1)
        if guidance:
            tokens = torch.cat([tokens, tokens])
        hidden = self._embed(tokens)  # (rows, 1, D)
        hidden = hidden + self.w.positions.index_select(0, pos_rows).to(hidden.dtype)[:, None]
        masks = []
        for rows, w in windows:
            at = pos_rows if rows is None else pos_rows[rows]
            masks.append((torch.arange(w, device=self.device) <= at[:, None]).view(at.shape[0], 1, 1, w))
        # where each row's new key/value goes: (row, head, its own position); an index_put writes just
        # those n x heads vectors (a scatter_ along the position axis copied the whole cache)
        where = (torch.arange(n, device=self.device)[:, None], torch.arange(self.heads, device=self.device)[None, :],
                 pos_rows[:, None])  # fmt: skip
        for i, layer in enumerate(self.layers):
            residual = hidden
            q, kk, v = layer.qkv(self._norm(hidden, layer.norm_self)).split(self.dim, dim=-1)
            state.cache_k[i].index_put_(where, kk.view(n, self.heads, self.head_dim).to(self.kv_dtype))
            state.cache_v[i].index_put_(where, v.view(n, self.heads, self.head_dim).to(self.kv_dtype))
            q = self._split(q).to(self.kv_dtype)
            if len(windows) == 1:
                w = windows[0][1]
                attn = attention(q, state.cache_k[i, :, :, :w], state.cache_v[i, :, :, :w], masks[0])
            else:
                attn = torch.empty_like(q)
                for (rows, w), mask in zip(windows, masks, strict=True):
                    keys, values = state.cache_k[i, rows, :, :w], state.cache_v[i, rows, :, :w]
                    attn[rows] = attention(q[rows], keys, values, mask)
            hidden = residual + layer.out(attn.transpose(1, 2).reshape(n, 1, self.dim))
            if layer.cross_q is not None and layer.cross_out is not None and layer.norm_cross is not None:
                qc = self._split(layer.cross_q(self._norm(hidden[:b], layer.norm_cross))).to(self.kv_dtype)
                attn = attention(qc, state.cross_k[i], state.cross_v[i], state.cross_mask)
                cross = layer.cross_out(attn.transpose(1, 2).reshape(b, 1, self.dim))
                hidden = hidden + (torch.cat([cross, torch.zeros_like(cross)]) if guidance else cross)
            hidden = hidden + layer.fc2(self.w.activation(layer.fc1(self._norm(hidden, layer.norm_ffn))))
        last = self._norm(hidden[:, 0], self.w.final_norm)  # (rows, D)
        logits = self.w.heads(last).view(n, k, self.vocab).float()
        nxt = (pos + 1).clamp(max=bucket - 1)
        at = nxt.view(b, 1, 1).expand(b, k, 1)
        uniforms = state.uniforms.gather(1, nxt.view(b, 1, 1).expand(b, 1, k))[:, 0]
        codes = sample_next(logits, state.params, uniforms, state.plan)
        column = state.pattern.gather(2, at)
        state.filled.scatter_(2, at, torch.where(column == -1, codes[:, :, None], column))
        state.pos.copy_(nxt)

    def _run_graph(self, state: StepState, steps: int, on_step: Callable[[int, int], None]) -> None:
        """Warm up on a side stream, capture one step in a CUDA graph, replay it for the rest.

        The replayed kernels are exactly the eager ones, so the tokens are the eager tokens. Capture
        records without running, so every step runs once: the warm-up steps, then the replays.
        """
        import torch

        warm = min(steps, GRAPH_WARMUP_STEPS)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for s in range(warm):
                self.step(state)
                on_step(s + 1, steps)
        torch.cuda.current_stream(self.device).wait_stream(side)
        if warm == steps:
            return
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.step(state)
        for s in range(warm, steps):
            graph.replay()
            on_step(s + 1, steps)
        del graph

    def compile_step(self, **options: Any) -> Callable[[StepState], None]:
        """``torch.compile`` the step (fullgraph); :meth:`generate` uses it with ``mode="compile"``.

        On CUDA, pass ``mode="reduce-overhead"`` to replay the step as a CUDA graph. Inductor fuses
        and rounds in its own way (a cache key of its own) and lowers only plain products, so the
        compiled step runs on the modules' weights, not on the CPU kernels' packed copies.
        """
        import torch

        if self.w.kernel != "plain":
            restore_weights(self.lm.model.decoder)
            self.w = decoder_weights(self.lm.model, "plain")
            self.layers = self.w.layers
        self.compiled = torch.compile(self.step, fullgraph=True, **options)  # window None: the whole bucket
        return self.compiled

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        rows, seq, _ = x.shape
        return x.view(rows, seq, self.heads, self.head_dim).transpose(1, 2)

    def _delay_pattern(self, rows: list[Row]) -> torch.Tensor:
        """(B, K, Lb): BOS/PAD, prompt codes, -1 where to sample; Lb has a spare slot and is bucketed."""
        import torch

        k = self.k
        lengths = [1 + r.prompt.shape[1] + r.new_frames + self.max_delay for r in rows]
        pattern = torch.full((len(rows), k, round_up(max(lengths) + 1, POSITION_BUCKET)), self.pad, dtype=torch.long)
        for i, row in enumerate(rows):
            p = row.prompt.shape[1]
            frames = p + row.new_frames
            for c, d in enumerate(self.delays):
                pattern[i, c, 1 + d : 1 + d + p] = torch.as_tensor(row.prompt[c])
                pattern[i, c, 1 + d + p : 1 + d + frames] = -1
        return pattern.to(self.device)

    def _uniforms(self, rows: list[Row], length: int) -> torch.Tensor:
        """(B, L, K) uniforms, each row from its own seeded generator (batch-independent).

        Row i's draw for position t is at [i, t]: the same whatever the bucket length.
        """
        import torch

        out = []
        for row in rows:
            gen = torch.Generator(device="cpu").manual_seed(row.seed)
            draws = torch.rand((1 + row.prompt.shape[1] + row.new_frames + self.k, self.k), generator=gen)
            out.append(torch.cat([draws, torch.zeros(length - draws.shape[0], self.k)]))
        return torch.stack(out).to(self.device)


def text_bucket(tokens: int) -> int:
    """The padded length of a text of ``tokens`` T5 tokens (fixed, so conditioning is batch-independent)."""
    return max(MIN_TEXT_LEN, round_up(tokens, TEXT_BUCKET))
