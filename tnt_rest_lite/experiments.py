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
import hashlib
import json
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from .data import build_dataset, num_classes
from .engine import CHECKPOINT_NAME, RESUMABLE_CHANGES, TrainConfig, evaluate, save_checkpoint, seed_everything, train
from .profiles import Profile, get_profile

__all__ = [
    "RECIPES",
    "recipe",
    "build_model",
    "model_config",
    "describe_config",
    "attention_check",
    "load_splits",
    "run_checkpoint_dir",
    "run_model",
    "mean_std",
    "format_mean_std",
    "weights_path",
    "load_weights",
    "trained_model",
    "Claim",
    "TableSpec",
    "TABLES",
    "table_spec",
    "run_table",
    "describe_table",
    "describe_reference",
    "check_small_models",
    "training_summary",
    "describe_targets",
    "SizeRelation",
    "CHECKPOINTS_ENV_VAR",
    "TARGET_TOP1",
    "TARGET_BEST_TOP1",
]

CHECKPOINTS_ENV_VAR = "TNT_REST_CHECKPOINTS"

RECIPES = ("deit", "resnet")

# What a book-profile run must reach on the test split (20 classes, chance 5 %): every model 10x
# chance (a shape-only or texture-only classifier of SyntheticShapes cannot pass 25 %), the best
# model of each table 70 %. describe_targets reports each model against them.
TARGET_TOP1 = 50.0
TARGET_BEST_TOP1 = 70.0

# Models whose size does not depend on the input (fully convolutional / pooled): no img_size field.
_ANY_SIZE_PREFIXES = ("rest_", "resnet")


def recipe(
    name: str, profile: Profile | None = None, seed: int = 0, table: str | None = None, model: str | None = None
) -> TrainConfig:
    """The :class:`TrainConfig` of recipe ``name`` (``"deit"`` or ``"resnet"``) in ``profile``.

    ``table`` applies the profile's ``table_recipe`` for that table (its epochs, batch size and
    rate, chosen on validation); the warm-up, the step schedule and the rate's batch scaling follow.
    A rate given per model (a mapping) is looked up under ``model``.
    """
    p = profile or get_profile()
    epochs, batch = p.epochs_for(table), p.batch_size_for(table)
    lr_override = p.table_recipe.get(table or "", {}).get("lr")
    if isinstance(lr_override, Mapping):
        if model not in lr_override:
            raise ValueError(
                f"Profile '{p.name}' sets the rate of table '{table}' per model ({', '.join(lr_override)}); "
                f"got model {model!r}"
            )
        lr_override = lr_override[model]
    common = dict(epochs=epochs, batch_size=batch, seed=seed, num_workers=p.num_workers)
    if name == "deit":
        mixup = dict(mixup_alpha=0.8, cutmix_alpha=1.0) if p.train_mixup else {}
        # lr 5e-4 up to batch 64, then linear scaling (1e-3 at 128; DeiT's rule, 5e-4 x batch / 512,
        # is too small for minutes-long runs on small data). At ci's batch 32 a larger rate left the
        # ViTs (DeiT, TNT) at chance; the same rate serves every model. Warm-up: a tenth of the run
        # (DeiT: 5 of 300 epochs is less), but half an epoch in runs under 10 epochs, which cannot
        # spare a whole one.
        return TrainConfig(
            lr=lr_override or 5e-4 * max(batch, 64) / 64,
            weight_decay=0.05,
            optimizer="adamw",
            schedule="cosine",
            warmup_epochs=max(1, epochs // 10) if epochs >= 10 else 0.5,
            label_smoothing=0.1,
            clip_grad=5.0,
            **mixup,
            **common,
        )
    if name == "resnet":
        return TrainConfig(
            lr=lr_override or 0.1 * batch / 256,  # ResNet's linear scaling rule (0.1 at batch 256)
            weight_decay=1e-4,
            optimizer="sgd",
            momentum=0.9,
            schedule="step",
            step_epochs=epochs / 3,
            step_rate=0.1,
            warmup_epochs=0,
            label_smoothing=0.0,
            **common,
        )
    raise ValueError(f"Unknown recipe '{name}'; expected one of {RECIPES}")


def build_model(name: str, classes: int, image_size: int, profile: Profile | None = None) -> nn.Module:
    """Registered model ``name`` for ``classes`` classes at ``image_size``, as ``profile`` trains it.

    The profile's ``model_overrides`` for ``name`` are applied (none at present). Models
    whose size does not depend on the input (ResT, ResNet) take no ``img_size``.
    """
    from .registry import create_model

    p = profile or get_profile()
    overrides = dict(p.model_overrides.get(name, {}))
    if not name.startswith(_ANY_SIZE_PREFIXES):
        overrides["img_size"] = image_size
    return create_model(name, num_classes=classes, **overrides)


def model_config(model: nn.Module) -> dict[str, Any]:
    """The config a model was built from, as a dict (every registered model keeps it as ``.config``)."""
    config = getattr(model, "config", None)
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"{type(model).__name__} has no dataclass config: build it with create_model()")
    return dataclasses.asdict(config)


