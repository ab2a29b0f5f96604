"""DeiT-S: the plain vision transformer that TNT is compared against.

A 16x16 convolutional patch embedding, a class token, a learned position embedding, then
pre-norm transformer blocks (attention, MLP) and a linear head on the class token.
Architecture of timm's ``deit_small_patch16_224``; ``deit_s(pretrained=True)`` loads timm's
published weights through :func:`checkpoint_filter_fn`, and :func:`tnt_rest_lite.models._weights.load_timm`
converts any timm state dict of the same architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from timm.models import generate_default_cfgs
from torch import nn

from ..layers.blocks import TransformerBlock, init_weights
from ._builder import CLASS_TOKEN_FEATURES, ClassTokenModel, build, cfg, mini_cfg
from ._registry import register_model

__all__ = ["DeiTConfig", "PatchEmbed", "DeiT", "deit_s", "deit_s_mini", "checkpoint_filter_fn"]


@dataclass(frozen=True)
class DeiTConfig:
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    global_pool: str = "token"  # "token" (class token, as DeiT), "avg" (mean of the patches), "" (none)
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0


class PatchEmbed(nn.Module):
    """Cut the image into ``patch_size`` squares and project each to ``embed_dim`` (one conv)."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        if img_size % patch_size != 0:
            raise ValueError(f"img_size={img_size} must be a multiple of patch_size={patch_size}")
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size**2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, num_patches, embed_dim)


class DeiT(ClassTokenModel):
    """Vision transformer with a class token (DeiT without the distillation token).

    timm's model interface (``forward_features``, ``forward_head``, ``forward_intermediates``,
    ``reset_classifier``, ``feature_info``, ...) comes from :class:`ClassTokenModel`.
    """

    def __init__(self, config: DeiTConfig) -> None:
        super().__init__()
        c = self.config = config
        self.patch_embed = PatchEmbed(c.img_size, c.patch_size, c.in_chans, c.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, c.embed_dim))
        self.pos_drop = nn.Dropout(c.drop_rate)
        # Deeper blocks drop more (0 -> drop_path_rate); plain Python so the model builds on "meta" too.
        rates = [c.drop_path_rate * i / max(c.depth - 1, 1) for i in range(c.depth)]
        self.blocks = nn.ModuleList(
            TransformerBlock(
                c.embed_dim,
                c.num_heads,
                c.mlp_ratio,
                qkv_bias=c.qkv_bias,
                drop=c.drop_rate,
                attn_drop=c.attn_drop_rate,
                drop_path=r,
                norm_eps=1e-6,  # timm's ViT/DeiT LayerNorm epsilon
            )
            for r in rates
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=1e-6)
        self.head = nn.Linear(c.embed_dim, c.num_classes) if c.num_classes > 0 else nn.Identity()
        self.init_interface(c.embed_dim, c.patch_size, self.patch_embed.grid_size)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> tokens ``(B, 1 + num_patches, embed_dim)``: patches, class token, positions."""
        grid = self.patch_grid(x, "deit")
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pos_drop(x + self.resized_pos_embed(grid))

    def run_block(self, block: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        return block(tokens)

    def tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    @staticmethod
    def convert_timm_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """timm's ``vision_transformer`` keys -> ours: split the fused ``qkv`` into ``q`` and ``kv``."""
        out: dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            if ".attn.qkv." in key:
                dim = value.shape[0] // 3
                out[key.replace(".qkv.", ".q.")] = value[:dim]
                out[key.replace(".qkv.", ".kv.")] = value[dim:]
            else:
                out[key] = value
        return out


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: DeiT) -> dict[str, torch.Tensor]:
    """A published timm ViT/DeiT checkpoint -> our layout (timm's own filter first, then ours)."""
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn as timm_filter

    c = model.config
    with torch.device("meta"):  # shapes only: timm's filter resamples position embeddings by them
        reference = timm.create_model(
            "vit_small_patch16_224",
            img_size=c.img_size,
            patch_size=c.patch_size,
            embed_dim=c.embed_dim,
            depth=c.depth,
            num_heads=c.num_heads,
            num_classes=c.num_classes,
        )
    return DeiT.convert_timm_state_dict(timm_filter(state_dict, reference))


default_cfgs = generate_default_cfgs(
    {
        "deit_s.fb_in1k": cfg(
            hf_hub_id="timm/deit_small_patch16_224.fb_in1k",
            crop_pct=0.875,
            license="apache-2.0",
            paper_ids="arXiv:2012.12877",
            paper_name="Training data-efficient image transformers & distillation through attention",
            origin_url="https://github.com/facebookresearch/deit",
        ),
        "deit_s_mini": mini_cfg(),
    }
)


def _create(variant: str, base: DeiTConfig, pretrained: bool, **kwargs: Any) -> DeiT:
    # features_only: the last three blocks by default, as timm's ViTs (CLASS_TOKEN_FEATURES)
    return build(DeiT, base, variant, pretrained, feature_cfg=CLASS_TOKEN_FEATURES, **kwargs)


@register_model
def deit_s(pretrained: bool = False, **kwargs: Any) -> DeiT:
    """DeiT-S: 16x16 patches, width 384, 12 blocks, 6 heads (22.1M parameters)."""
    return _create("deit_s", DeiTConfig(), pretrained, filter_fn=checkpoint_filter_fn, **kwargs)


@register_model
def deit_s_mini(pretrained: bool = False, **kwargs: Any) -> DeiT:
    """DeiT-S scaled for 32 px images as :func:`tnt_s_mini` is: 8x8 patches (a 4x4 grid), width 96, 4 blocks, 3 heads."""
    base = DeiTConfig(img_size=32, patch_size=8, embed_dim=96, depth=4, num_heads=3, num_classes=20)
    return _create("deit_s_mini", base, pretrained, **kwargs)
