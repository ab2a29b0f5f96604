"""Training curves of a run (loss and accuracy per epoch)."""

from __future__ import annotations

from typing import Any

from ..core import viz

__all__ = ["plot_history"]


# ----------------------------------------------------------------------------------------------
# Curves
# ----------------------------------------------------------------------------------------------


def plot_history(histories: dict[str, Any], title: str = "") -> Any:
    """Loss (train solid, val dashed) and validation top-1 per epoch, one colour per model.

    ``histories`` is one ``TrainResult.history``, a mapping ``label -> history`` or
    ``label -> [history per seed]``; labels ``"<model> s<seed>"`` are grouped into their model.
    Every seed is a thin line and the seeds' mean a bold one (:func:`tnt_rest_lite.viz.seed_curves`),
    one legend entry per model, outside the axes.
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
    viz.seed_curves(ax_loss, series("val_loss"), colours, linestyle="--", legend=False)
    viz.seed_curves(ax_acc, series("val_top1"), colours)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss (solid: train, smoothed/mixed targets; dashed: val)")
    ax_acc.set(xlabel="epoch", ylabel="val top-1 (%)", title="validation top-1 (thin: seeds, bold: mean)")
    for ax in (ax_loss, ax_acc):
        ax.title.set_fontsize(9)
    if title:
        fig.suptitle(title)
    return fig
