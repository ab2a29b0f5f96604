"""The small-scale training experiments: recipes, model construction, multi-seed runs.

The notebooks 04-06 run their tables through the shared runner
(:func:`tnt_rest_lite.experiments.runner.run_table` of :func:`table_experiment`), and the training
benchmark through :func:`run_model`, the same runner's :func:`~tnt_rest_lite.experiments.runner.run_seeds`:
a number in a table and a number in the benchmark come from the same code.

Two recipes, both scaled down from the papers:

* ``"deit"`` (TNT's and ResT's main recipe): AdamW, linear warm-up then cosine decay, label
  smoothing 0.1, weight decay 0.05; mixup/cutmix only where the profile says so (long runs).
* ``"resnet"`` (ResT supplement A.4, the ablation): SGD with momentum 0.9, learning rate divided by
  10 at 1/3 and 2/3 of the run (ResNet's 30/60 of 90 epochs), weight decay 1e-4, no label
  smoothing, no mixup.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from .. import reference
from ..core import store
from ..core.format import markdown_table
from ..data.datasets import num_classes
from ..measure.complexity import count_params
from ..models._registry import create_model, list_models
from ..profiles import Profile, get_profile
from ..train.checkpoint import load_checkpoint
from .recipes import attention_check, build_model, describe_config, model_config, recipe
from .runner import ExperimentSpec
from .runs import ClassificationExperiment, run_model
from .splits import load_splits
from .verdicts import Claim
from .weights import load_weights, weights_path

__all__ = [
    "trained_model",
    "trained_histories",
    "trained_record",
    "TableSpec",
    "TABLES",
    "table_spec",
    "table_experiment",
    "describe_table",
    "check_small_models",
    "SizeRelation",
]


def _kept_as(prefix: str, epochs: int | None) -> str:
    """The weights prefix of table ``prefix``'s recipe, shortened to ``epochs`` where given."""
    return prefix if epochs is None else f"{prefix}_e{epochs}"


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
    kept_as = _kept_as(prefix, epochs)
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


def trained_record(
    prefix: str, name: str, seed: int, profile: Profile | None = None, epochs: int | None = None
) -> dict[str, Any] | None:
    """``{"history", "test_top1"}`` of the weights :func:`trained_model` loads (same arguments), or ``None``.

    Read from the weights file (saved with both since the learning-aware verdicts), else, for the
    table's own recipe (``epochs=None``), from its stored summary ``<prefix>_<name>`` when that holds
    the seed; ``None`` when neither has it (weights saved before, without a stored table).
    """
    p = profile or get_profile()
    path = weights_path(_kept_as(prefix, epochs), name, seed, p)
    state = load_checkpoint(path, require_format=False) if path.is_file() else {}
    if "history" in state and "test_top1" in state:
        return {"history": state["history"], "test_top1": float(state["test_top1"])}
    if epochs is not None:
        return None
    try:
        summary = store.load_json(f"{prefix}_{name}", profile=p.name)["data"]
    except FileNotFoundError:
        return None
    if seed not in summary.get("seeds", []):
        return None
    i = summary["seeds"].index(seed)
    return {"history": summary["histories"][i], "test_top1": float(summary["test_top1"][i])}


def trained_histories(
    prefix: str, name: str, seeds: list[int], profile: Profile | None = None
) -> list[dict[str, list[float]]] | None:
    """The training histories of the seeds' weights :func:`trained_model` loads, or ``None`` if any is unknown.

    :func:`trained_record` per seed: the figure verdicts then say whether the models were still learning.
    """
    records = [trained_record(prefix, name, seed, profile) for seed in seeds]
    return None if any(r is None for r in records) else [r["history"] for r in records]


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


@dataclass(frozen=True, kw_only=True)
class TableSpec(ExperimentSpec):
    """One regenerated accuracy table: which models, which recipe, which published claims.

    ``paper_keys`` maps each of our models to its row in ``reference_table`` (the name of a table
    of :mod:`tnt_rest_lite.reference`); ``extra_reference`` adds rows from ``reference.MODELS``.
    """

    recipe: str
    models: tuple[str, ...]
    paper_keys: Mapping[str, str]
    extra_reference: tuple[str, ...] = ()
    size_relation: SizeRelation | None = None

    def reference(self) -> dict[str, dict[str, float]]:
        """The published rows this table is compared with."""

        rows = dict(getattr(reference, self.reference_table))
        rows.update({key: reference.MODELS[key] for key in self.extra_reference})
        return rows


TABLES: dict[str, TableSpec] = {
    "tnt_table1": TableSpec(
        prefix="tnt_table1",
        title="TNT supplement, Table 1: SE in TNT (and TNT against DeiT)",
        recipe="deit",
        # resnet50_slim_mini is not in Table 1: it is Table 2's ResNet-50 backbone, trained here with the
        # same recipe and budget as the DeiT-S and TNT-S classifiers that initialise the other two backbones
        models=("tnt_s_mini", "tnt_s_se_mini", "deit_s_mini", "resnet50_slim_mini"),
        labels={
            "tnt_s_mini": "TNT-S (small)",
            "tnt_s_se_mini": "TNT-S + SE (small)",
            "deit_s_mini": "DeiT-S (small)",
            "resnet50_slim_mini": "ResNet-50, slim (small; Table 2's backbone)",
        },
        paper_keys={
            "tnt_s_mini": "tnt_s",
            "tnt_s_se_mini": "tnt_s_se",
            "deit_s_mini": "deit_s",
            "resnet50_slim_mini": None,
        },
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


def table_experiment(name: str) -> ClassificationExperiment:
    """The shared runner's task object of table ``name`` (:func:`tnt_rest_lite.experiments.runner.run_table`)."""
    return ClassificationExperiment.for_table(table_spec(name))


def describe_table(name: str, profile: Profile | None = None, dataset: str = "synthetic", classes: int = 20) -> str:
    """Markdown that says what table ``name`` trains in ``profile``: data, recipe, seeds, every model.

    Generated from the profile, the recipe and the models' own configs, so the chapter's text and
    the run cannot disagree.
    """

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


def _full_size_params(name: str) -> int:
    """Parameters of a published model at 1,000 classes: our registry's, else timm's (ResNet-18)."""
    import timm

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
