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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from composer.engine.types import Sampling
from composer.errors import EngineError

if TYPE_CHECKING:
    import torch

    from composer.engine.models import LoadedModel

StepMode = Literal["eager", "graph", "compile"]
RowProgress = Callable[[int, int, int], None]  # (row index, new frames done, new frames wanted)
POSITION_BUCKET = 64  # KV cache lengths are rounded up to this many positions
TEXT_BUCKET = 64  # T5 states are padded to a multiple of this many tokens
MIN_TEXT_LEN = 64
GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before a CUDA graph is captured
CANDIDATE_BUCKET = 64  # top-k candidate lists are this many long (rounded up)


@dataclass(frozen=True)
class Row:
    """One segment window in a batch."""

    text: str
    prompt: np.ndarray  # (codebooks, prompt_frames), may have 0 frames
    new_frames: int
    seed: int
    sampling: Sampling = field(default_factory=Sampling)
    chroma: np.ndarray | None = None  # melody models: (frames, 12) one-hot chroma for this window


@dataclass(frozen=True)
class SamplingPlan:
    """What a batch's sampling needs, decided once per batch on the CPU (no device sync per step)."""

    guidance: bool  # any row uses classifier-free guidance (cfg > 1): rows are doubled
    candidates: int  # tokens kept by top-k: the largest top-k in the batch, or the vocabulary
    nucleus: bool  # any row uses top-p


def plan_sampling(rows: list[Row], vocab: int) -> SamplingPlan:
    """The batch-wide sampling plan for ``rows``."""
    top_ks = [min(r.sampling.top_k, vocab) if r.sampling.top_k > 0 else vocab for r in rows]
    # rounded up so that a candidate's numbers come from the same vectorised path whatever the batch
    candidates = min(vocab, round_up(max(top_ks), CANDIDATE_BUCKET))
    return SamplingPlan(any(r.sampling.cfg > 1 for r in rows), candidates, any(0 < r.sampling.top_p < 1 for r in rows))


def sampling_tensors(rows: list[Row], vocab: int, device: Any) -> dict[str, torch.Tensor]:
    """Per-row sampling settings as (B, 1, 1) tensors on ``device``."""
    import torch

    def col(values: list[float], dtype: Any = torch.float32) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype, device=device)[:, None, None]

    s = [r.sampling for r in rows]
    return {
        "cfg": col([x.cfg for x in s]),
        "guided": col([float(x.cfg > 1) for x in s]),
        "temperature": col([x.temperature for x in s]),
        "top_k": col([min(x.top_k, vocab) if x.top_k > 0 else vocab for x in s], torch.long),
        "top_p": col([x.top_p if 0 < x.top_p < 1 else 2.0 for x in s]),  # 2: nothing is cut
        "greedy": col([float(x.greedy) for x in s]),
    }


