"""The training and evaluation engine that every notebook uses.

One function trains a model: :func:`train` (``model, train_set, val_set, TrainConfig``). A
:class:`Task` says what a batch's loss is and how a model is evaluated: :class:`ClassificationTask`
(the default) or :class:`DetectionTask` (torchvision's detectors, COCO AP); the loop, the
checkpoints and the resumption are the same for both. For classification it is the
recipe of DeiT/TNT at small scale (AdamW, warm-up + cosine, label smoothing, optional mixup/cutmix
and EMA, gradient clipping, mixed precision on CUDA) or, with ``optimizer="sgd"`` and
``schedule="step"``, the plain ResNet recipe. timm supplies the well-tested parts: the optimizer
and scheduler factories, ``Mixup``, the loss classes and ``ModelEmaV3``.

Reproducibility is part of the contract:

* same seed, same metrics (on CPU): every random number comes from seeded generators, and the data
  order of epoch ``e`` depends only on ``(seed, e)``;
* a checkpoint is written after every epoch (temporary file + ``os.replace``, so a crash never leaves
  half a file) and holds everything the next epoch needs, random-number states included; an
  interrupted run that resumes from it ends with exactly the metrics of an uninterrupted one;
* checkpoints are loaded with ``torch.load(..., weights_only=True)`` (no pickled code), and a corrupt
  or mismatched file is an error naming the file and the mismatched keys;
* under ``torchrun --nproc_per_node=N`` the same code runs with DistributedDataParallel (gloo on
  CPU, nccl on CUDA): each process sees ``1/N`` of every global batch and the metrics are reduced
  over the processes; only rank 0 writes checkpoints.
"""

from __future__ import annotations

import abc
import argparse
import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

__all__ = [
    "TrainConfig",
    "TrainResult",
    "CheckpointError",
    "train",
    "train_step",
    "build_optimizer",
    "build_scheduler",
    "Task",
    "ClassificationTask",
    "DetectionTask",
    "evaluate",
    "seed_everything",
    "save_checkpoint",
    "load_checkpoint",
    "plot_history",
    "DistInfo",
    "distributed_info",
    "count_trainable",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "RESUMABLE_CHANGES",
    "FINITE_CHECK_EVERY",
    "amp_enabled",
    "check_finite",
]

CHECKPOINT_FORMAT = "tnt_rest_lite.checkpoint.v1"
CHECKPOINT_NAME = "last.pt"

# Config fields that may change between an interrupted run and its resumption (they do not change
# the numbers); every other field must match the checkpoint's.
# amp_on_cpu is the CPU stand-in of moving a run to a GPU (where amp turns on), as device is
RESUMABLE_CHANGES = {"checkpoint_dir", "resume", "progress", "num_workers", "device", "eval_batch_size", "amp_on_cpu"}


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


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not belong to this run."""


# ----------------------------------------------------------------------------------------------
# Seeds and distributed set-up
# ----------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator (timm's Mixup uses it) and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (timm's Mixup draws from the legacy global generator)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def distributed_info(device: str | None = None) -> DistInfo:
    """Rank, world size and device; joins the process group when launched by ``torchrun``.

    ``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; with ``WORLD_SIZE > 1`` the
    process group is initialised once (nccl on CUDA, gloo on CPU). Without them: one process.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if world_size > 1:
        if use_cuda:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    else:
        dev = torch.device(device) if device is not None else torch.device("cuda" if use_cuda else "cpu")
    return DistInfo(rank, world_size, local_rank, dev)


def _all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum ``values`` over the processes (float64, so counts stay exact)."""
    if not info.distributed:
        return values
    device = info.device if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` from a batch of ``(image, label)`` tuples or of SyntheticShapes dicts."""
    if isinstance(batch, dict):
        return batch["image"], batch["label"]
    return batch[0], batch[1]


def _seed_worker(worker_id: int) -> None:
    # each DataLoader worker gets torch's per-worker seed; give numpy and random the same one
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002
    random.seed(seed)


