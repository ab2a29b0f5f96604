"""Optimizer and learning-rate schedule from a :class:`~tnt_rest_lite.train.config.TrainConfig` (timm's)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import TrainConfig


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    # timm leaves biases and norm weights out of weight decay, and reads model.no_weight_decay()
    name = "adamw" if config.optimizer == "adamw" else "momentum"  # timm's "momentum" = SGD, no Nesterov
    kwargs = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
    return create_optimizer_v2(
        model, opt=name, lr=config.lr, weight_decay=config.weight_decay, foreach=config.foreach, **kwargs
    )


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> Any:
    from timm.scheduler import create_scheduler_v2

    # per-step updates (step_on_epochs=False): the warm-up and the cosine are smooth even in 3 epochs
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=config.schedule,
        num_epochs=config.epochs,
        warmup_epochs=config.warmup_epochs,
        warmup_lr=config.warmup_lr,
        min_lr=config.min_lr,
        decay_epochs=config.step_epochs if config.step_epochs is not None else config.epochs / 3,
        decay_rate=config.step_rate,
        step_on_epochs=False,
        updates_per_epoch=steps_per_epoch,
    )
    return scheduler
