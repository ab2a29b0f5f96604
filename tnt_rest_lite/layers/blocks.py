"""Transformer building blocks shared by the models: MLP, DropPath, the pre-norm block, weight init."""

from __future__ import annotations

import torch
from torch import nn

from .attention import Attention

__all__ = ["Mlp", "DropPath", "TransformerBlock", "drop_path", "init_weights"]


class Mlp(nn.Module):
    """Two linear layers with a GELU between: the feed-forward half of a transformer block."""

    def __init__(
        self, in_features: int, hidden_features: int, out_features: int | None = None, drop: float = 0.0
    ) -> None:
        super().__init__()
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Stochastic depth: zero whole residual branches per sample, rescale the survivors."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Module form of :func:`drop_path`."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


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
