"""Recipe search on the validation split: how the profiles' batch size, rate and epochs were chosen.

``python -m tnt_rest_lite recipe-search --profile cpu --model tnt_s_mini --lr 5e-4 1e-3 --batch 32 64``
trains ``model`` once per (batch, rate) pair with the profile's recipe and data (seed 0), reading
the **validation** split only, and stores every validation curve as ``recipe_search_<model>`` (JSON
and a figure) in the results store. The test split is never loaded here, so the tables' test
numbers cannot have steered a choice. ``--epochs`` and ``--train-samples`` shorten the runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import itertools
import sys
from typing import Any

from ..core import store, viz
from ..core.format import markdown_table
from ..core.store import stopwatch
from ..data.datasets import build_dataset, num_classes
from ..profiles import ENV_VAR, Profile, get_profile
from ..train.config import seed_everything
from ..train.loop import train
from .recipes import build_model, recipe

__all__ = ["search", "stored_searches", "describe_searches", "searches_report", "plot_search", "main"]


def search(
    model: str,
    recipe_name: str,
    lrs: list[float],
    batches: list[int],
    profile: Profile | None = None,
    epochs: int | None = None,
    train_samples: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """One run per (batch, lr): validation curves, final validation top-1, throughput, time.

    Returns (and stores) this search's runs together with the earlier searches of ``model``.
    """

    p = profile or get_profile()
    kwargs = dict(seed=0, difficulty=p.data_difficulty)
    train_set = build_dataset(
        "synthetic", "train", p.image_size, num_samples=train_samples or p.train_samples, **kwargs
    )
    val_set = build_dataset("synthetic", "val", p.image_size, num_samples=p.val_samples, **kwargs)
    if epochs is not None:
        # the schedule (warm-up, step epochs) is derived from the epochs: build the recipe with them
        p = dataclasses.replace(p, epochs=epochs)
    rows = [
        _search_run(model, recipe_name, p, batch, lr, train_set, val_set, progress)
        for batch, lr in itertools.product(batches, lrs)
    ]
    return _merge_with_earlier(model, rows, p)


def _search_run(
    model: str, recipe_name: str, p: Profile, batch: int, lr: float, train_set: Any, val_set: Any, progress: bool
) -> dict[str, Any]:
    """Train ``model`` once with ``batch`` and ``lr`` (seed 0); its row, printed as one line."""
    config = dataclasses.replace(recipe(recipe_name, p, 0), batch_size=batch, lr=lr, progress=progress)
    seed_everything(0)
    net = build_model(model, num_classes(train_set), p.image_size, p)
    with stopwatch() as clock:
        result = train(net, train_set, val_set, config, desc=f"{model} batch {batch} lr {lr:g}")
    row = {
        "model": model,
        "recipe": recipe_name,
        "batch_size": batch,
        "lr": lr,
        "epochs": config.epochs,
        "train_samples": len(train_set),
        "val_top1": result.history["val_top1"],
        "final_val_top1": result.history["val_top1"][-1],
        "train_images_per_s": result.train_images_per_s,
        "wall_time_s": clock["s"],
        # each row keeps its own run's commit and date: the file's provenance is only its newest run's
        "git_commit": store.git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    print(
        f"{model} batch {batch:4d} lr {lr:8.2g}: val top-1 per epoch "
        + " ".join(f"{v:5.1f}" for v in result.history["val_top1"])
        + f"  ({result.train_images_per_s:.0f} img/s, {row['wall_time_s']:.0f} s)",
        flush=True,
    )
    return row


def _merge_with_earlier(model: str, rows: list[dict[str, Any]], p: Profile) -> list[dict[str, Any]]:
    """Store ``rows`` with the runs of earlier searches of ``model`` (a rerun of a setting replaces it)."""
    try:
        earlier = store.load_json(f"recipe_search_{model}")["data"]
    except FileNotFoundError:
        earlier = []
    key = lambda r: (r["batch_size"], r["lr"], r["epochs"], r["train_samples"])
    done = {key(r) for r in rows}
    merged = [r for r in earlier if key(r) not in done] + rows
    store.save_json(f"recipe_search_{model}", merged, seed=0, difficulty=p.data_difficulty, split="val")
    return merged


def plot_search(rows: list[dict[str, Any]]) -> Any:
    """Validation top-1 per epoch, one line (and colour) per (batch, lr) setting; legend outside, integer epochs.

    Each row is one run of one setting (one seed), so there is no seed mean to draw.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
    for row in rows:
        epochs = range(1, len(row["val_top1"]) + 1)
        ax.plot(epochs, row["val_top1"], marker="o", label=f"batch {row['batch_size']}, lr {row['lr']:g}")
    ax.set(xlabel="epoch", ylabel="val top-1 (%)", title=f"{rows[0]['model']}: recipe search (validation split)")
    viz.integer_epochs(ax)
    ax.grid(alpha=0.3)
    viz.legend_outside(ax)
    return fig


