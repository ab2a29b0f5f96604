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

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import _convert_to_roi_format, _setup_scales  # the parent's own helpers

__all__ = [
    "BACKBONES",
    "DETECTORS",
    "BackboneSpec",
    "SimplePyramid",
    "FeatureLevels",
    "FPNBackbone",
    "build_backbone",
    "build_detector",
    "vit_block_indices",
    "backbone_spec",
    "parameter_breakdown",
    "load_classifier_weights",
    "COCO_METRICS",
    "to_coco",
    "detections_to_coco",
    "coco_evaluate",
    "CocoFiles",
    "DETECTION_IMAGE_SIZE",
    "detection_dataset",
    "predict",
    "evaluate_detector",
    "plot_detections",
    "level_token_stats",
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


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


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
            LayerNorm2d(width),
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
    from .registry import create_model

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


# ----------------------------------------------------------------------------------------------
# RoIAlign as two small matrix products (the CPU's fast path)
# ----------------------------------------------------------------------------------------------

# Largest (RoIs x bins x channels x width) product of one image's first matrix product: COCO-sized maps
# (800 px images) would need gigabytes, so those take torchvision's kernel.
_SEPARABLE_MAX_ELEMENTS = 2**25


def _roi_axis_weights(start: torch.Tensor, length: torch.Tensor, bins: int, samples: int, size: int) -> torch.Tensor:
    """``(K, bins, size)``: each bin's average linear-interpolation weight on each row (or column).

    RoIAlign's bilinear sample is a product of a weight along y and one along x, and so is its
    rule for samples off the map (zero beyond one cell outside, clamped to the edge inside), so
    the pooled value is ``Wy @ F @ Wx^T``. These are torchvision's kernel's rules, axis by axis.
    """
    bin_size = length / bins
    offsets = (
        torch.arange(bins, dtype=start.dtype, device=start.device)[:, None]
        + (torch.arange(samples, dtype=start.dtype, device=start.device)[None, :] + 0.5) / samples
    )
    position = start[:, None, None] + offsets[None] * bin_size[:, None, None]  # (K, bins, samples)
    inside = (position >= -1.0) & (position <= size)
    position = position.clamp(min=0)
    low = position.floor()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    fraction = torch.where(at_edge, torch.zeros_like(position), position - low)
    high = torch.where(at_edge, low, low + 1)
    grid = torch.arange(size, dtype=start.dtype, device=start.device)
    weights = (grid == low[..., None]) * (1 - fraction)[..., None] + (grid == high[..., None]) * fraction[..., None]
    return (weights * inside[..., None]).sum(2) / samples


def roi_align_separable(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
) -> torch.Tensor:
    """``torchvision.ops.roi_align`` (``aligned=False``, ``sampling_ratio > 0``) as matrix products.

    ``features`` ``(N, C, H, W)``, ``rois`` ``(K, 5)`` rows ``[image, x0, y0, x1, y1]``. Same values
    and gradients as torchvision's kernel (a test checks both); on CPU its backward is several times
    faster for the small maps here, as it is two matrix products instead of scattered additions.
    Falls back to torchvision where the products would be large (COCO-sized maps) or for adaptive
    sampling (``sampling_ratio <= 0``).
    """
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    n, channels, height, width = features.shape
    if sampling_ratio <= 0 or len(rois) * out_h * channels * width > _SEPARABLE_MAX_ELEMENTS:
        return roi_align(features, rois, (out_h, out_w), spatial_scale, sampling_ratio)
    x0, y0, x1, y1 = (rois[:, j] * spatial_scale for j in range(1, 5))
    # the legacy (aligned=False) rule: a box is at least one cell wide
    weights_y = _roi_axis_weights(y0, (y1 - y0).clamp(min=1.0), out_h, sampling_ratio, height)
    weights_x = _roi_axis_weights(x0, (x1 - x0).clamp(min=1.0), out_w, sampling_ratio, width)
    image_index = rois[:, 0].long()
    pooled, order = [], []
    for image in range(n):
        # per image, so the feature map is never copied per RoI
        index = torch.where(image_index == image)[0]
        if len(index) == 0:
            continue
        k = len(index)
        rows = weights_y[index].reshape(k * out_h, height) @ features[image].transpose(0, 1).reshape(height, -1)
        cells = torch.bmm(rows.reshape(k, out_h * channels, width), weights_x[index].transpose(1, 2))
        pooled.append(cells.reshape(k, out_h, channels, out_w).transpose(1, 2))
        order.append(index)
    if not pooled:
        return features.new_zeros(0, channels, out_h, out_w)
    result = features.new_empty(len(rois), channels, out_h, out_w)
    return result.index_copy(0, torch.cat(order), torch.cat(pooled))


def compare_roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int = 7,
    spatial_scale: float = 0.25,
    sampling_ratio: int = 2,
    repeats: int = 5,
) -> dict[str, float]:
    """:func:`roi_align_separable` against ``torchvision.ops.roi_align`` on the same input, in one run.

    Returns the largest differences of the pooled values and of the gradients (for a random
    upstream gradient) and the median seconds of one forward + backward pass of each.
    """
    import statistics
    import time

    features = features.detach().requires_grad_(True)
    upstream = torch.randn(
        len(rois), features.shape[1], output_size, output_size, generator=torch.Generator().manual_seed(0)
    )
    implementations = {
        "torchvision": lambda: roi_align(features, rois, output_size, spatial_scale, sampling_ratio),
        "separable": lambda: roi_align_separable(features, rois, output_size, spatial_scale, sampling_ratio),
    }
    pooled, grads, seconds = {}, {}, {}
    for name, pool in implementations.items():
        times = []
        for _ in range(repeats + 1):  # the first pass is a warm-up
            start = time.perf_counter()
            out = pool()
            (grad,) = torch.autograd.grad((out * upstream).sum(), features)
            times.append(time.perf_counter() - start)
        pooled[name], grads[name], seconds[name] = out.detach(), grad, statistics.median(times[1:])
    return {
        "max_value_difference": float((pooled["torchvision"] - pooled["separable"]).abs().max()),
        "max_gradient_difference": float((grads["torchvision"] - grads["separable"]).abs().max()),
        "torchvision_s": seconds["torchvision"],
        "separable_s": seconds["separable"],
    }


