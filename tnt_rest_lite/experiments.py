"""The small-scale training experiments: recipes, model construction, multi-seed runs.

The notebooks 04-06 and the training benchmark (:mod:`tnt_rest_lite.train_bench`) all go through
:func:`run_model`, so a number in a table and a number in the benchmark come from the same code.

Two recipes, both scaled down from the papers:

* ``"deit"`` (TNT's and ResT's main recipe): AdamW, linear warm-up then cosine decay, label
  smoothing 0.1, weight decay 0.05; mixup/cutmix only where the profile says so (long runs).
* ``"resnet"`` (ResT supplement A.4, the ablation): SGD with momentum 0.9, learning rate divided by
  10 at 1/3 and 2/3 of the run (ResNet's 30/60 of 90 epochs), weight decay 1e-4, no label
  smoothing, no mixup.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from .data import build_dataset, num_classes
from .engine import TrainConfig, seed_everything, train
from .profiles import Profile, get_profile

__all__ = [
    "RECIPES",
    "recipe",
    "build_model",
    "model_config",
    "load_splits",
    "run_model",
    "mean_std",
    "format_mean_std",
]

RECIPES = ("deit", "resnet")

# Models whose size does not depend on the input (fully convolutional / pooled): no img_size field.
_ANY_SIZE_PREFIXES = ("rest_", "resnet")


def recipe(name: str, profile: Profile | None = None, seed: int = 0) -> TrainConfig:
    """The :class:`TrainConfig` of recipe ``name`` (``"deit"`` or ``"resnet"``) in ``profile``."""
    p = profile or get_profile()
    common = dict(epochs=p.epochs, batch_size=p.batch_size, seed=seed, num_workers=p.num_workers)
    if name == "deit":
        mixup = dict(mixup_alpha=0.8, cutmix_alpha=1.0) if p.train_mixup else {}
        # lr 5e-4 up to batch 64, then linear scaling (1e-3 at 128; DeiT's rule, 5e-4 x batch / 512,
        # is too small for minutes-long runs on small data). At ci's batch 32 a larger rate left the
        # ViTs (DeiT, TNT) at chance; the same rate serves every model. Warm-up: a tenth of the run
        # (DeiT: 5 of 300 epochs is less), but half an epoch in runs under 10 epochs, which cannot
        # spare a whole one.
        return TrainConfig(
            lr=5e-4 * max(p.batch_size, 64) / 64,
            weight_decay=0.05,
            optimizer="adamw",
            schedule="cosine",
            warmup_epochs=max(1, p.epochs // 10) if p.epochs >= 10 else 0.5,
            label_smoothing=0.1,
            clip_grad=5.0,
            **mixup,
            **common,
        )
    if name == "resnet":
        return TrainConfig(
            lr=0.1 * p.batch_size / 256,  # ResNet's linear scaling rule (0.1 at batch 256)
            weight_decay=1e-4,
            optimizer="sgd",
            momentum=0.9,
            schedule="step",
            step_epochs=p.epochs / 3,
            step_rate=0.1,
            warmup_epochs=0,
            label_smoothing=0.0,
            **common,
        )
    raise ValueError(f"Unknown recipe '{name}'; expected one of {RECIPES}")


def build_model(name: str, classes: int, image_size: int, profile: Profile | None = None) -> nn.Module:
    """Registered model ``name`` (or timm's ``resnet18``) for ``classes`` classes at ``image_size``.

    The profile's ``model_overrides`` for ``name`` are applied (in ``ci`` they shrink the models).
    """
    import timm

    from .registry import list_models

    p = profile or get_profile()
    overrides = dict(p.model_overrides.get(name, {}))
    if not name.startswith(_ANY_SIZE_PREFIXES):
        overrides["img_size"] = image_size
    if name in list_models():
        from .registry import create_model

        return create_model(name, num_classes=classes, **overrides)
    return timm.create_model(name, num_classes=classes, **overrides)  # e.g. timm's resnet18


def model_config(model: nn.Module) -> dict[str, Any]:
    """The config of one of our models as a dict; for timm's models, the layer widths and depths."""
    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    layers = [len(getattr(model, f"layer{i}")) for i in range(1, 5) if hasattr(model, f"layer{i}")]
    widths = [getattr(model, f"layer{i}")[-1].conv1.in_channels for i in range(1, 5) if hasattr(model, f"layer{i}")]
    return {
        "architecture": type(model).__name__,
        "blocks_per_stage": layers,
        "widths": widths,
        "num_classes": model.num_classes,
    }


def load_splits(
    dataset: str = "synthetic", profile: Profile | None = None, download: bool = False
) -> tuple[Dataset, Dataset]:
    """Train and validation sets of ``dataset`` sized by the profile (real data: subsets when smaller).

    The synthetic dataset is generated at the profile's ``data_difficulty`` (``ci``: easy).
    """
    p = profile or get_profile()
    kwargs = dict(seed=0, download=download, difficulty=p.data_difficulty)
    train_set = build_dataset(dataset, "train", p.image_size, num_samples=p.train_samples, **kwargs)
    val_set = build_dataset(dataset, "val", p.image_size, num_samples=p.val_samples, **kwargs)
    return train_set, val_set


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for a single value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def run_model(
    name: str,
    recipe_name: str,
    train_set: Dataset,
    val_set: Dataset,
    profile: Profile | None = None,
    seeds: list[int] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``name`` with recipe ``recipe_name`` once per seed; return a JSON-ready summary.

    The summary holds per-seed top-1/top-5, their mean and std, parameters, training throughput,
    wall time, the model's config and the recipe, and every run's history (for the curves).
    Seeds change the initialisation, data order and augmentation; the dataset stays the same.
    """
    p = profile or get_profile()
    seeds = list(range(p.num_seeds)) if seeds is None else seeds
    classes = num_classes(train_set)
    runs = []
    for seed in seeds:
        seed_everything(seed)
        model = build_model(name, classes, p.image_size, p)
        config = dataclasses.replace(recipe(recipe_name, p, seed), progress=progress)
        result = train(model, train_set, val_set, config, desc=f"{name} seed {seed}")
        runs.append((model, result))
    top1 = [r.metrics["top1"] for _, r in runs]
    top5 = [r.metrics["top5"] for _, r in runs]
    (top1_mean, top1_std), (top5_mean, top5_std) = mean_std(top1), mean_std(top5)
    model, first = runs[0]
    return {
        "model": name,
        "recipe": recipe_name,
        "seeds": seeds,
        "top1": top1,
        "top5": top5,
        "top1_mean": top1_mean,
        "top1_std": top1_std,
        "top5_mean": top5_mean,
        "top5_std": top5_std,
        "chance_top1": 100.0 / classes,
        "params": first.num_params,
        "train_images_per_s": statistics.fmean(r.train_images_per_s for _, r in runs),
        "wall_time_s": [r.wall_time_s for _, r in runs],
        "image_size": p.image_size,
        "data_difficulty": getattr(train_set, "difficulty", None),  # synthetic data only
        "train_samples": len(train_set),
        "val_samples": len(val_set),
        "model_config": model_config(model),
        "train_config": first.config,
        "histories": [r.history for _, r in runs],
    }


def format_mean_std(mean: float, std: float | None, digits: int = 1) -> str:
    """``"72.9 ± 0.4"``, or ``"72.9"`` for one seed."""
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
