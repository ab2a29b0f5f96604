"""Predictions of a detector and its COCO AP on a split."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .coco import COCO_IMAGE_SIDE, area_scale_for, coco_evaluate, detections_to_coco, objects_per_bin, to_coco

__all__ = ["predict", "evaluate_detector", "dataset_objects_per_bin"]


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


def _ground_truth(dataset: Any, reference_side: float, label_offset: int) -> tuple[dict[str, Any], float]:
    """``dataset``'s COCO ground truth and the size bins' ``area_scale``, from COCO's image side to the dataset's."""
    ground_truth = to_coco(dataset, getattr(dataset, "classes", None), label_offset=label_offset)
    side = ground_truth["images"][0]["width"] if ground_truth["images"] else reference_side
    return ground_truth, area_scale_for(side, reference_side)


def evaluate_detector(
    detector: nn.Module, dataset: Any, batch_size: int = 16, reference_side: float = COCO_IMAGE_SIDE
) -> dict[str, float]:
    """COCO box AP (``AP, AP50, AP75, APS, APM, APL``, percent) of ``detector`` on ``dataset``.

    The size bins are scaled from COCO's ~640 px images to the dataset's image side, so "small"
    keeps its share of the image (:func:`coco_evaluate`'s ``area_scale``).
    """
    offset = getattr(detector, "label_offset", 1)
    ground_truth, area_scale = _ground_truth(dataset, reference_side, offset)
    predictions = predict(detector, dataset, batch_size)
    detections = detections_to_coco(predictions, list(range(len(dataset))), label_offset=offset)
    return coco_evaluate(ground_truth, detections, area_scale=area_scale)


def dataset_objects_per_bin(
    dataset: Any, reference_side: float = COCO_IMAGE_SIDE, label_offset: int = 1
) -> dict[str, int]:
    """The ground-truth objects of ``dataset`` per COCO size bin, scaled as :func:`evaluate_detector` scales them."""
    return objects_per_bin(*_ground_truth(dataset, reference_side, label_offset))