class SeparableMultiScaleRoIAlign(MultiScaleRoIAlign):
    """Faster R-CNN's RoI pooler: torchvision's ``MultiScaleRoIAlign`` (same level mapping and values)
    pooling with :func:`roi_align_separable` on the CPU; on GPUs torchvision's own kernel."""

    def forward(
        self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        features = [x[name] for name in self.featmap_names]
        if features[0].device.type != "cpu":
            return super().forward(x, boxes, image_shapes)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                features, image_shapes, self.canonical_scale, self.canonical_level
            )
        rois = _convert_to_roi_format(boxes)
        levels = self.map_levels(boxes)
        result = features[0].new_zeros(len(rois), features[0].shape[1], *self.output_size)
        for level, (feature, scale) in enumerate(zip(features, self.scales, strict=True)):
            index = torch.where(levels == level)[0]
            if len(index):
                pooled = roi_align_separable(feature, rois[index], self.output_size, scale, self.sampling_ratio)
                result = result.index_copy(0, index, pooled)
        return result


def _anchor_generator(kind: str, strides: Sequence[int]) -> Any:
    """Anchors scaled to the levels' strides: 8 x stride, as torchvision's defaults are at strides 4-64.

    Faster R-CNN: one size per level (32-512 px at strides 4-64); RetinaNet: three octave scales
    per level (32-512 px at strides 8-128, times 1, 2^(1/3), 2^(2/3)). Three aspect ratios each.
    """
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    if kind == "faster_rcnn":
        sizes = tuple((8 * s,) for s in strides)
    else:
        sizes = tuple(tuple(int(4 * s * 2 ** (k / 3)) for k in range(3)) for s in strides)
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(strides))


