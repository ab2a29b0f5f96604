"""Training benchmark: each small model's training time and throughput against the profile's budget.

``python -m tnt_rest_lite.train_bench [--profile ci] [--models deit_s_mini:deit ...]`` trains each
model once (seed 0) with the recipe the notebooks use, on the profile's synthetic data, and
reports the wall time of training + evaluation, the training throughput (img/s) and whether the
profile's ``train_budget_s`` holds (ci: 60 s per model on 2 CPU cores). The table goes to the
results store as ``train_bench``. Budgets are measured here, never asserted by timed tests.
"""

from __future__ import annotations

import argparse
import sys
import time

from .experiments import load_splits, run_model
from .profiles import ENV_VAR, get_profile

__all__ = ["MODELS", "main", "bench"]

# (model, recipe) pairs trained by the notebooks 04-06
MODELS = (
    ("tnt_s_mini", "deit"),
    ("tnt_s_se_mini", "deit"),
    ("deit_s_mini", "deit"),
    ("rest_lite_msa_mini", "deit"),
    ("rest_lite_mini", "deit"),
    ("rest_lite_mini", "resnet"),
    ("resnet18", "resnet"),
)


def bench(models: tuple[tuple[str, str], ...] = MODELS) -> list[dict]:
    """Train each ``(model, recipe)`` once and time it; one row per model."""
    from . import results

    profile = get_profile()
    start = time.perf_counter()
    train_set, val_set = load_splits("synthetic", profile)
    for dataset in (train_set, val_set):  # generate the data once, outside the models' timings
        getattr(dataset, "materialize", lambda: None)()
    data_s = time.perf_counter() - start
    rows = []
    for name, recipe_name in models:
        summary = run_model(name, recipe_name, train_set, val_set, profile, seeds=[0], progress=False)
        wall = summary["wall_time_s"][0]
        budget = profile.train_budget_s
        rows.append(
            {
                "model": name,
                "recipe": recipe_name,
                "params": summary["params"],
                "wall_time_s": wall,
                "train_images_per_s": summary["train_images_per_s"],
                "top1": summary["top1"][0],
                "budget_s": budget,
                "within_budget": None if budget is None else wall <= budget,
            }
        )
        print(
            f"{name:20s} {recipe_name:6s} {summary['params'] / 1e6:6.2f}M  {wall:6.1f} s  "
            f"{summary['train_images_per_s']:7.1f} img/s  top-1 {summary['top1'][0]:5.1f}  "
            + ("" if budget is None else ("within" if wall <= budget else "OVER") + f" the {budget:.0f} s budget"),
            flush=True,
        )
    results.save_json("train_bench", rows, seed=0, wall_time_s=time.perf_counter() - start, data_generation_s=data_s)
    return rows


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m tnt_rest_lite.train_bench", description=__doc__)
    parser.add_argument("--profile", help="ci | colab | full (default: $TNT_REST_PROFILE, else by device)")
    parser.add_argument("--models", nargs="*", help="model:recipe pairs (default: every model of notebooks 04-06)")
    args = parser.parse_args(argv)
    if args.profile:
        os.environ[ENV_VAR] = get_profile(args.profile).name
    models = tuple(tuple(m.split(":", 1)) for m in args.models) if args.models else MODELS
    rows = bench(models)  # type: ignore[arg-type]
    return 0 if all(r["within_budget"] in (True, None) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
