"""Detection with our backbones: Faster R-CNN + FPN (TNT Table 2) and RetinaNet + FPN (ResT Table 2).

The papers trained their detectors with mmdetection; ours are torchvision's real components,
``FasterRCNN``, ``RetinaNet`` and ``FeaturePyramidNetwork``, evaluated with pycocotools. What is
ours is the bridge from a classifier to the four feature maps an FPN takes:

* **ResNet-50** (timm's ResNet, the published one or our small counterpart): stages 2-5
  (``layer1``-``layer4``), strides 4-8-16-32 (2-4-8-16 with the small models' stride-2 stem).
* **DeiT-S and TNT-S**: every block works at one stride, the patch size. TNT's supplement (§3)
  takes the patch tokens after blocks 3, 6, 9 and 12 (evenly spaced blocks for other depths),
  reshapes them to maps and brings them to 4 strides with "deconvolution/convolution layers with
  proper stride": :class:`SimplePyramid` (two transposed convolutions for x4, one for x2, the map
  itself, a max-pool for /2 -- the form ViTDet later called the simple feature pyramid). Inputs of
  another size than the pre-training size work: the position embeddings are interpolated
  (``dynamic_img_size``).
* **ResT**: the four stage outputs; ``stage_norm=True`` adds the LayerNorm on each stage output
  that the supplement's Table 2 calls "w LN" (the authors' ``norm{i}``).

Faster R-CNN takes all four levels plus a max-pooled fifth (``LastLevelMaxPool``), RetinaNet the
last three plus P6 and P7 computed from the last stage (``LastLevelP6P7``), as the two papers'
mmdetection configs do. :func:`build_detector` is the one entry point.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from timm.layers import LayerNorm2d, resample_abs_pos_embed
from torch import nn

from ..models._registry import create_model
from ..models._weights import check_state_dict

__all__ = [
    "BACKBONES",
    "DETECTORS",
    "BackboneSpec",
    "SimplePyramid",
    "FeatureLevels",
    "FPNBackbone",
    "build_backbone",
    "vit_block_indices",
    "backbone_spec",
    "load_classifier_weights",
]


DETECTORS = ("faster_rcnn", "retinanet")


@dataclass(frozen=True)
class BackboneSpec:
    """A registered detection backbone: the classifier it is built from and how its levels are read."""

    model: str  # the classifier's registered name (ours, or timm's for "resnet50")
    family: str  # "resnet" | "vit" | "rest"
    full_size: bool  # the published size (224 px ImageNet models) or a small counterpart


BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec("resnet50", "resnet", True),
    "deit_s": BackboneSpec("deit_s", "vit", True),
    "tnt_s": BackboneSpec("tnt_s", "vit", True),
    "rest_small": BackboneSpec("rest_small", "rest", True),
    "rest_base": BackboneSpec("rest_base", "rest", True),
    "resnet50_mini": BackboneSpec("resnet50_mini", "resnet", False),
    "resnet50_slim_mini": BackboneSpec("resnet50_slim_mini", "resnet", False),
    "deit_s_mini": BackboneSpec("deit_s_mini", "vit", False),
    "tnt_s_mini": BackboneSpec("tnt_s_mini", "vit", False),
    "rest_small_mini": BackboneSpec("rest_small_mini", "rest", False),
    "rest_base_mini": BackboneSpec("rest_base_mini", "rest", False),
}


def vit_block_indices(depth: int, levels: int = 4) -> list[int]:
    """The blocks (0-based) whose patch tokens form the levels: 3, 6, 9, 12 of 12 (TNT supp. §3).

    For other depths, evenly spaced blocks ending with the last: ``round((k + 1) * depth / levels)``.
    """
    if depth < levels:
        raise ValueError(f"a {levels}-level pyramid needs at least {levels} blocks, the model has {depth}")
    return [round((k + 1) * depth / levels) - 1 for k in range(levels)]


def backbone_spec(name: str) -> BackboneSpec:
    """The registered backbone ``name``, or an error listing the valid ones."""
    if name not in BACKBONES:
        raise ValueError(f"Unknown detection backbone '{name}'; expected one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


class SimplePyramid(nn.Module):
    """Four maps at strides ``s/4, s/2, s, 2s`` from four stride-``s`` maps (one per chosen block).

    The deconvolution/convolution layers of TNT's supplement (§3): map 1 is upsampled x4 by two
    2x2 transposed convolutions with a LayerNorm and GELU between them, map 2 x2 by one, map 3 is
    kept, map 4 is max-pooled /2. Channels stay the model's width.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.up4 = nn.Sequential(
            nn.ConvTranspose2d(width, width, 2, stride=2),
            LayerNorm2d(width, eps=1e-5),  # torch's default eps (timm's is 1e-6)
            nn.GELU(),
            nn.ConvTranspose2d(width, width, 2, stride=2),
        )
        self.up2 = nn.ConvTranspose2d(width, width, 2, stride=2)
        self.keep = nn.Identity()
        self.down2 = nn.MaxPool2d(2)

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(maps) != 4:
            raise ValueError(f"the simple pyramid takes 4 maps, got {len(maps)}")
        return [self.up4(maps[0]), self.up2(maps[1]), self.keep(maps[2]), self.down2(maps[3])]


