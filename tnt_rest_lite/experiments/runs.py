"""One model over the profile's seeds: train (resuming), evaluate on the test split, store."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from ..core.format import mean_std
from ..data.datasets import num_classes
from ..profiles import Profile, get_profile
from ..train.checkpoint import CHECKPOINT_NAME, save_checkpoint
from ..train.config import TrainConfig, seed_everything
from ..train.distributed import DistInfo, distributed_info
from ..train.evaluate import evaluate
from ..train.loaders import build_val_loader as _val_loader
from ..train.loop import train
from .recipes import build_model, describe_config, model_config, recipe
from .weights import run_checkpoint_dir, weights_path

__all__ = ["run_model"]


def seed_accuracy(models: Sequence[nn.Module], test_set: Dataset, batch_size: int = 256) -> dict[str, Any]:
    """``{"test_top1": [% per model], "chance_top1": %}`` of the seeds' ``models`` on ``test_set``.

    The form :func:`tnt_rest_lite.tables.verdict` reads to decide whether a claim about these
    models is testable (a model below twice chance has learnt too little to explain).
    """

    top1 = []
    for model in models:
        loader = _val_loader(test_set, batch_size, DistInfo(0, 1, 0, next(model.parameters()).device))
        top1.append(evaluate(model, loader)["top1"])
    return {"test_top1": top1, "chance_top1": 100.0 / num_classes(test_set)}


def run_model(
    name: str,
    recipe_name: str,
    train_set: Dataset,
    val_set: Dataset,
    test_set: Dataset,
    profile: Profile | None = None,
    seeds: list[int] | None = None,
    progress: bool = True,
    table: str | None = None,
    save_weights: str | None = None,
    checkpoint: bool = True,
) -> dict[str, Any]:
    """Train ``name`` with recipe ``recipe_name`` once per seed; return a JSON-ready summary.

    Each seed trains on ``train_set`` with the validation curve on ``val_set``, then is evaluated
    once on ``test_set``. The summary holds per-seed ``val_top1`` / ``test_top1`` (and top-5)
    lists, the test means and standard deviations, parameters, training throughput, wall time,
    the model's config and the recipe, and every run's history (for the curves). Seeds change the
    initialisation, data order and augmentation; the datasets stay the same. ``table`` applies the
    profile's recipe settings for that table; with ``save_weights`` (a table prefix) each seed's
    final weights are written atomically to :func:`weights_path`. Every epoch is checkpointed
    under :func:`run_checkpoint_dir` and an interrupted (or finished) run resumes from it, unless
    ``checkpoint=False`` (a measurement that must train every time).
    """
    p = profile or get_profile()
    seeds = list(range(p.num_seeds)) if seeds is None else seeds
    classes = num_classes(train_set)
    runs = []
    resumed: list[bool] = []  # whether each seed continued a checkpoint (a completed one is not retrained)
    for seed in seeds:
        seed_everything(seed)
        model = build_model(name, classes, p.image_size, p)
        config = dataclasses.replace(recipe(recipe_name, p, seed, table, name), progress=progress)
        # every epoch is checkpointed: a disconnect (Colab) loses at most one, and re-running the cell resumes
        if checkpoint:
            folder = run_checkpoint_dir(save_weights or table or recipe_name, name, seed, config, p)
            config = dataclasses.replace(config, checkpoint_dir=str(folder))
        resumed.append(checkpoint and (folder / CHECKPOINT_NAME).is_file())
        result = train(model, train_set, val_set, config, desc=f"{name} seed {seed}")
        test = evaluate(model, _eval_batches(test_set, config), next(model.parameters()).device)
        if save_weights is not None:
            save_checkpoint(weights_path(save_weights, name, seed, p), {"model": model.state_dict()})
        runs.append((model, result, test))
    model, first, _ = runs[0]
    summary: dict[str, Any] = {
        "model": name,
        "recipe": recipe_name,
        "seeds": seeds,
        "val_top1": [r.metrics["top1"] for _, r, _ in runs],
        "val_top5": [r.metrics["top5"] for _, r, _ in runs],
        "test_top1": [t["top1"] for _, _, t in runs],
        "test_top5": [t["top5"] for _, _, t in runs],
    }
    for key in ("test_top1", "test_top5", "val_top1"):
        summary[f"{key}_mean"], summary[f"{key}_std"] = mean_std(summary[key])
    summary.update(
        {
            "chance_top1": 100.0 / classes,
            "params": first.num_params,
            "train_images_per_s": statistics.fmean(r.train_images_per_s for _, r, _ in runs),
            "wall_time_s": [r.wall_time_s for _, r, _ in runs],
            "image_size": p.image_size,
            "data_difficulty": getattr(train_set, "difficulty", None),  # synthetic data only
            "train_samples": len(train_set),
            "val_samples": len(val_set),
            "test_samples": len(test_set),
            "model_config": model_config(model),
            "description": describe_config(name, model_config(model)),
            "train_config": first.config,
            "histories": [r.history for _, r, _ in runs],
            "resumed": resumed,
        }
    )
    return summary


def _eval_batches(dataset: Dataset, config: TrainConfig) -> Any:

    info = distributed_info(config.device)
    return _val_loader(dataset, config.eval_batch_size or 2 * config.batch_size, info, config.num_workers)
