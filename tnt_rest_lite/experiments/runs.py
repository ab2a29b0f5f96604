"""Classification in the shared runner: one seed of one model trained (resuming), evaluated on test, summarised."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from ..core.format import format_mean_std, mean_std
from ..data.datasets import num_classes
from ..profiles import Profile
from ..train.checkpoint import CHECKPOINT_NAME, save_checkpoint
from ..train.config import TrainConfig, seed_everything
from ..train.distributed import DistInfo, distributed_info
from ..train.evaluate import evaluate
from ..train.loaders import build_val_loader as _val_loader
from ..train.loop import train
from .recipes import TARGET_TOP1, build_model, describe_config, describe_targets, model_config, recipe
from .runner import Experiment, run_seeds
from .splits import load_splits
from .verdicts import Claim, accuracy_rows, learning_state
from .weights import run_checkpoint_dir, weights_path

__all__ = ["ClassificationExperiment", "run_model", "seed_accuracy"]


def seed_accuracy(
    models: Sequence[nn.Module],
    test_set: Dataset,
    batch_size: int = 256,
    histories: Sequence[Mapping[str, Sequence[float]]] | None = None,
) -> dict[str, Any]:
    """``{"test_top1": [% per model], "chance_top1": %}`` of the seeds' ``models`` on ``test_set``.

    The form :func:`tnt_rest_lite.experiments.verdicts.verdict` reads to decide whether a claim about these
    models is testable: a model below twice chance has learnt too little to explain, and with the seeds'
    training ``histories`` (:func:`tnt_rest_lite.experiments.tables.trained_histories`) the record also
    holds their ``learning`` state: a model still learning makes a claim about it not testable.
    """

    top1 = []
    for model in models:
        loader = _val_loader(test_set, batch_size, DistInfo(0, 1, 0, next(model.parameters()).device))
        top1.append(evaluate(model, loader)["top1"])
    record: dict[str, Any] = {"test_top1": top1, "chance_top1": 100.0 / num_classes(test_set)}
    if histories is not None:
        record["learning"] = learning_state(histories, "val_top1")
    return record


@dataclass(frozen=True)
class ClassificationExperiment(Experiment):
    """The classification task of the shared runner (:mod:`tnt_rest_lite.experiments.runner`): top-1.

    ``recipe`` names the training recipe; ``table`` applies the profile's recipe settings for that
    table; with ``save_weights`` (a table prefix) each seed's final weights are written atomically to
    :func:`weights_path`. Every epoch is checkpointed under :func:`run_checkpoint_dir` and an
    interrupted (or finished) run resumes from it, unless ``checkpoint=False`` (a measurement that
    must train every time). ``spec`` is the table's ``TableSpec`` (``None``: a run outside a table).
    """

    recipe: str = "deit"
    table: str | None = None
    save_weights: str | None = None
    checkpoint: bool = True
    spec: Any = None
    metric: str = "test_top1"
    curve: str = "val_top1"
    curve_label: str = "val top-1 (%)"

    @classmethod
    def for_table(cls, spec: Any) -> ClassificationExperiment:
        """The experiment of a ``TableSpec``: its recipe, its settings, its weights kept for the figures."""
        return cls(recipe=spec.recipe, table=spec.prefix, save_weights=spec.prefix, spec=spec)

    def units(self) -> tuple[str, ...]:
        return tuple(self.spec.models)

    def splits(self, profile: Profile, dataset: str = "synthetic", download: bool = False) -> tuple[Any, Any, Any]:
        return load_splits(dataset, profile, download=download)

    def train_seed(self, unit: str, seed: int, splits: tuple[Any, Any, Any], profile: Profile, progress: bool) -> Any:
        """Train seed ``seed`` on the train split (validation curve on val), evaluate it once on test."""
        train_set, val_set, test_set = splits
        seed_everything(seed)
        model = build_model(unit, num_classes(train_set), profile.image_size, profile)
        config = dataclasses.replace(recipe(self.recipe, profile, seed, self.table, unit), progress=progress)
        # every epoch is checkpointed: a disconnect (Colab) loses at most one, and re-running the cell resumes
        resumed = False
        if self.checkpoint:
            folder = run_checkpoint_dir(self.save_weights or self.table or self.recipe, unit, seed, config, profile)
            config = dataclasses.replace(config, checkpoint_dir=str(folder))
            resumed = (folder / CHECKPOINT_NAME).is_file()  # a completed run is not retrained
        result = train(model, train_set, val_set, config, desc=f"{unit} seed {seed}")
        test = evaluate(model, _eval_batches(test_set, config), next(model.parameters()).device)
        if self.save_weights is not None:
            # the history and the test top-1 travel with the weights: a figure chapter judges whether the model
            # it explains had finished learning, a detection table prints its initialisation's accuracy
            # (tables.trained_record)
            state = {"model": model.state_dict(), "history": result.history, "test_top1": test["top1"]}
            save_checkpoint(weights_path(self.save_weights, unit, seed, profile), state)
        return model, result, test, resumed

    def summarise(
        self, unit: str, seeds: list[int], runs: list[Any], splits: tuple[Any, Any, Any], profile: Profile
    ) -> dict[str, Any]:
        """Per-seed val/test top-1 and top-5, test means and stds, parameters, speed, configs, histories."""
        train_set, val_set, test_set = splits
        model, first, _, _ = runs[0]
        summary: dict[str, Any] = {
            "model": unit,
            "recipe": self.recipe,
            "seeds": seeds,
            "val_top1": [r.metrics["top1"] for _, r, _, _ in runs],
            "val_top5": [r.metrics["top5"] for _, r, _, _ in runs],
            "test_top1": [t["top1"] for _, _, t, _ in runs],
            "test_top5": [t["top5"] for _, _, t, _ in runs],
        }
        for key in ("test_top1", "test_top5", "val_top1"):
            summary[f"{key}_mean"], summary[f"{key}_std"] = mean_std(summary[key])
        summary.update(
            {
                "chance_top1": 100.0 / num_classes(train_set),
                "params": first.num_params,
                "train_images_per_s": statistics.fmean(r.train_images_per_s for _, r, _, _ in runs),
                "wall_time_s": [r.wall_time_s for _, r, _, _ in runs],
                "image_size": profile.image_size,
                "data_difficulty": getattr(train_set, "difficulty", None),  # synthetic data only
                "train_samples": len(train_set),
                "val_samples": len(val_set),
                "test_samples": len(test_set),
                "model_config": model_config(model),
                "description": describe_config(unit, model_config(model)),
                "train_config": first.config,
                "histories": [r.history for _, r, _, _ in runs],
                "resumed": [resumed for _, _, _, resumed in runs],
            }
        )
        return summary

    def target_state(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        """Test top-1 (mean over the seeds) against :data:`TARGET_TOP1`."""
        value = summary["test_top1_mean"]
        return {"metric": "test_top1", "target": TARGET_TOP1, "value": value, "met": value >= TARGET_TOP1}

    def store_extras(self, dataset: str) -> dict[str, Any]:
        return {"dataset": dataset}

    def rows(self, summaries: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
        spec = self.spec
        return accuracy_rows(summaries, spec.reference(), spec.labels, spec.paper_keys)

    def table_record(self, headers: list[str], rows: list[list[str]], dataset: str) -> dict[str, Any]:
        return {"headers": headers, "rows": rows, "dataset": dataset, "source": self.spec.source}

    def claim_text(self, claim: Claim) -> str:
        """``"<better> beats <worse> (paper: <top-1> vs <top-1> top-1)"``, the published values read from the reference data."""
        spec, reference_rows = self.spec, self.spec.reference()
        better = reference_rows[spec.paper_keys[claim.better]]["top1"]
        worse = reference_rows[spec.paper_keys[claim.worse]]["top1"]
        return f"{spec.labels[claim.better]} beats {spec.labels[claim.worse]} (paper: {better} vs {worse} top-1)"

    def summary_line(self, unit: str, summary: Mapping[str, Any]) -> str:
        s = summary
        return (
            f"{unit:20s} test top-1 {format_mean_std(s['test_top1_mean'], s['test_top1_std'])} "
            f"(seeds: {', '.join(f'{v:.1f}' for v in s['test_top1'])}; "
            f"val: {', '.join(f'{v:.1f}' for v in s['val_top1'])}), "
            f"{s['train_images_per_s']:.0f} img/s, {sum(s['wall_time_s']) / 60:.1f} min for {len(s['seeds'])} seed(s)"
        )

    def reference_columns(self, published: Mapping[str, Mapping[str, Any]]) -> list[str]:
        return sorted({k for row in published.values() for k in row if k != "source"})

    def targets(self, table: Mapping[str, Any]) -> str:
        return describe_targets(table)


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

    :func:`tnt_rest_lite.experiments.runner.run_seeds` with a :class:`ClassificationExperiment`
    (``table``, ``save_weights`` and ``checkpoint`` are its fields), for a run outside a table (the
    benchmarks, a figure chapter's missing weights). Each seed trains on ``train_set`` with the
    validation curve on ``val_set``, then is evaluated once on ``test_set``. Seeds change the
    initialisation, data order and augmentation; the datasets stay the same.
    """
    experiment = ClassificationExperiment(
        recipe=recipe_name, table=table, save_weights=save_weights, checkpoint=checkpoint
    )
    return run_seeds(experiment, name, (train_set, val_set, test_set), profile, seeds, progress)


def _eval_batches(dataset: Dataset, config: TrainConfig) -> Any:

    info = distributed_info(config.device)
    return _val_loader(dataset, config.eval_batch_size or 2 * config.batch_size, info, config.num_workers)