def describe_config(name: str, config: dict[str, Any]) -> str:
    """One line that says what ``name`` is at this size, generated from its config (never by hand)."""
    c = config
    if "outer_dim" in c:  # TNT
        pixels = (c["patch_size"] + 2 * (c["pixel_kernel"] // 2) - c["pixel_kernel"]) // c["pixel_stride"] + 1
        grid = c["img_size"] // c["patch_size"]
        return (
            f"{c['img_size']} px, {c['patch_size']}x{c['patch_size']} patches ({grid}x{grid} grid), "
            f"{pixels}x{pixels} pixel tokens per patch, outer width {c['outer_dim']} / inner {c['inner_dim']}, "
            f"{c['depth']} blocks, {c['outer_heads']} outer / {c['inner_heads']} inner heads"
            + (", SE" if c["se"] else "")
        )
    if "embed_dim" in c:  # DeiT
        grid = c["img_size"] // c["patch_size"]
        return (
            f"{c['img_size']} px, {c['patch_size']}x{c['patch_size']} patches ({grid}x{grid} grid), "
            f"width {c['embed_dim']}, {c['depth']} blocks, {c['num_heads']} heads"
        )
    if "sr_ratios" in c:  # ResT
        dims, depths = "-".join(map(str, c["embed_dims"])), "-".join(map(str, c["depths"]))
        attention = f"EMSA s = {'-'.join(map(str, c['sr_ratios']))}" if c["head_transform"] else "MSA (s = 1)"
        return f"dims {dims}, depths {depths}, heads {'-'.join(map(str, c['num_heads']))}, {attention}, stem stride {c['stem_stride']}"
    if "channels" in c:  # ResNet
        return (
            f"{'BasicBlock' if c.get('block', 'basic') == 'basic' else 'Bottleneck'} ResNet, blocks {'-'.join(map(str, c['layers']))}, channels {'-'.join(map(str, c['channels']))}, "
            f"stem width {c['stem_width']}, stem stride {c['stem_stride']}"
        )
    return ", ".join(f"{k}={v}" for k, v in c.items())


def attention_check(model: nn.Module, image_size: int, batch: int = 4, seed: int = 0) -> list[dict[str, Any]]:
    """What every attention module of ``model`` does in one training step at ``image_size``.

    A small model must still be the model: its attention must see more than one key, and every
    attention parameter must learn. One forward with the maps captured gives each module's
    queries ``N`` and keys ``N'``; one forward/backward of the cross-entropy on random images and
    labels, on the training path (fused attention where the model uses it), gives the gradient
    norm of each of its parameters (q, kv, sr, sr_norm, transform_conv, proj, ...).
    Returns one record per module: ``{"module", "queries", "keys", "params", "min_grad_norm"}``.
    """
    import torch

    from .layers import Attention, capture_attention

    generator = torch.Generator().manual_seed(seed)
    in_chans = getattr(model.config, "in_chans", 3)
    images = torch.randn(batch, in_chans, image_size, image_size, generator=generator)
    labels = torch.randint(0, model.num_classes, (batch,), generator=generator)
    was_training = model.training
    model.train()
    with torch.no_grad(), capture_attention(model) as maps:
        model(images)
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(images), labels).backward()
    records = []
    for name, module in model.named_modules():
        if not isinstance(module, Attention):
            continue
        grads = {pname: (0.0 if p.grad is None else float(p.grad.norm())) for pname, p in module.named_parameters()}
        shape = maps[name]["attn"].shape  # (B, heads, N, N')
        records.append(
            {
                "module": name,
                "queries": int(shape[-2]),
                "keys": int(shape[-1]),
                "params": sorted(grads),
                "min_grad_norm": min(grads.values()),
                "zero_grad_params": sorted(k for k, v in grads.items() if v == 0.0),
            }
        )
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return records


def load_splits(
    dataset: str = "synthetic", profile: Profile | None = None, download: bool = False
) -> tuple[Dataset, Dataset, Dataset]:
    """Train, validation and test sets of ``dataset`` sized by the profile.

    Every choice (learning rate, epochs, difficulty) is made on the validation split; the tables
    and verdicts read the test split only. The synthetic dataset is generated at the profile's
    ``data_difficulty``; real data holds validation out of its published training split and tests
    on its published test split (:func:`tnt_rest_lite.data.build_dataset`).
    """
    p = profile or get_profile()
    sizes = {"train": p.train_samples, "val": p.val_samples, "test": p.test_samples}
    key = (dataset, p.image_size, p.data_difficulty, tuple(sizes.values()))
    if key not in _SPLITS:  # generated (or read) once per process: a notebook's chapters share them
        kwargs = dict(seed=0, download=download, difficulty=p.data_difficulty)
        _SPLITS[key] = tuple(
            build_dataset(dataset, split, p.image_size, num_samples=n, **kwargs) for split, n in sizes.items()
        )
    return _SPLITS[key]


# load_splits' datasets, by what defines them (they are read, never modified, by the runs)
_SPLITS: dict[tuple[Any, ...], tuple[Dataset, Dataset, Dataset]] = {}


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for a single value); NaN where a value is NaN
    (a COCO size bin without objects: ``statistics.stdev`` cannot take a NaN)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, (math.nan if any(math.isnan(v) for v in values) else statistics.stdev(values))


