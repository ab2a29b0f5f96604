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

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from ..core.progress import progress_bar
from ..measure.complexity import count_params
from ..models._weights import check_state_dict
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CheckpointError,
    check_config,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import TrainConfig, TrainResult, amp_enabled, seed_everything
from .distributed import all_reduce_sum, distributed_info
from .loaders import build_train_loader, build_val_loader
from .optim import build_optimizer, build_scheduler
from .tasks import ClassificationTask, Task

__all__ = ["train", "train_step", "FINITE_CHECK_EVERY", "check_finite"]


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


# Steps between two checks that the training loss is finite: reading a CUDA value on the host waits
# for the GPU, so a check every step would stall the queue of kernels; a divergence is caught within
# this many steps (and at every epoch's end).
FINITE_CHECK_EVERY = 50


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
        nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad, foreach=config.foreach)
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


@dataclass
class _Run:
    """What :func:`train`'s phases share: the model, its wrappers and the training state."""

    model: nn.Module
    task: Task
    config: TrainConfig
    info: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    ema: Any
    steps_per_epoch: int
    val_loader: Any
    checkpoint_path: Path | None
    net: nn.Module | None = None

    @property
    def device(self) -> torch.device:
        return self.info.device


def _setup(model: nn.Module, train_set: Dataset, val_set: Dataset, config: TrainConfig, task: Task) -> _Run:
    """Prepare the task and the data, move the model, build the optimizer, schedule, scaler, EMA and loaders."""
    from timm.utils import ModelEmaV3

    info = distributed_info(config.device)
    device = info.device
    task.prepare(model, train_set, config)
    for dataset in (train_set, val_set):
        # generated-on-the-fly data (SyntheticShapes): fill the cache once, before workers fork
        getattr(dataset, "materialize", lambda workers: None)(workers=config.num_workers)
    model.to(device)
    optimizer = build_optimizer(model, config)
    steps_per_epoch = len(build_train_loader(train_set, config, 0, info, task.collate))
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_enabled(config, device))
    ema = ModelEmaV3(model, decay=config.ema_decay, device=device) if config.ema_decay else None
    eval_batch = config.eval_batch_size or 2 * config.batch_size
    val_loader = build_val_loader(val_set, eval_batch, info, config.num_workers, task.collate)
    checkpoint_path = Path(config.checkpoint_dir) / CHECKPOINT_NAME if config.checkpoint_dir else None
    return _Run(
        model, task, config, info, optimizer, scheduler, scaler, ema, steps_per_epoch, val_loader, checkpoint_path
    )


def _new_history(run: _Run) -> dict[str, list[float]]:
    """The empty per-epoch history: epoch, lr, train loss, validation (and EMA) metrics, times."""
    val_keys = [f"val_{k}" for k in run.task.metric_keys]
    history: dict[str, list[float]] = {
        key: [] for key in ("epoch", "lr", "train_loss", *val_keys, "train_time_s", "epoch_time_s")
    }
    if run.ema is not None:
        history.update({f"ema_{key}": [] for key in val_keys})
    return history


def _resume(run: _Run, history: dict[str, list[float]]) -> tuple[dict[str, list[float]], int]:
    """Continue from the checkpoint if there is one to resume (else seed): the history and the first epoch."""
    path = run.checkpoint_path
    if path is None or not run.config.resume or not path.is_file():
        seed_everything(run.config.seed)
        return history, 0
    state = load_checkpoint(path)
    # the task first: another task's checkpoint has another model, and that is the clearer message
    if state.get("task", ClassificationTask.name) != run.task.name:
        raise CheckpointError(
            f"Checkpoint {path} was written by a {state.get('task')} run, not {run.task.name}; "
            "use another checkpoint_dir or resume=False"
        )
    check_state_dict(run.model, state["model"], f"checkpoint {path}")
    check_config(state["config"], run.config, path)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if state["scaler"]:  # a disabled scaler saves {}: a CPU run resumed on CUDA starts a fresh scale
        run.scaler.load_state_dict(state["scaler"])
    if run.ema is not None:
        run.ema.module.load_state_dict(state["ema"])
    set_rng_state(state["rng"])
    return {k: list(v) for k, v in state["history"].items()}, int(state["epoch"]) + 1


def _wrap(run: _Run) -> nn.Module:
    """The module that runs the forward pass: the model, or its DistributedDataParallel wrapper."""
    if not run.info.distributed:
        return run.model
    device = run.device
    return nn.parallel.DistributedDataParallel(run.model, device_ids=[device.index] if device.type == "cuda" else None)


