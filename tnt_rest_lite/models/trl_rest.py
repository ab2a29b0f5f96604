"""ResT (v1): an efficient multi-scale vision transformer (Zhang & Yang, NeurIPS 2021).

The network is a pyramid of four stages, like a ResNet:

* a convolutional **stem** (three 3x3 convolutions, output stride 4) followed by **PA**, the
  pixel-attention position encoding ``x * sigmoid(depthwise_conv3x3(x))``;
* four **stages** of pre-norm transformer blocks whose attention is **EMSA**: keys and values
  come from a map shrunk ``s`` times per side by a depthwise convolution (kernel ``s + 1``,
  stride ``s``) and a LayerNorm, and, with more than one head, the scaled scores are mixed
  across heads by a 1x1 convolution, soft-maxed and instance-normalised;
* between stages a **patch embedding**: a stride-2 3x3 convolution, BatchNorm and PA;
* a final LayerNorm, global average pooling and a linear classifier.

EMSA is :class:`tnt_rest_lite.layers.Attention` with ``sr_ratio=s, head_transform=True``; the
MSA baseline of the supplement's Table 1 (``rest_lite_msa``) is the same class with ``s = 1``
and no head transform. Spatial sizes are always read from the tensors, so any image of at
least 32x32 pixels works, square or not, multiple of 32 or not.

Parameter names follow the authors' code (``stem.conv1``, ``stage1.0.attn.sr``,
``patch_embed_2.pos.pa_conv``, ...), so their published checkpoints load with
``model.load_state_dict(state_dict, strict=True)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from timm.models import generate_default_cfgs
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers.blocks import TransformerBlock, init_weights
from ._builder import build, cfg, mini_cfg, pool_size
from ._registry import configure, register_model

__all__ = [
    "ResTConfig",
    "PA",
    "Stem",
    "PatchEmbed",
    "ResT",
    "check_rest_image",
    "MIN_IMAGE_SIZE",
    "rest_lite",
    "rest_lite_msa",
    "rest_small",
    "rest_base",
    "rest_large",
    "rest_lite_mini",
    "rest_small_mini",
    "rest_base_mini",
    "rest_lite_msa_mini",
]


MIN_IMAGE_SIZE = 32  # ResT's claim: any input of at least 32x32 pixels (stage 4 is then 1x1)


@dataclass(frozen=True)
class ResTConfig:
    """Configuration of a ResT; the registered entry points below override fields of it."""

    in_chans: int = 3
    num_classes: int = 1000
    global_pool: str = "avg"  # "avg" (mean of stage 4, as ResT) or "" (the unpooled map)
    embed_dims: tuple[int, int, int, int] = (64, 128, 256, 512)
    num_heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    depths: tuple[int, int, int, int] = (2, 2, 2, 2)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    head_transform: bool = True  # EMSA's 1x1 conv + IN across heads (False: plain MSA)
    stage_norm: bool = False  # LayerNorm on the outputs of stages 1-3 (dense prediction, supp. Table 2)
    # output stride of the stem: 4 as published (224 px -> 56x56 tokens); 2 for small images, so a
    # 32 px image gives stage maps 16-8-4-2 tokens wide and every EMSA stage keeps >= 2x2 keys
    stem_stride: int = 4
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0


@torch.fx.wrap  # a shape check: fx (timm's feature extraction) keeps it as one leaf call
def check_rest_image(x: torch.Tensor, in_chans: int, min_size: int = MIN_IMAGE_SIZE) -> None:
    """Raise a clear error unless ``x`` is ``(B, in_chans, H, W)`` with ``H, W >= min_size``."""
    if x.ndim != 4 or x.shape[1] != in_chans:
        raise ValueError(f"ResT expects images of shape (B, {in_chans}, H, W), got {tuple(x.shape)}")
    if min(x.shape[-2:]) < min_size:
        raise ValueError(
            f"ResT needs images of at least {min_size}x{min_size} pixels (output stride {min_size}), "
            f"got {x.shape[-2]}x{x.shape[-1]}"
        )


class PA(nn.Module):
    """Pixel attention, ResT's position encoding: ``x * sigmoid(depthwise_conv3x3(x))``.

    A depthwise 3x3 convolution (one 3x3 kernel per channel, with bias) looks at each pixel's
    neighbourhood and gates the pixel; the gate depends on position through the zero padding
    and the content around it, which is what lets ResT drop a fixed-size position table.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pa_conv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The sigmoid map that multiplies ``x`` (same shape as ``x``, values in (0, 1))."""
        return torch.sigmoid(self.pa_conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class Stem(nn.Module):
    """Three 3x3 convolutions (strides 2, 1, 2: output stride 4), then PA.

    ``in_chans -> out/2`` (BN, ReLU) ``-> out/2`` (BN, ReLU) ``-> out``; the convolutions have no
    bias because a BatchNorm follows (or, for ``conv3``, PA's own convolution has one).
    ``stride=2`` (small images) makes ``conv3`` stride 1; the weights keep their shapes.
    """

    def __init__(self, in_chans: int, out_dim: int, stride: int = 4) -> None:
        super().__init__()
        if stride not in (2, 4):
            raise ValueError(f"the ResT stem has output stride 4 (as published) or 2 (small images), got {stride}")
        hidden = out_dim // 2
        self.conv1 = nn.Conv2d(in_chans, hidden, kernel_size=3, stride=2, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, kernel_size=3, stride=1, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, out_dim, kernel_size=3, stride=stride // 2, padding=1, bias=False)
        self.act = nn.ReLU()
        self.pos = PA(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.conv1(x)))
        x = self.act(self.norm2(self.conv2(x)))
        return self.pos(self.conv3(x))


class PatchEmbed(nn.Module):
    """Between stages: halve the map and widen the channels (3x3 conv stride 2, BN, PA)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(out_dim)
        self.pos = PA(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pos(self.norm(self.conv(x)))


def _to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H*W, C)


def _to_map(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *size)  # (B, H*W, C) -> (B, C, H, W)


class StageOutput(nn.Module):
    """A stage's tokens as the map the next stage and a neck see (no parameters).

    A module, not a function, so that fx feature extraction (``feature_cls="fx"``) can name each
    stage's output map ``stage{i}_out`` in ``feature_info``.
    """

    def forward(self, tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return _to_map(tokens, size)


class ResT(nn.Module):
    """ResT: convolutional stem, four EMSA stages joined by stride-2 patch embeddings, linear head."""

    def __init__(self, config: ResTConfig) -> None:
        super().__init__()
        c = self.config = config
        for field in ("embed_dims", "num_heads", "depths", "sr_ratios"):
            if len(getattr(c, field)) != 4:
                raise ValueError(f"ResT has four stages: {field} needs 4 values, got {getattr(c, field)}")
        self.num_classes = c.num_classes
        dims = c.embed_dims
        self.stem = Stem(c.in_chans, dims[0], c.stem_stride)
        total = sum(c.depths)
        rates = [c.drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # deeper blocks drop more
        for i in range(4):
            if i > 0:
                # named patch_embed_2..4 as in the authors' code (stage i+1 starts with it)
                setattr(self, f"patch_embed_{i + 1}", PatchEmbed(dims[i - 1], dims[i]))
            first = sum(c.depths[:i])
            blocks = nn.ModuleList(
                TransformerBlock(  # pre-norm: x += EMSA(LN(x)); x += MLP(LN(x))
                    dims[i],
                    c.num_heads[i],
                    c.mlp_ratio,
                    qkv_bias=c.qkv_bias,
                    drop=c.drop_rate,
                    attn_drop=c.attn_drop_rate,
                    drop_path=rates[first + j],
                    sr_ratio=c.sr_ratios[i],
                    head_transform=c.head_transform,
                )
                for j in range(c.depths[i])
            )
            setattr(self, f"stage{i + 1}", blocks)
            setattr(self, f"stage{i + 1}_out", StageOutput())
            if c.stage_norm and i < 3:
                # stage 4 already ends with the final `norm`; names as in the authors' detection code
                setattr(self, f"norm{i + 1}", nn.LayerNorm(dims[i]))
        self.norm = nn.LayerNorm(dims[3])
        self.head = nn.Linear(dims[3], c.num_classes) if c.num_classes > 0 else nn.Identity()
        if c.global_pool not in ("avg", ""):
            raise ValueError(f"ResT pools with 'avg' or '' (none), got '{c.global_pool}'")
        self.global_pool = c.global_pool
        self.num_features = self.head_hidden_size = dims[3]
        self.num_stages = 4
        self.grad_checkpointing = False
        self.feature_info = [
            dict(num_chs=dims[i], reduction=c.stem_stride * 2**i, module=f"stage{i + 1}_out") for i in range(4)
        ]
        self.apply(partial(init_weights, conv=True))

    # -- timm's model interface ----------------------------------------------------------------

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (timm's convention: ``indices`` of the four stages), and the final features.

        Each stage output is what the next stage and a detection neck see: stage 4 after the
        final LayerNorm, stages 1-3 after their own LayerNorm when the model was built with
        ``stage_norm=True`` (the "w LN" setting of the supplement's Table 2). ``norm`` is
        accepted for timm's signature; a pyramid's stages have different widths, so there is no
        one final norm to apply to all of them. ``output_fmt``: ``"NCHW"`` maps
        ``(B, C_i, H_i, W_i)`` at strides ``stem_stride * 2**i`` or ``"NHWC"``.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got '{output_fmt}'")
        take, last = feature_take_indices(4, indices)
        stages = last + 1 if (stop_early or intermediates_only) else self.num_stages
        check_rest_image(x, self.config.in_chans, MIN_IMAGE_SIZE * self.config.stem_stride // 4)
        intermediates = []
        x = self.stem(x)
        for i in range(1, stages + 1):
            if i > 1:
                x = getattr(self, f"patch_embed_{i}")(x)
            size = (x.shape[-2], x.shape[-1])  # from the tensor: odd and non-square sizes work
            tokens = _to_tokens(x)
            for block in getattr(self, f"stage{i}"):
                if self.grad_checkpointing and torch.is_grad_enabled():
                    tokens = checkpoint(block, tokens, size, use_reentrant=False)
                else:
                    tokens = block(tokens, size)
            if i == 4:
                tokens = self.norm(tokens)
            elif self.config.stage_norm:
                tokens = getattr(self, f"norm{i}")(tokens)
            x = getattr(self, f"stage{i}_out")(tokens, size)
            if i - 1 in take:
                intermediates.append(x.permute(0, 2, 3, 1) if output_fmt == "NHWC" else x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] | tuple[int, ...] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last of ``indices`` (and the head); returns the kept indices."""
        take, last = feature_take_indices(4, indices)
        for i in range(last + 2, 5):
            setattr(self, f"stage{i}", nn.ModuleList())
            setattr(self, f"patch_embed_{i}", nn.Identity())
        self.num_stages = last + 1
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stage 4 after the final norm, unpooled: ``(B, C_4, H_4, W_4)``."""
        return self.forward_intermediates(x, indices=[3])[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool (``global_pool="avg"``; ``""`` keeps the map), then the linear head."""
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3))
        if pre_logits or self.num_classes == 0:
            return x
        if self.global_pool == "":
            return self.head(x.permute(0, 2, 3, 1))  # unpooled: one prediction per position, channels last
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new head for ``num_classes`` (0: none); ``global_pool=""`` leaves the map unpooled."""
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"ResT pools with 'avg' or '' (none), got '{global_pool}'")
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.config = dataclasses.replace(self.config, num_classes=num_classes, global_pool=self.global_pool)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()


_MSA = {"sr_ratios": (1, 1, 1, 1), "head_transform": False}
# ResT-Lite at half width (depths 2-2-2-2 as published) for 32 px images: the stride-2 stem gives
# stage maps 16-8-4-2 tokens wide, so with s = 8-4-2-1 every stage attends over 2x2 keys and keeps
# the published N/N' = 64-16-4-1 (at 224 px: 56-28-14-7 tokens, 7x7 keys per stage)
_MINI = {"embed_dims": (32, 64, 128, 256), "depths": (2, 2, 2, 2), "stem_stride": 2, "num_classes": 20}


def _cfg(**kwargs: Any) -> dict[str, Any]:
    defaults = dict(
        crop_pct=0.875,
        pool_size=pool_size((3, 224, 224), 32),  # stem /4, then three stride-2 patch embeddings: (7, 7)
        fixed_input_size=False,  # any image of at least 32x32 pixels
        first_conv="stem.conv1",
        license="apache-2.0",
        paper_ids="arXiv:2105.13677",
        paper_name="ResT: An Efficient Transformer for Visual Recognition",
        origin_url="https://github.com/wofmanaf/ResT",
    )
    return cfg(**{**defaults, **kwargs})


# 32 px through the stride-2 stem and three stride-2 patch embeddings (output stride 16): a 2x2 map
_MINI_CFG = mini_cfg(fixed_input_size=False, first_conv="stem.conv1", pool_size=pool_size((3, 32, 32), 16))

# The authors publish their ResT checkpoints in a Google Drive folder (their README), not on a hub
# timm can reach: no entry has weights to download; raw state dicts load with load_state_dict.
default_cfgs = generate_default_cfgs(
    {
        "rest_lite": _cfg(),
        "rest_lite_msa": _cfg(),
        "rest_small": _cfg(),
        "rest_base": _cfg(),
        "rest_large": _cfg(),
        "rest_lite_mini": _MINI_CFG,
        "rest_lite_msa_mini": _MINI_CFG,
        "rest_small_mini": _MINI_CFG,
        "rest_base_mini": _MINI_CFG,
    }
)


def _create(variant: str, base: ResTConfig, pretrained: bool, **kwargs: Any) -> ResT:
    # the four stage outputs are the features timm's features_only returns (out_indices 0-3)
    return build(
        ResT, base, variant, pretrained, feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)), **kwargs
    )


@register_model
def rest_lite(pretrained: bool = False, **kwargs: Any) -> ResT:
    """ResT-Lite: dims 64-128-256-512, depths 2-2-2-2, heads 1-2-4-8, EMSA with s = 8-4-2-1."""
    return _create("rest_lite", ResTConfig(), pretrained, **kwargs)


@register_model
def rest_lite_msa(pretrained: bool = False, **kwargs: Any) -> ResT:
    """ResT-Lite with plain MSA (s = 1, no head transform): the baseline of the supplement's Table 1."""
    return _create("rest_lite_msa", configure(ResTConfig(), _MSA), pretrained, **kwargs)


@register_model
def rest_small(pretrained: bool = False, **kwargs: Any) -> ResT:
    """ResT-Small: dims 64-128-256-512, depths 2-2-6-2."""
    return _create("rest_small", ResTConfig(depths=(2, 2, 6, 2)), pretrained, **kwargs)


@register_model
def rest_base(pretrained: bool = False, **kwargs: Any) -> ResT:
    """ResT-Base: dims 96-192-384-768, depths 2-2-6-2."""
    return _create("rest_base", ResTConfig(embed_dims=(96, 192, 384, 768), depths=(2, 2, 6, 2)), pretrained, **kwargs)


@register_model
def rest_large(pretrained: bool = False, **kwargs: Any) -> ResT:
    """ResT-Large: dims 96-192-384-768, depths 2-2-18-2."""
    return _create("rest_large", ResTConfig(embed_dims=(96, 192, 384, 768), depths=(2, 2, 18, 2)), pretrained, **kwargs)


@register_model
def rest_lite_mini(pretrained: bool = False, **kwargs: Any) -> ResT:
    """ResT-Lite at half width for 32 px images: dims 32-64-128-256, depths 2-2-2-2, stem stride 2, 20 classes."""
    return _create("rest_lite_mini", configure(ResTConfig(), _MINI), pretrained, **kwargs)


@register_model
def rest_lite_msa_mini(pretrained: bool = False, **kwargs: Any) -> ResT:
    """The MSA baseline of :func:`rest_lite_mini` (s = 1, no head transform), same size otherwise."""
    return _create("rest_lite_msa_mini", configure(ResTConfig(), {**_MINI, **_MSA}), pretrained, **kwargs)


@register_model
def rest_small_mini(pretrained: bool = False, **kwargs: Any) -> ResT:
    """ResT-Small at half width for 32 px images: dims 32-64-128-256, depths 2-2-6-2 (the detection table's backbone)."""
    return _create("rest_small_mini", configure(ResTConfig(), {**_MINI, "depths": (2, 2, 6, 2)}), pretrained, **kwargs)


@register_model
def rest_base_mini(pretrained: bool = False, **kwargs: Any) -> ResT:
    """ResT-Base at half width for 32 px images: dims 48-96-192-384, depths 2-2-6-2."""
    dims = {"embed_dims": (48, 96, 192, 384), "depths": (2, 2, 6, 2)}
    return _create("rest_base_mini", configure(ResTConfig(), {**_MINI, **dims}), pretrained, **kwargs)