class FeatureLevels(nn.Module):
    """A classifier as four feature maps: ``OrderedDict`` ``"0"``-``"3"`` of ``(B, C_i, H_i, W_i)``.

    ``channels`` and ``strides`` describe the four levels (torchvision's FPN takes the channels).
    The classifier's head is removed; its weights are the initialisation (``weights``).
    """

    def __init__(self, name: str, norm_eval: bool = True, frozen_stages: int = 0, **model_kwargs: Any) -> None:
        super().__init__()
        self.name = name
        self.spec = backbone_spec(name)
        self.norm_eval = norm_eval
        self.model = _classifier(self.spec, **model_kwargs)
        family = self.spec.family
        if frozen_stages:
            if family != "resnet":
                raise ValueError(f"frozen_stages freezes a ResNet's stem and first stages; '{name}' is not a ResNet")
            # mmdetection's ResNet default (frozen_stages=1): the stem and layer1 keep their
            # pre-trained weights, and no gradient is computed through the largest maps
            frozen = [self.model.conv1, self.model.bn1] + [
                getattr(self.model, f"layer{i}") for i in range(1, frozen_stages + 1)
            ]
            for module in frozen:
                module.requires_grad_(False)
        self.frozen_stages = frozen_stages
        if family in ("resnet", "rest"):
            # timm's feature indices: ResNet's are the stem and layer1..layer4, ResT's its four stages
            self.indices = [1, 2, 3, 4] if family == "resnet" else [0, 1, 2, 3]
            info = [self.model.feature_info[i] for i in self.indices]
            self.channels = [int(i["num_chs"]) for i in info]
            self.strides = [int(i["reduction"]) for i in info]
            self.pyramid = None
        else:
            self.model.dynamic_img_size = True
            self.indices = vit_block_indices(len(self.model.blocks))
            # the final norm reads only the class token's path to the head: unused by the levels
            self.model.prune_intermediate_layers(self.indices, prune_norm=True, prune_head=True)
            width, patch = self.model.num_features, self.model.config.patch_size
            self.channels = [width] * 4
            self.strides = [patch // 4, patch // 2, patch, patch * 2]
            if patch % 4:
                raise ValueError(f"the simple pyramid needs a patch size divisible by 4, got {patch}")
            self.pyramid = SimplePyramid(width)
        # classifier weights the levels never read (dropped when the classifier's weights are loaded)
        self.unused_prefixes = ("head.", "fc.") + (("norm.",) if family == "vit" else ())
        # weights the classifier does not have: ResT's stage LayerNorms are new (gamma 1, beta 0)
        stage_norm = bool(getattr(getattr(self.model, "config", None), "stage_norm", False))
        self.new_prefixes = tuple(f"norm{i}." for i in (1, 2, 3)) if stage_norm else ()

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self.model.forward_intermediates(x, indices=self.indices, intermediates_only=True)
        if self.pyramid is not None:
            maps = self.pyramid(maps)
        return OrderedDict((str(i), m) for i, m in enumerate(maps))

    def train(self, mode: bool = True) -> FeatureLevels:
        """As mmdetection's ``norm_eval``: batch-norm statistics stay frozen while the detector trains."""
        super().train(mode)
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def _classifier(spec: BackboneSpec, **kwargs: Any) -> nn.Module:
    """The classifier without its head (``num_classes=0``): ours from our registry, ResNet-50 from timm's."""
    if spec.model == "resnet50":
        import timm

        return timm.create_model("resnet50", pretrained=False, num_classes=0, **kwargs)

    return create_model(spec.model, num_classes=0, **kwargs)


class FPNBackbone(nn.Module):
    """:class:`FeatureLevels` -> torchvision's ``FeaturePyramidNetwork``: what torchvision's detectors take.

    ``levels`` picks the maps the FPN reads (Faster R-CNN: all four; RetinaNet: the last three);
    ``extra`` adds the fifth level (and sixth): ``"maxpool"`` (``LastLevelMaxPool``) or ``"p6p7"``
    (``LastLevelP6P7`` from the last stage). ``out_channels`` is what the heads see.
    """

    def __init__(
        self, body: FeatureLevels, levels: Sequence[int], extra: str = "maxpool", out_channels: int = 256
    ) -> None:
        super().__init__()
        from torchvision.ops.feature_pyramid_network import (
            FeaturePyramidNetwork,
            LastLevelMaxPool,
            LastLevelP6P7,
        )

        if extra not in ("maxpool", "p6p7"):
            raise ValueError(f"extra must be 'maxpool' or 'p6p7', got '{extra}'")
        self.body = body
        self.levels = list(levels)
        in_channels = [body.channels[i] for i in self.levels]
        # P6 from the last stage's map (mmdetection's add_extra_convs="on_input", the authors' setting)
        blocks = LastLevelMaxPool() if extra == "maxpool" else LastLevelP6P7(in_channels[-1], out_channels)
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=blocks)
        self.out_channels = out_channels
        self.strides = [body.strides[i] for i in self.levels]
        last = self.strides[-1]
        self.strides += [last * 2] if extra == "maxpool" else [last * 2, last * 4]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self.body(x)
        return self.fpn(OrderedDict((str(i), maps[str(i)]) for i in self.levels))


