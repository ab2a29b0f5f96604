"""Training curves of a run (loss and accuracy per epoch)."""

from __future__ import annotations

from typing import Any

from ..core import viz

__all__ = ["plot_history"]


# ----------------------------------------------------------------------------------------------
# Curves
# ----------------------------------------------------------------------------------------------


def plot_history(
    histories: dict[str, Any], title: str = "", metric: str = "val_top1", metric_label: str = "val top-1 (%)"
) -> Any:
    """Loss (train solid, val dashed) and a validation metric per epoch, one colour per model.

    ``histories`` is one ``TrainResult.history``, a mapping ``label -> history`` or
    ``label -> [history per seed]``; labels ``"<model> s<seed>"`` are grouped into their model.
    Every seed is a thin line and the seeds' mean a bold one (:func:`tnt_rest_lite.core.viz.seed_curves`),
    one legend entry per model, outside the axes. ``metric`` is the history's key drawn on the right
    (validation top-1 by default; ``"val_AP50"`` for the detectors, whose histories have no
    validation loss: the dashed lines are drawn only where every history has one).
    """
    import re

    import matplotlib.pyplot as plt

    runs = {"run": histories} if "epoch" in histories else histories
    grouped: dict[str, list[dict[str, list[float]]]] = {}
    for label, hist in runs.items():
        seeds = [hist] if "epoch" in hist else list(hist)
        model = re.sub(r" s\d+$", "", label)
        grouped.setdefault(model, []).extend(seeds)

    def series(key: str) -> dict[str, list[tuple[list[float], list[float]]]]:
        return {m: [(h["epoch"], h[key]) for h in hs] for m, hs in grouped.items()}

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    colours = viz.seed_curves(ax_loss, series("train_loss"), legend=False)
    with_val_loss = all("val_loss" in h for hs in grouped.values() for h in hs)
    if with_val_loss:
        viz.seed_curves(ax_loss, series("val_loss"), colours, linestyle="--", legend=False)
    viz.seed_curves(ax_acc, series(metric), colours)
    loss_title = "loss (solid: train, smoothed/mixed targets; dashed: val)" if with_val_loss else "training loss"
    ax_loss.set(xlabel="epoch", ylabel="loss", title=loss_title)
    name = metric_label.removesuffix(" (%)").replace("val ", "validation ", 1)
    ax_acc.set(xlabel="epoch", ylabel=metric_label, title=f"{name} (thin: seeds, bold: mean)")
    for ax in (ax_loss, ax_acc):
        ax.title.set_fontsize(9)
    if title:
        fig.suptitle(title)
    return fig