def stored_searches(
    models: list[str] | tuple[str, ...], profile: str | None = None, recipe_name: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The stored searches (``recipe_search_<model>``) of ``models`` in the profile's store.

    With ``recipe_name`` only the runs of that recipe are kept (a model may be searched under both
    recipes, e.g. ResT-Lite for chapter 05's and chapter 06's); models without runs are left out.
    """

    found = {}
    for model in models:
        try:
            runs = store.load_json(f"recipe_search_{model}", profile)["data"]
        except FileNotFoundError:
            continue
        runs = [r for r in runs if recipe_name is None or r["recipe"] == recipe_name]
        if runs:
            found[model] = runs
    return found


def describe_searches(searches: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown table of stored searches: every run's setting and final validation top-1, best first per model."""

    rows = []
    for model, runs in searches.items():
        for run in sorted(runs, key=lambda r: -r["final_val_top1"]):
            rows.append(
                [
                    f"`{model}`",
                    run["recipe"],
                    run["batch_size"],
                    f"{run['lr']:g}",
                    run["epochs"],
                    f"{run['train_samples']:,}",
                    f"{run['final_val_top1']:.1f}",
                    f"{run['train_images_per_s']:.0f}",
                ]
            )
    headers = ["model", "recipe", "batch", "lr", "epochs", "training images", "val top-1", "img/s"]
    return markdown_table(headers, rows)


def searches_report(
    models: list[str] | tuple[str, ...], recipe_name: str, profile: str | None = None
) -> tuple[str, list[Any]]:
    """What a training chapter shows of its recipe search: markdown and one curve figure per model.

    The stored searches of ``models`` under ``recipe_name`` (:func:`stored_searches`) as a table,
    best first, and a line naming the models without one (their recipe is the profile's default).
    """

    searches = stored_searches(models, profile, recipe_name)
    missing = [m for m in models if m not in searches]
    parts = [describe_searches(searches)] if searches else []
    if missing:
        parts.append(
            f"No `{recipe_name}` search stored for {', '.join(f'`{m}`' for m in missing)} in profile "
            f"`{get_profile(profile).name}`: their recipe is the profile's default."
        )
    return "\n\n".join(parts), [plot_search(rows) for rows in searches.values()]


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m tnt_rest_lite recipe-search", description=__doc__)
    parser.add_argument("--profile", help="ci | cpu | colab | full")
    parser.add_argument("--model", required=True)
    parser.add_argument("--recipe", default="deit", choices=("deit", "resnet"))
    parser.add_argument("--lr", type=float, nargs="+", required=True)
    parser.add_argument("--batch", type=int, nargs="+", required=True)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--train-samples", type=int)
    args = parser.parse_args(argv)
    if args.profile:
        os.environ[ENV_VAR] = get_profile(args.profile).name
    search(args.model, args.recipe, args.lr, args.batch, epochs=args.epochs, train_samples=args.train_samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
