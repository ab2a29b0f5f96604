"""Training benchmark: each small model's training throughput and time against the profile's budget.

``python -m tnt_rest_lite train-bench [--profile cpu] [--tables rest_table1 ...] [--no-fast-data]``
trains each model of the tables of notebooks 04-06 once (seed 0) with the recipe and epochs the
notebooks use, on the profile's synthetic data, and reports per model the training throughput
(img/s, forward + backward + step, data included), the wall time of training + evaluation and,
per table, the estimated notebook time (``num_seeds`` x the models' times) against the profile's
``notebook_budget_s`` (``cpu``: 60 minutes on 2 CPU cores). ``--no-fast-data`` times the data
path as it was before the engine's batched fast path (a ``DataLoader`` that collates sample by
sample), so one run of each prints the before/after ratio. The table goes to the results store as
``train_bench`` (or ``train_bench_slow_data``). Budgets are measured here, never asserted by timed
tests.

``--steps N`` measures the loop instead of whole runs: per model, at its table's batch size and
recipe, a **bare training step** (forward, loss, backward, clipping, optimizer and schedule on one
batch held in memory: no data, no evaluation, no bookkeeping) against **the engine's loop**
(:func:`tnt_rest_lite.train.loop.train` for one epoch of ``N`` steps, evaluation excluded from its
img/s), each **before** (``foreach=False``: one optimizer and clipping kernel per parameter tensor)
and **after** (``foreach=True``, the engine's default), all in one run. The ratio bare / loop is
what the loop costs beyond the model; after / before is the change. Stored as ``train_bench_steps``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any

import torch

from ..core import store
from ..core.format import markdown_table
from ..data.datasets import build_dataset, num_classes
from ..profiles import ENV_VAR, Profile, get_profile
from ..train.config import TrainConfig, seed_everything
from ..train.loop import train
from .gpu_check import bare_step_seconds
from .recipes import build_model, recipe
from .runs import run_model
from .splits import load_splits
from .tables import TABLES

__all__ = ["main", "bench", "step_bench", "bare_step_rate", "loop_rate", "VARIANTS"]

# The loop's two settings compared by --steps: before (one kernel per tensor) and after (the default).
VARIANTS = {"before": {"foreach": False}, "after": {"foreach": True}}


class _PerSample:
    """Hide a dataset's ``batch`` method: the engine then falls back to its per-sample DataLoader."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.classes = dataset.classes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]


def bench(tables: tuple[str, ...] = tuple(TABLES), fast_data: bool = True) -> list[dict]:
    """Train each model of ``tables`` once (seed 0) and time it; one row per (table, model)."""

    profile = get_profile()
    start = time.perf_counter()
    splits = load_splits("synthetic", profile)
    for dataset in splits:  # generate the data once, outside the models' timings
        dataset.materialize()
    data_s = time.perf_counter() - start
    if not fast_data:
        splits = tuple(_PerSample(d) for d in splits)
    rows = []
    for table in tables:
        spec = TABLES[table]
        table_rows = []
        for name in spec.models:
            summary = run_model(name, spec.recipe, *splits, profile, seeds=[0], progress=False, table=table)
            row = {
                "table": table,
                "model": name,
                "recipe": spec.recipe,
                "epochs": summary["train_config"]["epochs"],
                "batch_size": summary["train_config"]["batch_size"],
                "params": summary["params"],
                "wall_time_s": summary["wall_time_s"][0],
                "train_images_per_s": summary["train_images_per_s"],
                "val_top1": summary["val_top1"][0],
                "test_top1": summary["test_top1"][0],
            }
            table_rows.append(row)
            print(
                f"{table:14s} {name:20s} {summary['params'] / 1e6:5.2f}M  {row['wall_time_s']:6.1f} s  "
                f"{row['train_images_per_s']:7.1f} img/s  val {row['val_top1']:5.1f}  test {row['test_top1']:5.1f}",
                flush=True,
            )
        estimate = profile.num_seeds * sum(r["wall_time_s"] for r in table_rows)
        budget = profile.notebook_budget_s
        for r in table_rows:
            r.update(notebook_estimate_s=estimate, notebook_budget_s=budget)
            r["within_budget"] = None if budget is None else estimate <= budget
        print(
            f"{table}: {profile.num_seeds} seed(s) x {len(table_rows)} models ~ {estimate / 60:.1f} min of training"
            + (
                ""
                if budget is None
                else f" ({'within' if estimate <= budget else 'OVER'} the {budget / 60:.0f} min budget)"
            ),
            flush=True,
        )
        rows += table_rows
    name = "train_bench" if fast_data else "train_bench_slow_data"
    store.save_json(name, rows, seed=0, wall_time_s=time.perf_counter() - start, data_generation_s=data_s)
    return rows


