"""The decoder weights as the fast loop uses them, prepared once per loaded model.

On the CPU every product's weight is packed for its kernel (:mod:`composer.engine.kernels`) and the
transformers modules' own copies are released, so the weights are held once. Should transformers'
own code run the decoder later (the reference engine, a comparison in a test), a hook gives the
modules their weights back first, unpacked.

On CUDA the weights stay where they are: the q/k/v projections are fused and the codebook
embeddings and LM heads stacked, each as one tensor of which the modules' weights are views.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from composer.engine.kernels import ROWS, Linear, activation_dtype

if TYPE_CHECKING:
    import torch


@dataclass
class LayerWeights:
    """One decoder layer."""

    norm_self: tuple[torch.Tensor, torch.Tensor]  # layer norm before self-attention (weight, bias)
    qkv: Linear  # fused q/k/v projection: (3 * hidden, hidden)
    out: Linear  # self-attention output projection
    norm_cross: tuple[torch.Tensor, torch.Tensor] | None  # None: no cross-attention (melody models)
    cross_q: Linear | None
    cross_k: Linear | None
    cross_v: Linear | None
    cross_out: Linear | None
    norm_ffn: tuple[torch.Tensor, torch.Tensor]
    fc1: Linear
    fc2: Linear


@dataclass
class DecoderWeights:
    """Everything the decode step reads."""

    kernel: str  # "plain" (CUDA) or a CPU kernel of composer.engine.kernels
    dtype: torch.dtype  # hidden states and KV cache
    embed: torch.Tensor  # (codebooks, vocab + 1, hidden)
    positions: torch.Tensor  # sinusoidal position table (max_positions, hidden)
    layers: list[LayerWeights]
    final_norm: tuple[torch.Tensor, torch.Tensor]
    heads: Linear  # all codebooks' LM heads as one product: (codebooks * vocab, hidden)
    eps: float  # layer norm epsilon
    activation: Callable[[torch.Tensor], torch.Tensor]

    def linears(self) -> list[Linear]:
        out = [self.heads]
        for layer in self.layers:
            out += [lin for lin in (layer.qkv, layer.out, layer.cross_q, layer.cross_k, layer.cross_v,
                                    layer.cross_out, layer.fc1, layer.fc2) if lin is not None]  # fmt: skip
        return out

    def nbytes(self) -> int:
        """Bytes held by the prepared products' weights."""
        return sum(lin.nbytes for lin in self.linears())


def decoder_weights(model: Any, kernel: str, pad: str = "whole", rows: int = ROWS) -> DecoderWeights:
    """The fast loop's view of a transformers MusicGen model's decoder, built once per (model, kernel, pad, rows).

    For a CPU kernel the modules' own copies of the packed weights are (again) released on every call,
    so the weights stay held once even after transformers' code had them back in between.
    """
    decoder = model.decoder.model.decoder
    cache: dict[str, DecoderWeights] = decoder.__dict__.setdefault("_composer_weights", {})
    key = "plain" if kernel == "plain" else f"{kernel}-r{rows}-{pad}"
    if key not in cache:
        if kernel != "plain":  # one packed copy at a time: another one would hold the weights twice
            restore_weights(model.decoder)
            for other in [k for k in cache if k != "plain"]:
                del cache[other]
        cache[key] = _plain(model) if kernel == "plain" else _packed(model, kernel, pad, rows)
    if kernel != "plain":
        _release(model)
    return cache[key]


