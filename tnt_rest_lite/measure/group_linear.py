"""Parameter and multiply-add counts of GL, ResT's group linear operation (supplement A.4)."""

from __future__ import annotations

from ..layers.group_linear import check_groups

__all__ = ["group_linear_params", "group_linear_flops"]


def group_linear_params(dim: int, groups: int, bias: bool = False) -> int:
    """Parameters of GL: ``g`` blocks of ``(d/g)^2`` weights = ``d^2 / g`` (+ ``d`` biases)."""
    check_groups(dim, groups)
    return dim * dim // groups + (dim if bias else 0)


def group_linear_flops(tokens: int, dim: int, groups: int) -> int:
    """Multiply-adds of GL on ``n`` tokens: every output channel sums ``d/g`` products, ``n d^2 / g``."""
    check_groups(dim, groups)
    return tokens * dim * dim // groups