def build_detector(
    kind: str,
    backbone: str,
    num_classes: int,
    *,
    stage_norm: bool = False,
    image_size: int | tuple[int, int] | None = None,
    weights: Mapping[str, torch.Tensor] | None = None,
    norm_eval: bool = True,
    fpn_channels: int = 256,
    box_head_width: int = 1024,
    backbone_options: Mapping[str, Any] | None = None,
    frozen_stages: int | None = None,
    **options: Any,
) -> nn.Module:
    """A torchvision detector of ``kind`` on ``backbone`` for ``num_classes`` object classes.

    Args:
        kind: ``"faster_rcnn"`` (TNT's Table 2) or ``"retinanet"`` (ResT's Table 2).
        backbone: a name of :data:`BACKBONES` (the published sizes and their small counterparts).
        num_classes: object classes (80 for COCO); Faster R-CNN adds its background class, so its
            labels are ``1..num_classes``; RetinaNet's (sigmoid scores, no background) are
            ``0..num_classes-1``. The detector's ``label_offset`` says which.
        stage_norm: ResT only: the LayerNorm on each stage output ("w LN").
        image_size: the images' side (or ``(min, max)``): torchvision resizes to it (default
            800/1333, COCO's; small synthetic images keep their own size).
        weights: the classifier's ``state_dict`` to start from (its head is dropped; a mismatch is
            an error naming the keys).
        norm_eval: keep the backbone's batch norms in eval mode while training (mmdetection's default).
        fpn_channels: the FPN's width, which every head sees (256 in both papers; the small
            counterparts use less, as their backbones are narrower).
        box_head_width: Faster R-CNN's two-layer box head width (1024 in both papers' detectors).
        backbone_options: config overrides of the backbone's classifier (as it was trained).
        frozen_stages: ResNet only: the stem and this many stages keep their classifier weights
            (default 1 for ResNets, mmdetection's default in both papers' configs; 0 otherwise).
        options: passed to torchvision's ``FasterRCNN`` / ``RetinaNet`` (e.g. ``box_detections_per_img``).
    """
    from torchvision.models.detection import FasterRCNN, RetinaNet

    fpn = build_backbone(
        backbone,
        kind,
        out_channels=fpn_channels,
        stage_norm=stage_norm,
        norm_eval=norm_eval,
        backbone_options=backbone_options,
        frozen_stages=(1 if backbone_spec(backbone).family == "resnet" else 0)
        if frozen_stages is None
        else frozen_stages,
    )
    if weights is not None:
        load_classifier_weights(fpn.body, weights)
    if image_size is not None:
        low, high = (image_size, image_size) if isinstance(image_size, int) else image_size
        options.setdefault("min_size", low)
        options.setdefault("max_size", high)
    anchors = _anchor_generator(kind, fpn.strides)
    if kind == "faster_rcnn":
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

        roi_pool = SeparableMultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
        box_head = TwoMLPHead(fpn_channels * 7 * 7, box_head_width)
        model = FasterRCNN(
            fpn,
            num_classes=None,  # the predictor below has them: background + num_classes
            rpn_anchor_generator=anchors,
            box_roi_pool=roi_pool,
            box_head=box_head,
            box_predictor=FastRCNNPredictor(box_head_width, num_classes + 1),
            **options,
        )
        model.label_offset = 1
    else:
        model = RetinaNet(fpn, num_classes=num_classes, anchor_generator=anchors, **options)
        model.label_offset = 0
    model.kind, model.backbone_name, model.stage_norm = kind, backbone, stage_norm
    return model


