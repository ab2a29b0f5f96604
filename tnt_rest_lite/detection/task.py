"""The detection training task for the engine (:class:`DetectionTask`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.synthetic import ShapeDetection
from ..train.config import TrainConfig
from ..train.tasks import Task
from .coco import COCO_METRICS
from .evaluate import evaluate_detector

__all__ = ["DetectionTask"]


class DetectionTask(Task):
    """Object detection with a torchvision detector (``tnt_rest_lite.detection.build_detector``).

    The loss is the sum of the detector's loss dict (RPN + box head for Faster R-CNN; focal +
    box regression for RetinaNet, each already normalised by the detector); evaluation is COCO
    box AP with pycocotools on the whole validation set (``AP, AP50, AP75, APS, APM, APL``).
    Batches are lists of images and targets (objects per image differ).
    """

    name = "detection"
    progress_key = "AP50"

    def __init__(self, eval_batch_size: int = 16) -> None:

        self.metric_keys = COCO_METRICS
        self.eval_batch_size = eval_batch_size
        self.collate = ShapeDetection.collate  # images and targets as lists, torchvision's form

    def prepare(self, model: nn.Module, train_set: Dataset, config: TrainConfig) -> None:
        if not hasattr(model, "label_offset"):
            raise TypeError(
                f"DetectionTask trains detectors built by tnt_rest_lite.detection.build_detector, got {type(model).__name__}"
            )
        offset = getattr(train_set, "label_offset", model.label_offset)
        if offset != model.label_offset:
            raise ValueError(
                f"the dataset's labels start at {offset} but the detector's at {model.label_offset}: "
                f"build the dataset with label_offset={model.label_offset}"
            )
        if config.mixup_alpha > 0 or config.cutmix_alpha > 0:
            raise ValueError("mixup/cutmix mix classification targets; set them to 0 for detection")

    def batch_loss(self, net: nn.Module, batch: Any, device: torch.device, use_amp: bool) -> tuple[torch.Tensor, int]:
        images, targets = batch
        images = [image.to(device, non_blocking=True) for image in images]
        targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            losses = net(images, targets)
        return sum(losses.values()), len(images)

    def evaluate(self, model: nn.Module, val_set: Dataset, loader: Any, device: torch.device) -> dict[str, float]:

        # COCO AP is not a sum over images: every process scores the whole set (same numbers on all)
        return evaluate_detector(model, val_set, batch_size=self.eval_batch_size)