def weights_path(prefix: str, name: str, seed: int, profile: Profile | None = None) -> Path:
    """Where the trained weights of ``name`` (seed ``seed``) of table ``prefix`` are kept.

    ``checkpoints/<profile>/<prefix>_<name>_seed<seed>.pt`` in the repository (ignored by git;
    ``$TNT_REST_CHECKPOINTS`` moves it): the figure chapters load the trained models from there.
    """
    from .results import _repo_root

    p = profile or get_profile()
    root = Path(os.environ.get(CHECKPOINTS_ENV_VAR) or ((_repo_root() or Path.cwd()) / "checkpoints"))
    return root / p.store_name / f"{prefix}_{name}_seed{seed}.pt"


def run_checkpoint_dir(prefix: str, name: str, seed: int, config: TrainConfig, profile: Profile | None = None) -> Path:
    """Where the per-epoch checkpoint of one training run is kept, so that an interrupted run resumes.

    ``checkpoints/<profile>/runs/<prefix>_<name>_seed<seed>_<recipe hash>/`` beside the final weights
    (:func:`weights_path`): a changed recipe gets a new folder, never another run's checkpoint.
    """
    recipe = {k: v for k, v in sorted(config.as_dict().items()) if k not in RESUMABLE_CHANGES}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return weights_path(prefix, name, seed, profile).parent / "runs" / f"{prefix}_{name}_seed{seed}_{digest}"


def load_weights(path: Path, model: nn.Module) -> nn.Module:
    """Load the weights :func:`run_model` saved at ``path`` into ``model`` (``weights_only=True``).

    Read by :func:`tnt_rest_lite.engine.load_checkpoint`: a missing file is a ``FileNotFoundError``,
    a corrupt one a ``CheckpointError`` naming it, weights of another architecture a ``KeyError`` /
    ``ValueError`` naming every mismatched key.
    """
    from .engine import load_checkpoint

    model.load_state_dict(load_checkpoint(path, model, require_format=False)["model"])
    return model