def bare_step_rate(name: str, config: TrainConfig, profile: Profile, steps: int) -> float:
    """img/s of a bare training step of ``name`` on the CPU (:func:`~tnt_rest_lite.experiments.gpu_check.bare_step_seconds`,
    the step gpu-check times on a GPU)."""
    seconds, _ = bare_step_seconds(name, config, profile, torch.device("cpu"), steps)
    return config.batch_size / seconds


def loop_rate(name: str, config: TrainConfig, train_set: Any, val_set: Any, profile: Profile) -> float:
    """The engine's img/s over one epoch of ``train_set`` (its own measure: evaluation excluded)."""
    seed_everything(config.seed)
    model = build_model(name, num_classes(train_set), profile.image_size, profile)
    run = dataclasses.replace(config, epochs=1, progress=False, checkpoint_dir=None)
    return train(model, train_set, val_set, run).train_images_per_s


def _step_row(table: str, name: str, profile: Profile, steps: int) -> dict[str, Any]:
    """One model's bare and loop rates, before and after, measured back to back."""
    spec = TABLES[table]
    config = recipe(spec.recipe, profile, 0, table, name)
    kwargs = dict(seed=0, difficulty=profile.data_difficulty)
    size = profile.image_size
    train_set = build_dataset("synthetic", "train", size, num_samples=steps * config.batch_size, **kwargs)
    val_set = build_dataset("synthetic", "val", size, num_samples=config.batch_size, **kwargs)
    for dataset in (train_set, val_set):
        dataset.materialize()  # drawn once, outside every timing
    row: dict[str, Any] = {"table": table, "model": name, "batch_size": config.batch_size, "steps": steps}
    for variant, change in VARIANTS.items():
        run = dataclasses.replace(config, **change)
        row[f"bare_{variant}"] = bare_step_rate(name, run, profile, steps)
        row[f"loop_{variant}"] = loop_rate(name, run, train_set, val_set, profile)
    for variant in VARIANTS:
        row[f"overhead_{variant}"] = row[f"bare_{variant}"] / row[f"loop_{variant}"]
    row["loop_speedup"] = row["loop_after"] / row["loop_before"]
    return row


def step_bench(tables: tuple[str, ...], steps: int = 60) -> list[dict[str, Any]]:
    """:func:`_step_row` for every model of ``tables``; printed as a table and stored as ``train_bench_steps``."""
    profile = get_profile()
    start = time.perf_counter()
    rows = [_step_row(table, name, profile, steps) for table in tables for name in TABLES[table].models]
    print(step_bench_markdown(rows), flush=True)
    store.save_json("train_bench_steps", rows, seed=0, wall_time_s=time.perf_counter() - start)
    return rows


def step_bench_markdown(rows: list[dict[str, Any]]) -> str:
    """The ``--steps`` table: img/s bare and in the loop, before and after, and their ratios."""
    headers = [
        "model",
        "batch",
        "bare before",
        "loop before",
        "bare after",
        "loop after",
        "bare/loop after",
        "after/before (loop)",
    ]
    body = [
        [
            r["model"],
            r["batch_size"],
            *(f"{r[k]:.0f}" for k in ("bare_before", "loop_before", "bare_after", "loop_after")),
            f"{r['overhead_after']:.2f}",
            f"{r['loop_speedup']:.2f}",
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m tnt_rest_lite train-bench", description=__doc__)
    parser.add_argument("--profile", help="ci | cpu | colab | full (default: $TNT_REST_PROFILE, else by device)")
    parser.add_argument("--tables", nargs="*", choices=list(TABLES), help="default: every table of notebooks 04-06")
    parser.add_argument("--no-fast-data", action="store_true", help="the per-sample DataLoader (the 'before')")
    parser.add_argument("--steps", type=int, help="bare step vs the loop, before/after, over this many steps")
    args = parser.parse_args(argv)
    if args.profile:
        os.environ[ENV_VAR] = get_profile(args.profile).name
    if args.steps:
        step_bench(tuple(args.tables or TABLES), args.steps)
        return 0
    rows = bench(tuple(args.tables or TABLES), fast_data=not args.no_fast_data)
    return 0 if all(r["within_budget"] in (True, None) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