def _norm(module: Any, dtype: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return module.weight.detach().to(dtype), module.bias.detach().to(dtype)


def _build(model: Any, kernel: str, dtype: Any, make: Callable[[list[Any]], Linear]) -> DecoderWeights:
    """The decoder's weights with every product made by ``make`` (from the modules whose rows it stacks)."""
    import torch

    decoder = model.decoder.model.decoder
    layers = []
    for layer in decoder.layers:
        attn, cross = layer.self_attn, getattr(layer, "encoder_attn", None)
        c = [make([getattr(cross, p)]) for p in ("q_proj", "k_proj", "v_proj", "out_proj")] if cross else [None] * 4
        layers.append(
            LayerWeights(
                norm_self=_norm(layer.self_attn_layer_norm, dtype),
                qkv=make([attn.q_proj, attn.k_proj, attn.v_proj]),
                out=make([attn.out_proj]),
                norm_cross=_norm(layer.encoder_attn_layer_norm, dtype) if cross is not None else None,
                cross_q=c[0],
                cross_k=c[1],
                cross_v=c[2],
                cross_out=c[3],
                norm_ffn=_norm(layer.final_layer_norm, dtype),
                fc1=make([layer.fc1]),
                fc2=make([layer.fc2]),
            )
        )
    heads = make(list(model.decoder.lm_heads))
    embed = getattr(decoder, "_composer_shared", None)
    embed = embed[0] if embed is not None else torch.stack([e.weight.detach() for e in decoder.embed_tokens])
    return DecoderWeights(
        kernel=kernel,
        dtype=dtype,
        embed=embed.to(dtype),
        positions=decoder.embed_positions.weights,
        layers=layers,
        final_norm=_norm(decoder.layer_norm, dtype),
        heads=heads,
        eps=float(decoder.layer_norm.eps),
        activation=decoder.layers[0].activation_fn,
    )


def _plain(model: Any) -> DecoderWeights:
    """Views of the modules' weights (fused q/k/v, stacked heads): nothing copied."""
    embed, heads, qkv = share_weights(model)
    decoder = model.decoder.model.decoder
    fused = {id(layer.self_attn.q_proj): w for layer, w in zip(decoder.layers, qkv, strict=True)}
    fused[id(model.decoder.lm_heads[0])] = heads.reshape(-1, heads.shape[-1])

    def make(modules: list[Any]) -> Linear:
        return Linear(fused[id(modules[0])] if len(modules) > 1 else modules[0].weight.detach(), "plain")

    return _build(model, "plain", embed.dtype, make)


def _packed(model: Any, kernel: str, pad: str, rows: int) -> DecoderWeights:
    """Pack every product for ``kernel``; the modules' copies are released by :func:`decoder_weights`."""
    import torch

    plan: list[tuple[Any, Linear, int, int, Any]] = []  # (module, packed, first row, rows, dtype) to restore

    def pack(modules: list[Any]) -> Linear:
        lin = Linear(torch.cat([m.weight.detach() for m in modules]), kernel, pad, rows)
        start = 0
        for m in modules:
            plan.append((m, lin, start, m.weight.shape[0], m.weight.dtype))
            start += m.weight.shape[0]
        return lin

    weights = _build(model, kernel, activation_dtype(kernel), pack)
    model.decoder.__dict__["_composer_release_plan"] = plan
    if "_composer_restore_hook" not in model.decoder.__dict__:  # transformers' forward gets them back first
        model.decoder._composer_restore_hook = model.decoder.register_forward_pre_hook(
            lambda module, _args: restore_weights(module)
        )
    return weights


def _release(model: Any) -> None:
    """Free the modules' copies of the packed weights (idempotent)."""
    import torch

    for m, _lin, _start, _rows, dtype in model.decoder.__dict__.get("_composer_release_plan", []):
        if m.weight.numel():
            m.weight = torch.nn.Parameter(torch.empty(0, dtype=dtype), requires_grad=False)


def restore_weights(causal_lm: Any) -> None:
    """Give transformers' decoder modules back the weights the fast loop packed (unpacked copies, exact)."""
    import torch

    dense: dict[int, torch.Tensor] = {}
    for m, lin, start, rows, dtype in causal_lm.__dict__.get("_composer_release_plan", []):
        if m.weight.numel():
            continue
        if id(lin) not in dense:
            dense[id(lin)] = lin.dense()
        m.weight = torch.nn.Parameter(dense[id(lin)][start : start + rows].to(dtype), requires_grad=False)


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
