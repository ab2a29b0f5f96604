"""GL, the group linear operation of ResT's supplement (A.4, eqs. (2)-(3)).

Split the ``d`` channels of ``x`` (shape ``(..., n, d)``) into ``g`` groups of ``d / g``
channels, map each group with its own ``(d/g) x (d/g)`` matrix, and concatenate:

    x = Concat(x_1, ..., x_g),   y_i = x_i W_i,   y = Concat(y_1, ..., y_g).

That is one ``d x d`` matrix with ``g`` blocks on its diagonal, so GL has ``d^2 / g`` weights
and costs ``n d^2 / g`` multiply-adds. ``g = 1`` is an ordinary linear layer; ``g = d`` gives
every channel one scale of its own. ResT sets ``g = d`` and lets each channel also look at its
3x3 spatial neighbourhood: that is the depthwise 3x3 convolution of its position encoding
(``PA.pa_conv`` in :mod:`tnt_rest_lite.models.trl_rest`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["GroupLinear"]


def check_groups(dim: int, groups: int) -> None:
    if groups < 1 or dim % groups != 0:
        raise ValueError(f"groups={groups} must be a positive divisor of dim={dim}")


class GroupLinear(nn.Module):
    """Group linear (GL) with ``groups`` groups: ``y_i = x_i W_i`` per channel group.

    Args:
        dim: channel width ``d`` of input and output.
        groups: number of groups ``g``; must divide ``dim``.
        bias: add a bias per output channel.

    Forward: ``x`` of shape ``(..., dim)`` -> same shape.
    """

    def __init__(self, dim: int, groups: int, bias: bool = False) -> None:
        super().__init__()
        check_groups(dim, groups)
        self.dim, self.groups = dim, groups
        self.group_dim = dim // groups
        # weight[i] is W_i of eq. (3), applied as x_i @ W_i (input channels x output channels).
        self.weight = nn.Parameter(torch.empty(groups, self.group_dim, self.group_dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None
        bound = 1.0 / math.sqrt(self.group_dim)  # same scale as nn.Linear's default init
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"GroupLinear expects {self.dim} channels in the last axis, got {tuple(x.shape)}")
        parts = x.reshape(*x.shape[:-1], self.groups, self.group_dim)  # eq. (2): split into x_1..x_g
        y = torch.einsum("...gi,gio->...go", parts, self.weight)  # eq. (3): y_i = x_i W_i
        y = y.reshape(x.shape)  # concatenate y_1..y_g
        return y if self.bias is None else y + self.bias

    def block_diagonal(self) -> torch.Tensor:
        """The ``d x d`` matrix ``W`` with ``y = x W``: the ``W_i`` on the diagonal, zeros elsewhere."""
        return torch.block_diag(*self.weight)

    def to_conv1d(self) -> nn.Conv1d:
        """The same map as ``Conv1d(d, d, kernel_size=1, groups=g)`` acting on ``(B, d, n)``."""
        conv = nn.Conv1d(self.dim, self.dim, kernel_size=1, groups=self.groups, bias=self.bias is not None)
        with torch.no_grad():
            # Conv1d keeps (out, in/g, k) per group, stacked group by group: that is W_i transposed.
            conv.weight.copy_(self.weight.transpose(1, 2).reshape(self.dim, self.group_dim, 1))
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        return conv

    def extra_repr(self) -> str:
        return f"dim={self.dim}, groups={self.groups}, bias={self.bias is not None}"
