"""ResNet-18 and ResNet-50, the baselines of ResT's supplement, adapted to small images as ResT is.

ResNet-18 is ResT-Lite's opponent in the ablation (supplement A.4); ResNet-50 is the CNN whose
Group-CAM heatmaps the supplement draws beside ResT-Lite's (Fig. 2).

The network is timm's ``ResNet`` with ``BasicBlock`` and two blocks per stage (ResNet-18); only
two things change for the small-scale runs, and both change ResT the same way:

* **width**: channels 32-64-128-256, half of ResNet-18's 64-128-256-512, as ``rest_lite_mini``
  halves ResT-Lite's 64-128-256-512 (the 7x7 stem conv keeps timm's 64 channels: timm sizes only its
  deep stems by ``stem_width``). The two keep the published size relation
  (ResNet-18 / ResT-Lite: 11.7M / 10.5M = 1.11; here 2.82M / 2.52M = 1.12 with 20 classes);
* **stem stride**: ResNet's stem downsamples 4x (a stride-2 7x7 conv and a stride-2 max-pool) as
  ResT's does (two stride-2 3x3 convs). For 32 px images both stems downsample 2x instead
  (``stem_stride=2``: the max-pool is dropped here, ResT's third conv gets stride 1 there), so a
  32 px image reaches both networks' four stages as 16, 8, 4 and 2 pixels wide, as a 64 px image
  does with the published stems.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from timm.models import generate_default_cfgs
from torch import nn

from ._builder import build, mini_cfg, pool_size
from ._registry import register_model

__all__ = ["ResNetConfig", "build_resnet", "resnet18_mini", "resnet50_mini", "resnet50_slim_mini"]


@dataclass(frozen=True)
class ResNetConfig:
    """A timm ResNet; defaults: ResNet-18 (BasicBlocks) at half width for 32 px images."""

    in_chans: int = 3
    block: str = "basic"  # "basic" (ResNet-18/34) or "bottleneck" (ResNet-50: 4x wider block outputs)
    num_classes: int = 20
    layers: tuple[int, int, int, int] = (2, 2, 2, 2)  # blocks per stage (ResNet-18)
    channels: tuple[int, int, int, int] = (32, 64, 128, 256)  # ResNet-18: 64-128-256-512
    stem_width: int = 64  # timm's plain 7x7 stem is 64 wide whatever stem_width says: fixed, described truly
    stem_stride: int = 2  # 4 as published (conv + max-pool); 2 drops the max-pool
    global_pool: str = "avg"


def build_resnet(config: ResNetConfig) -> nn.Module:
    """timm's ``ResNet`` from ``config``; the config is kept as ``model.config``."""
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet

    blocks = {"basic": BasicBlock, "bottleneck": Bottleneck}
    if config.block not in blocks:
        raise ValueError(f"Unknown ResNet block '{config.block}'; expected one of {', '.join(blocks)}")
    if config.stem_width != 64:
        raise ValueError(
            f"timm's plain ResNet stem is 64 channels wide (stem_width sizes deep stems only), got {config.stem_width}"
        )
    if config.stem_stride not in (2, 4):
        raise ValueError(
            f"the ResNet stem has output stride 4 (as published) or 2 (small images), got {config.stem_stride}"
        )
    model = ResNet(
        blocks[config.block],
        list(config.layers),
        num_classes=config.num_classes,
        in_chans=config.in_chans,
        channels=config.channels,
        stem_width=config.stem_width,
        global_pool=config.global_pool,
    )
    if config.stem_stride == 2:
        model.maxpool = nn.Identity()  # the stride-2 conv alone: output stride 2 before stage 1
        for info in model.feature_info[1:]:  # every stage after the stem now sits at half the stride
            info["reduction"] //= 2
    model.config = config
    return model


default_cfgs = generate_default_cfgs(
    {
        # the stride-2 stem and three stride-2 stages (output stride 16): a 2x2 map at 32 px
        name: mini_cfg(
            fixed_input_size=False, first_conv="conv1", classifier="fc", pool_size=pool_size((3, 32, 32), 16)
        )
        for name in ("resnet18_mini", "resnet50_mini", "resnet50_slim_mini")
    }
)


@register_model
def resnet18_mini(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-18 (timm) at half width with a stride-2 stem for 32 px images: channels 32-64-128-256, 20 classes."""
    return build(build_resnet, ResNetConfig(), "resnet18_mini", pretrained, **kwargs)


@register_model
def resnet50_mini(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-50 (timm, bottleneck blocks 3-4-6-3) at half width with a stride-2 stem for 32 px images, 20 classes."""
    config = ResNetConfig(block="bottleneck", layers=(3, 4, 6, 3))
    return build(build_resnet, config, "resnet50_mini", pretrained, **kwargs)


# ResNet-50 at the size of the ViT minis, for TNT supplement Table 2, which compares backbones of
# about one size with ResNet-50 the largest: at 9-19-38-76 channels (bottleneck outputs 36-76-152-304)
# it is slightly larger than deit_s_mini and tnt_s_mini, where resnet50_mini's half width is an order
# of magnitude larger. Chapter 09 prints the three small backbones' counts.
_SLIM_CHANNELS = (9, 19, 38, 76)


@register_model
def resnet50_slim_mini(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ResNet-50 (bottleneck blocks 3-4-6-3) at 9-19-38-76 channels, a stride-2 stem: as large as DeiT-S-mini / TNT-S-mini."""
    config = ResNetConfig(block="bottleneck", layers=(3, 4, 6, 3), channels=_SLIM_CHANNELS)
    return build(build_resnet, config, "resnet50_slim_mini", pretrained, **kwargs)
