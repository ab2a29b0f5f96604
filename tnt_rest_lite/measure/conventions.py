"""FLOP conventions and per-component breakdowns of ResT and TNT (measurements, not models)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..layers.attention import Attention
from ..models.trl_rest import ResT
from ..models.trl_tnt import TNT
from .complexity import FlopReport, attention_product_hooks, count_flops

__all__ = [
    "paper_convention_flops",
    "flop_conventions",
    "FLOP_CONVENTIONS",
    "PUBLISHED_FLOPS_CONVENTION",
    "attention_geometry",
    "se_extra_params",
    "COMPONENTS",
    "component_of",
    "complexity_breakdown",
]


def _probe_forward(model: nn.Module, h: int, w: int, handles: list[Any]) -> None:
    """One forward pass of a zero image of ``h`` x ``w`` in eval mode for ``handles``' hooks, then their removal."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, model.config.in_chans, h, w))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def paper_convention_flops(
    model: ResT, image_size: int | tuple[int, int] = 224, include_norms: bool = False
) -> dict[str, int]:
    """Multiply-adds counted the way the ResT authors count them (their ``get_flops.py``).

    Their module counter (mmcv's) sees convolution and linear modules: a convolution costs
    ``output elements x (in_channels / groups) x k_h x k_w`` plus one per output element for the
    bias, a linear layer ``output elements x in_features``. The two attention products, which are
    not modules, they add by hand: ``2 N N' C`` per block (``q k^T`` and ``attn v``, ``N`` query
    tokens, ``N'`` key tokens, ``C`` channels). Here ``N`` and ``N'`` are read from the tensors.
    ``include_norms`` also adds mmcv's count for BatchNorm/LayerNorm/InstanceNorm (elements,
    doubled when affine) and ReLU (elements), which the counter includes too.

    Returns ``{"conv", "linear", "attention_products", "norms_and_relu", "total"}``, one image.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    counts = {"conv": 0, "linear": 0, "attention_products": 0, "norms_and_relu": 0}

    def conv_hook(m: nn.Conv2d, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        per_output = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        counts["conv"] += out.numel() * per_output + (out.numel() if m.bias is not None else 0)

    def linear_hook(m: nn.Linear, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        counts["linear"] += out.numel() * m.in_features

    def norm_hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        affine = getattr(m, "affine", False) or getattr(m, "elementwise_affine", False)
        counts["norms_and_relu"] += inputs[0].numel() * (2 if affine else 1)

    def relu_hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        counts["norms_and_relu"] += inputs[0].numel()

    # the hand-added 2 N N' C per attention block: the same hooks count_flops measures the products with
    products: dict[str, int] = {}
    handles = attention_product_hooks(model, products)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif include_norms and isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, nn.InstanceNorm2d)):
            handles.append(m.register_forward_hook(norm_hook))
        elif include_norms and isinstance(m, nn.ReLU):
            handles.append(m.register_forward_hook(relu_hook))
    _probe_forward(model, h, w, handles)
    counts["attention_products"] = sum(products.values())
    counts["total"] = sum(counts.values())
    return counts


# The FLOP conventions chapter 02 reconciles, keyed as flop_conventions() returns them.
FLOP_CONVENTIONS: dict[str, str] = {
    "fvcore": "fvcore (attention products counted as matmuls)",
    "fvcore_without_attention_products": "fvcore without the attention products",
    "paper_convention": "modules + 2NN'C (the authors' get_flops.py)",
    "modules_only": "modules only (conv + linear)",
}
# The convention closest to the supplement's FLOPs column (ResT-Lite with MSA: 1.6 G): a count without the
# attention products (fvcore's, which adds the norms, and the module counter's alone both round to it; the
# counts with the products are near 4.5 G). Chapter 02 derives it from the counts, a test checks it, and
# chapter 05 prints its FLOPs column in it.
PUBLISHED_FLOPS_CONVENTION = "fvcore_without_attention_products"


def flop_conventions(model: ResT, image_size: int = 224) -> dict[str, int]:
    """One image's multiply-adds under each of :data:`FLOP_CONVENTIONS`, plus ``attention_products``.

    ``fvcore`` is ``fvcore.nn.FlopCountAnalysis(model, x).total()`` as anyone calls it (convolutions,
    linear layers, norms, and both attention products); ``fvcore_without_attention_products`` is the same
    trace without ``q k^T`` and ``attn v``; the other two are :func:`paper_convention_flops`'s.
    """
    full = count_flops(model, image_size=image_size)
    paper = paper_convention_flops(model, image_size)
    return {
        "fvcore": full.total,
        "fvcore_without_attention_products": full.total - full.attention_products,
        "paper_convention": paper["total"],
        "modules_only": paper["conv"] + paper["linear"],
        "attention_products": paper["attention_products"],
    }


def attention_geometry(model: ResT, image_size: int | tuple[int, int] = 224) -> list[dict[str, int]]:
    """What every stage's attention sees at ``image_size``: tokens ``N``, keys ``N'``, their ratio.

    Read from the tensors of one forward pass (hooks on the first block of each stage), not from a
    formula: ``{"stage", "map", "tokens", "keys", "ratio", "heads", "score_elements"}`` per stage,
    where ``map`` is the side of the stage's token map, ``ratio = N / N'`` (the published ResT-Lite
    at 224 px: 64, 16, 4, 1) and ``score_elements = N * N'``, the size of one head's score map
    (the map EMSA's head transform convolves and normalises).
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    rows: list[dict[str, int]] = []
    tokens: dict[int, tuple[int, int]] = {}

    def make_hooks(stage: int, attn: Attention) -> tuple[Any, Any]:
        def pre(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            size = kwargs.get("size", args[1] if len(args) > 1 else None)
            tokens[stage] = (args[0].shape[1], size[0])

        def kv(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            n, side = tokens[stage]
            keys = inputs[0].shape[1]
            rows.append(
                dict(
                    stage=stage,
                    map=side,
                    tokens=n,
                    keys=keys,
                    ratio=n // keys,
                    heads=attn.num_heads,
                    score_elements=n * keys,
                )
            )

        return pre, kv

    handles = []
    for i in range(1, 5):
        attn = getattr(model, f"stage{i}")[0].attn
        pre, kv = make_hooks(i, attn)
        handles += [attn.register_forward_pre_hook(pre, with_kwargs=True), attn.kv.register_forward_hook(kv)]
    _probe_forward(model, h, w, handles)
    return rows


def se_extra_params(dim: int, ratio: float = 0.25) -> int:
    """Parameters one :class:`SqueezeExcite` adds: LN (2C) + Linear(C, rC) + Linear(rC, C)."""
    hidden = int(dim * ratio)
    return 2 * dim + (dim * hidden + hidden) + (hidden * dim + dim)


COMPONENTS = (
    "pixel embedding",
    "patch embedding",
    "inner blocks",
    "pixel->patch in blocks",
    "outer blocks",
    "SE",
    "final norm + head",
)


def component_of(name: str) -> str:
    """The component of :data:`COMPONENTS` that a parameter of :class:`TNT` belongs to."""
    if name.startswith("pixel_embed."):
        return "pixel embedding"
    if name.startswith(("patch_embed.", "cls_token", "pos_embed")):
        return "patch embedding"
    if name.startswith("blocks."):
        part = name.split(".")[2]
        if part == "inner":
            return "inner blocks"
        if part == "pixel_to_patch":
            return "pixel->patch in blocks"
        return "SE" if name.split(".")[3] == "se" else "outer blocks"
    return "final norm + head"


def complexity_breakdown(model: TNT, report: FlopReport | None = None) -> dict[str, dict[str, int]]:
    """Parameters (and FLOPs, from an fvcore ``report`` of ``model``) per component.

    Returns ``{component: {"params": ..., "flops": ...}}`` in the order of :data:`COMPONENTS`; the
    components partition the model, so each column sums to the model's total.
    """
    out = {c: {"params": 0} for c in COMPONENTS}
    for name, p in model.named_parameters():
        out[component_of(name)]["params"] += p.numel()
    if report is not None:
        flops = dict.fromkeys(COMPONENTS, 0)
        flops["pixel embedding"] = report.module("pixel_embed")
        flops["patch embedding"] = report.module("patch_embed")
        for i in range(len(model.blocks)):
            se = report.module(f"blocks.{i}.outer.se")
            flops["inner blocks"] += report.module(f"blocks.{i}.inner")
            flops["pixel->patch in blocks"] += report.module(f"blocks.{i}.pixel_to_patch")
            flops["outer blocks"] += report.module(f"blocks.{i}.outer") - se
            flops["SE"] += se
        flops["final norm + head"] = report.module("norm") + report.module("head")
        for c in COMPONENTS:
            out[c]["flops"] = flops[c]
    return out
