"""Transformer in Transformer (TNT), with the SE module of the TNT supplement.

TNT looks at an image at two scales at once. Like ViT/DeiT it cuts the image into 16x16
*patches* and runs a transformer over one token per patch (the **outer** transformer). Unlike
ViT it also cuts every patch into 4x4 = 16 *pixel* tokens and runs a small transformer over the
16 pixels of each patch on its own (the **inner** transformer). After each inner step the pixel
tokens of a patch are flattened and projected into that patch's token, so local detail flows
into the global sequence at every block.

Components, in the order the data meets them:

* :class:`PixelEmbed`: each patch through Conv(3 -> inner_dim, kernel 7, stride 4, padding 3),
  which leaves 4x4 pixel tokens per 16x16 patch, plus a learned pixel position embedding shared
  by all patches.
* :class:`PixelToPatch`: LN -> Linear -> LN from a patch's flattened pixel tokens to its patch
  token; used once to create the patch tokens and once per block to update them.
* :class:`tnt_rest_lite.layers.TransformerBlock`: the package's one pre-norm block (attention,
  MLP), used as inner and as outer transformer, with :class:`SqueezeExcite` gating the outer MLP
  branch when SE is on.
* :class:`TNTBlock`: inner block, pixel -> patch projection, outer block.
* :class:`TNT`: class token, patch position embedding, the blocks, final norm and head.

All attention runs through :class:`tnt_rest_lite.layers.Attention` (no q/k/v bias, as TNT),
so :func:`tnt_rest_lite.layers.capture_attention` returns inner and outer maps alike.
timm's ``tnt_s_patch16_224`` and ``tnt_b_patch16_224`` state dicts convert with
:meth:`TNT.convert_timm_state_dict`: ``tnt_s(pretrained=True)`` loads timm's published weights through
:func:`checkpoint_filter_fn`, and :func:`tnt_rest_lite.models._weights.load_timm` converts a timm model in memory.

The position embeddings are learned for one image size; we do not resample them, so a model
only accepts images of its ``img_size`` (build it with ``img_size=...`` for another size).
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

__all__ = [
    "TNTConfig",
    "PixelEmbed",
    "PixelToPatch",
    "SqueezeExcite",
    "TNTBlock",
    "TNT",
    "tnt_s",
    "tnt_s_se",
    "tnt_b",
    "tnt_s_mini",
    "tnt_s_se_mini",
    "checkpoint_filter_fn",
]


@dataclass(frozen=True)
class TNTConfig:
    """Everything that defines a TNT model. Defaults: TNT-S at 224 px."""

    img_size: int = 224
    patch_size: int = 16  # side of an outer patch, in image pixels
    in_chans: int = 3
    num_classes: int = 1000
    global_pool: str = "token"  # "token" (class token, as TNT), "avg" (mean of the patches), "" (none)
    outer_dim: int = 384  # width of a patch token
    inner_dim: int = 24  # width of a pixel token
    depth: int = 12
    outer_heads: int = 6
    inner_heads: int = 4
    mlp_ratio: float = 4.0  # outer MLP hidden width / outer_dim
    inner_mlp_ratio: float = 4.0
    pixel_kernel: int = 7  # the pixel-embedding conv; padding is kernel // 2
    pixel_stride: int = 4  # 16 px patch / stride 4 -> 4x4 pixel tokens
    qkv_bias: bool = False
    se: bool = False  # the SE module of the TNT supplement on every outer MLP branch
    se_ratio: float = 0.25  # SE hidden width / outer_dim
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0

    @property
    def pixels_per_side(self) -> int:
        """Pixel tokens along one side of a patch: the conv's output size on one patch."""
        pad = self.pixel_kernel // 2
        return (self.patch_size + 2 * pad - self.pixel_kernel) // self.pixel_stride + 1

    @property
    def num_pixels(self) -> int:
        return self.pixels_per_side**2

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2