def load_classifier_weights(body: FeatureLevels, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a trained classifier's weights into ``body`` (the head's, and a ViT's final norm, are dropped).

    Layers the detector adds (ResT's stage LayerNorms) keep their fresh initialisation. Every other key must match: a missing or unexpected key is an error that names it, so weights
    of another architecture are never loaded in part.
    """
    from .weights import check_state_dict

    kept = {k: v for k, v in state_dict.items() if not k.startswith(body.unused_prefixes)}
    if body.new_prefixes:  # layers the detector adds keep their fresh initialisation
        fresh = body.model.state_dict()
        kept.update({k: v for k, v in fresh.items() if k.startswith(body.new_prefixes) and k not in kept})
    try:
        check_state_dict(body.model, kept, "the classifier weights")
    except (KeyError, ValueError) as err:
        raise type(err)(f"the classifier weights do not fit backbone '{body.name}': {err.args[0]}") from err
    body.model.load_state_dict(kept)


def parameter_breakdown(detector: nn.Module) -> dict[str, int]:
    """Parameters by part: backbone, pyramid adapter (ViTs), FPN, RPN / heads, and the total."""
    from .complexity import count_params

    body, fpn = detector.backbone.body, detector.backbone.fpn
    total = count_params(detector)
    parts = {
        "backbone": count_params(body.model),
        "pyramid adapter": count_params(body.pyramid) if body.pyramid is not None else 0,
        "FPN": count_params(fpn),
        "heads": total - count_params(detector.backbone),
    }
    parts["total"] = total
    return parts


# ----------------------------------------------------------------------------------------------
# COCO format and pycocotools evaluation
# ----------------------------------------------------------------------------------------------

COCO_METRICS = ("AP", "AP50", "AP75", "APS", "APM", "APL")  # the columns of TNT's Table 2


def _quiet() -> Any:
    """pycocotools prints its progress; the chapters show the numbers instead."""
    import contextlib
    import io

    return contextlib.redirect_stdout(io.StringIO())


def to_coco(dataset: Any, class_names: Sequence[str] | None = None, label_offset: int = 1) -> dict[str, Any]:
    """Ground truth of a detection dataset as a COCO json dict (``images``, ``annotations``, ``categories``).

    ``dataset[i]`` is ``(image (3, H, W), {"boxes" (N, 4) xyxy, "labels" (N,)})`` as torchvision's
    detectors take it, labels starting at ``label_offset``; COCO category ids are ``label -
    label_offset + 1`` and boxes ``[x, y, w, h]``. Image ids are the dataset indices.
    """
    images, annotations = [], []
    num_classes = 0
    for index in range(len(dataset)):
        image, target = dataset[index]
        h, w = int(image.shape[-2]), int(image.shape[-1])
        images.append({"id": index, "width": w, "height": h, "file_name": f"{index:06d}.png"})
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist(), strict=True):
            x0, y0, x1, y1 = box
            category = int(label) - label_offset + 1
            num_classes = max(num_classes, category)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": category,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    if class_names is None:
        class_names = [str(c) for c in range(1, num_classes + 1)]
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def detections_to_coco(
    predictions: Sequence[Mapping[str, torch.Tensor]], image_ids: Sequence[int], label_offset: int = 1
) -> list[dict[str, Any]]:
    """A detector's outputs (``boxes`` xyxy, ``scores``, ``labels``) as COCO result records."""
    records = []
    for image_id, pred in zip(image_ids, predictions, strict=True):
        for box, score, label in zip(
            pred["boxes"].tolist(), pred["scores"].tolist(), pred["labels"].tolist(), strict=True
        ):
            x0, y0, x1, y1 = box
            records.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(label) - label_offset + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": float(score),
                }
            )
    return records


