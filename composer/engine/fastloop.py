"""composer's MusicGen decoding loop: static KV cache, cross-attention computed once, batched CFG.

What it does differently from transformers' ``generate``:

- one pre-allocated self-attention KV cache per layer (no per-step concatenation);
- cross-attention keys/values computed once per segment;
- q/k/v projections fused into one matmul, the 4 codebook embeddings and LM heads stacked;
- conditional and unconditional (classifier-free guidance) passes in one batched forward;
- the codebook delay pattern handled in the loop, prompt positions teacher-forced;
- several segments with different texts, prompts, lengths and sampling settings in one batch;
- sampling on device from uniforms pre-drawn from a per-segment seeded generator, so a segment's
  tokens do not depend on what else is in the batch.

Greedy decoding gives the same tokens as transformers' ``generate`` on the same weights (tested);
seeded sampling is repeatable but uses its own random stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from composer.errors import EngineError

if TYPE_CHECKING:
    import torch

    from composer.engine.models import LoadedModel

PAD = 2048  # MusicGen's pad/bos code (one past the 2048 real codes)


@dataclass(frozen=True)
class Row:
    """One segment window in a batch."""

    text: str
    prompt: np.ndarray  # (codebooks, prompt_frames), may have 0 frames
    new_frames: int
    seed: int
    cfg: float
    top_k: int
    top_p: float
    temperature: float
    greedy: bool = False


class FastDecoder:
    """Decoding loop over the weights of a loaded transformers MusicGen model."""

    def __init__(self, lm: LoadedModel):
        import torch

        self.lm = lm
        model = lm.model
        decoder = model.decoder.model.decoder
        self.k = int(decoder.num_codebooks)
        self.device = lm.device
        self.dtype = next(decoder.parameters()).dtype
        self.layers = decoder.layers
        self.heads = int(model.decoder.config.num_attention_heads)
        self.dim = int(model.decoder.config.hidden_size)
        self.final_norm = decoder.layer_norm
        self.positions = decoder.embed_positions.weights
        with torch.inference_mode():
            self.embed = torch.stack([e.weight for e in decoder.embed_tokens])  # (K, V+1, D)
            self.heads_w = torch.stack([h.weight for h in model.decoder.lm_heads])  # (K, V, D)
            self.qkv = [
                torch.cat([layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight, layer.self_attn.v_proj.weight])
                for layer in self.layers
            ]
        self.project = (
            model.enc_to_dec_proj
            if model.text_encoder.config.hidden_size != model.decoder.config.hidden_size
            and model.decoder.config.cross_attention_hidden_size is None
            else None
        )

    # -- conditioning -------------------------------------------------------------------------
    def encode_text(self, text: str) -> torch.Tensor:
        """T5-encode and project one text: (S, D) in the decoder's dtype.

        Texts are encoded one at a time and never padded (T5 is cheap next to decoding), so a
        segment's conditioning is bit-identical whatever else is in the batch.
        """
        import torch

        with torch.inference_mode():
            inputs = self.lm.processor(text=[text], return_tensors="pt").to(self.device)
            states = self.lm.model.text_encoder(input_ids=inputs["input_ids"]).last_hidden_state.to(self.dtype)
            return self.project(states)[0] if self.project is not None else states[0]

    def _cross_kv(self, texts: list[str]) -> list[tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]]:
        """Cross-attention keys/values, computed once: groups of rows with equally long texts.

        Rows are grouped by text length so each group attends without padding. The unconditional
        (CFG) rows need none: their condition is all zeros, so their cross-attention output is
        exactly zero (as in transformers, where the null condition is fully masked).
        """
        import torch

        encoded = [self.encode_text(t) for t in texts]
        groups: dict[int, list[int]] = {}
        for i, e in enumerate(encoded):
            groups.setdefault(e.shape[0], []).append(i)
        out = []
        with torch.inference_mode():
            for members in groups.values():
                states = torch.stack([encoded[i] for i in members])
                kv = [
                    (self._split(layer.encoder_attn.k_proj(states)), self._split(layer.encoder_attn.v_proj(states)))
                    for layer in self.layers
                ]
                out.append((torch.tensor(members, device=self.device), kv))
        return out

    # -- the loop -----------------------------------------------------------------------------
    def generate(self, rows: list[Row], on_step: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
        """Generate every row; returns each row's new frames, (codebooks, new_frames) int64.

        Args:
            rows: the batch; texts, prompts, lengths and sampling settings may all differ.
            on_step: called with (steps done, steps total) after each decoding step.
        """
        import torch

        if not rows:
            return []
        k = self.k
        for row in rows:
            if row.prompt.shape[0] != k:
                raise EngineError(f"prompt must have {k} codebooks, got {row.prompt.shape[0]}")
        b = len(rows)
        use_cfg = any(r.cfg > 1 for r in rows)
        with torch.inference_mode():
            cross = self._cross_kv([r.text for r in rows])
            pattern = self._delay_pattern(rows)  # (B, K, L) with -1 where to sample
            length = pattern.shape[2]
            start = int(min(1 + r.prompt.shape[1] for r in rows))
            uniforms = self._uniforms(rows, length)
            rows_total = 2 * b if use_cfg else b
            cache_k = torch.zeros(len(self.layers), rows_total, self.heads, length, self.dim // self.heads,
                                  dtype=self.dtype, device=self.device)  # fmt: skip
            cache_v = torch.zeros_like(cache_k)
            filled = pattern.clone()
            params = self._sampling_params(rows)

            logits = self._forward(filled[:, :, :start], 0, cache_k, cache_v, cross, use_cfg)
            for t in range(start, length):
                tokens = self._sample(logits, params, uniforms[:, t], use_cfg, b)
                column = pattern[:, :, t]
                filled[:, :, t] = torch.where(column == -1, tokens, column)
                if t + 1 < length:
                    logits = self._forward(filled[:, :, t : t + 1], t, cache_k, cache_v, cross, use_cfg)
                if on_step is not None:
                    on_step(t - start + 1, length - start)
            out = []
            for i, row in enumerate(rows):
                frames = row.prompt.shape[1] + row.new_frames
                codes = torch.stack([filled[i, c, 1 + c : 1 + c + frames] for c in range(k)])
                out.append(codes[:, row.prompt.shape[1] :].cpu().numpy().astype(np.int64))
        return out

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        rows, seq, _ = x.shape
        return x.view(rows, seq, self.heads, self.dim // self.heads).transpose(1, 2)

    def _delay_pattern(self, rows: list[Row]) -> torch.Tensor:
        import torch

        k = self.k
        lengths = [1 + r.prompt.shape[1] + r.new_frames + k - 1 for r in rows]
        pattern = torch.full((len(rows), k, max(lengths)), PAD, dtype=torch.long)
        for i, row in enumerate(rows):
            p = row.prompt.shape[1]
            frames = p + row.new_frames
            for c in range(k):
                pattern[i, c, 1 + c : 1 + c + p] = torch.as_tensor(row.prompt[c])
                pattern[i, c, 1 + c + p : 1 + c + frames] = -1
        return pattern.to(self.device)

    def _uniforms(self, rows: list[Row], length: int) -> torch.Tensor:
        """(B, L, K) uniforms, each row from its own seeded generator (batch-independent)."""
        import torch

        out = []
        for row in rows:
            gen = torch.Generator(device="cpu").manual_seed(row.seed)
            out.append(torch.rand((length, self.k), generator=gen, dtype=torch.float64))
        return torch.stack(out).to(self.device)

    def _sampling_params(self, rows: list[Row]) -> dict[str, torch.Tensor]:
        import torch

        def col(values: list[float], dtype: Any = torch.float32) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=self.device)[:, None, None]

        return {
            "cfg": col([r.cfg for r in rows]),
            "temperature": col([r.temperature for r in rows]),
            "top_k": col([r.top_k for r in rows], torch.long),
            "top_p": col([r.top_p for r in rows]),
            "greedy": col([float(r.greedy) for r in rows]),
        }

    def _forward(
        self,
        tokens: torch.Tensor,  # (B, K, T) codes (CFG rows are duplicated here)
        position: int,
        cache_k: torch.Tensor,
        cache_v: torch.Tensor,
        cross: list[tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]],
        use_cfg: bool,
    ) -> torch.Tensor:
        """Run positions [position, position + T); return logits of the last one, (rows, K, V) float32."""
        import torch
        import torch.nn.functional as F

        if use_cfg:
            tokens = torch.cat([tokens, tokens])
        rows, k, steps = tokens.shape
        hidden = self.embed[torch.arange(k, device=self.device)[None, :, None], tokens].sum(1)  # (rows, T, D)
        hidden = hidden + self.positions[position : position + steps].to(hidden.dtype)
        end = position + steps
        causal = steps > 1
        if causal and position != 0:
            raise EngineError("internal: a multi-position forward must start at position 0")
        for i, layer in enumerate(self.layers):
            residual = hidden
            x = layer.self_attn_layer_norm(hidden)
            q, kk, v = F.linear(x, self.qkv[i]).split(self.dim, dim=-1)
            cache_k[i, :, :, position:end] = self._split(kk)
            cache_v[i, :, :, position:end] = self._split(v)
            attn = F.scaled_dot_product_attention(
                self._split(q), cache_k[i, :, :, :end], cache_v[i, :, :, :end], is_causal=causal
            )
            hidden = residual + layer.self_attn.out_proj(attn.transpose(1, 2).reshape(rows, steps, self.dim))
            residual = hidden
            q = self._split(layer.encoder_attn.q_proj(layer.encoder_attn_layer_norm(hidden)))
            attn = torch.zeros_like(q)  # unconditional rows stay zero
            for index, kv in cross:
                attn[index] = F.scaled_dot_product_attention(q[index], *kv[i])
            hidden = residual + layer.encoder_attn.out_proj(attn.transpose(1, 2).reshape(rows, steps, self.dim))
            residual = hidden
            x = layer.final_layer_norm(hidden)
            hidden = residual + layer.fc2(layer.activation_fn(layer.fc1(x)))
        last = self.final_norm(hidden[:, -1])  # (rows, D)
        return torch.einsum("rd,kvd->rkv", last, self.heads_w).float()

    def _sample(
        self, logits: torch.Tensor, params: dict[str, torch.Tensor], uniforms: torch.Tensor, use_cfg: bool, b: int
    ) -> torch.Tensor:
        """Next codes (B, K) from logits (rows, K, V)."""
        import torch

        if use_cfg:
            cond, uncond = logits[:b], logits[b:]
            logits = uncond + (cond - uncond) * params["cfg"]
        greedy = logits.argmax(-1)
        scores = logits / params["temperature"]
        vocab = scores.shape[-1]
        top_k = params["top_k"].clamp(max=vocab)
        if bool((top_k > 0).any()):
            kth = scores.sort(dim=-1, descending=True).values.gather(
                -1, (top_k.clamp(min=1) - 1).expand(-1, scores.shape[1], 1)
            )
            scores = torch.where((top_k > 0) & (scores < kth), torch.full_like(scores, -float("inf")), scores)
        top_p = params["top_p"]
        if bool(((top_p > 0) & (top_p < 1)).any()):
            sorted_scores, order = scores.sort(dim=-1)
            cumulative = sorted_scores.softmax(-1).cumsum(-1)
            remove = (cumulative <= (1 - top_p)) & (top_p > 0) & (top_p < 1)
            remove[..., -1] = False
            scores = scores.masked_fill(remove.scatter(-1, order, remove), -float("inf"))
        probs = scores.softmax(-1).double()
        cdf = probs.cumsum(-1)
        sampled = (cdf < uniforms[:, :, None] * cdf[..., -1:]).sum(-1).clamp(max=vocab - 1)
        return torch.where(params["greedy"][:, :, 0] > 0, greedy, sampled)
