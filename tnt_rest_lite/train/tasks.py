"""What a training task defines (:class:`Task`): the loss of a batch and the validation metrics."""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from .config import TrainConfig
from .evaluate import evaluate, unpack

__all__ = ["Task", "ClassificationTask"]


# ----------------------------------------------------------------------------------------------
# Tasks: what a batch's loss is and how a model is judged
# ----------------------------------------------------------------------------------------------


class Task(abc.ABC):
    """What :func:`train` needs to know about a task; the loop itself is the same for every task.

    A task names its validation metrics (``metric_keys``: the history keeps ``val_<key>`` per
    epoch), computes the loss of one batch and evaluates a model on the validation set.
    """

    name: str = "task"
    metric_keys: tuple[str, ...] = ()
    progress_key: str = ""  # the metric the progress bar shows
    collate: Any = None  # the DataLoader's collate_fn (None: torch's default)

    def prepare(self, model: nn.Module, train_set: Dataset, config: TrainConfig) -> None:  # noqa: B027 (optional hook)
        """Check that ``model`` fits ``train_set`` and build what the loss needs (default: nothing)."""

    @abc.abstractmethod
    def batch_loss(self, net: nn.Module, batch: Any, device: torch.device, use_amp: bool) -> tuple[torch.Tensor, int]:
        """The mean loss of ``batch`` (for the optimizer) and the batch's number of samples."""

    @abc.abstractmethod
    def evaluate(self, model: nn.Module, val_set: Dataset, loader: Any, device: torch.device) -> dict[str, float]:
        """The ``metric_keys`` of ``model`` on the validation set (``loader``: this process's share), in
        float32: the precision the test split is evaluated in."""


class ClassificationTask(Task):
    """Image classification: cross-entropy (label smoothing, mixup/cutmix as configured); top-1/top-5."""

    name = "classification"
    metric_keys = ("loss", "top1", "top5")
    progress_key = "top1"

    def prepare(self, model: nn.Module, train_set: Dataset, config: TrainConfig) -> None:
        num_classes = _infer_num_classes(model, train_set)
        head = getattr(model, "num_classes", num_classes)
        if head != num_classes:
            raise ValueError(
                f"the model has {head} outputs but the dataset has {num_classes} classes; "
                f"create it with num_classes={num_classes}"
            )
        self.criterion, self.mixup = _build_loss(config, num_classes)

    def batch_loss(self, net: nn.Module, batch: Any, device: torch.device, use_amp: bool) -> tuple[torch.Tensor, int]:
        images, labels = unpack(batch)
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if self.mixup is not None:
            images, labels = self.mixup(images, labels)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            loss = self.criterion(net(images), labels)
        return loss, labels.shape[0]

    def evaluate(self, model: nn.Module, val_set: Dataset, loader: Any, device: torch.device) -> dict[str, float]:
        return evaluate(model, loader, device)


def _build_loss(config: TrainConfig, num_classes: int) -> tuple[nn.Module, Any]:
    """The training loss and, if enabled, timm's ``Mixup`` (which then smooths the labels itself)."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if config.mixup_alpha > 0 or config.cutmix_alpha > 0:
        mixup = Mixup(
            mixup_alpha=config.mixup_alpha,
            cutmix_alpha=config.cutmix_alpha,
            prob=config.mixup_prob,
            label_smoothing=config.label_smoothing,
            num_classes=num_classes,
        )
        return SoftTargetCrossEntropy(), mixup
    if config.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=config.label_smoothing), None
    return nn.CrossEntropyLoss(), None


def _infer_num_classes(model: nn.Module, dataset: Dataset) -> int:
    classes = getattr(dataset, "classes", None)
    if classes is not None:
        return len(classes)
    head = getattr(model, "num_classes", None)
    if head is None:
        raise ValueError("cannot tell the number of classes: give the dataset a 'classes' attribute")
    return int(head)