def _train_loader(dataset: Dataset, config: TrainConfig, epoch: int, info: DistInfo, collate: Any = None) -> DataLoader:
    """The epoch's loader: the order depends only on ``(seed, epoch)``, whatever ran before.

    A ``DistributedSampler`` (one replica when not distributed) shuffles with ``seed + epoch``;
    the union of the N processes' batches at step t is the same global batch as with one process.
    """
    if config.batch_size % info.world_size:
        raise ValueError(f"batch_size={config.batch_size} must be divisible by the {info.world_size} processes")
    sampler = DistributedSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=config.seed, drop_last=False
    )
    sampler.set_epoch(epoch)
    per_process = config.batch_size // info.world_size
    if len(sampler) < per_process:
        raise ValueError(f"the training set ({len(dataset)} samples) is smaller than one batch ({config.batch_size})")
    if config.num_workers == 0 and hasattr(dataset, "batch"):
        # fast path (SyntheticShapes in one process): whole batches, in the sampler's order, so the
        # batches are exactly the DataLoader's below
        return _Batches(dataset, list(sampler), per_process, drop_last=True)
    return DataLoader(
        dataset,
        batch_size=per_process,
        sampler=sampler,
        drop_last=True,  # equal batches: mixup needs pairs, and every step has the same weight
        num_workers=config.num_workers,
        collate_fn=collate,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch),
        pin_memory=info.device.type == "cuda",
    )


class _Batches:
    """Batches of ``dataset.batch(indices)`` over ``order``: a DataLoader without per-sample work."""

    def __init__(self, dataset: Any, order: list[int], batch_size: int, drop_last: bool) -> None:
        self.dataset, self.order, self.batch_size, self.drop_last = dataset, order, batch_size, drop_last

    def __len__(self) -> int:
        n = len(self.order)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Any:
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self.dataset.batch(self.order[start : start + self.batch_size])


def _val_loader(
    dataset: Dataset, batch_size: int, info: DistInfo, num_workers: int = 0, collate: Any = None
) -> DataLoader:
    """Every process evaluates every N-th sample (no padding: each sample is counted once)."""
    indices = list(range(info.rank, len(dataset), info.world_size)) if info.distributed else list(range(len(dataset)))
    if num_workers == 0 and hasattr(dataset, "batch"):
        return _Batches(dataset, indices, batch_size, drop_last=False)  # type: ignore[return-value]
    if info.distributed:
        dataset = Subset(dataset, indices)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


# Steps between two checks that the training loss is finite: reading a CUDA value on the host waits
# for the GPU, so a check every step would stall the queue of kernels; a divergence is caught within
# this many steps (and at every epoch's end).
FINITE_CHECK_EVERY = 50


def amp_enabled(config: TrainConfig, device: torch.device) -> bool:
    """Whether ``config`` trains ``device`` under float16 autocast with a gradient scaler."""
    return config.amp and (device.type == "cuda" or config.amp_on_cpu)


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
        images, labels = _unpack(batch)
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        logits = model(images).float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices.eq(labels[:, None])
        top1 += hits[:, 0].sum().item()
        top5 += hits.any(dim=1).sum().item()
        count += labels.numel()
    model.train(was_training)
    if info is not None:
        loss_sum, top1, top5, count = _all_reduce_sum([loss_sum, top1, top5, count], info)
    if count == 0:
        raise ValueError("evaluate() got an empty loader")
    return {"top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count, "loss": loss_sum / count, "n": int(count)}


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
        images, labels = _unpack(batch)
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if self.mixup is not None:
            images, labels = self.mixup(images, labels)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            loss = self.criterion(net(images), labels)
        return loss, labels.shape[0]

    def evaluate(self, model: nn.Module, val_set: Dataset, loader: Any, device: torch.device) -> dict[str, float]:
        return evaluate(model, loader, device)


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
        from .data import ShapeDetection
        from .detection import COCO_METRICS

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
        from .detection import evaluate_detector

        # COCO AP is not a sum over images: every process scores the whole set (same numbers on all)
        return evaluate_detector(model, val_set, batch_size=self.eval_batch_size)


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    """Every random-number state, as tensors and plain values (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {
            "version": int(version),
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))  # noqa: NPY002
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically: to a temporary file in the same folder, then ``os.replace``.

    A crash mid-write leaves the previous checkpoint intact (the rename is atomic on POSIX and
    Windows when both names are on the same file system, hence the same folder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, model: nn.Module | None = None, require_format: bool = True) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; check it against ``model`` if given.

    ``require_format=False`` also accepts a weights-only file, ``{"model": state_dict}`` (the trained
    weights the experiments keep for the figure chapters), which has no training state to resume.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is corrupt/truncated or not a checkpoint of this engine.
        KeyError / ValueError: (from :func:`weights.check_state_dict`) the weights do not match
            ``model``: the message names the file and every missing, unexpected or mis-shaped key.
    """
    from .weights import check_state_dict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, foreign objects: all the same to the user
        raise CheckpointError(
            f"Checkpoint {path} cannot be read (corrupt, truncated or not written by tnt_rest_lite): "
            f"{type(err).__name__}: {err}"
        ) from err
    if not require_format and isinstance(state, dict) and isinstance(state.get("model"), dict):
        pass  # a weights-only file
    elif not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"Checkpoint {path} is not a '{CHECKPOINT_FORMAT}' checkpoint (found {found!r})")
    if model is not None:
        check_state_dict(model, state["model"], f"checkpoint {path}")
    return state