def coco_evaluate(
    ground_truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], area_scale: float = 1.0
) -> dict[str, float]:
    """COCO box AP with pycocotools: ``AP, AP50, AP75, APS, APM, APL`` in percent.

    ``area_scale`` multiplies COCO's size thresholds (small < 32², large > 96² pixels, set for
    images about 640 px wide): for small images pass ``(side / 640)**2`` so "small", "medium" and
    "large" keep their share of the image. A size bin without objects gives ``nan`` (COCO's -1).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with _quiet():
        gt = COCO()
        gt.dataset = {k: list(v) for k, v in ground_truth.items()}
        gt.createIndex()
        if not detections:
            return {k: 0.0 for k in COCO_METRICS}
        dt = gt.loadRes([dict(d) for d in detections])
        evaluator = COCOeval(gt, dt, iouType="bbox")
        small, large = 32**2 * area_scale, 96**2 * area_scale
        evaluator.params.areaRng = [[0, 1e10], [0, small], [small, large], [large, 1e10]]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats[:6]
    return {k: (float("nan") if v < 0 else 100.0 * float(v)) for k, v in zip(COCO_METRICS, stats, strict=True)}


class CocoFiles(torch.utils.data.Dataset):
    """A COCO-format dataset on disk (COCO itself, or any COCO json with its images), torchvision style.

    ``root`` holds the images named in ``annotation_file``'s ``file_name`` fields. Items are
    ``(image float (3, H, W) in [0, 1], {"boxes" xyxy, "labels"})`` with labels ``1..C`` in the
    order of the json's categories (``label_offset`` shifts them, e.g. 0 for RetinaNet). Missing
    files are an error that names them (no download is attempted: COCO is 20 GB).
    """

    def __init__(self, root: str, annotation_file: str, label_offset: int = 1) -> None:
        from pathlib import Path

        self.root, annotations = Path(root), Path(annotation_file)
        if not annotations.is_file() or not self.root.is_dir():
            raise FileNotFoundError(
                f"COCO-format data not found: expected the annotation file {annotations} and the image folder "
                f"{self.root}. Download COCO 2017 (https://cocodataset.org: val2017 images and "
                f"annotations_trainval2017) or point these at any COCO-json dataset; nothing is downloaded here."
            )
        from pycocotools.coco import COCO

        with _quiet():
            self.coco = COCO(str(annotations))
        self.ids = sorted(self.coco.imgs)
        self.category_ids = sorted(self.coco.cats)
        self.classes = [self.coco.cats[c]["name"] for c in self.category_ids]
        self._label = {c: i + label_offset for i, c in enumerate(self.category_ids)}
        self.label_offset = label_offset

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        import numpy as np
        from PIL import Image

        info = self.coco.imgs[self.ids[index]]
        path = self.root / info["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"image {path} named in the annotations is missing")
        image = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255
        anns = [a for a in self.coco.imgToAnns[self.ids[index]] if not a.get("iscrowd", 0)]
        boxes = torch.tensor(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns],
            dtype=torch.float32,
        ).reshape(-1, 4)
        labels = torch.tensor([self._label[a["category_id"]] for a in anns], dtype=torch.int64)
        return image, {"boxes": boxes, "labels": labels}


# ----------------------------------------------------------------------------------------------
# Data and evaluation
# ----------------------------------------------------------------------------------------------

DETECTION_IMAGE_SIZE = 64  # twice the classifiers' 32 px: several objects per image, each about as large as there
CLASSIFIER_IMAGE_SIZE = 32  # the side of the images the small classifiers (the backbones' initialisation) saw


def detection_dataset(
    source: str,
    split: str,
    num_samples: int | None = None,
    *,
    image_size: int = DETECTION_IMAGE_SIZE,
    seed: int = 0,
    label_offset: int = 1,
    difficulty: str = "standard",
    distractors: int = 3,
    categories: str = "class",
    root: str | None = None,
    annotation_file: str | None = None,
) -> Any:
    """A detection split, torchvision style: ``(image float (3, H, W) in [0, 1], {"boxes", "labels"})``.

    ``source="synthetic"``: the detection view of ``SyntheticShapes`` (``difficulty``'s clutter, up to
    ``distractors`` other objects of 0.8-1x the main one's size beside it, each drawn as large as
    the classifiers saw objects at 32 px, every visible object boxed and labelled;
    train / val / test are independent random streams). ``source="coco"``: a COCO-format dataset
    on disk (:class:`CocoFiles`, ``root`` and ``annotation_file``; a clear error when missing).
    ``label_offset``: the detector's (:func:`build_detector` sets ``model.label_offset``).
    ``categories``: synthetic objects labelled by class (20, shape x texture) or by shape (5).
    """
    if source == "synthetic":
        from .data import SyntheticShapes

        if num_samples is None:
            raise ValueError("the synthetic detection data needs num_samples")
        shapes = SyntheticShapes(
            num_samples,
            image_size=image_size,
            split=split,
            seed=seed,
            difficulty=difficulty,
            distractors=distractors,
            # every object as large, in pixels, as the classifiers saw objects at 32 px: the
            # scene is several legible objects, not one object with illegible specks beside it
            object_scale=min(1.0, CLASSIFIER_IMAGE_SIZE / image_size),
            distractor_scale=(0.8, 1.0),
        )
        return shapes.detection_view(label_offset=label_offset, categories=categories)
    if source == "coco":
        if root is None or annotation_file is None:
            raise ValueError("source='coco' needs root (the image folder) and annotation_file (the COCO json)")
        return CocoFiles(root, annotation_file, label_offset=label_offset)
    raise ValueError(f"Unknown detection source '{source}'; expected 'synthetic' or 'coco'")


@torch.no_grad()
def predict(detector: nn.Module, dataset: Any, batch_size: int = 16) -> list[dict[str, torch.Tensor]]:
    """The detector's outputs on every image of ``dataset``, in order (eval mode, on CPU tensors)."""
    was_training = detector.training
    detector.eval()
    device = next(detector.parameters()).device
    outputs = []
    try:
        for start in range(0, len(dataset), batch_size):
            images = [dataset[i][0].to(device) for i in range(start, min(start + batch_size, len(dataset)))]
            outputs += [{k: v.cpu() for k, v in out.items()} for out in detector(images)]
    finally:
        detector.train(was_training)
    return outputs