def sample_next(
    logits: torch.Tensor, params: dict[str, torch.Tensor], uniforms: torch.Tensor, plan: SamplingPlan
) -> torch.Tensor:
    """Next codes (B, K) from logits (rows, K, V): guidance, temperature, top-k, top-p, inverse CDF.

    The same order and semantics as transformers' processors (guidance, then temperature, then
    top-k, then top-p). No data-dependent branch and no host sync: safe inside a captured graph.

    Args:
        logits: float32 logits; with ``plan.guidance`` the conditional rows first, then the unconditional.
        params: from :func:`sampling_tensors`.
        uniforms: (B, K) draws in [0, 1).
        plan: from :func:`plan_sampling`.
    """
    import torch
    import torch.nn.functional as F

    b = uniforms.shape[0]
    if plan.guidance:
        cond, uncond = logits[:b], logits[b:]
        guided = uncond + (cond - uncond) * params["cfg"]
        logits = torch.where(params["guided"] > 0, guided, cond)  # cfg <= 1: exactly the conditional logits
    greedy = logits.argmax(-1)
    scores = logits / params["temperature"]
    top, index = scores.topk(plan.candidates, dim=-1)  # (B, K, C), sorted descending
    # Equal scores are common (fp16 logits): order ties by code so the order never depends on how
    # many candidates the batch carries, then keep every candidate scoring at least the k-th (as
    # transformers' top-k does).
    index, order = index.sort(-1)
    top, order = top.gather(-1, order).sort(dim=-1, descending=True, stable=True)
    index = index.gather(-1, order)
    kth = top.gather(-1, params["top_k"].expand(-1, top.shape[1], 1) - 1)
    top = top.masked_fill(top < kth, -float("inf"))
    # Unnormalised weights relative to the best token and prefix sums only: a row's numbers do not
    # depend on how many (masked) candidates the batch carries, so its draws are batch-independent.
    weights = (top - top[..., :1]).exp()
    cdf = weights.cumsum(-1)
    if plan.nucleus:  # keep a token while the mass of the more likely ones is below top_p
        before = F.pad(cdf[..., :-1], (1, 0))
        weights = weights.masked_fill(before >= params["top_p"] * cdf[..., -1:], 0.0)
        cdf = weights.cumsum(-1)
    pick = (cdf < uniforms[:, :, None] * cdf[..., -1:]).sum(-1, keepdim=True).clamp(max=plan.candidates - 1)
    sampled = index.gather(-1, pick)[..., 0]
    return torch.where(params["greedy"][:, :, 0] > 0, greedy, sampled)


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
        self.lm = lm
        model = lm.model
        decoder = model.decoder.model.decoder
        config = model.decoder.config
        spec = lm.spec  # the checkpoint's facts, read once from its config
        self.k = spec.codebooks
        # stereo checkpoints interleave left/right codebooks; each channel has its own delay pattern
        self.delays = [c // spec.channels for c in range(self.k)]
        self.max_delay = self.k // spec.channels - 1
        self.vocab = spec.vocab
        self.pad = spec.pad
        self.device = lm.device
        self.dtype = next(decoder.parameters()).dtype
        self.layers = decoder.layers
        self.heads = spec.heads
        self.dim = spec.hidden
        self.head_dim = self.dim // self.heads
        self.final_norm = decoder.layer_norm
        self.positions = decoder.embed_positions.weights
        self.embed, self.heads_w, self.qkv = share_weights(model)
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

        Texts are encoded one at a time and never padded (T5 is cheap next to decoding), so a
        segment's conditioning is bit-identical whatever else is in the batch.
        """
        import torch

        with torch.inference_mode():
            inputs = self.lm.tokenizer(text=[text], return_tensors="pt").to(self.device)
            states = self.lm.model.text_encoder(input_ids=inputs["input_ids"]).last_hidden_state.to(self.dtype)
            return self.project(states)[0] if self.project is not None else states[0]

    def _cross(self, encoded: list[torch.Tensor], length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cross-attention keys/values (layers, B, H, S, hd) over states padded to ``length``, and the mask."""
        import torch

        b = len(encoded)
        states = torch.zeros(b, length, self.dim, dtype=self.dtype, device=self.device)
        mask = torch.zeros(b, 1, 1, length, dtype=torch.bool, device=self.device)
        for i, e in enumerate(encoded):
            states[i, : e.shape[0]] = e
            mask[i, ..., : e.shape[0]] = True
        keys = torch.stack([self._split(layer.encoder_attn.k_proj(states)) for layer in self.layers])
        values = torch.stack([self._split(layer.encoder_attn.v_proj(states)) for layer in self.layers])
        return keys, values, mask

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
            bucket = state.cache_k.shape[3]
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
                for s in range(steps):  # eager: attend only as far as the furthest row has come
                    self.step(state, min(bucket, round_up(max(ends) + s + 1, POSITION_BUCKET)))
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
                torch.zeros(shape, dtype=self.dtype, device=self.device),
                torch.zeros(shape, dtype=self.dtype, device=self.device),
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
        k = state.filled.shape[1]
        for (_offset, start), members in groups.items():
            index = torch.tensor(members, device=self.device)
            rows = torch.cat([index, index + b]) if state.plan.guidance else index
            tokens = state.filled[index, :, :start]
            if state.plan.guidance:
                tokens = torch.cat([tokens, tokens])
            hidden = self.embed[torch.arange(k, device=self.device)[None, :, None], tokens].sum(1)
            if prefixes is not None:
                prefix = [prefixes[i][0] for i in members]
                if state.plan.guidance:
                    prefix += [prefixes[i][1] for i in members]
                hidden = torch.cat([torch.stack(prefix), hidden], dim=1)
            self._prefill_rows(hidden, rows, index, state)

    def _prefill_rows(self, hidden: torch.Tensor, rows: torch.Tensor, index: torch.Tensor, state: StepState) -> None:
        """A causal multi-position forward over embeddings ``hidden`` (n, T, D) writing the cache of ``rows``."""
        import torch.nn.functional as F

        n, steps, _ = hidden.shape
        cond = index.shape[0]
        hidden = hidden + self.positions[:steps].to(hidden.dtype)
        for i, layer in enumerate(self.layers):
            residual = hidden
            q, kk, v = F.linear(layer.self_attn_layer_norm(hidden), self.qkv[i]).split(self.dim, dim=-1)
            q, kk, v = self._split(q), self._split(kk), self._split(v)
            state.cache_k[i, rows, :, :steps] = kk
            state.cache_v[i, rows, :, :steps] = v
            attn = F.scaled_dot_product_attention(q, kk, v, is_causal=True)
            hidden = residual + layer.self_attn.out_proj(attn.transpose(1, 2).reshape(n, steps, self.dim))
            if not self.prefixed:
                hidden = hidden.clone()
                qc = self._split(layer.encoder_attn.q_proj(layer.encoder_attn_layer_norm(hidden[:cond])))
                attn = F.scaled_dot_product_attention(
                    qc, state.cross_k[i, index], state.cross_v[i, index], attn_mask=state.cross_mask[index]
                )
                hidden[:cond] += layer.encoder_attn.out_proj(attn.transpose(1, 2).reshape(cond, steps, self.dim))
            hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(hidden))))

    def step(self, state: StepState, window: int | None = None) -> None:
        """One decoding step for every row: feed the code at ``pos``, sample ``pos + 1``, advance.

        Only tensor operations with fixed shapes (no ``.item()``, no Python branch on device values), so
        it can be compiled with ``fullgraph=True`` or captured in a CUDA graph.

        Args:
            state: the batch's buffers, updated in place.
            window: attend to the first ``window`` cache positions only (eager; must cover every
                row's position); None: the whole bucket (fixed shapes).
        """
        import torch
        import torch.nn.functional as F

        b, k, bucket = state.filled.shape
        guidance = state.plan.guidance
        window = state.cache_k.shape[3] if window is None else window
        pos = state.pos  # code positions; the cache position adds the row's conditioning prefix
        at_cache = pos + state.offset
        pos_rows = torch.cat([at_cache, at_cache]) if guidance else at_cache
        n = pos_rows.shape[0]
        tokens = state.filled.gather(2, pos.view(b, 1, 1).expand(b, k, 1))  # (B, K, 1)
        if guidance:
            tokens = torch.cat([tokens, tokens])
        hidden = self.embed[torch.arange(k, device=self.device)[None, :, None], tokens].sum(1)  # (rows, 1, D)
        hidden = hidden + self.positions.index_select(0, pos_rows).to(hidden.dtype)[:, None]
        mask = (torch.arange(window, device=self.device) <= pos_rows[:, None]).view(n, 1, 1, window)
        where = pos_rows.view(n, 1, 1, 1).expand(n, self.heads, 1, self.head_dim)
        for i, layer in enumerate(self.layers):
            residual = hidden
            q, kk, v = F.linear(layer.self_attn_layer_norm(hidden), self.qkv[i]).split(self.dim, dim=-1)
            state.cache_k[i].scatter_(2, where, self._split(kk))
            state.cache_v[i].scatter_(2, where, self._split(v))
            attn = F.scaled_dot_product_attention(
                self._split(q), state.cache_k[i, :, :, :window], state.cache_v[i, :, :, :window], attn_mask=mask
            )
            hidden = residual + layer.self_attn.out_proj(attn.transpose(1, 2).reshape(n, 1, self.dim))
            if not self.prefixed:
                qc = self._split(layer.encoder_attn.q_proj(layer.encoder_attn_layer_norm(hidden[:b])))
                attn = F.scaled_dot_product_attention(
                    qc, state.cross_k[i], state.cross_v[i], attn_mask=state.cross_mask
                )
                cross = layer.encoder_attn.out_proj(attn.transpose(1, 2).reshape(b, 1, self.dim))
                hidden = hidden + (torch.cat([cross, torch.zeros_like(cross)]) if guidance else cross)
            hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(hidden))))
        last = self.final_norm(hidden[:, 0])  # (rows, D)
        logits = torch.einsum("rd,kvd->rkv", last, self.heads_w).float()
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

        On CUDA, pass ``mode="reduce-overhead"`` to replay the step as a CUDA graph.
        """
        import torch

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


def share_weights(model: Any) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Stack embeddings and LM heads and fuse q/k/v, leaving the modules' weights as views of them.

    The weights are then held once: the fast loop uses the stacked tensors, transformers' modules
    (the reference engine) keep working on the same memory. Idempotent.

    Returns:
        (embeddings (K, V+1, D), LM heads (K, V, D), fused q/k/v per layer (3D, D)).
    """
    import torch

    decoder = model.decoder.model.decoder
    cached = getattr(decoder, "_composer_shared", None)
    if cached is not None:
        return cached

    def stack(modules: list[Any]) -> torch.Tensor:
        whole = torch.stack([m.weight.detach() for m in modules])
        for i, m in enumerate(modules):
            m.weight = torch.nn.Parameter(whole[i], requires_grad=False)
        return whole

    with torch.no_grad():
        embed = stack(list(decoder.embed_tokens))
        heads = stack(list(model.decoder.lm_heads))
        qkv = []
        for layer in decoder.layers:
            parts = [layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]
            fused = torch.cat([p.weight.detach() for p in parts])
            rows = parts[0].weight.shape[0]
            for j, p in enumerate(parts):
                p.weight = torch.nn.Parameter(fused[j * rows : (j + 1) * rows], requires_grad=False)
            qkv.append(fused)
    decoder._composer_shared = (embed, heads, qkv)
    return embed, heads, qkv


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def text_bucket(tokens: int) -> int:
    """The padded length of a text of ``tokens`` T5 tokens (fixed, so conditioning is batch-independent)."""
    return max(MIN_TEXT_LEN, round_up(tokens, TEXT_BUCKET))