def _check_config(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    current = config.as_dict()
    differ = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
    if differ:
        detail = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, now {current[k]!r}" for k in differ)
        raise CheckpointError(
            f"Checkpoint {path} was written by a run with another config ({detail}); "
            "use another checkpoint_dir or resume=False to start afresh"
        )


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    from timm.optim import create_optimizer_v2

    # timm leaves biases and norm weights out of weight decay, and reads model.no_weight_decay()
    name = "adamw" if config.optimizer == "adamw" else "momentum"  # timm's "momentum" = SGD, no Nesterov
    kwargs = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
    return create_optimizer_v2(model, opt=name, lr=config.lr, weight_decay=config.weight_decay, **kwargs)


def _build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> Any:
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


# public names for the chapters that unroll a training step
build_optimizer = _build_optimizer
build_scheduler = _build_scheduler


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


def train_step(
    model: nn.Module,
    batch: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config: TrainConfig,
    *,
    task: Task,
    scaler: torch.amp.GradScaler | None = None,
    num_updates: int = 1,
    net: nn.Module | None = None,
) -> tuple[torch.Tensor, int]:
    """One optimisation step, the body of :func:`train`'s loop.

    Forward and loss (``task.batch_loss``, mixup and autocast as configured), backward, gradient
    clipping to ``config.clip_grad`` (on the unscaled gradients), optimizer step, then the timm
    scheduler's per-update step to ``num_updates`` (the number of steps taken, this one included).

    Args:
        model: the model whose parameters ``optimizer`` updates (clipping reads its gradients).
        batch: one batch as the training loader yields it.
        task: a prepared :class:`Task` (``task.prepare(model, train_set, config)`` builds the loss).
        scaler: the AMP gradient scaler; ``None`` is a disabled one (float32, no scaling).
        net: what runs the forward pass, when it wraps ``model`` (DistributedDataParallel).

    Returns:
        the detached loss of the batch and the number of samples it averaged over (a device tensor:
        reading it waits for the device; :func:`check_finite` does so every few steps).
    """
    net = model if net is None else net
    device = next(model.parameters()).device
    scaler = scaler if scaler is not None else torch.amp.GradScaler(device.type, enabled=False)
    loss, batch_samples = task.batch_loss(net, batch, device, amp_enabled(config, device))
    # finiteness is checked by the caller every FINITE_CHECK_EVERY steps: no host sync here
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if config.clip_grad is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the loss-scaled ones
        nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step_update(num_updates=num_updates)
    return loss.detach(), batch_samples


def check_finite(losses: torch.Tensor, first_update: int) -> None:
    """Raise ``FloatingPointError`` if any of ``losses`` (the losses of consecutive updates from
    ``first_update``) is not finite. One host read for the whole window."""
    finite = torch.isfinite(losses)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0])
        raise FloatingPointError(
            f"loss is {losses[bad].item()} at update {first_update + bad}: lower lr or enable clip_grad"
        )


