"""Counting parameters and FLOPs with fvcore, per model, module and operator.

fvcore traces the model with ``torch.jit.trace`` and counts the operators it has a handle
for. Its convention: **one multiply-add is one flop** (so its "FLOPs" are MACs), and operators
without a handle are skipped with a warning: element-wise ops, softmax, GELU, and, notably,
``aten::scaled_dot_product_attention``, the fused attention kernel.

The package's :class:`~tnt_rest_lite.layers.Attention` takes its explicit ``q @ k^T`` /
``attn @ v`` path while it is traced, so plain ``fvcore.nn.FlopCountAnalysis(model, x).total()``
counts the two attention products as matmuls, exactly as it does on timm's models (our TNT-S
and timm's read the same). :func:`count_flops` gives that number and measures the products of
every package attention module during the same trace (``FlopReport.attention_products``);
``attention_products=False`` leaves them out, the convention of counters that only see modules.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import reference
from ..layers.attention import Attention
from ..models._registry import create_model

__all__ = [
    "FlopReport",
    "attention_product_hooks",
    "count_params",
    "count_flops",
    "sdpa_flop_handle",
    "FULL_SIZE_MODELS",
    "flop_convention_table",
    "flop_convention_markdown",
]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (every element of every parameter tensor)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def sdpa_flop_handle(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``.

    ``q`` is ``(..., L, E)``, ``k`` ``(..., S, E)``, ``v`` ``(..., S, Ev)``: the kernel computes
    ``q k^T`` (L*S*E multiply-adds per batch and head) and ``attn v`` (L*S*Ev), counted here
    exactly as fvcore counts the same two products written as ``matmul``.
    """
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(t) for t in inputs[:3])
    batch = 1
    for d in q[:-2]:
        batch *= d
    length, emb = q[-2], q[-1]
    src, emb_v = k[-2], v[-1]
    return batch * length * src * (emb + emb_v)


@dataclass
class FlopReport:
    """FLOPs (fvcore convention: multiply-adds) of one forward pass of one image."""

    total: int
    by_module: dict[str, int]
    by_operator: dict[str, int]
    skipped_ops: dict[str, int] = field(default_factory=dict)  # operator -> times seen, not counted
    # q k^T and attn v of the package's attention modules, 2 N N' C multiply-adds each; included in the
    # total unless count_flops(..., attention_products=False) left them out
    attention_products: int = 0

    @property
    def gflops(self) -> float:
        return self.total / 1e9

    def module(self, name: str) -> int:
        """FLOPs of one module (qualified name, ``""`` for the whole model)."""
        return self.by_module.get(name, 0)


