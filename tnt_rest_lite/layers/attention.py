"""The one attention module (MSA and ResT's EMSA), its instance-norm scores and attention capture."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Attention", "capture_attention", "check_grid", "instance_norm_scores"]


@torch.fx.wrap  # a shape check: fx (timm's feature extraction) keeps it as one leaf call
def check_grid(size: tuple[int, int], n: int) -> None:
    """Raise unless the token grid ``size = (H, W)`` holds the ``n`` tokens given."""
    if size[0] * size[1] != n:
        raise ValueError(f"size={tuple(size)} does not match the {n} tokens given")


@torch.fx.wrap  # branches on the map's shape: a leaf for fx
def instance_norm_scores(probs: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """EMSA's InstanceNorm (no affine) of the soft-maxed scores ``(B, heads, N, N')``, per head and image.

    With one query and one key (ResT's stage 4 at a 32 px image under the published stem) IN of a
    single element is that element minus its own mean, i.e. zero; torch refuses a 1x1 plane, so
    the result is written out.
    """
    if probs.shape[-2] * probs.shape[-1] > 1:
        return F.instance_norm(probs, eps=eps)
    return torch.zeros_like(probs)


class Attention(nn.Module):
    """Multi-head self-attention with optional spatial reduction and head transform.

    Args:
        dim: token width :math:`d_m`.
        num_heads: number of heads :math:`k`; ``dim`` must be divisible by it.
        qkv_bias: bias on the query and key/value projections.
        attn_drop: dropout on the attention probabilities.
        proj_drop: dropout after the output projection.
        sr_ratio: ResT's spatial reduction ratio :math:`s`. With ``s > 1`` keys and values are
            computed from a map shrunk by a depthwise convolution (kernel ``s + 1``, stride ``s``)
            followed by a LayerNorm; this needs the token grid size at call time.
        head_transform: ResT's EMSA head interaction: a 1x1 convolution across the head axis
            of the scaled scores, softmax, then InstanceNorm over heads. Only built when
            ``num_heads > 1`` (one head has nothing to mix), as in the ResT paper.

    Forward:
        ``x`` of shape ``(B, N, dim)``; ``size=(H, W)`` with ``H * W == N`` is required when
        ``sr_ratio > 1``. Returns a tensor of shape ``(B, N, dim)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        sr_ratio: int = 1,
        head_transform: bool = False,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        if sr_ratio < 1:
            raise ValueError(f"sr_ratio must be >= 1, got {sr_ratio}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.sr_ratio = sr_ratio

        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        if sr_ratio > 1:
            # A depthwise conv with kernel s+1 and stride s shrinks the key/value map s times
            # per side, so the score matrix is N x N/s^2 instead of N x N.
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio + 1, stride=sr_ratio, padding=sr_ratio // 2, groups=dim)
            self.sr_norm = nn.LayerNorm(dim)
        self.head_transform = head_transform and num_heads > 1
        if self.head_transform:
            self.transform_conv = nn.Conv2d(num_heads, num_heads, kernel_size=1, stride=1)
            self.transform_norm = nn.InstanceNorm2d(num_heads)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

        # Set by capture_attention(); when True the maps of the last forward are kept in
        # self.maps (detached) and the explicit (non-fused) path is taken.
        self.keep_maps = False
        self.maps: dict[str, torch.Tensor] = {}

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def keys_values(self, x: torch.Tensor, size: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values, each ``(B, heads, N', head_dim)``; ``N' = N`` unless ``sr_ratio > 1``."""
        if self.sr_ratio > 1:
            if size is None:
                raise ValueError("Attention with sr_ratio > 1 needs size=(H, W) of the token grid")
            b, n, c = x.shape
            h, w = size
            check_grid(size, n)
            grid = x.transpose(1, 2).reshape(b, c, h, w)
            x = self.sr_norm(self.sr(grid).flatten(2).transpose(1, 2))
        b, n_kv, _ = x.shape
        kv = self.kv(x).reshape(b, n_kv, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return kv[0], kv[1]

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q = self._split_heads(self.q(x))
        k, v = self.keys_values(x, size)

        # While torch.jit traces the model (fvcore's counter does) the explicit path is taken, so the two
        # attention products appear as matmuls and are counted, as they are on timm's models.
        if not (self.keep_maps or self.head_transform or torch.jit.is_tracing()):
            # Fast path: fused kernel, no score matrix materialised by us.
            p = self.attn_drop.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=self.scale)
        else:
            scores = (q @ k.transpose(-2, -1)) * self.scale  # (B, heads, N, N')
            if self.head_transform:
                mixed = self.transform_conv(scores)  # 1x1 conv: heads talk to each other
                probs = mixed.softmax(dim=-1)
                attn = instance_norm_scores(probs, self.transform_norm.eps)  # IN restores head diversity
            else:
                mixed = scores
                attn = scores.softmax(dim=-1)
            if self.keep_maps:
                self.maps = {"scores": scores.detach(), "attn": attn.detach()}
                if self.head_transform:
                    self.maps["transformed"] = mixed.detach()
            out = self.attn_drop(attn) @ v
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(out))


@contextlib.contextmanager
def capture_attention(model: nn.Module) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
    """Keep the attention maps of every :class:`Attention` in ``model`` during the block.

    Yields a dict that, after a forward pass inside the block, maps each attention module's
    qualified name to its maps: ``"scores"`` (:math:`QK^T/\\sqrt{d}`), ``"attn"`` (the
    probabilities that weight the values) and, for EMSA, ``"transformed"`` (after the 1x1 conv).
    Each map has shape ``(B, heads, N, N')``.
    """
    modules = {name: m for name, m in model.named_modules() if isinstance(m, Attention)}
    captured: dict[str, dict[str, torch.Tensor]] = {}
    for m in modules.values():
        m.keep_maps, m.maps = True, {}
    try:
        yield captured
    finally:
        for name, m in modules.items():
            if m.maps:
                captured[name] = m.maps
            m.keep_maps, m.maps = False, {}