def trained_model(
    prefix: str,
    name: str,
    seed: int = 0,
    profile: Profile | None = None,
    dataset: str = "synthetic",
    classes: int = 20,
    progress: bool = True,
    epochs: int | None = None,
) -> nn.Module:
    """Model ``name`` as table ``prefix`` trained it (seed ``seed``), in eval mode.

    The figure chapters explain the models the training chapters trained: their weights are read
    from :func:`weights_path`. When they are absent (a fresh machine, another profile) the model is
    trained here, with the table's recipe and data and a progress bar, and its weights are saved
    for the next time. ``name`` may be outside the table's models (e.g. a ResNet trained with the
    ResT table's recipe for a Group-CAM comparison); the recipe is still the table's. ``epochs``
    shortens the recipe to that many epochs (its schedule compressed to them); such weights are
    kept apart, under ``<prefix>_e<epochs>``.
    """
    p = profile or get_profile()
    spec = table_spec(prefix)
    kept_as = prefix if epochs is None else f"{prefix}_e{epochs}"
    path = weights_path(kept_as, name, seed, p)
    if not path.is_file():
        run = p
        if epochs is not None:
            table = {**p.table_recipe.get(prefix, {}), "epochs": epochs}
            run = dataclasses.replace(p, table_recipe={**p.table_recipe, prefix: table})
        print(
            f"no trained weights at {path.name} for profile {p.name!r}: training {name} (seed {seed}) now, "
            f"{run.epochs_for(prefix)} epoch(s) of table {prefix}'s recipe"
        )
        splits = load_splits(dataset, p)
        classes = num_classes(splits[0])
        summary = run_model(
            name, spec.recipe, *splits, run, seeds=[seed], progress=progress, table=prefix, save_weights=kept_as
        )
        print(
            f"{name} (seed {seed}): test top-1 {summary['test_top1'][0]:.1f} % "
            f"in {summary['wall_time_s'][0] / 60:.1f} min ({summary['train_images_per_s']:.0f} img/s)"
        )
    model = build_model(name, classes, p.image_size, p)
    return load_weights(path, model).eval()


def seed_accuracy(models: Sequence[nn.Module], test_set: Dataset, batch_size: int = 256) -> dict[str, Any]:
    """``{"test_top1": [% per model], "chance_top1": %}`` of the seeds' ``models`` on ``test_set``.

    The form :func:`tnt_rest_lite.tables.verdict` reads to decide whether a claim about these
    models is testable (a model below twice chance has learnt too little to explain).
    """
    from .engine import DistInfo, _val_loader, evaluate

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
    from .engine import _val_loader, distributed_info

    info = distributed_info(config.device)
    return _val_loader(dataset, config.eval_batch_size or 2 * config.batch_size, info, config.num_workers)


def format_mean_std(mean: float, std: float | None, digits: int = 1) -> str:
    """``"72.9 ± 0.4"``, or ``"72.9"`` for one seed."""
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


