"""The training recipe (:class:`TrainConfig`), the result of a run, seeding and the AMP switch."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["TrainConfig", "TrainResult", "seed_everything", "amp_enabled"]


@dataclass
class TrainConfig:
    """Everything that defines a training run (it is stored in every checkpoint).

    The defaults are the DeiT/TNT recipe scaled down; ``optimizer="sgd", schedule="step"``,
    no label smoothing and no mixup give the plain ResNet recipe of ResT's ablation.
    """

    epochs: int = 10
    batch_size: int = 64  # global batch: split over the processes under torchrun
    lr: float = 1e-3
    weight_decay: float = 0.05
    optimizer: str = "adamw"  # "adamw" | "sgd" (momentum SGD)
    momentum: float = 0.9  # sgd only
    schedule: str = "cosine"  # "cosine" | "step"
    warmup_epochs: float = 0.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5  # cosine floor
    step_epochs: float | None = None  # step schedule: decay every this many epochs (default epochs / 3)
    step_rate: float = 0.1
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mixup_prob: float = 1.0
    ema_decay: float | None = None  # e.g. 0.999; None = no EMA
    clip_grad: float | None = None  # max gradient norm; None = no clipping
    # the optimizer and the gradient clipping update every tensor in one multi-tensor kernel (foreach)
    # rather than one small kernel per parameter: the same maths, measured faster on this CPU for the
    # small models (python -m tnt_rest_lite train-bench --steps prints before/after)
    foreach: bool = True
    amp: bool = True  # automatic mixed precision (float16 autocast + GradScaler), used on CUDA only
    # also on the CPU: the CUDA-only AMP path exercised without a GPU (the tests); slower than float32
    # for our small models on this CPU, so never a profile's setting
    amp_on_cpu: bool = False
    seed: int = 0
    num_workers: int = 0
    eval_batch_size: int | None = None  # default: 2 x batch_size
    checkpoint_dir: str | None = None  # None = no checkpoints
    resume: bool = True  # continue from checkpoint_dir/last.pt when it exists
    progress: bool = True  # tqdm progress bar
    device: str | None = None  # default: cuda if available, else cpu

    def __post_init__(self) -> None:
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got '{self.optimizer}'")
        if self.schedule not in ("cosine", "step"):
            raise ValueError(f"schedule must be 'cosine' or 'step', got '{self.schedule}'")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be positive, got {self.epochs} and {self.batch_size}")
        if (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.batch_size % 2:
            raise ValueError(
                f"mixup/cutmix pair the samples of a batch: batch_size must be even, got {self.batch_size}"
            )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What :func:`train` returns: final metrics, the per-epoch history, and how fast it went."""

    metrics: dict[str, float]  # the task's val metrics after the last epoch (+ ema_* with EMA)
    history: dict[str, list[float]]  # one entry per epoch: epoch, lr, train_loss, val_*, times
    train_images_per_s: float  # training throughput (forward + backward + step), evaluation excluded
    wall_time_s: float  # training + evaluation time of all epochs (resumed runs: summed over runs)
    num_params: int
    config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------
# Seeds and distributed set-up
# ----------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator (timm's Mixup uses it) and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (timm's Mixup draws from the legacy global generator)
    torch.manual_seed(seed)


def amp_enabled(config: TrainConfig, device: torch.device) -> bool:
    """Whether ``config`` trains ``device`` under float16 autocast with a gradient scaler."""
    return config.amp and (device.type == "cuda" or config.amp_on_cpu)