def attention_product_hooks(model: nn.Module, counts: dict[str, int]) -> list[Any]:
    """Hooks that add each package attention module's ``q k^T`` and ``attn v`` to ``counts[name]``.

    fvcore counts a ``(N x d) @ (d x N')`` product per head as ``N d N'`` multiply-adds, so both
    products of a module with width ``C`` cost ``2 N N' C`` per image; ``N'`` (keys after ResT's
    spatial reduction) is read from the key/value projection's input.
    """

    queries: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if not isinstance(module, Attention):
            continue

        def pre_hook(m: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            # int(): under the tracer a shape entry can be a traced tensor
            queries[name] = int(args[0].shape[0]) * int(args[0].shape[1])  # batch x query tokens

        def kv_hook(m: nn.Module, args: tuple[Any, ...], out: Any, name: str = name, dim: int = module.dim) -> None:
            counts[name] = counts.get(name, 0) + 2 * queries[name] * int(args[0].shape[1]) * dim

        handles += [module.register_forward_pre_hook(pre_hook), module.kv.register_forward_hook(kv_hook)]
    return handles


def count_flops(
    model: nn.Module,
    inputs: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
    *,
    image_size: int | tuple[int, int] = 224,
    in_chans: int = 3,
    attention_products: bool = True,
) -> FlopReport:
    """Count one image's FLOPs with fvcore, as ``FlopCountAnalysis(model, inputs)`` counts them.

    Args:
        model: any module; it is put in eval mode for the trace.
        inputs: example input; default a ``(1, in_chans, H, W)`` zero tensor.
        attention_products: keep ``q k^T`` and ``attn v`` in the count (fvcore's own number, on our
            models as on timm's). ``False`` subtracts the products of the package's attention modules
            from the total, from every enclosing module and from ``matmul``: the count of a counter
            that only sees modules (the ResT authors' counter before they add the products by hand).
    """
    with warnings.catch_warnings():
        # fvcore's import decorates a helper with torch.jit.script, which torch 2.x flags as deprecated;
        # the warning is about fvcore's code, not ours, and would clutter every notebook that counts.
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    if inputs is None:
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        inputs = torch.zeros(1, in_chans, h, w)
    was_training = model.training
    model.eval()
    products: dict[str, int] = {}
    handles = attention_product_hooks(model, products)
    try:
        analysis = FlopCountAnalysis(model, inputs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        # models outside the package that run the fused kernel while traced get its products counted too
        analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_handle)
        with torch.no_grad():
            total = int(analysis.total())
            by_module = {k: int(v) for k, v in analysis.by_module().items()}
            by_operator = {k: int(v) for k, v in analysis.by_operator().items()}
            skipped = dict(Counter(analysis.unsupported_ops()))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    all_products = sum(products.values())
    if not attention_products:
        total -= all_products
        by_operator["matmul"] = by_operator.get("matmul", 0) - all_products
        for name, count in products.items():
            parts = name.split(".")
            for depth in range(len(parts) + 1):  # the module itself and every module that encloses it
                key = ".".join(parts[:depth])
                by_module[key] = by_module.get(key, 0) - count
    return FlopReport(total, by_module, by_operator, skipped, all_products)


# Every full-size model of both papers, in the order the two-convention table lists them.
FULL_SIZE_MODELS: dict[str, str] = {
    "deit_s": "DeiT-S",
    "tnt_s": "TNT-S",
    "tnt_s_se": "TNT-S + SE",
    "tnt_b": "TNT-B",
    "rest_lite": "ResT-Lite (EMSA)",
    "rest_lite_msa": "ResT-Lite (MSA)",
    "rest_small": "ResT-Small",
    "rest_base": "ResT-Base",
    "rest_large": "ResT-Large",
}


def flop_convention_table(
    models: dict[str, nn.Module] | None = None, names: list[str] | None = None, image_size: int = 224
) -> list[dict[str, Any]]:
    """Parameters and one image's FLOPs of every full-size model under both fvcore conventions.

    One fvcore trace per model (:func:`count_flops`) gives both: ``with_products`` (fvcore's total,
    ``q k^T`` and ``attn v`` included: the TNT paper's convention) and ``without_products`` (the
    same total less the attention products: what the ResT paper's column rounds to). ``published``
    is the paper's GFLOPs from :data:`tnt_rest_lite.reference.MODELS`; ``closer`` names the
    convention whose GFLOPs are nearer to it (``"with"`` or ``"without"``), ``None`` without one.

    Args:
        models: already built models by registry name, reused instead of building them again.
        names: registry names (default :data:`FULL_SIZE_MODELS`).
    """

    rows: list[dict[str, Any]] = []
    for name in names or list(FULL_SIZE_MODELS):
        model = (models or {}).get(name)
        built = model is None
        if built:
            model = create_model(name)
        report = count_flops(model, image_size=image_size)
        with_g = report.total / 1e9
        without_g = (report.total - report.attention_products) / 1e9
        published = reference.published(name, "flops_g")
        closer = None
        if published is not None:
            closer = "with" if abs(with_g - published) <= abs(without_g - published) else "without"
        rows.append(
            {
                "model": name,
                "label": FULL_SIZE_MODELS.get(name, name),
                "params": count_params(model),
                "with_products": report.total,
                "without_products": report.total - report.attention_products,
                "attention_products": report.attention_products,
                "published_gflops": published,
                "source": reference.MODELS.get(name, {}).get("source"),
                "closer": closer,
            }
        )
        if built:
            del model
    return rows


def flop_convention_markdown(rows: list[dict[str, Any]]) -> str:
    """A markdown table of :func:`flop_convention_table`'s rows; the convention nearer the paper is bold."""
    lines = [
        "| model | params (M) | GFLOPs, fvcore with attention products | GFLOPs, without them (ResT convention) "
        "| paper GFLOPs | reproduces the paper |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        with_s, without_s = f"{r['with_products'] / 1e9:.2f}", f"{r['without_products'] / 1e9:.2f}"
        if r["closer"] == "with":
            with_s = f"**{with_s}**"
        elif r["closer"] == "without":
            without_s = f"**{without_s}**"
        paper = "–" if r["published_gflops"] is None else f"{r['published_gflops']:.1f} ({r['source']})"
        verdict = {"with": "with products", "without": "without products", None: "–"}[r["closer"]]
        lines.append(f"| {r['label']} | {r['params'] / 1e6:.2f} | {with_s} | {without_s} | {paper} | {verdict} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
