"""One experiment runner for the classification and the detection tables.

A table is an :class:`ExperimentSpec` (its models, labels, published rows and claims) and a task
object, an :class:`Experiment`, that supplies what differs between classification and detection:
the data splits, how one seed of one model trains and is evaluated, the summary of a model's
seeds, the table's rows, the text of a claim, the metric it is judged on. Everything else is
shared and lives here:

* :func:`run_seeds`: one model over the profile's seeds (train, evaluate, summarise);
* :func:`run_table`: every model of a table, stored as ``<prefix>_<model>``, then the table
  (``<prefix>``), the verdicts (``<prefix>_verdicts``) and the curves (``<prefix>_curves``), all
  read back from the results store;
* :func:`describe_reference`, :func:`describe_targets`, :func:`training_summary`,
  :func:`plot_curves`: what the chapters print about a table.

The two tasks are :class:`tnt_rest_lite.experiments.runs.ClassificationExperiment` (top-1) and
:class:`tnt_rest_lite.experiments.detection.DetectionExperiment` (COCO AP, judged on AP).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import reference
from ..core import store
from ..core.format import markdown_table
from ..profiles import Profile, get_profile
from ..train.curves import plot_history
from .verdicts import Claim, learning_state, load_runs, verdict

__all__ = [
    "ExperimentSpec",
    "Experiment",
    "run_seeds",
    "run_table",
    "describe_reference",
    "describe_targets",
    "training_summary",
    "plot_curves",
]


@dataclass(frozen=True, kw_only=True)
class ExperimentSpec:
    """What every regenerated table names: its store prefix, title, labels, published rows and claims.

    ``reference_table`` is the name of a table of :mod:`tnt_rest_lite.reference`; the task's own
    spec (``TableSpec``, ``DetectionTableSpec``) adds its models and how they map to the paper.
    """

    prefix: str  # results-store prefix and checkpoint prefix, e.g. "tnt_table1"
    title: str
    labels: Mapping[str, str]
    reference_table: str
    claims: tuple[Claim, ...]
    source: str = ""

    def reference(self) -> dict[str, dict[str, float]]:
        """The published rows this table is compared with."""
        return dict(getattr(reference, self.reference_table))


class Experiment(abc.ABC):
    """The task strategy the shared runner calls: what differs between classification and detection.

    Attributes a task sets: ``spec`` (its :class:`ExperimentSpec`, ``None`` for a run outside a
    table), ``metric`` (the per-seed test key a claim is judged on, e.g. ``"test_top1"``),
    ``curve`` (the per-epoch validation key drawn, e.g. ``"val_top1"``) and ``curve_label``.
    """

    spec: Any = None
    metric: str = "test_top1"
    curve: str = "val_top1"
    curve_label: str = "val top-1 (%)"

    # ---- one model, one seed ----------------------------------------------------------------------
    @abc.abstractmethod
    def units(self) -> tuple[str, ...]:
        """The table's models (row keys), in the table's order."""

    @abc.abstractmethod
    def splits(self, profile: Profile, dataset: str = "synthetic", download: bool = False) -> tuple[Any, Any, Any]:
        """Train, validation and test splits of the table."""

    @abc.abstractmethod
    def train_seed(self, unit: str, seed: int, splits: tuple[Any, Any, Any], profile: Profile, progress: bool) -> Any:
        """Train and evaluate one seed of ``unit``; whatever :meth:`summarise` reads back."""

    @abc.abstractmethod
    def summarise(
        self, unit: str, seeds: list[int], runs: list[Any], splits: tuple[Any, Any, Any], profile: Profile
    ) -> dict[str, Any]:
        """The JSON-ready summary of ``unit`` over its seeds' runs."""

    # ---- the table --------------------------------------------------------------------------------
    def target_state(self, summary: Mapping[str, Any]) -> dict[str, Any] | None:
        """Whether the model of ``summary`` met the book's target: ``{"metric", "target", "value", "met"}``
        (``None``: the task sets none)."""
        return None

    def store_extras(self, dataset: str) -> dict[str, Any]:
        """Extra provenance stored with each model's summary."""
        return {}

    @abc.abstractmethod
    def rows(self, summaries: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
        """Headers and rows of the regenerated table."""

    def table_record(self, headers: list[str], rows: list[list[str]], dataset: str) -> dict[str, Any]:
        """The table as stored under ``<prefix>``."""
        return {"headers": headers, "rows": rows, "source": self.spec.source}

    def judge(self, claim: Claim, summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """The :func:`verdict` record of one published claim."""
        return verdict(
            self.claim_text(claim),
            claim.better,
            claim.worse,
            summaries[claim.better],
            summaries[claim.worse],
            curve=self.curve,
        )

    @abc.abstractmethod
    def claim_text(self, claim: Claim) -> str:
        """The sentence of a claim, with the published values."""

    # ---- what a chapter prints --------------------------------------------------------------------
    @abc.abstractmethod
    def summary_line(self, unit: str, summary: Mapping[str, Any]) -> str:
        """One line of :func:`training_summary`."""

    def reference_columns(self, published: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """The columns of :func:`describe_reference` (every published key, in order)."""
        return list(dict.fromkeys(k for row in published.values() for k in row))

    @abc.abstractmethod
    def targets(self, table: Mapping[str, Any]) -> str:
        """Markdown of :func:`describe_targets`: the table's models against the book's targets."""


def run_seeds(
    experiment: Experiment,
    unit: str,
    splits: tuple[Any, Any, Any],
    profile: Profile | None = None,
    seeds: Sequence[int] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``unit`` once per seed (``experiment.train_seed``) and return its summary over the seeds.

    The summary also says whether the model is still learning (``"learning"``: :func:`learning_state` of
    its validation curves, ``experiment.curve``) and whether it met its target (``"target"``).
    """
    p = profile or get_profile()
    seeds = list(range(p.num_seeds)) if seeds is None else list(seeds)
    runs = [experiment.train_seed(unit, seed, splits, p, progress) for seed in seeds]
    summary = experiment.summarise(unit, seeds, runs, splits, p)
    summary["learning"] = learning_state(summary["histories"], experiment.curve)
    summary["target"] = experiment.target_state(summary)
    return summary


def _train_units(
    experiment: Experiment, splits: tuple[Any, Any, Any], p: Profile, dataset: str, progress: bool
) -> None:
    """Phase 1 of :func:`run_table`: every model over the seeds, each summary stored with provenance."""
    for unit in experiment.units():
        start = time.perf_counter()
        summary = run_seeds(experiment, unit, splits, p, progress=progress)
        store.save_json(
            f"{experiment.spec.prefix}_{unit}",
            summary,
            seed=summary["seeds"],
            wall_time_s=time.perf_counter() - start,
            **experiment.store_extras(dataset),
        )


def _store_results(experiment: Experiment, summaries: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """Phase 2 of :func:`run_table`: the table and the verdicts, from the stored summaries, stored."""
    spec = experiment.spec
    seeds = summaries[experiment.units()[0]]["seeds"]
    headers, rows = experiment.rows(summaries)
    store.save_json(spec.prefix, experiment.table_record(headers, rows, dataset), seed=seeds)
    verdicts = [experiment.judge(claim, summaries) for claim in spec.claims]
    store.save_json(f"{spec.prefix}_verdicts", verdicts, seed=seeds)
    return {"headers": headers, "rows": rows, "verdicts": verdicts}


def run_table(
    experiment: Experiment,
    profile: Profile | None = None,
    dataset: str = "synthetic",
    download: bool = False,
    splits: tuple[Any, Any, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every model of ``experiment``'s table, store everything, and return the regenerated table.

    Each model: :func:`run_seeds` over the profile's seeds, its summary saved as ``<prefix>_<model>``
    with provenance. Then, read back from the results store (the table can be rebuilt without
    retraining): the table (``<prefix>``), one verdict per published claim (``<prefix>_verdicts``)
    and the curves figure (``<prefix>_curves``). Returns ``{"experiment", "spec", "summaries",
    "provenance", "headers", "rows", "verdicts", "splits", "figure"}``.
    """
    p = profile or get_profile()
    splits = splits if splits is not None else experiment.splits(p, dataset, download)
    _train_units(experiment, splits, p, dataset, progress)
    summaries, provenance = load_runs(experiment.spec.prefix, experiment.units())
    table = {"experiment": experiment, "spec": experiment.spec, "summaries": summaries, "provenance": provenance}
    table.update(_store_results(experiment, summaries, dataset))
    table["splits"] = splits
    table["figure"] = plot_curves(table)
    seeds = summaries[experiment.units()[0]]["seeds"]
    store.save_figure(table["figure"], f"{experiment.spec.prefix}_curves", seed=seeds)
    return table


def describe_reference(experiment: Experiment) -> str:
    """Markdown table of the published rows ``experiment``'s table is compared with, and their source."""
    spec = experiment.spec
    published = spec.reference()
    keys = experiment.reference_columns(published)
    rows = [[row_name, *(row.get(k, "–") for k in keys)] for row_name, row in published.items()]
    return markdown_table(["paper row", *keys], rows) + f"\n\nSource: {spec.source}."


def describe_targets(table: Mapping[str, Any]) -> str:
    """Markdown: the models of a :func:`run_table` result against the book's targets (the task's)."""
    return table["experiment"].targets(table)


def training_summary(table: Mapping[str, Any]) -> str:
    """One line per model of a :func:`run_table` result: its test metric over the seeds, speed, time."""
    experiment = table["experiment"]
    return "\n".join(experiment.summary_line(unit, s) for unit, s in table["summaries"].items())


def plot_curves(table: Mapping[str, Any]) -> Any:
    """Every seed's training and validation curves of a :func:`run_table` result, one colour per model.

    :func:`tnt_rest_lite.train.curves.plot_history` on the summaries' histories, the validation
    metric being the task's (``experiment.curve``).
    """
    experiment, spec = table["experiment"], table["spec"]
    histories = {
        f"{spec.labels[m]} s{seed}": history
        for m, s in table["summaries"].items()
        for seed, history in zip(s["seeds"], s["histories"], strict=True)
    }
    return plot_history(
        histories,
        title=f"{spec.title}: validation curves, every seed",
        metric=experiment.curve,
        metric_label=experiment.curve_label,
    )
