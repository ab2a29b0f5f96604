"""Evaluation of a classifier (top-1/top-5 and loss), summed over processes under DDP."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from timm.utils import accuracy
from torch import nn
from torch.utils.data import DataLoader

from .distributed import all_reduce_sum, distributed_info

__all__ = ["evaluate"]


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` from a batch of ``(image, label)`` tuples or of SyntheticShapes dicts."""
    if isinstance(batch, dict):
        return batch["image"], batch["label"]
    return batch[0], batch[1]


def batch_hits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """How many of a batch's labels are the top-1 and among the top-5 logits (``timm.utils.accuracy``;
    top-5 is top-all with fewer than five classes)."""
    acc1, acc5 = accuracy(logits, labels, topk=(1, 5))  # percentages of the batch
    n = labels.numel()
    return round(acc1.item() * n / 100), round(acc5.item() * n / 100)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device | str | None = None) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%) and mean cross-entropy of ``model`` over ``loader``, in float32.

    Validation (every epoch) and test (the tables) are evaluated in the same precision, float32,
    whatever precision trained the model. Under torchrun each process passes its share of the data; the counts are summed over the
    processes, so every process returns the metrics of the whole set.
    """
    info = distributed_info() if dist.is_available() and dist.is_initialized() else None
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum = top1 = top5 = count = 0.0
    for batch in loader:
        images, labels = unpack(batch)
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        logits = model(images).float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        hits1, hits5 = batch_hits(logits, labels)
        top1 += hits1
        top5 += hits5
        count += labels.numel()
    model.train(was_training)
    if info is not None:
        loss_sum, top1, top5, count = all_reduce_sum([loss_sum, top1, top5, count], info)
    if count == 0:
        raise ValueError("evaluate() got an empty loader")
    return {"top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count, "loss": loss_sum / count, "n": int(count)}
