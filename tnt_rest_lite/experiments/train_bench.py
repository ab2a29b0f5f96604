"""Training benchmark: each small model's training throughput and time against the profile's budget.

``python -m tnt_rest_lite train-bench [--profile cpu] [--tables rest_table1 ...] [--no-fast-data]``
trains each model of the tables of notebooks 04-06 once (seed 0) with the recipe and epochs the
notebooks use, on the profile's synthetic data, and reports per model the training throughput
(img/s, forward + backward + step, data included), the wall time of training + evaluation and,
per table, the estimated notebook time (``num_seeds`` x the models' times) against the profile's
``notebook_budget_s`` (``cpu``: 45 minutes on 2 CPU cores). ``--no-fast-data`` times the data
path as it was before the engine's batched fast path (a ``DataLoader`` that collates sample by
sample), so one run of each prints the before/after ratio. The table goes to the results store as
``train_bench`` (or ``train_bench_slow_data``). Budgets are measured here, never asserted by timed
tests.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..core import store
from ..profiles import ENV_VAR, get_profile
from .runs import run_model
from .splits import load_splits
from .tables import TABLES

__all__ = ["main", "bench"]


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


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m tnt_rest_lite train-bench", description=__doc__)
    parser.add_argument("--profile", help="ci | cpu | colab | full (default: $TNT_REST_PROFILE, else by device)")
    parser.add_argument("--tables", nargs="*", choices=list(TABLES), help="default: every table of notebooks 04-06")
    parser.add_argument("--no-fast-data", action="store_true", help="the per-sample DataLoader (the 'before')")
    args = parser.parse_args(argv)
    if args.profile:
        os.environ[ENV_VAR] = get_profile(args.profile).name
    rows = bench(tuple(args.tables or TABLES), fast_data=not args.no_fast_data)
    return 0 if all(r["within_budget"] in (True, None) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