def build_backbone(
    name: str,
    kind: str = "faster_rcnn",
    out_channels: int = 256,
    stage_norm: bool = False,
    norm_eval: bool = True,
    backbone_options: Mapping[str, Any] | None = None,
    frozen_stages: int = 0,
) -> FPNBackbone:
    """The FPN backbone of detector ``kind`` on backbone ``name`` (``stage_norm``: ResT's "w LN").

    ``backbone_options`` are config overrides of the classifier (e.g. a profile's 64 px geometry).
    """
    if kind not in DETECTORS:
        raise ValueError(f"Unknown detector '{kind}'; expected one of {', '.join(DETECTORS)}")
    kwargs: dict[str, Any] = dict(backbone_options or {})
    if stage_norm:
        if backbone_spec(name).family != "rest":
            raise ValueError(f"stage_norm is ResT's option (a LayerNorm on each stage output); '{name}' is not a ResT")
        kwargs["stage_norm"] = True
    body = FeatureLevels(name, norm_eval=norm_eval, frozen_stages=frozen_stages, **kwargs)
    if kind == "faster_rcnn":
        return FPNBackbone(body, levels=[0, 1, 2, 3], extra="maxpool", out_channels=out_channels)
    return FPNBackbone(body, levels=[1, 2, 3], extra="p6p7", out_channels=out_channels)


def _resampled_position_embeddings(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ViT classifier's patch position embeddings resampled to the backbone's grid, where they differ.

    ``full`` trains its classifiers at 112 px (a 14 x 14 grid) and builds the detection backbones at
    the registered size (4 x 4), which the backbone interpolates to each image; timm's
    ``resample_abs_pos_embed`` moves the trained grid (class token kept) to the backbone's.
    """
    own = model.state_dict()
    out = {}
    for key, value in state_dict.items():
        target = own.get(key)
        if not key.endswith("pos_embed") or target is None or value.shape == target.shape or value.dim() != 3:
            continue
        old, new = value.shape[1] - 1, target.shape[1] - 1  # patches after the class token
        if math.isqrt(old) ** 2 != old or math.isqrt(new) ** 2 != new or value.shape[2] != target.shape[2]:
            continue  # not a square patch grid with a class token: check_state_dict reports the mismatch
        side = math.isqrt(new)
        out[key] = resample_abs_pos_embed(value, new_size=(side, side), num_prefix_tokens=1)
    return out


def load_classifier_weights(body: FeatureLevels, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a trained classifier's weights into ``body`` (the head's, and a ViT's final norm, are dropped).

    Layers the detector adds (ResT's stage LayerNorms) keep their fresh initialisation. Every other key must match: a missing or unexpected key is an error that names it, so weights
    of another architecture are never loaded in part.
    """

    kept = {k: v for k, v in state_dict.items() if not k.startswith(body.unused_prefixes)}
    kept.update(_resampled_position_embeddings(body.model, kept))
    if body.new_prefixes:  # layers the detector adds keep their fresh initialisation
        fresh = body.model.state_dict()
        kept.update({k: v for k, v in fresh.items() if k.startswith(body.new_prefixes) and k not in kept})
    try:
        check_state_dict(body.model, kept, "the classifier weights")
    except (KeyError, ValueError) as err:
        raise type(err)(f"the classifier weights do not fit backbone '{body.name}': {err.args[0]}") from err
    body.model.load_state_dict(kept)