def _train_epoch(run: _Run, train_set: Dataset, epoch: int, bar: Any) -> float:
    """One epoch of steps (EMA updates, finiteness checks every few steps); the mean training loss."""
    run.net.train()
    loader = build_train_loader(train_set, run.config, epoch, run.info, run.task.collate)
    loss_sum = torch.zeros((), dtype=torch.float64, device=run.device)
    seen = 0
    window: list[torch.Tensor] = []  # the losses since the last finiteness check (device tensors)
    for step, batch in enumerate(loader):
        global_step = epoch * run.steps_per_epoch + step + 1
        loss, batch_samples = train_step(
            run.model,
            batch,
            run.optimizer,
            run.scheduler,
            run.config,
            task=run.task,
            scaler=run.scaler,
            num_updates=global_step,
            net=run.net,
        )
        if run.ema is not None:
            run.ema.update(run.model, step=global_step)
        loss_sum += loss.detach().double() * batch_samples
        seen += batch_samples
        window.append(loss.detach())
        if len(window) == FINITE_CHECK_EVERY:
            check_finite(torch.stack(window), global_step - len(window) + 1)
            window = []
        bar.update(1)
    if window:
        check_finite(torch.stack(window), epoch * run.steps_per_epoch + step + 2 - len(window))
    train_loss_sum, train_seen = all_reduce_sum([loss_sum.item(), float(seen)], run.info)
    return train_loss_sum / train_seen


def _evaluate_epoch(run: _Run, val_set: Dataset, epoch: int, train_loss: float, history: dict) -> dict[str, float]:
    """Evaluate the model (and its EMA) and append the epoch's row to ``history``; the model's metrics."""
    task = run.task
    val = task.evaluate(run.model, val_set, run.val_loader, run.device)
    history["epoch"].append(epoch + 1)
    history["lr"].append(run.optimizer.param_groups[0]["lr"])
    history["train_loss"].append(train_loss)
    for key in task.metric_keys:
        history[f"val_{key}"].append(val[key])
    if run.ema is not None:
        ema_val = task.evaluate(run.ema.module, val_set, run.val_loader, run.device)
        for key in task.metric_keys:
            history[f"ema_val_{key}"].append(ema_val[key])
    return val


def _save(run: _Run, epoch: int, history: dict[str, list[float]]) -> None:
    """Write the epoch's checkpoint (rank 0), then wait for every process."""
    if run.checkpoint_path is None:
        return
    if run.info.is_main:
        state = {
            "format": CHECKPOINT_FORMAT,
            "task": run.task.name,
            "epoch": epoch,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "ema": run.ema.module.state_dict() if run.ema is not None else None,
            "history": history,
            "config": run.config.as_dict(),
            "rng": rng_state(),
        }
        save_checkpoint(run.checkpoint_path, state)
    if run.info.distributed:
        dist.barrier()  # nobody races ahead of a checkpoint that might be resumed


def _result(run: _Run, history: dict[str, list[float]]) -> TrainResult:
    """The :class:`TrainResult` of a finished run: the last epoch's metrics, throughput and times."""
    keys = run.task.metric_keys
    metrics = {k: history[f"val_{k}"][-1] for k in keys}
    if run.ema is not None:
        metrics.update({f"ema_{k}": history[f"ema_val_{k}"][-1] for k in keys})
    train_time = sum(history["train_time_s"])
    images = run.steps_per_epoch * run.config.batch_size * len(history["epoch"])
    return TrainResult(
        metrics=metrics,
        history=history,
        train_images_per_s=images / train_time if train_time > 0 else math.nan,
        wall_time_s=sum(history["epoch_time_s"]),
        num_params=count_params(run.model, trainable_only=True),
        config=run.config.as_dict(),
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
    task = task if task is not None else ClassificationTask()
    run = _setup(model, train_set, val_set, config, task)
    history, start_epoch = _resume(run, _new_history(run))
    run.net = _wrap(run)
    bar = progress_bar(
        total=run.steps_per_epoch * config.epochs,
        initial=run.steps_per_epoch * start_epoch,
        desc=desc or type(model).__name__,
        unit="step",
        disable=not (config.progress and run.info.is_main),
        leave=True,
    )
    for epoch in range(start_epoch, config.epochs):
        epoch_start = time.perf_counter()
        train_loss = _train_epoch(run, train_set, epoch, bar)
        train_time = time.perf_counter() - epoch_start
        val = _evaluate_epoch(run, val_set, epoch, train_loss, history)
        history["train_time_s"].append(train_time)
        history["epoch_time_s"].append(time.perf_counter() - epoch_start)
        postfix = {"epoch": epoch + 1, "loss": f"{train_loss:.3f}", task.progress_key: f"{val[task.progress_key]:.1f}"}
        bar.set_postfix(postfix)
        _save(run, epoch, history)
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    bar.close()
    return _result(run, history)