def train(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    config: TrainConfig,
    *,
    task: Task | None = None,
    on_epoch_end: Any = None,
    desc: str | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_set`` with ``config``, evaluating on ``val_set`` after every epoch.

    Args:
        model: a freshly created model (seed before creating it, see :func:`seed_everything`).
        train_set / val_set: datasets yielding ``(image, label)`` or SyntheticShapes dicts
            (classification), or ``(image, {"boxes", "labels"})`` (detection).
        config: the recipe; with ``checkpoint_dir`` set, a checkpoint is written after every epoch
            and, with ``resume=True``, an existing one is continued from.
        task: what is trained (default :class:`ClassificationTask`; :class:`DetectionTask` for
            detectors). A checkpoint remembers its task and resumes only the same one.
        on_epoch_end: optional ``callback(epoch, history)`` called after each epoch's checkpoint
            (the tests raise from it to simulate an interruption).
        desc: label of the progress bar.

    Returns:
        a :class:`TrainResult`; the final metrics are those after the last epoch (not the best
        epoch: the validation set is also our test set, so choosing on it would flatter us).
    """
    from timm.utils import ModelEmaV3

    from .progress import progress_bar

    info = distributed_info(config.device)
    device = info.device
    task = task if task is not None else ClassificationTask()
    task.prepare(model, train_set, config)

    for dataset in (train_set, val_set):
        # generated-on-the-fly data (SyntheticShapes): fill the cache once, before workers fork
        getattr(dataset, "materialize", lambda workers: None)(workers=config.num_workers)
    model.to(device)
    optimizer = _build_optimizer(model, config)
    steps_per_epoch = len(_train_loader(train_set, config, 0, info, task.collate))
    scheduler = _build_scheduler(optimizer, config, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_enabled(config, device))
    ema = ModelEmaV3(model, decay=config.ema_decay, device=device) if config.ema_decay else None
    eval_batch = config.eval_batch_size or 2 * config.batch_size
    val_loader = _val_loader(val_set, eval_batch, info, config.num_workers, task.collate)

    val_keys = [f"val_{k}" for k in task.metric_keys]
    history: dict[str, list[float]] = {
        key: [] for key in ("epoch", "lr", "train_loss", *val_keys, "train_time_s", "epoch_time_s")
    }
    if ema is not None:
        history.update({f"ema_{key}": [] for key in val_keys})
    start_epoch = 0
    checkpoint_path = Path(config.checkpoint_dir) / CHECKPOINT_NAME if config.checkpoint_dir else None
    if checkpoint_path is not None and config.resume and checkpoint_path.is_file():
        from .weights import check_state_dict

        state = load_checkpoint(checkpoint_path)
        # the task first: another task's checkpoint has another model, and that is the clearer message
        if state.get("task", ClassificationTask.name) != task.name:
            raise CheckpointError(
                f"Checkpoint {checkpoint_path} was written by a {state.get('task')} run, not {task.name}; "
                "use another checkpoint_dir or resume=False"
            )
        check_state_dict(model, state["model"], f"checkpoint {checkpoint_path}")
        _check_config(state["config"], config, checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # a disabled scaler saves {}: a CPU run resumed on CUDA starts a fresh scale
            scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.module.load_state_dict(state["ema"])
        history = {k: list(v) for k, v in state["history"].items()}
        start_epoch = int(state["epoch"]) + 1
        _set_rng_state(state["rng"])
    else:
        seed_everything(config.seed)

    net: nn.Module = model
    if info.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    total_steps = steps_per_epoch * config.epochs
    bar = progress_bar(
        total=total_steps,
        initial=steps_per_epoch * start_epoch,
        desc=desc or type(model).__name__,
        unit="step",
        disable=not (config.progress and info.is_main),
        leave=True,
    )
    for epoch in range(start_epoch, config.epochs):
        epoch_start = time.perf_counter()
        net.train()
        loader = _train_loader(train_set, config, epoch, info, task.collate)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        window: list[torch.Tensor] = []  # the losses since the last finiteness check (device tensors)
        for step, batch in enumerate(loader):
            global_step = epoch * steps_per_epoch + step + 1
            loss, batch_samples = train_step(
                model, batch, optimizer, scheduler, config, task=task, scaler=scaler, num_updates=global_step, net=net
            )
            if ema is not None:
                ema.update(model, step=global_step)
            loss_sum += loss.detach().double() * batch_samples
            seen += batch_samples
            window.append(loss.detach())
            if len(window) == FINITE_CHECK_EVERY:
                check_finite(torch.stack(window), global_step - len(window) + 1)
                window = []
            bar.update(1)
        if window:
            check_finite(torch.stack(window), epoch * steps_per_epoch + step + 2 - len(window))
        train_time = time.perf_counter() - epoch_start
        train_loss_sum, train_seen = _all_reduce_sum([loss_sum.item(), float(seen)], info)

        val = task.evaluate(model, val_set, val_loader, device)
        history["epoch"].append(epoch + 1)
        history["lr"].append(optimizer.param_groups[0]["lr"])
        history["train_loss"].append(train_loss_sum / train_seen)
        for key in task.metric_keys:
            history[f"val_{key}"].append(val[key])
        if ema is not None:
            ema_val = task.evaluate(ema.module, val_set, val_loader, device)
            for key in task.metric_keys:
                history[f"ema_val_{key}"].append(ema_val[key])
        history["train_time_s"].append(train_time)
        history["epoch_time_s"].append(time.perf_counter() - epoch_start)
        bar.set_postfix(
            {
                "epoch": epoch + 1,
                "loss": f"{history['train_loss'][-1]:.3f}",
                task.progress_key: f"{val[task.progress_key]:.1f}",
            }
        )

        if checkpoint_path is not None:
            if info.is_main:
                state = {
                    "format": CHECKPOINT_FORMAT,
                    "task": task.name,
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "ema": ema.module.state_dict() if ema is not None else None,
                    "history": history,
                    "config": config.as_dict(),
                    "rng": _rng_state(),
                }
                save_checkpoint(checkpoint_path, state)
            if info.distributed:
                dist.barrier()  # nobody races ahead of a checkpoint that might be resumed
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    bar.close()

    metrics = {k: history[f"val_{k}"][-1] for k in task.metric_keys}
    if ema is not None:
        metrics.update({f"ema_{k}": history[f"ema_val_{k}"][-1] for k in task.metric_keys})
    train_time = sum(history["train_time_s"])
    images = steps_per_epoch * config.batch_size * len(history["epoch"])
    return TrainResult(
        metrics=metrics,
        history=history,
        train_images_per_s=images / train_time if train_time > 0 else math.nan,
        wall_time_s=sum(history["epoch_time_s"]),
        num_params=count_trainable(model),
        config=config.as_dict(),
    )


# ----------------------------------------------------------------------------------------------
# Curves
# ----------------------------------------------------------------------------------------------


def plot_history(histories: dict[str, Any], title: str = "") -> Any:
    """Loss (train solid, val dashed) and validation top-1 per epoch, one colour per model.

    ``histories`` is one ``TrainResult.history``, a mapping ``label -> history`` or
    ``label -> [history per seed]``; labels ``"<model> s<seed>"`` are grouped into their model.
    Every seed is a thin line and the seeds' mean a bold one (:func:`tnt_rest_lite.viz.seed_curves`),
    one legend entry per model, outside the axes.
    """
    import re

    import matplotlib.pyplot as plt

    from . import viz

    runs = {"run": histories} if "epoch" in histories else histories
    grouped: dict[str, list[dict[str, list[float]]]] = {}
    for label, hist in runs.items():
        seeds = [hist] if "epoch" in hist else list(hist)
        model = re.sub(r" s\d+$", "", label)
        grouped.setdefault(model, []).extend(seeds)

    def series(key: str) -> dict[str, list[tuple[list[float], list[float]]]]:
        return {m: [(h["epoch"], h[key]) for h in hs] for m, hs in grouped.items()}

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    colours = viz.seed_curves(ax_loss, series("train_loss"), legend=False)
    viz.seed_curves(ax_loss, series("val_loss"), colours, linestyle="--", legend=False)
    viz.seed_curves(ax_acc, series("val_top1"), colours)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss (solid: train, smoothed/mixed targets; dashed: val)")
    ax_acc.set(xlabel="epoch", ylabel="val top-1 (%)", title="validation top-1 (thin: seeds, bold: mean)")
    for ax in (ax_loss, ax_acc):
        ax.title.set_fontsize(9)
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------------------------
# Command line (and the torchrun entry point)
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m tnt_rest_lite.engine --model deit_s_mini ...``, also under ``torchrun``.

    Trains one registered model on one dataset and writes the final metrics as JSON (rank ``r``
    of a multi-process run writes ``<metrics-out>.rank<r>.json``).
    """
    from .data import build_dataset
    from .registry import create_model

    parser = argparse.ArgumentParser(prog="python -m tnt_rest_lite.engine", description=main.__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--val-samples", type=int, default=500)
    parser.add_argument("--difficulty", default="standard", help="synthetic data: easy | standard | hard")
    parser.add_argument("--model-overrides", default="{}", help="JSON object of config overrides")
    parser.add_argument("--config", default="{}", help="JSON object of TrainConfig fields")
    parser.add_argument("--metrics-out", type=Path)
    args = parser.parse_args(argv)

    config = TrainConfig(**json.loads(args.config))
    info = distributed_info(config.device)
    train_set = build_dataset(
        args.dataset,
        "train",
        args.image_size,
        num_samples=args.train_samples,
        seed=config.seed,
        difficulty=args.difficulty,
    )
    val_set = build_dataset(
        args.dataset, "val", args.image_size, num_samples=args.val_samples, seed=config.seed, difficulty=args.difficulty
    )
    seed_everything(config.seed)
    model = create_model(
        args.model, num_classes=len(train_set.classes), img_size=args.image_size, **json.loads(args.model_overrides)
    )
    result = train(model, train_set, val_set, config, desc=args.model)
    if args.metrics_out is not None:
        out = args.metrics_out
        if info.distributed:
            out = out.with_name(f"{out.stem}.rank{info.rank}{out.suffix}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rank": info.rank, "world_size": info.world_size, **result.as_dict()}, indent=1))
    if info.distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
