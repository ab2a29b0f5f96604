"""torchvision's Faster R-CNN and RetinaNet on our backbones, and their parameter breakdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..measure.complexity import count_params
from .backbones import backbone_spec, build_backbone, load_classifier_weights
from .roi_align import SeparableMultiScaleRoIAlign

__all__ = ["DEFAULT_ANCHOR_SCALE", "build_detector", "parameter_breakdown"]


DEFAULT_ANCHOR_SCALE = 8.0  # anchor side / level stride of torchvision's Faster R-CNN defaults (32 px at stride 4)


def _anchor_generator(kind: str, strides: Sequence[int], anchor_scale: float = DEFAULT_ANCHOR_SCALE) -> Any:
    """Anchors scaled to the levels' strides: ``anchor_scale`` x stride (torchvision's defaults: 8).

    Faster R-CNN: one size per level (32-512 px at strides 4-64 with the default 8); RetinaNet:
    three octave scales per level from half that (32-512 px at strides 8-128, times 1, 2^(1/3),
    2^(2/3)). Three aspect ratios each. Sizes are at least 1 px.
    """
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    if kind == "faster_rcnn":
        sizes = tuple((max(1, round(anchor_scale * s)),) for s in strides)
    else:
        sizes = tuple(tuple(max(1, int(anchor_scale / 2 * s * 2 ** (k / 3))) for k in range(3)) for s in strides)
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
    anchor_scale: float = DEFAULT_ANCHOR_SCALE,
    **options: Any,
) -> nn.Module:
    """A torchvision detector of ``kind`` on ``backbone`` for ``num_classes`` object classes.

    Args:
        kind: ``"faster_rcnn"`` (TNT's Table 2) or ``"retinanet"`` (ResT's Table 2).
        backbone: a name of :data:`BACKBONES` (the published sizes and their small counterparts).
        num_classes: object classes (80 for COCO); Faster R-CNN's labels are ``1..num_classes`` (0 is
            its background), RetinaNet's ``0..num_classes-1``: ``model.label_offset`` says which.
        stage_norm: ResT only: the LayerNorm on each stage output ("w LN").
        image_size: the images' side (or ``(min, max)``): torchvision resizes to it (default
            800/1333, COCO's; small synthetic images keep their own size).
        weights: the classifier's ``state_dict`` to start from (head dropped; a mismatch names the keys).
        norm_eval: keep the backbone's batch norms in eval mode while training (mmdetection's default).
        fpn_channels: the FPN's width, which every head sees (256 in both papers; the small
            counterparts use less, as their backbones are narrower).
        box_head_width: Faster R-CNN's two-layer box head width (1024 in both papers' detectors).
        backbone_options: config overrides of the backbone's classifier (as it was trained).
        frozen_stages: ResNet only: the stem and this many stages keep their classifier weights
            (default 1 for ResNets, mmdetection's default in both papers' configs; 0 otherwise).
        anchor_scale: anchor side per level / the level's stride (torchvision's 8).
        options: passed to torchvision's ``FasterRCNN`` / ``RetinaNet`` (e.g. ``box_detections_per_img``).
    """
    if frozen_stages is None:
        frozen_stages = 1 if backbone_spec(backbone).family == "resnet" else 0
    fpn = build_backbone(
        backbone,
        kind,
        out_channels=fpn_channels,
        stage_norm=stage_norm,
        norm_eval=norm_eval,
        backbone_options=backbone_options,
        frozen_stages=frozen_stages,
    )
    if weights is not None:
        load_classifier_weights(fpn.body, weights)
    if image_size is not None:
        low, high = (image_size, image_size) if isinstance(image_size, int) else image_size
        options = {"min_size": low, "max_size": high, **options}  # explicit options win
    anchors = _anchor_generator(kind, fpn.strides, anchor_scale)
    if kind == "faster_rcnn":
        model = _faster_rcnn(fpn, anchors, num_classes, fpn_channels, box_head_width, options)
    else:
        model = _retinanet(fpn, anchors, num_classes, options)
    model.kind, model.backbone_name, model.stage_norm = kind, backbone, stage_norm
    return model


def _faster_rcnn(
    fpn: nn.Module, anchors: Any, num_classes: int, fpn_channels: int, box_head_width: int, options: dict[str, Any]
) -> nn.Module:
    """torchvision's Faster R-CNN on ``fpn``: separable RoIAlign, a two-layer box head, background + classes."""
    from torchvision.models.detection import FasterRCNN
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
    return model


def _retinanet(fpn: nn.Module, anchors: Any, num_classes: int, options: dict[str, Any]) -> nn.Module:
    """torchvision's RetinaNet on ``fpn`` (sigmoid scores, labels ``0..num_classes-1``)."""
    from torchvision.models.detection import RetinaNet

    model = RetinaNet(fpn, num_classes=num_classes, anchor_generator=anchors, **options)
    model.label_offset = 0
    return model


def parameter_breakdown(detector: nn.Module) -> dict[str, int]:
    """Parameters by part: backbone, pyramid adapter (ViTs), FPN, RPN / heads, and the total."""

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
