"""Counting parameters and FLOPs with fvcore, per model, module and operator.

fvcore traces the model with ``torch.jit.trace`` and counts the operators it has a handle
for. Its convention: **one multiply-add is one flop** (so its "FLOPs" are MACs), and operators
without a handle are skipped with a warning: element-wise ops, softmax, GELU, and, notably,
``aten::scaled_dot_product_attention``, the fused attention kernel. A model that runs its
attention through that kernel therefore reads lower under plain fvcore than one that writes
``q @ k^T`` and ``attn @ v`` as matmuls. :func:`count_flops` can add a handle for the fused
kernel (``count_fused_attention=True``) so both conventions can be shown side by side.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["FlopReport", "count_params", "count_flops", "sdpa_flop_handle"]


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

    @property
    def gflops(self) -> float:
        return self.total / 1e9

    def module(self, name: str) -> int:
        """FLOPs of one module (qualified name, ``""`` for the whole model)."""
        return self.by_module.get(name, 0)


def count_flops(
    model: nn.Module,
    inputs: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
    *,
    image_size: int | tuple[int, int] = 224,
    in_chans: int = 3,
    count_fused_attention: bool = True,
) -> FlopReport:
    """Count one image's FLOPs with fvcore.

    Args:
        model: any module; it is put in eval mode for the trace.
        inputs: example input; default a ``(1, in_chans, H, W)`` zero tensor.
        count_fused_attention: add a handle for ``scaled_dot_product_attention`` (fvcore skips
            it by default). ``False`` gives plain fvcore's number.
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
    try:
        analysis = FlopCountAnalysis(model, inputs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        if count_fused_attention:
            analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_handle)
        with torch.no_grad():
            total = int(analysis.total())
            by_module = {k: int(v) for k, v in analysis.by_module().items()}
            by_operator = {k: int(v) for k, v in analysis.by_operator().items()}
            skipped = dict(Counter(analysis.unsupported_ops()))
    finally:
        model.train(was_training)
    return FlopReport(total, by_module, by_operator, skipped)