def evaluate_detector(
    detector: nn.Module, dataset: Any, batch_size: int = 16, reference_side: float = 640.0
) -> dict[str, float]:
    """COCO box AP (``AP, AP50, AP75, APS, APM, APL``, percent) of ``detector`` on ``dataset``.

    The size bins are scaled from COCO's ~640 px images to the dataset's image side, so "small"
    keeps its share of the image (:func:`coco_evaluate`'s ``area_scale``).
    """
    offset = getattr(detector, "label_offset", 1)
    ground_truth = to_coco(dataset, getattr(dataset, "classes", None), label_offset=offset)
    side = ground_truth["images"][0]["width"] if ground_truth["images"] else reference_side
    predictions = predict(detector, dataset, batch_size)
    detections = detections_to_coco(predictions, list(range(len(dataset))), label_offset=offset)
    return coco_evaluate(ground_truth, detections, area_scale=(side / reference_side) ** 2)


def plot_detections(
    dataset: Any,
    predictions: Sequence[Mapping[str, torch.Tensor]],
    indices: Sequence[int],
    score_threshold: float = 0.5,
    title: str = "",
) -> Any:
    """Predicted boxes (solid, with class and score) against the ground truth (dashed white) on a few images."""
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(indices), figsize=(2.4 * len(indices), 2.6), squeeze=False)
    for ax, i in zip(axes[0], indices, strict=True):
        image, target = dataset[i]
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        for x0, y0, x1, y1 in target["boxes"].tolist():
            ax.add_patch(
                patches.Rectangle(
                    (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linestyle="--", linewidth=1
                )
            )
        pred = predictions[i]
        keep = pred["scores"] >= score_threshold
        for (x0, y0, x1, y1), label, score in zip(
            pred["boxes"][keep].tolist(), pred["labels"][keep].tolist(), pred["scores"][keep].tolist(), strict=True
        ):
            ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="red", linewidth=1.2))
            ax.text(x0, y0, f"{label} {score:.2f}", color="red", fontsize=6, va="bottom")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"predictions (red, score ≥ {score_threshold}) against the ground truth (dashed)", fontsize=9)
    fig.tight_layout()
    return fig


@torch.no_grad()
def level_token_stats(body: FeatureLevels, images: torch.Tensor) -> list[dict[str, float]]:
    """Per level: the mean over tokens of each token's channel mean and channel standard deviation.

    What ResT's stage LayerNorm changes: with it, every token of a normed level has channel mean
    ``bias`` and standard deviation ``|weight|`` (0 and 1 before any training).
    """
    was_training = body.training
    body.eval()
    try:
        levels = body(images)
    finally:
        body.train(was_training)
    stats = []
    for name, level in levels.items():
        tokens = level.flatten(2).transpose(1, 2)  # (B, H*W, C)
        stats.append(
            {
                "level": name,
                "channels": int(level.shape[1]),
                "token_mean": float(tokens.mean(-1).mean()),
                "token_std": float(tokens.std(-1, unbiased=False).mean()),
            }
        )
    return stats
