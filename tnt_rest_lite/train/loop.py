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

    info = distributed_info(config.device)
    device = info.device
    task = task if task is not None else ClassificationTask()
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

    val_keys = [f"val_{k}" for k in task.metric_keys]
    history: dict[str, list[float]] = {
        key: [] for key in ("epoch", "lr", "train_loss", *val_keys, "train_time_s", "epoch_time_s")
    }
    if ema is not None:
        history.update({f"ema_{key}": [] for key in val_keys})
    start_epoch = 0
    checkpoint_path = Path(config.checkpoint_dir) / CHECKPOINT_NAME if config.checkpoint_dir else None
    if checkpoint_path is not None and config.resume and checkpoint_path.is_file():
        state = load_checkpoint(checkpoint_path)
        # the task first: another task's checkpoint has another model, and that is the clearer message
        if state.get("task", ClassificationTask.name) != task.name:
            raise CheckpointError(
                f"Checkpoint {checkpoint_path} was written by a {state.get('task')} run, not {task.name}; "
                "use another checkpoint_dir or resume=False"
            )
        check_state_dict(model, state["model"], f"checkpoint {checkpoint_path}")
        check_config(state["config"], config, checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # a disabled scaler saves {}: a CPU run resumed on CUDA starts a fresh scale
            scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.module.load_state_dict(state["ema"])
        history = {k: list(v) for k, v in state["history"].items()}
        start_epoch = int(state["epoch"]) + 1
        set_rng_state(state["rng"])
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
        loader = build_train_loader(train_set, config, epoch, info, task.collate)
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
        train_loss_sum, train_seen = all_reduce_sum([loss_sum.item(), float(seen)], info)

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
                    "rng": rng_state(),
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
        num_params=count_params(model, trainable_only=True),
        config=config.as_dict(),
    )