# ----------------------------------------------------------------------------------------------
# The tables of notebooks 04-06: one spec each, one function that runs any of them
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A published ordering: ``better`` beats ``worse`` in top-1 (our model names)."""

    better: str
    worse: str


@dataclass(frozen=True)
class SizeRelation:
    """The paper's parameter relation between two compared models, kept by their small versions.

    ``larger`` / ``smaller`` are our small models, ``full_larger`` / ``full_smaller`` the published
    ones (our registry's, else timm's); the small ratio must be within ``tolerance`` of 1.
    """

    larger: str
    smaller: str
    full_larger: str
    full_smaller: str
    tolerance: float


@dataclass(frozen=True)
class TableSpec:
    """One regenerated accuracy table: which models, which recipe, which published claims.

    ``paper_keys`` maps each of our models to its row in ``reference_table`` (the name of a table
    of :mod:`tnt_rest_lite.reference`); ``extra_reference`` adds rows from ``reference.MODELS``.
    """

    prefix: str  # results-store prefix and checkpoint prefix, e.g. "tnt_table1"
    title: str
    recipe: str
    models: tuple[str, ...]
    labels: Mapping[str, str]
    paper_keys: Mapping[str, str]
    reference_table: str
    claims: tuple[Claim, ...]
    extra_reference: tuple[str, ...] = ()
    source: str = ""
    size_relation: SizeRelation | None = None

    def reference(self) -> dict[str, dict[str, float]]:
        """The published rows this table is compared with."""
        from . import reference

        rows = dict(getattr(reference, self.reference_table))
        rows.update({key: reference.MODELS[key] for key in self.extra_reference})
        return rows


TABLES: dict[str, TableSpec] = {
    "tnt_table1": TableSpec(
        prefix="tnt_table1",
        title="TNT supplement, Table 1: SE in TNT (and TNT against DeiT)",
        recipe="deit",
        models=("tnt_s_mini", "tnt_s_se_mini", "deit_s_mini"),
        labels={"tnt_s_mini": "TNT-S (small)", "tnt_s_se_mini": "TNT-S + SE (small)", "deit_s_mini": "DeiT-S (small)"},
        paper_keys={"tnt_s_mini": "tnt_s", "tnt_s_se_mini": "tnt_s_se", "deit_s_mini": "deit_s"},
        reference_table="TNT_TABLE1",
        extra_reference=("deit_s",),
        claims=(Claim("tnt_s_se_mini", "tnt_s_mini"), Claim("tnt_s_mini", "deit_s_mini")),
        source="TNT supplement Table 1 (TNT-S, TNT-S + SE); DeiT paper (DeiT-S top-1, no top-5 published)",
        size_relation=SizeRelation("tnt_s_mini", "deit_s_mini", "tnt_s", "deit_s", 0.10),
    ),
    "rest_table1": TableSpec(
        prefix="rest_table1",
        title="ResT supplement, Table 1: EMSA against MSA",
        recipe="deit",
        models=("rest_lite_msa_mini", "rest_lite_mini"),
        labels={"rest_lite_msa_mini": "ResT-Lite, MSA (small)", "rest_lite_mini": "ResT-Lite, EMSA (small)"},
        paper_keys={"rest_lite_msa_mini": "rest_lite_msa", "rest_lite_mini": "rest_lite"},
        reference_table="REST_TABLE1",
        claims=(Claim("rest_lite_mini", "rest_lite_msa_mini"),),
        source="ResT supplement Table 1 (ImageNet, 224 px)",
    ),
    "rest_ablation": TableSpec(
        prefix="rest_ablation",
        title="ResT supplement A.4: ResT-Lite against ResNet-18 under the ResNet recipe",
        recipe="resnet",
        models=("rest_lite_mini", "resnet18_mini"),
        labels={"rest_lite_mini": "ResT-Lite (small)", "resnet18_mini": "ResNet-18 (small)"},
        paper_keys={"rest_lite_mini": "rest_lite", "resnet18_mini": "resnet18"},
        reference_table="REST_ABLATION",
        claims=(Claim("rest_lite_mini", "resnet18_mini"),),
        source="ResT supplement A.4 (ImageNet, 224 px; top-1 only)",
        size_relation=SizeRelation("resnet18_mini", "rest_lite_mini", "resnet18", "rest_lite", 0.15),
    ),
}


def table_spec(name: str) -> TableSpec:
    """The spec of table ``name``; an unknown name lists the known ones."""
    if name not in TABLES:
        raise ValueError(f"Unknown table '{name}'; expected one of {', '.join(TABLES)}")
    return TABLES[name]


def run_table(
    name: str,
    dataset: str = "synthetic",
    download: bool = False,
    profile: Profile | None = None,
    splits: tuple[Dataset, Dataset, Dataset] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every model of table ``name``, store everything, and return the regenerated table.

    For each model: :func:`run_model` over the profile's seeds (weights kept for the figure
    chapters), its summary saved as ``<prefix>_<model>`` with provenance. Then the curves figure
    (``<prefix>_curves``: every seed's validation curve), the table read back from the results
    store (``<prefix>``) and one verdict per published claim (``<prefix>_verdicts``, structured
    records, see :func:`tnt_rest_lite.tables.verdict`). Returns ``{"spec", "summaries",
    "provenance", "headers", "rows", "verdicts", "figure"}``.
    """
    import time

    from . import results
    from .engine import plot_history
    from .tables import accuracy_rows, load_runs, verdict

    spec = table_spec(name)
    p = profile or get_profile()
    train_set, val_set, test_set = splits if splits is not None else load_splits(dataset, p, download=download)
    for name_ in spec.models:
        start = time.perf_counter()
        summary = run_model(
            name_,
            spec.recipe,
            train_set,
            val_set,
            test_set,
            p,
            progress=progress,
            table=spec.prefix,
            save_weights=spec.prefix,
        )
        results.save_json(
            f"{spec.prefix}_{name_}",
            summary,
            seed=summary["seeds"],
            wall_time_s=time.perf_counter() - start,
            dataset=dataset,
        )
    # everything below reads the results store back: the table can be rebuilt without retraining
    summaries, provenance = load_runs(spec.prefix, spec.models)
    figure = plot_history(
        {
            f"{spec.labels[m]} s{seed}": history
            for m, s in summaries.items()
            for seed, history in zip(s["seeds"], s["histories"], strict=True)
        },
        title=f"{spec.title}: validation curves, every seed",
    )
    results.save_figure(figure, f"{spec.prefix}_curves", seed=summaries[spec.models[0]]["seeds"])
    headers, rows = accuracy_rows(summaries, spec.reference(), spec.labels, spec.paper_keys)
    results.save_json(
        spec.prefix,
        {"headers": headers, "rows": rows, "dataset": dataset, "source": spec.source},
        seed=summaries[spec.models[0]]["seeds"],
    )
    reference_rows = spec.reference()
    verdicts = [
        verdict(
            _claim_text(spec, claim, reference_rows),
            claim.better,
            claim.worse,
            summaries[claim.better],
            summaries[claim.worse],
        )
        for claim in spec.claims
    ]
    results.save_json(f"{spec.prefix}_verdicts", verdicts, seed=summaries[spec.models[0]]["seeds"])
    return {
        "spec": spec,
        "summaries": summaries,
        "provenance": provenance,
        "headers": headers,
        "rows": rows,
        "verdicts": verdicts,
        "figure": figure,
    }