class PixelEmbed(nn.Module):
    """Image -> pixel tokens: ``(B, 3, H, W)`` -> ``(B * num_patches, num_pixels, inner_dim)``.

    Every patch is convolved *on its own* (the conv's zero padding is at the patch border, so no
    pixel token sees a neighbouring patch); this is timm's default (non-``legacy``) layout.
    """

    def __init__(self, config: TNTConfig) -> None:
        super().__init__()
        c = config
        if c.img_size % c.patch_size != 0:
            raise ValueError(f"img_size={c.img_size} must be a multiple of patch_size={c.patch_size}")
        self.patch_size = c.patch_size
        self.num_pixels = c.num_pixels
        self.proj = nn.Conv2d(
            c.in_chans, c.inner_dim, kernel_size=c.pixel_kernel, stride=c.pixel_stride, padding=c.pixel_kernel // 2
        )
        # One position per pixel slot of a patch, shared by all patches.
        self.pos_embed = nn.Parameter(torch.zeros(1, c.num_pixels, c.inner_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B * num_patches, C, p, p)``, patches in row-major order."""
        b, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, gh, gw, C, p, p)
        return x.reshape(b * (h // p) * (w // p), c, p, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = self.proj(self.patchify(x))  # (B*N, inner_dim, s, s)
        pixels = pixels.flatten(2).transpose(1, 2)  # (B*N, s*s, inner_dim)
        return pixels + self.pos_embed


class PixelToPatch(nn.Module):
    """A patch's pixel tokens -> one vector of the patch width: LN -> Linear -> LN.

    ``(B * N, num_pixels, inner_dim)`` -> ``(B, N, outer_dim)``. The first LayerNorm normalises
    the whole flattened patch (``num_pixels * inner_dim`` features).
    """

    def __init__(self, num_pixels: int, inner_dim: int, outer_dim: int, bias: bool) -> None:
        super().__init__()
        self.norm_pixels = nn.LayerNorm(num_pixels * inner_dim)
        self.proj = nn.Linear(num_pixels * inner_dim, outer_dim, bias=bias)
        self.norm_patch = nn.LayerNorm(outer_dim)

    def forward(self, pixels: torch.Tensor, batch_size: int) -> torch.Tensor:
        flat = pixels.reshape(batch_size, pixels.shape[0] // batch_size, -1)  # (B, N, num_pixels*inner_dim)
        return self.norm_patch(self.proj(self.norm_pixels(flat)))


class SqueezeExcite(nn.Module):
    """Channel attention for tokens (TNT supplement, section 2).

    ``a = tanh(W2 relu(W1 LN(mean_tokens(m))))`` of shape ``(B, 1, C)``; returns ``m * a``, so each
    channel of every token is rescaled by a factor in (-1, 1) computed from all tokens.
    """

    def __init__(self, dim: int, ratio: float = 0.25) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, dim)
        self.gate = nn.Tanh()

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        a = m.mean(dim=1, keepdim=True)  # (B, 1, C): squeeze the token axis
        a = self.gate(self.fc2(self.act(self.fc1(self.norm(a)))))
        return m * a


class TNTBlock(nn.Module):
    """One TNT block: inner transformer, pixel -> patch projection, outer transformer.

    Inputs and outputs: ``pixels`` ``(B * N, num_pixels, inner_dim)`` and ``patches``
    ``(B, 1 + N, outer_dim)`` (class token first). The class token has no pixels; only the N
    patch tokens receive their projected pixels.
    """

    def __init__(self, config: TNTConfig, drop_path: float = 0.0) -> None:
        super().__init__()
        c = config
        common = dict(qkv_bias=c.qkv_bias, drop=c.drop_rate, attn_drop=c.attn_drop_rate, drop_path=drop_path)
        self.inner = TransformerBlock(c.inner_dim, c.inner_heads, c.inner_mlp_ratio, **common)
        # No bias here: the LayerNorm right after it has its own shift.
        self.pixel_to_patch = PixelToPatch(c.num_pixels, c.inner_dim, c.outer_dim, bias=False)
        se = SqueezeExcite(c.outer_dim, c.se_ratio) if c.se else None  # gates the outer MLP branch: m + m * a
        self.outer = TransformerBlock(c.outer_dim, c.outer_heads, c.mlp_ratio, mlp_gate=se, **common)

    def forward(self, pixels: torch.Tensor, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.inner(pixels)  # attention among the pixels of each patch
        update = self.pixel_to_patch(pixels, patches.shape[0])  # (B, N, outer_dim)
        patches = torch.cat([patches[:, :1], patches[:, 1:] + update], dim=1)
        patches = self.outer(patches)  # attention among the patches (and the class token)
        return pixels, patches


class TNT(ClassTokenModel):
    """Transformer in Transformer: pixel and patch tokens, a class token and a linear head.

    timm's model interface (``forward_features``, ``forward_head``, ``forward_intermediates``,
    ``reset_classifier``, ``feature_info``, ...) comes from :class:`ClassTokenModel`; its
    intermediates are the patch tokens after each block's outer transformer.
    """

    def __init__(self, config: TNTConfig) -> None:
        super().__init__()
        c = self.config = config
        self.pixel_embed = PixelEmbed(c)
        self.patch_embed = PixelToPatch(c.num_pixels, c.inner_dim, c.outer_dim, bias=True)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.outer_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, c.num_patches + 1, c.outer_dim))
        self.pos_drop = nn.Dropout(c.drop_rate)
        # Deeper blocks drop more (0 -> drop_path_rate); plain Python so the model builds on "meta" too.
        rates = [c.drop_path_rate * i / max(c.depth - 1, 1) for i in range(c.depth)]
        self.blocks = nn.ModuleList(TNTBlock(c, r) for r in rates)
        self.norm = nn.LayerNorm(c.outer_dim)
        self.head = nn.Linear(c.outer_dim, c.num_classes) if c.num_classes > 0 else nn.Identity()
        # fx feature extraction takes each block's outer transformer: its output is the patch tokens
        self.init_interface(c.outer_dim, c.patch_size, c.grid_size, block_module="blocks.{i}.outer")
        self.apply(init_weights)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image -> (pixel tokens ``(B*N, num_pixels, inner_dim)``, patch tokens ``(B, 1+N, outer_dim)``)."""
        grid = self.patch_grid(x, "tnt")
        b = x.shape[0]
        pixels = self.pixel_embed(x)  # the pixel positions are within a patch: the same at any image size
        patches = self.patch_embed(pixels, b)
        patches = torch.cat([self.cls_token.expand(b, -1, -1), patches], dim=1)
        return pixels, self.pos_drop(patches + self.resized_pos_embed(grid))

    def run_block(
        self, block: nn.Module, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return block(*state)

    def tokens(self, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return state[1]  # the patch tokens (class token first)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "pixel_embed.pos_embed"}

    @staticmethod
    def convert_timm_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """timm's ``tnt`` keys -> ours.

        Renames the modules, moves ``pixel_pos`` ``(1, inner_dim, s, s)`` to our token layout
        ``(1, s*s, inner_dim)``, and re-packs timm's attention (``qk`` holds q and k, ``v`` alone)
        into our ``q`` and ``kv`` (k and v stacked).
        """
        renames = [  # (timm fragment, ours); applied in order to the key
            ("pixel_embed.proj.", "pixel_embed.proj."),
            ("norm1_proj.", "{p2p}.norm_pixels."),
            ("norm2_proj.", "{p2p}.norm_patch."),
            ("proj.", "{p2p}.proj."),
            ("norm_in.", "inner.norm1."),
            ("attn_in.", "inner.attn."),
            ("norm_mlp_in.", "inner.norm2."),
            ("mlp_in.", "inner.mlp."),
            ("norm_out.", "outer.norm1."),
            ("attn_out.", "outer.attn."),
            ("norm_mlp.", "outer.norm2."),
            ("mlp.", "outer.mlp."),
        ]
        out: dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            if key == "pixel_pos":
                out["pixel_embed.pos_embed"] = value.flatten(2).transpose(1, 2)
                continue
            if key == "patch_pos":
                out["pos_embed"] = value
                continue
            prefix, rest = "", key
            if key.startswith("blocks."):
                number, rest = key[len("blocks.") :].split(".", 1)
                prefix = f"blocks.{number}."
            new = rest
            if not rest.startswith("pixel_embed."):
                for old, ours in renames:
                    if rest.startswith(old):
                        p2p = "pixel_to_patch" if prefix else "patch_embed"
                        new = ours.format(p2p=p2p) + rest[len(old) :]
                        break
            out[prefix + new] = value

        # Attention: q = qk[:dim], kv = [qk[dim:]; v] (weights, and biases if qkv_bias=True).
        for key in [k for k in out if ".attn.qk." in k]:
            qk = out.pop(key)
            v = out.pop(key.replace(".qk.", ".v."))
            dim = qk.shape[0] // 2
            out[key.replace(".qk.", ".q.")] = qk[:dim]
            out[key.replace(".qk.", ".kv.")] = torch.cat([qk[dim:], v], dim=0)
        return out


# TNT-S scaled for 32 px images with the full model's proportions: outer width 96 (a quarter of
# 384) and inner width outer/16 = 6 (TNT-S: 384/24), 8x8 patches (a 4x4 grid), each cut into 4x4
# pixel tokens by a 3x3 stride-2 conv (TNT-S: 7x7 stride 4 on 16x16 patches), 4 blocks.
# Parameters: 500k against deit_s_mini's 470k, +6.5 % (TNT-S vs DeiT-S: +7.8 %).
_MINI = dict(
    img_size=32,
    patch_size=8,
    num_classes=20,
    outer_dim=96,
    inner_dim=6,
    depth=4,
    outer_heads=3,
    inner_heads=2,
    pixel_kernel=3,
    pixel_stride=2,
)


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: TNT) -> dict[str, torch.Tensor]:
    """A published timm TNT checkpoint -> our layout (timm's own filter first, then ours)."""
    import timm
    from timm.models.tnt import checkpoint_filter_fn as timm_filter

    c = model.config
    with torch.device("meta"):  # shapes only: timm's filter resamples position embeddings by them
        reference = timm.create_model(
            "tnt_s_patch16_224",
            img_size=c.img_size,
            patch_size=c.patch_size,
            embed_dim=c.outer_dim,
            inner_dim=c.inner_dim,
            depth=c.depth,
            num_heads_outer=c.outer_heads,
            num_heads_inner=c.inner_heads,
            first_stride=c.pixel_stride,
            num_classes=c.num_classes,
        )
    return TNT.convert_timm_state_dict(timm_filter(state_dict, reference))


def _cfg(**kwargs: Any) -> dict[str, Any]:
    from timm.data import IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD

    defaults = dict(
        mean=IMAGENET_INCEPTION_MEAN,  # TNT normalises with mean = std = 0.5
        std=IMAGENET_INCEPTION_STD,
        first_conv="pixel_embed.proj",
        license="apache-2.0",
        paper_ids="arXiv:2103.00112",
        paper_name="Transformer in Transformer",
        origin_url="https://github.com/huawei-noah/Efficient-AI-Backbones/tree/master/tnt_pytorch",
    )
    return cfg(**{**defaults, **kwargs})


default_cfgs = generate_default_cfgs(
    {
        "tnt_s.in1k": _cfg(hf_hub_id="timm/tnt_s_patch16_224.in1k"),
        "tnt_s_se": _cfg(),
        "tnt_b.in1k": _cfg(hf_hub_id="timm/tnt_b_patch16_224.in1k"),
        "tnt_s_mini": mini_cfg(first_conv="pixel_embed.proj"),
        "tnt_s_se_mini": mini_cfg(first_conv="pixel_embed.proj"),
    }
)


def _create(variant: str, base: TNTConfig, pretrained: bool, **kwargs: Any) -> TNT:
    # features_only: the last three blocks by default, as timm's TNT (CLASS_TOKEN_FEATURES)
    return build(TNT, base, variant, pretrained, feature_cfg=CLASS_TOKEN_FEATURES, **kwargs)


@register_model
def tnt_s(pretrained: bool = False, **kwargs: Any) -> TNT:
    """TNT-S: outer 384 / inner 24, 12 blocks, 6 outer and 4 inner heads (23.8M parameters)."""
    return _create("tnt_s", TNTConfig(), pretrained, filter_fn=checkpoint_filter_fn, **kwargs)


@register_model
def tnt_s_se(pretrained: bool = False, **kwargs: Any) -> TNT:
    """TNT-S + SE (TNT supplement, Table 1); no published weights."""
    return _create("tnt_s_se", TNTConfig(se=True), pretrained, **kwargs)


@register_model
def tnt_b(pretrained: bool = False, **kwargs: Any) -> TNT:
    """TNT-B: outer 640 / inner 40, 12 blocks, 10 outer and 4 inner heads (65.6M parameters)."""
    base = TNTConfig(outer_dim=640, inner_dim=40, outer_heads=10)
    return _create("tnt_b", base, pretrained, filter_fn=checkpoint_filter_fn, **kwargs)


@register_model
def tnt_s_mini(pretrained: bool = False, **kwargs: Any) -> TNT:
    """TNT-S scaled for 32 px images: 8x8 patches of 4x4 pixel tokens, outer 96 / inner 6, 4 blocks, 20 classes."""
    return _create("tnt_s_mini", TNTConfig(**_MINI), pretrained, **kwargs)


@register_model
def tnt_s_se_mini(pretrained: bool = False, **kwargs: Any) -> TNT:
    """:func:`tnt_s_mini` with the SE module in every outer block."""
    return _create("tnt_s_se_mini", TNTConfig(**_MINI, se=True), pretrained, **kwargs)
