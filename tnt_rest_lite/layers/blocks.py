"""Transformer building blocks shared by the models: the pre-norm block and the weight init.

The MLP and DropPath are timm's (``timm.layers.Mlp``: ``fc1``, GELU, dropout, ``fc2``, dropout;
``timm.layers.DropPath``: stochastic depth, survivors rescaled by ``1 / keep``), re-exported here.
"""

from __future__ import annotations

import torch
from timm.layers import DropPath, Mlp, drop_path
from torch import nn

from .attention import Attention

__all__ = ["Mlp", "DropPath", "TransformerBlock", "drop_path", "init_weights"]


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: ``x += Attn(LN(x)); x += MLP(LN(x))``, each branch with DropPath.

    The one block of every model in the package: DeiT's blocks, TNT's inner and outer transformers
    and ResT's stage blocks differ only in their arguments.

    Args:
        dim, num_heads, qkv_bias, attn_drop, sr_ratio, head_transform: passed to :class:`Attention`
            (ResT's EMSA is ``sr_ratio > 1`` and ``head_transform=True``).
        mlp_ratio: hidden width of the MLP over ``dim``.
        drop: dropout after the attention projection and inside the MLP.
        drop_path: stochastic-depth rate of both residual branches.
        norm_eps: LayerNorm epsilon (timm's DeiT uses 1e-6, TNT and ResT torch's default 1e-5).
        mlp_gate: optional module ``g`` on the MLP branch, which becomes ``m + g(m)``; TNT's SE
            module (TNT supplement, section 2) is such a gate. Stored as ``self.se``.

    Forward: ``x`` of shape ``(B, N, dim)``; ``size=(H, W)`` of the token grid when the attention
    reduces keys and values spatially (ResT).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-5,
        sr_ratio: int = 1,
        head_transform: bool = False,
        mlp_gate: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(
            dim,
            num_heads,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=drop,
            sr_ratio=sr_ratio,
            head_transform=head_transform,
        )
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.se = mlp_gate

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), size=size))
        m = self.mlp(self.norm2(x))
        if self.se is not None:
            m = m + self.se(m)
        return x + self.drop_path(m)


def init_weights(m: nn.Module, conv: bool = False) -> None:
    """The transformer initialisation all our models use (``model.apply(init_weights)``).

    Linear weights (and conv weights when ``conv=True``, as ResT does) from a normal distribution
    truncated at two standard deviations, std 0.02; zero biases; norms start as the identity.
    """
    if isinstance(m, nn.Linear) or (conv and isinstance(m, nn.Conv2d)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