def describe_table(name: str, profile: Profile | None = None, dataset: str = "synthetic", classes: int = 20) -> str:
    """Markdown that says what table ``name`` trains in ``profile``: data, recipe, seeds, every model.

    Generated from the profile, the recipe and the models' own configs, so the chapter's text and
    the run cannot disagree.
    """
    from .complexity import count_params
    from .tables import markdown_table

    spec, p = table_spec(name), profile or get_profile()
    configs = {model: recipe(spec.recipe, p, 0, spec.prefix, model) for model in spec.models}
    config = configs[spec.models[0]]
    rates = {model: c.lr for model, c in configs.items()}
    rate = (
        f"lr {config.lr:g}"
        if len(set(rates.values())) == 1
        else "lr per model, each its best on validation (" + ", ".join(f"`{m}` {r:g}" for m, r in rates.items()) + ")"
    )
    data = f"`{dataset}`" + (f" at difficulty `{p.data_difficulty}`" if dataset == "synthetic" else "")
    schedule = (
        f"cosine after {config.warmup_epochs:g} warm-up epoch(s)"
        if config.schedule == "cosine"
        else f"x{config.step_rate:g} every {config.step_epochs:.3g} epochs"
    )
    lines = [
        f"**Profile `{p.name}`**: {p.description}.",
        "",
        f"* **Data**: {data}, {p.image_size} px, {p.train_samples:,} training / {p.val_samples:,} validation / "
        f"{p.test_samples:,} test images (synthetic: the sizes; real data: at most these), {classes} classes, "
        f"chance {100 / classes:.0f} %. Every choice was made on validation; the table reads test only.",
        f"* **Recipe `{spec.recipe}`**: {config.optimizer}, {rate}, batch {config.batch_size}, "
        f"{config.epochs} epochs ({config.epochs * (p.train_samples // config.batch_size):,} steps), {schedule}, "
        f"weight decay {config.weight_decay:g}, label smoothing {config.label_smoothing:g}"
        + (", mixup/cutmix" if config.mixup_alpha or config.cutmix_alpha else "")
        + f"; **{p.num_seeds} seed(s)** per model.",
        "",
    ]
    rows = []
    for model in spec.models:
        net = build_model(model, classes, p.image_size, p)
        rows.append(
            [spec.labels[model], f"`{model}`", f"{count_params(net):,}", describe_config(model, model_config(net))]
        )
    lines.append(markdown_table(["model", "name", "parameters", "configuration"], rows))
    return "\n".join(lines)


def _claim_text(spec: TableSpec, claim: Claim, reference_rows: Mapping[str, Mapping[str, float]]) -> str:
    """``"<better> beats <worse> (paper: <top-1> vs <top-1> top-1)"``, the published values read from the reference data."""
    better = reference_rows[spec.paper_keys[claim.better]]["top1"]
    worse = reference_rows[spec.paper_keys[claim.worse]]["top1"]
    return f"{spec.labels[claim.better]} beats {spec.labels[claim.worse]} (paper: {better} vs {worse} top-1)"


def describe_reference(name: str) -> str:
    """Markdown table of the published rows table ``name`` is compared with, and their source."""
    from .tables import markdown_table

    spec = table_spec(name)
    published = spec.reference()
    keys = sorted({k for row in published.values() for k in row if k != "source"})
    rows = [[row_name, *(row.get(k, "–") for k in keys)] for row_name, row in published.items()]
    return markdown_table(["paper row", *keys], rows) + f"\n\nSource: {spec.source}."


def _full_size_params(name: str) -> int:
    """Parameters of a published model at 1,000 classes: our registry's, else timm's (ResNet-18)."""
    import timm

    from .complexity import count_params
    from .registry import create_model, list_models

    return count_params(create_model(name) if name in list_models() else timm.create_model(name))


def _last_feature_widths(model: nn.Module, image_size: int, count: int = 4) -> list[int]:
    """Widths of the last ``count`` feature maps of ``model`` (timm's ``forward_intermediates``)."""
    import torch

    x = torch.zeros(1, getattr(model.config, "in_chans", 3), image_size, image_size)
    with torch.no_grad():
        features = model.forward_intermediates(x, indices=count, intermediates_only=True)
    return [int(f.shape[-1]) for f in features]


def check_small_models(name: str, profile: Profile | None = None, classes: int = 20) -> str:
    """Check that the small models of table ``name`` are still the models the paper compares.

    Two checks, at the profile's image size: the parameter ratio of the compared pair is the
    paper's (``TableSpec.size_relation``, within its tolerance; the widths of both models' last
    four feature maps are printed beside it), and :func:`attention_check` on
    every attention model (at least 2x2 keys per query, a non-zero gradient for every parameter
    of every attention module). Returns the measured lines; a failed check raises
    ``AssertionError`` naming what was expected.
    """
    from .complexity import count_params

    spec, p = table_spec(name), profile or get_profile()
    models = {m: build_model(m, classes, p.image_size, p) for m in spec.models}
    lines = []
    relation = spec.size_relation
    if relation is not None:
        full = _full_size_params(relation.full_larger) / _full_size_params(relation.full_smaller)
        small = count_params(models[relation.larger]) / count_params(models[relation.smaller])
        lines += [
            f"{relation.full_larger} / {relation.full_smaller} parameters at 224 px (1000 classes): {full:.3f}",
            f"{relation.larger} / {relation.smaller} at {p.image_size} px ({classes} classes): {small:.3f}",
        ]
        widths = {m: _last_feature_widths(models[m], p.image_size) for m in (relation.larger, relation.smaller)}
        lines.append(
            f"widths of the last {len(widths[relation.larger])} feature maps at {p.image_size} px: "
            + "; ".join(f"{m} {'-'.join(map(str, w))}" for m, w in widths.items())
        )
        if abs(small - 1) > relation.tolerance:
            raise AssertionError(
                f"{relation.larger} / {relation.smaller} = {small:.3f}: expected within "
                f"{relation.tolerance:.0%} of 1, the paper's size relation"
            )
    for model_name, model in models.items():
        records = attention_check(model, p.image_size)
        if not records:  # a convolutional network: nothing to check
            continue
        keys = sorted({r["keys"] for r in records})
        smallest = min(r["min_grad_norm"] for r in records)
        lines.append(
            f"{model_name}: {len(records)} attention modules; keys per query {keys}; "
            f"smallest parameter gradient norm {smallest:.2e}"
        )
        if min(keys) < 4:
            raise AssertionError(f"{model_name}: a module attends over {min(keys)} key(s), expected at least 4 (2x2)")
        dead = [f"{r['module']}.{q}" for r in records for q in r["zero_grad_params"]]
        if dead:
            raise AssertionError(f"{model_name}: no gradient reaches {', '.join(dead)}")
    return "\n".join(lines)


def training_summary(table: Mapping[str, Any]) -> str:
    """One line per model of a :func:`run_table` result: test top-1 over seeds, speed, time."""
    lines = []
    for name, s in table["summaries"].items():
        lines.append(
            f"{name:20s} test top-1 {format_mean_std(s['test_top1_mean'], s['test_top1_std'])} "
            f"(seeds: {', '.join(f'{v:.1f}' for v in s['test_top1'])}; "
            f"val: {', '.join(f'{v:.1f}' for v in s['val_top1'])}), "
            f"{s['train_images_per_s']:.0f} img/s, {sum(s['wall_time_s']) / 60:.1f} min for {len(s['seeds'])} seed(s)"
        )
    return "\n".join(lines)


def describe_targets(table: Mapping[str, Any]) -> str:
    """Markdown: every model of a :func:`run_table` result against the book's accuracy targets.

    Each model's test top-1 against :data:`TARGET_TOP1`, the best model against
    :data:`TARGET_BEST_TOP1`, and what its validation curve did in the last epoch (the mean over
    seeds of the last epoch's gain): a curve still rising says the run was too short, not that
    the model cannot learn the task. Generated from the stored summaries, never by hand.
    """
    from .tables import markdown_table

    summaries = table["summaries"]
    best = max(summaries, key=lambda m: summaries[m]["test_top1_mean"])
    rows, short, last_gain = [], [], {}
    for name, s in summaries.items():
        gains = [h["val_top1"][-1] - h["val_top1"][-2] for h in s["histories"] if len(h["val_top1"]) > 1]
        gain = last_gain[name] = statistics.fmean(gains) if gains else float("nan")
        target = TARGET_BEST_TOP1 if name == best else TARGET_TOP1
        reached = s["test_top1_mean"] >= target
        if not reached:
            short.append(name)
        rows.append(
            [
                f"`{name}`" + (" (best)" if name == best else ""),
                f"{s['test_top1_mean']:.1f}",
                f"{target:.0f}",
                "yes" if reached else f"no ({s['test_top1_mean'] - target:+.1f})",
                f"{gain:+.1f}",
            ]
        )
    text = markdown_table(["model", "test top-1", "target", "reached", "val gain in the last epoch"], rows)
    if not short:
        return text + "\n\nEvery model reaches its target."
    rising = [m for m in short if last_gain[m] > 1.0]
    text += f"\n\nShort of the target: {', '.join(f'`{m}`' for m in short)}."
    if rising:
        text += (
            f" The validation curves of {', '.join(f'`{m}`' for m in rising)} still rise by more than a point in the "
            "last epoch: the run is too short for them on this device, not a ceiling of the models."
        )
    return text
